"""The runner is never silently wrong (issue 9): cache keys from content, run.json and
refusal to mix settings, one writer per folder, cached batches checked, NaN refused,
thread count pinned and recorded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from fame_utils import Attribution
from fame_utils.experiment.keys import method_key, module_identity
from fame_utils.experiment.run import run_experiment
from fame_utils.experiment.store import HOST, RunConflictError, lock_output, save_tensors
from fame_utils.metrics.adapters import IoUMetric, RoadMetric


@dataclass
class Saliency:
    """|∂z_y/∂x| summed over colours, max-normalised (a fast stand-in method)."""

    name: str = "saliency"
    calls: int = 0

    def __call__(self, model, images, target):
        self.calls += 1
        x = images.clone().requires_grad_(True)
        z = model(x).gather(1, target.indices(len(x)).to(x.device)[:, None]).sum()
        (g,) = torch.autograd.grad(z, x)
        m = g.abs().sum(1)
        return Attribution(m / m.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1))


Saliency.runtime_fields = frozenset({"calls"})


@dataclass
class Constant:
    """Maps filled with ``value`` (NaN, 0, ...) to test what the runner accepts."""

    value: float
    name: str = "constant"

    def __call__(self, model, images, target):
        return Attribution(torch.full(images[:, 0].shape, self.value))


def _run(model, data, out, methods=None, metrics=None, **kw):
    return run_experiment(
        model,
        data,
        methods or [Saliency()],
        metrics if metrics is not None else [IoUMetric(), RoadMetric((10, 50))],
        out,
        batch_size=2,
        progress=False,
        n_resamples=50,
        **kw,
    )


# ---- 1. cache keys from content -------------------------------------------------------


def test_module_settings_are_keyed_by_their_path_not_their_class(tiny_cnn):
    a = module_identity(tiny_cnn[0], tiny_cnn)
    b = module_identity(tiny_cnn[2], tiny_cnn)
    assert a == {"module": "Conv2d", "path": "0"} and b == {"module": "Conv2d", "path": "2"}
    # outside a model: by weights, so two layers of one class still differ
    other = nn.Conv2d(3, 8, 3)
    assert module_identity(tiny_cnn[0])["weights"] != module_identity(other)["weights"]
    assert module_identity(nn.ReLU())["repr"] == "ReLU()"


@pytest.mark.slow
def test_gradcam_on_two_mbconv_stages_gets_two_caches(tmp_path):
    """The collision of issue 9: Grad-CAM on EfficientNet-Lite0's 28×28 stage, then on its
    14×14 stage (both MBConv), into one folder."""
    from fame_utils.baselines.cam import GradCAM
    from fame_utils.data.items import from_object_samples
    from fame_utils.data.objects import load_sample_objects
    from fame_utils.models.classifiers import load_classifier

    model = load_classifier("efficientnet_lite0", device="cpu")
    data = from_object_samples(load_sample_objects(resize=256, crop=224)[:2])
    stage28, stage14 = model.net.blocks[4], model.net.blocks[9]
    assert type(stage28) is type(stage14)
    runs = [
        run_experiment(
            model,
            data,
            [GradCAM(target_layer=layer)],
            [],
            tmp_path,
            batch_size=2,
            progress=False,
            overwrite=True,
        )
        for layer in (stage28, stage14)
    ]
    assert runs[0].cache_dirs["Grad-CAM"] != runs[1].cache_dirs["Grad-CAM"]
    assert runs[1].computed_batches["Grad-CAM"] == 1
    m28, m14 = (r.maps("Grad-CAM").positive for r in runs)
    assert (m28 - m14).abs().max() > 0.1
    meta = json.loads((runs[1].cache_dirs["Grad-CAM"] / "meta.json").read_text())
    assert meta["method"]["target_layer"] == {"module": "MBConv", "path": "net.blocks.9"}


def test_method_key_name_the_layer_path(tiny_cnn):
    from fame_utils.baselines.cam import GradCAM

    a = method_key(GradCAM(target_layer=tiny_cnn[0]), tiny_cnn)
    b = method_key(GradCAM(target_layer=tiny_cnn[2]), tiny_cnn)
    assert a["target_layer"]["path"] == "0" and b["target_layer"]["path"] == "2"


# ---- 2. run.json, refusal, lock --------------------------------------------------------


def test_run_json_records_every_setting(tmp_path, tiny_cnn, data):
    res = _run(tiny_cnn, data, tmp_path, seed=3, threads=1)
    record = json.loads(res.paths["run"].read_text())
    s = record
    assert s["model"]["fingerprint"].startswith("Sequential:")
    assert s["methods"] == {"saliency": {"type": "test_runner_reliability.Saliency"}}
    assert [m["type"].rsplit(".", 1)[1] for m in s["metrics"]] == ["IoUMetric", "RoadMetric"]
    assert s["metrics"][1]["percents"] == ["10.0", "50.0"]
    assert s["recipe"]["name"] == "paper" and s["tie_seed"] == s["recipe"]["tie_seed"]
    assert s["dataset"] == data.identity and s["n_items"] == 5
    assert s["seed"] == 3 and s["threads"] == 1 and s["device_type"] == "cpu"
    assert s["torch"] == torch.__version__ and s["code"]["package"]
    assert s["batch_size"] == 2 and s["eval_batch_size"] == 64
    assert record["run"]["world_size"] == 1 and record["run"]["computed_batches"] == {"saliency": 3}


def test_rerun_with_other_settings_is_refused_unless_overwrite(tmp_path, tiny_cnn, data):
    first = _run(tiny_cnn, data, tmp_path)
    before = first.paths["results"].read_text()
    _run(tiny_cnn, data, tmp_path)  # the same settings: fine (resume)
    with pytest.raises(RunConflictError, match=r"metrics.*--overwrite"):
        _run(tiny_cnn, data, tmp_path, metrics=[IoUMetric((0.5,))])
    with pytest.raises(RunConflictError, match=r"seed: 0 -> 1"):
        _run(tiny_cnn, data, tmp_path, seed=1)
    assert first.paths["results"].read_text() == before  # untouched
    res = _run(tiny_cnn, data, tmp_path, metrics=[IoUMetric((0.5,))], overwrite=True)
    assert set(res.rows["threshold"]) == {0.5}
    assert json.loads(res.paths["run"].read_text())["metrics"][0]["thresholds"] == ["0.5"]


def test_a_folder_being_written_is_refused(tmp_path, tiny_cnn, data):
    lock = lock_output(tmp_path)
    with pytest.raises(RunConflictError, match=f"being written by process {os.getpid()}"):
        _run(tiny_cnn, data, tmp_path)
    lock.release()
    assert not (tmp_path / "results.csv").exists()
    # the lock is released after a run, also a failed one
    _run(tiny_cnn, data, tmp_path)
    lock_output(tmp_path).release()
    with pytest.raises(RuntimeError, match="NaN"):
        _run(tiny_cnn, data, tmp_path / "nan", methods=[Constant(float("nan"))])
    lock_output(tmp_path / "nan").release()


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_a_lock_left_by_a_killed_run_is_taken_over(tmp_path, tiny_cnn, data):
    (tmp_path / ".lock").write_text(f"{HOST} {_dead_pid()}\n")
    res = _run(tiny_cnn, data, tmp_path)  # no process holds its flock
    assert res.paths["results"].is_file()
    assert (tmp_path / ".lock").read_text() == f"{HOST} {os.getpid()}\n"  # this run took it


# ---- 3. cached batches checked, stale .tmp removed --------------------------------------


def test_corrupt_cached_batch_is_recomputed_even_with_metric_values_cached(
    tmp_path, tiny_cnn, data
):
    first = _run(tiny_cnn, data, tmp_path)
    folder = first.cache_dirs["saliency"]
    (folder / "batch_00001.pt").write_bytes(b"not a torch file")
    method = Saliency()
    with pytest.warns(UserWarning, match=r"batch_00001\.pt is unreadable"):
        again = _run(tiny_cnn, data, tmp_path, methods=[method])
    assert method.calls == 1 and again.computed_batches == {"saliency": 1}
    assert again.paths["results"].read_text() == first.paths["results"].read_text()


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda b: {**b, "positive": b["positive"] * float("nan")}, "NaN or Inf"),
        (lambda b: {**b, "positive": b["positive"] * 3}, "outside"),
        (lambda b: {**b, "positive": b["positive"][:, :8]}, "shape"),
        (lambda b: {**b, "names": ["x", "y"]}, "other items"),
        (lambda b: {"positive": b["positive"]}, "incomplete"),
    ],
)
def test_cached_batch_failing_its_checks_is_recomputed(tmp_path, tiny_cnn, data, damage, message):
    first = _run(tiny_cnn, data, tmp_path)
    path = first.cache_dirs["saliency"] / "batch_00000.pt"
    save_tensors(damage(torch.load(path)), path)
    with pytest.warns(UserWarning, match=message):
        again = _run(tiny_cnn, data, tmp_path)
    assert again.computed_batches == {"saliency": 1}
    assert again.paths["results"].read_text() == first.paths["results"].read_text()


def test_corrupt_metric_values_are_recomputed(tmp_path, tiny_cnn, data):
    first = _run(tiny_cnn, data, tmp_path)
    (path,) = first.cache_dirs["saliency"].glob("eval_roadmetric-*_00002.pt")
    path.write_bytes(b"")
    with pytest.warns(UserWarning, match="unreadable"):
        again = _run(tiny_cnn, data, tmp_path)
    assert again.computed_batches == {"saliency": 0}
    assert again.paths["results"].read_text() == first.paths["results"].read_text()


def test_stale_tmp_files_are_removed_on_start(tmp_path, tiny_cnn, data):
    first = _run(tiny_cnn, data, tmp_path)
    folder = first.cache_dirs["saliency"]
    stale = folder / f".batch_00000.pt.{HOST}.{_dead_pid()}.tmp"
    live = folder / f".batch_00001.pt.{HOST}.{os.getppid()}.tmp"  # being written
    foreign = folder / f".batch_00002.pt.otherhost.{os.getpid()}.tmp"  # fresh, other machine
    top = tmp_path / f".results.csv.otherhost.{_dead_pid()}.tmp"
    for p in (stale, live, foreign, top):
        p.write_bytes(b"half")
    two_days_ago = time.time() - 2 * 24 * 3600
    for p in (stale, top):  # untouched for two days: a killed writer's
        os.utime(p, (two_days_ago, two_days_ago))
    _run(tiny_cnn, data, tmp_path)
    assert not stale.exists() and not top.exists()
    assert live.exists() and foreign.exists()


# ---- 4. NaN and empty maps ---------------------------------------------------------------


def test_nan_maps_are_neither_cached_nor_scored(tmp_path, tiny_cnn, data):
    with pytest.raises(RuntimeError, match=r"NaN or Inf for items \['0', '1'\]"):
        _run(tiny_cnn, data, tmp_path, methods=[Constant(float("nan"))])
    assert not list(tmp_path.glob("cache/*/batch_*.pt"))
    assert not (tmp_path / "results.csv").exists()


class NaNModel(nn.Module):
    def forward(self, x):
        return x.flatten(1)[:, :5] * float("nan")


def test_a_model_that_outputs_nan_is_refused(tmp_path, data):
    with pytest.raises(RuntimeError, match=r"model's output holds NaN or Inf for items \['0'"):
        _run(NaNModel(), data, tmp_path, methods=[Constant(0.5)], metrics=[])


def test_empty_maps_are_reported_and_recorded(tmp_path, tiny_cnn, data):
    with pytest.warns(UserWarning, match=r"all-zero maps for \['0', '1', '2', '3', '4'\]"):
        res = _run(tiny_cnn, data, tmp_path, methods=[Constant(0.0)], metrics=[IoUMetric()])
    record = json.loads(res.paths["run"].read_text())
    assert record["run"]["empty_maps"] == {"constant": ["0", "1", "2", "3", "4"]}
    with warnings.catch_warnings():  # cached: still listed, no new warning needed
        warnings.simplefilter("error")
        again = _run(tiny_cnn, data, tmp_path, methods=[Constant(0.0)], metrics=[IoUMetric()])
    assert json.loads(again.paths["run"].read_text())["run"]["empty_maps"]["constant"][0] == "0"


# ---- 8. threads pinned and recorded --------------------------------------------------------


def test_threads_are_pinned_for_the_run_and_restored(tmp_path, tiny_cnn, data):
    seen = []

    @dataclass
    class Spy(Saliency):
        def __call__(self, model, images, target):
            seen.append(torch.get_num_threads())
            return super().__call__(model, images, target)

    before = torch.get_num_threads()
    res = _run(tiny_cnn, data, tmp_path, methods=[Spy()], threads=2)
    assert seen == [2, 2, 2] and torch.get_num_threads() == before
    assert json.loads(res.paths["run"].read_text())["threads"] == 2


# ---- 5. a user-given θ is labelled as such ---------------------------------------------------


@pytest.mark.slow
def test_cli_labels_a_given_threshold(tmp_path, capsys):
    from fame_utils.__main__ import main

    argv = ["faces", "--methods", "gradcam", "--max-pairs", "2", "--no-progress"]
    assert main([*argv, "--threshold", "0.5", "--out", str(tmp_path / "given")]) == 0
    out = capsys.readouterr().out
    assert "verification threshold θ (given by --threshold): 0.5000" in out
    assert "clean EER" not in out
    record = json.loads((tmp_path / "given" / "run.json").read_text())
    assert record["threshold"] == 0.5
    assert record["threshold_source"] == "given by --threshold"
    assert main([*argv, "--out", str(tmp_path / "eer")]) == 0
    out = capsys.readouterr().out
    assert "θ (clean EER of the whole protocol (24 pairs)):" in out


# ---- issue 18: keys that see everything, folders that never contradict themselves ------


def _imagenet_root(root, shade: int):
    """A two-image ImageNet folder whose JPEGs are filled with noise seeded by ``shade``."""
    import numpy as np
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(shade)
    for i in (1, 2):
        pixels = rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(root / f"ILSVRC2012_val_{i:08d}.JPEG", quality=95)
    (root / "LOC_val_solution.csv").write_text(
        "ImageId,PredictionString\n"
        "ILSVRC2012_val_00000001,n01440764 1 2 15 18\n"
        "ILSVRC2012_val_00000002,n01443537 3 1 19 12\n"
    )
    (root / "LOC_synset_mapping.txt").write_text("n01440764 tench\nn01443537 goldfish\n")
    from fame_utils.data.imagenet import load_imagenet_val

    return load_imagenet_val(root, per_class=None, resize=16, crop=16)


def test_18_1_rewritten_images_are_refused_then_recomputed(tmp_path, tiny_cnn):
    out, root = tmp_path / "out", tmp_path / "imagenet"
    first = _run(tiny_cnn, _imagenet_root(root, 0), out).paths["results"].read_text()
    changed = _imagenet_root(root, 1)  # same ids, labels and boxes; other pixels
    with pytest.raises(RunConflictError, match="inputs"):
        _run(tiny_cnn, changed, out)
    again = _run(tiny_cnn, changed, out, overwrite=True)
    assert again.computed_batches == {"saliency": 1}
    assert again.paths["results"].read_text() != first


def test_18_1_another_root_with_the_same_ids_recomputes_in_a_shared_cache(tmp_path, tiny_cnn):
    cache = tmp_path / "cache"
    _run(tiny_cnn, _imagenet_root(tmp_path / "a", 0), tmp_path / "out-a", cache_dir=cache)
    with pytest.warns(UserWarning, match="other input pixels"):
        b = _run(tiny_cnn, _imagenet_root(tmp_path / "b", 1), tmp_path / "out-b", cache_dir=cache)
    assert b.computed_batches == {"saliency": 1}


class Scaled(nn.Module):
    """A linear classifier whose forward multiplies by a plain attribute."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.head = nn.Linear(3, 5)
        self.scale = 1.0

    def forward(self, x):
        return self.head(x.mean((2, 3))) * self.scale


