"""The two stages of a run: computing and caching maps, then evaluating the metrics.

- :func:`compute_maps` computes one method's maps for the batches a rank owns and
  stores each batch atomically in its cache folder (``batch_00000.pt``), skipping
  batches validly cached and recomputing (with a warning) those that fail the checks of
  :mod:`.checks`; the metric values of a recomputed batch are dropped.
- :func:`clean_verification` embeds every pair once (gallery references, clean scores).
- :func:`evaluate` scores the cached maps of one method with every metric, caching the
  per-batch values next to the maps (``eval_<metric>-<key>_00000.pt``), and returns the
  tidy records (``index, item, method, metric, threshold, percent, value``).

Batches are ``range`` objects of item indices (:func:`batches`); :mod:`.run` drives the
stages over the methods and writes the outputs.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._checks import model_device
from ..data.items import Task, collate
from ..metrics.adapters import Column, EvalContext, Metric
from ..metrics.face import embed
from ..objectives import Attribution, ClassLogit, CosineSimilarity
from .cache import batch_hash, digest, jsonable, load, save_tensors, slug
from .checks import (
    blob_problem,
    check_method_output,
    check_model_outputs,
    empty_items,
    values_problem,
)


def batch_bounds(n: int, batch_size: int) -> list[range]:
    return [range(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def input_hashes(dataset: Sequence, batches: list[range], progress: bool) -> list[str]:
    """:func:`.cache.batch_hash` of every batch, read as the stages will read it."""
    return [
        batch_hash(_get_batch(dataset, idx))
        for idx in tqdm(batches, desc="hashing inputs", disable=not progress, leave=False)
    ]


def _get_batch(dataset: Sequence, idx: range):
    return collate([dataset[i] for i in idx], list(idx))


def _item_names(dataset: Sequence, idx: range) -> list[str]:
    names = getattr(dataset, "names", None)
    if isinstance(names, list) and len(names) == len(dataset):
        return [names[i] or str(i) for i in idx]
    return _get_batch(dataset, idx).names


@torch.no_grad()
def clean_verification(
    model: nn.Module, dataset: Sequence, batch_size: int, device, progress: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Normalised gallery embeddings (N, D), clean scores (N,), genuine (N,) on CPU."""
    refs, scores, gen = [], [], []
    for idx in tqdm(
        batch_bounds(len(dataset), batch_size),
        desc="clean scores",
        disable=not progress,
        leave=False,
    ):
        b = _get_batch(dataset, idx).to(device)
        eg = embed(model, b.gallery, batch_size)
        ep = embed(model, b.probe, batch_size)
        check_model_outputs(torch.cat([eg, ep], 1), b.names)
        refs.append(eg.cpu())
        scores.append((eg * ep).sum(1).cpu())
        gen.append(b.genuine.cpu())
    return torch.cat(refs), torch.cat(scores), torch.cat(gen)


def _drop_evaluations(folder: Path, b: int) -> None:
    """Metric values of batch ``b`` were computed from its old maps: remove them."""
    for p in folder.glob(f"eval_*_{b:05d}.pt"):
        p.unlink(missing_ok=True)


def compute_maps(
    model: nn.Module,
    dataset: Sequence,
    method: Callable[..., Attribution],
    folder: Path,
    batches: list[range],
    owned: list[int],
    hw: tuple[int, int],
    task: Task,
    refs: Tensor | None,
    threshold: float | None,
    cache_dtype: torch.dtype,
    progress: bool,
    checked: set[int],
    inputs: list[str],
) -> tuple[int, list[str]]:
    """Compute and cache the maps of every batch in ``owned`` that is not validly cached
    in ``folder`` (``inputs[b]``: the hash of batch b's pixels, :func:`.cache.batch_hash`,
    stored with its maps; maps of other pixels are recomputed); returns how many batches
    were computed and the items with empty maps.

    Raises:
        RuntimeError: the method returned NaN/Inf maps (the items are named; nothing of
            that batch is cached) or maps of the wrong shape; the model's clean logits
            hold NaN/Inf (checked once per batch; ``checked`` holds the batches done).
    """
    device = model_device(model)
    todo, empty, new_empty = [], [], []
    for b in owned:
        path = folder / f"batch_{b:05d}.pt"
        blob = load(path)
        names = _item_names(dataset, batches[b])
        problem = blob_problem(blob, names, (len(batches[b]), *hw), inputs[b])
        if problem is None:
            empty += blob.get("empty", [])
            continue
        if blob is not None:  # (an unreadable file was reported by load)
            warnings.warn(f"cached maps {path} are {problem}; recomputing them", stacklevel=3)
        _drop_evaluations(folder, b)
        todo.append(b)
    bar = tqdm(
        total=len(owned),
        initial=len(owned) - len(todo),
        desc=f"maps {method.name}",
        unit="batch",
        disable=not progress,
        leave=False,
    )
    try:
        for b in todo:
            idx = batches[b]
            batch = _get_batch(dataset, idx).to(device)
            if task == "classification":
                images, target = batch.images, ClassLogit(batch.labels)
                if b not in checked:
                    with torch.no_grad():
                        check_model_outputs(model(images).flatten(1), batch.names)
                    checked.add(b)
            else:
                images = batch.probe
                target = CosineSimilarity(refs[idx.start : idx.stop].to(device), threshold)
            att = method(model, images, target)
            if not isinstance(att, Attribution):
                raise TypeError(
                    f"method {method.name} returned {type(att).__name__}, expected Attribution"
                )
            check_method_output(method.name, att, batch.names, (len(idx), *hw))
            batch_empty = empty_items(att, batch.names)
            new_empty += batch_empty
            neg = att.negative
            blob = {
                "positive": att.positive.detach().to("cpu", cache_dtype),
                "negative": None if neg is None else neg.detach().to("cpu", cache_dtype),
                "names": batch.names,
                "empty": batch_empty,
                "inputs": inputs[b],
            }
            save_tensors(blob, folder / f"batch_{b:05d}.pt")
            bar.update(1)
    finally:
        bar.close()
    if new_empty:
        warnings.warn(
            f"{method.name} gave all-zero maps for {new_empty}; they are scored as empty maps "
            "and listed in run.json",
            stacklevel=3,
        )
    return len(todo), empty + new_empty


