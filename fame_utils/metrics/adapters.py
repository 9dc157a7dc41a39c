"""Metric adapters: the paper's metrics as objects the experiment runner evaluates.

A metric adapter (the :class:`Metric` protocol) turns one batch of items and its maps
into one value per item for each of its result :class:`Column`\\ s. A column is a metric
name with its parameter as a real field (``Column("IoU", threshold=0.3)``,
``Column("Delete-acc", percent=10)``); its display ``label`` (``IoU@0.3``,
``Delete-acc@10%``) only heads summary tables.

- :class:`IoUMetric` — IoU@t between {map ≥ t} and the object box (Table 2).
- :class:`RoadMetric` — ROAD-Delete@p (Table 2), zero or noisy-linear removal.
- :class:`FaceDeleteInsertMetric` — face Deletion/Insertion at the clean EER threshold
  (Table 1), with per-percent accuracy and similarity curves.

Exact-count pixel removal orders pixels of equal map value by the recipe's tie rule
(:attr:`fame_utils.recipes.Recipe.ties`), handed over in :class:`EvalContext`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

from torch import Tensor, nn

from .._checks import check_number
from ..data.items import Task
from ..objectives import Attribution
from .face import face_deletion_insertion
from .localization import iou_at_thresholds
from .road import road_scores

__all__ = [
    "Column",
    "EvalContext",
    "Metric",
    "IoUMetric",
    "RoadMetric",
    "FaceDeleteInsertMetric",
    "table2_metrics",
]


@dataclass(frozen=True)
class Column:
    """One result column: a metric name and the parameter it was taken at.

    Attributes:
        metric: e.g. ``"IoU"``, ``"ROAD-Delete"``, ``"ROAD-NL-Delete"``, ``"Delete"``,
            ``"Insert"``, ``"Delete-acc"``, ``"Insert-sim"``.
        threshold: the map threshold t of IoU@t (in [0, 1]), else ``None``.
        percent: the removed/inserted share of pixels in % (ROAD, face curves), else ``None``.
    """

    metric: str
    threshold: float | None = None
    percent: float | None = None

    @property
    def label(self) -> str:
        """Display name for table headers: ``IoU@0.3``, ``ROAD-Delete@10%``, ``Delete``."""
        if self.threshold is not None:
            return f"{self.metric}@{self.threshold:g}"
        if self.percent is not None:
            return f"{self.metric}@{self.percent:g}%"
        return self.metric


@dataclass
class EvalContext:
    """What a metric needs besides the batch and the maps.

    Attributes:
        threshold: verification threshold θ (clean EER threshold), ``None`` for
            classification.
        references: (B, D) normalised gallery embeddings of the batch (verification).
        seed: a seed for this batch (for random imputation noise), reproducible per batch.
        batch_size: forward-pass chunk size for perturbed inputs.
        ties: how exact-count removal orders pixels of equal value (``Recipe.ties``).
        tie_seed: seed of the ``"random"`` tie order (``Recipe.tie_seed``).
    """

    threshold: float | None = None
    references: Tensor | None = None
    seed: int = 0
    batch_size: int = 64
    ties: str = "random"
    tie_seed: int = 0


@runtime_checkable
class Metric(Protocol):
    """``metric(model, batch, attribution, context) -> {Column: (B,) tensor}``.

    ``task`` says which datasets it applies to, ``columns()`` lists the columns it
    returns in order, ``summary_columns()`` those shown in the summary table, and
    ``decimals`` how many decimals the summary prints."""

    task: Task
    decimals: int

    def columns(self) -> list[Column]: ...

    def summary_columns(self) -> list[Column]: ...

    def __call__(
        self, model: nn.Module, batch: Any, attribution: Attribution, context: EvalContext
    ) -> dict[Column, Tensor]: ...


def float_tuple(values: Any, name: str, lo: float, hi: float) -> tuple[float, ...]:
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
    """IoU@t ×100 between {map ≥ t} and the box (Table 2): columns ``IoU`` at each t."""

    thresholds: tuple[float, ...] = (0.3, 0.5, 0.7)
    task: Task = "classification"
    decimals: int = 1

    def __post_init__(self):
        self.thresholds = float_tuple(self.thresholds, "IoU thresholds", 0.0, 1.0)

    def columns(self) -> list[Column]:
        return [Column("IoU", threshold=t) for t in self.thresholds]

    def summary_columns(self) -> list[Column]:
        return self.columns()

    def __call__(self, model, batch, attribution, context):
        if batch.boxes is None:
            raise ValueError("IoUMetric needs boxes: the dataset items have box=None")
        iou = iou_at_thresholds(attribution.positive.float(), batch.boxes, self.thresholds)
        return {c: iou[:, j] * 100 for j, c in enumerate(self.columns())}


@dataclass
class RoadMetric:
    """ROAD-Delete@p: drop of the ground-truth logit when the top-p % pixels are removed
    (Table 2). ``mode="zero"`` (the paper) gives columns ``ROAD-Delete`` at each p;
    ``"noisy_linear"`` (ROAD proper) ``ROAD-NL-Delete``."""

    percents: tuple[float, ...] = (10, 30, 50)
    mode: Literal["zero", "noisy_linear"] = "zero"
    score: Literal["logit", "probability"] = "logit"
    noise: float = 0.01
    task: Task = "classification"
    decimals: int = 3

    def __post_init__(self):
        self.percents = float_tuple(self.percents, "ROAD percents", 0.0, 100.0)
        _check_choice(self.mode, "mode", ("zero", "noisy_linear"))
        _check_choice(self.score, "score", ("logit", "probability"))
        self.noise = check_number(self.noise, "noise (the imputation noise σ, >= 0)", lo=0.0)

    def columns(self) -> list[Column]:
        name = "ROAD-Delete" if self.mode == "zero" else "ROAD-NL-Delete"
        return [Column(name, percent=p) for p in self.percents]

    def summary_columns(self) -> list[Column]:
        return self.columns()

    def __call__(self, model, batch, attribution, context):
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
            ties=context.ties,
            tie_seed=context.tie_seed,
        )
        return {c: drop[:, j] for j, c in enumerate(self.columns())}


@dataclass
class FaceDeleteInsertMetric:
    """Face Deletion/Insertion (Table 1) on the probe with its e₊ map at the clean EER
    threshold. Per pair: ``Delete``/``Insert`` = the pair's AUC ×100 (their mean over all
    pairs is the table's value); at each percent P, ``Delete-acc`` = 100 if the pair is
    decided correctly at P (mean = accuracy in %) and ``Delete-sim`` = cosine similarity
    (likewise ``Insert-acc``/``Insert-sim``)."""

    percents: tuple[float, ...] = tuple(range(0, 101, 10))
    task: Task = "verification"
    decimals: int = 1

    def __post_init__(self):
        self.percents = float_tuple(self.percents, "percents", 0.0, 100.0)

    def columns(self) -> list[Column]:
        cols = [Column("Delete"), Column("Insert")]
        for kind in ("Delete", "Insert"):
            cols += [Column(f"{kind}-acc", percent=p) for p in self.percents]
            cols += [Column(f"{kind}-sim", percent=p) for p in self.percents]
        return cols

    def summary_columns(self) -> list[Column]:
        return [Column("Delete"), Column("Insert")]

    def __call__(self, model, batch, attribution, context):
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
            ties=context.ties,
            tie_seed=context.tie_seed,
        )
        out = {Column("Delete"): res.pair_auc("delete"), Column("Insert"): res.pair_auc("insert")}
        for kind, tag in (("delete", "Delete"), ("insert", "Insert")):
            correct = res.correct(kind).float() * 100
            sims = res.similarity(kind)
            for j, p in enumerate(self.percents):
                out[Column(f"{tag}-acc", percent=p)] = correct[:, j]
                out[Column(f"{tag}-sim", percent=p)] = sims[:, j]
        return out


def table2_metrics(
    thresholds: Iterable[float] = (0.3, 0.5, 0.7),
    percents: Iterable[float] = (10, 30, 50),
    modes: Iterable[Literal["zero", "noisy_linear"]] = ("zero", "noisy_linear"),
) -> list:
    """Table 2's metrics: :class:`IoUMetric` at ``thresholds`` and one :class:`RoadMetric`
    per removal mode, by default both as separate column groups: ``ROAD-Delete`` (zero
    removal, the paper's protocol, which rewards scattered maps: random deletion pushes
    the image out of distribution) and ``ROAD-NL-Delete`` (noisy-linear imputation, Rong
    et al. 2022, which removes that effect)."""
    modes = tuple(modes)
    if not modes:
        raise ValueError("modes is empty: give 'zero' and/or 'noisy_linear'")
    return [IoUMetric(tuple(thresholds))] + [RoadMetric(tuple(percents), mode=m) for m in modes]