def test_18_2_a_plain_attribute_of_the_model_is_in_the_key(tmp_path, data):
    model = Scaled()
    first = _run(model, data, tmp_path)
    model.scale = 0.1
    with pytest.raises(RunConflictError, match="fingerprint"):
        _run(model, data, tmp_path)
    again = _run(model, data, tmp_path, overwrite=True)
    assert again.computed_batches == {"saliency": 3}
    assert first.cache_dirs != again.cache_dirs


def test_18_2_what_cannot_be_fingerprinted_is_refused_by_name(tmp_path, data):
    model = Scaled()
    model.head.helper = object()
    with pytest.raises(TypeError, match=r"model attribute head\.helper"):
        _run(model, data, tmp_path)
    assert not (tmp_path / "results.csv").exists()
    _run(model, data, tmp_path, model_id="scaled-v1")  # a named model is the user's word


def test_18_3_a_code_change_gives_fresh_maps(tmp_path, tiny_cnn, data, monkeypatch):
    import fame_utils.experiment.keys as keys

    _run(tiny_cnn, data, tmp_path)
    monkeypatch.setattr(keys, "source_hash", lambda: "changed-code")
    again = _run(tiny_cnn, data, tmp_path, overwrite=True)
    assert again.computed_batches == {"saliency": 3}


