"""Recipes and uncertainty in the experiment runner (issue 10): the recipe reaches FAME and
the cache key, FAME shows once per recipe, every summary cell carries a bootstrap interval."""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

import fame_utils.methods as methods_module
import fame_utils.metrics.adapters as adapters
from fame_utils import Attribution, ClassLogit, CosineSimilarity, Fame
from fame_utils.baselines.cam import GradCAM
from fame_utils.core import FameConfig
from fame_utils.experiment.result import ROW_COLUMNS, summarize, summary_latex, summary_markdown
from fame_utils.experiment.run import run_experiment
from fame_utils.methods import make_methods
from fame_utils.metrics.adapters import (
    Column,
    FaceDeleteInsertMetric,
    IoUMetric,
    RoadMetric,
)
from fame_utils.recipes import PAPER, REFERENCE
from fame_utils.stats import bootstrap_interval

FAST = FameConfig(iterations=2, progress=False)


def _captured(monkeypatch):
    """Replace methods.run_fame by a spy recording (objective, config) of each call."""
    calls = []
    real = methods_module.run_fame

    def spy(model, images, objective, config):
        calls.append((objective, config))
        return real(model, images, objective, config)

    monkeypatch.setattr(methods_module, "run_fame", spy)
    return calls


@pytest.mark.filterwarnings("ignore:FAME produced empty")  # e₋ of an identical pair
def test_recipe_reaches_fames_config_and_objective(monkeypatch, tiny_cnn):
    calls = _captured(monkeypatch)
    x = torch.rand(2, 3, 16, 16)
    fast = {"iterations": 2, "progress": False}
    (ref,) = make_methods(["fame"], "classification", recipe="reference", fame_settings=fast)
    ref(tiny_cnn, x, ClassLogit([0, 1]))
    objective, cfg = calls[-1]
    assert cfg.normalization == "minmax" and cfg.early_stop == REFERENCE.classification_early_stop
    assert cfg.absolute_logit is True and cfg.iterations == 2
    (paper,) = make_methods(["fame"], "classification", recipe="paper", fame_settings=fast)
    paper(tiny_cnn, x, ClassLogit(0))
    objective, cfg = calls[-1]
    assert cfg.normalization == "max" and cfg.early_stop is None and not cfg.absolute_logit
    # a config runs as given
    Fame(FAST.replace(normalization="minmax"))(tiny_cnn, x, ClassLogit(0))
    assert calls[-1][1].normalization == "minmax" and calls[-1][1].absolute_logit is False

    face = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 16 * 16, 4)).eval()
    refs = torch.nn.functional.normalize(face(x), dim=1).detach()
    (ref,) = make_methods(["fame"], "verification", recipe="reference", fame_settings=fast)
    ref(face, x, CosineSimilarity(refs))
    cfg = calls[-1][1]
    assert cfg.normalization == "minmax" and cfg.early_stop == REFERENCE.face_early_stop
    assert cfg.step_space == "pixel" and cfg.gray_order == "bgr"


def test_two_recipes_give_two_cache_folders_and_two_rows(tmp_path, tiny_cnn, data):
    runs = {}
    for name in ("paper", "reference"):
        methods = make_methods(
            ["fame"],
            "classification",
            recipe=name,
            fame_settings={"iterations": 2, "progress": False},
        )
        runs[name] = run_experiment(
            tiny_cnn,
            data,
            methods,
            [IoUMetric()],
            tmp_path,
            recipe=name,
            progress=False,
            overwrite=True,  # one folder for both recipes on purpose (run.json refuses otherwise)
        )
    paper, reference = runs["paper"].cache_dirs["FAME"], runs["reference"].cache_dirs["FAME"]
    assert paper != reference
    method = json.loads((reference / "meta.json").read_text())["method"]
    assert method["config"]["normalization"] == "minmax" and method["config"]["absolute_logit"]
    run_info = json.loads((tmp_path / "run.json").read_text())
    assert (
        run_info["recipe"] == dataclasses.asdict(REFERENCE)
        and runs["reference"].recipe == REFERENCE
    )
    # both recipes in one run: FAME once per recipe, CorrRISE (recipe-free) once
    both = make_methods(
        ["fame", "corrrise"],
        "classification",
        recipes=("paper", "reference"),
        fame_settings={"iterations": 2, "progress": False},
        n_masks=4,
    )
    res = run_experiment(
        tiny_cnn, data, both, [IoUMetric()], tmp_path, progress=False, overwrite=True
    )
    assert res.methods == ["FAME (paper)", "FAME (reference)", "CorrRISE"]
    assert res.computed_batches["FAME (paper)"] == 1  # the name is part of the folder
    maps = {m: res.maps(m).positive for m in res.methods[:2]}
    # min-max maps reach 0 in every image, max-normalised FAME keeps its blurred floor
    assert maps["FAME (reference)"].flatten(1).amin(1).max() == 0
    assert maps["FAME (paper)"].flatten(1).amin(1).min() > 0


def test_tie_rule_of_the_run_recipe_reaches_removal_functions(monkeypatch):
    args = {"threshold": 0.5, "references": None, "seed": 0, "batch_size": 64}
    args |= {"ties": "reference", "tie_seed": 5}
    seen = []

    class Reached(Exception):
        pass

    def spy(*args, ties, tie_seed, **kwargs):
        seen.append((ties, tie_seed))
        raise Reached

    monkeypatch.setattr(adapters, "road_scores", spy)
    monkeypatch.setattr(adapters, "face_deletion_insertion", spy)
    maps = Attribution(torch.zeros(1, 4, 4), None)
    x = torch.zeros(1, 3, 4, 4)
    batches = [
        (RoadMetric(), SimpleNamespace(images=x, labels=torch.tensor([0]))),
        (
            FaceDeleteInsertMetric(),
            SimpleNamespace(gallery=x, probe=x, genuine=torch.tensor([True])),
        ),
    ]
    for metric, batch in batches:
        with pytest.raises(Reached):
            metric(None, batch, maps, **args)
    assert seen == [("reference", 5), ("reference", 5)]


