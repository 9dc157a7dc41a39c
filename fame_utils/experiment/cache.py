"""The experiment cache: keys that name what a value depends on, and atomic writes.

Every cached value lives under a folder named by a hash (:func:`digest`) of the
settings it depends on: the model (:func:`model_fingerprint`), the dataset identity, the
method's settings (:func:`method_settings`), the batch size, and for verification the
threshold. Changing any of them selects a fresh folder instead of mixing results.
Files are written to a temporary name and moved into place with :func:`os.replace`
(:func:`save_tensors`, :func:`write_text`), so a killed run never leaves a half-written
file (its temporary files are removed by the next run, :func:`remove_stale_tmp`);
:func:`load` treats an unreadable file as missing and says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import socket
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..data.items import hash_tensor
from ..methods import cache_settings

__all__ = [
    "CACHE_VERSION",
    "jsonable",
    "method_settings",
    "model_fingerprint",
    "digest",
    "slug",
    "save_tensors",
    "write_text",
    "load",
    "remove_stale_tmp",
    "pid_alive",
    "module_identity",
]

CACHE_VERSION = 2
"""Bumped when the cache layout or the meaning of a cached value changes (2: metric
values keyed by column labels, method settings declared by the methods)."""


def module_identity(module: nn.Module, model: nn.Module | None = None) -> dict:
    """What identifies a module-valued setting (a CAM target layer, a FAME layer objective):
    its class and its path in ``model`` (``named_modules``, e.g. ``"blocks.3"``), or, for a
    module that is not part of ``model``, a hash of its parameters and buffers. The class
    name alone is not enough: two stages of one network are both ``MBConv``."""
    out: dict[str, Any] = {"module": type(module).__name__}
    if model is not None:
        for name, m in model.named_modules(remove_duplicate=False):
            if m is module:
                out["path"] = name
                return out
    state = module.state_dict()
    if not state:  # nothing to hash: its configuration is all there is
        out["repr"] = repr(module)
        return out
    h = hashlib.sha256()
    for key, t in sorted(state.items()):
        h.update(key.encode())
        hash_tensor(h, t)
    out["weights"] = h.hexdigest()[:16]
    return out


def jsonable(value: Any, depth: int = 0, model: nn.Module | None = None) -> Any:
    """A JSON-serialisable description of a setting value (for the cache hash): floats
    exactly (``repr``), tensors by content hash, modules by their path in ``model`` (or a
    hash of their weights, :func:`module_identity`), dataclasses and plain objects by
    their public fields."""
    if depth > 6:
        return repr(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return repr(value)  # exact
    if isinstance(value, Tensor):
        h = hashlib.sha256()
        hash_tensor(h, value)
        return {"tensor": h.hexdigest()[:16]}
    if isinstance(value, nn.Module):
        return module_identity(value, model)
    if isinstance(value, (list, tuple)):
        return [jsonable(v, depth + 1, model) for v in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, depth + 1, model) for k, v in sorted(value.items(), key=str)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            "type": f"{type(value).__module__}.{type(value).__qualname__}",
            **{
                f.name: jsonable(getattr(value, f.name), depth + 1, model)
                for f in dataclasses.fields(value)
                if f.init and not f.name.startswith("_")
            },
        }
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    attrs = getattr(value, "__dict__", None)
    if attrs is not None:
        return {
            "type": f"{type(value).__module__}.{type(value).__qualname__}",
            **{k: jsonable(v, depth + 1, model) for k, v in sorted(attrs.items()) if k[0] != "_"},
        }
    return repr(value)


def method_settings(method: Any, model: nn.Module | None = None) -> dict:
    """The settings that determine a method's maps, as JSON (the method part of its cache
    key): its class and what :func:`fame_utils.methods.cache_settings` declares, with
    module-valued settings identified within ``model`` (:func:`module_identity`)."""
    return {"type": type(method).__qualname__, **jsonable(cache_settings(method), model=model)}


def model_fingerprint(model: nn.Module) -> str:
    """``name:hash`` of a model: its ``name`` attribute (or class) and a SHA-256 of every
    parameter and buffer and of its ``input_normalization``, so other weights or another
    normalisation give another cache."""
    h = hashlib.sha256(repr(getattr(model, "input_normalization", None)).encode())
    for key, t in sorted(model.state_dict().items()):
        h.update(key.encode())
        hash_tensor(h, t)
    name = getattr(model, "name", None) or type(model).__name__
    return f"{name}:{h.hexdigest()[:16]}"


def digest(obj: Any) -> str:
    """12 hex digits of the SHA-256 of ``obj`` as sorted JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def slug(name: str) -> str:
    """A file-name-safe lower-case form of a display name (``"FAME (paper)"`` → ``fame-paper``)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "method"


_HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.tmp$")
STALE_TMP_SECONDS = 24 * 3600
"""A temporary file of another machine (shared folder) is taken as stale after a day."""


def _atomic_write(path: Path, writer: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{_HOST}.{os.getpid()}.tmp")
    try:
        writer(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_tmp(folder: Path) -> list[Path]:
    """Delete the temporary files that killed writers left in ``folder`` (written by a
    process of this machine that no longer runs, or by another machine over a day ago);
    returns what was removed. Live writers' files are kept."""
    removed = []
    if not folder.is_dir():
        return removed
    now = time.time()
    for p in folder.glob(".*.tmp"):
        m = _TMP.match(p.name)
        if m is None:
            continue
        if m["host"] == _HOST:
            stale = int(m["pid"]) != os.getpid() and not pid_alive(int(m["pid"]))
        else:
            try:
                stale = now - p.stat().st_mtime > STALE_TMP_SECONDS
            except FileNotFoundError:
                continue
        if stale:
            p.unlink(missing_ok=True)
            removed.append(p)
    return removed


def save_tensors(obj: dict, path: Path) -> None:
    """``torch.save`` a dict atomically."""
    _atomic_write(path, lambda p: torch.save(obj, p))


def write_text(text: str, path: Path) -> None:
    """Write a UTF-8 text file atomically."""
    _atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def load(path: Path) -> dict | None:
    """A cached dict, or ``None`` if it is missing or unreadable (then recomputed; an
    unreadable file is reported by a warning that names it)."""
    if not path.is_file():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt file: recompute it
        warnings.warn(
            f"cached file {path} is unreadable ({type(e).__name__}); recomputing it",
            stacklevel=2,
        )
        return None
    if not isinstance(blob, dict):
        warnings.warn(f"cached file {path} holds no dict; recomputing it", stacklevel=2)
        return None
    return blob
