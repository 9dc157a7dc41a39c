"""Matplotlib figures of the notebooks: overlays, the paper's figure layouts, saving.

Every ``draw_*`` function returns a new ``plt.Figure`` (the caller saves or shows it);
images are (3, H, W) in [0, 1] RGB and maps (H, W) in [0, 1], on any device.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import Tensor

from .postprocess import kernel_size_for

__all__ = [
    "to_numpy_image",
    "to_numpy_map",
    "overlay",
    "draw_box",
    "mark_empty",
    "draw_blur_figure",
    "FACE_COLUMNS",
    "draw_face_rows",
    "draw_method_rows",
    "save_figure",
]


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


def mark_empty(ax: plt.Axes, attribution: Tensor) -> None:
    """Write "empty map" on ``ax`` when ``attribution`` is all zero (e.g. FAME's e₊ of an
    impostor pair whose loss is below ε at the start), so a blank panel is not misread."""
    if float(attribution.max()) == 0:
        ax.text(
            0.5,
            0.5,
            "empty map",
            transform=ax.transAxes,
            ha="center",
            va="center",
            color="white",
            fontsize=8,
            bbox={"facecolor": "black", "alpha": 0.6},
        )


def draw_blur_figure(
    images: Tensor,
    result,
    row_labels: Sequence[str],
    *,
    sigmas: Sequence[float],
    chosen: tuple[int, float] = (49, 7.7),
    title: str | None = None,
) -> plt.Figure:
    """Fig. 1: one row per image: the image, the unblurred Δx (clipped at its 99.5th
    percentile so its sparse structure shows), FAME maps at each σ in ``sigmas`` (kernel
    ±3σ) and at the paper's (kernel, σ) = ``chosen``, all re-blurred from one run.

    Args:
        images: (N, 3, H, W) in [0, 1].
        result: the :class:`~fame_utils.core.FameResult` of those N images.
        row_labels: N labels (e.g. name and class) written left of each row.
    """
    panels = [
        (f"({chr(97 + i)}) σ = {s:g}", result.maps(sigma=s, kernel_size=kernel_size_for(s)))
        for i, s in enumerate(sigmas)
    ]
    kernel, sigma = chosen
    panels.append(
        (
            f"({chr(97 + len(sigmas))}) σ = {sigma:g}, kernel {kernel}",
            result.maps(sigma=sigma, kernel_size=kernel),
        )
    )
    n, cols = len(images), len(panels) + 2
    fig, axes = plt.subplots(n, cols, figsize=(2.3 * cols, 2.4 * n), squeeze=False)
    raw = result.maps(sigma=0)
    clip = torch.quantile(raw.flatten(1).float(), 0.995, dim=1).clamp_min(1e-12)
    raw = (raw / clip[:, None, None]).clamp(max=1)
    for r in range(n):
        first = r == 0
        overlay(axes[r, 0], images[r], title="image" if first else None)
        axes[r, 0].set_ylabel(row_labels[r], fontsize=8)
        overlay(
            axes[r, 1], None, raw[r], cmap="gray", title="Δx, no blur (clipped)" if first else None
        )
        for c, (panel_title, maps) in enumerate(panels):
            overlay(axes[r, c + 2], images[r], maps[r], title=panel_title if first else None)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


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
    gallery: Tensor,
    probe: Tensor,
    attributions: Mapping[str, object],
    row_labels: Sequence[str],
    *,
    columns: Sequence[tuple[str, str, str]] = FACE_COLUMNS,
    title: str | None = None,
    size: float = 1.7,
) -> plt.Figure:
    """Fig. 3: one row per pair: gallery, probe, then the probe's maps per ``columns``.

    Args:
        gallery, probe: (N, 3, H, W) in [0, 1].
        attributions: ``{method name: Attribution}`` with ``positive``/``negative`` maps
            (N, H, W) in [0, 1]; an all-zero map is labelled "empty map".
        row_labels: N labels (e.g. variation and cosine similarity).
    """
    n, cols = len(row_labels), 2 + len(columns)
    fig, axes = plt.subplots(n, cols, figsize=(size * cols, size * n + 0.4), squeeze=False)
    for r in range(n):
        overlay(axes[r, 0], gallery[r], title="gallery" if r == 0 else None)
        axes[r, 0].set_ylabel(row_labels[r], fontsize=8)
        overlay(axes[r, 1], probe[r], title="probe" if r == 0 else None)
        for c, (name, part, col_title) in enumerate(columns):
            m = getattr(attributions[name], part)[r]
            overlay(axes[r, c + 2], probe[r], m, title=col_title if r == 0 else None)
            mark_empty(axes[r, c + 2], m)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


def draw_method_rows(
    images: Tensor,
    attributions: Mapping[str, object],
    row_labels: Sequence[str],
    *,
    masks: Tensor | None = None,
    title: str | None = None,
    size: float = 1.5,
) -> plt.Figure:
    """One row per image: the image (with its mask's outline when ``masks`` is given), then
    each method's positive map over it, in the order of ``attributions``.

    Args:
        images: (N, 3, H, W) in [0, 1].
        attributions: ``{method name: Attribution}`` (``positive``: (N, H, W) in [0, 1]);
            an all-zero map is labelled "empty map".
        row_labels: N labels (e.g. the class and the prediction).
        masks: optional (N, H, W) bool object masks (e.g. digit strokes), outlined in white
            on the first column.
    """
    columns = [("input", None)] + [(k, a.positive) for k, a in attributions.items()]
    n = len(row_labels)
    fig, axes = plt.subplots(
        n, len(columns), figsize=(size * len(columns), size * n + 0.4), squeeze=False
    )
    for r, c in np.ndindex(n, len(columns)):
        name, maps = columns[c]
        m = None if maps is None else maps[r]
        overlay(axes[r, c], images[r], m, title=name if r == 0 else None)
        if m is not None:
            mark_empty(axes[r, c], m)
        elif masks is not None:
            outline = masks[r].detach().float().cpu().numpy()
            axes[r, c].contour(outline, levels=[0.5], colors="white", linewidths=0.8)
        axes[r, 0].set_ylabel(row_labels[r], fontsize=8)
    fig.suptitle(title or "", fontsize=9)
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
