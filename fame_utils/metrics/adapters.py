"""The paper's metrics as :func:`fame_utils.run_experiment` evaluates them. A metric has
``task``, ``decimals`` and ``columns()`` (the summary table shows ``summary_columns()`` where
defined, else all) and is called as ``metric(model, batch, attribution, *, threshold,
references, seed, batch_size, ties, tie_seed) -> {Column: (B,) tensor}``: verification θ,
the batch's (B, D) gallery embeddings, a per-batch seed, perturbed images per forward and the
recipe's tie rule."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor

from .._checks import check_number
from ..data.items import Task
from .face import face_deletion_insertion
from .localization import float_tuple, iou_at_thresholds, mass_on_mask
from .road import road_scores


@dataclass(frozen=True)
class Column:
    """A result column: ``metric`` at IoU ``threshold`` t or at ``percent`` (else ``None``)."""

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
class IoUMetric:
    """IoU@t ×100 of {map ≥ t} and each item's box (Table 2), t in [0, 1]; given ``masks``
    (N, H, W) bool in dataset order (the digit strokes), of item i's ``masks[i]``, plus
    ``Mass-on-mask`` ×100 (:func:`~.localization.mass_on_mask`)."""

    thresholds: tuple[float, ...] = (0.3, 0.5, 0.7)
    masks: Tensor | None = field(default=None, repr=False)
    task: Task = "classification"
    decimals: int = 1

    def __post_init__(self):
        self.thresholds = float_tuple(self.thresholds, "IoU thresholds", 0.0, 1.0)
        if self.masks is not None:
            if not isinstance(self.masks, Tensor) or self.masks.ndim != 3:
                raise ValueError("masks must be a (N, H, W) tensor, one mask per dataset item")
            self.masks = self.masks.bool()

    def columns(self) -> list[Column]:
        mass = [] if self.masks is None else [Column("Mass-on-mask")]
        return [Column("IoU", threshold=t) for t in self.thresholds] + mass

    def __call__(self, model, batch, attribution, **_):
        maps = attribution.positive.float()
        if self.masks is None:
            if batch.boxes is None:
                raise ValueError("IoUMetric needs boxes: the dataset items have box=None")
            objects = batch.boxes
        else:
            index = torch.as_tensor(batch.indices, dtype=torch.long, device=self.masks.device)
            objects = self.masks[index].to(maps.device)
        iou = iou_at_thresholds(maps, objects, self.thresholds) * 100
        out = dict(zip(self.columns(), iou.unbind(1)))
        if self.masks is not None:
            out[Column("Mass-on-mask")] = mass_on_mask(maps, objects) * 100
        return out


@dataclass
class RoadMetric:
    """ROAD-Delete@p (Table 2) of :func:`~.road.road_scores`: columns ``ROAD-Delete`` for
    ``mode="zero"`` (the paper), ``ROAD-NL-Delete`` for ``"noisy_linear"``."""

    percents: tuple[float, ...] = (10, 30, 50)
    mode: Literal["zero", "noisy_linear"] = "zero"
    noise: float = 0.01
    task: Task = "classification"
    decimals: int = 3

    def __post_init__(self):
        self.percents = float_tuple(self.percents, "ROAD percents", 0.0, 100.0)
        if self.mode not in ("zero", "noisy_linear"):
            raise ValueError(f"mode must be one of ('zero', 'noisy_linear'), got {self.mode!r}")
        self.noise = check_number(self.noise, "noise (the imputation noise σ, >= 0)", lo=0.0)

    def columns(self) -> list[Column]:
        name = "ROAD-Delete" if self.mode == "zero" else "ROAD-NL-Delete"
        return [Column(name, percent=p) for p in self.percents]

    def __call__(self, model, batch, attribution, *, seed, batch_size, ties, tie_seed, **_):
        drop = road_scores(
            model,
            batch.images,
            batch.labels,
            attribution.positive.float(),
            self.percents,
            mode=self.mode,
            noise=self.noise,
            seed=seed,
            batch_size=batch_size,
            ties=ties,
            tie_seed=tie_seed,
        )
        return dict(zip(self.columns(), drop.unbind(1)))


@dataclass
class FaceDeleteInsertMetric:
    """Face Deletion/Insertion (Table 1), per pair: ``Delete`` / ``Insert``, its AUC ×100
    (their mean is the table's value), and at each P ``Delete-acc`` (100 if decided right)
    and ``Delete-sim`` (cosine), likewise ``Insert-acc`` / ``Insert-sim``."""

    percents: tuple[float, ...] = tuple(range(0, 101, 10))
    task: Task = "verification"
    decimals: int = 1

    def __post_init__(self):
        self.percents = float_tuple(self.percents, "percents", 0.0, 100.0)

    def columns(self) -> list[Column]:
        cols = self.summary_columns()
        for kind in ("Delete-acc", "Delete-sim", "Insert-acc", "Insert-sim"):
            cols += [Column(kind, percent=p) for p in self.percents]
        return cols

    def summary_columns(self) -> list[Column]:
        return [Column("Delete"), Column("Insert")]

    def __call__(
        self, model, batch, attribution, *, threshold, references, batch_size, ties, tie_seed, **_
    ):
        res = face_deletion_insertion(
            model,
            batch.gallery,
            batch.probe,
            batch.genuine,
            attribution.positive.float(),
            threshold=threshold,
            percents=self.percents,
            gallery_embeddings=references,
            batch_size=batch_size,
            ties=ties,
            tie_seed=tie_seed,
        )
        values = [res.pair_auc("delete"), res.pair_auc("insert")]
        for kind in ("delete", "insert"):
            values += [
                *(res.correct(kind).float() * 100).unbind(1),
                *res.similarity(kind).unbind(1),
            ]
        return dict(zip(self.columns(), values))


def table2_metrics(
    thresholds: Iterable[float] = (0.3, 0.5, 0.7),
    percents: Iterable[float] = (10, 30, 50),
    modes: Iterable[Literal["zero", "noisy_linear"]] = ("zero", "noisy_linear"),
) -> list:
    """Table 2's :class:`IoUMetric` and a :class:`RoadMetric` per removal mode (zero: the
    paper's; noisy-linear: Rong et al. 2022)."""
    modes = tuple(modes)
    if not modes:
        raise ValueError("modes is empty: give 'zero' and/or 'noisy_linear'")
    return [IoUMetric(tuple(thresholds))] + [RoadMetric(tuple(percents), mode=m) for m in modes]
