"""Summary tables of an experiment: means with bootstrap intervals, Markdown and LaTeX.

:func:`summarize` turns the tidy per-item rows (``item, method, metric, threshold,
percent, value``) into a methods × columns table of means and, for each cell, a 95 %
percentile-bootstrap interval over the items (:func:`fame_utils.stats.bootstrap_interval`,
seeded, 2000 resamples). :func:`summary_markdown` and :func:`summary_latex` print it
(each cell ``mean [low, high]`` when intervals are given); :func:`summary_with_intervals`
is the CSV form (columns ``<col>``, ``<col>_low``, ``<col>_high``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..baselines.sanity import BASELINE_NAMES
from ..metrics.adapters import Column
from ..stats import DEFAULT_RESAMPLES, Interval, bootstrap_interval

__all__ = [
    "ROW_COLUMNS",
    "column_of",
    "summarize",
    "summary_with_intervals",
    "summary_markdown",
    "summary_latex",
    "interval_note",
]

ROW_COLUMNS = ["index", "item", "method", "metric", "threshold", "percent", "value"]
"""Columns of ``results.csv`` (``threshold``/``percent`` empty where not applicable)."""


def column_of(metric: str, threshold: float | None, percent: float | None) -> Column:
    """The :class:`Column` of a row's ``metric``/``threshold``/``percent`` (NaN = none)."""

    def num(v: float | None) -> float | None:
        return None if v is None or pd.isna(v) else float(v)

    return Column(metric, num(threshold), num(percent))


def summarize(
    rows: pd.DataFrame,
    columns: Sequence[Column],
    methods: Sequence[str],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Means and bootstrap intervals over items of each method × column.

    Args:
        rows: tidy rows with :data:`ROW_COLUMNS`.
        columns: the summary columns, in order (headed by their labels).
        methods: the method names, in order (rows of the tables).
        n_resamples, seed, level: of :func:`fame_utils.stats.bootstrap_interval` (the
            same seed for every cell, so the table is reproducible).

    Returns:
        ``(summary, intervals)``: methods × column labels, float means and
        :class:`~fame_utils.stats.Interval` objects (``None`` where a cell has no finite
        value). NaN values (none from the bundled metrics) are left out of both.
    """
    labels = [c.label for c in columns]
    summary = pd.DataFrame(np.nan, index=pd.Index(list(methods), name="method"), columns=labels)
    intervals = pd.DataFrame(None, index=summary.index, columns=labels, dtype=object)
    if len(rows):
        keys = ["method", "metric", "threshold", "percent"]
        for (method, metric, t, p), group in rows.groupby(keys, sort=False, dropna=False):
            label = column_of(metric, t, p).label
            if label not in labels or method not in summary.index:
                continue
            values = group["value"].to_numpy(np.float64)
            values = values[np.isfinite(values)]
            if values.size:
                iv = bootstrap_interval(values, n_resamples, seed, level)
                summary.loc[method, label] = iv.mean
                intervals.loc[method, label] = iv
    summary.columns.name = None
    intervals.columns.name = None
    return summary, intervals


def summary_with_intervals(summary: pd.DataFrame, intervals: pd.DataFrame) -> pd.DataFrame:
    """The summary with ``<col>_low`` and ``<col>_high`` after each column ``<col>``."""
    out = {}
    for c in summary.columns:
        out[c] = summary[c]
        out[f"{c}_low"] = intervals[c].map(lambda iv: np.nan if iv is None else iv.low)
        out[f"{c}_high"] = intervals[c].map(lambda iv: np.nan if iv is None else iv.high)
    frame = pd.DataFrame(out, index=summary.index)
    return frame.astype(float)


def interval_note(n_items: int, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> str:
    """One sentence saying what the brackets in a summary table are."""
    return (
        f"Brackets: 95 % percentile-bootstrap interval of the mean over the {n_items} items "
        f"({n_resamples} resamples, seed {seed})."
    )


def _format_cell(v: float, d: int, iv: Interval | None = None) -> str:
    if pd.isna(v):
        return "—"
    if iv is None:
        return f"{v:.{d}f}"
    return f"{v:.{d}f} [{iv.low:.{d}f}, {iv.high:.{d}f}]"


def _cells(
    summary: pd.DataFrame,
    decimals: Mapping[str, int] | None,
    intervals: pd.DataFrame | None,
) -> list[tuple[str, list[str]]]:
    decimals = decimals or {}
    out = []
    for method, row in summary.iterrows():
        cells = [
            _format_cell(
                row[c], decimals.get(c, 3), None if intervals is None else intervals.loc[method, c]
            )
            for c in summary.columns
        ]
        # the sanity baselines are reference rows, not methods (issue 23)
        label = f"{method} (sanity baseline)" if method in BASELINE_NAMES else str(method)
        out.append((label, cells))
    return out


def summary_markdown(
    summary: pd.DataFrame,
    decimals: Mapping[str, int] | None = None,
    intervals: pd.DataFrame | None = None,
    note: str | None = None,
) -> str:
    """A Markdown table of a methods × columns summary (no extra dependency); cells
    ``mean [low, high]`` when ``intervals`` (same shape, :class:`Interval` cells) are
    given; ``note`` is printed below the table."""
    head = ["Method", *summary.columns]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] + ["---:"] * len(summary.columns)) + "|",
    ]
    for method, cells in _cells(summary, decimals, intervals):
        lines.append("| " + " | ".join([method, *cells]) + " |")
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def _tex_escape(s: str) -> str:
    return re.sub(r"([%&_#$])", r"\\\1", s)


def summary_latex(
    summary: pd.DataFrame,
    decimals: Mapping[str, int] | None = None,
    intervals: pd.DataFrame | None = None,
    note: str | None = None,
) -> str:
    """A booktabs LaTeX tabular of a methods × columns summary (cells as in
    :func:`summary_markdown`; ``note`` becomes a LaTeX comment line after the tabular)."""
    cols = "l" + "r" * len(summary.columns)
    lines = [
        f"\\begin{{tabular}}{{{cols}}}",
        "\\toprule",
        " & ".join(["Method", *(_tex_escape(c) for c in summary.columns)]) + " \\\\",
        "\\midrule",
    ]
    for method, cells in _cells(summary, decimals, intervals):
        lines.append(" & ".join([_tex_escape(method), *cells]) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}"]
    if note:
        lines.append("% " + note)
    return "\n".join(lines) + "\n"
