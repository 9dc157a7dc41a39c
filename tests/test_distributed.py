"""Runs split across processes (issue 12): two Gloo ranks on the CPU give the results of
one process, and a run whose second rank dies midway completes on rerun with the same
result, recomputing only the missing batches."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest
import receptive_nets
import torch
import torch.multiprocessing as mp
from torch import nn

from fame_utils import Attribution, Fame
from fame_utils.core import FameConfig
from fame_utils.data.items import ClassificationDataset
from fame_utils.experiment.distributed import Shard, current, init_from_env
from fame_utils.experiment.run import run_experiment
from fame_utils.metrics.adapters import IoUMetric, RoadMetric

pytestmark = pytest.mark.slow


@dataclass
class Saliency:
    """|∂z_y/∂x| summed over colours, max-normalised; the rank ``die_on`` exits hard
    (as if killed) at its call number ``die_at``."""

    name: str = "saliency"
    die_on: int | None = None
    die_at: int = 0
    calls: int = 0
    runtime_fields = frozenset({"die_on", "die_at", "calls"})  # not in the cache key

    def __call__(self, model, images, target):
        if self.die_on == current().rank and self.calls == self.die_at:
            os._exit(3)
        self.calls += 1
        x = images.clone().requires_grad_(True)
        z = model(x).gather(1, target.indices(len(x))[:, None]).sum()
        (g,) = torch.autograd.grad(z, x)
        m = g.abs().sum(1)
        return Attribution(m / m.flatten(1).amax(1).clamp_min(1e-12).view(-1, 1, 1))


def _model() -> nn.Module:
    return receptive_nets.tiny_cnn()


def _data() -> ClassificationDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(7, 3, 16, 16, generator=g)
    return ClassificationDataset(images, [0, 1, 2, 3, 4, 0, 1], boxes=[[2, 3, 12, 11]] * 7)


def _experiment(out: Path, die_on: int | None = None):
    methods = [Saliency(die_on=die_on, die_at=1), Fame(FameConfig(iterations=2, progress=False))]
    metrics = [IoUMetric(), RoadMetric((10, 50))]
    return run_experiment(
        _model(), _data(), methods, metrics, out, batch_size=2, threads=1, progress=False
    )


def _worker(rank: int, world: int, port: int, out: str, die_on: int | None) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
    )
    shard, device = init_from_env("cpu", timeout_s=120)
    assert shard == Shard(rank, world) and device.type == "cpu"
    try:
        _experiment(Path(out), die_on)
    finally:
        torch.distributed.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _spawn(out: Path, die_on: int | None = None) -> None:
    mp.spawn(_worker, args=(2, _free_port(), str(out), die_on), nprocs=2, join=True)


def _results(folder: Path) -> pd.DataFrame:
    return pd.read_csv(folder / "results.csv")


def _assert_same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert a.drop(columns="value").equals(b.drop(columns="value"))
    assert (a["value"] - b["value"]).abs().max() <= 1e-5


def test_two_gloo_ranks_equal_one_process_and_resume_after_a_rank_dies(tmp_path):
    _experiment(tmp_path / "single")
    assert current() == Shard(0, 1)  # one process: no process group was started

    _spawn(tmp_path / "two")
    _assert_same(_results(tmp_path / "two"), _results(tmp_path / "single"))
    record = json.loads((tmp_path / "two" / "run.json").read_text())
    assert record["run"]["world_size"] == 2
    assert record["run"]["computed_batches"] == {"saliency": 4, "FAME": 4}

    # rank 1 dies at its second batch (batch 3): the run fails, its other batches stay
    with pytest.raises(mp.ProcessExitedException):
        _spawn(tmp_path / "killed", die_on=1)
    assert not (tmp_path / "killed" / "results.csv").exists()
    saliency = next((tmp_path / "killed" / "cache").glob("saliency-*"))
    assert (saliency / "batch_00001.pt").is_file()
    assert not (saliency / "batch_00003.pt").exists()

    _spawn(tmp_path / "killed")
    _assert_same(_results(tmp_path / "killed"), _results(tmp_path / "single"))
    record = json.loads((tmp_path / "killed" / "run.json").read_text())
    # the saliency batches 0, 1, 2 were kept; only batch 3 was computed again
    assert record["run"]["computed_batches"]["saliency"] == 1


def test_torchrun_cli_equals_the_single_process_cli(tmp_path):
    common = [
        "-m",
        "fame_utils",
        "imagenet",
        "--max-images",
        "4",
        "--iterations",
        "2",
        "--methods",
        "gradcam,fame",
        "--batch-size",
        "1",
        "--threads",
        "1",
        "--no-progress",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [sys.executable, *common, "--out", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert one.returncode == 0, one.stderr
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            *common,
            "--out",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )
    assert two.returncode == 0, two.stderr
    _assert_same(_results(tmp_path / "two"), _results(tmp_path / "one"))
    assert two.stdout.count("| Method |") == 1  # rank 0 alone prints the summary
    record = json.loads((tmp_path / "two" / "run.json").read_text())
    assert record["run"]["world_size"] == 2