def _rows(values_by_method: dict[str, list[float]]) -> pd.DataFrame:
    records = [
        {
            "index": i,
            "item": str(i),
            "method": m,
            "metric": "IoU",
            "threshold": 0.3,
            "percent": np.nan,
            "value": v,
        }
        for m, values in values_by_method.items()
        for i, v in enumerate(values)
    ]
    return pd.DataFrame.from_records(records, columns=ROW_COLUMNS)


def test_intervals_contain_the_mean_and_shrink_with_more_items():
    col = [Column("IoU", threshold=0.3)]
    few = [10.0, 20.0, 30.0, 40.0]
    summary, intervals = summarize(_rows({"A": few, "B": [7.0]}), col, ["A", "B"])
    iv = intervals.loc["A", "IoU@0.3"]
    assert summary.loc["A", "IoU@0.3"] == 25.0 == iv.mean
    assert 10.0 <= iv.low < 25.0 < iv.high <= 40.0
    assert iv == bootstrap_interval(few, 2000, seed=0)  # seeded: the same on every machine
    single = intervals.loc["B", "IoU@0.3"]
    assert single.low == single.high == 7.0  # one item: no spread
    _, many = summarize(_rows({"A": few * 25}), col, ["A"])
    wide, narrow = iv.high - iv.low, many.loc["A", "IoU@0.3"].high - many.loc["A", "IoU@0.3"].low
    assert narrow < wide / 3  # 25× the items: about 1/5 of the width
    md = summary_markdown(summary, {"IoU@0.3": 1}, intervals, note="n")
    assert md.splitlines()[2] == f"| A | 25.0 [{iv.low:.1f}, {iv.high:.1f}] |"
    assert md.splitlines()[3] == "| B | 7.0 [7.0, 7.0] |" and md.endswith("\nn\n")


def test_summaries_mark_the_sanity_baselines_as_reference_rows():
    summary = pd.DataFrame({"IoU@0.3": [25.0, 7.0, 9.0]}, index=["FAME", "Random", "Centre"])
    rows = summary_markdown(summary, {"IoU@0.3": 1}).splitlines()[2:]
    assert rows == [
        "| FAME | 25.0 |",
        "| Random (sanity baseline) | 7.0 |",
        "| Centre (sanity baseline) | 9.0 |",
    ]
    assert "Random (sanity baseline) & 7.000" in summary_latex(summary)


def test_summary_csv_and_result_carry_the_intervals(tmp_path, tiny_cnn, data):
    res = run_experiment(
        tiny_cnn,
        data,
        [GradCAM(target_layer=tiny_cnn[2])],
        [IoUMetric()],
        tmp_path,
        progress=False,
    )
    csv = pd.read_csv(tmp_path / "summary.csv", index_col="method")
    assert list(csv.columns[:3]) == ["IoU@0.3", "IoU@0.3_low", "IoU@0.3_high"]
    iv = res.intervals.loc["Grad-CAM", "IoU@0.3"]
    want = bootstrap_interval(res.per_item("IoU", threshold=0.3)["Grad-CAM"], 2000, seed=0)
    assert iv == want
    assert csv.loc["Grad-CAM", "IoU@0.3_low"] == pytest.approx(iv.low)
    assert csv.loc["Grad-CAM", "IoU@0.3_high"] == pytest.approx(iv.high)
    assert "Brackets: 95 % percentile-bootstrap interval" in (tmp_path / "summary.md").read_text()
    assert res.recipe == PAPER


@pytest.mark.slow
@pytest.mark.parametrize("task", ["imagenet", "faces"])
def test_cli_runs_the_reference_recipe_on_bundled_data(task, tmp_path, capsys):
    from fame_utils.__main__ import main

    args = [task, "--recipe", "reference", "--methods", "gradcam,fame", "--iterations", "2"]
    args += ["--out", str(tmp_path), "--no-progress"]
    args += ["--max-images", "2"] if task == "imagenet" else ["--max-pairs", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "| Grad-CAM |" in out and "| FAME |" in out and "recipe: reference" in out
    assert json.loads((tmp_path / "run.json").read_text())["recipe"]["name"] == "reference"
    meta = [json.loads(p.read_text()) for p in (tmp_path / "cache").glob("fame-*/meta.json")]
    assert [m["method"]["config"]["normalization"] for m in meta] == ["minmax"]


def test_data_and_metrics_never_import_the_experiment_layer():
    import ast
    from pathlib import Path

    import fame_utils

    root = Path(fame_utils.__file__).parent
    banned = ("fame_utils.runner", "fame_utils.experiment", "fame_utils.methods")
    offenders = []
    for path in [*root.glob("data/*.py"), *root.glob("metrics/*.py")]:
        package = "fame_utils." + path.parent.name
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.rsplit(".", node.level - 1)[0] if node.level else ""
                module = ".".join(p for p in (base, node.module or "") if p)
                names = [f"{module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            offenders += [f"{path.name}: {n}" for n in names if n.startswith(banned)]
    assert offenders == []