def test_18_3_the_source_hash_follows_every_py_file(tmp_path):
    from fame_utils.experiment.keys import source_hash

    for step in (1, 2):  # two copies of a package that differ in one line
        (tmp_path / str(step) / "pkg").mkdir(parents=True)
        (tmp_path / str(step) / "pkg" / "core.py").write_text(f"STEP = {step}\n")
    assert source_hash(tmp_path / "1") != source_hash(tmp_path / "2")
    assert len(source_hash()) == 16


def _closure_method(v: float):
    def constant(model, images, target):
        return Attribution(torch.full(images[:, 0].shape, v))

    constant.name = "constant"
    return constant


def test_18_4_closures_are_keyed_by_their_values(tmp_path, tiny_cnn, data):
    cache = tmp_path / "cache"
    low = _run(tiny_cnn, data, tmp_path / "a", [_closure_method(0.2)], cache_dir=cache)
    high = _run(tiny_cnn, data, tmp_path / "b", [_closure_method(0.8)], cache_dir=cache)
    assert high.computed_batches == {"constant": 3}
    assert low.cache_dirs != high.cache_dirs


def test_18_4_a_closure_over_an_unkeyable_value_is_refused(tmp_path, tiny_cnn, data):
    from fame_utils.experiment.keys import method_key

    hidden = object()

    def method(model, images, target):
        assert hidden is not None
        return Attribution(torch.zeros(images[:, 0].shape))

    method.name = "opaque"
    with pytest.raises(TypeError, match="closure variable 'hidden'"):
        method_key(method)
    # code, defaults and globals of plain functions are keyed
    assert method_key(_closure_method(0.2)) != method_key(_closure_method(0.8))


