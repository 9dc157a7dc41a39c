"""Explaining many cells of a layer in one batched FAME run (paper Sec. 3, Fig. 2).

Each image is copied once per cell and the B·K copies descend
L_a = ‖a[k] − 0‖₁ = Σ_c |a_c[k]| together; the unblurred Δx is kept, so that σ can
change without re-optimising (:class:`CellAttributions`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .._checks import check_images, model_device
from ..core import FameConfig, FameResult, run_fame
from ..objectives import cell_objective
from ..postprocess import gaussian_blur
from ..recipes import Recipe, get_recipe
from .cells import _as_cells, all_cells, cam_boxes, cell_centers, default_cell_batch

__all__ = ["CellAttributions", "run_cells", "explain_cells"]


@dataclass
class CellAttributions:
    """FAME run over K cells of one layer for B images (paper Fig. 2, L_a).

    Attributes:
        result: the underlying :class:`~fame_utils.core.FameResult`; its ``delta`` is the
            unblurred Δx of the B·K samples in image-major order.
        cells: (K, 2) long (row, col) of the explained cells.
        grid: (h, w) of the layer's output.
        image_size: (H, W) of the input.
        layer: the layer as given (module or dotted name).
    """

    result: FameResult
    cells: Tensor
    grid: tuple[int, int]
    image_size: tuple[int, int]
    layer: object = field(repr=False, default=None)

    @property
    def num_images(self) -> int:
        return self.result.delta.shape[0] // self.cells.shape[0]

    @property
    def delta(self) -> Tensor:
        """(B, K, H, W) unblurred Δx = |gray(x̄) − gray(x)| (step-space units)."""
        return self.result.delta.view(self.num_images, self.cells.shape[0], *self.image_size)

    @property
    def config(self) -> FameConfig:
        return self.result.config

    def maps(
        self,
        *,
        sigma: float | None = None,
        kernel_size: int | None = None,
        normalization: str | None = None,
        warn_empty: bool = True,
    ) -> Tensor:
        """(B, K, H, W) blurred, normalised maps in [0, 1]; σ, kernel size and normalisation
        default to the run's config and can be changed without re-optimising."""
        m = self.result.maps(
            sigma=sigma, kernel_size=kernel_size, normalization=normalization, warn_empty=warn_empty
        )
        return m.view(self.num_images, self.cells.shape[0], *self.image_size)

    def blurred(self, *, sigma: float | None = None, kernel_size: int | None = None) -> Tensor:
        """(B, K, H, W) blurred Δx without normalisation (mass-preserving up to the
        mirrored borders), the map the blurred measurements use."""
        k = self.config.kernel_size if kernel_size is None else kernel_size
        s = self.config.sigma if sigma is None else sigma
        return gaussian_blur(self.result.delta, k, s).view_as(self.delta)

    def cam_boxes(self) -> Tensor:
        """(K, 4) CAM-assumed boxes of the cells (see :func:`cam_boxes`)."""
        return cam_boxes(self.grid, self.image_size, self.cells)

    def cell_centers(self) -> Tensor:
        """(K, 2) ``(x, y)`` centres of the CAM boxes."""
        return cell_centers(self.grid, self.image_size, self.cells)


def _cell_config(
    config: FameConfig | None,
    overrides: dict,
    model: nn.Module | None = None,
    recipe: str | Recipe | None = None,
) -> FameConfig:
    """The run's config: ``overrides`` applied, the step space from ``recipe``
    (``feature_cell_step_space``) unless ``step_space=`` is overridden, and a chunk size
    (:func:`default_cell_batch`) when none is set. A ``config`` whose own step space
    disagrees with the recipe's is refused rather than silently changed."""
    rec = get_recipe(recipe)
    space = overrides.get("step_space", rec.feature_cell_step_space)
    if config is not None and "step_space" not in overrides and config.step_space != space:
        raise ValueError(
            f"config.step_space={config.step_space!r} disagrees with recipe {rec.name!r} "
            f"(feature cells step in {space!r}); pass step_space={config.step_space!r} "
            "explicitly, or a recipe that steps there (recipe='reference' steps in pixels)"
        )
    cfg = (config or FameConfig()).replace(**{**overrides, "step_space": space})
    if cfg.batch_size is None:
        device = model_device(model) if model is not None else torch.device("cpu")
        cfg = cfg.replace(batch_size=default_cell_batch(device))
    return cfg


