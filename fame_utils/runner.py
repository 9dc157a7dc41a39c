"""Experiment runner: maps for every method, cached on disk, evaluated into tidy tables.

:func:`run_experiment` takes a model, a dataset, a list of methods (the shared calling
convention of :mod:`fame_utils.explain`) and a list of metrics, and

1. computes every method's maps batch by batch on the model's device (one tqdm bar per
   method) and stores each batch in ``cache_dir/<method>-<hash>/batch_00000.pt`` (written
   to a temporary file and moved into place with :func:`os.replace`, so a killed run
   never leaves a half-written batch). Re-running skips cached batches, so an interrupted
   run resumes where it stopped. The hash covers the *settings*: the model (name and a
   fingerprint of its weights), the method (class and parameters, e.g. its FameConfig),
   the dataset identity (which images, labels, boxes, preprocessing), the batch size and,
   for verification, the threshold. Changing any of them selects a fresh cache folder
   instead of mixing results; ``meta.json`` in each folder records the settings;
2. evaluates every metric on every batch (per-batch results are cached the same way);
3. writes ``results.csv`` (tidy: one row per item × method × metric column, columns
   ``index, item, method, metric, value``) and a summary (mean over items per method and
   column) as ``summary.csv``, ``summary.md`` (Markdown) and ``summary.tex`` (LaTeX,
   booktabs).

Datasets are small: any sequence of :class:`ClassificationItem` (image, class, box) or
:class:`PairItem` (gallery, probe, genuine) — :class:`ClassificationDataset` and
:class:`PairDataset` wrap tensors, :mod:`fame_utils.data.imagenet` loads lazily. A
dataset may carry an ``identity`` string; otherwise its content is hashed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ._checks import check_images, model_device
from .explain import Attribution, ClassTarget, SimilarityTarget

__all__ = [
    "ClassificationItem",
    "PairItem",
    "ClassificationBatch",
    "PairBatch",
    "ClassificationDataset",
    "PairDataset",
    "Metric",
    "IoUMetric",
    "RoadMetric",
    "CurveMetric",
    "FaceDeleteInsertMetric",
    "EvalContext",
    "ExperimentResult",
    "run_experiment",
    "dataset_identity",
    "from_object_samples",
    "from_face_pairs",
    "method_settings",
    "model_fingerprint",
    "summary_markdown",
    "summary_latex",
    "CACHE_VERSION",
    "methods_by_name",
]

CACHE_VERSION = 1
"""Bumped when the cache layout or the meaning of a cached value changes."""

IGNORED_SETTINGS = frozenset(
    {"progress", "batch_size", "chunk_size", "early_stop_check_every", "name"}
)
"""Parameters that change speed or display but not results: left out of the cache hash."""

Task = Literal["classification", "verification"]


# ----------------------------------------------------------------------------- items


@dataclass
class ClassificationItem:
    """One image to explain for its class.

    Attributes:
        image: (3, H, W) float RGB in [0, 1].
        label: ground-truth class index (the explained class).
        box: (4,) ``(x0, y0, x1, y1)`` object box in the image's pixel coordinates
            (after preprocessing), or ``None``.
        name: a unique identifier (file name).
    """

    image: Tensor
    label: int
    box: Tensor | None = None
    name: str = ""


@dataclass
class PairItem:
    """One verification pair: the probe is explained against the frozen gallery embedding.

    Attributes:
        gallery, probe: (3, H, W) float RGB in [0, 1] face crops.
        genuine: same identity.
        name: a unique identifier.
    """

    gallery: Tensor
    probe: Tensor
    genuine: bool
    name: str = ""


@dataclass
class ClassificationBatch:
    """``images`` (B, 3, H, W), ``labels`` (B,) long, ``boxes`` (B, 4) or ``None``,
    ``names``, ``indices`` (positions in the dataset)."""

    images: Tensor
    labels: Tensor
    boxes: Tensor | None
    names: list[str]
    indices: list[int]

    def to(self, device) -> ClassificationBatch:
        return dataclasses.replace(
            self,
            images=self.images.to(device),
            labels=self.labels.to(device),
            boxes=None if self.boxes is None else self.boxes.to(device),
        )


@dataclass
class PairBatch:
    """``gallery``, ``probe`` (B, 3, H, W), ``genuine`` (B,) bool, ``names``, ``indices``."""

    gallery: Tensor
    probe: Tensor
    genuine: Tensor
    names: list[str]
    indices: list[int]

    def to(self, device) -> PairBatch:
        return dataclasses.replace(
            self,
            gallery=self.gallery.to(device),
            probe=self.probe.to(device),
            genuine=self.genuine.to(device),
        )


def _task_of(item: object) -> Task:
    if isinstance(item, ClassificationItem):
        return "classification"
    if isinstance(item, PairItem):
        return "verification"
    raise TypeError(
        "dataset items must be fame_utils.runner.ClassificationItem or PairItem, got "
        f"{type(item).__name__}"
    )


def collate(items: Sequence[ClassificationItem | PairItem], indices: Sequence[int]):
    """Stack items of one kind into a :class:`ClassificationBatch` or :class:`PairBatch`."""
    task = _task_of(items[0])
    names = [it.name or str(i) for it, i in zip(items, indices)]
    if task == "classification":
        boxes = None
        if all(it.box is not None for it in items):
            boxes = torch.stack([torch.as_tensor(it.box, dtype=torch.float32) for it in items])
        return ClassificationBatch(
            images=torch.stack([it.image for it in items]),
            labels=torch.tensor([int(it.label) for it in items], dtype=torch.long),
            boxes=boxes,
            names=names,
            indices=list(indices),
        )
    return PairBatch(
        gallery=torch.stack([it.gallery for it in items]),
        probe=torch.stack([it.probe for it in items]),
        genuine=torch.tensor([bool(it.genuine) for it in items]),
        names=names,
        indices=list(indices),
    )


def _hash_tensor(h: Any, t: Tensor) -> None:
    t = t.detach().cpu().contiguous()
    h.update(str((tuple(t.shape), str(t.dtype))).encode())
    if t.numel():
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())


class ClassificationDataset(Sequence):
    """In-memory classification items from tensors.

    Args:
        images: (N, 3, H, W) float [0, 1].
        labels: (N,) class indices.
        boxes: (N, 4) ``(x0, y0, x1, y1)`` in pixel coordinates, or ``None``.
        names: N unique names (default ``"0"``, ``"1"``, …).
        identity: string identifying the data for the cache; default: a hash of the content.
    """

    def __init__(
        self,
        images: Tensor,
        labels: Sequence[int] | Tensor,
        boxes: Tensor | Sequence[Sequence[float]] | None = None,
        names: Sequence[str] | None = None,
        identity: str | None = None,
    ):
        check_images(images)
        n = images.shape[0]
        self.images = images
        self.labels = torch.as_tensor(labels, dtype=torch.long).reshape(-1)
        self.boxes = None if boxes is None else torch.as_tensor(boxes, dtype=torch.float32)
        self.names = [str(i) for i in range(n)] if names is None else [str(s) for s in names]
        if self.labels.numel() != n or len(self.names) != n:
            raise ValueError(
                f"{n} images but {self.labels.numel()} labels and {len(self.names)} names"
            )
        if self.boxes is not None and tuple(self.boxes.shape) != (n, 4):
            raise ValueError(f"boxes must have shape ({n}, 4), got {tuple(self.boxes.shape)}")
        if len(set(self.names)) != n:
            raise ValueError("names must be unique")
        if identity is None:
            h = hashlib.sha256(b"classification")
            for t in (self.images, self.labels) + (() if self.boxes is None else (self.boxes,)):
                _hash_tensor(h, t)
            h.update("\n".join(self.names).encode())
            identity = "tensors:" + h.hexdigest()[:16]
        self.identity = identity

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return ClassificationItem(
            image=self.images[i],
            label=int(self.labels[i]),
            box=None if self.boxes is None else self.boxes[i],
            name=self.names[i],
        )


class PairDataset(Sequence):
    """In-memory verification pairs from tensors.

    Args:
        gallery, probe: (N, 3, H, W) float [0, 1].
        genuine: (N,) bool / 0-1.
        names: N unique names (default ``"0"``, ``"1"``, …).
        identity: string identifying the data for the cache; default: a hash of the content.
    """

    def __init__(
        self,
        gallery: Tensor,
        probe: Tensor,
        genuine: Sequence[bool] | Tensor,
        names: Sequence[str] | None = None,
        identity: str | None = None,
    ):
        check_images(gallery, "gallery")
        check_images(probe, "probe")
        n = probe.shape[0]
        if gallery.shape != probe.shape:
            raise ValueError(
                f"gallery {tuple(gallery.shape)} and probe {tuple(probe.shape)} differ"
            )
        self.gallery, self.probe = gallery, probe
        self.genuine = torch.as_tensor(genuine).reshape(-1).bool()
        self.names = [str(i) for i in range(n)] if names is None else [str(s) for s in names]
        if self.genuine.numel() != n or len(self.names) != n:
            raise ValueError(
                f"{n} pairs but {self.genuine.numel()} labels, {len(self.names)} names"
            )
        if len(set(self.names)) != n:
            raise ValueError("names must be unique")
        if identity is None:
            h = hashlib.sha256(b"pairs")
            for t in (gallery, probe, self.genuine):
                _hash_tensor(h, t)
            h.update("\n".join(self.names).encode())
            identity = "tensors:" + h.hexdigest()[:16]
        self.identity = identity

    def __len__(self) -> int:
        return self.probe.shape[0]

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        return PairItem(self.gallery[i], self.probe[i], bool(self.genuine[i]), self.names[i])


def from_object_samples(samples: Any, identity: str | None = None) -> ClassificationDataset:
    """A :class:`ClassificationDataset` from :class:`fame_utils.data.objects.ObjectSamples`
    (images, labels, boxes in crop pixels, names)."""
    return ClassificationDataset(
        samples.images, samples.labels, samples.boxes, list(samples.names), identity
    )


def from_face_pairs(pairs: Any, identity: str | None = None) -> PairDataset:
    """A :class:`PairDataset` from :class:`fame_utils.data.faces.FacePairs`; item names are
    ``"<row> <gallery file> | <probe file>"``."""
    names = [
        f"{i:04d} {g} | {p}" for i, (g, p) in enumerate(zip(pairs.gallery_files, pairs.probe_files))
    ]
    return PairDataset(pairs.gallery, pairs.probe, pairs.genuine, names, identity)


def dataset_identity(dataset: Sequence) -> str:
    """``dataset.identity`` when present, else a hash of every item's content."""
    ident = getattr(dataset, "identity", None)
    if ident is not None:
        return str(ident)
    h = hashlib.sha256(b"items")
    for i in range(len(dataset)):
        it = dataset[i]
        h.update(type(it).__name__.encode())
        for f in dataclasses.fields(it):
            v = getattr(it, f.name)
            if isinstance(v, Tensor):
                _hash_tensor(h, v)
            else:
                h.update(repr(v).encode())
    return "items:" + h.hexdigest()[:16]


