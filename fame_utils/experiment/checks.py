"""Checks of a run's inputs and of the maps and metric values it computes or caches.

Used by :mod:`.run` (arguments of :func:`~fame_utils.experiment.run.run_experiment`:
dataset, metrics, methods, batch sizes, the verification θ) and by :mod:`.stages`
(a model's clean output must be finite; maps must be (B, H, W), finite and within
[0, 1] up to :data:`MAP_TOLERANCE`; cached map batches and metric values must belong to
the batch's items). A ``*_problem`` function returns why its input is unusable, or
``None``; a ``_check_*`` function raises with what to do.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..data.items import Task, task_of
from ..methods import supports
from ..metrics.adapters import Metric
from ..objectives import Attribution

__all__ = ["MAP_TOLERANCE", "check_threshold", "positive_int", "check_seed", "check_folder"]

CACHE_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)
"""Dtypes maps may be cached in (an integer dtype would truncate [0, 1] maps to 0/1)."""

MAP_TOLERANCE = 1e-5
"""How far outside [0, 1] a map value may lie (rounding) before the map is refused."""


def positive_int(value: object, name: str) -> int:
    """``value`` (an int or numpy integer, not a bool) as an int >= 1, else ``ValueError``
    naming ``name``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return int(value)


def check_seed(seed: object, name: str = "seed") -> int:
    """A seed: a whole number in [0, 2**63 - 1] (numpy integers accepted, bools refused)."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise ValueError(f"{name} must be a whole number >= 0, got {seed!r}")
    if not 0 <= int(seed) < 2**63:
        raise ValueError(f"{name} must be a whole number in [0, 2**63 - 1], got {seed!r}")
    return int(seed)


def check_folder(path: object, name: str) -> Path:
    """A folder the run may create and write: a non-empty path that is not an existing
    file and whose nearest existing parent is a writable folder."""
    if path is None or str(path).strip() == "":
        raise ValueError(f"{name} must name a folder, got {path!r}")
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{name} {folder} is an existing file, not a folder; choose a folder")
    parent = folder
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ValueError(f"{name} {folder}: {parent} is a file, so the folder cannot be made")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise ValueError(
            f"{name} {folder}: {parent} is not writable by this user; choose another folder"
        )
    return folder


def check_threshold(threshold: float) -> float:
    """A verification θ on the cosine similarity: finite, within [-1, 1]."""
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise ValueError(
            f"the verification threshold must be a number, got {threshold!r}"
        ) from None
    if not math.isfinite(t) or not -1.0 <= t <= 1.0:
        raise ValueError(
            f"the verification threshold θ is a cosine similarity in [-1, 1], got {threshold!r}"
        )
    return t


def check_model_outputs(output: Tensor, names: list[str]) -> None:
    """Refuse a model whose clean output (logits, embeddings) holds NaN or Inf: every map
    and metric of those items would be meaningless."""
    bad = _nonfinite_items(output, names)
    if bad:
        raise RuntimeError(
            f"the model's output holds NaN or Inf for items {bad} on the clean images; "
            "no map of them can be computed (check the model's weights and the images)"
        )


def check_inputs(
    dataset, metrics, batch_size, eval_batch_size, n_resamples, threads, seed, cache_dtype
) -> Task:
    if dataset is None or len(dataset) == 0:
        raise ValueError("the dataset is empty")
    task = task_of(dataset[0])
    for m in metrics:
        if getattr(m, "task", None) != task:
            raise ValueError(
                f"metric {type(m).__name__} is for {getattr(m, 'task', '?')} but the dataset "
                f"holds {task} items"
            )
    labels = [c.label for m in metrics for c in m.columns()]
    repeated = sorted({c for c in labels if labels.count(c) > 1})
    if repeated:
        raise ValueError(
            f"metric columns {repeated} are given more than once (duplicate thresholds, "
            "percents or metrics); give each once"
        )
    if cache_dtype not in CACHE_DTYPES:
        raise ValueError(
            f"cache_dtype must be a floating dtype ({', '.join(map(str, CACHE_DTYPES))}), got "
            f"{cache_dtype!r}: maps in [0, 1] would be truncated"
        )
    check_seed(seed)
    positive_int(batch_size, "batch_size")
    positive_int(eval_batch_size, "eval_batch_size")
    positive_int(n_resamples, "n_resamples")
    if threads is not None:
        positive_int(threads, "threads")
    return task


def check_methods(methods: Sequence, task: Task) -> None:
    if not methods:
        raise ValueError("no methods given")
    names = [getattr(m, "name", None) for m in methods]
    if any(not n for n in names):
        raise ValueError("every method needs a non-empty `name` attribute")
    if len(set(names)) != len(names):
        raise ValueError(f"method names must be unique, got {names}")
    for m in methods:
        if not supports(m, task):
            raise ValueError(f"method {m.name} does not support {task} (see its `targets`)")


def _map_problem(maps: Tensor | None, shape: tuple[int, ...], role: str) -> str | None:
    """Why ``maps`` cannot be (B, H, W) [0, 1] maps of ``shape``; ``None`` when they can."""
    if not isinstance(maps, Tensor):
        return f"{role} maps are {type(maps).__name__}, not a tensor"
    if tuple(maps.shape) != shape:
        return f"{role} maps have shape {tuple(maps.shape)}, expected {shape}"
    if not bool(torch.isfinite(maps).all()):
        return f"{role} maps hold NaN or Inf"
    lo, hi = float(maps.min()), float(maps.max())
    if lo < -MAP_TOLERANCE or hi > 1 + MAP_TOLERANCE:
        return f"{role} maps lie in [{lo:.6g}, {hi:.6g}], outside [0, 1]"
    return None


def _nonfinite_items(maps: Tensor, names: list[str]) -> list[str]:
    bad = ~torch.isfinite(maps.detach().flatten(1)).all(1)
    return [n for n, b in zip(names, bad.cpu().tolist()) if b]


def empty_items(att: Attribution, names: list[str]) -> list[str]:
    """Items whose e₊ map is all zero (an empty e₋ is expected, e.g. impostor pairs)."""
    empty = att.positive.detach().flatten(1).amax(1) <= 0
    return [n for n, e in zip(names, empty.cpu().tolist()) if e]


def blob_problem(
    blob: dict | None, names: list[str], shape: tuple[int, ...], inputs: str
) -> str | None:
    if blob is None:
        return "missing"
    if not {"positive", "negative", "names"} <= set(blob):
        return "incomplete"
    if blob["names"] != names:
        return "for other items"
    if blob.get("inputs") != inputs:
        return "computed from other input pixels"
    problem = _map_problem(blob["positive"], shape, "positive")
    if problem is None and blob["negative"] is not None:
        problem = _map_problem(blob["negative"], shape, "negative")
    return problem


def check_method_output(name: str, att: Attribution, items: list[str], shape) -> None:
    for role, maps in (("positive", att.positive), ("negative", att.negative)):
        if maps is None and role == "negative":
            continue
        problem = _map_problem(maps, shape, role)
        if problem is None:
            continue
        if "NaN" in problem:
            problem += f" for items {_nonfinite_items(maps, items)}"
        raise RuntimeError(
            f"method {name} returned unusable maps: {problem}. Nothing of this batch was "
            "cached or scored (NaN maps come from a model that outputs NaN or a step size "
            "that overflows; check the model and the method's settings)"
        )


def values_problem(cached: dict | None, m: Metric, n: int) -> str | None:
    if cached is None:
        return "missing"
    values = cached.get("values")
    if not isinstance(values, dict) or not isinstance(cached.get("names"), list):
        return "incomplete"
    if len(cached["names"]) != n:
        return f"for {len(cached['names'])} items, not {n}"
    for c in m.columns():
        v = values.get(c.label)
        if not isinstance(v, Tensor) or tuple(v.shape) != (n,):
            return f"without a ({n},) column {c.label}"
    return None
