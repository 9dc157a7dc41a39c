"""Experiment runner: caching, resume after an interruption, invalidation, tables."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from fame_utils import Attribution, ClassLogit, CosineSimilarity, Fame
from fame_utils.core import FameConfig
from fame_utils.data.items import ClassificationDataset, PairDataset
from fame_utils.experiment.result import summary_latex, summary_markdown
from fame_utils.experiment.run import run_experiment
from fame_utils.methods import make_methods
from fame_utils.metrics.adapters import FaceDeleteInsertMetric, IoUMetric, RoadMetric
from fame_utils.metrics.face import face_deletion_insertion
from fame_utils.metrics.localization import iou_at_thresholds
from fame_utils.metrics.road import road_scores


class Interrupted(RuntimeError):
    pass


@dataclass
class InputGradient:
    """|∂z_y/∂x| summed over colours, max-normalised; counts calls and can fail after
    ``fail_after`` calls (to simulate a killed run)."""

    scale: float = 1.0
    name: str = "grad"
    fail_after: int | None = None
    calls: int = 0

    def __call__(self, model, images, target):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise Interrupted("simulated crash")
        self.calls += 1
        x = images.clone().requires_grad_(True)
        if isinstance(target, ClassLogit):
            z = model(x).gather(1, target.indices(len(x)).to(x.device)[:, None]).sum()
        else:
            z = nn.functional.cosine_similarity(model(x), target.references, dim=1).sum()
        (g,) = torch.autograd.grad(z, x)
        m = (g.abs().sum(1) * self.scale).clamp_min(0)
        return Attribution(m / m.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1))


# "calls" and "fail_after" are bookkeeping, not settings: keep them out of the cache key
InputGradient.runtime_fields = frozenset({"calls", "fail_after"})


@pytest.fixture
def classification_data():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(7, 3, 16, 16, generator=g)
    boxes = torch.tensor([[2.0, 3.0, 12.0, 11.0]] * 4 + [[0.0, 0.0, 8.0, 16.0]] * 3)
    return ClassificationDataset(images, [0, 1, 2, 3, 4, 0, 1], boxes=boxes)


def _metrics():
    return [IoUMetric(), RoadMetric(), RoadMetric(mode="noisy_linear", percents=(20,))]


def test_interrupted_run_resumes_with_identical_results(tmp_path, tiny_cnn, classification_data):
    fame = Fame(FameConfig(iterations=2, progress=False))
    full = run_experiment(
        tiny_cnn,
        classification_data,
        [InputGradient(), fame],
        _metrics(),
        tmp_path / "full",
        batch_size=2,
        progress=False,
    )
    crashing = InputGradient(fail_after=2)
    with pytest.raises(Interrupted):
        run_experiment(
            tiny_cnn,
            classification_data,
            [crashing, fame],
            _metrics(),
            tmp_path / "resumed",
            batch_size=2,
            progress=False,
        )
    cache = full.cache_dirs["grad"].name
    done = sorted(p.name for p in (tmp_path / "resumed" / "cache" / cache).glob("batch_*.pt"))
    assert done == ["batch_00000.pt", "batch_00001.pt"]
    assert not list((tmp_path / "resumed").rglob("*.tmp"))  # nothing half-written
    again = InputGradient()
    res = run_experiment(
        tiny_cnn,
        classification_data,
        [again, fame],
        _metrics(),
        tmp_path / "resumed",
        batch_size=2,
        progress=False,
    )
    assert again.calls == 2  # only the 2 missing batches of 4
    assert res.computed_batches == {"grad": 2, "FAME": 4}
    assert (tmp_path / "full" / "results.csv").read_bytes() == (
        tmp_path / "resumed" / "results.csv"
    ).read_bytes()
    # a third run recomputes nothing (maps nor metrics) and writes the same files
    third = InputGradient()
    res3 = run_experiment(
        tiny_cnn,
        classification_data,
        [third, fame],
        _metrics(),
        tmp_path / "resumed",
        batch_size=2,
        progress=False,
    )
    assert third.calls == 0 and res3.computed_batches == {"grad": 0, "FAME": 0}
    assert res3.rows.equals(res.rows)


def test_rows_and_summary_match_direct_metric_calls(tmp_path, tiny_cnn, classification_data):
    method = InputGradient()
    res = run_experiment(
        tiny_cnn,
        classification_data,
        [method],
        _metrics()[:2],
        tmp_path,
        batch_size=3,
        progress=False,
    )
    n = len(classification_data)
    assert len(res.rows) == n * (3 + 3)  # one row per image × metric column
    assert list(res.rows.columns) == [
        "index",
        "item",
        "method",
        "metric",
        "threshold",
        "percent",
        "value",
    ]
    images, labels = classification_data.images, classification_data.labels
    maps = method(tiny_cnn, images, ClassLogit(labels)).positive
    torch.testing.assert_close(res.maps("grad").positive, maps)
    iou = iou_at_thresholds(maps, classification_data.boxes, (0.3, 0.5, 0.7)) * 100
    road = road_scores(tiny_cnn, images, labels, maps, (10, 30, 50))
    table = res.per_item("IoU", threshold=0.5)
    torch.testing.assert_close(torch.tensor(table["grad"].tolist()), iou[:, 1])
    torch.testing.assert_close(
        torch.tensor(res.per_item("ROAD-Delete", percent=30)["grad"].tolist()), road[:, 1]
    )
    assert res.summary.loc["grad", "IoU@0.7"] == pytest.approx(iou[:, 2].mean().item(), abs=1e-4)
    assert list(res.summary.columns) == [
        "IoU@0.3",
        "IoU@0.5",
        "IoU@0.7",
        "ROAD-Delete@10%",
        "ROAD-Delete@30%",
        "ROAD-Delete@50%",
    ]
    md = (tmp_path / "summary.md").read_text()
    assert md.splitlines()[0] == (
        "| Method | IoU@0.3 | IoU@0.5 | IoU@0.7 | ROAD-Delete@10% | ROAD-Delete@30% "
        "| ROAD-Delete@50% |"
    )
    assert f"| grad | {res.summary.loc['grad', 'IoU@0.3']:.1f} [" in md  # mean [low, high]
    tex = (tmp_path / "summary.tex").read_text()
    assert "ROAD-Delete@10\\%" in tex and "\\toprule" in tex and tex.count("\\\\") == 2


def test_settings_change_invalidates_the_cache(tmp_path, tiny_cnn, classification_data):
    calls = {}

    class Counting(Fame):
        def __call__(self, model, images, target):
            calls[self.config.iterations] = calls.get(self.config.iterations, 0) + 1
            return super().__call__(model, images, target)

    def run(method, data=classification_data, **kw):
        return run_experiment(
            tiny_cnn,
            data,
            [method],
            [],
            tmp_path,
            batch_size=4,
            progress=False,
            overwrite=True,  # the same folder on purpose: each change must select a new cache
            **kw,
        )

    r1 = run(Counting(FameConfig(iterations=2, progress=False)))
    assert calls == {2: 2}
    # same settings (progress is not a setting): cached
    r2 = run(Counting(FameConfig(iterations=2, progress=True)))
    assert calls == {2: 2} and r2.cache_dirs == r1.cache_dirs
    # another FameConfig: a new cache folder, recomputed
    r3 = run(Counting(FameConfig(iterations=3, progress=False)))
    assert calls == {2: 2, 3: 2} and r3.cache_dirs["FAME"] != r1.cache_dirs["FAME"]
    # another dataset (one label differs): recomputed
    labels = classification_data.labels.clone()
    labels[0] = 4
    other = ClassificationDataset(classification_data.images, labels, classification_data.boxes)
    r4 = run(Counting(FameConfig(iterations=2, progress=False)), data=other)
    assert calls[2] == 4 and r4.cache_dirs["FAME"] != r1.cache_dirs["FAME"]
    # other model weights: recomputed
    with torch.no_grad():
        tiny_cnn[-1].bias += 1
    run(Counting(FameConfig(iterations=2, progress=False)))
    assert calls[2] == 6
    assert len(list((tmp_path / "cache").iterdir())) == 4


class HalfMeans(nn.Module):
    """φ(x) = (mean of the left half, mean of the right half) + a tiny conv for gradients."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x):
        w = x.shape[-1] // 2
        return self.scale * torch.stack([x[..., :w].mean((1, 2, 3)), x[..., w:].mean((1, 2, 3))], 1)