# ----------------------------------------------------------------------------- settings


def _jsonable(value: Any, depth: int = 0) -> Any:
    """A JSON-serialisable description of a setting value (for the cache hash)."""
    if depth > 6:
        return repr(value)
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return repr(value)  # exact
    if isinstance(value, Tensor):
        h = hashlib.sha256()
        _hash_tensor(h, value)
        return {"tensor": h.hexdigest()[:16]}
    if isinstance(value, nn.Module):
        return {"module": type(value).__name__}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, depth + 1) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in sorted(value.items(), key=str)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            "type": f"{type(value).__module__}.{type(value).__qualname__}",
            **{
                f.name: _jsonable(getattr(value, f.name), depth + 1)
                for f in dataclasses.fields(value)
                if f.init and f.name not in IGNORED_SETTINGS and not f.name.startswith("_")
            },
        }
    if isinstance(value, type):
        return f"{value.__module__}.{value.__qualname__}"
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}.{value.__qualname__}"
    attrs = getattr(value, "__dict__", None)
    if attrs is not None:
        return {
            "type": f"{type(value).__module__}.{type(value).__qualname__}",
            **{
                k: _jsonable(v, depth + 1)
                for k, v in sorted(attrs.items())
                if not k.startswith("_") and k not in IGNORED_SETTINGS
            },
        }
    return repr(value)


