"""The experiment cache: keys that name what a value depends on, and atomic writes.

Every cached value lives under a folder named by a hash (:func:`digest`) of the
settings it depends on: the model (:func:`model_fingerprint`), the dataset identity, the
method's settings (:func:`method_settings`), the batch size, and for verification the
threshold. Changing any of them selects a fresh folder instead of mixing results.
Files are written to a temporary name and moved into place with :func:`os.replace`
(:func:`save_tensors`, :func:`write_text`), so a killed run never leaves a half-written
file; :func:`load` treats an unreadable file as missing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
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
]

CACHE_VERSION = 2
"""Bumped when the cache layout or the meaning of a cached value changes (2: metric
values keyed by column labels, method settings declared by the methods)."""


def jsonable(value: Any, depth: int = 0) -> Any:
    """A JSON-serialisable description of a setting value (for the cache hash): floats
    exactly (``repr``), tensors by content hash, modules by class, dataclasses and plain
    objects by their public fields."""
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
        return {"module": type(value).__name__}
    if isinstance(value, (list, tuple)):
        return [jsonable(v, depth + 1) for v in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, depth + 1) for k, v in sorted(value.items(), key=str)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            "type": f"{type(value).__module__}.{type(value).__qualname__}",
            **{
                f.name: jsonable(getattr(value, f.name), depth + 1)
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
            **{k: jsonable(v, depth + 1) for k, v in sorted(attrs.items()) if k[0] != "_"},
        }
    return repr(value)


def method_settings(method: Any) -> dict:
    """The settings that determine a method's maps, as JSON (the method part of its cache
    key): its class and what :func:`fame_utils.methods.cache_settings` declares."""
    return {"type": type(method).__qualname__, **jsonable(cache_settings(method))}


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


def _atomic_write(path: Path, writer: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        writer(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_tensors(obj: dict, path: Path) -> None:
    """``torch.save`` a dict atomically."""
    _atomic_write(path, lambda p: torch.save(obj, p))


def write_text(text: str, path: Path) -> None:
    """Write a UTF-8 text file atomically."""
    _atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def load(path: Path) -> dict | None:
    """A cached dict, or ``None`` if it is missing or unreadable (then recomputed)."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a corrupt file from an old crash: recompute it
        return None
