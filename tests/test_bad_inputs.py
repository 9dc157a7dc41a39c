"""Bad inputs to the API, the metrics and the loaders (issue 9), as one table.

Each row is ``(id, call, exception type, phrase of the message)``: the call must raise that
type with a message containing the phrase (a regular expression). A row whose call returns
is a *silent acceptance*; one that raises another type or message is *unclear*. Rows are
only ever added, so the count of silent acceptances can only go down.

``python tests/test_bad_inputs.py`` prints the clear / unclear / silent counts of the table
against whichever ``fame_utils`` is on the path (``PYTHONPATH=<checkout>``), which is how
the counts before and after a change are measured. The CLI's rows live with the CLI tests.

Item 7 of the issue (train mode) is no exception: every baseline and metric runs the model
in eval mode and restores each module's mode, checked for BatchNorm statistics at the end
of this file and in ``tests/test_baselines.py``.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from fame_utils import ClassLogit, CosineSimilarity
from fame_utils.baselines.cam import FullGrad, GradCAM, GradCAMElementWise, HiResCAM
from fame_utils.baselines.corrrise import CorrRISE
from fame_utils.baselines.fggb import FGGB
from fame_utils.data.imagenet import load_imagenet_val
from fame_utils.metrics.face import embed, face_deletion_insertion
from fame_utils.metrics.localization import iou_at_thresholds
from fame_utils.metrics.road import class_scores, removal_masks, road_scores

NAN = float("nan")


class Net(nn.Module):
    """Conv-BN-ReLU classifier with 6 outputs and a ``target_layer`` (also used as a 6-D
    face embedder)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.head = nn.Linear(8, 6)
        self.target_layer = self.block

    def forward(self, x):
        return self.head(self.block(self.features(x)).mean((2, 3)))


def _net() -> Net:
    return Net().eval()


def _x(b: int = 2, size: int = 16, dtype=torch.float32) -> torch.Tensor:
    return torch.rand(b, 3, size, size, generator=torch.Generator().manual_seed(1)).to(dtype)


def _refs(b: int = 2) -> torch.Tensor:
    return torch.randn(b, 6, generator=torch.Generator().manual_seed(2))


def _maps(b: int = 2, size: int = 16) -> torch.Tensor:
    return torch.rand(b, size, size, generator=torch.Generator().manual_seed(3))


def _faces(**kw):
    x = _x()
    return face_deletion_insertion(
        _net(), x, x.flip(0), [True, False], _maps(), percents=(0, 50, 100), **kw
    )


def _imagenet_with_box(box: str):
    """A one-image ImageNet folder whose annotation row holds ``box``."""
    root = Path(tempfile.mkdtemp(prefix="bad_inputs_imagenet_"))
    Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(root / "ILSVRC2012_val_00000001.JPEG")
    (root / "LOC_val_solution.csv").write_text(
        f"ImageId,PredictionString\nILSVRC2012_val_00000001,n01440764 {box}\n"
    )
    (root / "LOC_synset_mapping.txt").write_text("n01440764 tench\n")
    return load_imagenet_val(root, per_class=None, resize=40, crop=32)


def _imagenet_max_images(n: int):
    root = Path(tempfile.mkdtemp(prefix="bad_inputs_imagenet_"))
    for i in (1, 2):
        name = f"ILSVRC2012_val_{i:08d}"
        Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(root / f"{name}.JPEG")
    (root / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n"
        "ILSVRC2012_val_00000001,n01440764 1 2 30 20\n"
        "ILSVRC2012_val_00000002,n01440764 1 2 30 20\n"
    )
    (root / "LOC_synset_mapping.txt").write_text("n01440764 tench\n")
    return load_imagenet_val(root, per_class=None, max_images=n)


def _meta_images() -> torch.Tensor:
    return torch.empty(2, 3, 16, 16, device="meta")


def _over_one() -> torch.Tensor:
    x = _x()
    x[0, 0, 0, 0] = 1.0001
    return x


def _imagenet_rows(rows: str, **kw):
    root = Path(tempfile.mkdtemp(prefix="bad_inputs_imagenet_"))
    for i in (1, 2):
        name = f"ILSVRC2012_val_{i:08d}"
        Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(root / f"{name}.JPEG")
    (root / "LOC_val_solution.csv").write_text("ImageId,PredictionString\n" + rows)
    (root / "LOC_synset_mapping.txt").write_text("n01440764 tench\nn01443537 goldfish\n")
    data = load_imagenet_val(root, resize=40, crop=32, **kw)
    return [data[i] for i in range(len(data))]


