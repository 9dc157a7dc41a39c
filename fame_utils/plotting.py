"""The notebooks' figures: each ``draw_*`` returns a new ``plt.Figure``; images are
(3, H, W) in [0, 1] RGB and maps (H, W) in [0, 1], on any device."""

from __future__ import annotations

import dataclasses
import itertools
import zlib
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
from matplotlib.colors import to_rgb
from torch import Tensor

from .baselines.sanity import BASELINE_NAMES
from .postprocess import kernel_size_for

# one colour per method name in every figure (bars, curves); the sanity baselines are grey
METHOD_COLOURS = {
    "FAME": "tab:red",
    "FAME (paper)": "tab:orange",
    "FAME (reference)": "tab:brown",
    "Grad-CAM": "tab:blue",
    "Grad-CAM-EW": "tab:cyan",
    "HiResCAM": "tab:purple",
    "FullGrad": "tab:green",
    "CorrRISE": "tab:olive",
    "FGGB": "tab:pink",
    "CAM": "navy",
}


def method_colour(name: str):
    """:data:`METHOD_COLOURS` of ``name`` or of its method for a recipe variant (darker
    for ``reference``); else a tab20b colour fixed by the name's CRC-32."""
    if name in METHOD_COLOURS:
        return METHOD_COLOURS[name]
    base, _, variant = name.partition(" (")
    if base in METHOD_COLOURS:
        rgb = np.asarray(to_rgb(METHOD_COLOURS[base]))
        return tuple(rgb * 0.6) if variant.startswith("reference") else tuple(rgb)
    return plt.cm.tab20b.colors[zlib.crc32(name.encode()) % 20]


def to_numpy_image(image: Tensor) -> np.ndarray:
    """(3, H, W) [0, 1] tensor on any device -> (H, W, 3) float numpy array."""
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an image of shape (3, H, W), got {tuple(image.shape)}")
    return image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def overlay(
    ax: plt.Axes,
    image: Tensor | None,
    attribution: Tensor | None = None,
    *,
    cmap: str = "jet",
    title: str | None = None,
) -> plt.Axes:
    """Draw an image (3, H, W) with an attribution map (H, W) in [0, 1] on top (either
    may be ``None``), on any device; raises ``ValueError`` for other shapes."""
    if image is not None:
        ax.imshow(to_numpy_image(image))
    if attribution is not None:
        if attribution.ndim != 2:
            raise ValueError(f"expected a map of shape (H, W), got {tuple(attribution.shape)}")
        m = attribution.detach().float().cpu().numpy()
        ax.imshow(m, cmap=cmap, vmin=0, vmax=1, alpha=0.5 if image is not None else 1.0)
    if title:
        ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def show_maps(images: Tensor, maps: Tensor, titles: Sequence[str] | None = None) -> plt.Figure:
    """One panel per image: the image (B, 3, H, W) in [0, 1] with its map (B, H, W) in
    [0, 1] on top, and a shared colourbar (the quick start's one plotting call)."""
    n = images.shape[0]
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n + 0.6, 2.6), squeeze=False)
    for i, ax in enumerate(axes[0]):
        overlay(ax, images[i], maps[i], title=None if titles is None else titles[i])
    fig.colorbar(plt.cm.ScalarMappable(cmap="jet"), ax=axes[0].tolist(), fraction=0.03)
    return fig


def draw_box(ax: plt.Axes, box: Sequence[float], color: str = "white", lw: float = 1.5) -> None:
    """Draw an (x0, y0, x1, y1) box in pixel coordinates."""
    x0, y0, x1, y1 = (float(v) for v in box)
    rect = plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, ec=color, lw=lw)
    ax.add_patch(rect)


