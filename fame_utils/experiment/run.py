"""The run loop: maps for every method, cached on disk, evaluated into tidy tables.

:func:`run_experiment` takes a model, a dataset (items of :mod:`fame_utils.data.items`),
methods (instances under the convention of :mod:`fame_utils.explain`, or registry names,
see :mod:`fame_utils.methods`) and metric adapters (:mod:`fame_utils.metrics.adapters`):

1. computes every method's maps batch by batch on the model's device (one tqdm bar per
   method) and stores each batch in ``cache_dir/<method>-<hash>/batch_00000.pt``, written
   atomically (:mod:`.cache`). Re-running skips cached batches, so an interrupted run
   resumes where it stopped. The hash covers the model, the method's settings (its
   recipe included), the dataset identity, the batch size and, for verification, the
   threshold; ``meta.json`` in each folder records them;
2. evaluates every metric on every batch (per-batch values are cached next to the maps,
   keyed by the metric's settings and the run recipe's tie rule);
3. writes ``results.csv`` (``index, item, method, metric, threshold, percent, value``),
   the summary (means with 95 % bootstrap intervals over items, :mod:`.report`) as
   ``summary.csv``, ``summary.md`` and ``summary.tex``, and ``run.json`` (recipe, tie
   seed, threshold, bootstrap settings, cache folders).
"""

from __future__ import annotations

import json
import os
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
from .cache import (
    CACHE_VERSION,
    digest,
    jsonable,
    load,
    method_settings,
    model_fingerprint,
    save_tensors,
    slug,
    write_text,
)
from .report import (
    ROW_COLUMNS,
    interval_note,
    summarize,
    summary_latex,
    summary_markdown,
    summary_with_intervals,
)
from .result import ExperimentResult

__all__ = ["run_experiment"]