def _cached_maps(folder: Path, b: int, dataset: Sequence, idx: range, device):
    """The batch and its cached maps (checked to belong to this batch's items)."""
    map_path = folder / f"batch_{b:05d}.pt"
    blob = load(map_path)
    batch = _get_batch(dataset, idx).to(device)
    if blob is None:
        raise RuntimeError(
            f"cached maps {map_path} are missing or unreadable; run again to recompute them"
        )
    if blob["names"] != batch.names:
        raise RuntimeError(
            f"cache {folder} holds maps for other items than batch {b} of this dataset; "
            "run again to recompute them"
        )
    neg = blob["negative"]
    att = Attribution(
        blob["positive"].to(device, torch.float32),
        None if neg is None else neg.to(device, torch.float32),
    )
    return batch, att


def evaluate(
    model: nn.Module,
    dataset: Sequence,
    method_name: str,
    folder: Path,
    batches: list[range],
    which: list[int],
    metrics: Sequence[Metric],
    context: EvalContext,
    refs: Tensor | None,
    progress: bool,
) -> list[dict]:
    """Tidy records of every metric on the batches ``which`` of one method (metric values
    are cached next to the maps, keyed by the metric's settings and the tie rule; a cached
    value file that is unreadable or malformed is recomputed with a warning)."""
    device = model_device(model)
    records: list[dict] = []
    keys = [
        digest(
            {
                "metric": jsonable(m),
                "seed": context.seed,
                "eval_batch_size": context.batch_size,
                "ties": context.ties,
                "tie_seed": context.tie_seed,
            }
        )
        for m in metrics
    ]
    bar = tqdm(
        total=len(which),
        desc=f"eval {method_name}",
        unit="batch",
        disable=not progress,
        leave=False,
    )
    try:
        for b in which:
            idx = batches[b]
            loaded = None
            for m, key in zip(metrics, keys):
                mpath = folder / f"eval_{slug(type(m).__name__)}-{key}_{b:05d}.pt"
                cached = load(mpath)
                problem = values_problem(cached, m, len(idx))
                if problem is not None:
                    if cached is not None:  # (an unreadable file was reported by load)
                        warnings.warn(
                            f"cached metric values {mpath} are {problem}; recomputing them",
                            stacklevel=3,
                        )
                    loaded = loaded or _cached_maps(folder, b, dataset, idx, device)
                    batch, att = loaded
                    ctx = EvalContext(
                        threshold=context.threshold,
                        references=None if refs is None else refs[idx.start : idx.stop].to(device),
                        seed=context.seed + b,
                        batch_size=context.batch_size,
                        ties=context.ties,
                        tie_seed=context.tie_seed,
                    )
                    values = m(model, batch, att, ctx)
                    missing = {c.label for c in m.columns()} - {c.label for c in values}
                    if missing:
                        raise RuntimeError(f"{type(m).__name__} did not return {sorted(missing)}")
                    cached = {
                        "names": batch.names,
                        "values": {c.label: v.detach().float().cpu() for c, v in values.items()},
                    }
                    save_tensors(cached, mpath)
                for col in m.columns():
                    values = cached["values"][col.label].tolist()
                    for i, name, v in zip(idx, cached["names"], values):
                        records.append(_record(i, name, method_name, col, v))
            bar.update(1)
    finally:
        bar.close()
    return records


def _record(index: int, item: str, method: str, col: Column, value: float) -> dict:
    return {
        "index": index,
        "item": item,
        "method": method,
        "metric": col.metric,
        "threshold": col.threshold,
        "percent": col.percent,
        "value": value,
    }
