"""Cache keys: what a cached value depends on (model, method, code, inputs), as JSON and
hashes; what cannot be fingerprinted is refused (``docs/reproducibility.md``)."""

from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data.items import hash_tensor

CACHE_VERSION = 3  # bumped when the cache layout or the meaning of a cached value changes


def _hash_named(h: Any, tensors: Any) -> str:
    """Update ``h`` with every ``(name, tensor)``; its first 16 hex digits."""
    for key, t in tensors:
        h.update(key.encode())
        hash_tensor(h, t)
    return h.hexdigest()[:16]


def _type_name(value: Any) -> str:
    kind = value if isinstance(value, type) else type(value)
    return f"{kind.__module__}.{kind.__qualname__}"


def module_identity(module: nn.Module, model: nn.Module | None = None) -> dict:
    """A module-valued setting (a CAM target layer, a FAME layer objective): its class and
    its path in ``model`` (``"blocks.3"``), or, outside ``model``, a hash of its weights."""
    out: dict[str, Any] = {"module": type(module).__name__}
    for name, m in model.named_modules(remove_duplicate=False) if model is not None else ():
        if m is module:
            return {**out, "path": name}
    state = module.state_dict()
    if not state:  # nothing to hash: its configuration is all there is
        return {**out, "repr": repr(module)}
    return {**out, "weights": _hash_named(hashlib.sha256(), sorted(state.items()))}


def _code_hash(code: Any) -> str:
    h = hashlib.sha256(code.co_code)
    for c in code.co_consts:
        h.update((_code_hash(c) if hasattr(c, "co_code") else repr(c)).encode())
    h.update(repr((code.co_names, code.co_varnames, code.co_argcount)).encode())
    return h.hexdigest()[:16]


def _function_key(fn: Any, path: str, seen: set[int], model: nn.Module | None) -> dict:
    """A function or closure by its code, defaults, closure values and plain-data globals."""
    code = fn.__code__
    cells = {}
    for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            cells[name] = "<empty>"
            continue
        cells[name] = fingerprint(value, f"{path} (closure variable {name!r})", model, seen)
    glob = getattr(fn, "__globals__", {})
    plain = (type(None), bool, int, float, str, tuple, frozenset)
    return {
        "function": f"{getattr(fn, '__module__', '')}.{fn.__qualname__}",
        "code": _code_hash(code),
        "defaults": fingerprint(fn.__defaults__, f"{path}.__defaults__", model, seen),
        "kwdefaults": fingerprint(fn.__kwdefaults__, f"{path}.__kwdefaults__", model, seen),
        "closure": cells,
        "globals": {
            n: fingerprint(glob[n], f"{path} (global {n!r})", model, seen)
            for n in sorted(set(code.co_names))
            if n in glob and isinstance(glob[n], plain)
        },
    }