def _truncated_image():
    from fame_utils.data.transforms import load_image

    path = Path(tempfile.mkdtemp(prefix="bad_inputs_image_")) / "cut.jpg"
    Image.fromarray(np.full((64, 64, 3), 99, np.uint8)).save(path, quality=90)
    path.write_bytes(path.read_bytes()[:300])
    return load_image(path)


def _fame_config(**kw):
    from fame_utils.core import FameConfig

    return FameConfig(**kw)


def _class_logit(targets):
    from fame_utils.objectives import ClassLogit

    return ClassLogit(targets)


def _fame(model=None, x=None, objective=None):
    from fame_utils.core import fame

    objective = objective if objective is not None else _class_logit([0, 1])
    return fame(model or _net(), _x() if x is None else x, objective, iterations=2, progress=False)


class _Returns(nn.Module):
    """``Net`` whose forward returns ``kind``: a tuple, a dict or NaN logits."""

    def __init__(self, kind: str):
        super().__init__()
        self.net, self.kind = _net(), kind

    def forward(self, x):
        z = self.net(x)
        if self.kind == "tuple":
            return z, z
        if self.kind == "dict":
            return {"logits": z}
        return z * NAN


def _nan_net():
    model = _Returns("nan").eval()
    model.target_layer = model.net.block
    return model


def _train_then_check(method: Callable, target) -> None:
    """Raise (like a refusal) if ``method`` changed a buffer or a module's mode."""
    model = Net().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    method(model, _x(), target)
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    if changed or not model.training:
        raise RuntimeError(f"changed {changed}, training={model.training}")