def test_verification_run_matches_face_metric(tmp_path):
    g = torch.Generator().manual_seed(1)
    n = 6
    gallery = torch.rand(n, 3, 8, 8, generator=g)
    probe = torch.rand(n, 3, 8, 8, generator=g)
    probe[:3] = (gallery[:3] * 0.8 + 0.1).clamp(0, 1)
    genuine = [True, True, True, False, False, False]
    data = PairDataset(gallery, probe, genuine)
    model = HalfMeans()
    method = InputGradient()
    res = run_experiment(
        model, data, [method], [FaceDeleteInsertMetric()], tmp_path, batch_size=4, progress=False
    )
    refs = nn.functional.normalize(model(gallery), dim=1).detach()
    maps = method(model, probe, CosineSimilarity(refs)).positive
    want = face_deletion_insertion(model, gallery, probe, genuine, maps)
    assert res.threshold == want.threshold
    assert res.summary.loc["grad", "Delete"] == pytest.approx(want.auc("delete"), abs=1e-4)
    assert res.summary.loc["grad", "Insert"] == pytest.approx(want.auc("insert"), abs=1e-4)
    acc = res.per_item("Insert-acc", percent=30)["grad"].mean()
    assert acc == pytest.approx(want.correct("insert").float().mean(0)[3].item() * 100, abs=1e-4)
    curve = res.curve("Insert-acc")  # percents × methods, means over pairs
    assert curve.index.tolist() == [float(p) for p in range(0, 101, 10)]
    assert curve.loc[30.0, "grad"] == pytest.approx(acc)
    rows = res.rows[res.rows.metric == "Delete-sim"]
    assert rows.threshold.isna().all() and sorted(rows.percent.unique()) == curve.index.tolist()
    with pytest.raises(KeyError, match="give threshold= for IoU"):
        res.per_item("Delete-acc@30%")
    assert list(res.summary.columns) == ["Delete", "Insert"]


