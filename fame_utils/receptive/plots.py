"""Figures of feature-cell attributions (paper Fig. 2). Each returns a matplotlib Figure;
images are (3, H, W) in [0, 1], maps (K, H, W) in [0, 1] on the CPU. White boxes are CAM
boxes, dashed cyan ones receptive fields clipped to the image."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import pandas as pd
from torch import Tensor

from ..plotting import draw_box, overlay
from .cells import ReceptiveField, all_cells, cam_boxes, cell_centers
from .measures import center_of_mass

#: The most panels :func:`plot_contact_sheet` draws (a 20 × 20 layer).
MAX_PANELS = 400


def _draw_cells(
    axes: Sequence[plt.Axes],
    image: Tensor,
    maps: Tensor,
    cells: Tensor,
    grid: Sequence[int],
    rf: ReceptiveField | None,
    lw: tuple[float, float],
    titles: Sequence[str | None] | None = None,
) -> None:
    """On ``axes[k]``: the image with the map of cell k, its receptive field (dashed cyan,
    ``lw[1]``; given ``rf``) and its CAM box (white, ``lw[0]``), kept on the image."""
    H, W = maps.shape[-2:]
    boxes = cam_boxes(grid, (H, W), cells)
    fields = [None] * len(cells) if rf is None else rf.boxes_for(cells, clip=True)
    for k, ax in enumerate(axes):
        overlay(ax, image, maps[k], title=None if titles is None else titles[k])
        if fields[k] is not None:
            draw_box(ax, fields[k], color="cyan", lw=lw[1])
            ax.patches[-1].set_linestyle("--")
        draw_box(ax, boxes[k], lw=lw[0])
        ax.set_xlim(-0.5, W - 0.5)
        ax.set_ylim(H - 0.5, -0.5)


def field_note(rf: ReceptiveField) -> str:
    """Legend text for a contact sheet's receptive fields (or that all are the image)."""
    H, W = rf.image_size
    if bool((rf.boxes_for(clip=True) == rf.boxes.new_tensor([0, 0, W, H])).all()):
        return "every receptive field covers the whole image"
    return "cyan: receptive field"


def plot_contact_sheet(
    image: Tensor,
    maps: Tensor,
    grid: Sequence[int],
    *,
    rf: ReceptiveField | None = None,
    panel_size: float = 1.3,
    title: str | None = None,
) -> plt.Figure:
    """An h × w grid (at most :data:`MAX_PANELS`) of the image with the map of cell (i, j),
    its CAM box and (given ``rf``) receptive field; ``maps`` (h·w, H, W) row-major."""
    c = all_cells(grid)
    h, w = (int(v) for v in grid)
    if h * w > MAX_PANELS:
        raise ValueError(
            f"a {h}x{w} contact sheet has {h * w} panels (> {MAX_PANELS}); pick a deeper layer"
        )
    if maps.ndim != 3 or len(maps) != len(c):
        raise ValueError(f"maps must be (h·w={len(c)}, H, W), got {tuple(maps.shape)}")
    fig, axes = plt.subplots(h, w, figsize=(panel_size * w, panel_size * h), squeeze=False)
    _draw_cells(axes.flat, image, maps, c, grid, rf, (1.0, 0.8))  # every cell, row-major
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(wspace=0.03, hspace=0.03, left=0.01, right=0.99, bottom=0.01, top=0.95)
    return fig


def plot_cells_by_depth(
    image: Tensor,
    rows: Mapping[str, tuple[Tensor, Tensor, Sequence[int], ReceptiveField | None]],
    *,
    title: str | None = None,
) -> plt.Figure:
    """Rows = depths (shallow → deep), ``{label: (maps (K, H, W), cells (K, 2), grid, rf
    or None)}``; columns = the image, then each cell's map with its CAM box, receptive
    field (given ``rf``), the cell centre (white dot) and the centre of mass (black ×)."""
    ncols = 1 + max(len(cells) for _, cells, _, _ in rows.values())
    fig, axes = plt.subplots(len(rows), ncols, figsize=(2 * ncols, 2 * len(rows)), squeeze=False)
    for r, (label, (maps, cells, grid, rf)) in enumerate(rows.items()):
        overlay(axes[r, 0], image)
        axes[r, 0].set_ylabel(label, fontsize=9)
        cell_axes = axes[r, 1 : 1 + len(cells)]
        titles = [f"{label} cell ({i}, {j})" for i, j in cells.tolist()]
        _draw_cells(cell_axes, image, maps, cells, grid, rf, (1.5, 1.0), titles)
        centers = cell_centers(grid, maps.shape[-2:], cells) - 0.5  # pixel k drawn at k
        coms = center_of_mass(maps.float()) - 0.5
        for k, ax in enumerate(cell_axes):
            ax.plot(*centers[k].tolist(), "o", color="white", ms=3)
            if math.isfinite(coms[k, 0]):
                ax.plot(*coms[k].tolist(), "x", color="black", ms=6, mew=1.5)
        for ax in axes[r, 1 + len(cells) :]:
            ax.axis("off")
    fig.tight_layout()
    if title:
        fig.suptitle(title, y=1.01, fontsize=10)
    return fig


def plot_measurements(
    df: pd.DataFrame, *, sigma: float | None = None, title: str | None = None
) -> plt.Figure:
    """Boxplots against depth of a :func:`~fame_utils.receptive.measure_layers` table:
    mass in the CAM box, centre-of-mass distance (cell widths), image fraction holding
    50 % of the mass, unblurred Δx vs blurred (at ``sigma``); black bars: a uniform map."""
    import seaborn as sns

    blurred = "blurred" + (f" (σ={sigma:g})" if sigma is not None else "")
    sub = df.assign(map=df["map"].map({"delta": "unblurred Δx", "blurred": blurred}))
    g = df.groupby("layer", observed=True)
    box, uniform = g["box_area"].first(), g["uniform_com_dist_cells"].mean()
    com = "centre-of-mass distance to cell centre\n(cell widths)"
    panels = [  # measure, its label, the reference values and their label
        ("mass_in_box", "share of mass inside the CAM box", box, "uniform map (= box area)"),
        ("com_dist_cells", com, uniform, "uniform map (mean)"),
        ("area50", "image fraction holding 50% of the mass", box, "CAM box area"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(12.6, 3.6), squeeze=False)
    for ax, (m, ylabel, ref, ref_label) in zip(axes[0], panels):
        with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib's deprecated `vert`
            warnings.filterwarnings("ignore", "vert: bool")
            sns.boxplot(sub, x="layer", y=m, hue="map", ax=ax, fliersize=1.5, linewidth=0.8)
        ax.plot(range(len(ref)), ref.values, "k_", ms=18, mew=2, label=ref_label)
        ax.legend(fontsize=7, loc="best")
        ax.set_ylabel(ylabel, fontsize=9)
        ax.set_xlabel("layer (shallow → deep)", fontsize=9)
    axes[0, 2].set_yscale("log")
    axes[0, 0].set_ylim(-0.01, min(1.02, max(0.1, 1.15 * float(df["mass_in_box"].max()))))
    fig.tight_layout()
    if title:
        fig.suptitle(title, y=1.03, fontsize=10)
    return fig
