"""Interactive explorer of single feature cells (paper Fig. 2), for notebooks."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from torch import Tensor, nn

from .._checks import check_images
from ..core import FameConfig, run_fame
from ..objectives import cell_objective
from .cells import CellAttributions, cam_boxes, cell_config
from .measures import cell_measures
from .tracer import ReceptiveField, receptive_field


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
):
    """A live explorer (:class:`~fame_utils.live.LiveMap`, the returned ``VBox``'s
    ``explorer``) of single cells of ``layers`` (``{label: module or dotted name}``) on B
    images (B, 3, H, W) in [0, 1] (paper Fig. 2): the map with the cell's CAM box (white)
    and clipped receptive field (dashed cyan), the text its :func:`cell_measures`.
    ``precomputed``: ``{layer label: (image index, CellAttributions)}`` of earlier runs."""
    import ipywidgets as W

    from ..live import SLIDER, LiveMap, image_controls

    check_images(images)
    cfg = cell_config(config, {"progress": False}, model)
    labels = list(layers)
    size = tuple(images.shape[-2:])
    grids = {
        k: cell_objective(model, layers[k], image_size=size).grid_shape(model, size) for k in labels
    }
    rfs: dict[str, ReceptiveField | None] = {}
    seeds = []
    for label, (b, res) in (precomputed or {}).items():
        for k, (i, j) in enumerate(res.cells.tolist()):
            settings = {"image": b, "layer": label, "row": i, "col": j}
            seeds.append(({**settings, "iterations": res.result.config.iterations}, res.result[k]))

    def field(layer: str) -> ReceptiveField | None:
        if layer not in rfs:
            try:
                rfs[layer] = receptive_field(model, layers[layer], size)
            except NotImplementedError:
                rfs[layer] = None
        return rfs[layer]

    def run(settings: dict, hook: dict):
        layer, cell = settings["layer"], (settings["row"], settings["col"])
        objective = cell_objective(model, layers[layer], [cell], image_size=size)
        i = settings["image"]
        return run_fame(
            model, images[i : i + 1], objective, cfg, iterations=settings["iterations"], **hook
        )

    def annotate(settings: dict) -> list[tuple]:
        layer, row, col = settings["layer"], settings["row"], settings["col"]
        boxes = [(*cam_boxes(grids[layer], size, [(row, col)])[0].tolist(), "white", False)]
        rf = field(layer)
        if rf is not None:
            boxes.append((*rf.boxes_for([(row, col)], clip=True)[0].tolist(), "cyan", True))
        return boxes

    def describe(settings: dict, delta: Tensor, blurred: Tensor) -> str:
        layer, cell = settings["layer"], (settings["row"], settings["col"])
        (h, w), rf = grids[layer], field(layer)
        m_d = cell_measures(delta, [cell], (h, w), rf=rf)
        m_b = cell_measures(blurred, [cell], (h, w))
        return (
            f"mass in CAM box: Δx {m_d['mass_in_box'].item():.3f}, blurred "
            f"{m_b['mass_in_box'].item():.3f} | CoM distance {m_d['com_dist_cells'].item():.2f} "
            f"cells ({m_d['com_dist_px'].item():.1f} px) | 50% of Δx mass in "
            f"{100 * m_d['area50'].item():.2f}% of the image (box {100 / (h * w):.2f}%)"
            + (f" | in RF: {m_d['mass_in_rf'].item():.3f}" if rf is not None else "")
            + " (white: CAM box; dashed cyan: receptive field)"
        )

    def label(settings: dict) -> str:
        i, layer = settings["image"], settings["layer"]
        cell = f"cell ({settings['row']}, {settings['col']})"
        return f"{names[i]} ({i + 1}/{len(names)}), {layer} {cell}, {settings['iterations']} it"

    h0, w0 = grids[labels[-1]]
    first = image_controls(names, iterations)
    controls = {
        "image": first["image"],
        "layer": W.Dropdown(options=labels, value=labels[-1], description="layer"),
        "row": W.IntSlider(value=h0 // 2, min=0, max=h0 - 1, **SLIDER),
        "col": W.IntSlider(value=w0 // 2, min=0, max=w0 - 1, **SLIDER),
        "iterations": first["iterations"],
    }

    def on_layer(change):
        h, w = grids[change["new"]]
        row_w, col_w = controls["row"], controls["col"]
        row_w.value, col_w.value = min(row_w.value, h - 1), min(col_w.value, w - 1)
        row_w.max, col_w.max = h - 1, w - 1
        row_w.description, col_w.description = f"row (of {h})", f"column (of {w})"

    on_layer({"new": labels[-1]})
    controls["layer"].observe(on_layer, names="value")
    explorer = LiveMap(
        run,
        lambda settings: images[settings["image"]],
        controls,
        sigma=sigma,
        kernel_size=cfg.kernel_size,
        seeds=seeds,
        label=label,
        annotate=annotate,
        describe=describe,
    )
    return explorer.widget