def _race(out, barrier, results):
    import pathlib
    import time

    read = pathlib.Path.read_text

    def slow_read(self, *a, **kw):  # widen the window between reading and taking the lock
        text = read(self, *a, **kw)
        time.sleep(0.2)
        return text

    pathlib.Path.read_text = slow_read  # (this forked process only)
    barrier.wait()
    try:
        lock = lock_output(out)
    except RunConflictError:
        results.put(0)
        return
    time.sleep(1.5)  # hold it while every other process tries
    results.put(1)
    lock.release()


def test_18_5_two_takeovers_of_a_dead_lock_cannot_both_win(tmp_path):
    import multiprocessing as mp

    ctx = mp.get_context("fork")
    (tmp_path / ".lock").write_text(f"{HOST} {_dead_pid()}\n")
    barrier, results = ctx.Barrier(6), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(tmp_path, barrier, results)) for _ in range(6)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(30)
    assert sum(results.get(timeout=5) for _ in procs) == 1  # the old scheme: all 6 won


def test_18_6_a_full_disk_at_run_json_leaves_the_old_run_whole(
    tmp_path, tiny_cnn, data, monkeypatch
):
    import errno

    import fame_utils.experiment.store as cache

    first = _run(tiny_cnn, data, tmp_path, metrics=[IoUMetric((0.3,))])
    before = {p.name: p.read_text() for p in tmp_path.iterdir() if p.is_file()}
    real = cache._atomic_write

    def full_at_run_json(path, writer):
        if path.name == "run.json":
            raise OSError(errno.ENOSPC, "No space left on device")
        real(path, writer)

    monkeypatch.setattr(cache, "_atomic_write", full_at_run_json)
    with pytest.raises(OSError):
        _run(tiny_cnn, data, tmp_path, metrics=[IoUMetric((0.5, 0.7))], overwrite=True)
    after = {p.name: p.read_text() for p in tmp_path.iterdir() if p.is_file()}
    assert after == before
    assert "0.3" in json.dumps(json.loads(after["run.json"])["metrics"])
    monkeypatch.undo()
    done = _run(tiny_cnn, data, tmp_path, metrics=[IoUMetric((0.5, 0.7))], overwrite=True)
    assert set(done.rows["threshold"].dropna()) == {0.5, 0.7}
    assert not (tmp_path / ".staging").exists() and first.paths