def _batches(n: int, batch_size: int) -> list[range]:
    return [range(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def _get_batch(dataset: Sequence, idx: range):
    return collate([dataset[i] for i in idx], list(idx))


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
        refs.append(eg.cpu())
        scores.append((eg * ep).sum(1).cpu())
        gen.append(b.genuine.cpu())
    return torch.cat(refs), torch.cat(scores), torch.cat(gen)


def _check_inputs(dataset, metrics, batch_size) -> Task:
    if dataset is None or len(dataset) == 0:
        raise ValueError("the dataset is empty")
    task = task_of(dataset[0])
    for m in metrics:
        if getattr(m, "task", None) != task:
            raise ValueError(
                f"metric {type(m).__name__} is for {getattr(m, 'task', '?')} but the dataset "
                f"holds {task} items"
            )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
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


def _compute_maps(
    model: nn.Module,
    dataset: Sequence,
    method: Callable[..., Attribution],
    folder: Path,
    batches: list[range],
    task: Task,
    refs: Tensor | None,
    threshold: float | None,
    cache_dtype: torch.dtype,
    progress: bool,
) -> int:
    """Compute and cache the maps of every batch not yet in ``folder``; returns how many
    batches were computed."""
    device = model_device(model)
    # batches are written atomically, so an existing file is a complete one
    todo = [b for b in range(len(batches)) if not (folder / f"batch_{b:05d}.pt").is_file()]
    bar = tqdm(
        total=len(batches),
        initial=len(batches) - len(todo),
        desc=f"maps {method.name}",
        unit="batch",
        disable=not progress,
    )
    try:
        for b in todo:
            idx = batches[b]
            batch = _get_batch(dataset, idx).to(device)
            if task == "classification":
                images, target = batch.images, ClassTarget(batch.labels)
            else:
                images = batch.probe
                target = SimilarityTarget(refs[idx.start : idx.stop].to(device), threshold)
            att = method(model, images, target)
            if not isinstance(att, Attribution):
                raise TypeError(
                    f"method {method.name} returned {type(att).__name__}, expected Attribution"
                )
            neg = att.negative
            blob = {
                "positive": att.positive.detach().to("cpu", cache_dtype),
                "negative": None if neg is None else neg.detach().to("cpu", cache_dtype),
                "names": batch.names,
            }
            save_tensors(blob, folder / f"batch_{b:05d}.pt")
            bar.update(1)
    finally:
        bar.close()
    return len(todo)


def _cached_maps(folder: Path, b: int, dataset: Sequence, idx: range, device):
    """The batch and its cached maps (checked to belong to this batch's items)."""
    map_path = folder / f"batch_{b:05d}.pt"
    blob = load(map_path)
    if blob is None:
        raise RuntimeError(
            f"cached maps {map_path} are missing or unreadable; delete the file and run again"
        )
    batch = _get_batch(dataset, idx).to(device)
    if batch.names != blob["names"]:
        raise RuntimeError(
            f"cache {folder} holds maps for other items than batch {b} of this dataset; "
            "delete the folder"
        )
    neg = blob["negative"]
    att = Attribution(
        blob["positive"].to(device, torch.float32),
        None if neg is None else neg.to(device, torch.float32),
    )
    return batch, att


def _evaluate(
    model: nn.Module,
    dataset: Sequence,
    method_name: str,
    folder: Path,
    batches: list[range],
    metrics: Sequence[Metric],
    context: EvalContext,
    refs: Tensor | None,
    progress: bool,
) -> list[dict]:
    """Tidy records of every metric on every cached batch of one method (metric values
    are cached next to the maps, keyed by the metric's settings and the tie rule)."""
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
    bar = tqdm(total=len(batches), desc=f"eval {method_name}", unit="batch", disable=not progress)
    try:
        for b, idx in enumerate(batches):
            loaded = None
            for m, key in zip(metrics, keys):
                mpath = folder / f"eval_{slug(type(m).__name__)}-{key}_{b:05d}.pt"
                cached = load(mpath)
                if cached is None:
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
        batch_size: items per map batch and per cache file.
        eval_batch_size: perturbed images per forward pass in the metrics.
        cache_dir: map cache folder (default ``out_dir/cache``); can be shared by runs.
        threshold: verification θ; default: the clean EER threshold of the dataset's pairs.
        model_id: identifies the model in the cache hash (default: ``model.name`` and a
            hash of its weights).
        seed: base seed of the metrics' random parts (batch b uses ``seed + b``) and of
            the bootstrap intervals.
        n_resamples: bootstrap resamples of each summary cell's 95 % interval.
        cache_dtype: dtype the maps are stored in.
        progress: tqdm bars (one per method for maps, one per method for evaluation).
        write: write the CSV/Markdown/LaTeX/JSON files (the cache is always written).

    Returns:
        :class:`~fame_utils.experiment.result.ExperimentResult`.

    Raises:
        ValueError: empty dataset, mixed or unsupported items, metrics for the other task,
            duplicate method names, a method that does not support the task.
    """
    task = _check_inputs(dataset, metrics, batch_size)
    run_recipe = get_recipe(recipe)
    out = Path(out_dir)
    cache_root = Path(cache_dir) if cache_dir is not None else out / "cache"
    batches = _batches(len(dataset), batch_size)
    base = {
        "cache_version": CACHE_VERSION,
        "task": task,
        "model": model_id or model_fingerprint(model),
        "dataset": dataset_identity(dataset),
        "n_items": len(dataset),
        "batch_size": batch_size,
        "cache_dtype": str(cache_dtype),
    }
    refs = None
    if task == "verification":
        refs, clean, genuine = _clean_verification(
            model, dataset, eval_batch_size, model_device(model), progress
        )
        if threshold is None:
            threshold = float(eer_threshold(clean, genuine))
        base["threshold"] = repr(float(threshold))
    methods = _resolve_methods(methods, task, recipe, threshold)

    cache_dirs: dict[str, Path] = {}
    computed: dict[str, int] = {}
    for method in methods:
        settings = {**base, "method": method_settings(method)}
        folder = cache_root / f"{slug(method.name)}-{digest(settings)}"
        cache_dirs[method.name] = folder
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "meta.json").exists():
            meta = json.dumps({"name": method.name, **settings}, indent=2)
            write_text(meta, folder / "meta.json")
        computed[method.name] = _compute_maps(
            model, dataset, method, folder, batches, task, refs, threshold, cache_dtype, progress
        )

    context = EvalContext(
        threshold=threshold,
        seed=seed,
        batch_size=eval_batch_size,
        ties=run_recipe.ties,
        tie_seed=run_recipe.tie_seed,
    )
    records: list[dict] = []
    for method in methods:
        folder = cache_dirs[method.name]
        records += _evaluate(
            model, dataset, method.name, folder, batches, metrics, context, refs, progress
        )
    rows = pd.DataFrame.from_records(records, columns=ROW_COLUMNS)
    rows = rows.astype({"threshold": float, "percent": float})
    columns = [c for m in metrics for c in m.summary_columns()]
    decimals = {c.label: m.decimals for m in metrics for c in m.summary_columns()}
    names = [m.name for m in methods]
    summary, intervals = summarize(rows, columns, names, n_resamples=n_resamples, seed=seed)
    paths: dict[str, Path] = {}
    if write:
        paths = _write_outputs(
            out, rows, summary, intervals, decimals, len(dataset), seed, n_resamples
        )
        run_info = {
            "task": task,
            "recipe": run_recipe.as_dict(),
            "threshold": threshold,
            "seed": seed,
            "bootstrap": {"n_resamples": n_resamples, "seed": seed, "level": 0.95},
            "n_items": len(dataset),
            "methods": {m.name: str(cache_dirs[m.name]) for m in methods},
        }
        paths["run"] = out / "run.json"
        write_text(json.dumps(run_info, indent=2), paths["run"])
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
    )


def _resolve_methods(
    methods: Sequence, task: Task, recipe: Recipe | str | None, threshold: float | None
) -> list:
    """Method instances: names are made by the registry, instances kept; then checked."""
    names = [m for m in methods if isinstance(m, str)]
    made = iter(make_methods(names, task, recipe=recipe, threshold=threshold) if names else [])
    resolved = [next(made) if isinstance(m, str) else m for m in methods]
    _check_methods(resolved, task)
    return resolved


def _write_outputs(
    out: Path,
    rows: pd.DataFrame,
    summary: pd.DataFrame,
    intervals: pd.DataFrame,
    decimals: dict[str, int],
    n_items: int,
    seed: int,
    n_resamples: int,
) -> dict[str, Path]:
    note = interval_note(n_items, n_resamples, seed)
    paths = {
        "results": out / "results.csv",
        "summary_csv": out / "summary.csv",
        "summary_md": out / "summary.md",
        "summary_tex": out / "summary.tex",
    }
    write_text(rows.to_csv(index=False), paths["results"])
    write_text(summary_with_intervals(summary, intervals).to_csv(), paths["summary_csv"])
    write_text(summary_markdown(summary, decimals, intervals, note), paths["summary_md"])
    write_text(summary_latex(summary, decimals, intervals, note), paths["summary_tex"])
    return paths
