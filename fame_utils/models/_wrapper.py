"""Normalise inside, expose the attributes FAME needs: :func:`wrap` for any network, and
:class:`NormalizedModel`, the base of every model loader:
``forward(x) = net((x − mean) / std)`` for x (B, 3, H, W) float [0, 1] RGB.

Layers are stored by dotted name and resolved on access, so ``state_dict`` has no duplicate
keys and ``copy.deepcopy`` points at the copy's layers. Parameters keep
``requires_grad=True``: hook-based methods (pytorch-grad-cam) need activations that require
gradients, and freezing measured no speed-up for input gradients (EfficientNet-Lite0, CPU).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from ..hooks import default_target_layer

__all__ = ["NormalizedModel", "pick_device", "wrap"]


def pick_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a :class:`torch.device`; ``None`` picks CUDA when available, else CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _triple(values: float | Sequence[float], name: str) -> tuple[float, float, float]:
    if isinstance(values, (int, float)):
        return (float(values),) * 3
    vals = tuple(float(v) for v in values)
    if len(vals) != 3:
        raise ValueError(f"{name} needs 3 values (one per RGB channel), got {vals}")
    return vals  # type: ignore[return-value]


class NormalizedModel(nn.Module):
    """``net`` behind an input normalisation, in eval mode, with the contract attributes.

    Args:
        net: the network; takes normalised (B, 3, H, W) input.
        mean, std: per-channel normalisation in [0, 1]-pixel units (x_n = (x − mean)/std);
            a single float is used for all three channels.
        input_size: square side (pixels) the network expects.
        target_layer: dotted name *inside* ``net`` of the layer CAM methods read; ``None``
            takes :func:`fame_utils.hooks.default_target_layer` of ``net`` where the
            architecture is recognised (else CAM methods ask for one).
        stages: optional ``{key: dotted name inside net}``.
        resize_size: shorter-side resize used before the centre crop (None: none, the
            images already come at ``input_size``).
        interpolation: the resize's interpolation, a :class:`torchvision.transforms.
            InterpolationMode` value (``"bilinear"``, or ``"bicubic"`` for torchvision's SWAG
            ViT weights).
        name: a short identifier (e.g. ``"efficientnet_lite0"``).
        **attributes: further plain attributes to set (e.g. ``categories``,
            ``embedding_size``).

    Input: (B, 3, H, W) float RGB, nominally in [0, 1] (values outside are accepted, as an
    optimisation iterate may leave the range), on the module's device. The range is not
    checked here, to keep the forward pass free of host synchronisation.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        mean: float | Sequence[float],
        std: float | Sequence[float],
        input_size: int,
        target_layer: str | None = None,
        stages: Mapping[str, str] | None = None,
        resize_size: int | None = None,
        interpolation: str = "bilinear",
        name: str | None = None,
        **attributes: object,
    ):
        super().__init__()
        self.net = net
        m, s = _triple(mean, "mean"), _triple(std, "std")
        if min(s) <= 0:
            raise ValueError(f"std must be positive, got {s}")
        self.input_normalization: tuple[tuple[float, float, float], tuple[float, float, float]] = (
            m,
            s,
        )
        self.register_buffer("_mean", torch.tensor(m).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("_std", torch.tensor(s).view(1, 3, 1, 1), persistent=False)
        self.input_size = int(input_size)
        self.resize_size = None if resize_size is None else int(resize_size)
        self.interpolation = str(interpolation)
        self.name = name
        if target_layer is None:
            found = default_target_layer(net)
            names = {id(m): n for n, m in net.named_modules()}
            target_layer = None if found is None else names[id(found)]
        self._target_layer_name = None if target_layer is None else self._checked_name(target_layer)
        self._stage_names = {k: self._checked_name(v) for k, v in (stages or {}).items()}
        for key, value in attributes.items():
            setattr(self, key, value)
        self.eval()

    def _checked_name(self, name: str) -> str:
        full = f"net.{name}" if name else "net"
        self.get_submodule(full)  # raises AttributeError for a wrong name
        return full

    @property
    def target_layer(self) -> nn.Module | None:
        """The layer whose output CAM methods use (a CNN's last convolutional block), or
        ``None`` when none was given or recognised."""
        name = self._target_layer_name
        return None if name is None else self.get_submodule(name)

    @property
    def stages(self) -> dict[str, nn.Module]:
        """``{key: module}`` blocks by output resolution (keys documented by the loader)."""
        return {k: self.get_submodule(v) for k, v in self._stage_names.items()}

    def normalize(self, x: Tensor) -> Tensor:
        """(x − mean) / std for (B, 3, H, W) [0, 1] RGB input; same shape, device, dtype."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(
                f"expected images of shape (B, 3, H, W) in [0, 1] RGB, got {tuple(x.shape)}"
            )
        return (x - self._mean.to(x.dtype)) / self._std.to(x.dtype)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) [0, 1] RGB → the network's output (logits or embeddings), (B, ...)."""
        return self.net(self.normalize(x))

    def transform(self):
        """torchvision transform for PIL images: Resize(``resize_size``) (shorter side, with
        ``interpolation``; skipped when ``resize_size`` is None), CenterCrop(``input_size``),
        ToTensor → (3, input_size, input_size) in [0, 1]."""
        from torchvision import transforms as T

        steps = []
        if self.resize_size is not None:
            mode = T.InterpolationMode(self.interpolation)
            steps.append(T.Resize(self.resize_size, interpolation=mode))
        steps += [T.CenterCrop(self.input_size), T.ToTensor()]
        return T.Compose(steps)

    def extra_repr(self) -> str:
        m, s = self.input_normalization
        return (
            f"name={self.name!r}, input_size={self.input_size}, resize_size={self.resize_size}, "
            f"interpolation={self.interpolation!r}, "
            f"mean={tuple(round(v, 4) for v in m)}, std={tuple(round(v, 4) for v in s)}, "
            f"target_layer={self._target_layer_name!r}"
        )


def wrap(
    net: nn.Module,
    mean: float | Sequence[float],
    std: float | Sequence[float],
    *,
    target_layer: str | None = None,
    input_size: int = 224,
    resize_size: int | None = None,
    stages: Mapping[str, str] | None = None,
    name: str | None = None,
    **attributes: object,
) -> NormalizedModel:
    """Make any network that expects normalised input the [0, 1]-RGB model every method,
    the runner and the notebooks accept: ``model(x) = net((x − mean) / std)``.

    FAME then steps in the network's normalised space, as the paper does for
    classification (``FameConfig(step_space="normalized")``, the default), and the CAM
    methods read ``target_layer``.

    .. code-block:: python

        net = torchvision.models.resnet50()
        net.load_state_dict(torch.load("resnet50-11ad3fa6.pth"))
        model = fame_utils.wrap(net, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))

    Args:
        net: the network, taking normalised (B, 3, H, W) input on its own device.
        mean, std: the normalisation it expects, in [0, 1]-pixel units (one float or three).
        target_layer: dotted name inside ``net`` of the CAM layer; ``None`` recognises
            torchvision's common architectures (:func:`fame_utils.hooks.default_target_layer`).
        input_size, resize_size, stages, name, attributes: as for :class:`NormalizedModel`.

    Returns:
        :class:`NormalizedModel` in eval mode on ``net``'s device (``net`` is not copied).
    """
    from torchvision.models import VisionTransformer

    if isinstance(net, VisionTransformer):  # the CAMs fold its patch tokens to this grid
        attributes.setdefault("token_grid", (net.image_size // net.patch_size,) * 2)
        input_size = net.image_size
    model = NormalizedModel(
        net,
        mean=mean,
        std=std,
        input_size=input_size,
        target_layer=target_layer,
        stages=stages,
        resize_size=resize_size,
        name=name or type(net).__name__.lower(),
        **attributes,
    )
    device = next((t.device for t in net.parameters()), torch.device("cpu"))
    return model.to(device)