def test_18_6_a_run_killed_while_moving_in_is_completed(tmp_path, tiny_cnn, data):
    from fame_utils.experiment.store import stage_outputs

    first = _run(tiny_cnn, data, tmp_path)
    texts = {p.name: p.read_text() for p in tmp_path.iterdir() if p.is_file()}
    stage_outputs(tmp_path, texts)  # complete staging left behind by a killed run
    (tmp_path / "run.json").unlink()  # killed after removing the old record
    with pytest.warns(UserWarning, match="completing the outputs"):
        again = _run(tiny_cnn, data, tmp_path)
    assert again.paths["results"].read_text() == first.paths["results"].read_text()


def test_18_6_a_full_disk_says_so(tmp_path, tiny_cnn, data, monkeypatch):
    import fame_utils.experiment.store as cache

    def full(obj, path):
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64")

    monkeypatch.setattr(cache.torch, "save", full)
    with pytest.raises(OSError, match="disk looks full"):
        _run(tiny_cnn, data, tmp_path)


def test_18_7_duplicate_metric_columns_are_refused_before_any_map(tmp_path, tiny_cnn, data):
    method = Saliency()
    with pytest.raises(ValueError, match="more than once"):
        _run(tiny_cnn, data, tmp_path, [method], [IoUMetric((0.5, 0.5))])
    with pytest.raises(ValueError, match="more than once"):
        _run(tiny_cnn, data, tmp_path, [method], [RoadMetric((10, 10.0))])
    assert method.calls == 0 and not (tmp_path / "cache").exists()


