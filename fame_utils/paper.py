"""The paper's published numbers (Tables 1 and 2) and the comparison of our ranking with them.

Zhang & Günther, "FAME: Feature Activation Map Explanation on Image Classification and
Face Recognition" (CVPR-W XAI4CV 2026):

- :func:`table1`: face verification, IResNet-101 (AdaFace), Deletion ↓ / Insertion ↑ as the
  area under accuracy-vs-P ×100 on AR-glass, SCface-medium and CFP-FP (Sec. 4.2, Table 1).
- :func:`table2`: ImageNet val, torchvision ResNet-50 IMAGENET1K_V2, IoU@t ×100 ↑ and the
  paper's "ROAD-Delete@p%" logit drop ↑ (Sec. 4.3, Table 2).

:func:`ranking_sentences` writes, from the numbers, how our ranking of the methods compares
with the paper's, claiming "A beats B" only when a paired bootstrap interval of the
difference excludes 0 (:func:`fame_utils.stats.paired_difference`). Sanity baselines
(:mod:`fame_utils.baselines.sanity`: maps without information) are reference rows there:
each method must beat the best of them, a column where none does cannot discriminate on
this data, and the paper's claim for it cannot be tested (issue 23).
:func:`above_baseline` gives each method's paired difference to one baseline (face
Delete/Insert: how far above ``Random``).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from .baselines.sanity import BASELINE_NAMES
from .stats import DEFAULT_RESAMPLES, paired_difference

__all__ = [
    "TABLE1_DATASETS",
    "table1",
    "table2",
    "paper_method",
    "beside_paper",
    "ranking_sentences",
    "above_baseline",
    "Comparison",
    "MIN_ITEMS",
    "saturated_columns",
    "table1_networks",
]

#: Fewest items for a "beats" claim: below it a percentile bootstrap's coverage is poor.
MIN_ITEMS = 10

#: Our bundled face protocol subsets -> the paper's Table 1 dataset they stand in for.
TABLE1_DATASETS = {"occlusion": "AR-glass", "resolution": "SCface-med", "pose": "CFP-FP"}

_METHODS1 = ["Grad-CAM", "Grad-CAM-EW", "CorrRISE", "FGGB", "FAME"]
_TABLE1 = {  # dataset: (Delete per method, Insert per method), in _METHODS1 order
    "AR-glass": ([72.6, 60.4, 58.4, 58.1, 56.1], [77.9, 90.1, 91.2, 83.7, 92.1]),
    "SCface-med": ([67.6, 59.1, 57.4, 58.5, 57.2], [69.9, 80.6, 80.4, 75.6, 82.0]),
    "CFP-FP": ([74.9, 59.3, 56.3, 58.7, 55.8], [85.2, 94.4, 96.1, 90.9, 96.2]),
}

# Table 2. The paper's "FullGradCAM" row is pytorch-grad-cam's FullGrad (our "FullGrad").
_METHODS2 = ["Grad-CAM", "Grad-CAM-EW", "HiResCAM", "FullGrad", "FAME"]
_TABLE2 = {
    "IoU@0.3": [38.8, 40.2, 38.8, 48.8, 46.1],
    "IoU@0.5": [23.4, 24.4, 23.4, 33.1, 29.1],
    "IoU@0.7": [10.2, 10.7, 10.2, 13.1, 10.8],
    "ROAD-Delete@10%": [0.267, 0.252, 0.267, 0.253, 0.425],
    "ROAD-Delete@30%": [1.035, 0.975, 1.035, 1.020, 1.150],
    "ROAD-Delete@50%": [2.256, 2.124, 2.256, 2.289, 2.167],
}


def table1() -> pd.DataFrame:
    """Table 1 of the paper: index = method, columns ``"<dataset> Delete"`` (lower is better)
    and ``"<dataset> Insert"`` (higher is better), AUC ×100, for the datasets of
    :data:`TABLE1_DATASETS`. A fresh copy each call."""
    cols = {
        f"{d} {k}": values
        for d, (delete, insert) in _TABLE1.items()
        for k, values in (("Delete", delete), ("Insert", insert))
    }
    frame = pd.DataFrame(cols, index=_METHODS1)
    frame.index.name = "method"
    return frame


def table2() -> pd.DataFrame:
    """Table 2 of the paper: index = method, columns = ``IoU@t`` (×100) and
    ``ROAD-Delete@p%`` (logit drop), all higher-is-better. A fresh copy each call."""
    frame = pd.DataFrame(_TABLE2, index=_METHODS2)
    frame.index.name = "method"
    return frame


def paper_method(name: str) -> str:
    """The paper's row for one of our method names: a recipe suffix is dropped
    (``"FAME (reference)"`` -> ``"FAME"``)."""
    return name.split(" (", 1)[0]


def beside_paper(
    ours: pd.DataFrame,
    paper: pd.DataFrame,
    *,
    intervals: pd.DataFrame | None = None,
    paper_columns: Mapping[str, str] | None = None,
    decimals: Mapping[str, int] | int = 1,
    to_paper: Callable[[str], str] = paper_method,
) -> pd.DataFrame:
    """Our summary beside the paper's numbers, as display strings.

    Args:
        ours: methods × our columns (means).
        paper: the published table (:func:`table1` / :func:`table2`).
        intervals: same shape as ``ours``, :class:`~fame_utils.stats.Interval` cells
            (``None`` cells allowed): ours shows ``mean [low, high]``.
        paper_columns: ``{our column: paper column}`` where the names differ.
        decimals: per our column, or one number for all.
        to_paper: our method name -> the paper's row (default drops a recipe suffix).

    Returns:
        methods × (``"<col> (ours)"``, ``"<col> (paper)"`` per column); "—" where the paper
        has no such method or column.
    """
    paper_columns = dict(paper_columns or {})
    out = {}
    for col in ours.columns:
        d = decimals if isinstance(decimals, int) else decimals.get(col, 3)
        cells = []
        for method, v in ours[col].items():
            iv = None if intervals is None else intervals.loc[method, col]
            cells.append(f"{v:.{d}f}" if iv is None else iv.format(d))
        out[f"{col} (ours)"] = cells
        key = paper_columns.get(col, col)
        published = []
        for method in ours.index:
            row = to_paper(str(method))
            has = key in paper.columns and row in paper.index
            published.append(f"{paper.loc[row, key]:.{d}f}" if has else "—")
        out[f"{col} (paper)"] = published
    return pd.DataFrame(out, index=ours.index)


def _number(v: float, decimals: int | None = None) -> str:
    """``decimals`` places (the table's, per column); without them table-like precision:
    one decimal from 10 up (IoU, AUC), three below (logit drops)."""
    if decimals is not None:
        return f"{v:.{decimals}f}"
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.3f}"


def _names_text(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"


def _column_sentence(
    label: str,
    values: pd.DataFrame,
    paper: pd.Series | None,
    lower: bool,
    to_paper: Callable[[str], str],
    n_resamples: int,
    seed: int,
    level: float,
    min_items: int,
    decimals: int | None = None,
) -> tuple[str, bool | None, bool, float]:
    """One column: (sentence, our top group holds the paper's best (None: no paper column),
    every method inseparable from our best, Kendall τ of the means vs the paper)."""
    from scipy.stats import kendalltau

    means = values.mean(axis=0).sort_values(ascending=lower, kind="stable")
    best = str(means.index[0])
    sign = -1.0 if lower else 1.0  # positive difference = the best is better
    beaten, tied = [], []
    for other in means.index[1:]:
        if len(values) < min_items:
            tied.append(str(other))
            continue
        d = paired_difference(
            sign * values[best].to_numpy(),
            sign * values[other].to_numpy(),
            n_resamples=n_resamples,
            seed=seed,
            level=level,
        )
        (beaten if d.low > 0 else tied).append(str(other))
    shown = [_number(v, decimals) for v in means.to_numpy()]
    order = f"{best} {shown[0]}"
    for m, v, prev in zip(means.index[1:], shown[1:], shown):  # "=": equal as printed
        order += f" {'=' if v == prev else '>'} {m} {v}"
    text = f"- **{label}** ({'lower' if lower else 'higher'} is better): ours {order}."
    if beaten:
        text += f" {best} beats {_names_text(beaten)}"
        text += f"; the data cannot separate it from {_names_text(tied)}." if tied else "."
    else:
        why = (
            f" ({len(values)} items; a claim needs {min_items})" if len(values) < min_items else ""
        )
        text += f" The data cannot separate {best} from any other method{why}."
    agree, tau = None, float("nan")
    if paper is not None:
        ours_in_paper = [m for m in means.index if to_paper(str(m)) in paper.index]
        shared = paper.reindex([to_paper(m) for m in ours_in_paper]).dropna()
        if len(shared):
            paper_best = str(shared.idxmin() if lower else shared.idxmax())
            top = {best, *tied}
            agree = any(to_paper(m) == paper_best for m in top)
            verdict = (
                "among the methods the data cannot separate from our best"
                if agree
                else f"beaten by {best} in ours"
            )
            published = _number(float(paper[paper_best]), decimals)
            text += f" The paper's best, {paper_best} ({published}), is {verdict}."
            if len(shared) >= 2:
                ours_means = means[[m for m in ours_in_paper if to_paper(m) in shared.index]]
                tau = float(kendalltau(ours_means.to_numpy(), shared.to_numpy()).statistic)
                if np.isfinite(tau):
                    text += f" Kendall τ of the means vs the paper: {tau:+.2f}."
    return text, agree, not beaten, tau


def ranking_sentences(
    per_item: Mapping[str, pd.DataFrame],
    paper: pd.DataFrame | None = None,
    *,
    lower_is_better: Collection[str] = (),
    paper_columns: Mapping[str, str] | None = None,
    to_paper: Callable[[str], str] = paper_method,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
    min_items: int = MIN_ITEMS,
    decimals: Mapping[str, int] | None = None,
    baselines: Collection[str] = BASELINE_NAMES,
) -> str:
    """Markdown sentences comparing our ranking of the methods with the paper's, per column.

    For each column the methods are ordered by their mean; the best one *beats* another only
    when the paired bootstrap interval of the per-item difference (``level``, seeded)
    excludes 0, otherwise the data cannot separate the two (always with fewer than
    ``min_items`` items, where a percentile bootstrap cannot be trusted). A column agrees with the paper
    when the paper's best method is among those the data cannot separate from our best.

    Args:
        per_item: ``{column: DataFrame}``, rows = items (images or pairs, the same items for
            every method), columns = our method names, values finite. A column's name is
            looked up in ``paper`` (after ``paper_columns``).
        paper: published table, index = the paper's method names, columns = column names;
            ``None`` (or a missing column) writes our ranking only.
        lower_is_better: columns where lower values are better (e.g. face Delete).
        paper_columns: ``{our column: paper column}`` where the names differ.
        to_paper: our method name -> the paper's (default drops a recipe suffix).
        n_resamples, seed, level: of :func:`fame_utils.stats.paired_difference`.
        min_items: fewest items for a "beats" claim.
        decimals: ``{column: decimal places}`` to print means with (the table's); methods
            whose means print the same are joined by "=". Missing: one decimal from 10 up,
            three below.
        baselines: names of sanity baselines (default :data:`BASELINE_NAMES`). Those
            present in a column are ranked apart from the methods; every method is then
            compared with the best of them by the same paired bootstrap, and a column where
            the best method does not beat it is flagged as not discriminating (its paper
            claim untestable on this data).

    Returns:
        A summary line, then one bullet per column.

    Raises:
        ValueError: a column with missing values or fewer than two methods.
    """
    lines, agreements, inseparable, taus = [], [], 0, []
    blind, testable, untestable, with_refs, ranked = [], [], [], 0, 0
    paper_columns = dict(paper_columns or {})
    for column, values in per_item.items():
        if values.isna().to_numpy().any():
            raise ValueError(
                f"column {column!r} has missing values: give every method a value on every item"
            )
        key = paper_columns.get(column, column)
        published = None if paper is None or key not in paper.columns else paper[key]
        label = column if key == column else f"{column} ({key})"
        refs = [m for m in values.columns if m in set(baselines)]
        real = values.drop(columns=refs)
        if real.shape[1] < (2 if not refs else 1):
            raise ValueError(f"column {column!r} needs at least two methods to rank")
        lower, digits = column in lower_is_better, (decimals or {}).get(column)
        boot = (n_resamples, seed, level, min_items)
        if real.shape[1] >= 2:
            text, agree, none_beaten, tau = _column_sentence(
                label, real, published, lower, to_paper, *boot, digits
            )
        else:
            text, agree, none_beaten, tau = f"- **{label}**:", None, None, float("nan")
        if refs:
            extra, discriminating = _baseline_sentence(real, values[refs], lower, *boot, digits)
            text += extra
            with_refs += 1
            if not discriminating:
                blind.append(label)
                if published is not None:
                    untestable.append(key)
            elif published is not None:
                testable.append(key)
        lines.append(text)
        if none_beaten is not None:  # a column with one method (and baselines) ranks nothing
            ranked += 1
            inseparable += none_beaten
        if agree is not None:
            agreements.append(agree)
        if np.isfinite(tau):
            taus.append(tau)
    n_items = sorted({len(v) for v in per_item.values()})
    items = "/".join(str(n) for n in n_items)
    head = f"Over {items} items ({100 * level:.0f}% paired bootstrap intervals of the differences):"
    if ranked:
        head += (
            f" in {ranked - inseparable} of {ranked} columns our best method beats at least "
            f"one other; in {inseparable} the data cannot separate any method from it."
        )
    if agreements:
        head += (
            f" The paper's best method is among our inseparable best in {sum(agreements)} of "
            f"{len(agreements)} columns"
        )
        head += f"; mean Kendall τ of the means {np.mean(taus):+.2f}." if taus else "."
    if with_refs:
        head += (
            f" In {len(blind)} of {with_refs} columns with sanity baselines no method beats the"
            " best baseline"
            + (f": {_names_text(blind)} cannot discriminate on this data." if blind else ".")
        )
    if testable or untestable:
        head += " Of the paper's columns, our data can test " + (
            f"{_names_text(testable)}" if testable else "none"
        )
        head += f" and cannot test {_names_text(untestable)}." if untestable else "."
    return "\n".join([head, *lines])


def _mark_baselines(frame: pd.DataFrame, baselines: Collection[str] = BASELINE_NAMES):
    """``frame`` with its sanity-baseline rows renamed ``"<name> (sanity baseline)"``."""
    return frame.rename(index={b: f"{b} (sanity baseline)" for b in baselines})


def _baseline_sentence(
    methods: pd.DataFrame,
    refs: pd.DataFrame,
    lower: bool,
    n_resamples: int,
    seed: int,
    level: float,
    min_items: int,
    decimals: int | None = None,
) -> tuple[str, bool]:
    """Each method against the best sanity baseline of a column: (sentence, whether the
    best method beats it, i.e. the column discriminates)."""
    ref_means = refs.mean(axis=0).sort_values(ascending=lower, kind="stable")
    ref = str(ref_means.index[0])
    sign = -1.0 if lower else 1.0
    means = methods.mean(axis=0).sort_values(ascending=lower, kind="stable")
    beats, not_beats = [], []
    for m in means.index:
        d = None
        if len(methods) >= min_items:
            d = paired_difference(
                sign * methods[m].to_numpy(),
                sign * refs[ref].to_numpy(),
                n_resamples=n_resamples,
                seed=seed,
                level=level,
            )
        (beats if d is not None and d.low > 0 else not_beats).append(str(m))
    text = f" Best sanity baseline: {ref} {_number(float(ref_means.iloc[0]), decimals)}."
    if beats:
        text += f" {_names_text(beats)} {'beats' if len(beats) == 1 else 'beat'} {ref}"
        text += (
            f"; {_names_text(not_beats)} {'does' if len(not_beats) == 1 else 'do'} not."
            if not_beats
            else "."
        )
    else:
        text += f" No method beats {ref}."
    discriminating = str(means.index[0]) in beats
    if not discriminating and len(methods) < min_items:
        text += (
            f" **Not discriminating on this data:** {len(methods)} items are too few to tell"
            f" any method from {ref} (a claim needs {min_items})."
        )
    elif not discriminating:
        text += (
            f" **Not discriminating on this data:** {ref} is inseparable from or better than"
            f" the best method, {means.index[0]}, so this column cannot rank the methods"
            " (nor test the paper's claim for it)."
        )
    return text, discriminating


def above_baseline(
    per_item: Mapping[str, pd.DataFrame],
    baseline: str = "Random",
    *,
    lower_is_better: Collection[str] = (),
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> pd.DataFrame:
    """How far each method is better than ``baseline``, per column (e.g. face Delete and
    Insert against ``Random``).

    Args:
        per_item: ``{column: items × methods}`` (as :attr:`Comparison.per_item`), one of
            the methods being ``baseline``.
        lower_is_better: columns where lower is better (face Delete): there the
            difference is baseline − method, so a positive value is always "better than
            the baseline".
        n_resamples, seed, level: of :func:`fame_utils.stats.paired_difference`.

    Returns:
        methods (without the baseline) × columns of :class:`~fame_utils.stats.Interval`
        cells: mean paired improvement over ``baseline`` with its bootstrap interval (the
        method is better than the baseline when ``low > 0``).
    """
    out = {}
    for column, values in per_item.items():
        if baseline not in values.columns:
            raise ValueError(f"column {column!r} has no {baseline!r} values to compare with")
        sign = -1.0 if column in lower_is_better else 1.0
        ref = values[baseline].to_numpy()
        out[column] = {
            m: paired_difference(
                sign * values[m].to_numpy(),
                sign * ref,
                n_resamples=n_resamples,
                seed=seed,
                level=level,
            )
            for m in values.columns
            if m != baseline
        }
    frame = pd.DataFrame(out)
    frame.index.name = "method"
    return frame


@dataclass
class Comparison:
    """Our summary (with intervals and per-item values) against a published table.

    Build it from experiment results with :meth:`from_results`; columns are named
    ``"<prefix> <label>"`` (e.g. ``"occlusion Delete"``) or just the summary label.

    Attributes:
        ours: methods × columns, means.
        intervals: same shape, :class:`~fame_utils.stats.Interval` cells.
        per_item: ``{column: items × methods}`` values behind each mean.
        paper: the published table (:func:`table1` / :func:`table2`).
        paper_columns: ``{our column: paper column}``.
        lower_is_better: our columns where lower is better.
        decimals: per our column.
    """

    ours: pd.DataFrame
    intervals: pd.DataFrame
    per_item: dict[str, pd.DataFrame]
    paper: pd.DataFrame
    paper_columns: dict[str, str] = field(default_factory=dict)
    lower_is_better: frozenset[str] = frozenset()
    decimals: dict[str, int] = field(default_factory=dict)

    @classmethod
    def from_results(
        cls,
        results: Mapping[str, Any],
        labels: Sequence[str],
        paper: pd.DataFrame,
        *,
        paper_prefixes: Mapping[str, str] | None = None,
        lower_is_better: Collection[str] = (),
    ) -> Comparison:
        """Compare summary columns ``labels`` (e.g. ``["Delete", "Insert"]``, ``"IoU@0.3"``) of
        ``{prefix: ExperimentResult}`` with ``paper``; prefix ``""`` for a single run.

        Args:
            paper_prefixes: ``{prefix: the paper's dataset}`` (e.g. :data:`TABLE1_DATASETS`):
                our ``"<prefix> <label>"`` is compared with the paper's ``"<dataset> <label>"``.
            lower_is_better: labels where lower is better (e.g. ``{"Delete"}``).
        """
        from .experiment.result import column_of

        ours, intervals, per_item, paper_columns, decimals, lower = {}, {}, {}, {}, {}, set()
        for prefix, result in results.items():
            rows = result.rows
            row_labels = [
                column_of(*k).label
                for k in rows[["metric", "threshold", "percent"]].itertuples(index=False)
            ]
            for label in labels:
                name = f"{prefix} {label}".strip()
                ours[name] = result.summary[label]
                intervals[name] = result.intervals[label]
                sub = rows[[lab == label for lab in row_labels]]
                table = sub.pivot(index="index", columns="method", values="value")
                per_item[name] = table[[m for m in result.methods if m in table.columns]]
                paper_columns[name] = (
                    f"{(paper_prefixes or {}).get(prefix, prefix)} {label}".strip()
                )
                decimals[name] = result.decimals.get(label, 3)
                if label in lower_is_better:
                    lower.add(name)
        return cls(
            pd.DataFrame(ours),
            pd.DataFrame(intervals),
            per_item,
            paper,
            paper_columns,
            frozenset(lower),
            decimals,
        )

    def table(self) -> pd.DataFrame:
        """Ours (``mean [low, high]``) beside the paper, as strings (:func:`beside_paper`);
        sanity baselines marked ``"<name> (sanity baseline)"``."""
        return _mark_baselines(
            beside_paper(
                self.ours,
                self.paper,
                intervals=self.intervals,
                paper_columns=self.paper_columns,
                decimals=self.decimals,
            )
        )

    @cached_property
    def sentences(self) -> str:
        """:func:`ranking_sentences` of the per-item values against the paper."""
        return ranking_sentences(
            self.per_item,
            self.paper,
            lower_is_better=self.lower_is_better,
            paper_columns=self.paper_columns,
            decimals=self.decimals,
        )

    def box_sizes(self, shares: Any, dataset: str = "this data") -> str:
        """Markdown beside the IoU columns: the box-area distribution of ``dataset``, mean
        IoU per box-size stratum (with counts) for every row, and :func:`ranking_sentences`
        of the small stratum alone (baselines included).

        Args:
            shares: (N,) box-area share of every item, in dataset order
                (:func:`fame_utils.box_area_shares`).
        """
        from .experiment.result import summary_markdown
        from .metrics.localization import box_area_table, iou_by_box_size, size_strata

        areas = box_area_table({dataset: shares}).iloc[0]
        counts = ", ".join(f"{k[2:]} {int(v)}" for k, v in areas.items() if k.startswith("n "))
        text = (
            f"Box area, share of the image, over the {int(areas['n'])} items of {dataset}: "
            f"mean {areas['mean %']:.1f} %, median {areas['median %']:.1f} %, quartiles "
            f"{areas['q25 %']:.1f}-{areas['q75 %']:.1f} %; strata (small under 1/3, medium "
            f"under 2/3, large) {counts}.\n\n"
        )
        iou = {c: v for c, v in self.per_item.items() if c.startswith("IoU@")}
        if not iou:
            return text
        by_size = iou_by_box_size(iou, shares)
        text += summary_markdown(by_size, dict.fromkeys(by_size.columns, 1))
        small = np.asarray(size_strata(shares)) == "small"
        picked = {f"{c} small": v[small[v.index.to_numpy()]] for c, v in iou.items()}
        if all(len(v) for v in picked.values()):
            decimals = dict.fromkeys(picked, 1)
            text += "\nSmall boxes only: " + ranking_sentences(picked, decimals=decimals) + "\n"
        return text

    def markdown(self, title: str, note: str, paper_title: str) -> str:
        """Ours (with intervals), the paper's table and the ranking sentences as Markdown."""
        from .experiment.result import summary_markdown

        paper_decimals = {p: self.decimals.get(o, 3) for o, p in self.paper_columns.items()}
        return (
            f"# {title}\n\n{note}\n\n"
            + summary_markdown(self.ours, self.decimals, self.intervals)
            + f"\n# {paper_title}\n\n"
            + summary_markdown(self.paper, paper_decimals)
            + f"\n# Rankings\n\n{self.sentences}\n"
        )


def saturated_columns(comparison: Comparison) -> dict[str, float]:
    """``{column: value}`` for the columns of ``comparison`` where every method has the same
    mean (at its display decimals): the metric cannot rank the methods there."""
    out = {}
    for col in comparison.ours.columns:
        rounded = comparison.ours[col].round(comparison.decimals.get(col, 3))
        if len(comparison.ours) > 1 and rounded.nunique() == 1:
            out[col] = float(rounded.iloc[0])
    return out


def table1_networks(
    results: Mapping[str, Mapping[str, Any]], *, title: str, note: str, paper_title: str
) -> str:
    """Table 1 across networks as Markdown: per method, one row per network (``mean [low,
    high]``, 95 % bootstrap interval over pairs) and the paper's IResNet-101 row under them;
    then, per network, a sentence for each column where every method ties
    (:func:`saturated_columns`) and the ranking sentences (:func:`ranking_sentences`).

    Args:
        results: ``{network: {subset: ExperimentResult}}`` of Delete/Insert runs, the same
            subsets (keys of :data:`TABLE1_DATASETS`, or the paper's names) per network.
        title, note: the heading and the sentence under it (the pairs per network are added).
        paper_title: how the paper's rows are labelled.
    """
    comparisons = {
        net: Comparison.from_results(
            by_subset,
            ["Delete", "Insert"],
            table1(),
            paper_prefixes=TABLE1_DATASETS,
            lower_is_better={"Delete"},
        )
        for net, by_subset in results.items()
    }
    counts = "; ".join(
        f"{net}: " + ", ".join(f"{s} {len(r.per_item('Delete'))}" for s, r in by_subset.items())
        for net, by_subset in results.items()
    )
    note = (
        "Face Deletion ↓ / Insertion ↑ (AUC ×100, 95 % bootstrap interval over pairs), "
        f"{note}; pairs: {counts}"
    )
    first = next(iter(comparisons.values()))
    cols = list(first.ours.columns)
    head = ["Method", "network", *cols]
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---", "---"] + ["---:"] * len(cols)) + "|",
    ]
    methods = list(dict.fromkeys(m for c in comparisons.values() for m in c.ours.index))
    shown_paper = set()
    for method in methods:
        for net, comp in comparisons.items():
            if method not in comp.ours.index:
                continue
            cells = []
            for c in cols:
                d, iv = comp.decimals.get(c, 3), comp.intervals.loc[method, c]
                cells.append(f"{comp.ours.loc[method, c]:.{d}f}" if iv is None else iv.format(d))
            label = f"{method} (sanity baseline)" if method in BASELINE_NAMES else method
            lines.append("| " + " | ".join([label, net, *cells]) + " |")
        row = paper_method(method)
        if row in first.paper.index and row not in shown_paper:
            shown_paper.add(row)
            cells = []
            for c in cols:
                key = first.paper_columns.get(c, c)
                v = first.paper.loc[row, key] if key in first.paper.columns else None
                cells.append("—" if v is None else f"{v:.{first.decimals.get(c, 3)}f}")
            lines.append("| " + " | ".join([row, f"*{paper_title}*", *cells]) + " |")
    out = [f"# {title}", "", note, "", *lines, ""]
    for net, comp in comparisons.items():
        out.append(f"## Rankings: {net}\n")
        for col, v in saturated_columns(comp).items():
            out.append(
                f"**{col} saturates**: every method scores {v:g}, so this column cannot rank "
                "them (the accuracy reaches the same floor for every map).\n"
            )
        out.append(comp.sentences + "\n")
        if "Random" in comp.ours.index:
            out.append(_above_random_markdown(comp))
    return "\n".join(out)


def _above_random_markdown(comp: Comparison) -> str:
    """How far each method is better than the ``Random`` map per column (issue 23), as a
    Markdown table of paired mean improvements with their bootstrap intervals."""
    gain = above_baseline(comp.per_item, "Random", lower_is_better=comp.lower_is_better)
    gain = gain.drop(index=[b for b in BASELINE_NAMES if b in gain.index])
    cols = list(gain.columns)
    lines = [
        "How far above `Random` (paired mean improvement over the Random map, 95 % bootstrap "
        "interval; positive is better than noise, on Delete the drop is Random's minus the "
        "method's):\n",
        "| Method | " + " | ".join(cols) + " |",
        "|---|" + "|".join(["---:"] * len(cols)) + "|",
    ]
    for method, row in gain.iterrows():
        cells = [row[c].format(comp.decimals.get(c, 3)) for c in cols]
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
