"""The paper's Table 1 (Sec. 4.2, faces, IResNet-101: Deletion ↓ / Insertion ↑ AUC ×100)
and Table 2 (Sec. 4.3, ImageNet val, ResNet-50: IoU@t ×100 ↑, ROAD-Delete@p% logit drop
↑) beside ours, ranked by :func:`~fame_utils.ranking.ranking_sentences`."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from .baselines.sanity import BASELINE_NAMES
from .experiment.result import column_of, summary_markdown
from .metrics.localization import box_area_table, iou_by_box_size, size_strata
from .ranking import above_baseline, ranking_sentences

#: Our bundled face protocol subsets -> the paper's Table 1 dataset they stand in for.
TABLE1_DATASETS = {"occlusion": "AR-glass", "resolution": "SCface-med", "pose": "CFP-FP"}

# the paper's tables as printed, one row per method; "FullGradCAM" in Table 2 is
# pytorch-grad-cam's FullGrad (our "FullGrad")
_TABLE1 = {
    "Grad-CAM": [72.6, 77.9, 67.6, 69.9, 74.9, 85.2],
    "Grad-CAM-EW": [60.4, 90.1, 59.1, 80.6, 59.3, 94.4],
    "CorrRISE": [58.4, 91.2, 57.4, 80.4, 56.3, 96.1],
    "FGGB": [58.1, 83.7, 58.5, 75.6, 58.7, 90.9],
    "FAME": [56.1, 92.1, 57.2, 82.0, 55.8, 96.2],
}
_TABLE2 = {
    "Grad-CAM": [38.8, 23.4, 10.2, 0.267, 1.035, 2.256],
    "Grad-CAM-EW": [40.2, 24.4, 10.7, 0.252, 0.975, 2.124],
    "HiResCAM": [38.8, 23.4, 10.2, 0.267, 1.035, 2.256],
    "FullGrad": [48.8, 33.1, 13.1, 0.253, 1.020, 2.289],
    "FAME": [46.1, 29.1, 10.8, 0.425, 1.150, 2.167],
}


def table1() -> pd.DataFrame:
    """Table 1 (a fresh copy): methods × ``"<dataset> Delete"`` / ``"<dataset> Insert"``."""
    columns = [f"{d} {k}" for d in TABLE1_DATASETS.values() for k in ("Delete", "Insert")]
    return pd.DataFrame.from_dict(_TABLE1, "index", columns=columns).rename_axis("method")


def table2() -> pd.DataFrame:
    """Table 2 (a fresh copy): methods × ``IoU@t`` (×100) and ``ROAD-Delete@p%``."""
    columns = [f"IoU@{t}" for t in (0.3, 0.5, 0.7)] + [f"ROAD-Delete@{p}%" for p in (10, 30, 50)]
    return pd.DataFrame.from_dict(_TABLE2, "index", columns=columns).rename_axis("method")


def paper_method(name: str) -> str:
    """The paper's row for one of our method names: ``"FAME (reference)"`` -> ``"FAME"``."""
    return name.split(" (", 1)[0]


def _label(method: str) -> str:
    """A sanity baseline's row label: ``"<name> (sanity baseline)"``."""
    return f"{method} (sanity baseline)" if method in BASELINE_NAMES else method


