"""IResNet face embedders with AdaFace's or InsightFace arcface_torch's keys: normalised RGB
(B, 3, 112, 112) → (B, 512) unnormalised embeddings (architecture: ``docs/models.md``)."""

from __future__ import annotations

from torch import Tensor, nn

#: Residual units per stage for each depth (AdaFace's ``ir_101`` is the 100-layer network).
IRESNET_UNITS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    101: (3, 13, 30, 3),
}
_WIDTHS = (64, 128, 256, 512)


def _units(depth: int) -> list[tuple[int, int, int]]:
    """(in channels, out channels, stride) of every residual unit, in forward order."""
    units, cin = [], _WIDTHS[0]
    for width, n in zip(_WIDTHS, IRESNET_UNITS[depth]):
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
    """IResNet with AdaFace's keys; flips the input to BGR while ``channel_order == "bgr"``."""

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

    def forward(self, x: Tensor) -> Tensor:
        x = x.flip(1) if self.channel_order == "bgr" else x
        return self.output_layer(self.body(self.input_layer(x)))


class IResNetArcFace(nn.Module):
    """IResNet with arcface_torch's keys: normalised RGB (B, 3, 112, 112) → (B, 512) embeddings
    (arcface_torch's ``dropout`` is p = 0 and holds no weights, so it is left out)."""

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

    def forward(self, x: Tensor) -> Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.features(self.fc(self.bn2(x).flatten(1)))


def build_iresnet(depth: int, layout: str) -> IResNetAdaFace | IResNetArcFace:
    """A randomly initialised IResNet of ``depth`` (a key of :data:`IRESNET_UNITS`) in
    ``layout`` (``"adaface"`` or ``"arcface"``), in eval mode on the CPU."""
    return (IResNetAdaFace if layout == "adaface" else IResNetArcFace)(depth).eval()
