"""The run loop: maps for every method, cached on disk, evaluated into tidy tables.

:func:`run_experiment` takes a model, a dataset (items of :mod:`fame_utils.data.items`),
methods (instances under the convention of :mod:`fame_utils.explain`, or registry names,
see :mod:`fame_utils.methods`) and metric adapters (:mod:`fame_utils.metrics.adapters`):

1. computes every method's maps batch by batch on the model's device (one tqdm bar per
   method) and stores each batch in ``cache_dir/<method>-<hash>/batch_00000.pt``, written
   atomically (:mod:`.cache`). Re-running skips cached batches, so an interrupted run
   resumes where it stopped; a cached batch that is unreadable or fails its checks
   (items, shape, finite, in [0, 1]) is recomputed with a warning, and temporary files of
   killed writers are removed. The hash covers the model, the method's settings (its
   recipe included; a module-valued setting by its path in the model), the dataset
   identity, the batch size and, for verification, the threshold; ``meta.json`` in each
   folder records them. A method that returns NaN or Inf maps stops the run (nothing is
   cached); all-zero maps are reported by a warning and listed in ``run.json``;
2. evaluates every metric on every batch (per-batch values are cached next to the maps,
   keyed by the metric's settings and the run recipe's tie rule);
3. writes ``results.csv`` (``index, item, method, metric, threshold, percent, value``),
   the summary (means with 95 % bootstrap intervals over items, :mod:`.report`) as
   ``summary.csv``, ``summary.md`` and ``summary.tex``, and ``run.json``
   (:mod:`.record`: every setting the numbers depend on, and the run's environment).
   A folder whose ``run.json`` holds other settings is not overwritten unless
   ``overwrite=True``; a lock file keeps two runs from writing one folder at once.

Under ``torchrun`` (:mod:`.distributed`) rank r of n computes and evaluates the batches
b with b mod n = r; after a barrier rank 0 writes the outputs from the shared cache.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._checks import model_device
from ..data.items import (
    ClassificationItem,
    PairItem,
    Task,
    collate,
    dataset_identity,
    task_of,
)
from ..explain import Attribution, ClassTarget, SimilarityTarget
from ..methods import make_methods, supports
from ..metrics.adapters import Column, EvalContext, Metric
from ..metrics.face import embed
from ..metrics.threshold import eer_threshold
from ..recipes import Recipe, get_recipe
from ..stats import DEFAULT_RESAMPLES
from . import distributed
from .cache import (
    CACHE_VERSION,
    digest,
    jsonable,
    load,
    method_settings,
    model_fingerprint,
    remove_stale_tmp,
    save_tensors,
    slug,
    write_text,
)
from .record import OutputLock, RunConflictError, check_settings, environment, run_info
from .report import (
    ROW_COLUMNS,
    interval_note,
    summarize,
    summary_latex,
    summary_markdown,
    summary_with_intervals,
)
from .result import ExperimentResult

__all__ = ["run_experiment", "check_threshold", "positive_int"]

MAP_TOLERANCE = 1e-5
"""How far outside [0, 1] a map value may lie (rounding) before the map is refused."""


def _batches(n: int, batch_size: int) -> list[range]:
    return [range(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def _get_batch(dataset: Sequence, idx: range):
    return collate([dataset[i] for i in idx], list(idx))


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


@torch.no_grad()
def _clean_verification(
    model: nn.Module, dataset: Sequence, batch_size: int, device, progress: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Normalised gallery embeddings (N, D), clean scores (N,), genuine (N,) on CPU."""
    refs, scores, gen = [], [], []
    for idx in tqdm(
        _batches(len(dataset), batch_size), desc="clean scores", disable=not progress, leave=False
    ):
        b = _get_batch(dataset, idx).to(device)
        eg = embed(model, b.gallery, batch_size)
        ep = embed(model, b.probe, batch_size)
        _check_model_output(torch.cat([eg, ep], 1), b.names)
        refs.append(eg.cpu())
        scores.append((eg * ep).sum(1).cpu())
        gen.append(b.genuine.cpu())
    return torch.cat(refs), torch.cat(scores), torch.cat(gen)


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


def _item_names(dataset: Sequence, idx: range) -> list[str]:
    names = getattr(dataset, "names", None)
    if isinstance(names, list) and len(names) == len(dataset):
        return [names[i] or str(i) for i in idx]
    return _get_batch(dataset, idx).names


def _drop_evaluations(folder: Path, b: int) -> None:
    """Metric values of batch ``b`` were computed from its old maps: remove them."""
    for p in folder.glob(f"eval_*_{b:05d}.pt"):
        p.unlink(missing_ok=True)


