"""What a run keeps on disk: cache keys, atomic writes, ``run.json`` and the folder's lock.

A cache folder is named by :func:`digest` of what its values depend on: the model
(:func:`model_fingerprint`), the method (:func:`method_key`), the code (:func:`source_hash`),
the dataset, batch size and θ; each batch keeps the hash of its input pixels
(:func:`batch_hash`). What cannot be fingerprinted is refused (``TypeError`` naming it).
Files are written to a temporary name and renamed (:func:`save_tensors`,
:func:`write_text`). The outputs are staged in ``OUT/.staging/`` and moved in with
``run.json`` last (:func:`stage_outputs`, :func:`commit_outputs`), so a reader that finds
``run.json`` finds the whole run; ``docs/reproducibility.md`` says the same for users.
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import fcntl
import functools
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import time
import warnings
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data.items import hash_tensor

__all__ = [
    "CACHE_VERSION",
    "HOST",
    "OUTPUT_FILES",
    "RunConflictError",
    "OutputLock",
    "fingerprint",
    "method_key",
    "module_identity",
    "model_fingerprint",
    "batch_hash",
    "source_hash",
    "digest",
    "slug",
    "save_tensors",
    "write_text",
    "load",
    "remove_stale_tmp",
    "environment",
    "run_info",
    "check_settings",
    "check_foreign",
    "stage_outputs",
    "commit_outputs",
    "recover_outputs",
]

CACHE_VERSION = 3
"""Bumped when the cache layout or the meaning of a cached value changes."""

OUTPUT_FILES = ("results.csv", "summary.csv", "summary.md", "summary.tex", "run.json")
"""The files a run writes into its output folder (``run.json`` last)."""

HOST = re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname()) or "host"
STALE_TMP_SECONDS = 24 * 3600
"""A temporary file of another machine (shared folder) is taken as stale after a day."""
_TMP = re.compile(r"^\.(?P<name>.+)\.(?P<host>[A-Za-z0-9-]+)\.(?P<pid>\d+)\.tmp$")


class RunConflictError(RuntimeError):
    """The output folder holds results made with other settings, or another run holds it."""


def _hash_tensor(t: Tensor) -> dict:
    h = hashlib.sha256()
    hash_tensor(h, t)
    return {"tensor": h.hexdigest()[:16]}


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
    h = hashlib.sha256()
    for key, t in sorted(state.items()):
        h.update(key.encode())
        hash_tensor(h, t)
    return {**out, "weights": h.hexdigest()[:16]}


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
    plain = (type(None), bool, int, float, str, bytes, tuple, frozenset)
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


def _fields(value: Any) -> dict[str, Any]:
    """Public init fields of a dataclass (minus ``runtime_fields``) or public attributes."""
    if dataclasses.is_dataclass(value):
        skip = set(getattr(value, "runtime_fields", ()))
        fields = (f.name for f in dataclasses.fields(value) if f.init and f.name not in skip)
        return {k: getattr(value, k) for k in fields if not k.startswith("_")}
    return {k: v for k, v in sorted(vars(value).items()) if not k.startswith("_")}


def fingerprint(
    value: Any, path: str, model: nn.Module | None = None, seen: frozenset | set = frozenset()
) -> Any:
    """JSON that changes whenever ``value`` could make a method, metric or model behave
    otherwise: floats exactly (``repr``), tensors by content, modules by their path in
    ``model`` (:func:`module_identity`), functions by their code, dataclasses and objects
    by their public fields.

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
    if isinstance(value, Tensor):
        return _hash_tensor(value)
    if isinstance(value, np.ndarray):
        return _hash_tensor(torch.from_numpy(np.ascontiguousarray(value)))
    if isinstance(value, torch.Generator):
        return _hash_tensor(value.get_state())
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
    if hasattr(value, "__func__") and hasattr(value, "__self__"):  # bound methods
        return {
            "method": fingerprint(value.__func__, path, model, seen),
            "self": fingerprint(value.__self__, f"{path}.__self__", model, seen),
        }
    if callable(value) and type(value).__module__ == "builtins":  # builtin functions
        return f"{getattr(value, '__module__', None)}.{value.__qualname__}"
    if dataclasses.is_dataclass(value) or (
        hasattr(value, "__dict__") and type(value).__module__ != "builtins"
    ):
        fields = _fields(value).items()
        return {
            "type": _type_name(value),
            **{k: fingerprint(v, f"{path}.{k}", model, seen) for k, v in fields},
        }
    raise TypeError(
        f"{path} is a {_type_name(value)}, which the experiment cache cannot fingerprint "
        "(its effect on the maps is unknown); make it a number, string, tensor, dataclass or "
        "plain function, or give the method a cache_settings() method that returns what its "
        "maps depend on"
    )


