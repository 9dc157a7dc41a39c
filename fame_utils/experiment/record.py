"""What a results folder says about how it was made (``run.json``) and who may write it.

``run.json`` holds at its top level every setting the numbers depend on (a rerun with other
settings is refused by :func:`check_settings` unless ``overwrite=True``) and under ``run``
what is informative only (device, world size, host, date, cache folders, empty maps).
:class:`OutputLock` is an exclusive ``fcntl.flock`` on ``OUT/.lock`` (the kernel drops it
when its process dies). The outputs are staged in ``OUT/.staging/`` and moved in by renames,
``run.json`` last (:func:`stage_outputs`, :func:`commit_outputs`, :func:`recover_outputs`), so
a reader that finds ``run.json`` finds the whole run; a folder with result files but no
``run.json`` is refused (:func:`check_foreign`). ``docs/reproducibility.md`` says the same
for users.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import shutil
import subprocess
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from .cache import HOST, source_hash, write_text

__all__ = [
    "OUTPUT_FILES",
    "code_version",
    "environment",
    "check_settings",
    "check_foreign",
    "stage_outputs",
    "commit_outputs",
    "recover_outputs",
    "OutputLock",
    "RunConflictError",
]

OUTPUT_FILES = ("results.csv", "summary.csv", "summary.md", "summary.tex", "run.json")
"""The files a run writes into its output folder (``run.json`` last)."""


class RunConflictError(RuntimeError):
    """The output folder holds results made with other settings, or another run holds it."""


def code_version() -> dict[str, str | None]:
    """``{"package": fame_utils version, "sources": hash of the package's .py files
    (:func:`~fame_utils.experiment.cache.source_hash`), "git": commit (+ "-dirty") or
    None}``."""
    from .. import __version__

    root = Path(__file__).resolve().parents[2]
    commit = None
    if (root / ".git").exists():
        try:
            commit = subprocess.run(
                ["git", "-C", str(root), "rev-parse", "HEAD"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
            dirty = subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
            ).stdout.strip()
            if dirty:
                commit += "-dirty"
        except (OSError, subprocess.SubprocessError):
            commit = None
    return {"package": __version__, "sources": source_hash(), "git": commit}


def environment(device: torch.device) -> dict[str, Any]:
    """The settings of the software and machine that can move the numbers: code and torch
    versions, device type, thread count (``torch.get_num_threads()``)."""
    return {
        "code": code_version(),
        "torch": torch.__version__,
        "device_type": device.type,
        "device_name": (
            torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
        ),
        "threads": torch.get_num_threads(),
    }


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for k in sorted(set(old) | set(new), key=str):
            p = f"{prefix}.{k}" if prefix else str(k)
            if k not in old or k not in new:
                out.append(f"{p}: {old.get(k, '(absent)')!r} -> {new.get(k, '(absent)')!r}")
            else:
                out += _differences(old[k], new[k], p)
        return out
    return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]


def check_settings(out: Path, settings: dict, overwrite: bool) -> None:
    """Refuse to write results into ``out`` when its ``run.json`` was made with other
    ``settings`` (the message lists the differences), unless ``overwrite``.

    Raises:
        RunConflictError: the settings differ, or ``run.json`` is unreadable.
    """
    path = out / "run.json"
    if overwrite or not path.is_file():
        return
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        old.pop("run", None)
    except (OSError, ValueError, AttributeError) as e:
        raise RunConflictError(
            f"{path} is unreadable ({e}); pass overwrite=True (--overwrite) to replace the "
            "results in that folder, or choose another output folder"
        ) from None
    # JSON round trip so tuples and lists compare alike
    new = json.loads(json.dumps(settings))
    diff = _differences(old, new)
    if diff:
        shown = "; ".join(diff[:8]) + (f"; and {len(diff) - 8} more" if len(diff) > 8 else "")
        raise RunConflictError(
            f"{out} holds results made with other settings ({shown}). Choose another output "
            "folder, or pass overwrite=True (--overwrite) to replace them"
        )


def run_info(world_size: int, device: torch.device, **extra: Any) -> dict[str, Any]:
    """The informative part of ``run.json`` (not compared between runs)."""
    return {
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "device": str(device),
        "world_size": world_size,
        "python": platform.python_version(),
        **extra,
    }


def check_foreign(out: Path) -> None:
    """Refuse an output folder that holds result files but no ``run.json``: they are not
    this package's runs (or their record is lost), so they are never overwritten.

    Raises:
        RunConflictError: naming the files.
    """
    if (out / "run.json").is_file():
        return
    found = [n for n in OUTPUT_FILES if (out / n).exists()]
    if found:
        raise RunConflictError(
            f"{out} holds {', '.join(found)} but no run.json, so they are not results of "
            "this package that it may replace; move them away or choose another output folder"
        )


def stage_outputs(out: Path, texts: dict[str, str]) -> Path:
    """Write every output file (``{name: text}``, ``run.json`` last) into
    ``out/.staging/``; returns that folder. Nothing in ``out`` itself changes."""
    staging = out / ".staging"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    for name in sorted(texts, key=lambda n: n == "run.json"):
        write_text(texts[name], staging / name)
    return staging


def commit_outputs(out: Path, staging: Path) -> None:
    """Move a complete staging folder's files into ``out``: ``run.json`` is removed
    first and moved in last, so ``run.json`` is only ever next to the files of its run."""
    (out / "run.json").unlink(missing_ok=True)
    for name in OUTPUT_FILES:
        if name != "run.json" and (staging / name).exists():
            os.replace(staging / name, out / name)
    os.replace(staging / "run.json", out / "run.json")
    shutil.rmtree(staging, ignore_errors=True)


def recover_outputs(out: Path) -> None:
    """Finish or drop what a killed writer left (call with the lock held): a staging
    folder holding ``run.json`` is complete and is moved in; any other is removed."""
    staging = out / ".staging"
    if not staging.is_dir():
        return
    if (staging / "run.json").is_file():
        warnings.warn(f"completing the outputs a killed run left in {staging}", stacklevel=3)
        commit_outputs(out, staging)
    else:
        shutil.rmtree(staging, ignore_errors=True)


class OutputLock:
    """``with OutputLock(out):`` — exclusive right to write ``out``'s results, held as an
    ``fcntl.flock`` on ``out/.lock`` (released by the kernel if the process dies).

    Raises:
        RunConflictError: another live run holds the folder (the message names it).
    """

    def __init__(self, out: Path):
        self.path = Path(out) / ".lock"
        self.held = False
        self._fd: int | None = None

    def _owner(self) -> str:
        try:
            host, pid = self.path.read_text(encoding="utf-8").split()[:2]
            return f"process {int(pid)} on {host}"
        except (OSError, ValueError):
            return "an unknown process"

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(10):
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise RunConflictError(
                    f"{self.path.parent} is being written by {self._owner()} ({self.path}). "
                    "Wait for it or choose another output folder"
                ) from None
            try:  # the file may have been removed and recreated by a releasing holder
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, f"{HOST} {os.getpid()}\n".encode())
            self._fd, self.held = fd, True
            return
        raise RunConflictError(f"could not take {self.path}; run again")

    def release(self) -> None:
        if self.held and self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd, self.held = None, False

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
