"""What a run keeps on disk: atomic writes, checks of what is read back, ``run.json`` and
the output folder's lock. Outputs are staged in ``OUT/.staging/``, ``run.json`` moved last."""

from __future__ import annotations

import errno
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from filelock import FileLock, Timeout
from torch import Tensor

from . import distributed
from .keys import source_hash

OUTPUT_FILES = ("results.csv", "summary.csv", "summary.md", "summary.tex", "run.json")
MAP_TOLERANCE = 1e-5  # how far outside [0, 1] a map value may lie (rounding)
HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
STALE_TMP_SECONDS = 24 * 3600  # a temporary file untouched for a day is a killed writer's


class RunConflictError(RuntimeError):
    """The output folder holds results made with other settings, or another run holds it."""


def check_folder(path: object, name: str) -> Path:
    """``path`` as a folder the run may create and write (its nearest existing parent is a
    writable folder), else ``ValueError`` naming ``name``."""
    if path is None or str(path).strip() == "":
        raise ValueError(f"{name} must name a folder, got {path!r}")
    folder = Path(path).expanduser()
    parent = next(p for p in (folder, *folder.parents) if p.exists())
    if not parent.is_dir():
        raise ValueError(f"{name} {folder}: {parent} is an existing file, not a folder; choose one")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(f"{name} {folder}: {parent} is not writable by this user; choose another")
    return folder


