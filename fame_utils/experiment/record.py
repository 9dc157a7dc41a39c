"""What a results folder says about how it was made (``run.json``) and who may write it.

``run.json`` holds

- at its top level, the settings: everything the numbers depend on — the model and its weight fingerprint,
  every method's and metric's settings, the recipe, the dataset identity, batch sizes,
  threshold (and whether it was given or the clean EER), seeds, the thread count, the
  device type and the code and torch versions. A rerun into a folder whose settings
  differ is refused (:func:`check_settings`) unless ``overwrite=True`` / ``--overwrite``;
- under ``run``, what is informative but not a setting (the exact device, world size, host,
  date, cache folders, empty maps reported).

:class:`OutputLock` keeps two runs from writing one folder at once: ``OUT/.lock`` is
created with ``O_CREAT | O_EXCL`` and holds the owner's host and pid; a lock whose owner
no longer runs on this machine is taken over with a warning.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import warnings
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from .cache import _HOST, pid_alive

__all__ = ["code_version", "environment", "check_settings", "OutputLock", "RunConflictError"]


class RunConflictError(RuntimeError):
    """The output folder holds results made with other settings, or another run holds it."""


def code_version() -> dict[str, str | None]:
    """``{"package": fame_utils version, "git": commit (+ "-dirty") or None}``."""
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
    return {"package": __version__, "git": commit}


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


class OutputLock:
    """``with OutputLock(out):`` — exclusive right to write ``out``'s results.

    Raises:
        RunConflictError: another live run holds the folder (the message names it and
            says how to clear a lock left by a run on another machine).
    """

    def __init__(self, out: Path):
        self.path = Path(out) / ".lock"
        self.held = False

    def _owner(self) -> tuple[str, int] | None:
        try:
            host, pid = self.path.read_text(encoding="utf-8").split()[:2]
            return host, int(pid)
        except (OSError, ValueError):
            return None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                if owner is not None and owner[0] == _HOST and not pid_alive(owner[1]):
                    warnings.warn(
                        f"removing {self.path} left by process {owner[1]}, which no longer runs",
                        stacklevel=3,
                    )
                    self.path.unlink(missing_ok=True)
                    continue
                who = "an unknown process" if owner is None else f"process {owner[1]} on {owner[0]}"
                raise RunConflictError(
                    f"{self.path.parent} is being written by {who} ({self.path}). Wait for it, "
                    "choose another output folder, or delete the lock file if that run is "
                    "no longer alive"
                ) from None
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(f"{_HOST} {os.getpid()}\n")
            self.held = True
            return
        raise RunConflictError(f"could not take {self.path}; delete it and run again")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
