"""The run loop: maps of every method cached per batch (``cache_dir/<method>-<key>/``) with
the metric values beside them, so a rerun resumes; ``docs/reproducibility.md`` has more."""

from __future__ import annotations

import json
import os
import platform
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._checks import check_count, check_threshold, model_device
from ..data.items import ClassificationItem, PairItem, Task, collate, dataset_identity, task_of
from ..methods import supports
from ..metrics.face import eer_threshold, embed
from ..objectives import Attribution, ClassLogit, CosineSimilarity
from ..recipes import Recipe, get_recipe
from ..stats import DEFAULT_RESAMPLES
from . import distributed, keys, store
from .result import ROW_COLUMNS, ExperimentResult, summarize, summary_texts

__all__ = ["run_experiment"]


def _check_inputs(dataset: Sequence, methods: Sequence, metrics: Sequence) -> Task:
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
    if not methods:
        raise ValueError("no methods given")
    names = [getattr(m, "name", None) for m in methods]
    if not all(names):
        raise ValueError("every method needs a non-empty `name` attribute")
    if len(set(names)) != len(names):
        raise ValueError(f"method names must be unique, got {names}")
    for m in methods:
        if not supports(m, task):
            raise ValueError(f"method {m.name} does not support {task} (see its `targets`)")
    return task


def _nonfinite(values: Tensor, names: list[str]) -> list[str]:
    bad = ~torch.isfinite(values.detach().flatten(1)).all(1)
    return [n for n, b in zip(names, bad.cpu().tolist()) if b]


def _check_model_output(output: Tensor, names: list[str]) -> None:
    if bad := _nonfinite(output, names):
        raise RuntimeError(
            f"the model's output holds NaN or Inf for items {bad} on the clean images; "
            "no map of them can be computed (check the model's weights and the images)"
        )


def _batch(dataset: Sequence, idx: range):
    return collate([dataset[i] for i in idx], list(idx))


def _batches(n: int, size: int) -> list[range]:
    return [range(i, min(i + size, n)) for i in range(0, n, size)]


@torch.no_grad()
def _clean_verification(model: nn.Module, dataset: Sequence, batch_size: int, progress: bool):
    """Normalised gallery embeddings (N, D), clean scores (N,), genuine (N,) on CPU."""
    refs, scores, genuine = [], [], []
    bar = tqdm(
        _batches(len(dataset), batch_size), "clean scores", disable=not progress, leave=False
    )
    for idx in bar:
        b = _batch(dataset, idx).to(model_device(model))
        eg, ep = embed(model, b.gallery, batch_size), embed(model, b.probe, batch_size)
        _check_model_output(torch.cat([eg, ep], 1), b.names)
        refs.append(eg.cpu())
        scores.append((eg * ep).sum(1).cpu())
        genuine.append(b.genuine.cpu())
    return torch.cat(refs), torch.cat(scores), torch.cat(genuine)


