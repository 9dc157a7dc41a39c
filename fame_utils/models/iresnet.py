"""IResNet face embedders (112 × 112 → 512-D) in the AdaFace and InsightFace ArcFace layouts.

The FAME paper (Zhang & Günther 2026; face-verification experiments, Fig. 3) explains AdaFace
IResNet-18/50/101 models. IResNet ("improved residual network", Duta et al. 2020, as used by ArcFace) differs from
the ImageNet ResNet in three ways that matter here: a 3 × 3 stride-1 stem, pre-activation blocks
``BN → conv3 → BN → PReLU → conv3(stride) → BN`` added to a shortcut, and a head that keeps the
spatial layout: ``BN2d → Dropout → Flatten → Linear(512·7·7 → 512) → BN1d``. At 112 × 112 the
four stages (64, 128, 256, 512 channels, each starting with stride 2) give 56, 28, 14 and 7 px.

Units per stage: 18 = [2, 2, 2, 2], 34 = [3, 4, 6, 3], 50 = [3, 4, 14, 3],
100 = [3, 13, 30, 3]. **IResNet-101** is AdaFace's ``ir_101``: AdaFace builds it as its
100-layer backbone (``IR_101`` → ``Backbone(input_size, 100, 'ir')``), so ``"iresnet101"`` has
exactly the units (and checkpoint keys) of ``"iresnet100"``; both names are accepted.

The two public code bases compute the same function but name (and in one place structure) the
layers differently, so each has its own module here, with the checkpoint key names of the
originals:

==============  =====================================  ======================================
part            ``layout="adaface"``                   ``layout="arcface"`` (arcface_torch)
==============  =====================================  ======================================
stem            ``input_layer.{0 conv,1 bn,2 prelu}``  ``conv1``, ``bn1``, ``prelu``
units           ``body.{i}.res_layer.{0..5}`` =        ``layer{s}.{j}.{bn1,conv1,bn2,prelu,``
                bn, conv, bn, prelu, conv, bn           ``conv2,bn3}``
shortcut        ``body.{i}.shortcut_layer.{0,1}``      ``layer{s}.0.downsample.{0,1}``
                (conv1×1+bn) when channels change;     (conv1×1+bn) in every stage's first
                a 1 × 1 stride-s max pool (i.e.        unit (stride 2)
                subsampling) in stage 1's first unit
head            ``output_layer.{0 bn2d,1 dropout,``    ``bn2``, ``dropout``, ``fc``,
                ``2 flatten,3 linear,4 bn1d}``,        ``features`` (BN1d with γ/β)
                BN1d without γ/β
input order     BGR (cv2)                               RGB
==============  =====================================  ======================================

Both normalise (x − 0.5)/0.5 (done by the wrapper of :func:`fame_utils.models.load_face_model`;
the modules here take normalised input) and return the *unnormalised* 512-D embedding (AdaFace's
``Backbone`` also returns the L2-normalised vector and its norm; cosine similarity is unaffected).
The channel flip to BGR happens inside the AdaFace module (``channel_order="bgr"``), so callers
always pass RGB. Dropout is inactive in eval mode.
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
_EMBEDDING = 512
_SPATIAL = 7  # 112 / 2**4
_BN_EPS = 1e-5


def iresnet_units(depth: int) -> tuple[int, int, int, int]:
    """Residual units per stage for ``depth`` (101 → AdaFace ``ir_101`` = the 100-layer units)."""
    key = IRESNET_ALIASES.get(depth, depth)
    if key not in IRESNET_UNITS:
        known = sorted([*IRESNET_UNITS, *IRESNET_ALIASES])
        raise ValueError(f"unknown IResNet depth {depth}; choose one of {known}")
    return IRESNET_UNITS[key]


def _conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


def _projection(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout, eps=_BN_EPS)
    )


class _IResNetBase(nn.Module):
    """Shared behaviour: channel order, ``embedding_size``, forward = stem → units → head.

    Subclasses define ``_stem``, ``_units_seq`` (an iterable of units) and ``_head``.
    """

    input_size = 112
    embedding_size = _EMBEDDING

    def __init__(self, depth: int, channel_order: str):
        super().__init__()
        if channel_order not in ("rgb", "bgr"):
            raise ValueError(f"channel_order must be 'rgb' or 'bgr', got {channel_order!r}")
        self.depth = depth
        self.channel_order = channel_order

    def _stem(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _head(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def unit_list(self) -> list[nn.Module]:  # pragma: no cover - abstract
        """All residual units in forward order."""
        raise NotImplementedError

    def feature_map(self, x: Tensor) -> Tensor:
        """Normalised RGB input (B, 3, 112, 112) → last unit's map (B, 512, 7, 7)."""
        if self.channel_order == "bgr":
            x = x.flip(1)
        x = self._stem(x)
        for unit in self.unit_list():
            x = unit(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        """Normalised RGB input (B, 3, 112, 112), (x − 0.5)/0.5 → embeddings (B, 512)."""
        return self._head(self.feature_map(x))

    def extra_repr(self) -> str:
        return f"depth={self.depth}, channel_order={self.channel_order!r}"


# --------------------------------------------------------------------------------------------
# AdaFace layout (mk-minchul/AdaFace net.py key names)
# --------------------------------------------------------------------------------------------


class _AdaFaceUnit(nn.Module):
    """AdaFace ``BasicBlockIR``: ``res_layer(x) + shortcut_layer(x)``."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(cin, eps=_BN_EPS),
            _conv3(cin, cout),
            nn.BatchNorm2d(cout, eps=_BN_EPS),
            nn.PReLU(cout),
            _conv3(cout, cout, stride),
            nn.BatchNorm2d(cout, eps=_BN_EPS),
        )
        # same width: subsample by a 1×1 max pool (a no-op at stride 1); else project
        self.shortcut_layer: nn.Module = (
            nn.MaxPool2d(1, stride) if cin == cout else _projection(cin, cout, stride)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IResNetAdaFace(_IResNetBase):
    """IResNet with AdaFace's module names; expects BGR unless ``channel_order="rgb"``.

    Input: normalised (B, 3, 112, 112) **RGB** (the module flips to BGR itself); output
    (B, 512) unnormalised embeddings. Last conv block: ``body[-1]``.
    """

    def __init__(self, depth: int = 50, channel_order: str = "bgr", dropout: float = 0.4):
        super().__init__(depth, channel_order)
        self.input_layer = nn.Sequential(
            _conv3(3, _WIDTHS[0]), nn.BatchNorm2d(_WIDTHS[0], eps=_BN_EPS), nn.PReLU(_WIDTHS[0])
        )
        units: list[nn.Module] = []
        cin = _WIDTHS[0]
        for width, n in zip(_WIDTHS, iresnet_units(depth)):
            for j in range(n):
                units.append(_AdaFaceUnit(cin, width, 2 if j == 0 else 1))
                cin = width
        self.body = nn.Sequential(*units)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(cin, eps=_BN_EPS),
            nn.Dropout(dropout),
            nn.Flatten(),
            nn.Linear(cin * _SPATIAL * _SPATIAL, _EMBEDDING),
            nn.BatchNorm1d(_EMBEDDING, eps=_BN_EPS, affine=False),
        )

    def _stem(self, x: Tensor) -> Tensor:
        return self.input_layer(x)

    def unit_list(self) -> list[nn.Module]:
        return list(self.body)

    def _head(self, x: Tensor) -> Tensor:
        return self.output_layer(x)

    @property
    def last_block_name(self) -> str:
        return f"body.{len(self.body) - 1}"


# --------------------------------------------------------------------------------------------
# InsightFace arcface_torch layout (backbones/iresnet.py key names)
# --------------------------------------------------------------------------------------------


class _ArcFaceUnit(nn.Module):
    """arcface_torch ``IBasicBlock``: bn1 → conv1 → bn2 → prelu → conv2(stride) → bn3, + id."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin, eps=_BN_EPS)
        self.conv1 = _conv3(cin, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=_BN_EPS)
        self.prelu = nn.PReLU(cout)
        self.conv2 = _conv3(cout, cout, stride)
        self.bn3 = nn.BatchNorm2d(cout, eps=_BN_EPS)
        self.downsample = _projection(cin, cout, stride) if stride != 1 or cin != cout else None

    def forward(self, x: Tensor) -> Tensor:
        y = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return y + (x if self.downsample is None else self.downsample(x))


class IResNetArcFace(_IResNetBase):
    """IResNet with InsightFace ``arcface_torch`` module names; RGB input.

    Input: normalised (B, 3, 112, 112) RGB; output (B, 512) unnormalised embeddings.
    Last conv block: ``layer4[-1]``.
    """

    def __init__(self, depth: int = 50, channel_order: str = "rgb", dropout: float = 0.0):
        super().__init__(depth, channel_order)
        self.conv1 = _conv3(3, _WIDTHS[0])
        self.bn1 = nn.BatchNorm2d(_WIDTHS[0], eps=_BN_EPS)
        self.prelu = nn.PReLU(_WIDTHS[0])
        cin = _WIDTHS[0]
        for s, (width, n) in enumerate(zip(_WIDTHS, iresnet_units(depth)), start=1):
            stage = [
                _ArcFaceUnit(cin if j == 0 else width, width, 2 if j == 0 else 1) for j in range(n)
            ]
            self.add_module(f"layer{s}", nn.Sequential(*stage))
            cin = width
        self.bn2 = nn.BatchNorm2d(cin, eps=_BN_EPS)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(cin * _SPATIAL * _SPATIAL, _EMBEDDING)
        self.features = nn.BatchNorm1d(_EMBEDDING, eps=_BN_EPS)

    def _stem(self, x: Tensor) -> Tensor:
        return self.prelu(self.bn1(self.conv1(x)))

    def unit_list(self) -> list[nn.Module]:
        return [u for s in range(1, 5) for u in self.get_submodule(f"layer{s}")]

    def _head(self, x: Tensor) -> Tensor:
        x = self.dropout(self.bn2(x).flatten(1))
        return self.features(self.fc(x))

    @property
    def last_block_name(self) -> str:
        return f"layer4.{len(self.get_submodule('layer4')) - 1}"


def build_iresnet(depth: int, layout: str) -> IResNetAdaFace | IResNetArcFace:
    """A randomly initialised IResNet of ``depth`` (18, 34, 50, 100, 101) in ``layout``
    (``"adaface"``: BGR, AdaFace key names; ``"arcface"``: RGB, arcface_torch key names),
    in eval mode on the CPU."""
    if layout == "adaface":
        return IResNetAdaFace(depth).eval()
    if layout == "arcface":
        return IResNetArcFace(depth).eval()
    raise ValueError(f"unknown IResNet layout {layout!r}; choose 'adaface' or 'arcface'")
