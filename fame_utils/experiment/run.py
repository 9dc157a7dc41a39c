"""The run loop: maps for every method, cached on disk, evaluated into tidy tables.

:func:`run_experiment` (1) computes every method's maps batch by batch and caches each
batch atomically under ``cache_dir/<method>-<key hash>/`` (:mod:`.cache`; a rerun resumes,
a cached batch that fails its checks is recomputed), (2) evaluates every metric on every
batch (values cached beside the maps), (3) writes ``results.csv``, ``summary.{csv,md,tex}``
(means with 95 % bootstrap intervals, :mod:`.report`) and ``run.json`` (:mod:`.record`),
swapped in at once, refusing a folder whose ``run.json`` holds other settings. The key of
a cache folder covers the model's fingerprint, the method's settings, the code, the
dataset, the batch size, the cache dtype, θ and the input pixels
(``docs/reproducibility.md``). Under ``torchrun`` rank r of n takes the batches b with
b mod n = r (:mod:`.distributed`). The stages are in :mod:`.stages`, the checks in :mod:`.checks`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from .._checks import model_device
from ..data.items import ClassificationItem, PairItem, Task, dataset_identity
from ..methods import make_methods
from ..metrics.adapters import EvalContext, Metric
from ..metrics.threshold import eer_threshold
from ..objectives import Attribution
from ..recipes import Recipe, get_recipe
from ..stats import DEFAULT_RESAMPLES
from . import distributed
from .cache import (
    CACHE_VERSION,
    digest,
    jsonable,
    method_key,
    model_fingerprint,
    remove_stale_tmp,
    slug,
    source_hash,
    write_text,
)
from .checks import (
    check_folder,
    check_inputs,
    check_methods,
    check_threshold,
)
from .record import (
    OutputLock,
    RunConflictError,
    check_foreign,
    check_settings,
    commit_outputs,
    environment,
    recover_outputs,
    run_info,
    stage_outputs,
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
from .stages import batch_bounds, clean_verification, compute_maps, evaluate, input_hashes

__all__ = ["run_experiment"]


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
            duplicate metric columns, duplicate method names, a method that does not
            support the task, batch sizes, thread count or resamples < 1, a seed < 0, a
            non-float ``cache_dtype``, a threshold outside [-1, 1], an ``out_dir`` /
            ``cache_dir`` that is empty, a file or not writable.
        TypeError: a method setting or model attribute that cannot be fingerprinted.
        RunConflictError: ``out_dir`` holds results of other settings (without
            ``overwrite``), result files without ``run.json``, or another run is writing it.
        OSError: the disk is full (the message says so; finished batches are kept).
        RuntimeError: a method returned NaN/Inf maps (the items are named).
    """
    task = check_inputs(
        dataset, metrics, batch_size, eval_batch_size, n_resamples, threads, seed, cache_dtype
    )
    # numpy integers were accepted: plain ints from here on (run.json, the cache keys)
    batch_size, eval_batch_size, n_resamples, seed = (
        int(v) for v in (batch_size, eval_batch_size, n_resamples, seed)
    )
    out = check_folder(out_dir, "out_dir")
    if cache_dir is not None:
        cache_dir = check_folder(cache_dir, "cache_dir")
    if threshold is None:
        threshold_source = None
    else:
        threshold = check_threshold(threshold)
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        shard = distributed.current()
        run_recipe = get_recipe(recipe)
        device = model_device(model)
        cache_root = Path(cache_dir) if cache_dir is not None else out / "cache"
        batches = batch_bounds(len(dataset), batch_size)
        owned = [b for b in range(len(batches)) if shard.owns(b)]
        hw = _image_size(dataset)
        # a named model (model_id) may hold attributes the fingerprint cannot see into
        fingerprint = model_fingerprint(model, strict=model_id is None)
        methods = _resolve_methods(methods, task, recipe, threshold)
        method_keys = {m.name: method_key(m, model) for m in methods}  # refuses early
        inputs = input_hashes(dataset, batches, progress)
        base = {
            "cache_version": CACHE_VERSION,
            "code": source_hash(),
            "task": task,
            "model": model_id or fingerprint,
            "dataset": dataset_identity(dataset),
            "n_items": len(dataset),
            "batch_size": batch_size,
            "cache_dtype": str(cache_dtype),
        }
        refs = None
        if task == "verification":
            refs, clean, genuine = clean_verification(
                model, dataset, eval_batch_size, device, progress
            )
            if threshold is None:
                # rank 0's, so that every rank keys its cache by the same θ
                threshold = distributed.broadcast(float(eer_threshold(clean, genuine)))
                threshold_source = "clean EER"
            base["threshold"] = repr(float(threshold))
            methods = _resolve_methods(methods, task, recipe, threshold)  # FGGB gets θ
            method_keys = {m.name: method_key(m, model) for m in methods}
        keys = {m.name: {**base, "method": method_keys[m.name]} for m in methods}
        settings = {
            **base,
            "inputs": digest(inputs),
            "model": {
                "id": base["model"],
                "fingerprint": fingerprint,
                "class": type(model).__name__,
            },
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
        lock = OutputLock(out) if shard.is_main else None
        problem = None
        if lock is not None:
            try:
                lock.acquire()
                recover_outputs(out)
                check_foreign(out)
                check_settings(out, settings, overwrite)
            except RunConflictError as e:
                lock.release()
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
                computed[method.name], empty[method.name] = compute_maps(
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
                    inputs,
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
                evaluate(
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
                records += evaluate(
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
            paths = _output_paths(out)
            if lock is not None:
                info = run_info(
                    shard.world_size,
                    device,
                    cache_dirs={k: str(v) for k, v in cache_dirs.items()},
                    computed_batches=computed,
                    empty_maps={k: v for k, v in empty.items() if v},
                )
                record = json.dumps({**settings, "run": info}, indent=2, default=str)
                texts = _output_texts(
                    rows, summary, intervals, decimals, len(dataset), seed, n_resamples
                )
                texts["run.json"] = record
                commit_outputs(out, stage_outputs(out, texts))
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

    finally:
        torch.set_num_threads(previous_threads)


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
    check_methods(resolved, task)
    return resolved


def _output_paths(out: Path) -> dict[str, Path]:
    return {
        "results": out / "results.csv",
        "summary_csv": out / "summary.csv",
        "summary_md": out / "summary.md",
        "summary_tex": out / "summary.tex",
        "run": out / "run.json",
    }


def _output_texts(
    rows: pd.DataFrame,
    summary: pd.DataFrame,
    intervals: pd.DataFrame,
    decimals: dict[str, int],
    n_items: int,
    seed: int,
    n_resamples: int,
) -> dict[str, str]:
    """The text of every output file but ``run.json``, by file name."""
    note = interval_note(n_items, n_resamples, seed)
    return {
        "results.csv": rows.to_csv(index=False),
        "summary.csv": summary_with_intervals(summary, intervals).to_csv(),
        "summary.md": summary_markdown(summary, decimals, intervals, note),
        "summary.tex": summary_latex(summary, decimals, intervals, note),
    }
