"""Interactive explorer of single feature cells (paper Fig. 2), for notebooks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from .._checks import check_images
from ..core import FameConfig
from ..objectives import cell_objective
from ..postprocess import gaussian_blur, kernel_size_for
from .cells import CellAttributions, cam_boxes, cell_config, run_cells
from .measures import cell_measures
from .plots import draw_field, imshow_limits
from .tracer import ReceptiveField, receptive_field

__all__ = ["cell_explorer"]


def cell_explorer(
    model: nn.Module,
    images: Tensor,
    names: Sequence[str],
    layers: Mapping[str, nn.Module | str],
    *,
    iterations: int = 100,
    sigma: float = 7.7,
    config: FameConfig | None = None,
    precomputed: Mapping[str, tuple[int, CellAttributions]] | None = None,
    manual: bool = True,
):
    """An explorer of single cells (:func:`fame_utils.widgets.panel`): image, layer (depth),
    cell (row, column), iterations and σ, drawn once at creation (headless runs too). The
    Δx of every explained (image, layer, cell, iterations) is cached, so changing σ (live)
    only re-blurs.

    Args:
        images: (B, 3, H, W) in [0, 1]; ``names``: B labels for the image dropdown.
        layers: ``{label: module or dotted name}``, shallow → deep.
        precomputed: ``{layer label: (image index, CellAttributions)}`` from earlier runs
            (e.g. the contact sheet) to seed the cache.
        manual: the other controls apply on the "Run FAME" button (a FAME run takes seconds
            on a CPU); ``False``: every control applies at once.

    Returns:
        ``ipywidgets.VBox`` to display: rows of controls, then the output (its last child).
    """
    import ipywidgets as W
    import matplotlib.pyplot as plt

    from ..plotting import draw_box, overlay
    from ..widgets import panel

    check_images(images)
    cfg = cell_config(config, {"progress": False}, model)
    labels = list(layers)
    size = tuple(images.shape[-2:])
    grids = {
        k: cell_objective(model, layers[k], image_size=size).grid_shape(model, size) for k in labels
    }
    rfs: dict[str, ReceptiveField | None] = {}
    cache: dict[tuple, Tensor] = {}
    for label, (b, res) in (precomputed or {}).items():
        for k, (i, j) in enumerate(res.cells.tolist()):
            cache[(b, label, i, j, res.config.iterations)] = res.delta[0, k]

    h0, w0 = grids[labels[-1]]
    slider = {"continuous_update": False}
    controls = {
        "image": W.Dropdown(options=[(n, i) for i, n in enumerate(names)], description="image"),
        "layer": W.Dropdown(options=labels, value=labels[-1], description="layer"),
        "row": W.IntSlider(value=h0 // 2, min=0, max=h0 - 1, description="row", **slider),
        "col": W.IntSlider(value=w0 // 2, min=0, max=w0 - 1, description="column", **slider),
        "iterations": W.IntSlider(
            value=iterations, min=1, max=500, description="iterations", **slider
        ),
        "sigma": W.FloatSlider(value=sigma, min=0.0, max=20.0, step=0.1, description="σ", **slider),
    }

    def on_layer(change):
        h, w = grids[change["new"]]
        row_w, col_w = controls["row"], controls["col"]
        row_w.value, col_w.value = min(row_w.value, h - 1), min(col_w.value, w - 1)
        row_w.max, col_w.max = h - 1, w - 1

    controls["layer"].observe(on_layer, names="value")

    def render(image: int, layer: str, row: int, col: int, iterations: int, sigma: float):
        h, w = grids[layer]
        row, col = min(row, h - 1), min(col, w - 1)
        key = (image, layer, row, col, iterations)
        if key not in cache:
            res = run_cells(
                model,
                images[image : image + 1],
                layers[layer],
                [(row, col)],
                cfg,
                iterations=iterations,
            )
            cache[key] = res.delta[0, 0]
        delta = cache[key][None]
        # the config's kernel at its σ (49 at 7.7), else a ±3σ kernel
        kernel = cfg.kernel_size if sigma == cfg.sigma else kernel_size_for(sigma)
        blurred = gaussian_blur(delta, kernel, sigma) if sigma > 0 else delta
        shown = blurred / blurred.max().clamp_min(torch.finfo(blurred.dtype).tiny)
        if layer not in rfs:
            try:
                rfs[layer] = receptive_field(model, layers[layer], tuple(images.shape[-2:]))
            except NotImplementedError:
                rfs[layer] = None
        rf = rfs[layer]
        m_d = cell_measures(delta, [(row, col)], (h, w), rf=rf)
        m_b = cell_measures(blurred, [(row, col)], (h, w))
        fig, axes = plt.subplots(1, 2, figsize=(8, 4))
        overlay(axes[0], images[image], title=f"{names[image]}")
        overlay(axes[1], images[image], shown[0], title=f"{layer} cell ({row}, {col})")
        if rf is not None:
            draw_field(axes[1], rf.box(row, col, clip=True))
        draw_box(axes[1], cam_boxes((h, w), delta.shape[-2:], [(row, col)])[0])
        imshow_limits(axes[1], *delta.shape[-2:])
        text = (
            f"mass in CAM box: Δx {m_d['mass_in_box'].item():.3f}, blurred "
            f"{m_b['mass_in_box'].item():.3f} | CoM distance {m_d['com_dist_cells'].item():.2f} "
            f"cells ({m_d['com_dist_px'].item():.1f} px) | 50% of Δx mass in "
            f"{100 * m_d['area50'].item():.2f}% of the image (box {100 / (h * w):.2f}%)"
            + (f" | in RF: {m_d['mass_in_rf'].item():.3f}" if rf is not None else "")
        )
        return fig, text

    if manual:
        return panel(render, controls, button="Run FAME", live=("sigma",))
    return panel(render, controls)