def method_settings(method: Any) -> dict:
    """The parameters that determine a method's maps: ``method.settings()`` if it has one,
    else its dataclass fields / public attributes (nested configs included), minus the
    speed/display knobs in :data:`IGNORED_SETTINGS`."""
    if hasattr(method, "settings") and callable(method.settings):
        return {"type": type(method).__qualname__, **_jsonable(dict(method.settings()))}
    out = _jsonable(method)
    return out if isinstance(out, dict) else {"repr": out}


def model_fingerprint(model: nn.Module) -> str:
    """``name:hash`` of a model: its ``name`` attribute (or class) and a SHA-256 of every
    parameter and buffer and of its ``input_normalization``, so other weights or another
    normalisation give another cache."""
    h = hashlib.sha256(repr(getattr(model, "input_normalization", None)).encode())
    for key, t in sorted(model.state_dict().items()):
        h.update(key.encode())
        _hash_tensor(h, t)
    name = getattr(model, "name", None) or type(model).__name__
    return f"{name}:{h.hexdigest()[:16]}"


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower() or "method"


# ----------------------------------------------------------------------------- atomic io


def _atomic_write(path: Path, writer: Callable[[Path], None]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        writer(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _save_tensors(obj: dict, path: Path) -> None:
    _atomic_write(path, lambda p: torch.save(obj, p))


def _write_text(text: str, path: Path) -> None:
    _atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def _load(path: Path) -> dict | None:
    """A cached batch, or ``None`` if it is missing or unreadable (then recomputed)."""
    if not path.is_file():
        return None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a corrupt file from an old crash: recompute it
        return None


# ----------------------------------------------------------------------------- metrics


@dataclass
class EvalContext:
    """What a metric needs besides the batch and the maps.

    Attributes:
        threshold: verification threshold θ (clean EER threshold), ``None`` for
            classification.
        references: (B, D) normalised gallery embeddings of the batch (verification).
        seed: a seed for this batch (for random imputation noise), reproducible per batch.
        batch_size: forward-pass chunk size for perturbed inputs.
    """

    threshold: float | None = None
    references: Tensor | None = None
    seed: int = 0
    batch_size: int = 64


@runtime_checkable
class Metric(Protocol):
    """``metric(model, batch, attribution, context) -> {column: (B,) tensor}``.

    ``task`` says which datasets it applies to, ``columns()`` lists the columns it
    returns in order, ``summary_columns()`` those shown in the summary table, and
    ``decimals`` how many decimals the summary prints."""

    task: Task
    decimals: int

    def columns(self) -> list[str]: ...

    def summary_columns(self) -> list[str]: ...

    def __call__(
        self, model: nn.Module, batch: Any, attribution: Attribution, context: EvalContext
    ) -> dict[str, Tensor]: ...


def _fmt_number(x: float) -> str:
    return f"{x:g}"


def _float_tuple(values: Any, name: str, lo: float, hi: float) -> tuple[float, ...]:
    """Settings as a tuple of floats (so 10 and 10.0 hash alike), each within [lo, hi]."""
    out = tuple(float(v) for v in (values if isinstance(values, Iterable) else [values]))
    if not out:
        raise ValueError(f"{name} is empty")
    bad = [v for v in out if not lo <= v <= hi]
    if bad:
        raise ValueError(f"{name} must lie in [{lo:g}, {hi:g}], got {bad}")
    return out


def _check_choice(value: str, name: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")


@dataclass
class IoUMetric:
    """IoU@t ×100 between {map ≥ t} and the box (Table 2), columns ``IoU@0.3`` …"""

    thresholds: tuple[float, ...] = (0.3, 0.5, 0.7)
    task: Task = "classification"
    decimals: int = 1

    def __post_init__(self):
        self.thresholds = _float_tuple(self.thresholds, "IoU thresholds", 0.0, 1.0)

    def columns(self) -> list[str]:
        return [f"IoU@{_fmt_number(t)}" for t in self.thresholds]

    def summary_columns(self) -> list[str]:
        return self.columns()

    def __call__(self, model, batch, attribution, context):
        from .metrics.localization import iou_at_thresholds

        if batch.boxes is None:
            raise ValueError("IoUMetric needs boxes: the dataset items have box=None")
        iou = iou_at_thresholds(attribution.positive.float(), batch.boxes, self.thresholds)
        return {c: iou[:, j] * 100 for j, c in enumerate(self.columns())}


@dataclass
class RoadMetric:
    """ROAD-Delete@p: drop of the ground-truth logit when the top-p % pixels are removed
    (Table 2). ``mode="zero"`` (the paper) gives columns ``ROAD-Delete@10%`` …;
    ``"noisy_linear"`` (ROAD proper) ``ROAD-NL-Delete@10%`` …"""

    percents: tuple[float, ...] = (10, 30, 50)
    mode: Literal["zero", "noisy_linear"] = "zero"
    score: Literal["logit", "probability"] = "logit"
    noise: float = 0.01
    task: Task = "classification"
    decimals: int = 3

    def __post_init__(self):
        self.percents = _float_tuple(self.percents, "ROAD percents", 0.0, 100.0)
        _check_choice(self.mode, "mode", ("zero", "noisy_linear"))
        _check_choice(self.score, "score", ("logit", "probability"))

    def columns(self) -> list[str]:
        tag = "ROAD-Delete" if self.mode == "zero" else "ROAD-NL-Delete"
        return [f"{tag}@{_fmt_number(p)}%" for p in self.percents]

    def summary_columns(self) -> list[str]:
        return self.columns()

    def __call__(self, model, batch, attribution, context):
        from .metrics.road import road_scores

        drop = road_scores(
            model,
            batch.images,
            batch.labels,
            attribution.positive.float(),
            self.percents,
            mode=self.mode,
            score=self.score,
            noise=self.noise,
            seed=context.seed,
            batch_size=context.batch_size,
        )
        return {c: drop[:, j] for j, c in enumerate(self.columns())}


@dataclass
class CurveMetric:
    """Deletion or insertion curve of the class score (softmax probability by default)
    over ``percents``; columns ``Deletion-AUC`` (trapezoid, normalised, ×100) then
    ``Deletion@0%`` … (score ×100 for probabilities)."""

    kind: Literal["deletion", "insertion"] = "deletion"
    percents: tuple[float, ...] = tuple(range(0, 101, 10))
    mode: Literal["zero", "noisy_linear"] = "zero"
    score: Literal["logit", "probability"] = "probability"
    noise: float = 0.01
    task: Task = "classification"
    decimals: int = 1

    def __post_init__(self):
        self.percents = _float_tuple(self.percents, "curve percents", 0.0, 100.0)
        _check_choice(self.kind, "kind", ("deletion", "insertion"))
        _check_choice(self.mode, "mode", ("zero", "noisy_linear"))
        _check_choice(self.score, "score", ("logit", "probability"))

    def _tag(self) -> str:
        return self.kind.capitalize() + ("" if self.mode == "zero" else "-NL")

    def columns(self) -> list[str]:
        return [f"{self._tag()}-AUC"] + [f"{self._tag()}@{_fmt_number(p)}%" for p in self.percents]

    def summary_columns(self) -> list[str]:
        return [f"{self._tag()}-AUC"]

    def __call__(self, model, batch, attribution, context):
        from .metrics.road import curve_auc, perturbation_curves

        curves = perturbation_curves(
            model,
            batch.images,
            batch.labels,
            attribution.positive.float(),
            self.percents,
            kind=self.kind,
            mode=self.mode,
            score=self.score,
            noise=self.noise,
            seed=context.seed,
            batch_size=context.batch_size,
        )
        scale = 100.0 if self.score == "probability" else 1.0
        cols = self.columns()
        out = {cols[0]: curve_auc(self.percents, curves) * scale}
        out.update({c: curves[:, j] * scale for j, c in enumerate(cols[1:])})
        return out


@dataclass
class FaceDeleteInsertMetric:
    """Face Deletion/Insertion (Table 1) on the probe with its e₊ map at the clean EER
    threshold. Per pair: ``Delete``/``Insert`` = the pair's AUC ×100 (their mean over all
    pairs is the table's value), ``Delete-acc@P%`` = 100 if the pair is decided correctly
    at P (mean = accuracy in %), ``Delete-sim@P%`` = cosine similarity (likewise Insert)."""

    percents: tuple[float, ...] = tuple(range(0, 101, 10))
    task: Task = "verification"
    decimals: int = 1

    def __post_init__(self):
        self.percents = _float_tuple(self.percents, "percents", 0.0, 100.0)

    def columns(self) -> list[str]:
        cols = ["Delete", "Insert"]
        for kind in ("Delete", "Insert"):
            cols += [f"{kind}-acc@{_fmt_number(p)}%" for p in self.percents]
            cols += [f"{kind}-sim@{_fmt_number(p)}%" for p in self.percents]
        return cols

    def summary_columns(self) -> list[str]:
        return ["Delete", "Insert"]

    def __call__(self, model, batch, attribution, context):
        from .metrics.face import face_deletion_insertion

        if context.threshold is None:
            raise ValueError("FaceDeleteInsertMetric needs the verification threshold")
        res = face_deletion_insertion(
            model,
            batch.gallery,
            batch.probe,
            batch.genuine,
            attribution.positive.float(),
            threshold=context.threshold,
            percents=self.percents,
            gallery_embeddings=context.references,
            batch_size=context.batch_size,
        )
        out = {"Delete": res.pair_auc("delete"), "Insert": res.pair_auc("insert")}
        for kind, tag in (("delete", "Delete"), ("insert", "Insert")):
            correct = res.correct(kind).float() * 100
            sims = res.similarity(kind)
            for j, p in enumerate(self.percents):
                out[f"{tag}-acc@{_fmt_number(p)}%"] = correct[:, j]
                out[f"{tag}-sim@{_fmt_number(p)}%"] = sims[:, j]
        return out


# ----------------------------------------------------------------------------- result


@dataclass
class ExperimentResult:
    """What :func:`run_experiment` produced.

    Attributes:
        rows: tidy DataFrame (index, item, method, metric, value).
        summary: DataFrame, methods × summary columns (means over items).
        paths: written files (``results``, ``summary_csv``, ``summary_md``, ``summary_tex``).
        cache_dirs: method name -> its cache folder.
        threshold: the verification threshold used (``None`` for classification).
        batch_size: items per cached batch.
        decimals: summary column -> decimals used in the Markdown/LaTeX tables.
    """

    rows: pd.DataFrame
    summary: pd.DataFrame
    paths: dict[str, Path]
    cache_dirs: dict[str, Path]
    threshold: float | None
    batch_size: int
    decimals: dict[str, int] = field(default_factory=dict)
    computed_batches: dict[str, int] = field(default_factory=dict)

    def maps(self, method: str) -> Attribution:
        """All cached maps of ``method`` concatenated in dataset order (CPU tensors)."""
        folder = self.cache_dirs[method]
        pos, neg = [], []
        for path in sorted(folder.glob("batch_*.pt")):
            blob = _load(path)
            if blob is None:
                raise FileNotFoundError(f"cached batch {path} is unreadable")
            pos.append(blob["positive"])
            neg.append(blob.get("negative"))
        negative = None if any(n is None for n in neg) else torch.cat(neg)
        return Attribution(torch.cat(pos), negative)

    def table(self, metric: str) -> pd.DataFrame:
        """Per-item values of one metric column: items × methods."""
        sub = self.rows[self.rows["metric"] == metric]
        return sub.pivot(index="item", columns="method", values="value")


def _format_cell(v: float, d: int) -> str:
    return "—" if pd.isna(v) else f"{v:.{d}f}"


def summary_markdown(summary: pd.DataFrame, decimals: Mapping[str, int] | None = None) -> str:
    """A Markdown table of a methods × columns summary (no extra dependency)."""
    decimals = decimals or {}
    head = ["Method", *summary.columns]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * len(summary.columns)) + "|",
    ]
    for method, row in summary.iterrows():
        cells = [_format_cell(row[c], decimals.get(c, 3)) for c in summary.columns]
        lines.append("| " + " | ".join([str(method), *cells]) + " |")
    return "\n".join(lines) + "\n"


def _tex_escape(s: str) -> str:
    return re.sub(r"([%&_#$])", r"\\\1", s)


def summary_latex(summary: pd.DataFrame, decimals: Mapping[str, int] | None = None) -> str:
    """A booktabs LaTeX tabular of a methods × columns summary."""
    decimals = decimals or {}
    cols = "l" + "r" * len(summary.columns)
    lines = [
        f"\\begin{{tabular}}{{{cols}}}",
        "\\toprule",
        " & ".join(["Method", *(_tex_escape(c) for c in summary.columns)]) + " \\\\",
        "\\midrule",
    ]
    for method, row in summary.iterrows():
        cells = [_format_cell(row[c], decimals.get(c, 3)) for c in summary.columns]
        lines.append(" & ".join([_tex_escape(str(method)), *cells]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- runner


def _batches(n: int, batch_size: int) -> list[range]:
    return [range(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]


def _get_batch(dataset: Sequence, idx: range):
    return collate([dataset[i] for i in idx], list(idx))


@torch.no_grad()
def _clean_verification(
    model: nn.Module, dataset: Sequence, batch_size: int, device, progress: bool
) -> tuple[Tensor, Tensor, Tensor]:
    """Normalised gallery embeddings (N, D), clean scores (N,), genuine (N,) on CPU."""
    from .metrics.face import embed

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


def _check_inputs(dataset, methods, metrics, batch_size) -> Task:
    if dataset is None or len(dataset) == 0:
        raise ValueError("the dataset is empty")
    task = _task_of(dataset[0])
    if not methods:
        raise ValueError("no methods given")
    names = [getattr(m, "name", None) for m in methods]
    if any(not n for n in names):
        raise ValueError("every method needs a non-empty `name` attribute")
    if len(set(names)) != len(names):
        raise ValueError(f"method names must be unique, got {names}")
    for m in metrics:
        if getattr(m, "task", None) != task:
            raise ValueError(
                f"metric {type(m).__name__} is for {getattr(m, 'task', '?')} but the dataset "
                f"holds {task} items"
            )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return task


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
            _save_tensors(blob, folder / f"batch_{b:05d}.pt")
            bar.update(1)
    finally:
        bar.close()
    return len(todo)


def _evaluate(
    model: nn.Module,
    dataset: Sequence,
    method: Callable[..., Attribution],
    folder: Path,
    batches: list[range],
    metrics: Sequence[Metric],
    refs: Tensor | None,
    threshold: float | None,
    seed: int,
    eval_batch_size: int,
    progress: bool,
) -> list[dict]:
    """Tidy records of every metric on every cached batch of one method (metric values
    are cached next to the maps, keyed by the metric's settings)."""
    device = model_device(model)
    records: list[dict] = []
    keys = [
        _digest({"metric": _jsonable(m), "seed": seed, "eval_batch_size": eval_batch_size})
        for m in metrics
    ]
    bar = tqdm(total=len(batches), desc=f"eval {method.name}", unit="batch", disable=not progress)
    try:
        for b, idx in enumerate(batches):
            map_path = folder / f"batch_{b:05d}.pt"
            blob = batch = att = None
            for m, key in zip(metrics, keys):
                mpath = folder / f"eval_{_slug(type(m).__name__)}-{key}_{b:05d}.pt"
                cached = _load(mpath)
                if cached is None:
                    if blob is None:
                        blob = _load(map_path)
                        if blob is None:
                            raise RuntimeError(
                                f"cached maps {map_path} are missing or unreadable; "
                                "delete the file and run again"
                            )
                        batch = _get_batch(dataset, idx).to(device)
                        if batch.names != blob["names"]:
                            raise RuntimeError(
                                f"cache {folder} holds maps for other items than batch {b} "
                                "of this dataset; delete the folder"
                            )
                        neg = blob["negative"]
                        att = Attribution(
                            blob["positive"].to(device, torch.float32),
                            None if neg is None else neg.to(device, torch.float32),
                        )
                    ctx = EvalContext(
                        threshold=threshold,
                        references=None if refs is None else refs[idx.start : idx.stop].to(device),
                        seed=seed + b,
                        batch_size=eval_batch_size,
                    )
                    values = m(model, batch, att, ctx)
                    missing = set(m.columns()) - set(values)
                    if missing:
                        raise RuntimeError(f"{type(m).__name__} did not return {sorted(missing)}")
                    cached = {
                        "names": blob["names"],
                        "values": {k: v.detach().float().cpu() for k, v in values.items()},
                    }
                    _save_tensors(cached, mpath)
                for col in m.columns():
                    for i, name, v in zip(idx, cached["names"], cached["values"][col].tolist()):
                        records.append(
                            {
                                "index": i,
                                "item": name,
                                "method": method.name,
                                "metric": col,
                                "value": v,
                            }
                        )
            bar.update(1)
    finally:
        bar.close()
    return records


def run_experiment(
    model: nn.Module,
    dataset: Sequence[ClassificationItem] | Sequence[PairItem],
    methods: Sequence[Callable[..., Attribution]],
    metrics: Sequence[Metric],
    out_dir: str | os.PathLike,
    *,
    batch_size: int = 16,
    eval_batch_size: int = 64,
    cache_dir: str | os.PathLike | None = None,
    threshold: float | None = None,
    model_id: str | None = None,
    seed: int = 0,
    cache_dtype: torch.dtype = torch.float32,
    progress: bool = True,
    write: bool = True,
) -> ExperimentResult:
    """Compute, cache, evaluate and tabulate every method on a dataset.

    Args:
        model: network in eval mode taking (B, 3, H, W) [0, 1] RGB (a classifier returning
            logits for :class:`ClassificationItem` data, a face embedder for
            :class:`PairItem` data); maps are computed on its device.
        dataset: a sequence of items of one kind (see the module docstring).
        methods: callables ``method(model, images, target) -> Attribution`` with a unique
            ``name`` (FAME and the baselines).
        metrics: e.g. ``[IoUMetric(), RoadMetric()]`` or ``[FaceDeleteInsertMetric()]``.
        out_dir: folder for ``results.csv`` and the summaries (created).
        batch_size: items per map batch and per cache file.
        eval_batch_size: perturbed images per forward pass in the metrics.
        cache_dir: map cache folder (default ``out_dir/cache``); can be shared by runs.
        threshold: verification θ; default: the clean EER threshold of the dataset's pairs.
        model_id: identifies the model in the cache hash (default: ``model.name`` and a
            hash of its weights).
        seed: base seed of the metrics' random parts (batch b uses ``seed + b``).
        cache_dtype: dtype the maps are stored in.
        progress: tqdm bars (one per method for maps, one per method for evaluation).
        write: write the CSV/Markdown/LaTeX files (the cache is always written).

    Returns:
        :class:`ExperimentResult`.

    Raises:
        ValueError: empty dataset, mixed or unsupported items, metrics for the other task,
            duplicate method names.
    """
    task = _check_inputs(dataset, methods, metrics, batch_size)
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
            from .metrics.threshold import eer_threshold

            threshold = float(eer_threshold(clean, genuine))
        base["threshold"] = repr(float(threshold))

    cache_dirs: dict[str, Path] = {}
    computed: dict[str, int] = {}
    for method in methods:
        settings = {**base, "method": method_settings(method)}
        folder = cache_root / f"{_slug(method.name)}-{_digest(settings)}"
        cache_dirs[method.name] = folder
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "meta.json").exists():
            _write_text(
                json.dumps({"name": method.name, **settings}, indent=2), folder / "meta.json"
            )
        computed[method.name] = _compute_maps(
            model, dataset, method, folder, batches, task, refs, threshold, cache_dtype, progress
        )

    records: list[dict] = []
    for method in methods:
        records += _evaluate(
            model,
            dataset,
            method,
            cache_dirs[method.name],
            batches,
            metrics,
            refs,
            threshold,
            seed,
            eval_batch_size,
            progress,
        )
    decimals: dict[str, int] = {}
    summary_cols: list[str] = []
    for m in metrics:
        for c in m.summary_columns():
            decimals[c] = m.decimals
            summary_cols.append(c)
    rows = pd.DataFrame.from_records(
        records, columns=["index", "item", "method", "metric", "value"]
    )
    summary = (
        rows[rows["metric"].isin(summary_cols)]
        .groupby(["method", "metric"], sort=False)["value"]
        .mean()
        .unstack("metric")
        .reindex(index=[m.name for m in methods], columns=summary_cols)
    )
    summary.index.name = "method"
    summary.columns.name = None
    paths: dict[str, Path] = {}
    if write:
        paths = {
            "results": out / "results.csv",
            "summary_csv": out / "summary.csv",
            "summary_md": out / "summary.md",
            "summary_tex": out / "summary.tex",
        }
        _write_text(rows.to_csv(index=False), paths["results"])
        _write_text(summary.to_csv(), paths["summary_csv"])
        _write_text(summary_markdown(summary, decimals), paths["summary_md"])
        _write_text(summary_latex(summary, decimals), paths["summary_tex"])
    return ExperimentResult(
        rows=rows,
        summary=summary,
        paths=paths,
        cache_dirs=cache_dirs,
        threshold=threshold,
        batch_size=batch_size,
        decimals=decimals,
        computed_batches=computed,
    )


def methods_by_name(
    names: Iterable[str],
    task: Task,
    *,
    fame_config=None,
    threshold: float | None = None,
    n_masks: int = 500,
) -> list:
    """Method instances from short names (case-insensitive): ``fame``, ``gradcam``,
    ``gradcam-ew``, ``hirescam``, ``fullgrad`` (classification) and ``gradcam``,
    ``gradcam-ew``, ``corrrise``, ``fggb``, ``fame`` (verification)."""
    from . import baselines
    from .explain import Fame

    def fame():
        return Fame(fame_config) if fame_config is not None else Fame()

    table: dict[str, Callable[[], Any]] = {
        "fame": fame,
        "gradcam": baselines.GradCAM,
        "gradcam-ew": baselines.GradCAMElementWise,
        "gradcamew": baselines.GradCAMElementWise,
        "hirescam": baselines.HiResCAM,
        "fullgrad": baselines.FullGrad,
        "corrrise": lambda: baselines.CorrRISE(n_masks=n_masks),
        "fggb": lambda: baselines.FGGB(threshold=threshold),
    }
    allowed = {
        "classification": {
            "fame",
            "gradcam",
            "gradcam-ew",
            "gradcamew",
            "hirescam",
            "fullgrad",
            "corrrise",
        },
        "verification": {"fame", "gradcam", "gradcam-ew", "gradcamew", "corrrise", "fggb"},
    }[task]
    out = []
    for raw in names:
        key = raw.strip().lower().replace("_", "-")
        if key not in table or key not in allowed:
            raise ValueError(
                f"unknown {task} method {raw!r}; choose from {sorted(allowed - {'gradcamew'})}"
            )
        out.append(table[key]())
    return out