def _compute_maps(model, dataset, method, folder: Path, owned, run: dict) -> tuple:
    """Compute and cache the maps of the batches ``owned`` not validly cached in ``folder``;
    returns how many were computed and the items with all-zero e₊ maps."""
    batches, todo, empty, new_empty = run["batches"], [], [], []
    for b in owned:
        path = folder / f"batch_{b:05d}.pt"
        blob = store.load(path)
        shape = (len(batches[b]), *run["hw"])
        problem = store.blob_problem(blob, run["names"][b], shape, run["inputs"][b])
        if problem is None:
            empty += blob.get("empty", [])
            continue
        if blob is not None:  # (an unreadable file was reported by load)
            warnings.warn(f"cached maps {path} are {problem}; recomputing them", stacklevel=3)
        for p in folder.glob(f"eval_*_{b:05d}.pt"):  # values of the old maps
            p.unlink(missing_ok=True)
        todo.append(b)
    off = not run["progress"]
    for b in tqdm(todo, f"maps {method.name}", unit="batch", disable=off, leave=False):
        idx = batches[b]
        batch = _batch(dataset, idx).to(model_device(model))
        if run["refs"] is None:
            images, target = batch.images, ClassLogit(batch.labels)
            with torch.no_grad():
                _check_model_output(model(images).flatten(1), batch.names)
        else:
            images = batch.probe
            refs = run["refs"][idx.start : idx.stop].to(images.device)
            target = CosineSimilarity(refs, run["metric_args"]["threshold"])
        att = method(model, images, target)
        if not isinstance(att, Attribution):
            raise TypeError(
                f"method {method.name} returned {type(att).__name__}, expected Attribution"
            )
        for role, maps in (("positive", att.positive), ("negative", att.negative)):
            problem = store.map_problem(maps, (len(idx), *run["hw"]), role)
            if problem is not None:
                if "NaN" in problem:
                    problem += f" for items {_nonfinite(maps, batch.names)}"
                raise RuntimeError(
                    f"method {method.name} returned unusable maps: {problem}; nothing of this "
                    "batch was cached (check the model and the method's settings)"
                )
        # an empty e₊ map is a finding (an empty e₋ is expected, e.g. impostor pairs)
        zero = (att.positive.detach().flatten(1).amax(1) <= 0).cpu().tolist()
        batch_empty = [n for n, z in zip(batch.names, zero) if z]
        new_empty += batch_empty
        neg = att.negative
        blob = {
            "positive": att.positive.detach().to("cpu", torch.float32),
            "negative": None if neg is None else neg.detach().to("cpu", torch.float32),
            "names": batch.names,
            "empty": batch_empty,
            "inputs": run["inputs"][b],
        }
        store.save_tensors(blob, folder / f"batch_{b:05d}.pt")
    if new_empty:
        warnings.warn(
            f"{method.name} gave all-zero maps for {new_empty}; they are scored as empty maps "
            "and listed in run.json",
            stacklevel=3,
        )
    return len(todo), empty + new_empty


def _evaluate(model, dataset, name: str, folder: Path, which, metrics, run):
    """Tidy records of every metric on the batches ``which`` of one method; values are
    cached next to the maps, keyed by the metric's settings and the tie rule."""
    device, args, roles = model_device(model), run["metric_args"], ("positive", "negative")
    records: list[dict] = []
    # a value depends on the metric's settings and its arguments (seed, batch size, tie rule)
    fp = keys.fingerprint
    value_keys = [keys.digest([fp(m, "metric"), fp(args, "metric_args")]) for m in metrics]
    bar = tqdm(which, f"eval {name}", unit="batch", disable=not run["progress"], leave=False)
    for b in bar:
        idx, loaded = run["batches"][b], None
        for m, key in zip(metrics, value_keys):
            path = folder / f"eval_{keys.slug(type(m).__name__)}-{key}_{b:05d}.pt"
            cached = store.load(path)
            labels = [c.label for c in m.columns()]
            problem = store.values_problem(cached, labels, len(idx))
            if problem is not None:
                if cached is not None:  # (an unreadable file was reported by load)
                    warnings.warn(
                        f"cached metric values {path} are {problem}; recomputing them",
                        stacklevel=3,
                    )
                if loaded is None:  # the maps, checked when cached or computed
                    blob = store.load(folder / f"batch_{b:05d}.pt")
                    maps = [blob[k] if blob[k] is None else blob[k].to(device) for k in roles]
                    loaded = _batch(dataset, idx).to(device), Attribution(*maps)
                refs = None if run["refs"] is None else run["refs"][idx.start : idx.stop]
                refs = None if refs is None else refs.to(device)
                values = m(model, *loaded, **{**args, "seed": args["seed"] + b}, references=refs)
                missing = set(labels) - {c.label for c in values}
                if missing:
                    raise RuntimeError(f"{type(m).__name__} did not return {sorted(missing)}")
                cached = {
                    "names": loaded[0].names,
                    "values": {c.label: v.detach().float().cpu() for c, v in values.items()},
                }
                store.save_tensors(cached, path)
            for c in m.columns():
                values = cached["values"][c.label].tolist()
                for i, item, v in zip(idx, cached["names"], values):
                    row = (i, item, name, c.metric, c.threshold, c.percent, v)
                    records.append(dict(zip(ROW_COLUMNS, row)))
    return records


