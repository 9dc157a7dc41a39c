"""Cells of a layer, the boxes CAM assumes they see, and FAME over many cells at once.

Upsampling an h × w map to H × W assumes cell (i, j) sees rows [i·H/h, (i+1)·H/h) and
columns [j·W/w, (j+1)·W/w), its **CAM box** (paper Sec. 3): ``(x0, y0, x1, y1)``, half-open.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .._checks import check_images, model_device
from ..core import FameConfig, FameResult, run_fame
from ..objectives import cell_objective
from ..postprocess import gaussian_blur
from ..recipes import Recipe, get_recipe


def default_cell_batch(device: torch.device | str) -> int:
    """:func:`run_cells`' batch without a config ``batch_size``: 64 on a GPU, else 16."""
    return 64 if torch.device(device).type == "cuda" else 16


def as_cells(cells: Sequence[tuple[int, int]] | Tensor) -> Tensor:
    """``cells`` as a (K, 2) long tensor of (row, col); refuses floats and other shapes."""
    t = torch.as_tensor(cells)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"cells must be integer (row, col) pairs, got dtype {t.dtype}")
    if t.numel() == 0 or t.shape[-1] != 2:
        raise ValueError(f"cells must be a (K, 2) list of (row, col) pairs, got {tuple(t.shape)}")
    return t.long().reshape(-1, 2)


def all_cells(grid: Sequence[int]) -> Tensor:
    """Every cell of an h × w grid, row-major: (h·w, 2) long (row, col)."""
    h, w = (int(v) for v in grid)
    return torch.cartesian_prod(torch.arange(h), torch.arange(w)).reshape(-1, 2)


def sample_cells(grid: Sequence[int], k: int | None, seed: int = 0) -> Tensor:
    """``k`` distinct cells drawn with ``seed``, row-major: (K, 2) long (``None``: all)."""
    cells = all_cells(grid)
    if k is None or k >= len(cells):
        return cells
    if k < 1:
        raise ValueError(f"k must be >= 1 or None, got {k}")
    pick = torch.randperm(len(cells), generator=torch.Generator().manual_seed(int(seed)))
    return cells[pick[:k].sort().values]


def cells_at(grid: Sequence[int], positions: Sequence[tuple[float, float]]) -> Tensor:
    """The cells under relative image positions (y, x) in [0, 1]: (K, 2) long (row, col)."""
    pos = torch.as_tensor(positions, dtype=torch.float64).reshape(-1, 2)
    if bool(((pos < 0) | (pos > 1)).any()):
        raise ValueError(f"positions must lie in [0, 1], got {pos.tolist()}")
    hw = pos.new_tensor([int(v) for v in grid])
    return (pos * hw).floor().long().minimum(hw.long() - 1)


def cam_boxes(
    grid: Sequence[int], image_size: Sequence[int], cells: Sequence | Tensor | None = None
) -> Tensor:
    """CAM-assumed boxes of ``cells`` ((K, 2); ``None``: all, row-major) of an h × w ``grid``
    on an H × W image: (K, 4) float64 ``(x0, y0, x1, y1)`` on the CPU."""
    c = (all_cells(grid) if cells is None else as_cells(cells)).double()
    size, n = c.new_tensor(image_size).flip(0), c.new_tensor(grid).flip(0)
    return torch.cat([c.flip(1) * size / n, (c.flip(1) + 1) * size / n], 1)


def cell_centers(
    grid: Sequence[int], image_size: Sequence[int], cells: Sequence | Tensor | None = None
) -> Tensor:
    """Centres of the CAM boxes: (K, 2) float64 ``(x, y)``."""
    b = cam_boxes(grid, image_size, cells)
    return (b[:, :2] + b[:, 2:]) / 2


def cell_config(
    config: FameConfig | None, overrides: dict, model: nn.Module, recipe: str | Recipe | None = None
) -> FameConfig:
    """``config`` with ``overrides``, else ``recipe.fame_config("cells", **overrides)``;
    raises where the config disagrees with a given recipe. A ``batch_size`` of ``None``
    becomes :func:`default_cell_batch` of the model's device."""
    if config is None:
        cfg = get_recipe(recipe).fame_config("cells", **overrides)
    else:
        cfg = config.replace(**overrides) if overrides else config
        if recipe is not None:
            get_recipe(recipe).check_config(cfg, "cells")
    if cfg.batch_size is None:
        cfg = cfg.replace(batch_size=default_cell_batch(model_device(model)))
    return cfg


@dataclass
class CellAttributions:
    """FAME over K cells of one layer for B images (paper Fig. 2, L_a): the ``result`` of
    the B·K samples (image-major), ``cells`` (K, 2) long (row, col), the layer's ``grid``
    (h, w) and the input's ``image_size`` (H, W)."""

    result: FameResult
    cells: Tensor
    grid: tuple[int, int]
    image_size: tuple[int, int]

    @property
    def delta(self) -> Tensor:
        """(B, K, H, W) unblurred Δx = |gray(x̄) − gray(x)|."""
        return self.result.delta.view(-1, len(self.cells), *self.image_size)

    def maps(self, **options: object) -> Tensor:
        """(B, K, H, W) maps in [0, 1]; ``options`` as :meth:`FameResult.maps`."""
        return self.result.maps(**options).view_as(self.delta)

    def blurred(self, *, sigma: float | None = None) -> Tensor:
        """(B, K, H, W) Δx blurred at ``sigma`` (default: the config's), not normalised."""
        cfg = self.result.config
        s = cfg.sigma if sigma is None else sigma
        return gaussian_blur(self.result.delta, cfg.kernel_size, s).view_as(self.delta)


def run_cells(
    model: nn.Module,
    images: Tensor,
    layer: nn.Module | str,
    cells: Sequence[tuple[int, int]] | Tensor | None = None,
    config: FameConfig | None = None,
    *,
    class_token: bool = False,
    recipe: str | Recipe | None = None,
    **overrides: object,
) -> CellAttributions:
    """FAME for K cells of ``layer`` (module or dotted name, output (N, C, h, w) or
    (N, T, C)) on B images (B, 3, H, W) in [0, 1] in one batched run (paper Fig. 2): the
    B·K copies descend L_a = ‖a[k] − 0‖₁ = Σ_c |a_c[k]| together
    (:class:`~fame_utils.objectives.FeatureCell`, or per patch token
    :class:`~fame_utils.objectives.TokenCell`; ``class_token=True``: the class token).
    ``cells`` (K, 2) (row, col), ``None``: all, row-major; the config as :func:`cell_config`
    builds it. Returns :class:`CellAttributions`, Δx on the images' device.
    """
    check_images(images)
    cfg = cell_config(config, overrides, model, recipe)
    size = (int(images.shape[-2]), int(images.shape[-1]))
    cell_t = None if cells is None else as_cells(cells)
    objective = cell_objective(model, layer, cell_t, image_size=size, class_token=class_token)
    grid = objective.grid_shape(model, size)
    result = run_fame(model, images, objective, cfg)
    return CellAttributions(result, all_cells(grid) if cell_t is None else cell_t, grid, size)