def _compute_maps(
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
) -> tuple[int, list[str]]:
    """Compute and cache the maps of every batch in ``owned`` that is not validly cached
    in ``folder``; returns how many batches were computed and the items with empty maps.

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
        problem = _blob_problem(blob, _item_names(dataset, batches[b]), (len(batches[b]), *hw))
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
                images, target = batch.images, ClassTarget(batch.labels)
                if b not in checked:
                    with torch.no_grad():
                        _check_model_output(model(images).flatten(1), batch.names)
                    checked.add(b)
            else:
                images = batch.probe
                target = SimilarityTarget(refs[idx.start : idx.stop].to(device), threshold)
            att = method(model, images, target)
            if not isinstance(att, Attribution):
                raise TypeError(
                    f"method {method.name} returned {type(att).__name__}, expected Attribution"
                )
            _check_method_output(method.name, att, batch.names, (len(idx), *hw))
            batch_empty = _empty_items(att, batch.names)
            new_empty += batch_empty
            neg = att.negative
            blob = {
                "positive": att.positive.detach().to("cpu", cache_dtype),
                "negative": None if neg is None else neg.detach().to("cpu", cache_dtype),
                "names": batch.names,
                "empty": batch_empty,
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


def _evaluate(
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
                problem = _values_problem(cached, m, len(idx))
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


def _image_size(dataset: Sequence) -> tuple[int, int]:
    item = dataset[0]
    image = item.image if isinstance(item, ClassificationItem) else item.probe
    return int(image.shape[-2]), int(image.shape[-1])


def run_experiment(
    model: nn.Module,
    dataset: Sequence[ClassificationItem] | Sequence[PairItem],
    methods: Sequence[Callable[..., Attribution] | str],
    metrics: Sequence[Metric],
    out_dir: str | os.PathLike,
    *,
    recipe: Recipe | str | None = None,
    batch_size: int = 16,
    eval_batch_size: int = 64,
    cache_dir: str | os.PathLike | None = None,
    threshold: float | None = None,
    model_id: str | None = None,
    seed: int = 0,
    n_resamples: int = DEFAULT_RESAMPLES,
    cache_dtype: torch.dtype = torch.float32,
    progress: bool = True,
    write: bool = True,
    threads: int | None = None,
    overwrite: bool = False,
    threshold_source: str = "given",
) -> ExperimentResult:
    """Compute, cache, evaluate and tabulate every method on a dataset.

    Args:
        model: network in eval mode taking (B, 3, H, W) [0, 1] RGB (a classifier returning
            logits for :class:`ClassificationItem` data, a face embedder for
            :class:`PairItem` data); maps are computed on its device.
        dataset: a sequence of items of one kind (:mod:`fame_utils.data.items`).
        methods: callables ``method(model, images, target) -> Attribution`` with a unique
            ``name`` (FAME and the baselines), or registry names (``"fame"``,
            ``"gradcam"``, …) made with :func:`fame_utils.methods.make_methods` for this
            task and ``recipe`` (FGGB then gets the run's threshold).
        metrics: e.g. ``[IoUMetric(), RoadMetric()]`` or ``[FaceDeleteInsertMetric()]``.
        out_dir: folder for ``results.csv``, the summaries and ``run.json`` (created).
        recipe: ``"paper"`` (default), ``"reference"`` or a
            :class:`~fame_utils.recipes.Recipe`: the metrics' tie rule and seed, and the
            recipe of methods given by name. Method instances keep their own recipe.
        batch_size: items per map batch and per cache file (>= 1).
        eval_batch_size: perturbed images per forward pass in the metrics (>= 1).
        cache_dir: map cache folder (default ``out_dir/cache``); can be shared by runs.
        threshold: verification θ, a cosine similarity in [-1, 1] (labelled as given in
            ``run.json``); default: the clean EER threshold of the dataset's pairs.
        model_id: identifies the model in the cache hash (default: ``model.name`` and a
            hash of its weights).
        seed: base seed of the metrics' random parts (batch b uses ``seed + b``) and of
            the bootstrap intervals.
        n_resamples: bootstrap resamples of each summary cell's 95 % interval.
        cache_dtype: dtype the maps are stored in.
        progress: tqdm bars: one over the methods for maps and one for evaluation, which
            stay; per-batch bars inside them clear when done.
        write: write the CSV/Markdown/LaTeX/JSON files (the cache is always written).
        threads: CPU threads for this run (``torch.set_num_threads``, restored after);
            default: torch's current setting. Recorded in ``run.json`` either way: FAME's
            maps move with the thread count (see the README's run-to-run spread).
        overwrite: replace results in ``out_dir`` that ``run.json`` says were made with
            other settings (otherwise such a run is refused).
        threshold_source: how a given ``threshold`` is labelled in ``run.json`` and the
            result (default ``"given"``; a computed one is ``"clean EER"``).

    Returns:
        :class:`~fame_utils.experiment.result.ExperimentResult` (the same on every rank
        of a distributed run; only rank 0 writes the files).

    Raises:
        ValueError: empty dataset, mixed or unsupported items, metrics for the other task,
            duplicate method names, a method that does not support the task, batch sizes,
            thread count or resamples < 1, a threshold outside [-1, 1].
        RunConflictError: ``out_dir`` holds results of other settings (without
            ``overwrite``) or another run is writing it.
        RuntimeError: a method returned NaN/Inf maps (the items are named).
    """
    task = _check_inputs(dataset, metrics, batch_size, eval_batch_size, n_resamples, threads)
    if threshold is None:
        threshold_source = None
    else:
        threshold = check_threshold(threshold)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _run(
            model,
            dataset,
            methods,
            metrics,
            Path(out_dir),
            task=task,
            recipe=recipe,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            cache_dir=cache_dir,
            threshold=threshold,
            threshold_source=threshold_source,
            model_id=model_id,
            seed=seed,
            n_resamples=n_resamples,
            cache_dtype=cache_dtype,
            progress=progress,
            write=write,
            overwrite=overwrite,
        )
    finally:
        torch.set_num_threads(previous_threads)


def _run(
    model,
    dataset,
    methods,
    metrics,
    out: Path,
    *,
    task: Task,
    recipe,
    batch_size,
    eval_batch_size,
    cache_dir,
    threshold,
    threshold_source,
    model_id,
    seed,
    n_resamples,
    cache_dtype,
    progress,
    write,
    overwrite,
) -> ExperimentResult:
    shard = distributed.current()
    run_recipe = get_recipe(recipe)
    device = model_device(model)
    cache_root = Path(cache_dir) if cache_dir is not None else out / "cache"
    batches = _batches(len(dataset), batch_size)
    owned = [b for b in range(len(batches)) if shard.owns(b)]
    hw = _image_size(dataset)
    fingerprint = model_fingerprint(model)
    base = {
        "cache_version": CACHE_VERSION,
        "task": task,
        "model": model_id or fingerprint,
        "dataset": dataset_identity(dataset),
        "n_items": len(dataset),
        "batch_size": batch_size,
        "cache_dtype": str(cache_dtype),
    }
    refs = None
    if task == "verification":
        refs, clean, genuine = _clean_verification(
            model, dataset, eval_batch_size, device, progress
        )
        if threshold is None:
            # rank 0's, so that every rank keys its cache by the same θ
            threshold = distributed.broadcast(float(eer_threshold(clean, genuine)))
            threshold_source = "clean EER"
        base["threshold"] = repr(float(threshold))
    methods = _resolve_methods(methods, task, recipe, threshold)
    keys = {m.name: {**base, "method": method_settings(m, model)} for m in methods}
    settings = {
        **base,
        "model": {"id": base["model"], "fingerprint": fingerprint, "class": type(model).__name__},
        "threshold": threshold,
        "threshold_source": threshold_source,
        "methods": {name: key["method"] for name, key in keys.items()},
        "metrics": [jsonable(m) for m in metrics],
        "recipe": run_recipe.as_dict(),
        "eval_batch_size": eval_batch_size,
        "seed": seed,
        "tie_seed": run_recipe.tie_seed,
        "bootstrap": {"n_resamples": n_resamples, "seed": seed, "level": 0.95},
        **environment(device),
    }
    lock = OutputLock(out) if write and shard.is_main else None
    problem = None
    if lock is not None:
        try:
            check_settings(out, settings, overwrite)
            lock.acquire()
        except RunConflictError as e:
            problem = str(e)
    problem = distributed.broadcast(problem)
    if problem is not None:
        raise RunConflictError(problem)
    try:
        if shard.is_main:
            remove_stale_tmp(out)
        cache_dirs: dict[str, Path] = {}
        checked: set[int] = set()  # batches whose clean model output was checked
        computed: dict[str, int] = {}
        empty: dict[str, list[str]] = {}
        for method in tqdm(methods, desc="maps", unit="method", disable=not progress):
            folder = cache_root / f"{slug(method.name)}-{digest(keys[method.name])}"
            cache_dirs[method.name] = folder
            folder.mkdir(parents=True, exist_ok=True)
            remove_stale_tmp(folder)
            if not (folder / "meta.json").exists():
                meta = json.dumps({"name": method.name, **keys[method.name]}, indent=2)
                write_text(meta, folder / "meta.json")
            computed[method.name], empty[method.name] = _compute_maps(
                model,
                dataset,
                method,
                folder,
                batches,
                owned,
                hw,
                task,
                refs,
                threshold,
                cache_dtype,
                progress,
                checked,
            )

        context = EvalContext(
            threshold=threshold,
            seed=seed,
            batch_size=eval_batch_size,
            ties=run_recipe.ties,
            tie_seed=run_recipe.tie_seed,
        )
        every = list(range(len(batches)))
        for method in tqdm(  # this rank's shard
            methods, desc="evaluation", unit="method", disable=not progress
        ):
            _evaluate(
                model,
                dataset,
                method.name,
                cache_dirs[method.name],
                batches,
                owned,
                metrics,
                context,
                refs,
                progress,
            )
        distributed.barrier()
        records: list[dict] = []
        for method in methods:  # every shard, from the cache
            records += _evaluate(
                model,
                dataset,
                method.name,
                cache_dirs[method.name],
                batches,
                every,
                metrics,
                context,
                refs,
                False,
            )
        computed = _gather_counts(computed)
        empty = _gather_empty(empty)
        rows = pd.DataFrame.from_records(records, columns=ROW_COLUMNS)
        rows = rows.astype({"threshold": float, "percent": float})
        columns = [c for m in metrics for c in m.summary_columns()]
        decimals = {c.label: m.decimals for m in metrics for c in m.summary_columns()}
        names = [m.name for m in methods]
        summary, intervals = summarize(rows, columns, names, n_resamples=n_resamples, seed=seed)
        paths: dict[str, Path] = {}
        if write:
            paths = _output_paths(out)
        if lock is not None:
            _write_outputs(
                paths, rows, summary, intervals, decimals, len(dataset), seed, n_resamples
            )
            info = run_info(
                shard.world_size,
                device,
                cache_dirs={k: str(v) for k, v in cache_dirs.items()},
                computed_batches=computed,
                empty_maps={k: v for k, v in empty.items() if v},
            )
            record = {**settings, "run": info}
            write_text(json.dumps(record, indent=2, default=str), paths["run"])
        distributed.barrier()
    finally:
        if lock is not None:
            lock.release()
    return ExperimentResult(
        rows=rows,
        summary=summary,
        paths=paths,
        cache_dirs=cache_dirs,
        threshold=threshold,
        batch_size=batch_size,
        decimals=decimals,
        computed_batches=computed,
        intervals=intervals,
        recipe=run_recipe,
        threshold_source=threshold_source,
    )


def _gather_counts(counts: dict[str, int]) -> dict[str, int]:
    """Batches computed per method, summed over the ranks."""
    if distributed.current().world_size == 1:
        return counts
    every = [None] * distributed.current().world_size
    torch.distributed.all_gather_object(every, counts)
    return {k: sum(c[k] for c in every) for k in counts}


def _gather_empty(empty: dict[str, list[str]]) -> dict[str, list[str]]:
    """Items with empty maps per method, from every rank."""
    if distributed.current().world_size == 1:
        return empty
    every = [None] * distributed.current().world_size
    torch.distributed.all_gather_object(every, empty)
    return {k: sorted({n for e in every for n in e[k]}) for k in empty}


def _resolve_methods(
    methods: Sequence, task: Task, recipe: Recipe | str | None, threshold: float | None
) -> list:
    """Method instances: names are made by the registry, instances kept; then checked."""
    names = [m for m in methods if isinstance(m, str)]
    made = iter(make_methods(names, task, recipe=recipe, threshold=threshold) if names else [])
    resolved = [next(made) if isinstance(m, str) else m for m in methods]
    _check_methods(resolved, task)
    return resolved


def _output_paths(out: Path) -> dict[str, Path]:
    return {
        "results": out / "results.csv",
        "summary_csv": out / "summary.csv",
        "summary_md": out / "summary.md",
        "summary_tex": out / "summary.tex",
        "run": out / "run.json",
    }


def _write_outputs(
    paths: dict[str, Path],
    rows: pd.DataFrame,
    summary: pd.DataFrame,
    intervals: pd.DataFrame,
    decimals: dict[str, int],
    n_items: int,
    seed: int,
    n_resamples: int,
) -> None:
    note = interval_note(n_items, n_resamples, seed)
    write_text(rows.to_csv(index=False), paths["results"])
    write_text(summary_with_intervals(summary, intervals).to_csv(), paths["summary_csv"])
    write_text(summary_markdown(summary, decimals, intervals, note), paths["summary_md"])
    write_text(summary_latex(summary, decimals, intervals, note), paths["summary_tex"])