def run_cells(
    model: nn.Module,
    images: Tensor,
    layer: nn.Module | str,
    cells: Sequence[tuple[int, int]] | Tensor | None = None,
    config: FameConfig | None = None,
    *,
    grid: Sequence[int] | None = None,
    class_token: bool = False,
    prefix_tokens: int | None = None,
    recipe: str | Recipe | None = None,
    **overrides,
) -> CellAttributions:
    """FAME for K cells of ``layer`` on B images in one batched run (paper Fig. 2).

    Each image is copied once per cell and the B·K copies are optimised together with
    L_a = Σ_c |a_c[k]| (:class:`~fame_utils.objectives.FeatureCell`, whose hook stops the
    forward pass at ``layer``), in chunks of ``config.batch_size`` samples
    (:func:`default_cell_batch` of the model's device when the config sets none).

    A layer whose output is a transformer's (N, T, C) tokens is explained per patch
    token instead (:class:`~fame_utils.objectives.TokenCell`): cells are (row, col) on the
    patch grid, whose CAM-assumed boxes are the patches; the class token is left out
    unless ``class_token=True``, which explains it alone as cell (0, 0) of a 1 × 1 grid.

    Args:
        model: network in eval mode taking (B, 3, H, W) [0, 1] RGB; any module whose
            output is (N, C, h, w), or (N, T, C) tokens, can be explained.
        images: float (B, 3, H, W) in [0, 1], on any device.
        layer: the module or its dotted name.
        cells: (K, 2) (row, col) pairs; ``None``: all h·w cells, row-major.
        config: :class:`~fame_utils.core.FameConfig`; ``overrides`` replace single fields.
        grid: token layers only: the (h, w) patch grid (default square).
        class_token: token layers only: explain the class token.
        prefix_tokens: token layers only: tokens before the patches (default 1).
        recipe: ``"paper"`` (default) or ``"reference"`` (:mod:`fame_utils.recipes`): its
            ``feature_cell_step_space`` sets where the steps are taken, normalised input
            (paper) or [0, 1] pixels (reference); ``step_space=`` overrides it.

    Returns:
        :class:`CellAttributions` holding the unblurred Δx (B, K, H, W) on the images' device.
    """
    check_images(images)
    cfg = _cell_config(config, overrides, model, recipe)
    image_size = (int(images.shape[-2]), int(images.shape[-1]))
    cell_t = None if cells is None else _as_cells(cells)
    objective = cell_objective(
        model,
        layer,
        cell_t,
        image_size=image_size,
        grid=grid,
        class_token=class_token or None,
        prefix_tokens=prefix_tokens,
    )
    h, w = objective.grid_shape(model, image_size)
    result = run_fame(model, images, objective, cfg)  # cells=None: all, row-major
    return CellAttributions(
        result=result,
        cells=all_cells((h, w)) if cell_t is None else cell_t,
        grid=(h, w),
        image_size=image_size,
        layer=layer,
    )


def explain_cells(
    model: nn.Module,
    images: Tensor,
    layer: nn.Module | str,
    cells: Sequence[tuple[int, int]] | Tensor | None = None,
    config: FameConfig | None = None,
    **options,
) -> Tensor:
    """FAME maps of K cells of ``layer``: (B, K, H, W) in [0, 1] on the images' device.

    Same arguments as :func:`run_cells` (which keeps the unblurred Δx for re-blurring;
    ``recipe=``, token options and config overrides pass through); ``cells=None``
    explains all h·w cells, row-major, so ``maps[b].view(h, w, H, W)`` is the contact
    sheet of image b."""
    return run_cells(model, images, layer, cells, config, **options).maps()
