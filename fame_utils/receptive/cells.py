"""Cells of a feature map and the image boxes CAM assumes they see (paper Sec. 3, Fig. 2).

A cell is a (row, col) position of a layer's h × w grid. CAM methods upsample an h × w
map to the H × W image, which assumes that cell (i, j) "sees" rows [i·H/h, (i+1)·H/h),
columns [j·W/w, (j+1)·W/w) — the **CAM-assumed box**. For a transformer's patch tokens
the grid is the patch grid and the box is the token's patch.

Coordinates: a box ``(x0, y0, x1, y1)`` is half-open in input pixels — it holds the pixels
with column index x0 ≤ x < x1 and row index y0 ≤ y < y1, so pixel k spans [k, k+1) and its
centre is k + 0.5.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = [
    "DEFAULT_CELL_BATCH",
    "default_cell_batch",
    "all_cells",
    "sample_cells",
    "cells_at",
    "cam_boxes",
    "cell_centers",
    "clip_boxes",
]

DEFAULT_CELL_BATCH = {"cpu": 16, "cuda": 64}
"""Samples (image copies × cells) optimised together when the config sets no
``batch_size``, per device type (others use the CPU value). On a CPU, larger chunks run
*slower* per sample (EfficientNet-Lite0 at 224 px, 2 cores: ~16 ms per sample-iteration
in chunks of 16, ~140 ms in one chunk of 49, the activations no longer fit the caches and
page faults pile up); on a GPU 64 copies of a 224 px image keep a ResNet-50's or
EfficientNet-Lite0's activations to a few GiB."""


def default_cell_batch(device: torch.device | str) -> int:
    """The chunk size :func:`run_cells` uses on ``device`` when the config sets none."""
    kind = torch.device(device).type
    return DEFAULT_CELL_BATCH.get(kind, DEFAULT_CELL_BATCH["cpu"])


def _as_cells(cells: Sequence[tuple[int, int]] | Tensor) -> Tensor:
    t = torch.as_tensor(cells)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"cells must be integer (row, col) pairs, got dtype {t.dtype}")
    t = t.long()
    if t.numel() == 0 or t.shape[-1] != 2:
        raise ValueError(f"cells must be a (K, 2) list of (row, col) pairs, got {tuple(t.shape)}")
    return t.reshape(-1, 2)


def _check_grid(grid: Sequence[int]) -> tuple[int, int]:
    h, w = (int(v) for v in grid)
    if h < 1 or w < 1:
        raise ValueError(f"grid must be a positive (h, w), got {tuple(grid)}")
    return h, w


def all_cells(grid: Sequence[int]) -> Tensor:
    """Every cell of an h × w grid, row-major: (h·w, 2) long tensor of (row, col)."""
    h, w = _check_grid(grid)
    rr, cc = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([rr.reshape(-1), cc.reshape(-1)], 1)


def sample_cells(grid: Sequence[int], k: int | None, seed: int = 0) -> Tensor:
    """``k`` distinct cells of an h × w grid drawn with a fixed seed, sorted row-major;
    all cells when ``k`` is ``None`` or ≥ h·w. Returns a (K, 2) long tensor."""
    cells = all_cells(grid)
    if k is None or k >= cells.shape[0]:
        return cells
    if k < 1:
        raise ValueError(f"k must be >= 1 or None, got {k}")
    g = torch.Generator().manual_seed(int(seed))
    pick = torch.randperm(cells.shape[0], generator=g)[:k].sort().values
    return cells[pick]


def cells_at(grid: Sequence[int], positions: Sequence[tuple[float, float]]) -> Tensor:
    """The cells under relative image positions (y, x) in [0, 1) — the same image point
    at every depth. Returns (K, 2) long (row, col)."""
    h, w = _check_grid(grid)
    pos = torch.as_tensor(positions, dtype=torch.float64).reshape(-1, 2)
    if bool(((pos < 0) | (pos > 1)).any()):
        raise ValueError(f"positions must lie in [0, 1], got {pos.tolist()}")
    rows = (pos[:, 0] * h).floor().long().clamp(0, h - 1)
    cols = (pos[:, 1] * w).floor().long().clamp(0, w - 1)
    return torch.stack([rows, cols], 1)


def cam_boxes(
    grid: Sequence[int], image_size: Sequence[int], cells: Sequence | Tensor | None = None
) -> Tensor:
    """CAM-assumed boxes: the image region that upsampling an h × w map to H × W assigns
    to each cell, rows [i·H/h, (i+1)·H/h) and columns [j·W/w, (j+1)·W/w).

    Args:
        grid: (h, w) of the layer.
        image_size: (H, W) of the input.
        cells: (K, 2) (row, col); ``None``: every cell, row-major.

    Returns:
        (K, 4) float64 ``(x0, y0, x1, y1)``, half-open, in input pixels (CPU).
    """
    h, w = _check_grid(grid)
    H, W = (int(v) for v in image_size)
    c = all_cells((h, w)) if cells is None else _as_cells(cells)
    i, j = c[:, 0].double(), c[:, 1].double()
    return torch.stack([j * W / w, i * H / h, (j + 1) * W / w, (i + 1) * H / h], 1)


def cell_centers(
    grid: Sequence[int], image_size: Sequence[int], cells: Sequence | Tensor | None = None
) -> Tensor:
    """Centres of the CAM boxes: (K, 2) float64 ``(x, y)`` = ((j+½)·W/w, (i+½)·H/h)."""
    b = cam_boxes(grid, image_size, cells)
    return torch.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], 1)


def clip_boxes(boxes: Tensor, image_size: Sequence[int]) -> Tensor:
    """Boxes (..., 4) ``(x0, y0, x1, y1)`` clipped to an H × W image."""
    H, W = (int(v) for v in image_size)
    lo = boxes.new_tensor([0, 0, 0, 0])
    hi = boxes.new_tensor([W, H, W, H])
    return torch.minimum(torch.maximum(boxes, lo), hi)