@pytest.mark.parametrize("overwrite", [False, True])
def test_18_8_foreign_result_files_are_never_overwritten(tmp_path, tiny_cnn, data, overwrite):
    (tmp_path / "results.csv").write_text("my own numbers\n")
    (tmp_path / "summary.md").write_text("# mine\n")
    with pytest.raises(RunConflictError, match="no run.json"):
        _run(tiny_cnn, data, tmp_path, overwrite=overwrite)
    assert (tmp_path / "results.csv").read_text() == "my own numbers\n"
    assert (tmp_path / "summary.md").read_text() == "# mine\n"


def test_method_key_leaves_out_speed_and_display_fields():
    from fame_utils import Fame
    from fame_utils.baselines.corrrise import CorrRISE
    from fame_utils.baselines.fggb import FGGB
    from fame_utils.core import FameConfig
    from fame_utils.experiment.keys import method_key

    assert method_key(CorrRISE(batch_size=3)) == method_key(CorrRISE())
    assert method_key(CorrRISE(n_masks=9)) != method_key(CorrRISE())
    assert method_key(FGGB(0.2, chunk_size=4)) == method_key(FGGB(0.2))
    assert method_key(Fame(FameConfig(progress=False, batch_size=2))) == method_key(Fame())
    assert method_key(Fame(FameConfig(sigma=3.0))) != method_key(Fame())


def test_numpy_integers_are_accepted_as_counts_and_seeds(tmp_path, tiny_cnn, data):
    import numpy as np

    res = run_experiment(
        tiny_cnn,
        data,
        [Saliency()],
        [IoUMetric()],
        tmp_path,
        batch_size=np.int64(2),
        seed=np.int32(1),
        progress=False,
        n_resamples=np.int64(20),
    )
    assert res.batch_size == 2 and json.loads(res.paths["run"].read_text())["seed"] == 1