def _map_rows(
    cells: list[list[tuple]],
    titles: Sequence[str],
    row_labels: Sequence[str],
    figsize: tuple[float, float],
    title: str | None,
    masks: Tensor | None = None,
    title_size: int = 9,
) -> plt.Figure:
    """A grid of :func:`overlay` panels ``cells[r][c] = (image, map[, cmap])`` (either may
    be None); all-zero maps labelled "empty map", ``masks[r]`` outlined on map-less cells."""
    fig, axes = plt.subplots(len(cells), len(titles), figsize=figsize, squeeze=False)
    for (r, c), ax in np.ndenumerate(axes):
        image, m, *cmap = cells[r][c]
        overlay(ax, image, m, cmap=cmap[0] if cmap else "jet", title=None if r else titles[c])
        if m is not None and float(m.max()) == 0:  # e.g. FAME's e₊ of a pair already below ε
            box = {"facecolor": "black", "alpha": 0.6}
            kw = {"ha": "center", "va": "center", "color": "white", "fontsize": 8, "bbox": box}
            ax.text(0.5, 0.5, "empty map", transform=ax.transAxes, **kw)
        elif m is None and masks is not None:
            outline = masks[r].detach().float().cpu().numpy()
            ax.contour(outline, levels=[0.5], colors="white", linewidths=0.8)
        axes[r, 0].set_ylabel(row_labels[r], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=title_size)
    fig.tight_layout()
    return fig


def draw_blur_figure(
    images: Tensor,
    result,
    row_labels: Sequence[str],
    *,
    sigmas: Sequence[float],
    chosen: tuple[int, float] = (49, 7.7),
    title: str | None = None,
) -> plt.Figure:
    """Fig. 1: per image (N, 3, H, W) in [0, 1] a row: the image, the unblurred Δx
    (clipped at its 99.5th percentile), FAME maps at each σ in ``sigmas`` (kernel ±3σ) and
    at the paper's (kernel, σ) = ``chosen``, all re-blurred from ``result`` (the
    :class:`~fame_utils.core.FameResult` of the N images); ``row_labels``: N labels."""
    settings = [(kernel_size_for(s), s, "") for s in sigmas]
    settings.append((*chosen, f", kernel {chosen[0]}"))
    titles = ["image", "Δx, no blur (clipped)"]
    titles += [f"({chr(97 + i)}) σ = {s:g}{note}" for i, (_, s, note) in enumerate(settings)]
    maps = [result.maps(sigma=s, kernel_size=k) for k, s, _ in settings]
    raw = result.maps(sigma=0)
    clip = torch.quantile(raw.flatten(1).float(), 0.995, dim=1).clamp_min(1e-12)
    raw = (raw / clip[:, None, None]).clamp(max=1)
    cells = [
        [(x, None), (None, raw[r], "gray"), *((x, m[r]) for m in maps)]
        for r, x in enumerate(images)
    ]
    figsize = (2.3 * len(titles), 2.4 * len(images))
    return _map_rows(cells, titles, row_labels, figsize, title, title_size=10)


#: Fig. 3's map columns: (method name, ``Attribution`` field, column title).
FACE_COLUMNS = (
    ("Grad-CAM", "positive", "Grad-CAM e₊"),
    ("Grad-CAM-EW", "positive", "Grad-CAM-EW e₊"),
    ("CorrRISE", "positive", "CorrRISE e₊"),
    ("CorrRISE", "negative", "CorrRISE e₋"),
    ("FGGB", "positive", "FGGB e₊"),
    ("FGGB", "negative", "FGGB e₋"),
    ("FAME", "positive", "FAME e₊"),
    ("FAME", "negative", "FAME e₋"),
)


def draw_face_rows(
    panels: Mapping[str, tuple[Tensor, Tensor, Mapping[str, object], Sequence[str]]],
    *,
    columns: Sequence[tuple[str, str, str]] = FACE_COLUMNS,
    title: str | None = None,
) -> plt.Figure:
    """Fig. 3: a row per pair of each ``{network: (gallery, probe, {method name:
    Attribution}, row labels)}`` (N pairs (N, 3, H, W) in [0, 1]): gallery, probe, then the
    probe's maps per ``columns``; rows labelled ``"<network>\\n<label>"``."""
    cells, labels = [], []
    for net, (gallery, probe, attributions, row_labels) in panels.items():
        for i, label in enumerate(row_labels):
            maps = [getattr(attributions[name], part)[i] for name, part, _ in columns]
            cells.append([(gallery[i], None), (probe[i], None), *((probe[i], m) for m in maps)])
            labels.append(f"{net}\n{label}" if net else label)
    titles = ["gallery", "probe", *(t for _, _, t in columns)]
    return _map_rows(cells, titles, labels, (1.7 * len(titles), 1.7 * len(cells) + 0.4), title)


