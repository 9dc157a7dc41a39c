"""What every model loader shares: :class:`NormalizedModel` (``fame_utils.wrap``), the device
choice and the checkpoint reader :func:`read_checkpoint` with :func:`load_strict`."""

from __future__ import annotations

import importlib.util
import os
import pickle
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models import VisionTransformer

from ..objectives import default_target_layer


def pick_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a :class:`torch.device`; ``None`` picks CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def package_file(package: str, relative: str, install: str) -> Path:
    """Path of the data file ``relative`` inside the installed ``package`` (not imported);
    FileNotFoundError, saying ``install``, when the package or the file is missing."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{package} is not installed; {install}")
    path = Path(next(iter(spec.submodule_search_locations)), relative)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing; {install}")
    return path


def _triple(values: float | Sequence[float], name: str) -> tuple[float, float, float]:
    vals = (float(values),) * 3 if isinstance(values, (int, float)) else tuple(map(float, values))
    if len(vals) != 3:
        raise ValueError(f"{name} needs 3 values (one per RGB channel), got {vals}")
    return vals  # type: ignore[return-value]


class NormalizedModel(nn.Module):
    """``fame_utils.wrap``: ``model(x) = net((x − mean) / std)``, the [0, 1]-RGB model every
    method, the runner and the notebooks accept, in eval mode on ``net``'s device (not copied).
    FAME then steps in the normalised space, as the paper's code does for classification.

    Args:
        net: the network, taking normalised (B, 3, H, W) input.
        mean, std: its normalisation in [0, 1]-pixel units, one float or one per RGB channel.
        input_size: square side (pixels) the network expects.
        target_layer: dotted name inside ``net`` of the CAM layer; ``None`` recognises
            torchvision's common architectures (:func:`fame_utils.objectives.default_target_layer`).
        stages: optional ``{key: dotted name inside net}``; a torchvision ``VisionTransformer``
            gets ``"block1"`` … ``"block<L>"``, its ``image_size`` and ``patch_size``, ``token_grid``.
        resize_size: the resize before the centre crop to ``input_size`` (``load_sample_objects``).
        name: a short identifier (default: ``net``'s class name in lower case).
        **attributes: further plain attributes (e.g. ``categories``, ``embedding_size``).
    """

    def __init__(
        self,
        net: nn.Module,
        mean: float | Sequence[float],
        std: float | Sequence[float],
        *,
        input_size: int = 224,
        target_layer: str | None = None,
        stages: Mapping[str, str] | None = None,
        resize_size: int | None = None,
        name: str | None = None,
        **attributes: object,
    ):
        super().__init__()
        if isinstance(net, VisionTransformer):  # tokens (B, 1 + g², C), folded to g × g by the CAMs
            g = net.image_size // net.patch_size
            attributes = {"patch_size": net.patch_size, "token_grid": (g, g), **attributes}
            layers = [f"encoder.layers.{n}" for n, _ in net.encoder.layers.named_children()]
            stages = stages or {f"block{i + 1}": n for i, n in enumerate(layers)}
            input_size = net.image_size
        self.net = net
        m, s = _triple(mean, "mean"), _triple(std, "std")
        if min(s) <= 0:
            raise ValueError(f"std must be positive, got {s}")
        self.input_normalization = (m, s)
        self.register_buffer("_mean", torch.tensor(m).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(s).view(1, 3, 1, 1), persistent=False)
        self.input_size = int(input_size)
        self.resize_size = None if resize_size is None else int(resize_size)
        self.name = name or type(net).__name__.lower()
        if target_layer is None and (found := default_target_layer(net)) is not None:
            target_layer = next(n for n, mod in net.named_modules() if mod is found)
        self._target_layer_name = None if target_layer is None else self._checked_name(target_layer)
        self._stage_names = {k: self._checked_name(v) for k, v in (stages or {}).items()}
        for key, value in attributes.items():
            setattr(self, key, value)
        self.to(next((t.device for t in net.parameters()), torch.device("cpu"))).eval()

    def _checked_name(self, name: str) -> str:
        full = f"net.{name}" if name else "net"
        self.get_submodule(full)  # raises AttributeError for a wrong name
        return full

    @property
    def target_layer(self) -> nn.Module | None:
        """The layer whose output CAM methods use, or ``None`` when none was given or found."""
        name = self._target_layer_name
        return None if name is None else self.get_submodule(name)

    @property
    def stages(self) -> dict[str, nn.Module]:
        """``{key: module}`` blocks by output resolution (keys documented by the loader)."""
        return {k: self.get_submodule(v) for k, v in self._stage_names.items()}

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) [0, 1] RGB → ``net((x − mean) / std)`` (logits or embeddings), (B, ...)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(
                f"expected images of shape (B, 3, H, W) in [0, 1] RGB, got {tuple(x.shape)}"
            )
        return self.net((x - self._mean.to(x.dtype)) / self._std.to(x.dtype))

    def extra_repr(self) -> str:
        m, s = ([round(v, 4) for v in t] for t in self.input_normalization)
        return (
            f"name={self.name!r}, input_size={self.input_size}, resize_size={self.resize_size}, "
            f"mean={m}, std={s}, target_layer={self._target_layer_name!r}"
        )


#: :func:`fame_utils.wrap` (net, mean, std, *, target_layer=None, ...) is :class:`NormalizedModel`.
wrap = NormalizedModel


def checkpoint_path(checkpoint: object) -> Path | None:
    """``checkpoint`` as an expanded :class:`~pathlib.Path`, or None for an in-memory mapping."""
    return Path(checkpoint).expanduser() if isinstance(checkpoint, (str, os.PathLike)) else None


def _load_file(path: Path, weights_only: bool) -> object:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file not found: {path}")
    with open(path, "rb") as fh:
        head = fh.read(4)
    problem = "is neither a zip archive nor a pickle" if head else "is empty"
    try:
        if head[:1] == b"\x80" or head == b"PK\x03\x04":  # torch's legacy pickle or zip format
            return torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as err:
        if weights_only:
            raise ValueError(
                f"{path}: torch.load(weights_only=True) refused the file because it pickles "
                "Python objects besides tensors (typical of PyTorch Lightning .ckpt files). If "
                "you trust the file, pass weights_only=False.\n"
                f"(torch: {str(err).splitlines()[0]})"
            ) from err
        problem = f"could not be unpickled ({err})"
    except (RuntimeError, EOFError, OSError) as err:
        reason = str(err).splitlines()[0] if str(err) else "unexpected end of file"
        problem = f"is probably truncated or corrupt ({type(err).__name__}: {reason})"
    raise ValueError(f"checkpoint file {path} {problem}; save or download it again")


def read_checkpoint(
    checkpoint: str | os.PathLike[str] | Mapping, *, weights_only: bool = True
) -> dict[str, Tensor]:
    """A plain state dict (name → tensor; on the CPU for files) from a path or a mapping.

    Unwraps a Lightning ``"state_dict"`` entry and keeps only the keys under a ``model.`` prefix
    (AdaFace's Lightning module), stripped.

    Raises:
        FileNotFoundError: no such file.
        ValueError: an empty, corrupt or (with ``weights_only``) unsafe file; says what to do.
        TypeError: the content is not a mapping of tensors.
    """
    path = checkpoint_path(checkpoint)
    obj = checkpoint if path is None else _load_file(path, weights_only)
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise TypeError(
            "checkpoint must be a path or a state dict (a mapping of tensors, or a dict with a "
            f"'state_dict' entry), got {type(obj).__name__}{f' in {path}' if path else ''}"
        )
    state = {str(k): v for k, v in obj.items()}
    if any(k.startswith("model.") for k in state):
        state = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
    return state


def load_strict(net: nn.Module, state: Mapping[str, Tensor], what: str) -> None:
    """``load_state_dict(strict=True)``; ValueError naming the network (``what``) and listing
    torch's missing and unexpected keys and size mismatches."""
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise ValueError(f"checkpoint does not fit {what}: {err}") from None
