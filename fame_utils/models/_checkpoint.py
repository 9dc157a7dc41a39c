"""The one checkpoint reader every model loader uses: :func:`read_checkpoint`.

A checkpoint is a path to a ``torch.save``-d file or an in-memory mapping. The reader
unwraps the usual containers and prefixes and turns unreadable files into a ``ValueError``
that names the file and says what is wrong with it (empty, truncated/corrupt, or pickling
Python objects the safe loader refuses), instead of torch's generic advice to pass
``weights_only=False`` or a bare ``EOFError``.
"""

from __future__ import annotations

import os
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["read_checkpoint", "checkpoint_path", "load_strict"]

#: First byte of a pickle of protocol >= 2 (torch.save's legacy, non-zip format).
_PICKLE_PROTO = 0x80


def checkpoint_path(checkpoint: object) -> Path | None:
    """``checkpoint`` as an expanded :class:`~pathlib.Path`, or None for an in-memory mapping."""
    if isinstance(checkpoint, (str, os.PathLike)):
        return Path(checkpoint).expanduser()
    return None


def _load_file(path: Path, weights_only: bool) -> object:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"checkpoint file {path} is empty (0 bytes); save or download it again")
    with open(path, "rb") as fh:
        first = fh.read(1)[0]
    if not zipfile.is_zipfile(path) and first != _PICKLE_PROTO:
        raise ValueError(
            f"checkpoint file {path} ({size} bytes) is not a torch.save file: neither a zip "
            "archive nor a pickle (truncated download, wrong file, or corrupt); save or "
            "download it again"
        )
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as err:
        if not weights_only:
            raise ValueError(f"checkpoint file {path} could not be unpickled: {err}") from err
        raise ValueError(
            f"{path}: torch.load(weights_only=True) refused the file because it pickles "
            "Python objects besides tensors (typical of PyTorch Lightning .ckpt files with "
            "hyper-parameters). If you trust the file, pass weights_only=False, or load it "
            "yourself and pass checkpoint=torch.load(path, weights_only=False)['state_dict']."
            f"\n(torch: {str(err).splitlines()[0]})"
        ) from err
    except (RuntimeError, EOFError, OSError) as err:
        raise ValueError(
            f"checkpoint file {path} ({size} bytes) could not be read; it is probably "
            f"truncated or corrupt, so save or download it again ({type(err).__name__}: "
            f"{str(err).splitlines()[0] if str(err) else 'unexpected end of file'})"
        ) from err


def read_checkpoint(
    checkpoint: str | os.PathLike[str] | Mapping, *, weights_only: bool = True
) -> dict[str, Tensor]:
    """A plain state dict (name → tensor, on the CPU for files) from a path or a mapping.

    Unwraps a ``{"state_dict": ...}`` (PyTorch Lightning) or ``{"model": ...}`` container;
    when some keys start with ``model.`` (AdaFace's Lightning module), keeps only those and
    strips the prefix — the others (``head.kernel``, a training-time margin head) are not part
    of the network; strips a DataParallel ``module.`` prefix present on every key.

    Args:
        checkpoint: a path to a ``torch.save``-d file, or a mapping.
        weights_only: passed to :func:`torch.load`. Lightning checkpoints often pickle
            hyper-parameter objects that the safe loader refuses; pass ``False`` only for files
            you trust.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file is empty, truncated or corrupt, or pickles objects the safe
            loader refuses (the message names the file and says what to do).
        TypeError: the content is not a mapping of tensors.
    """
    path = checkpoint_path(checkpoint)
    if path is not None:
        obj: object = _load_file(path, weights_only)
    elif isinstance(checkpoint, Mapping):
        obj = checkpoint
    else:
        raise TypeError(
            "checkpoint must be a path or a state dict (a mapping of tensors), "
            f"got {type(checkpoint).__name__}"
        )
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    where = f" in {path}" if path is not None else ""
    if not isinstance(obj, Mapping):
        raise TypeError(
            "checkpoint must hold a state dict (or a dict with a 'state_dict'/'model' entry), "
            f"got {type(obj).__name__}{where}"
        )
    bad = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if bad:
        raise TypeError(f"checkpoint entries that are not tensors{where}: {bad[:8]}")
    state = {str(k): v for k, v in obj.items()}
    if any(k.startswith("model.") for k in state):
        state = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_strict(net: nn.Module, state: Mapping[str, Tensor], what: str) -> None:
    """``load_state_dict(strict=True)`` with a readable error listing what does not fit."""
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or shapes:

        def show(items: list[str]) -> str:
            extra = f" … (+{len(items) - 12} more)" if len(items) > 12 else ""
            return ", ".join(items[:12]) + extra

        parts = [f"checkpoint does not fit {what}:"]
        if missing:
            parts.append(f"  missing keys ({len(missing)}): {show(missing)}")
        if unexpected:
            parts.append(f"  unexpected keys ({len(unexpected)}): {show(unexpected)}")
        if shapes:
            parts.append(f"  shape mismatches ({len(shapes)}): {show(shapes)}")
        raise ValueError("\n".join(parts))
    net.load_state_dict(state, strict=True)