@dataclass
class Comparison:
    """Our summary against a published table (:meth:`from_results`): our means (methods ×
    columns), their :class:`~fame_utils.stats.Interval` cells, ``{column: items ×
    methods}`` values, the paper's table, ``{our column: paper column}``, our
    lower-is-better columns and decimals per column."""

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
        """Summary columns ``labels`` of ``{prefix: ExperimentResult}`` (``""`` for one run)
        against ``paper``: our ``"<prefix> <label>"`` is its ``"<paper_prefixes[prefix]>
        <label>"``; ``lower_is_better``: labels (e.g. ``{"Delete"}``)."""
        prefixes = paper_prefixes or {}
        names = {(p, label): f"{p} {label}".strip() for p in results for label in labels}
        per_item = {}
        for prefix, result in results.items():
            keys = result.rows[["metric", "threshold", "percent"]].itertuples(index=False)
            row_labels = np.array([column_of(*k).label for k in keys])
            for label in labels:
                sub = result.rows[row_labels == label]
                table = sub.pivot(index="index", columns="method", values="value")
                per_item[names[prefix, label]] = table[
                    [m for m in result.methods if m in table.columns]
                ]
        return cls(
            pd.DataFrame({n: results[p].summary[lab] for (p, lab), n in names.items()}),
            pd.DataFrame({n: results[p].intervals[lab] for (p, lab), n in names.items()}),
            per_item,
            paper,
            {n: f"{prefixes.get(p, p)} {lab}".strip() for (p, lab), n in names.items()},
            frozenset(n for (_, lab), n in names.items() if lab in lower_is_better),
            {n: results[p].decimals.get(lab, 3) for (p, lab), n in names.items()},
        )

    def _ours(self, method: str, column: str) -> str:
        """Our cell: ``mean [low, high]`` (the mean alone without an interval)."""
        d, iv = self.decimals.get(column, 3), self.intervals.loc[method, column]
        return f"{self.ours.loc[method, column]:.{d}f}" if iv is None else iv.format(d)

    def _paper(self, method: str, column: str) -> str:
        """The paper's cell for our ``method`` and ``column``; "—" where it has none."""
        key, row = self.paper_columns.get(column, column), paper_method(str(method))
        if key not in self.paper.columns or row not in self.paper.index:
            return "—"
        return f"{self.paper.loc[row, key]:.{self.decimals.get(column, 3)}f}"

    def table(self) -> pd.DataFrame:
        """Methods × (``"<col> (ours)"``, ``"<col> (paper)"``) display strings, ours as
        ``mean [low, high]``; sanity baselines marked ``"<name> (sanity baseline)"``."""
        out = {}
        for c in self.ours.columns:
            out[f"{c} (ours)"] = [self._ours(m, c) for m in self.ours.index]
            out[f"{c} (paper)"] = [self._paper(m, c) for m in self.ours.index]
        return pd.DataFrame(out, index=self.ours.index).rename(index=_label)

    @cached_property
    def sentences(self) -> str:
        """:func:`~fame_utils.ranking.ranking_sentences` of ours against the paper."""
        return ranking_sentences(
            self.per_item,
            self.paper,
            lower_is_better=self.lower_is_better,
            paper_columns=self.paper_columns,
            decimals=self.decimals,
        )

    def box_sizes(self, shares: Any, dataset: str = "this data") -> str:
        """Markdown beside the IoU columns: the box-area distribution of ``dataset``
        (``shares``: (N,) per item, :func:`fame_utils.box_area_shares`), the mean IoU per
        box-size stratum and the ranking sentences of the small boxes."""
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
        paper_decimals = {p: self.decimals.get(o, 3) for o, p in self.paper_columns.items()}
        return (
            f"# {title}\n\n{note}\n\n"
            + summary_markdown(self.ours, self.decimals, self.intervals)
            + f"\n# {paper_title}\n\n"
            + summary_markdown(self.paper, paper_decimals)
            + f"\n# Rankings\n\n{self.sentences}\n"
        )


def table1_networks(
    results: Mapping[str, Mapping[str, Any]], *, title: str, note: str, paper_title: str
) -> str:
    """Table 1 as Markdown from ``{network: {subset: ExperimentResult}}``: per method a row
    per network and the paper's; then per network the saturated columns, the ranking
    sentences and how far each method is above ``Random``."""
    face = {"paper_prefixes": TABLE1_DATASETS, "lower_is_better": {"Delete"}}
    comparisons = {
        net: Comparison.from_results(runs, ["Delete", "Insert"], table1(), **face)
        for net, runs in results.items()
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
    rows, shown_paper = [["Method", "network", *cols]], set()
    for method in dict.fromkeys(m for c in comparisons.values() for m in c.ours.index):
        for net, comp in comparisons.items():
            if method in comp.ours.index:
                rows.append([_label(method), net, *(comp._ours(method, c) for c in cols)])
        row = paper_method(method)
        if row in first.paper.index and row not in shown_paper:
            shown_paper.add(row)
            rows.append([row, f"*{paper_title}*", *(first._paper(method, c) for c in cols)])
    table = ["| " + " | ".join(r) + " |" for r in rows]
    table.insert(1, "|" + "|".join(["---"] * 2 + ["---:"] * len(cols)) + "|")
    out = [f"# {title}", "", note, "", *table, ""]
    for net, comp in comparisons.items():
        out.append(f"## Rankings: {net}\n")
        for col in comp.ours.columns:  # every mean the same at its decimals
            rounded = comp.ours[col].round(comp.decimals.get(col, 3))
            if len(comp.ours) > 1 and rounded.nunique() == 1:
                out.append(
                    f"**{col} saturates**: every method scores {float(rounded.iloc[0]):g}, so "
                    "this column cannot rank them (the accuracy reaches the same floor for "
                    "every map).\n"
                )
        out.append(comp.sentences + "\n")
        if "Random" in comp.ours.index:
            gain = above_baseline(comp.per_item, "Random", lower_is_better=comp.lower_is_better)
            gain = gain.drop(index=[b for b in BASELINE_NAMES if b in gain.index])
            table = summary_markdown(gain.map(lambda iv: iv.mean), comp.decimals, gain)
            intro = (
                "How far above `Random` (paired mean improvement over the Random map, 95 % "
                "bootstrap interval; positive is better than noise, on Delete the drop is "
                "Random's minus the method's):\n"
            )
            out.append(intro + "\n" + table)
    return "\n".join(out)
