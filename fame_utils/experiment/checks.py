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
from collections.abc import Sequence

import torch
from torch import Tensor

from ..data.items import Task, task_of
from ..methods import supports
from ..metrics.adapters import Metric
from ..objectives import Attribution

__all__ = ["MAP_TOLERANCE", "check_threshold", "positive_int"]

MAP_TOLERANCE = 1e-5
"""How far outside [0, 1] a map value may lie (rounding) before the map is refused."""


def positive_int(value: object, name: str) -> int:
    """``value`` as an int >= 1, else ``ValueError`` naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


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


def _check_model_output(output: Tensor, names: list[str]) -> None:
    """Refuse a model whose clean output (logits, embeddings) holds NaN or Inf: every map
    and metric of those items would be meaningless."""
    bad = _nonfinite_items(output, names)
    if bad:
        raise RuntimeError(
            f"the model's output holds NaN or Inf for items {bad} on the clean images; "
            "no map of them can be computed (check the model's weights and the images)"
        )


def _check_inputs(dataset, metrics, batch_size, eval_batch_size, n_resamples, threads) -> Task:
    if dataset is None or len(dataset) == 0:
        raise ValueError("the dataset is empty")
    task = task_of(dataset[0])
    for m in metrics:
        if getattr(m, "task", None) != task:
            raise ValueError(
                f"metric {type(m).__name__} is for {getattr(m, 'task', '?')} but the dataset "
                f"holds {task} items"
            )
    positive_int(batch_size, "batch_size")
    positive_int(eval_batch_size, "eval_batch_size")
    positive_int(n_resamples, "n_resamples")
    if threads is not None:
        positive_int(threads, "threads")
    return task


def _check_methods(methods: Sequence, task: Task) -> None:
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


def _empty_items(att: Attribution, names: list[str]) -> list[str]:
    """Items whose e₊ map is all zero (an empty e₋ is expected, e.g. impostor pairs)."""
    empty = att.positive.detach().flatten(1).amax(1) <= 0
    return [n for n, e in zip(names, empty.cpu().tolist()) if e]


def _blob_problem(blob: dict | None, names: list[str], shape: tuple[int, ...]) -> str | None:
    if blob is None:
        return "missing"
    if not {"positive", "negative", "names"} <= set(blob):
        return "incomplete"
    if blob["names"] != names:
        return "for other items"
    problem = _map_problem(blob["positive"], shape, "positive")
    if problem is None and blob["negative"] is not None:
        problem = _map_problem(blob["negative"], shape, "negative")
    return problem


def _check_method_output(name: str, att: Attribution, items: list[str], shape) -> None:
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


def _values_problem(cached: dict | None, m: Metric, n: int) -> str | None:
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
