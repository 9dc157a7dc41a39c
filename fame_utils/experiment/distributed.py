"""Runs split across processes with ``torch.distributed`` (``torchrun``), one code path.

The experiment's map batches are numbered globally; rank r of a world of n computes and
evaluates batches r, r + n, r + 2n, … into the shared cache (atomic writes, so any world
size resumes any other's cache), then waits at a barrier, after which every rank reads the
whole cache and rank 0 writes ``results.csv`` and the summaries.

- One process (``WORLD_SIZE`` unset or 1, no process group): :func:`current` is rank 0 of
  1 and the barriers and broadcasts do nothing; nothing is initialised.
- ``torchrun --nproc_per_node N -m fame_utils ...``: the command line calls
  :func:`init_from_env`, which starts the process group from torchrun's environment (NCCL
  on GPUs with one device per local rank, Gloo on CPUs). Code that calls
  :func:`~fame_utils.run_experiment` under torchrun itself calls
  :func:`init_from_env` (or ``torch.distributed.init_process_group``) first.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

__all__ = ["Shard", "current", "init_from_env", "local_device", "barrier", "broadcast"]


@dataclass(frozen=True)
class Shard:
    """This process's part of a run: ``rank`` of ``world_size``."""

    rank: int = 0
    world_size: int = 1

    def owns(self, batch: int) -> bool:
        """Whether global batch ``batch`` is this rank's (round robin)."""
        return batch % self.world_size == self.rank

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    text = os.environ.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"environment variable {name}={text!r} is not an integer") from None


def current() -> Shard:
    """The shard of this process: from the initialised process group, else rank 0 of 1."""
    if dist.is_available() and dist.is_initialized():
        return Shard(dist.get_rank(), dist.get_world_size())
    return Shard()


def local_device(device: str | torch.device | None = None) -> torch.device:
    """The device of this process: ``device`` if given; else under torchrun with GPUs
    ``cuda:LOCAL_RANK`` (one device per local rank), else ``cuda`` when available, else CPU."""
    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda", _env_int("LOCAL_RANK", 0) % torch.cuda.device_count())
    return torch.device("cpu")


def init_from_env(
    device: str | torch.device | None = None, timeout_s: float = 1800.0
) -> tuple[Shard, torch.device]:
    """Start the process group when torchrun's ``WORLD_SIZE`` > 1 (NCCL when this rank's
    device is a GPU, Gloo otherwise; the GPU is made current); returns this process's
    shard and device. With ``WORLD_SIZE`` unset or 1 nothing is initialised.

    Raises:
        ValueError: ``WORLD_SIZE`` > 1 without torch.distributed support.
    """
    world = _env_int("WORLD_SIZE", 1)
    dev = local_device(device)
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return current(), dev
    if not dist.is_available():
        raise ValueError(f"WORLD_SIZE={world} but this torch build has no torch.distributed")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return current(), dev


def barrier() -> None:
    """Wait for every rank (no-op in one process)."""
    if current().world_size > 1:
        dist.barrier()


def broadcast(value: Any) -> Any:
    """Rank 0's ``value`` on every rank (a picklable object; no-op in one process)."""
    if current().world_size == 1:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]