def test_bad_inputs_give_clear_errors(tmp_path, tiny_cnn, classification_data):
    with pytest.raises(ValueError, match="is for verification"):
        run_experiment(
            tiny_cnn, classification_data, [InputGradient()], [FaceDeleteInsertMetric()], tmp_path
        )
    with pytest.raises(ValueError, match="unique"):
        run_experiment(
            tiny_cnn, classification_data, [InputGradient(), InputGradient()], [], tmp_path
        )
    with pytest.raises(ValueError, match="empty"):
        run_experiment(tiny_cnn, [], [InputGradient()], [], tmp_path)
    with pytest.raises(TypeError, match="ClassificationItem or PairItem"):
        run_experiment(tiny_cnn, [torch.zeros(3, 4, 4)], [InputGradient()], [], tmp_path)

    def not_an_attribution(model, images, target):
        return images[:, 0]

    not_an_attribution.name = "bad"
    with pytest.raises(TypeError, match="expected Attribution"):
        run_experiment(
            tiny_cnn, classification_data, [not_an_attribution], [], tmp_path, progress=False
        )


def test_summary_formatters():
    import pandas as pd

    s = pd.DataFrame({"IoU@0.3": [38.81, 46.14], "ROAD-Delete@10%": [0.2671, 0.4249]})
    s.index = pd.Index(["Grad-CAM", "FAME"], name="method")
    dec = {"IoU@0.3": 1, "ROAD-Delete@10%": 3}
    assert summary_markdown(s, dec).splitlines()[2:] == [
        "| Grad-CAM | 38.8 | 0.267 |",
        "| FAME | 46.1 | 0.425 |",
    ]
    assert "Grad-CAM & 38.8 & 0.267 \\\\" in summary_latex(s, dec)