def method_key(method: Any, model: nn.Module | None = None) -> dict:
    """The settings that determine a method's maps, as JSON (its part of the cache key and
    of ``run.json``): ``method.cache_settings()`` where declared; a plain function by its
    code, defaults and closure; a dataclass by its init fields minus ``name``, private
    fields and ``runtime_fields`` (speed and display knobs); another object by its public
    attributes. Values are keyed by :func:`fingerprint`.

    Raises:
        TypeError: a setting that cannot be fingerprinted (the message names it).
    """
    path = f"method {getattr(method, 'name', None) or type(method).__qualname__!r}"
    if hasattr(method, "__code__"):
        return {"type": "function", **_function_key(method, path, set(), model)}
    own = getattr(method, "cache_settings", None)
    if callable(own):
        values = dict(own())
    elif dataclasses.is_dataclass(method) or hasattr(method, "__dict__"):
        values = {k: v for k, v in _fields(method).items() if k != "name"}
    else:
        raise TypeError(
            f"{path} ({type(method).__qualname__}) has no fields the cache can key; "
            "make it a dataclass or give it a cache_settings() method"
        )
    settings = {k: fingerprint(v, f"{path}.{k}", model) for k, v in values.items()}
    return {"type": _type_name(method), **settings}


def model_fingerprint(model: nn.Module, *, strict: bool = True) -> str:
    """``name:hash`` of a model's behaviour as far as it can be known: its ``name`` (or
    class), every parameter and buffer, ``input_normalization``, and every module's class
    and public non-tensor attributes (``training`` included). Hooks are not seen.

    Raises:
        TypeError: with ``strict``, an attribute that cannot be fingerprinted (the message
            names it; pass ``model_id`` to the runner to name the model yourself).
    """
    h = hashlib.sha256(repr(getattr(model, "input_normalization", None)).encode())
    for key, t in [
        *model.named_parameters(remove_duplicate=False),
        *model.named_buffers(remove_duplicate=False),
    ]:
        h.update(key.encode())
        hash_tensor(h, t)
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