def fingerprint(
    value: Any, path: str, model: nn.Module | None = None, seen: frozenset | set = frozenset()
) -> Any:
    """JSON that changes whenever ``value`` could change a method, metric or model: tensors
    by content, modules by path in ``model``, functions by code and closure, objects by fields.

    Raises:
        TypeError: ``value`` (or a part of it, named from ``path``) cannot be fingerprinted.
    """
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, np.generic):
        return {"numpy": type(value).__name__, "value": repr(value.item())}
    if isinstance(value, (torch.dtype, torch.device, torch.Size, torch.memory_format)):
        return str(value)
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}"
    if isinstance(value, np.ndarray):
        value = torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, Tensor):
        return {"tensor": _hash_named(hashlib.sha256(), [("", value)])}
    if isinstance(value, nn.Module):
        return module_identity(value, model)
    if isinstance(value, type):
        return _type_name(value)
    if id(value) in seen:
        return "<cycle>"
    seen = {*seen, id(value)}
    if isinstance(value, (list, tuple)):
        return [fingerprint(v, f"{path}[{i}]", model, seen) for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return sorted((fingerprint(v, path, model, seen) for v in value), key=repr)
    if isinstance(value, Mapping):
        return {str(k): fingerprint(v, f"{path}[{k!r}]", model, seen) for k, v in value.items()}
    if isinstance(value, functools.partial):
        parts = {"func": value.func, "args": value.args, "keywords": value.keywords}
        return {"partial": fingerprint(parts, path, model, seen)}
    if hasattr(value, "__code__"):  # Python functions, lambdas, closures
        return _function_key(value, path, seen, model)
    if dataclasses.is_dataclass(value):  # init fields, less the speed and display knobs
        skip = set(getattr(value, "runtime_fields", ()))
        names = [f.name for f in dataclasses.fields(value) if f.init and f.name not in skip]
    elif hasattr(value, "__dict__") and type(value).__module__ != "builtins":
        names = sorted(vars(value))
    else:
        names = None
    if names is not None:
        fields = (k for k in names if not k.startswith("_"))
        parts = {k: fingerprint(getattr(value, k), f"{path}.{k}", model, seen) for k in fields}
        return {"type": _type_name(value), **parts}
    raise TypeError(
        f"{path} is a {_type_name(value)}, which the experiment cache cannot fingerprint "
        "(its effect on the maps is unknown); make it a number, string, tensor, dataclass or "
        "plain function, or list it in the method's runtime_fields if it cannot change the maps"
    )


def method_key(method: Any, model: nn.Module | None = None) -> dict:
    """The settings that determine a method's maps, as JSON: its :func:`fingerprint` without
    ``name`` (a dataclass's init fields minus ``runtime_fields``, the speed and display knobs).

    Raises:
        TypeError: a setting that cannot be fingerprinted (the message names it).
    """
    path = f"method {getattr(method, 'name', None) or type(method).__qualname__!r}"
    key = fingerprint(method, path, model)
    return {k: v for k, v in key.items() if k != "name"} if isinstance(key, dict) else key


def model_fingerprint(model: nn.Module, *, strict: bool = True) -> str:
    """``name:hash`` of a model: its parameters, buffers, ``input_normalization`` and every
    module's class and public attributes (``training`` included; hooks are not seen).

    Raises:
        TypeError: with ``strict``, an attribute that cannot be fingerprinted (the message
            names it; pass ``model_id`` to the runner to name the model yourself).
    """
    h = hashlib.sha256(repr(getattr(model, "input_normalization", None)).encode())
    named = model.named_parameters(remove_duplicate=False)
    _hash_named(h, [*named, *model.named_buffers(remove_duplicate=False)])
    for mod_name, module in model.named_modules(remove_duplicate=False):
        h.update(f"{mod_name}:{_type_name(module)}".encode())
        for attr, value in sorted(vars(module).items()):
            if attr.startswith("_"):
                continue
            path = f"model attribute {mod_name or type(model).__name__}.{attr}"
            try:
                v = fingerprint(value, path)
            except TypeError:
                if strict:
                    raise
                v = f"<{type(value).__qualname__}>"
            h.update(f"{attr}={json.dumps(v, sort_keys=True, default=str)}".encode())
    return f"{getattr(model, 'name', None) or type(model).__name__}:{h.hexdigest()[:16]}"


def batch_hash(batch: Any) -> str:
    """16 hex digits of a SHA-256 of a batch as read (every tensor field and the names)."""
    h = hashlib.sha256()
    for f in dataclasses.fields(batch):
        v = getattr(batch, f.name)
        h.update(f.name.encode())
        if isinstance(v, Tensor):
            hash_tensor(h, v)
        elif f.name == "names":
            h.update("\n".join(v).encode())
    return h.hexdigest()[:16]


@functools.cache
def source_hash(root: str | os.PathLike | None = None) -> str:
    """16 hex digits of a SHA-256 of every ``.py`` file under ``root`` (default: the
    ``fame_utils`` package) by relative path and content: the code version in every key."""
    root = Path(root or Path(__file__).resolve().parents[1])
    h = hashlib.sha256()
    for p in sorted(root.rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def digest(obj: Any) -> str:
    """12 hex digits of the SHA-256 of ``obj`` as sorted JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def slug(name: str) -> str:
    """A file-name-safe lower-case form of a display name (``"FAME (paper)"`` → ``fame-paper``)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "method"
