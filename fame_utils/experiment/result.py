"""What an experiment run returns: tidy rows, summary with intervals, cached maps."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..objectives import Attribution
from ..recipes import PAPER, Recipe
from .cache import load

__all__ = ["ExperimentResult"]


def _matches(values: pd.Series, wanted: float | None) -> np.ndarray:
    if wanted is None:
        return values.isna().to_numpy()
    return np.isclose(values.to_numpy(np.float64), float(wanted), rtol=0, atol=1e-9)


@dataclass
class ExperimentResult:
    """What :func:`~fame_utils.experiment.run.run_experiment` produced.

    Attributes:
        rows: tidy DataFrame, one row per item × method × column:
            ``index, item, method, metric, threshold, percent, value`` (``threshold`` /
            ``percent`` NaN where the metric has none), as in ``results.csv``.
        summary: methods × summary column labels (``IoU@0.3``, ``Delete``), means over items.
        intervals: same shape, :class:`~fame_utils.stats.Interval` per cell (95 %
            bootstrap interval over items, seeded; ``None`` for an empty cell).
        paths: written files (``results``, ``summary_csv``, ``summary_md``,
            ``summary_tex``, ``run``).
        cache_dirs: method name -> its cache folder.
        threshold: the verification threshold used (``None`` for classification).
        batch_size: items per cached batch.
        decimals: summary column label -> decimals used in the Markdown/LaTeX tables.
        computed_batches: method name -> map batches computed in this run (0: all cached).
        recipe: the run's recipe (its tie rule and seed were used by the metrics).
        threshold_source: where ``threshold`` came from: ``"clean EER"`` (computed from
            the dataset's pairs), ``"given"`` (by the caller) or the caller's own label;
            ``None`` for classification.
    """

    rows: pd.DataFrame
    summary: pd.DataFrame
    paths: dict[str, Path]
    cache_dirs: dict[str, Path]
    threshold: float | None
    batch_size: int
    decimals: dict[str, int] = field(default_factory=dict)
    computed_batches: dict[str, int] = field(default_factory=dict)
    intervals: pd.DataFrame | None = None
    recipe: Recipe = PAPER
    threshold_source: str | None = None

    @property
    def methods(self) -> list[str]:
        """Method names in run order."""
        return list(self.summary.index)

    def maps(self, method: str) -> Attribution:
        """All cached maps of ``method`` concatenated in dataset order (CPU tensors)."""
        folder = self.cache_dirs[method]
        pos, neg = [], []
        for path in sorted(folder.glob("batch_*.pt")):
            blob = load(path)
            if blob is None:
                raise FileNotFoundError(f"cached batch {path} is unreadable")
            pos.append(blob["positive"])
            neg.append(blob.get("negative"))
        negative = None if any(n is None for n in neg) else torch.cat(neg)
        return Attribution(torch.cat(pos), negative)

    def select(
        self, metric: str, threshold: float | None = None, percent: float | None = None
    ) -> pd.DataFrame:
        """The rows of one column (``metric`` at ``threshold`` or ``percent``).

        Raises:
            KeyError: no such column; the message lists the metrics the run has.
        """
        r = self.rows
        keep = (
            (r["metric"] == metric).to_numpy()
            & _matches(r["threshold"], threshold)
            & _matches(r["percent"], percent)
        )
        if not keep.any():
            have = sorted(r["metric"].unique())
            raise KeyError(
                f"no results for metric={metric!r}, threshold={threshold}, percent={percent}; "
                f"metrics of this run: {have} (give threshold= for IoU, percent= for ROAD "
                "and the face curves)"
            )
        return r[keep]

    def per_item(
        self, metric: str, threshold: float | None = None, percent: float | None = None
    ) -> pd.DataFrame:
        """Per-item values of one column: items (dataset order) × methods (run order).

        Example: ``result.per_item("IoU", threshold=0.5)``,
        ``result.per_item("Delete-acc", percent=30)``, ``result.per_item("Delete")``.
        """
        sub = self.select(metric, threshold, percent)
        table = sub.pivot(index="index", columns="method", values="value")
        names = sub.drop_duplicates("index").set_index("index")["item"]
        table.index = pd.Index(names.loc[table.index].to_list(), name="item")
        table.columns.name = None
        return table[[m for m in self.methods if m in table.columns]]

    def curve(self, metric: str) -> pd.DataFrame:
        """Mean over items of a per-percent metric (``"Delete-acc"``, ``"Insert-sim"``,
        ``"ROAD-Delete"``): percents (ascending) × methods (run order)."""
        r = self.rows
        sub = r[(r["metric"] == metric) & r["percent"].notna()]
        if sub.empty:
            raise KeyError(
                f"no per-percent results for metric={metric!r}; metrics of this run: "
                f"{sorted(r['metric'].unique())}"
            )
        table = sub.groupby(["percent", "method"])["value"].mean().unstack("method")
        table.columns.name = None
        return table[[m for m in self.methods if m in table.columns]]
