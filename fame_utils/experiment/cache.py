"""The experiment cache: keys that name what a value depends on, and atomic writes.

A cached value lives under a folder named by :func:`digest` of its settings: the model
(:func:`model_fingerprint`), the method (:func:`method_key`), the code (:func:`source_hash`),
the dataset, batch size and θ; each batch also keeps the hash of its input pixels
(:func:`batch_hash`). What cannot be fingerprinted is refused (``TypeError`` naming it).
Files are written to a temporary name and moved into place (:func:`save_tensors`,
:func:`write_text`); :func:`remove_stale_tmp` clears killed writers' files and :func:`load`
treats an unreadable file as missing, with a warning.
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import functools
import hashlib
import json
import os
import re
import shutil
import socket
import time
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data.items import hash_tensor

__all__ = [
    "CACHE_VERSION",
    "jsonable",
    "method_key",
    "model_fingerprint",
    "batch_hash",
    "source_hash",
    "digest",
    "slug",
    "save_tensors",
    "write_text",
    "load",
    "remove_stale_tmp",
    "pid_alive",
    "module_identity",
]

CACHE_VERSION = 3
"""Bumped when the cache layout or the meaning of a cached value changes (2: metric
values keyed by column labels, method settings declared by the methods; 3: input pixels,
model attributes, function code and the code version in the keys)."""


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


def _function_key(fn: Any, path: str, seen: set[int], model: nn.Module | None) -> dict:
    """A plain function or closure by what determines its result: its code (bytecode,
    constants, names), defaults, closure cell values and the plain-data globals it reads."""
    code = fn.__code__
    out: dict[str, Any] = {
        "function": f"{getattr(fn, '__module__', '')}.{fn.__qualname__}",
        "code": _code_hash(code),
        "defaults": _key(fn.__defaults__, f"{path}.__defaults__", seen, model),
        "kwdefaults": _key(fn.__kwdefaults__, f"{path}.__kwdefaults__", seen, model),
    }
    cells = {}
    for name, cell in zip(code.co_freevars, fn.__closure__ or ()):
        try:
            value = cell.cell_contents
        except ValueError:  # an empty cell
            cells[name] = "<empty>"
            continue
        cells[name] = _key(value, f"{path} (closure variable {name!r})", seen, model)
    out["closure"] = cells
    glob = getattr(fn, "__globals__", {})
    plain = (type(None), bool, int, float, str, bytes, tuple, frozenset)
    out["globals"] = {
        n: _key(glob[n], f"{path} (global {n!r})", seen, model)
        for n in sorted(set(code.co_names))
        if n in glob and isinstance(glob[n], plain)
    }
    return out


def _code_hash(code: Any) -> str:
    h = hashlib.sha256(code.co_code)
    for c in code.co_consts:
        h.update((_code_hash(c) if hasattr(c, "co_code") else repr(c)).encode())
    h.update(repr((code.co_names, code.co_varnames, code.co_argcount)).encode())
    return h.hexdigest()[:16]


def _tensor_key(t: Tensor) -> dict:
    h = hashlib.sha256()
    hash_tensor(h, t)
    return {"tensor": h.hexdigest()[:16]}


def _key(value: Any, path: str, seen: set[int], model: nn.Module | None) -> Any:
    """JSON that changes whenever ``value`` could make a method or model behave otherwise;
    ``TypeError`` naming ``path`` for what cannot be fingerprinted."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return repr(value)  # exact
    if isinstance(value, np.generic):
        return {"numpy": type(value).__name__, "value": repr(value.item())}
    if isinstance(value, (torch.dtype, torch.device, torch.Size, torch.memory_format)):
        return str(value)
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}"
    if isinstance(value, Tensor):
        return _tensor_key(value)
    if isinstance(value, np.ndarray):
        return _tensor_key(torch.from_numpy(np.ascontiguousarray(value)))
    if isinstance(value, nn.Module):
        return module_identity(value, model)
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if id(value) in seen:
        return "<cycle>"
    seen = seen | {id(value)}
    if isinstance(value, (list, tuple)):
        return [_key(v, f"{path}[{i}]", seen, model) for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        return sorted((_key(v, path, seen, model) for v in value), key=repr)
    if isinstance(value, Mapping):
        return {str(k): _key(v, f"{path}[{k!r}]", seen, model) for k, v in value.items()}
    if isinstance(value, functools.partial):
        return {
            "partial": _key(value.func, f"{path}.func", seen, model),
            "args": _key(value.args, f"{path}.args", seen, model),
            "keywords": _key(value.keywords, f"{path}.keywords", seen, model),
        }
    if hasattr(value, "__code__"):  # Python functions, lambdas, closures
        return _function_key(value, path, seen, model)
    if hasattr(value, "__func__") and hasattr(value, "__self__"):  # bound methods
        return {
            "method": _key(value.__func__, path, seen, model),
            "self": _key(value.__self__, f"{path}.__self__", seen, model),
        }
    if callable(value) and type(value).__name__ in (
        "builtin_function_or_method",
        "method_descriptor",
        "wrapper_descriptor",
    ):
        return f"{getattr(value, '__module__', None)}.{value.__qualname__}"
    if isinstance(value, torch.Generator):
        return _tensor_key(value.get_state())
    if dataclasses.is_dataclass(value):
        return {
            "type": f"{type(value).__module__}.{type(value).__qualname__}",
            **{
                f.name: _key(getattr(value, f.name), f"{path}.{f.name}", seen, model)
                for f in dataclasses.fields(value)
                if f.init
                and not f.name.startswith("_")
                and f.name not in getattr(value, "runtime_fields", ())
            },
        }
    attrs = getattr(value, "__dict__", None)
    if attrs is not None and type(value).__module__ != "builtins":
        return {
            "type": f"{type(value).__module__}.{type(value).__qualname__}",
            **{
                k: _key(v, f"{path}.{k}", seen, model)
                for k, v in sorted(attrs.items())
                if not k.startswith("_")
            },
        }
    raise TypeError(
        f"{path} is a {type(value).__module__}.{type(value).__qualname__}, which the "
        "experiment cache cannot fingerprint (its effect on the maps is unknown); make it "
        "a number, string, tensor, dataclass or plain function, or give the method a "
        "cache_settings() method that returns what its maps depend on"
    )


def method_key(method: Any, model: nn.Module | None = None) -> dict:
    """The settings that determine a method's maps, as JSON (the method part of its cache
    key and of ``run.json``).

    - ``method.cache_settings()`` where the method declares it;
    - a dataclass: its class and its init fields, minus ``name``, private fields and the
      names in an optional ``runtime_fields`` class attribute (speed and display knobs);
    - a plain function or closure: its code object (bytecode and constants), defaults,
      keyword defaults, closure cell values and the plain-data globals it reads;
    - another callable object: its class and public attributes.

    Values are keyed recursively (floats exactly, tensors by content, modules by their
    path in ``model``, :func:`module_identity`).

    Raises:
        TypeError: a setting that cannot be fingerprinted (the message names it).
    """
    name = getattr(method, "name", None) or type(method).__qualname__
    path = f"method {name!r}"
    seen: set[int] = set()
    own = getattr(method, "cache_settings", None)
    if callable(own) and not hasattr(method, "__code__"):
        settings = _key(dict(own()), path, seen, model)
    elif hasattr(method, "__code__"):
        return {"type": "function", **_function_key(method, path, seen, model)}
    else:
        skip = {"name", *getattr(method, "runtime_fields", ())}
        if dataclasses.is_dataclass(method):
            values = {f.name: getattr(method, f.name) for f in dataclasses.fields(method) if f.init}
        elif hasattr(method, "__dict__"):
            values = dict(vars(method))
        else:
            raise TypeError(
                f"{path} ({type(method).__qualname__}) has no fields the cache can key; "
                "make it a dataclass or give it a cache_settings() method"
            )
        settings = {
            k: _key(v, f"{path}.{k}", seen, model)
            for k, v in values.items()
            if not k.startswith("_") and k not in skip
        }
    return {"type": f"{type(method).__module__}.{type(method).__qualname__}", **settings}


def model_fingerprint(model: nn.Module, *, strict: bool = True) -> str:
    """``name:hash`` of a model's behaviour as far as it can be known: its ``name``
    attribute (or class), every parameter and buffer (persistent or not), and for every
    module its class and its public non-tensor attributes (``scale = 0.1``, flags,
    functions by their code; ``training`` included), and ``input_normalization``.
    Forward hooks and global state are not seen.

    Raises:
        TypeError: with ``strict``, an attribute that cannot be fingerprinted (the message
            names it; pass ``model_id`` to the runner to name the model yourself).
    """
    h = hashlib.sha256(repr(getattr(model, "input_normalization", None)).encode())
    for key, t in model.named_parameters(remove_duplicate=False):
        h.update(key.encode())
        hash_tensor(h, t)
    for key, t in model.named_buffers(remove_duplicate=False):
        h.update(key.encode())
        hash_tensor(h, t)
    for mod_name, module in model.named_modules(remove_duplicate=False):
        h.update(f"{mod_name}:{type(module).__module__}.{type(module).__qualname__}".encode())
        for attr, value in sorted(vars(module).items()):
            if attr.startswith("_"):
                continue
            path = f"model attribute {mod_name or type(model).__name__}.{attr}"
            try:
                v = _key(value, path, set(), None)
            except TypeError:
                if strict:
                    raise
                v = f"<{type(value).__qualname__}>"
            h.update(f"{attr}={json.dumps(v, sort_keys=True, default=str)}".encode())
    name = getattr(model, "name", None) or type(model).__name__
    return f"{name}:{h.hexdigest()[:16]}"


def batch_hash(batch: Any) -> str:
    """16 hex digits of a SHA-256 of a batch as read: every tensor field (images, labels,
    boxes; gallery, probe, genuine) and the item names, so cached maps are tied to the
    pixels they were computed from."""
    h = hashlib.sha256()
    for f in dataclasses.fields(batch):
        v = getattr(batch, f.name)
        h.update(f.name.encode())
        if isinstance(v, Tensor):
            hash_tensor(h, v)
        elif f.name == "names":
            h.update("\n".join(v).encode())
    return h.hexdigest()[:16]


def source_hash(root: str | os.PathLike | None = None) -> str:
    """16 hex digits of a SHA-256 of every ``.py`` file under ``root`` (default: the
    installed ``fame_utils`` package), by relative path and content: the code version in
    every cache key, so a change of the code never returns maps of the old code."""
    folder = Path(root) if root is not None else Path(__file__).resolve().parents[1]
    if root is None:
        return _package_source_hash(str(folder))
    return _hash_sources(folder)


@functools.lru_cache(maxsize=4)
def _package_source_hash(folder: str) -> str:
    return _hash_sources(Path(folder))


def _hash_sources(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*.py")):
        h.update(p.relative_to(folder).as_posix().encode() + b"\0")
        h.update(p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def digest(obj: Any) -> str:
    """12 hex digits of the SHA-256 of ``obj`` as sorted JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def slug(name: str) -> str:
    """A file-name-safe lower-case form of a display name (``"FAME (paper)"`` → ``fame-paper``)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "method"


HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.tmp$")
STALE_TMP_SECONDS = 24 * 3600
"""A temporary file of another machine (shared folder) is taken as stale after a day."""


def _atomic_write(path: Path, writer: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{HOST}.{os.getpid()}.tmp")
    try:
        writer(tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:
        # torch.save reports a full disk as "[enforce fail at inline_container.cc...]"
        if isinstance(e, OSError) and e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        if isinstance(e, RuntimeError) and "inline_container" not in str(e):
            raise
        try:
            free = f"{shutil.disk_usage(path.parent).free / 2**20:.0f} MiB free"
        except OSError:
            free = "free space unknown"
        raise OSError(
            errno.ENOSPC,
            f"could not write {path}: the disk looks full ({free}; {e}). Free some space "
            "or choose another output / cache folder, then run again (finished batches "
            "are kept)",
        ) from e
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
        if m["host"] == HOST:
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
