"""The one checkpoint reader every model loader uses (:func:`read_checkpoint`), and
:func:`load_strict`, whose error says which keys and shapes do not fit.
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


def checkpoint_path(checkpoint: object) -> Path | None:
    """``checkpoint`` as an expanded :class:`~pathlib.Path`, or None for an in-memory mapping."""
    return Path(checkpoint).expanduser() if isinstance(checkpoint, (str, os.PathLike)) else None


def _load_file(path: Path, weights_only: bool) -> object:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise ValueError(f"checkpoint file {path} is empty (0 bytes); save or download it again")

    def corrupt(what: str) -> ValueError:
        return ValueError(
            f"checkpoint file {path} ({size} bytes) {what}; save or download it again"
        )

    with open(path, "rb") as fh:
        pickled = fh.read(1) == b"\x80"  # a pickle of protocol >= 2 (torch's legacy format)
    if not (pickled or zipfile.is_zipfile(path)):
        raise corrupt(
            "is neither a zip archive nor a pickle (truncated, corrupt or not torch.save)"
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
        reason = str(err).splitlines()[0] if str(err) else "unexpected end of file"
        raise corrupt(f"is probably truncated or corrupt ({type(err).__name__}: {reason})") from err


def read_checkpoint(
    checkpoint: str | os.PathLike[str] | Mapping, *, weights_only: bool = True
) -> dict[str, Tensor]:
    """A plain state dict (name → tensor; on the CPU for files) from a path or a mapping.

    Unwraps a ``{"state_dict": ...}`` (PyTorch Lightning) or ``{"model": ...}`` container; when
    some keys start with ``model.`` (AdaFace's Lightning module) keeps only those, without the
    prefix (the others, e.g. ``head.kernel``, are the training-time margin head); strips a
    DataParallel ``module.`` prefix present on every key. ``weights_only`` goes to
    :func:`torch.load`: pass ``False`` only for files you trust.

    Raises:
        FileNotFoundError: the path does not exist.
        ValueError: the file is empty, truncated or corrupt, or pickles objects the safe
            loader refuses (the message names the file and says what to do).
        TypeError: the content is not a mapping of tensors.
    """
    path = checkpoint_path(checkpoint)
    if path is None and not isinstance(checkpoint, Mapping):
        raise TypeError(
            "checkpoint must be a path or a state dict (a mapping of tensors), "
            f"got {type(checkpoint).__name__}"
        )
    obj = checkpoint if path is None else _load_file(path, weights_only)
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
    if bad := [k for k, v in obj.items() if not isinstance(v, Tensor)]:
        raise TypeError(f"checkpoint entries that are not tensors{where}: {bad[:8]}")
    state = {str(k): v for k, v in obj.items()}
    if any(k.startswith("model.") for k in state):
        state = {k[len("model.") :]: v for k, v in state.items() if k.startswith("model.")}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def load_strict(net: nn.Module, state: Mapping[str, Tensor], what: str) -> None:
    """``load_state_dict(strict=True)`` whose ValueError lists the missing and unexpected keys
    and the shape mismatches (12 of each), saying which network (``what``) they do not fit."""
    own = net.state_dict()
    problems = {
        "missing keys": [k for k in own if k not in state],
        "unexpected keys": [k for k in state if k not in own],
        "shape mismatches": [
            f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(v.shape)}"
            for k, v in own.items()
            if k in state and state[k].shape != v.shape
        ],
    }
    if any(problems.values()):
        lines = [
            f"  {kind} ({len(items)}): {', '.join(items[:12])}{' …' * (len(items) > 12)}"
            for kind, items in problems.items()
            if items
        ]
        raise ValueError("\n".join([f"checkpoint does not fit {what}:", *lines]))
    net.load_state_dict(state, strict=True)
