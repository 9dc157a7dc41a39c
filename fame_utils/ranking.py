"""Rankings of methods that claim only what the data supports: "A beats B" only when the
95 % paired bootstrap interval of the per-item difference excludes 0
(:func:`fame_utils.stats.paired_difference`, seed 0), never with fewer than
:data:`MIN_ITEMS` items; sanity baselines are reference rows every method must beat."""

from __future__ import annotations

from collections.abc import Collection, Mapping

import numpy as np
import pandas as pd

from .baselines.sanity import BASELINE_NAMES
from .stats import paired_difference

#: Fewest items for a "beats" claim: below it a percentile bootstrap's coverage is poor.
MIN_ITEMS = 10


def _number(v: float, decimals: int | None = None) -> str:
    """``decimals`` places; without them one decimal from 10 up, three below."""
    if decimals is not None:
        return f"{v:.{decimals}f}"
    return f"{v:.1f}" if abs(v) >= 10 else f"{v:.3f}"


def _names_text(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + f" and {names[-1]}"


def _beats(a: pd.Series, b: pd.Series, sign: float) -> bool:
    """Whether ``sign · a`` is above ``sign · b`` (see the module docstring)."""
    if len(a) < MIN_ITEMS:
        return False
    return paired_difference(sign * a.to_numpy(), sign * b.to_numpy()).low > 0


def _ranked(values: pd.DataFrame, lower: bool) -> pd.Series:
    """The columns' means, best first (ties in column order)."""
    return values.mean(axis=0).sort_values(ascending=lower, kind="stable")


def _column_sentence(
    label: str,
    values: pd.DataFrame,
    paper: pd.Series | None,
    lower: bool,
    decimals: int | None,
) -> tuple[str, bool | None, bool, float]:
    """One column: (sentence, our top group holds the paper's best (None: no paper column),
    every method inseparable from our best, Kendall τ of the means vs the paper)."""
    from scipy.stats import kendalltau

    from .paper import paper_method  # paper imports this module

    means = _ranked(values, lower)
    best = str(means.index[0])
    sign = -1.0 if lower else 1.0  # positive difference = the best is better
    beaten, tied = [], []
    for other in means.index[1:]:
        win = _beats(values[best], values[other], sign)
        (beaten if win else tied).append(str(other))
    shown = [_number(v, decimals) for v in means.to_numpy()]
    order = f"{best} {shown[0]}"
    for m, v, prev in zip(means.index[1:], shown[1:], shown):  # "=": equal as printed
        order += f" {'=' if v == prev else '>'} {m} {v}"
    text = f"- **{label}** ({'lower' if lower else 'higher'} is better): ours {order}."
    if beaten:
        text += f" {best} beats {_names_text(beaten)}"
        text += f"; the data cannot separate it from {_names_text(tied)}." if tied else "."
    else:
        few = len(values) < MIN_ITEMS
        why = f" ({len(values)} items; a claim needs {MIN_ITEMS})" if few else ""
        text += f" The data cannot separate {best} from any other method{why}."
    agree, tau = None, float("nan")
    if paper is not None:
        ours_in_paper = [m for m in means.index if paper_method(str(m)) in paper.index]
        shared = paper.reindex([paper_method(m) for m in ours_in_paper]).dropna()
        if len(shared):
            paper_best = str(shared.idxmin() if lower else shared.idxmax())
            agree = any(paper_method(m) == paper_best for m in {best, *tied})
            verdict = "among the methods the data cannot separate from our best"
            verdict = verdict if agree else f"beaten by {best} in ours"
            published = _number(float(paper[paper_best]), decimals)
            text += f" The paper's best, {paper_best} ({published}), is {verdict}."
            if len(shared) >= 2:
                ours_means = means[[m for m in ours_in_paper if paper_method(m) in shared.index]]
                tau = float(kendalltau(ours_means.to_numpy(), shared.to_numpy()).statistic)
                if np.isfinite(tau):
                    text += f" Kendall τ of the means vs the paper: {tau:+.2f}."
    return text, agree, not beaten, tau


def _baseline_sentence(
    methods: pd.DataFrame,
    refs: pd.DataFrame,
    lower: bool,
    decimals: int | None,
) -> tuple[str, bool]:
    """Each method against the best sanity baseline of a column: (sentence, whether the
    best method beats it, i.e. the column discriminates)."""
    ref_means, means = _ranked(refs, lower), _ranked(methods, lower)
    ref = str(ref_means.index[0])
    sign = -1.0 if lower else 1.0
    beats, not_beats = [], []
    for m in means.index:
        win = _beats(methods[m], refs[ref], sign)
        (beats if win else not_beats).append(str(m))
    text = f" Best sanity baseline: {ref} {_number(float(ref_means.iloc[0]), decimals)}."
    if not beats:
        text += f" No method beats {ref}."
    else:
        text += f" {_names_text(beats)} {'beats' if len(beats) == 1 else 'beat'} {ref}"
        verb = "does" if len(not_beats) == 1 else "do"
        text += f"; {_names_text(not_beats)} {verb} not." if not_beats else "."
    discriminating = str(means.index[0]) in beats
    if not discriminating and len(methods) < MIN_ITEMS:
        text += (
            f" **Not discriminating on this data:** {len(methods)} items are too few to tell"
            f" any method from {ref} (a claim needs {MIN_ITEMS})."
        )
    elif not discriminating:
        text += (
            f" **Not discriminating on this data:** {ref} is inseparable from or better than"
            f" the best method, {means.index[0]}, so this column cannot rank the methods"
            " (nor test the paper's claim for it)."
        )
    return text, discriminating


def ranking_sentences(
    per_item: Mapping[str, pd.DataFrame],
    paper: pd.DataFrame | None = None,
    *,
    lower_is_better: Collection[str] = (),
    paper_columns: Mapping[str, str] | None = None,
    decimals: Mapping[str, int] | None = None,
) -> str:
    """Markdown: a summary line, then per column our ranking of the methods by mean against
    the paper's; sanity baselines ranked apart, a column whose best method does not beat
    them flagged as not discriminating. ``per_item``: ``{column: items × methods}`` of
    finite values, looked up in ``paper`` after ``paper_columns``; ``decimals``: ``{column:
    places}`` of the printed means (default: 1 from 10 up, else 3), equal ones joined by "=".

    Raises:
        ValueError: a column with missing values or fewer than two methods.
    """
    lines, separated, agreements, taus, discriminates, tests = [], [], [], [], [], []
    paper_columns = dict(paper_columns or {})
    for column, values in per_item.items():
        if values.isna().to_numpy().any():
            raise ValueError(
                f"column {column!r} has missing values: give every method a value on every item"
            )
        key = paper_columns.get(column, column)
        published = None if paper is None or key not in paper.columns else paper[key]
        label = column if key == column else f"{column} ({key})"
        refs = [m for m in values.columns if m in BASELINE_NAMES]
        real = values.drop(columns=refs)
        if real.shape[1] < (2 if not refs else 1):
            raise ValueError(f"column {column!r} needs at least two methods to rank")
        lower, digits = column in lower_is_better, (decimals or {}).get(column)
        text = f"- **{label}**:"
        if real.shape[1] >= 2:
            text, agree, none_beaten, tau = _column_sentence(label, real, published, lower, digits)
            separated.append(not none_beaten)
            agreements += [] if agree is None else [agree]
            taus += [tau] if np.isfinite(tau) else []
        if refs:
            extra, ok = _baseline_sentence(real, values[refs], lower, digits)
            text += extra
            discriminates.append((label, ok))
            tests += [] if published is None else [(key, ok)]
        lines.append(text)
    items = "/".join(str(n) for n in sorted({len(v) for v in per_item.values()}))
    head = f"Over {items} items (95% paired bootstrap intervals of the differences):"
    if separated:
        head += (
            f" in {sum(separated)} of {len(separated)} columns our best method beats at least "
            f"one other; in {separated.count(False)} the data cannot separate any method from it."
        )
    if agreements:
        head += (
            f" The paper's best method is among our inseparable best in {sum(agreements)} of "
            f"{len(agreements)} columns"
        )
        head += f"; mean Kendall τ of the means {np.mean(taus):+.2f}." if taus else "."
    blind = [label for label, ok in discriminates if not ok]
    testable, untestable = ([k for k, ok in tests if ok is want] for want in (True, False))
    if discriminates:
        head += (
            f" In {len(blind)} of {len(discriminates)} columns with sanity baselines no method"
            " beats the best baseline"
            + (f": {_names_text(blind)} cannot discriminate on this data." if blind else ".")
        )
    if tests:
        head += " Of the paper's columns, our data can test " + (
            f"{_names_text(testable)}" if testable else "none"
        )
        head += f" and cannot test {_names_text(untestable)}." if untestable else "."
    return "\n".join([head, *lines])


def above_baseline(
    per_item: Mapping[str, pd.DataFrame],
    baseline: str = "Random",
    *,
    lower_is_better: Collection[str] = (),
) -> pd.DataFrame:
    """Methods × columns :class:`~fame_utils.stats.Interval`: each method's paired mean
    improvement over ``baseline`` per ``{column: items × methods}`` (positive is better).

    Raises:
        ValueError: a column without ``baseline``.
    """
    out = {}
    for column, values in per_item.items():
        if baseline not in values.columns:
            raise ValueError(f"column {column!r} has no {baseline!r} values to compare with")
        sign = -1.0 if column in lower_is_better else 1.0
        ref = sign * values[baseline].to_numpy()
        out[column] = {
            m: paired_difference(sign * values[m].to_numpy(), ref)
            for m in values.columns
            if m != baseline
        }
    return pd.DataFrame(out).rename_axis("method")
