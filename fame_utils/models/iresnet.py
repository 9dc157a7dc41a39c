"""IResNet face embedders (112 × 112 → 512-D) with AdaFace's or InsightFace ArcFace's keys.

The FAME paper (Zhang & Günther 2026; face verification, Fig. 3 and Table 1) explains AdaFace
IResNets. IResNet (Duta et al. 2020, as in ArcFace) has a 3 × 3 stride-1 stem, pre-activation
units ``BN → conv3 → BN → PReLU → conv3(stride) → BN`` plus a shortcut, and a head
``BN2d → Dropout → Flatten → Linear(512·7·7 → 512) → BN1d``; its four stages (64, 128, 256, 512
channels, each starting with stride 2) give 56, 28, 14 and 7 px. Units per stage:
:data:`IRESNET_UNITS`; AdaFace's ``ir_101`` is built with the 100-layer units, so depth 101 is
the network (and checkpoint keys) of depth 100.

Checkpoint keys of the two public code bases, which compute the same function:

- AdaFace (:class:`IResNetAdaFace`; flips to BGR inside): stem ``input_layer.{0,1,2}`` (conv, BN,
  PReLU); units ``body.{i}.res_layer.{0..5}`` and ``body.{i}.shortcut_layer`` (1×1 conv + BN
  where the width changes, else a 1×1 stride-s max pool); head ``output_layer.{0..4}`` (BN2d,
  dropout, flatten, linear, BN1d without γ/β).
- InsightFace arcface_torch (:class:`IResNetArcFace`; RGB): stem ``conv1``, ``bn1``, ``prelu``;
  units ``layer{s}.{j}.{bn1,conv1,bn2,prelu,conv2,bn3}`` and ``layer{s}.0.downsample`` (1×1
  conv + BN in every stage's first unit); head ``bn2``, ``fc``, ``features`` (BN1d with γ/β).

Both modules take normalised RGB input, (x − 0.5)/0.5 (the wrapper of
:func:`fame_utils.load_face_model` applies it), and return the *unnormalised* embedding.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = [
    "IRESNET_UNITS",
    "IRESNET_ALIASES",
    "IResNetAdaFace",
    "IResNetArcFace",
    "build_iresnet",
    "iresnet_units",
]

#: Residual units per stage for each depth.
IRESNET_UNITS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
}
#: Depth names that map to another configuration (AdaFace's ``ir_101`` is its 100-layer net).
IRESNET_ALIASES: dict[int, int] = {101: 100}
_WIDTHS = (64, 128, 256, 512)


def iresnet_units(depth: int) -> tuple[int, int, int, int]:
    """Residual units per stage for ``depth`` (101 → AdaFace ``ir_101`` = the 100-layer units)."""
    key = IRESNET_ALIASES.get(depth, depth)
    if key not in IRESNET_UNITS:
        known = sorted([*IRESNET_UNITS, *IRESNET_ALIASES])
        raise ValueError(f"unknown IResNet depth {depth}; choose one of {known}")
    return IRESNET_UNITS[key]


def _units(depth: int) -> list[tuple[int, int, int]]:
    """(in channels, out channels, stride) of every residual unit, in forward order."""
    units, cin = [], _WIDTHS[0]
    for width, n in zip(_WIDTHS, iresnet_units(depth)):
        units += [(cin, width, 2)] + [(width, width, 1)] * (n - 1)
        cin = width
    return units


def _conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _projection(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))


def _branch(cin: int, cout: int, stride: int) -> list[nn.Module]:
    bn, prelu = nn.BatchNorm2d, nn.PReLU
    return [bn(cin), _conv3(cin, cout), bn(cout), prelu(cout), _conv3(cout, cout, stride), bn(cout)]


class _AdaFaceUnit(nn.Module):
    """AdaFace ``BasicBlockIR``: ``res_layer(x) + shortcut_layer(x)``."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.res_layer = nn.Sequential(*_branch(cin, cout, stride))
        same = cin == cout  # subsample by a 1×1 max pool (a no-op at stride 1); else project
        self.shortcut_layer = nn.MaxPool2d(1, stride) if same else _projection(cin, cout, stride)

    def forward(self, x: Tensor) -> Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class _ArcFaceUnit(nn.Module):
    """arcface_torch ``IBasicBlock``: bn1 → conv1 → bn2 → prelu → conv2 → bn3, + shortcut."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1, self.conv1, self.bn2, self.prelu, self.conv2, self.bn3 = _branch(
            cin, cout, stride
        )
        self.downsample = _projection(cin, cout, stride) if stride != 1 or cin != cout else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return y + (x if self.downsample is None else self.downsample(x))


class IResNetAdaFace(nn.Module):
    """IResNet with AdaFace's keys: normalised RGB (B, 3, 112, 112) → (B, 512) embeddings.

    Flips the input to BGR while ``channel_order == "bgr"`` (AdaFace trained on cv2 images).
    ``last_block_name`` (``body.{n-1}``) is the last unit, output (B, 512, 7, 7).
    """

    input_size, embedding_size = 112, 512

    def __init__(self, depth: int = 50):
        super().__init__()
        self.channel_order = "bgr"
        self.input_layer = nn.Sequential(_conv3(3, 64), nn.BatchNorm2d(64), nn.PReLU(64))
        self.body = nn.Sequential(*(_AdaFaceUnit(*unit) for unit in _units(depth)))
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(0.4),
            nn.Flatten(),
            nn.Linear(512 * 7 * 7, 512),
            nn.BatchNorm1d(512, affine=False),
        )
        self.last_block_name = f"body.{len(self.body) - 1}"

    def forward(self, x: Tensor) -> Tensor:
        x = x.flip(1) if self.channel_order == "bgr" else x
        return self.output_layer(self.body(self.input_layer(x)))


class IResNetArcFace(nn.Module):
    """IResNet with arcface_torch's keys: normalised RGB (B, 3, 112, 112) → (B, 512) embeddings.

    ``last_block_name`` (``layer4.{n-1}``) is the last unit, output (B, 512, 7, 7). (arcface_torch's
    ``dropout`` is p = 0 and holds no weights, so it is left out.)
    """

    input_size, embedding_size = 112, 512

    def __init__(self, depth: int = 50):
        super().__init__()
        self.conv1, self.bn1, self.prelu = _conv3(3, 64), nn.BatchNorm2d(64), nn.PReLU(64)
        units = _units(depth)
        self.layer1, self.layer2, self.layer3, self.layer4 = (
            nn.Sequential(*(_ArcFaceUnit(*u) for u in units if u[1] == width)) for width in _WIDTHS
        )
        self.bn2 = nn.BatchNorm2d(512)
        self.fc = nn.Linear(512 * 7 * 7, 512)
        self.features = nn.BatchNorm1d(512)
        self.last_block_name = f"layer4.{len(self.layer4) - 1}"

    def forward(self, x: Tensor) -> Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.features(self.fc(self.bn2(x).flatten(1)))


def build_iresnet(depth: int, layout: str) -> IResNetAdaFace | IResNetArcFace:
    """A randomly initialised IResNet of ``depth`` (18, 34, 50, 100, 101) in ``layout``
    (``"adaface"`` or ``"arcface"``), in eval mode on the CPU."""
    if layout not in ("adaface", "arcface"):
        raise ValueError(f"unknown IResNet layout {layout!r}; choose 'adaface' or 'arcface'")
    return (IResNetAdaFace if layout == "adaface" else IResNetArcFace)(depth).eval()
