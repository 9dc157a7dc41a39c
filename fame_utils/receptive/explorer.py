"""Interactive explorer of single feature cells (paper Fig. 2), for notebooks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from .._checks import check_images
from ..core import FameConfig
from ..objectives import cell_objective
from ..postprocess import gaussian_blur, kernel_size_for
from .attributions import CellAttributions, _cell_config, run_cells
from .cells import cam_boxes
from .measures import cell_measures
from .plots import _imshow_limits, draw_field
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
    """An ``ipywidgets.interactive`` explorer of single cells: image, layer (depth), cell
    (row, column), iterations and σ. The Δx of every explained (image, layer, cell,
    iterations) is cached, so changing σ only re-blurs.

    Args:
        images: (B, 3, H, W) in [0, 1]; ``names``: B labels for the image dropdown.
        layers: ``{label: module or dotted name}``, shallow → deep.
        precomputed: ``{layer label: (image index, CellAttributions)}`` from earlier runs
            (e.g. the contact sheet) to seed the cache.
        manual: recompute only on the "Run FAME" button (a FAME run takes seconds on a
            CPU).

    Returns:
        ``ipywidgets.interactive`` to display; ``.update()`` draws the current choice into
        its output widget, ``.show_current()`` into the caller's output (use this one in
        notebooks that run headless).
    """
    import ipywidgets as W
    import matplotlib.pyplot as plt

    from ..plotting import draw_box, overlay

    check_images(images)
    cfg = _cell_config(config, {"progress": False}, model)
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

    image_w = W.Dropdown(
        options=[(n, i) for i, n in enumerate(names)], value=0, description="image"
    )
    layer_w = W.Dropdown(options=labels, value=labels[-1], description="layer")
    h0, w0 = grids[labels[-1]]
    row_w = W.IntSlider(value=h0 // 2, min=0, max=h0 - 1, description="row")
    col_w = W.IntSlider(value=w0 // 2, min=0, max=w0 - 1, description="column")
    iter_w = W.IntSlider(value=iterations, min=1, max=500, step=1, description="iterations")
    sigma_w = W.FloatSlider(value=sigma, min=0.0, max=20.0, step=0.1, description="σ")

    def on_layer(change):
        h, w = grids[change["new"]]
        row_w.value, col_w.value = min(row_w.value, h - 1), min(col_w.value, w - 1)
        row_w.max, col_w.max = h - 1, w - 1

    layer_w.observe(on_layer, names="value")

    def show(image: int, layer: str, row: int, col: int, iterations: int, sigma: float):
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
        _imshow_limits(axes[1], *delta.shape[-2:])
        plt.show()
        print(
            f"mass in CAM box: Δx {m_d['mass_in_box'].item():.3f}, blurred "
            f"{m_b['mass_in_box'].item():.3f} | CoM distance {m_d['com_dist_cells'].item():.2f} "
            f"cells ({m_d['com_dist_px'].item():.1f} px) | 50% of Δx mass in "
            f"{100 * m_d['area50'].item():.2f}% of the image (box {100 / (h * w):.2f}%)"
            + (f" | in RF: {m_d['mass_in_rf'].item():.3f}" if rf is not None else "")
        )

    opts = {"manual": True, "manual_name": "Run FAME"} if manual else {}
    widget = W.interactive(
        show,
        opts,
        image=image_w,
        layer=layer_w,
        row=row_w,
        col=col_w,
        iterations=iter_w,
        sigma=sigma_w,
    )

    def show_current() -> None:
        """Draw the current choice into the caller's output, not the widget's ``Output``
        (headless runners such as papermill/nbclient can stall on output-widget messages,
        nbclient issue #312), e.g. as the last line of a notebook cell."""
        show(**{w._kwarg: w.get_interact_value() for w in widget.kwargs_widgets})

    widget.show_current = show_current
    return widget
