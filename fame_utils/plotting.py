"""Matplotlib helpers shared by the notebooks: overlays, image grids, saving figures."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from torch import Tensor

__all__ = ["to_numpy_image", "to_numpy_map", "overlay", "show_grid", "save_figure", "draw_box"]


def to_numpy_image(image: Tensor) -> np.ndarray:
    """(3, H, W) [0, 1] tensor on any device -> (H, W, 3) float numpy array."""
    if image.ndim == 4 and image.shape[0] == 1:
        image = image[0]
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected an image of shape (3, H, W), got {tuple(image.shape)}")
    return image.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def to_numpy_map(attribution: Tensor) -> np.ndarray:
    """(H, W) map tensor on any device -> (H, W) float numpy array."""
    if attribution.ndim == 3 and attribution.shape[0] == 1:
        attribution = attribution[0]
    if attribution.ndim != 2:
        raise ValueError(f"expected a map of shape (H, W), got {tuple(attribution.shape)}")
    return attribution.detach().float().cpu().numpy()


def overlay(
    ax: plt.Axes,
    image: Tensor | None,
    attribution: Tensor | None = None,
    *,
    alpha: float = 0.5,
    cmap: str = "jet",
    title: str | None = None,
) -> plt.Axes:
    """Draw an image (3, H, W) with an attribution map (H, W) in [0, 1] on top."""
    if image is not None:
        ax.imshow(to_numpy_image(image))
    if attribution is not None:
        ax.imshow(
            to_numpy_map(attribution),
            cmap=cmap,
            vmin=0,
            vmax=1,
            alpha=alpha if image is not None else 1.0,
        )
    if title:
        ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    return ax


def draw_box(ax: plt.Axes, box: Sequence[float], color: str = "white", lw: float = 1.5) -> None:
    """Draw an (x0, y0, x1, y1) box in pixel coordinates."""
    x0, y0, x1, y1 = (float(v) for v in box)
    ax.add_patch(
        plt.Rectangle(
            (x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor=color, linewidth=lw
        )
    )


def show_grid(
    images: Sequence[Tensor | None],
    maps: Sequence[Sequence[Tensor | None]],
    *,
    row_titles: Sequence[str] | None = None,
    col_titles: Sequence[str] | None = None,
    show_image_column: bool = True,
    alpha: float = 0.5,
    size: float = 2.2,
) -> plt.Figure:
    """A grid: one row per image, the image first, then each of its maps overlaid.

    Args:
        images: R images (3, H, W).
        maps: R rows of C maps (H, W) each (``None`` leaves a blank panel).
    """
    rows = len(images)
    cols = max(len(r) for r in maps) + int(show_image_column)
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, size * rows), squeeze=False)
    for r in range(rows):
        c0 = 0
        if show_image_column:
            overlay(axes[r, 0], images[r])
            c0 = 1
        for c, m in enumerate(maps[r]):
            if m is None:
                axes[r, c0 + c].axis("off")
                continue
            overlay(axes[r, c0 + c], images[r], m, alpha=alpha)
        for c in range(c0 + len(maps[r]), cols):
            axes[r, c].axis("off")
        if row_titles is not None:
            axes[r, 0].set_ylabel(row_titles[r], fontsize=9)
    if col_titles is not None:
        for c, t in enumerate(col_titles[:cols]):
            axes[0, c].set_title(t, fontsize=9)
    fig.tight_layout()
    return fig


def save_figure(
    fig: plt.Figure, path: str | Path, *, formats: Sequence[str] = ("png", "pdf"), dpi: int = 150
) -> list[Path]:
    """Save ``fig`` as ``path`` with each suffix in ``formats``; creates the folder.
    Returns the written paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for fmt in formats:
        p = path.with_suffix("." + fmt)
        fig.savefig(p, dpi=dpi, bbox_inches="tight")
        out.append(p)
    return out