def draw_method_rows(
    images: Tensor,
    attributions: Mapping[str, object],
    row_labels: Sequence[str],
    *,
    masks: Tensor | None = None,
    title: str | None = None,
) -> plt.Figure:
    """One row per image (N, 3, H, W) in [0, 1]: the image (with the outline of its
    (N, H, W) bool ``masks`` when given), then each ``{method name: Attribution}``'s
    positive map (N, H, W) over it."""
    cells = [
        [(images[r], None), *((images[r], a.positive[r]) for a in attributions.values())]
        for r in range(len(row_labels))
    ]
    size = (1.5 * (len(attributions) + 1), 1.5 * len(cells) + 0.4)
    return _map_rows(cells, ["input", *attributions], row_labels, size, title, masks)


def draw_face_curves(
    results: Mapping[str, Mapping[str, object]],
    methods: Sequence[str] | None = None,
    *,
    genuine: Mapping[str, Mapping[str, Tensor]] | None = None,
    thresholds: Mapping[str, Mapping[str, float]] | None = None,
    title: str | None = None,
) -> plt.Figure:
    """Fig. 4: accuracy (%) at θ vs P % of the probe's e₊ deleted/inserted, from ``{network:
    {subset: ExperimentResult}}``: rows network × (Delete, Insert), columns subsets, a line
    per method (baselines grey, dashed), AUCs in a legend per row. With ``genuine``
    (``{network: {subset: (N,) bool}}``) and ``thresholds`` (θ per network and subset): two
    rows more per network, the genuine pairs' mean cosine similarity (θ dotted)."""
    subsets = list(next(iter(results.values())))
    parts = ["acc"] if genuine is None else ["acc", "sim"]
    rows = [(n, p, k) for n in results for p in parts for k in ("Delete", "Insert")]
    dashes = zip(BASELINE_NAMES, itertools.cycle(["--", "-.", ":"]))  # a pattern per baseline
    grey = {b: {"color": "0.45", "ls": ls, "marker": None} for b, ls in dashes}
    figsize = (2.4 * len(subsets) + 3.6, 2.4 * len(rows))
    fig, axes = plt.subplots(len(rows), len(subsets), squeeze=False, figsize=figsize)
    for r, (net, part, kind) in enumerate(rows):
        for c, s in enumerate(subsets):
            res, ax, sim = results[net][s], axes[r, c], part == "sim"
            if sim:  # the genuine pairs only
                keep = genuine[net][s].cpu().numpy()[res.rows["index"].to_numpy()]
                res = dataclasses.replace(res, rows=res.rows[keep])
            table = res.curve(f"{kind}-{part}")
            names = list(methods or table.columns)
            for name in names:
                style = grey.get(name) or {"marker": "o", "color": method_colour(name)}
                ax.plot(table.index, table[name], ms=2, lw=1, label=name, **style)
            if sim:
                ax.axhline(thresholds[net][s], color="gray", ls=":", lw=1)
            ax.set_title(f"{net} · {s}: {kind}", fontsize=8)
            ax.set_xlabel("P (%)", fontsize=7)
            ax.set_ylabel("accuracy (%)" if part == "acc" else "genuine cos", fontsize=7)
            ax.tick_params(labelsize=6)
        if part == "sim":
            continue
        aucs = [
            " / ".join(f"{results[net][t].summary.loc[n, kind]:.1f}" for t in subsets)
            for n in names
        ]
        axes[r, -1].legend(
            axes[r, -1].lines[: len(names)],
            [f"{n}: {a}" for n, a in zip(names, aucs)],
            title=f"{net} {kind} AUC ×100 ({' / '.join(subsets)})",
            title_fontsize=6,
            fontsize=6,
            loc="center left",
            bbox_to_anchor=(1.02, 0.5),
            frameon=False,
        )
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def draw_pair_removal(
    pairs: Mapping[str, object],
    results: Mapping[str, object],
    subset: str,
    index: int,
    percent: float,
    methods: Sequence[str],
) -> plt.Figure:
    """Pair ``index`` (clamped) of ``pairs[subset]`` (``FacePairs``) under Delete/Insert at
    one of the run's ``percent``: per method (``()``: all) the gallery, the probe, its e₊,
    the probe without and with only its top-P %, titled with s at P and ✓/✗ at θ."""
    from .metrics.road import removal_masks

    pairs, result = pairs[subset], results[subset]
    index = min(int(index), len(pairs) - 1)
    methods = list(methods) or result.methods
    rows = result.rows[result.rows["index"] == index].fillna({"percent": -1.0})
    value = rows.set_index(["method", "metric", "percent"])["value"]  # AUCs at percent -1
    gallery, probe = pairs.gallery[index], pairs.probe[index]
    kind_of = "genuine" if bool(pairs.genuine[index]) else "impostor"
    fig, axes = plt.subplots(len(methods), 5, figsize=(10, 2.1 * len(methods)), squeeze=False)
    for r, name in enumerate(methods):
        m = result.maps(name).positive[index].to(probe.device)
        top = removal_masks(m[None], [percent])[0, 0]  # exact count, as the metric
        text = {}
        for kind in ("Delete", "Insert"):
            ok = "✓" if value[name, f"{kind}-acc", percent] > 50 else "✗"
            sim = value[name, f"{kind}-sim", percent]
            text[kind] = f"{kind.lower()} {percent:g}%: s={sim:.3f} {ok}"
        overlay(axes[r, 0], gallery, title="gallery")
        overlay(axes[r, 1], probe, title=f"probe ({kind_of})")
        overlay(axes[r, 2], probe, m, title=f"{name} e₊")
        overlay(axes[r, 3], probe * ~top, title=text["Delete"])
        overlay(axes[r, 4], probe * top, title=text["Insert"])
        aucs = f"Del {value[name, 'Delete', -1]:.0f} / Ins {value[name, 'Insert', -1]:.0f}"
        axes[r, 0].set_ylabel(f"{name}\n{aucs}", fontsize=8)
    fig.suptitle(f"{subset} pair {index}: θ = {result.threshold:.3f}", fontsize=9)
    fig.tight_layout()
    return fig