def test_cli_reports_missing_imagenet_files(tmp_path, capsys):
    from fame_utils.__main__ import main

    (tmp_path / "imagenet").mkdir()
    code = main(
        ["imagenet", "--imagenet-root", str(tmp_path / "imagenet"), "--out", str(tmp_path / "o")]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert "validation images" in err and "LOC_val_solution.csv" in err


@pytest.mark.slow
def test_cli_on_bundled_objects_with_embedded_classifier(tmp_path, capsys):
    from fame_utils.__main__ import main

    args = ["imagenet", "--methods", "gradcam,fame", "--iterations", "2", "--max-images", "2"]
    args += ["--out", str(tmp_path), "--no-progress"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith(
        "| Method | IoU@0.3 | IoU@0.5 | IoU@0.7 | ROAD-Delete@10% | ROAD-Delete@30% | "
        "ROAD-Delete@50% |"
    )
    assert "| Grad-CAM |" in out and "| FAME |" in out
    import pandas as pd

    rows = pd.read_csv(tmp_path / "results.csv")
    # 2 images x 2 methods x (3 IoU + 3 ROAD zero removal + 3 ROAD noisy-linear): Table 2's
    # metrics with both removals
    assert len(rows) == 2 * 2 * 9 and set(rows.method) == {"Grad-CAM", "FAME"}
    # rerunning resumes from the cache and reproduces the table
    assert main(args) == 0
    assert capsys.readouterr().out == out


def test_metric_results_are_cached_and_keyed_by_settings(tmp_path, tiny_cnn, classification_data):
    def run(metric):
        return run_experiment(
            tiny_cnn,
            classification_data,
            [InputGradient()],
            [metric],
            tmp_path,
            progress=False,
            overwrite=True,  # one folder on purpose: the metric cache is what is tested
        )

    res = run(RoadMetric((10, 30)))
    folder = res.cache_dirs["grad"]
    assert len(list(folder.glob("eval_*.pt"))) == 1  # one batch of 7 images
    run(RoadMetric((10.0, 30.0)))  # the same settings written with floats: reused
    assert len(list(folder.glob("eval_*.pt"))) == 1
    other = run(RoadMetric((10, 30), mode="noisy_linear"))
    assert len(list(folder.glob("eval_*.pt"))) == 2
    assert not other.summary.equals(res.summary)
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        RoadMetric((10, 130))
    with pytest.raises(ValueError, match="mode must be one of"):
        RoadMetric(mode="blur")


def test_face_recipes_in_one_run_equal_each_recipe_run_alone(tmp_path):
    # FAME (paper) and (reference) in one run: the same results as each recipe on its own.
    g = torch.Generator().manual_seed(2)
    gallery, probe = torch.rand(5, 3, 16, 16, generator=g), torch.rand(5, 3, 16, 16, generator=g)
    torch.manual_seed(1)
    net = nn.Sequential(
        nn.Conv2d(3, 6, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten()
    )
    data = PairDataset(gallery, probe, [True, True, False, True, False])
    fast = {"iterations": 3, "kernel_size": 3, "sigma": 1.0, "progress": False, "early_stop": None}
    settings = {"batch_size": 2, "progress": False, "threshold": 0.5}
    both = make_methods(
        ["fame"], "verification", recipes=("paper", "reference"), fame_settings=fast
    )
    res = run_experiment(
        net.eval(), data, both, [FaceDeleteInsertMetric()], tmp_path / "both", **settings
    )
    for name in ("paper", "reference"):
        alone = make_methods(["fame"], "verification", recipe=name, fame_settings=fast)
        one = run_experiment(
            net.eval(), data, alone, [FaceDeleteInsertMetric()], tmp_path / name, **settings
        )
        torch.testing.assert_close(
            res.maps(f"FAME ({name})").positive, one.maps("FAME").positive, rtol=0, atol=0
        )
        assert res.summary.loc[f"FAME ({name})"].tolist() == one.summary.loc["FAME"].tolist()
    maps = [res.maps(f"FAME ({n})").positive for n in ("paper", "reference")]
    assert (maps[0].flatten(1).amax(1) == 1).all() and not torch.equal(*maps)