# (id, call, expected exception, phrase)
ROWS: list[tuple[str, Callable[[], object], type[BaseException], str]] = [
    # item 5: thresholds θ
    (
        "fggb-theta-nan",
        lambda: FGGB(threshold=NAN)(_net(), _x(), CosineSimilarity(_refs())),
        ValueError,
        r"\[-1, 1\]",
    ),
    (
        "fggb-theta-2",
        lambda: FGGB(threshold=2.0)(_net(), _x(), CosineSimilarity(_refs())),
        ValueError,
        r"\[-1, 1\]",
    ),
    (
        "fggb-theta--2",
        lambda: FGGB(threshold=-2.0)(_net(), _x(), CosineSimilarity(_refs())),
        ValueError,
        r"\[-1, 1\]",
    ),
    (
        "fggb-target-theta-nan",
        lambda: FGGB()(_net(), _x(), CosineSimilarity(_refs(), threshold=NAN)),
        ValueError,
        r"\[-1, 1\]",
    ),
    ("face-theta-nan", lambda: _faces(threshold=NAN), ValueError, r"\[-1, 1\]"),
    ("face-theta-5", lambda: _faces(threshold=5.0), ValueError, r"\[-1, 1\]"),
    # item 6: class indices
    *[
        (
            f"{cam.__name__}-class-{c}",
            lambda cam=cam, c=c: cam()(_net(), _x(), ClassLogit([0, c])),
            ValueError,
            r"class indices in \[0, ",
        )
        for cam in (GradCAM, GradCAMElementWise, HiResCAM, FullGrad)
        for c in (-1, 6)
    ],
    *[
        (
            f"corrrise-class-{c}",
            lambda c=c: CorrRISE(n_masks=4)(_net(), _x(), ClassLogit([0, c])),
            ValueError,
            r"class indices in \[0, ",
        )
        for c in (-1, 6)
    ],
    *[
        (
            f"road-label-{c}",
            lambda c=c: road_scores(_net(), _x(), [0, c], _maps(), [10]),
            ValueError,
            r"class indices in \[0, ",
        )
        for c in (-1, 6)
    ],
    # item 7: train mode leaves buffers and modes alone (a RuntimeError is the failure)
    *[
        (
            f"{name}-train-mode-unchanged",
            lambda method=method, target=target: _train_then_check(method, target),
            AssertionError,  # never raised: this row is clear when the call returns
            "",
        )
        for name, method, target in (
            ("gradcam", GradCAM(), ClassLogit([0, 1])),
            ("fullgrad", FullGrad(), ClassLogit([0, 1])),
            ("corrrise", CorrRISE(n_masks=4), ClassLogit([0, 1])),
            ("fggb", FGGB(threshold=0.1), CosineSimilarity(_refs())),
            (
                "class-scores",
                lambda m, x, t: class_scores(m, x, torch.tensor([0, 1])),
                None,
            ),
            ("embed", lambda m, x, t: embed(m, x), None),
        )
    ],
    # item 9: dtype, meta tensors, digits
    *[
        (
            f"{name}-{str(dtype)[6:]}",
            lambda call=call, dtype=dtype: call(_x(dtype=dtype)),
            TypeError,
            "float32",
        )
        for dtype in (torch.float64, torch.float16)
        for name, call in (
            ("gradcam", lambda x: GradCAM()(_net(), x, ClassLogit(0))),
            ("corrrise", lambda x: CorrRISE(n_masks=4)(_net(), x, ClassLogit(0))),
            ("fggb", lambda x: FGGB(threshold=0.1)(_net(), x, CosineSimilarity(_refs()))),
            ("road", lambda x: road_scores(_net(), x, [0, 1], _maps(), [10])),
            (
                "face",
                lambda x: face_deletion_insertion(
                    _net(), x, x.flip(0), [True, False], _maps(), threshold=0.5
                ),
            ),
        )
    ],
    ("gradcam-meta", lambda: GradCAM()(_net(), _meta_images(), ClassLogit(0)), ValueError, "meta"),
    (
        "road-meta",
        lambda: road_scores(_net(), _meta_images(), [0, 1], _maps(), [10]),
        ValueError,
        "meta",
    ),
    (
        "gradcam-1.0001",
        lambda: GradCAM()(_net(), _over_one(), ClassLogit(0)),
        ValueError,
        "1.0001",
    ),
    (
        "imagenet-reversed-box",
        lambda: _imagenet_with_box("30 20 1 2"),
        ValueError,
        r"csv:2.*reversed",
    ),
    ("imagenet-nan-box", lambda: _imagenet_with_box("1 nan 30 20"), ValueError, r"csv:2.*NaN"),
    ("imagenet-max-images--1", lambda: _imagenet_max_images(-1), ValueError, "max_images"),
    ("imagenet-max-images-0", lambda: _imagenet_max_images(0), ValueError, "max_images"),
    (
        "road-batch-size-0",
        lambda: road_scores(_net(), _x(), [0, 1], _maps(), [10], batch_size=0),
        ValueError,
        "batch_size",
    ),
    ("embed-batch-size-0", lambda: embed(_net(), _x(), batch_size=0), ValueError, "batch_size"),
    # item 10: IoU thresholds, maps, boxes
    *[
        (
            f"iou-threshold-{t}",
            lambda t=t: iou_at_thresholds(_maps(), torch.tensor([[2, 2, 9, 9]] * 2), [0.5, t]),
            ValueError,
            r"\[0, 1\]",
        )
        for t in (1.5, -0.1, NAN)
    ],
    (
        "iou-maps-over-one",
        lambda: iou_at_thresholds(2 * _maps(), torch.tensor([[2, 2, 9, 9]] * 2)),
        ValueError,
        r"\[0, 1\]",
    ),
    (
        "iou-box-outside",
        lambda: iou_at_thresholds(_maps(), torch.tensor([[2, 2, 9, 9], [30, 30, 40, 40]])),
        ValueError,
        "cover no pixel",
    ),
    # issue 18: booleans and truthy strings taken as numbers or switches
    ("fame-iterations-True", lambda: _fame_config(iterations=True), TypeError, "iterations"),
    ("fame-kernel-size-True", lambda: _fame_config(kernel_size=True), TypeError, "kernel_size"),
    (
        "fame-deterministic-no",
        lambda: _fame_config(deterministic="no"),
        TypeError,
        "deterministic must be True or",
    ),
    ("fame-progress-1", lambda: _fame_config(progress="yes"), TypeError, "progress"),
    ("class-logit-True", lambda: _class_logit(True), TypeError, "targets must be class"),
    ("class-logit-str", lambda: _class_logit(["cat", "dog"]), TypeError, "class names"),
    ("class-logit-float", lambda: _class_logit([0.5, 1.0]), TypeError, "whole numbers"),
    # issue 18: non-finite settings that change the meaning
    ("fame-sigma-inf", lambda: _fame_config(sigma=float("inf")), ValueError, "sigma.*finite"),
    ("fame-sigma-nan", lambda: _fame_config(sigma=NAN), ValueError, "sigma.*finite"),
    ("fame-early-stop-nan", lambda: _fame_config(early_stop=NAN), ValueError, "early_stop"),
    # issue 18: FAME runs the baselines' dtype check; model outputs; NaN from a model
    *[
        (
            f"fame-{str(dtype)[6:]}",
            lambda dtype=dtype: _fame(x=_x(dtype=dtype)),
            TypeError,
            "float32",
        )
        for dtype in (torch.float64, torch.float16, torch.bfloat16)
    ],
    ("fame-half-model", lambda: _fame(model=_net().half()), TypeError, "float16"),
    ("fame-model-tuple", lambda: _fame(model=_Returns("tuple")), TypeError, "returned a tuple"),
    ("fame-model-dict", lambda: _fame(model=_Returns("dict")), TypeError, r"keys \['logits'\]"),
    *[
        (
            f"{cam.__name__}-nan-model",
            lambda cam=cam: cam()(_nan_net(), _x(), ClassLogit([0, 1])),
            ValueError,
            "NaN or Inf for images",
        )
        for cam in (GradCAM, GradCAMElementWise, HiResCAM)
    ],
    (
        "corrrise-nan-model",
        lambda: CorrRISE(n_masks=4)(_nan_net(), _x(), ClassLogit([0, 1])),
        ValueError,
        "NaN or Inf for images",
    ),
    # issue 18: annotation inconsistencies and file problems name the file
    (
        "imagenet-duplicate-id",
        lambda: _imagenet_rows(
            "ILSVRC2012_val_00000001,n01440764 1 2 30 20\n"
            "ILSVRC2012_val_00000001,n01443537 1 2 30 20\n",
            per_class=None,
        ),
        ValueError,
        r"csv:3.*listed again",
    ),
    (
        "imagenet-box-outside",
        lambda: _imagenet_rows("ILSVRC2012_val_00000001,n01440764 60 45 80 70\n", per_class=None),
        ValueError,
        "covers no pixel",
    ),
    (
        "imagenet-per-class-0",
        lambda: _imagenet_rows("ILSVRC2012_val_00000001,n01440764 1 2 30 20\n", per_class=0),
        ValueError,
        "per_class",
    ),
    ("truncated-image", _truncated_image, ValueError, r"cut\.jpg.*truncated"),
    # already clear before the change (kept so they stay clear)
    ("removal-percent-150", lambda: removal_masks(_maps(), [150]), ValueError, r"\[0, 100\]"),
    (
        "gradcam-float-class",
        lambda: GradCAM()(_net(), _x(), ClassLogit(torch.tensor([0.5, 1.0]))),
        TypeError,
        "class indices",
    ),
    (
        "iou-maps-nan",
        lambda: iou_at_thresholds(_maps() * NAN, torch.zeros(2, 16, 16).bool()),
        ValueError,
        "NaN",
    ),
]