def table2_groups(columns: Sequence[str]) -> dict[str, list[str]]:
    """Fig. 5's panels for Table 2 summary columns: IoU@t, ROAD-Delete (zero removal) and
    ROAD-NL-Delete columns under their y labels (empty groups left out)."""
    groups = {
        "IoU ×100": [c for c in columns if c.startswith("IoU@")],
        "logit drop": [c for c in columns if c.startswith("ROAD-Delete")],
        "logit drop (noisy-linear)": [c for c in columns if c.startswith("ROAD-NL")],
    }
    return {k: v for k, v in groups.items() if v}


def draw_bars(
    tables: Mapping[str, pd.DataFrame],
    groups: Mapping[str, Sequence[str]],
) -> plt.Figure:
    """Fig. 5: bars in each method's :func:`method_colour`, a row per ``{title: methods ×
    columns}`` table, a panel per ``{y label: columns}`` group with values (empty ones
    skipped); sanity baselines are a grey band from lowest to highest (dashed)."""
    panels = {}  # {row: [(group, columns with a value)]}
    for who, table in tables.items():
        have = {
            g: [k for k in cols if k in table and table[k].notna().any()]
            for g, cols in groups.items()
        }
        if row := [(g, cols) for g, cols in have.items() if cols]:
            panels[who] = row
    nrows, ncols = max(len(panels), 1), max((len(p) for p in panels.values()), default=1)
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.1 * 3.2 * ncols, 3.2 * nrows), squeeze=False)
    for r, (who, row) in enumerate(panels.items()):
        for ax in axes[r, len(row) :]:
            fig.delaxes(ax)
        refs = [m for m in tables[who].index if m in BASELINE_NAMES]
        for ax, (group, cols) in zip(axes[r], row):
            table = tables[who].loc[:, cols]
            bars = table.drop(index=refs).dropna(how="all")
            n, x = len(bars.index), np.arange(len(cols))
            for j, m in enumerate(bars.index):
                offset, heights = (j - (n - 1) / 2) * 0.8 / n, bars.loc[m].to_numpy(float)
                ax.bar(x + offset, heights, 0.8 / n, label=m, color=method_colour(m))
            if refs:
                ref = table.loc[refs].to_numpy(float)
                for xi, a, b in zip(x, ref.min(0), ref.max(0)):
                    span = [xi - 0.45, xi + 0.45]
                    ax.fill_between(span, a, b, color="0.85", lw=0, zorder=0)  # behind bars
                    ax.hlines(b, *span, colors="0.3", linestyles="--", lw=1, zorder=3)
                ax.plot([], [], color="0.3", ls="--", label=f"sanity baselines ({', '.join(refs)})")
            ticks = [k.replace("ROAD-", "").replace("Delete", "Del") for k in cols]
            ax.set_xticks(x, ticks, fontsize=7)
            ax.set_ylabel(group, fontsize=8)
            ax.set_title(who, fontsize=8)
            ax.tick_params(labelsize=7)
    # one legend for the figure, below the panels, so that it never hides a bar
    entries = {}
    for ax in fig.axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    ncol = min(len(entries), 4)
    legend_rows = -(-len(entries) // max(ncol, 1))
    fig.legend(entries.values(), entries, loc="lower center", ncol=ncol, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, min(0.4, (0.1 + 0.17 * legend_rows) / fig.get_figheight()), 1, 1))
    return fig