def run_experiment(
    model: nn.Module,
    dataset: Sequence[ClassificationItem] | Sequence[PairItem],
    methods: Sequence[Callable[..., Attribution]],
    metrics: Sequence,
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
    progress: bool = True,
    threads: int | None = None,
    overwrite: bool = False,
    threshold_source: str = "given",
) -> ExperimentResult:
    """Compute, cache, evaluate and tabulate every method on a dataset (Tables 1 and 2).

    Args:
        model: eval-mode network on (B, 3, H, W) [0, 1] RGB, on the device that computes the
            maps: a classifier for :class:`ClassificationItem` data, a face embedder for
            :class:`PairItem` data.
        methods: ``method(model, images, target) -> Attribution`` with unique ``name`` s.
        metrics: e.g. ``[IoUMetric(), RoadMetric()]`` or ``[FaceDeleteInsertMetric()]``.
        out_dir: folder for ``results.csv``, ``summary.{csv,md,tex}`` and ``run.json``.
        recipe: ``"paper"`` (default), ``"reference"`` or a :class:`Recipe`.
        batch_size, eval_batch_size: items per map batch; perturbed images per forward.
        cache_dir: map cache folder (default ``out_dir/cache``); runs may share it.
        threshold: verification θ in [-1, 1] (default: the clean EER threshold).
        model_id: names the model in the cache key (default: its fingerprint).
        seed, n_resamples: the metrics' base seed (batch b uses ``seed + b``) and the
            bootstrap's; resamples per summary cell.
        threads: ``torch.set_num_threads`` for the run (restored after).
        overwrite: replace results in ``out_dir`` that were made with other settings.

    Returns:
        :class:`ExperimentResult`, the same on every rank (rank 0 writes the files).

    Raises:
        ValueError, TypeError: a bad argument (named), or a method setting or model
            attribute that cannot be fingerprinted. RunConflictError: ``out_dir`` holds
            foreign results or those of other settings, or another run writes it. OSError:
            a full disk (finished batches are kept). RuntimeError: NaN/Inf model outputs or
            maps (the items are named).
    """
    task = _check_inputs(dataset, methods, metrics)
    seed = check_count(seed, "seed")
    batch_size = check_count(batch_size, "batch_size", 1)
    eval_batch_size = check_count(eval_batch_size, "eval_batch_size", 1)
    n_resamples = check_count(n_resamples, "n_resamples", 1)
    threads = None if threads is None else check_count(threads, "threads", 1)
    out = store.check_folder(out_dir, "out_dir")
    cache_root = out / "cache" if cache_dir is None else store.check_folder(cache_dir, "cache_dir")
    threshold_source = None if threshold is None else threshold_source
    threshold = None if threshold is None else check_threshold(threshold, "threshold θ")
    previous_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        shard = distributed.current()
        run_recipe = get_recipe(recipe)
        device = model_device(model)
        batches = _batches(len(dataset), batch_size)
        owned = [b for b in range(len(batches)) if b % shard.world_size == shard.rank]
        # a named model (model_id) may hold attributes the fingerprint cannot see into
        model_print = keys.model_fingerprint(model, strict=model_id is None)
        refs = None
        if task == "verification":
            refs, clean, genuine = _clean_verification(model, dataset, eval_batch_size, progress)
            if threshold is None:  # rank 0's, so that every rank keys its cache by the same θ
                threshold = distributed.broadcast(float(eer_threshold(clean, genuine)))
                threshold_source = "clean EER"
        method_keys = {m.name: keys.method_key(m, model) for m in methods}
        inputs, names = [], []  # each batch as the stages read it: its hash and item names
        for idx in tqdm(batches, "hashing inputs", disable=not progress, leave=False):
            batch = _batch(dataset, idx)
            inputs.append(keys.batch_hash(batch))
            names.append(batch.names)
        hw = tuple((batch.images if task == "classification" else batch.probe).shape[-2:])
        base = {
            "cache_version": keys.CACHE_VERSION,
            "code": keys.source_hash(),
            "task": task,
            "model": model_id or model_print,
            "dataset": dataset_identity(dataset),
            "n_items": len(dataset),
            "batch_size": batch_size,
        }
        if task == "verification":
            base["threshold"] = repr(float(threshold))
        settings = {
            **base,
            "inputs": keys.digest(inputs),
            "model": {
                "id": base["model"],
                "fingerprint": model_print,
                "class": type(model).__name__,
            },
            "threshold": threshold,
            "threshold_source": threshold_source,
            "methods": method_keys,
            "metrics": [keys.fingerprint(m, "metric") for m in metrics],
            "recipe": asdict(run_recipe),
            "eval_batch_size": eval_batch_size,
            "seed": seed,
            "tie_seed": run_recipe.tie_seed,
            "bootstrap": {"n_resamples": n_resamples, "seed": seed, "level": 0.95},
            **store.environment(device),
        }
        lock = store.claim_output(out, settings, overwrite)  # rank 0's; None on the others
        try:
            run = {
                "batches": batches,
                "hw": hw,
                "inputs": inputs,
                "names": names,
                "refs": refs,
                "progress": progress,
                "metric_args": {
                    "threshold": threshold,
                    "seed": seed,
                    "batch_size": eval_batch_size,
                    "ties": run_recipe.ties,
                    "tie_seed": run_recipe.tie_seed,
                },
            }
            cache_dirs: dict[str, Path] = {}
            computed: dict[str, int] = {}
            empty: dict[str, list[str]] = {}
            for method in tqdm(methods, desc="methods", unit="method", disable=not progress):
                key = {**base, "method": method_keys[method.name]}
                folder = cache_root / f"{keys.slug(method.name)}-{keys.digest(key)}"
                cache_dirs[method.name] = folder
                folder.mkdir(parents=True, exist_ok=True)
                store.remove_stale_tmp(folder)
                if not (folder / "meta.json").exists():
                    store.write_text(
                        json.dumps({"name": method.name, **key}, indent=2), folder / "meta.json"
                    )
                computed[method.name], empty[method.name] = _compute_maps(
                    model, dataset, method, folder, owned, run
                )
                _evaluate(model, dataset, method.name, folder, owned, metrics, run)
            distributed.barrier()  # then every rank reads every rank's values from the cache
            run["progress"], every, records = False, range(len(batches)), []
            for m in methods:
                records += _evaluate(
                    model, dataset, m.name, cache_dirs[m.name], every, metrics, run
                )
            if shard.world_size > 1:
                gathered = distributed.all_gather((computed, empty))
                computed = {k: sum(c[k] for c, _ in gathered) for k in computed}
                empty = {k: sorted({n for _, e in gathered for n in e[k]}) for k in empty}
            rows = pd.DataFrame.from_records(records, columns=ROW_COLUMNS)
            rows = rows.astype({"threshold": float, "percent": float})
            shown = [(m, c) for m in metrics for c in getattr(m, "summary_columns", m.columns)()]
            columns = [c for _, c in shown]
            decimals = {c.label: m.decimals for m, c in shown}
            summary, intervals = summarize(
                rows, columns, [m.name for m in methods], n_resamples=n_resamples, seed=seed
            )
            kinds = ("results", "summary_csv", "summary_md", "summary_tex", "run")
            paths = {k: out / n for k, n in zip(kinds, store.OUTPUT_FILES)}
            if lock is not None:
                info = {  # informative, not compared between runs
                    "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "host": platform.node(),
                    "device": str(device),
                    "world_size": shard.world_size,
                    "python": platform.python_version(),
                    "cache_dirs": {k: str(v) for k, v in cache_dirs.items()},
                    "computed_batches": computed,
                    "empty_maps": {k: v for k, v in empty.items() if v},
                }
                texts = summary_texts(
                    rows, summary, intervals, decimals, len(dataset), n_resamples, seed
                )
                texts["run.json"] = json.dumps({**settings, "run": info}, indent=2, default=str)
                store.commit_outputs(out, store.stage_outputs(out, texts))
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
