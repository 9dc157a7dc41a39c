"""Figures of feature-cell attributions (paper Fig. 2): a contact sheet of all cells of a
layer, a few cells per depth, and the measurements against depth. Every function returns a
matplotlib Figure; images are (3, H, W) in [0, 1], maps (K, H, W) in [0, 1] on the CPU.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from torch import Tensor

from .cells import _as_cells, _check_grid, all_cells, cam_boxes, cell_centers
from .measures import center_of_mass
from .tracer import ReceptiveField

__all__ = [
    "DepthRow",
    "plot_contact_sheet",
    "plot_cells_by_depth",
    "plot_measurements",
    "field_note",
]


def draw_field(ax, box: Tensor, color: str = "cyan", lw: float = 1.0) -> None:
    """Draw a receptive-field box ``(x0, y0, x1, y1)`` (half-open pixels) dashed."""
    from ..plotting import draw_box

    draw_box(ax, box, color=color, lw=lw)
    ax.patches[-1].set_linestyle("--")


def field_note(rf: ReceptiveField) -> str:
    """Legend text for the receptive fields of a contact sheet: when every cell's field,
    clipped to the image, is the whole image, there is nothing to draw and the text says
    so; otherwise it names the dashed cyan boxes."""
    H, W = rf.image_size
    image_box = rf.boxes.new_tensor([0, 0, W, H])
    if bool((rf.boxes_for(None, clip=True) == image_box).all()):
        return "every receptive field covers the whole image"
    return "cyan: receptive field"


def _imshow_limits(ax, H: int, W: int) -> None:
    ax.set_xlim(-0.5, W - 0.5)
    ax.set_ylim(H - 0.5, -0.5)


def plot_contact_sheet(
    image: Tensor,
    maps: Tensor,
    grid: Sequence[int],
    *,
    cells: Sequence | Tensor | None = None,
    rf: ReceptiveField | None = None,
    alpha: float = 0.5,
    panel_size: float = 1.3,
    box_color: str = "white",
    rf_color: str = "cyan",
    title: str | None = None,
    max_panels: int = 400,
):
    """An h × w grid of panels, panel (i, j) = the image with the map of cell (i, j) and its
    CAM-assumed box (white), optionally the theoretical receptive field clipped to the
    image (dashed). The seed's Fig. 2 layout for the last block.

    Args:
        image: (3, H, W) in [0, 1].
        maps: (K, H, W) maps in [0, 1] of ``cells`` (default: all h·w cells, row-major).
        grid: (h, w) of the layer.
        rf: :class:`ReceptiveField` of the layer, to draw its boxes too.

    Returns:
        matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    from ..plotting import draw_box, overlay

    h, w = _check_grid(grid)
    if h * w > max_panels:
        raise ValueError(
            f"a {h}x{w} contact sheet has {h * w} panels (> max_panels={max_panels}); "
            "pick a deeper layer or raise max_panels"
        )
    c = all_cells((h, w)) if cells is None else _as_cells(cells)
    if maps.ndim != 3 or maps.shape[0] != c.shape[0]:
        raise ValueError(f"maps must be (K={c.shape[0]}, H, W), got {tuple(maps.shape)}")
    H, W = maps.shape[-2:]
    boxes = cam_boxes((h, w), (H, W), c)
    rfb = rf.boxes_for(c, clip=True) if rf is not None else None
    fig, axes = plt.subplots(h, w, figsize=(panel_size * w, panel_size * h), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, (i, j) in enumerate(c.tolist()):
        ax = axes[i, j]
        ax.axis("on")
        overlay(ax, image, maps[k], alpha=alpha)
        if rfb is not None:
            draw_field(ax, rfb[k], color=rf_color, lw=0.8)
        draw_box(ax, boxes[k], color=box_color, lw=1.0)
        _imshow_limits(ax, H, W)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(wspace=0.03, hspace=0.03, left=0.01, right=0.99, bottom=0.01, top=0.95)
    return fig


@dataclass
class DepthRow:
    """One row of :func:`plot_cells_by_depth`: a layer's maps (K, H, W) of ``cells`` on a
    ``grid``, optionally with its :class:`ReceptiveField`."""

    label: str
    maps: Tensor
    cells: Tensor
    grid: tuple[int, int]
    rf: ReceptiveField | None = None


def plot_cells_by_depth(
    image: Tensor,
    rows: Sequence[DepthRow],
    *,
    alpha: float = 0.5,
    panel_size: float = 2.0,
    show_com: bool = True,
    show_image: bool = True,
    title: str | None = None,
):
    """Rows = depths (shallow → deep), columns = a few cells per depth: the image with the
    cell's FAME map, the CAM-assumed box (white), the theoretical receptive field clipped
    to the image (dashed cyan, when given), the cell centre (white dot) and the map's
    centre of mass (black ×). The seed's Fig. 2 across depths.

    Args:
        image: (3, H, W) in [0, 1].
        rows: one :class:`DepthRow` per depth.
        title: figure title above the rows.

    Returns:
        matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    from ..plotting import draw_box, overlay

    ncols = max(r.cells.shape[0] for r in rows) + int(show_image)
    fig, axes = plt.subplots(
        len(rows), ncols, figsize=(panel_size * ncols, panel_size * len(rows)), squeeze=False
    )
    for r, row in enumerate(rows):
        H, W = row.maps.shape[-2:]
        c0 = 0
        if show_image:
            overlay(axes[r, 0], image)
            axes[r, 0].set_ylabel(row.label, fontsize=9)
            c0 = 1
        boxes = cam_boxes(row.grid, (H, W), row.cells)
        centers = cell_centers(row.grid, (H, W), row.cells)
        coms = center_of_mass(row.maps.float())
        rfb = row.rf.boxes_for(row.cells, clip=True) if row.rf is not None else None
        for k, (i, j) in enumerate(row.cells.tolist()):
            ax = axes[r, c0 + k]
            overlay(ax, image, row.maps[k], alpha=alpha, title=f"{row.label} cell ({i}, {j})")
            if rfb is not None:
                draw_field(ax, rfb[k])
            draw_box(ax, boxes[k], color="white", lw=1.5)
            if show_com:
                cx, cy = centers[k].tolist()
                ax.plot([cx - 0.5], [cy - 0.5], "o", color="white", ms=3)
                mx, my = coms[k].tolist()
                if math.isfinite(mx):
                    ax.plot([mx - 0.5], [my - 0.5], "x", color="black", ms=6, mew=1.5)
            _imshow_limits(ax, H, W)
            if k == 0 and not show_image:
                ax.set_ylabel(row.label, fontsize=9)
        for k in range(c0 + row.cells.shape[0], ncols):
            axes[r, k].axis("off")
    fig.tight_layout()
    if title:
        fig.suptitle(title, y=1.01, fontsize=10)
    return fig


_MEASURE_LABELS = {
    "mass_in_box": "share of mass inside the CAM box",
    "com_dist_cells": "centre-of-mass distance to cell centre\n(cell widths)",
    "com_dist_px": "centre-of-mass distance to cell centre (px)",
    "area50": "image fraction holding 50% of the mass",
}


def plot_measurements(
    df: pd.DataFrame,
    measures: Sequence[str] = ("mass_in_box", "com_dist_cells", "area50"),
    *,
    maps: Sequence[str] = ("delta", "blurred"),
    panel_size: tuple[float, float] = (4.2, 3.6),
    sigma: float | None = None,
    title: str | None = None,
):
    """Measures against depth: one boxplot panel per measure, layers on the x axis (depth
    order), hue = map (unblurred Δx vs blurred). Reference markers: on the mass panel the
    share a uniform map would put in the box (= the box's image fraction), on the distance
    panel the mean distance of a uniform map's centre of mass (the image centre), on the
    area panel the CAM box's own area — a map that respected CAM's assumption would stay
    inside it. ``sigma`` labels the blurred maps; ``title`` goes above the panels.

    Returns:
        matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    names = {
        "delta": "unblurred Δx",
        "blurred": "blurred" + (f" (σ={sigma:g})" if sigma is not None else ""),
    }
    sub = df[df["map"].isin(list(maps))].copy()
    sub["map"] = sub["map"].map(names)
    order = [c for c in df["layer"].cat.categories] if hasattr(df["layer"], "cat") else None
    fig, axes = plt.subplots(
        1, len(measures), figsize=(panel_size[0] * len(measures), panel_size[1]), squeeze=False
    )
    ref = df.groupby("layer", observed=True)["box_area"].first()
    for ax, m in zip(axes[0], measures):
        with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib's deprecated `vert`
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=PendingDeprecationWarning)
            sns.boxplot(
                data=sub,
                x="layer",
                y=m,
                hue="map",
                order=order,
                ax=ax,
                fliersize=1.5,
                linewidth=0.8,
            )
        if m in ("mass_in_box", "area50"):
            label = "uniform map (= box area)" if m == "mass_in_box" else "CAM box area"
            ax.plot(list(range(len(ref))), ref.values, "k_", ms=18, mew=2, label=label)
            ax.legend(fontsize=7, loc="best")
        elif m == "com_dist_cells" and "uniform_com_dist_cells" in df.columns:
            uni = df.groupby("layer", observed=True)["uniform_com_dist_cells"].mean()
            ax.plot(
                list(range(len(uni))), uni.values, "k_", ms=18, mew=2, label="uniform map (mean)"
            )
            ax.legend(fontsize=7, loc="best")
        elif ax.get_legend() is not None:
            ax.get_legend().remove()
        if m == "area50":
            ax.set_yscale("log")
        if m == "mass_in_box":
            top = float(sub[m].max()) if len(sub) else 1.0
            ax.set_ylim(-0.01, min(1.02, max(0.1, 1.15 * top)))
        ax.set_ylabel(_MEASURE_LABELS.get(m, m), fontsize=9)
        ax.set_xlabel("layer (shallow → deep)", fontsize=9)
    fig.tight_layout()
    if title:
        fig.suptitle(title, y=1.03, fontsize=10)
    return fig