def classify(call: Callable[[], object], exc: type[BaseException], phrase: str) -> str:
    """``"clear"``, ``"unclear"`` (another exception or message) or ``"silent"``."""
    expects_return = exc is AssertionError and phrase == ""
    try:
        call()
    except Exception as e:  # noqa: BLE001 - classifying every outcome is the point
        if expects_return:
            return "silent" if isinstance(e, RuntimeError) and "changed" in str(e) else "unclear"
        return "clear" if isinstance(e, exc) and re.search(phrase, str(e)) else "unclear"
    return "clear" if expects_return else "silent"


@pytest.mark.filterwarnings("ignore::UserWarning")
@pytest.mark.parametrize("row_id, call, exc, phrase", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_is_refused_clearly(row_id, call, exc, phrase):
    if exc is AssertionError and phrase == "":
        call()  # train mode: returns without changing the model
        return
    with pytest.raises(exc, match=phrase):
        call()


def test_numpy_integer_labels_are_class_indices():
    from fame_utils.objectives import ClassLogit

    assert ClassLogit(np.int64(1)).targets == 1
    assert ClassLogit(np.array([0, 2], np.int32)).targets.tolist() == [0, 2]
    maps = _fame(objective=ClassLogit(np.int64(1)))
    assert maps.shape == (2, 16, 16) and bool(torch.isfinite(maps).all())


def test_rows_have_unique_ids():
    ids = [r[0] for r in ROWS]
    assert len(ids) == len(set(ids))


if __name__ == "__main__":
    import warnings

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    counts: dict[str, list[str]] = {"clear": [], "unclear": [], "silent": []}
    for row_id, call, exc, phrase in ROWS:
        counts[classify(call, exc, phrase)].append(row_id)
    for kind, ids in counts.items():
        print(f"{kind}: {len(ids)}" + (f"  {', '.join(ids)}" if kind != "clear" else ""))