def draw_item_maps(dataset, result, index: int, threshold: float) -> plt.Figure:
    """Item ``index`` of an ImageNet ``dataset`` with its box, then each method's map of the
    IoU/ROAD ``result`` with the box (lime) and {map ≥ ``threshold``} (white), titled with
    the item's IoU and ROAD-Delete values."""
    from .models.classifiers import imagenet_categories

    class_names = imagenet_categories()
    item = dataset[index]
    rows = result.rows[result.rows["index"] == index]
    box = item.box.tolist()
    n = len(result.methods) + 1
    fig, axes = plt.subplots(1, n, figsize=(2.3 * n, 2.8), squeeze=False)
    overlay(axes[0, 0], item.image, title=f"{item.name}\n{class_names[item.label]} ({item.label})")
    draw_box(axes[0, 0], box)
    for ax, name in zip(axes[0, 1:], result.methods):
        m = result.maps(name).positive[index]
        overlay(ax, item.image, m)
        salient = (m.float() >= threshold).float().cpu().numpy()
        if 0 < salient.mean() < 1:  # a contour needs both sides
            ax.contour(salient, levels=[0.5], colors="white", linewidths=0.8)
        draw_box(ax, box, color="lime")
        mine = rows[rows["method"] == name]
        iou = mine[
            (mine["metric"] == "IoU") & np.isclose(mine["threshold"].to_numpy(float), threshold)
        ]
        road = mine[mine["metric"] == "ROAD-Delete"].sort_values("percent")
        iou_text = (
            f"IoU@{threshold:g} {iou['value'].iloc[0]:.0f}" if len(iou) else f"S at t={threshold:g}"
        )
        road_text = ", ".join(f"{p:g}%: {v:.2f}" for p, v in zip(road["percent"], road["value"]))
        ax.set_title(f"{name}\n{iou_text}\nROAD-Delete {road_text}", fontsize=7)
    fig.tight_layout()
    return fig


def save_figure(
    fig: plt.Figure, path: str | Path, *, formats: Sequence[str] = ("png", "pdf")
) -> list[Path]:
    """Save ``fig`` at 150 dpi as ``path`` with each suffix in ``formats``; the paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = [path.with_suffix("." + fmt) for fmt in formats]
    for p in out:
        fig.savefig(p, dpi=150, bbox_inches="tight")
    return out