def _atomic_write(path: Path, writer: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{HOST}.{os.getpid()}.tmp")
    try:
        writer(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        # torch.save reports a full disk as "[enforce fail at inline_container.cc...]"
        full = getattr(e, "errno", None) in (errno.ENOSPC, errno.EDQUOT)
        if not (full or (type(e) is RuntimeError and "inline_container" in str(e))):
            raise
        free = shutil.disk_usage(path.parent).free / 2**20
        raise OSError(
            errno.ENOSPC,
            f"could not write {path}: the disk looks full ({free:.0f} MiB free; {e}). Free "
            "some space or choose another output / cache folder, then run again (finished "
            "batches are kept)",
        ) from e
    finally:
        tmp.unlink(missing_ok=True)


def save_tensors(obj: dict, path: Path) -> None:
    """``torch.save`` a dict atomically."""
    _atomic_write(path, lambda p: torch.save(obj, p))


def write_text(text: str, path: Path) -> None:
    """Write a UTF-8 text file atomically."""
    _atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def load(path: Path) -> dict | None:
    """A cached dict, or ``None`` if it is missing or unreadable (with a warning naming it)."""
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt file: recompute it
        blob = e
    if not isinstance(blob, dict):
        why = type(blob).__name__ if isinstance(blob, Exception) else "holds no dict"
        warnings.warn(f"cached file {path} is unreadable ({why}); recomputing it", stacklevel=2)
        return None
    return blob


def map_problem(maps: object, shape: tuple[int, ...], role: str) -> str | None:
    """Why ``maps`` cannot be (B, H, W) [0, 1] maps of ``shape``; ``None`` when they can."""
    if maps is None and role == "negative":
        return None
    if not isinstance(maps, Tensor):
        return f"{role} maps are {type(maps).__name__}, not a tensor"
    if tuple(maps.shape) != shape:
        return f"{role} maps have shape {tuple(maps.shape)}, expected {shape}"
    if not bool(torch.isfinite(maps).all()):
        return f"{role} maps hold NaN or Inf"
    lo, hi = float(maps.min()), float(maps.max())
    if lo < -MAP_TOLERANCE or hi > 1 + MAP_TOLERANCE:
        return f"{role} maps lie in [{lo:.6g}, {hi:.6g}], outside [0, 1]"
    return None


def blob_problem(blob: dict | None, names: list[str], shape: tuple, inputs: str) -> str | None:
    """Why a cached map batch is unusable, or ``None``."""
    if blob is None:
        return "missing"
    if not {"positive", "negative", "names"} <= set(blob):
        return "incomplete"
    if blob["names"] != names:
        return "for other items"
    if blob.get("inputs") != inputs:
        return "computed from other input pixels"
    return map_problem(blob["positive"], shape, "positive") or map_problem(
        blob["negative"], shape, "negative"
    )


def values_problem(cached: dict | None, labels: list[str], n: int) -> str | None:
    """Why cached metric values (a ``(n,)`` tensor per column label) are unusable, or ``None``."""
    if cached is None:
        return "missing"
    values, names = cached.get("values"), cached.get("names")
    if not isinstance(values, dict) or not isinstance(names, list) or len(names) != n:
        return "incomplete"
    columns = [values.get(label) for label in labels]
    if not all(isinstance(v, Tensor) and tuple(v.shape) == (n,) for v in columns):
        return f"without a ({n},) column of every label"
    return None


def remove_stale_tmp(folder: Path) -> None:
    """Delete the temporary files in ``folder`` that no writer touched for a day (those of
    killed writers)."""
    for p in folder.glob(".*.tmp") if folder.is_dir() else ():
        try:
            if time.time() - p.stat().st_mtime > STALE_TMP_SECONDS:
                p.unlink(missing_ok=True)
        except FileNotFoundError:
            continue


def _git_commit() -> str | None:
    """The checkout's full commit hash, ``-dirty`` when tracked files changed."""
    root = Path(__file__).resolve().parents[2]
    # a --match no tag meets: describe prints the hash itself
    git = ["git", "describe", "--always", "--dirty", "--abbrev=40", "--match=no tag matches"]
    try:
        found = subprocess.run(git, cwd=root, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return found.stdout.strip() if (root / ".git").exists() and found.returncode == 0 else None


def environment(device: torch.device) -> dict[str, Any]:
    """The code, torch, device and thread settings that can move the numbers."""
    from .. import __version__

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {
        "code": {"package": __version__, "sources": source_hash(), "git": _git_commit()},
        "torch": torch.__version__,
        "device_type": device.type,
        "device_name": name,
        "threads": torch.get_num_threads(),
    }


def _differences(old: Any, new: Any, prefix: str = "") -> list[str]:
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if old == new else [f"{prefix}: {old!r} -> {new!r}"]
    out = []
    for k in sorted(set(old) | set(new), key=str):
        p = f"{prefix}.{k}" if prefix else str(k)
        if k not in old or k not in new:
            out.append(f"{p}: {old.get(k, '(absent)')!r} -> {new.get(k, '(absent)')!r}")
        else:
            out += _differences(old[k], new[k], p)
    return out


def _check_settings(path: Path, settings: dict) -> None:
    """Refuse a ``run.json`` that is unreadable or holds other ``settings`` (listed)."""
    try:
        old = json.loads(path.read_text(encoding="utf-8"))
        old.pop("run", None)
    except (OSError, ValueError, AttributeError) as e:
        raise RunConflictError(
            f"{path} is unreadable ({e}); pass overwrite=True (--overwrite) to replace the "
            "results in that folder, or choose another output folder"
        ) from None
    diff = _differences(old, json.loads(json.dumps(settings)))  # tuples compare as lists
    if diff:
        shown = "; ".join(diff[:8]) + (f"; and {len(diff) - 8} more" if len(diff) > 8 else "")
        raise RunConflictError(
            f"{path.parent} holds results made with other settings ({shown}). Choose another "
            "output folder, or pass overwrite=True (--overwrite) to replace them"
        )


def stage_outputs(out: Path, texts: dict[str, str]) -> Path:
    """Write every output file (``{name: text}``, ``run.json`` last) into ``out/.staging/``."""
    staging = out / ".staging"
    shutil.rmtree(staging, ignore_errors=True)
    for name in sorted(texts, key=lambda n: n == "run.json"):
        write_text(texts[name], staging / name)
    return staging


def commit_outputs(out: Path, staging: Path) -> None:
    """Move a complete staging folder into ``out``: ``run.json`` removed first, moved last."""
    (out / "run.json").unlink(missing_ok=True)
    for name in OUTPUT_FILES:
        if name != "run.json" and (staging / name).exists():
            os.replace(staging / name, out / name)
    os.replace(staging / "run.json", out / "run.json")
    shutil.rmtree(staging, ignore_errors=True)


def lock_output(out: Path) -> FileLock:
    """The exclusive right to write ``out``: a :class:`filelock.FileLock` (an ``flock``,
    freed when the process dies) on ``out/.lock`` holding ``HOST PID``.

    Raises:
        RunConflictError: another live run holds the folder (the message names it).
    """
    path = Path(out) / ".lock"
    path.parent.mkdir(parents=True, exist_ok=True)

    def mark(fd: int) -> None:
        os.ftruncate(fd, 0)
        os.write(fd, f"{HOST} {os.getpid()}\n".encode())

    lock = FileLock(path, timeout=0, thread_local=False, on_acquired=mark)
    try:
        lock.acquire()
    except Timeout:
        try:
            host, pid = path.read_text(encoding="utf-8").split()[:2]
            owner = f"process {int(pid)} on {host}"
        except (OSError, ValueError):
            owner = "an unknown process"
        raise RunConflictError(
            f"{path.parent} is being written by {owner} ({path}). "
            "Wait for it or choose another output folder"
        ) from None
    return lock


def claim_output(out: Path, settings: dict, overwrite: bool) -> FileLock | None:
    """On rank 0: take ``out``'s lock, finish what a killed run left and check that a run of
    ``settings`` may replace the results there; the held lock (``None`` on other ranks).

    Raises:
        RunConflictError: on every rank: another run holds ``out``, foreign result files
            lie there, or its ``run.json`` holds other settings (without ``overwrite``).
    """
    lock, problem = None, None
    if distributed.current().rank == 0:
        try:
            lock = lock_output(out)
            staging = out / ".staging"
            if (staging / "run.json").is_file():  # left complete by a killed run
                warnings.warn(
                    f"completing the outputs a killed run left in {staging}", stacklevel=2
                )
                commit_outputs(out, staging)
            shutil.rmtree(staging, ignore_errors=True)
            found = [n for n in OUTPUT_FILES if (out / n).exists()]
            if found and not (out / "run.json").is_file():
                raise RunConflictError(
                    f"{out} holds {', '.join(found)} but no run.json, so they are not results "
                    "of this package that it may replace; move them away or choose another "
                    "output folder"
                )
            path = out / "run.json"
            if not overwrite and path.is_file():
                _check_settings(path, settings)
            remove_stale_tmp(out)
        except RunConflictError as e:
            if lock is not None:
                lock.release()
            problem = str(e)
    problem = distributed.broadcast(problem)
    if problem is not None:
        raise RunConflictError(problem)
    return lock
