"""What a run returns and writes: tidy rows, means with bootstrap intervals, tables."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..baselines.sanity import BASELINE_NAMES
from ..metrics.adapters import Column
from ..objectives import Attribution
from ..recipes import PAPER, Recipe
from ..stats import DEFAULT_RESAMPLES, bootstrap_interval
from .store import load

ROW_COLUMNS = ["index", "item", "method", "metric", "threshold", "percent", "value"]
"""Columns of ``results.csv`` (``threshold``/``percent`` empty where not applicable)."""


def column_of(metric: str, threshold: float | None, percent: float | None) -> Column:
    """The :class:`Column` of a row's ``metric``/``threshold``/``percent`` (NaN = none)."""
    t, p = (None if v is None or pd.isna(v) else float(v) for v in (threshold, percent))
    return Column(metric, t, p)


def summarize(
    rows: pd.DataFrame,
    columns: Sequence[Column],
    methods: Sequence[str],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(summary, intervals)``: methods × column labels of the item means and their 95 %
    percentile-bootstrap :class:`~fame_utils.stats.Interval` (``None`` where no value is
    finite; NaN values left out), every cell with ``seed``."""
    labels = [c.label for c in columns]
    summary = pd.DataFrame(np.nan, index=pd.Index(list(methods), name="method"), columns=labels)
    intervals = pd.DataFrame(None, index=summary.index, columns=labels, dtype=object)
    keys = ["method", "metric", "threshold", "percent"]
    groups = rows.groupby(keys, sort=False, dropna=False) if len(rows) else ()
    for (method, metric, t, p), group in groups:
        label = column_of(metric, t, p).label
        values = group["value"].to_numpy(np.float64)
        values = values[np.isfinite(values)]
        if label in labels and method in summary.index and values.size:
            iv = bootstrap_interval(values, n_resamples, seed, 0.95)
            summary.loc[method, label] = iv.mean
            intervals.loc[method, label] = iv
    return summary, intervals


def _rows(summary: pd.DataFrame, decimals: Mapping[str, int] | None, intervals) -> list:
    """``[label, *cells]`` per method: ``mean [low, high]`` to the column's decimals."""
    out = []
    for method, row in summary.iterrows():
        # the sanity baselines are reference rows, not methods (issue 23)
        cells = [f"{method} (sanity baseline)" if method in BASELINE_NAMES else str(method)]
        for c in summary.columns:
            v, d = row[c], (decimals or {}).get(c, 3)
            iv = None if intervals is None or pd.isna(v) else intervals.loc[method, c]
            cell = "—" if pd.isna(v) else f"{v:.{d}f}"
            cells.append(cell if iv is None else f"{cell} [{iv.low:.{d}f}, {iv.high:.{d}f}]")
        out.append(cells)
    return out


def summary_markdown(
    summary: pd.DataFrame,
    decimals: Mapping[str, int] | None = None,
    intervals: pd.DataFrame | None = None,
    note: str | None = None,
) -> str:
    """A Markdown table of a methods × columns summary, cells ``mean [low, high]`` with
    ``intervals`` (same shape); ``note`` below it."""
    lines = [
        "| " + " | ".join(["Method", *summary.columns]) + " |",
        "|" + "|".join(["---"] + ["---:"] * len(summary.columns)) + "|",
    ]
    lines += ["| " + " | ".join(cells) + " |" for cells in _rows(summary, decimals, intervals)]
    return "\n".join(lines + (["", note] if note else [])) + "\n"


def summary_latex(
    summary: pd.DataFrame,
    decimals: Mapping[str, int] | None = None,
    intervals: pd.DataFrame | None = None,
    note: str | None = None,
) -> str:
    """A booktabs LaTeX tabular, as :func:`summary_markdown` (``note`` as a comment)."""
    tex = functools.partial(re.sub, r"([%&_#$])", r"\\\1")
    lines = [
        f"\\begin{{tabular}}{{l{'r' * len(summary.columns)}}}",
        "\\toprule",
        " & ".join(["Method", *map(tex, summary.columns)]) + " \\\\",
        "\\midrule",
    ]
    rows = _rows(summary, decimals, intervals)
    lines += [" & ".join([tex(m), *cells]) + " \\\\" for m, *cells in rows]
    lines += ["\\bottomrule", "\\end{tabular}"] + (["% " + note] if note else [])
    return "\n".join(lines) + "\n"


def summary_texts(
    rows: pd.DataFrame,
    summary: pd.DataFrame,
    intervals: pd.DataFrame,
    decimals: dict[str, int],
    n_items: int,
    n_resamples: int,
    seed: int,
) -> dict[str, str]:
    """Every output file's text but ``run.json``'s, by name (``summary.csv``: ``<col>``,
    ``<col>_low``, ``<col>_high``)."""
    note = (
        f"Brackets: 95 % percentile-bootstrap interval of the mean over the {n_items} items "
        f"({n_resamples} resamples, seed {seed})."
    )
    table = {}
    for c in summary.columns:
        table[c] = summary[c]
        table[f"{c}_low"] = intervals[c].map(lambda iv: np.nan if iv is None else iv.low)
        table[f"{c}_high"] = intervals[c].map(lambda iv: np.nan if iv is None else iv.high)
    return {
        "results.csv": rows.to_csv(index=False),
        "summary.csv": pd.DataFrame(table, index=summary.index).astype(float).to_csv(),
        "summary.md": summary_markdown(summary, decimals, intervals, note),
        "summary.tex": summary_latex(summary, decimals, intervals, note),
    }


def _matches(values: pd.Series, wanted: float | None) -> np.ndarray:
    if wanted is None:
        return values.isna().to_numpy()
    return np.isclose(values.to_numpy(np.float64), float(wanted), rtol=0, atol=1e-9)


@dataclass
class ExperimentResult:
    """What :func:`~fame_utils.run_experiment` produced: ``rows`` of ``results.csv``;
    ``summary`` and ``intervals`` as :func:`summarize`; the written ``paths`` (``results``,
    ``summary_csv``, ``summary_md``, ``summary_tex``, ``run``); ``cache_dirs`` and
    ``computed_batches`` (0: all cached) by method; verification ``threshold`` and its
    ``threshold_source`` (``None`` for classification); table ``decimals`` by label."""

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
        blobs = [load(p) for p in sorted(self.cache_dirs[method].glob("batch_*.pt"))]
        if any(b is None for b in blobs):
            raise FileNotFoundError(f"a cached batch of {method} is unreadable")
        neg = [b.get("negative") for b in blobs]
        negative = None if any(n is None for n in neg) else torch.cat(neg)
        return Attribution(torch.cat([b["positive"] for b in blobs]), negative)

    def per_item(
        self, metric: str, threshold: float | None = None, percent: float | None = None
    ) -> pd.DataFrame:
        """Per-item values of one column: items (dataset order) × methods (run order), e.g.
        ``result.per_item("IoU", threshold=0.5)``.

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
            raise KeyError(
                f"no results for metric={metric!r}, threshold={threshold}, percent={percent}; "
                f"metrics of this run: {sorted(r['metric'].unique())} (give threshold= for "
                "IoU, percent= for ROAD and the face curves)"
            )
        table = r[keep].pivot(index="index", columns="method", values="value")
        names = r[keep].drop_duplicates("index").set_index("index")["item"]
        table.index = pd.Index(names.loc[table.index].to_list(), name="item")
        table.columns.name = None
        return table[[m for m in self.methods if m in table.columns]]

    def curve(self, metric: str) -> pd.DataFrame:
        """Mean over items of a per-percent metric (``"Delete-acc"``, ``"ROAD-Delete"``):
        percents (ascending) × methods (run order)."""
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
