"""Runs split across ``torchrun`` processes: rank r of n computes the map batches r, r + n,
… into the shared cache, then (after a barrier) reads it all; rank 0 writes the tables. Call
:func:`init_from_env` before :func:`~fame_utils.run_experiment`; in one process it is a no-op."""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, NamedTuple

import torch
import torch.distributed as dist

__all__ = ["Shard", "current", "init_from_env", "barrier", "broadcast", "all_gather"]


class Shard(NamedTuple):
    """This process's part of a run: ``rank`` of ``world_size`` (round robin batches)."""

    rank: int = 0
    world_size: int = 1


def current() -> Shard:
    """The shard of this process: from the initialised process group, else rank 0 of 1."""
    if dist.is_available() and dist.is_initialized():
        return Shard(dist.get_rank(), dist.get_world_size())
    return Shard()


def init_from_env(
    device: str | torch.device | None = None, timeout_s: float = 1800.0
) -> tuple[Shard, torch.device]:
    """Start the process group when torchrun's ``WORLD_SIZE`` > 1 (NCCL on this rank's GPU
    ``cuda:LOCAL_RANK``, Gloo on CPUs); this process's shard and device (``device``, else
    ``cuda:LOCAL_RANK`` if CUDA is available, else CPU). ValueError: no torch.distributed."""
    world = int(os.environ.get("WORLD_SIZE", 1))
    if device is not None:
        dev = torch.device(device)
    elif torch.cuda.is_available():
        dev = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)) % torch.cuda.device_count())
    else:
        dev = torch.device("cpu")
    if world <= 1 or (dist.is_available() and dist.is_initialized()):
        return current(), dev
    if not dist.is_available():
        raise ValueError(f"WORLD_SIZE={world} but this torch has no torch.distributed")
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    dist.init_process_group(
        "nccl" if dev.type == "cuda" else "gloo", timeout=timedelta(seconds=timeout_s)
    )
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


def all_gather(value: Any) -> list[Any]:
    """Every rank's ``value`` (picklable), in rank order (``[value]`` in one process)."""
    every = [None] * current().world_size
    if len(every) == 1:
        return [value]
    dist.all_gather_object(every, value)
    return every