def source_hash(root: str | os.PathLike | None = None) -> str:
    """16 hex digits of a SHA-256 of every ``.py`` file under ``root`` (default: the
    ``fame_utils`` package) by relative path and content: the code version in every key."""
    if root is None:
        return _package_hash()
    h = hashlib.sha256()
    for p in sorted(Path(root).rglob("*.py")):
        h.update(p.relative_to(root).as_posix().encode() + b"\0")
        h.update(p.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@functools.cache
def _package_hash() -> str:
    return source_hash(Path(__file__).resolve().parents[1])


def digest(obj: Any) -> str:
    """12 hex digits of the SHA-256 of ``obj`` as sorted JSON."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def slug(name: str) -> str:
    """A file-name-safe lower-case form of a display name (``"FAME (paper)"`` → ``fame-paper``)."""
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "method"


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


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale_tmp(folder: Path) -> None:
    """Delete the temporary files killed writers left in ``folder`` (a process of this
    machine that no longer runs, or another machine's over a day ago)."""
    for p in folder.glob(".*.tmp") if folder.is_dir() else ():
        m = _TMP.match(p.name)
        if m is None:
            continue
        if m["host"] == HOST:
            stale = int(m["pid"]) != os.getpid() and not _pid_alive(int(m["pid"]))
        else:
            try:
                stale = time.time() - p.stat().st_mtime > STALE_TMP_SECONDS
            except FileNotFoundError:
                continue
        if stale:
            p.unlink(missing_ok=True)


def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        git = ["git", "-C", str(root)]
        run = functools.partial(subprocess.run, capture_output=True, text=True, timeout=10)
        commit = run([*git, "rev-parse", "HEAD"], check=True).stdout.strip()
        dirty = run([*git, "status", "--porcelain", "--untracked-files=no"], check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("-dirty" if dirty.stdout.strip() else "")


def environment(device: torch.device) -> dict[str, Any]:
    """The software and machine settings that can move the numbers (code and torch
    versions, device, ``torch.get_num_threads()``)."""
    from .. import __version__

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    return {
        "code": {"package": __version__, "sources": source_hash(), "git": _git_commit()},
        "torch": torch.__version__,
        "device_type": device.type,
        "device_name": name,
        "threads": torch.get_num_threads(),
    }


def run_info(world_size: int, device: torch.device, **extra: Any) -> dict[str, Any]:
    """The informative part of ``run.json`` (under ``run``; not compared between runs)."""
    return {
        "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "device": str(device),
        "world_size": world_size,
        "python": platform.python_version(),
        **extra,
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


def check_settings(out: Path, settings: dict, overwrite: bool) -> None:
    """Refuse to write into ``out`` when its ``run.json`` holds other ``settings`` (the
    message lists the differences), unless ``overwrite``.

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
    diff = _differences(old, json.loads(json.dumps(settings)))  # tuples compare as lists
    if diff:
        shown = "; ".join(diff[:8]) + (f"; and {len(diff) - 8} more" if len(diff) > 8 else "")
        raise RunConflictError(
            f"{out} holds results made with other settings ({shown}). Choose another output "
            "folder, or pass overwrite=True (--overwrite) to replace them"
        )


def check_foreign(out: Path) -> None:
    """Refuse a folder with result files but no ``run.json`` (never overwritten).

    Raises:
        RunConflictError: naming the files.
    """
    found = [n for n in OUTPUT_FILES if (out / n).exists()]
    if found and not (out / "run.json").is_file():
        raise RunConflictError(
            f"{out} holds {', '.join(found)} but no run.json, so they are not results of "
            "this package that it may replace; move them away or choose another output folder"
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


def recover_outputs(out: Path) -> None:
    """With the lock held: move in a staging folder a killed run left complete (it holds
    ``run.json``), remove any other."""
    staging = out / ".staging"
    if (staging / "run.json").is_file():
        warnings.warn(f"completing the outputs a killed run left in {staging}", stacklevel=3)
        commit_outputs(out, staging)
    shutil.rmtree(staging, ignore_errors=True)


class OutputLock:
    """Exclusive right to write ``out``'s results: an ``fcntl.flock`` on ``out/.lock``,
    released by the kernel if the process dies.

    Raises:
        RunConflictError: another live run holds the folder (the message names it).
    """

    def __init__(self, out: Path):
        self.path = Path(out) / ".lock"
        self._fd: int | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(10):
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                try:
                    host, pid = self.path.read_text(encoding="utf-8").split()[:2]
                    owner = f"process {int(pid)} on {host}"
                except (OSError, ValueError):
                    owner = "an unknown process"
                raise RunConflictError(
                    f"{self.path.parent} is being written by {owner} ({self.path}). "
                    "Wait for it or choose another output folder"
                ) from None
            try:  # the file may have been removed and recreated by a releasing holder
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                os.ftruncate(fd, 0)
                os.write(fd, f"{HOST} {os.getpid()}\n".encode())
                self._fd = fd
                return
            os.close(fd)
        raise RunConflictError(f"could not take {self.path}; run again")

    def release(self) -> None:
        if self._fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None
