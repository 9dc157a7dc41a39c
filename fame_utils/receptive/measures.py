"""Where a cell's attribution lies: measures per map, per cell and across depth (paper Fig. 2).

Per map: the share of mass inside a box (:func:`mass_in_box`), the centre of mass
(:func:`center_of_mass`) and the area holding half of the mass (:func:`mass_area`). Per
cell: those against the cell's CAM-assumed box and centre, optionally its theoretical
receptive field (:func:`cell_measures`). Across depth: one long table over images, layers
and cells (:func:`measure_layers`, one run: :func:`measure_run`), summarised per layer
(:func:`summarize_by_depth`, :func:`describe_measurements`, :func:`describe_depth_trend`).
Per layer without any run: the theoretical receptive field against the CAM box
(:func:`receptive_field_table`). The measures take any grid, so a transformer's patch grid
works as a CNN's feature map does. Maps are (N, H, W) non-negative floats on any device.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._checks import check_images, check_maps
from ..core import FameConfig
from ..data.transforms import box_mask
from ..objectives import TokenCell, cell_objective
from ..recipes import Recipe
from .attributions import CellAttributions, _cell_config, run_cells
from .cells import _as_cells, _check_grid, cam_boxes, cell_centers, sample_cells
from .tracer import ReceptiveField, receptive_field

__all__ = [
    "mass_in_box",
    "center_of_mass",
    "mass_area",
    "cell_measures",
    "measure_layers",
    "measure_run",
    "summarize_by_depth",
    "describe_measurements",
    "describe_depth_trend",
    "receptive_field_table",
]


def mass_in_box(maps: Tensor, boxes: Tensor) -> Tensor:
    """Share of each map's mass inside its box: Σ_box m / Σ m.

    Args:
        maps: (N, H, W) non-negative maps (Δx or blurred), any device.
        boxes: (N, 4) or (4,) ``(x0, y0, x1, y1)`` half-open; a pixel counts when its
            centre lies inside (so fractional boxes work).

    Returns:
        (N,) float in [0, 1] on the maps' device; NaN for an all-zero map.
    """
    check_maps(maps, finite=False)
    boxes = boxes.reshape(-1, 4).expand(maps.shape[0], 4)
    mask = box_mask(boxes.to(device=maps.device, dtype=torch.float64), tuple(maps.shape[-2:]))
    m = maps.double()
    total = m.flatten(1).sum(1)
    inside = (m * mask).flatten(1).sum(1)
    return torch.where(total > 0, inside / total, math.nan).to(maps.dtype)


def center_of_mass(maps: Tensor) -> Tensor:
    """Centre of mass ``(x, y)`` of each map in continuous pixel coordinates (pixel k has
    its centre at k + ½). Returns (N, 2) on the maps' device; NaN for all-zero maps."""
    check_maps(maps, finite=False)
    N, H, W = maps.shape
    m = maps.double()
    total = m.flatten(1).sum(1)
    ys = torch.arange(H, device=maps.device, dtype=torch.float64) + 0.5
    xs = torch.arange(W, device=maps.device, dtype=torch.float64) + 0.5
    cx = (m.sum(1) * xs).sum(1) / total
    cy = (m.sum(2) * ys).sum(1) / total
    com = torch.stack([cx, cy], 1)
    return torch.where((total > 0).view(-1, 1), com, math.nan).to(maps.dtype)


def mass_area(maps: Tensor, share: float = 0.5) -> Tensor:
    """Fraction of the image covered by the smallest set of pixels holding ``share`` of a
    map's mass (its top pixels, taken in decreasing order until the cumulative mass
    reaches share · total). Multiply by H·W for pixels.

    Returns (N,) in (0, 1] on the maps' device; NaN for all-zero maps."""
    check_maps(maps, finite=False)
    if not 0 < share <= 1:
        raise ValueError(f"share must lie in (0, 1], got {share}")
    flat = maps.double().flatten(1)
    total = flat.sum(1, keepdim=True)
    vals = flat.sort(1, descending=True).values
    csum = vals.cumsum(1)
    # pixels needed = 1 + number of prefixes still short of the target (tiny relative slack
    # so that a hand-made exact split is not lost to rounding)
    target = share * total * (1 - 1e-12)
    count = (csum < target).sum(1) + 1
    frac = count.double() / flat.shape[1]
    return torch.where(total.squeeze(1) > 0, frac, math.nan).to(maps.dtype)


def cell_measures(
    maps: Tensor,
    cells: Sequence | Tensor,
    grid: Sequence[int],
    *,
    rf: ReceptiveField | None = None,
    share: float = 0.5,
) -> dict[str, Tensor]:
    """All per-cell measures of maps (N, H, W) whose cell k is ``cells[k % K]`` (image-major
    stacking of B images × K cells, as :func:`run_cells` returns after ``.flatten(0, 1)``).

    Returns a dict of (N,) CPU tensors:
        ``mass_in_box`` (share inside the CAM-assumed box), ``com_dist_px`` (distance of the
        centre of mass to the cell centre, pixels), ``com_dist_cells`` (the same in cell
        widths: dx/(W/w), dy/(H/h), then the norm), ``com_dx_px``/``com_dy_px`` (signed),
        ``area50`` (fraction of the image holding ``share`` of the mass), ``area50_px``,
        ``box_area`` (the CAM box's fraction of the image, which a map that respected CAM's
        assumption would not exceed, and the share a uniform map puts in the box),
        ``uniform_com_dist_cells`` (the distance a uniform map's centre of mass, the image
        centre, has from the cell centre), and with ``rf``: ``mass_in_rf`` (share inside the
        theoretical receptive field, 1 up to rounding on the unblurred Δx),
        ``mass_in_centred_box`` (share inside a CAM-sized box centred on the receptive
        field's centre) and ``com_to_rf_centre_cells`` (centre-of-mass distance to that
        centre, cell widths).
    """
    check_maps(maps, finite=False)
    N, H, W = maps.shape
    c = _as_cells(cells)
    K = c.shape[0]
    if N % K:
        raise ValueError(f"{N} maps cannot be B images x {K} cells")
    h, w = _check_grid(grid)
    reps = N // K
    boxes = cam_boxes((h, w), (H, W), c).repeat(reps, 1)
    centers = cell_centers((h, w), (H, W), c).repeat(reps, 1).to(maps.device)
    com = center_of_mass(maps).double()
    d = com - centers
    cell_w = torch.tensor([W / w, H / h], dtype=torch.float64, device=maps.device)
    area = mass_area(maps, share)
    out = {
        "mass_in_box": mass_in_box(maps, boxes),
        "com_dist_px": d.norm(dim=1),
        "com_dist_cells": (d / cell_w).norm(dim=1),
        "com_dx_px": d[:, 0],
        "com_dy_px": d[:, 1],
        "area50": area,
        "area50_px": area.double() * H * W,
        "box_area": torch.full((N,), 1.0 / (h * w), dtype=torch.float64),
        # baseline: a map spread evenly over the image has its centre of mass at the
        # image centre, this far from the cell centre
        "uniform_com_dist_cells": ((centers - centers.new_tensor([W / 2, H / 2])) / cell_w).norm(
            dim=1
        ),
    }
    if rf is not None:
        out["mass_in_rf"] = mass_in_box(maps, rf.boxes_for(c, clip=True).repeat(reps, 1))
        # CAM's box moved onto the receptive field's centre: separates the fixed geometric
        # offset of the field (padding, e.g. TF "same") from the spread of the attribution
        rf_c = rf.centers[c[:, 0], c[:, 1]].repeat(reps, 1)
        shift = (rf_c - centers.cpu()).repeat(1, 2)
        out["mass_in_centred_box"] = mass_in_box(maps, boxes + shift)
        d_rf = com - rf_c.to(maps.device)
        out["com_to_rf_centre_cells"] = (d_rf / cell_w).norm(dim=1)
    return {k: v.detach().double().cpu() for k, v in out.items()}


def measure_run(
    res: CellAttributions,
    *,
    layer: str,
    depth: int = 0,
    rf: ReceptiveField | None = None,
    image_names: Sequence[str] | None = None,
    sigma: float | None = None,
    kernel_size: int | None = None,
) -> pd.DataFrame:
    """Measure one layer's cell run (:func:`run_cells`) on the unblurred Δx
    (``map="delta"``) and on the blurred Δx (``map="blurred"``, kernel/σ from the run's
    config or the arguments) with :func:`cell_measures`.

    Args:
        res: the run, B images × K cells.
        layer: the label written in the ``layer`` column; ``depth`` goes in ``depth``.
        rf: the layer's :class:`ReceptiveField` for the receptive-field columns.
        image_names: B labels (default ``image0``, ``image1``, ...).

    Returns:
        Long DataFrame with one row per (image, cell, map), columns as in
        :func:`measure_layers`.
    """
    B, K = res.num_images, res.cells.shape[0]
    names = list(image_names) if image_names is not None else [f"image{i}" for i in range(B)]
    if len(names) != B:
        raise ValueError(f"{len(names)} image_names for {B} images")
    maps = {
        "delta": res.delta.flatten(0, 1),
        "blurred": res.blurred(sigma=sigma, kernel_size=kernel_size).flatten(0, 1),
    }
    frames = []
    for kind, m in maps.items():
        meas = cell_measures(m, res.cells, res.grid, rf=rf)
        df = pd.DataFrame({k: v.numpy() for k, v in meas.items()})
        df.insert(0, "map", kind)
        df.insert(0, "col", res.cells[:, 1].repeat(B).numpy())
        df.insert(0, "row", res.cells[:, 0].repeat(B).numpy())
        df.insert(0, "grid_w", res.grid[1])
        df.insert(0, "grid_h", res.grid[0])
        df.insert(0, "depth", depth)
        df.insert(0, "layer", layer)
        df.insert(0, "image_index", np.repeat(np.arange(B), K))
        df.insert(0, "image", np.repeat(np.asarray(names, dtype=object), K))
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def measure_layers(
    model: nn.Module,
    images: Tensor,
    layers: Mapping[str, nn.Module | str],
    *,
    cells_per_layer: int | None = None,
    config: FameConfig | None = None,
    seed: int = 0,
    image_names: Sequence[str] | None = None,
    sigma: float | None = None,
    kernel_size: int | None = None,
    with_rf: bool = True,
    progress: bool = True,
    recipe: str | Recipe | None = None,
    **overrides,
) -> pd.DataFrame:
    """Measure cell attributions at several depths over several images.

    For each layer (in the given order = depth), ``cells_per_layer`` cells are drawn with
    :func:`sample_cells` (fixed ``seed``; all cells when ``None``), explained on every image
    with :func:`run_cells`, and measured with :func:`cell_measures` on both the unblurred
    Δx (``map="delta"``) and the blurred Δx (``map="blurred"``, kernel/σ from the config or
    the arguments). Blurring leaks mass across box edges, so the two differ.

    To keep the runs (e.g. to seed :func:`~fame_utils.receptive.cell_explorer`), call
    :func:`run_cells` per layer and measure each with :func:`measure_run`.

    Args:
        layers: ``{label: module or dotted name}`` ordered shallow → deep (e.g. the
            classifier's ``stages``: ``"56x56"``, ..., ``"7x7"``). Transformer blocks
            with (N, T, C) output are measured per patch token on a square patch grid
            (class token left out); the receptive-field columns are left out for them
            (every token can see the whole image after the first attention).
        with_rf: add the theoretical receptive-field columns (CNN layers).
        recipe: ``"paper"`` or ``"reference"``: where the steps are taken (see
            :func:`run_cells`).

    Returns:
        Long DataFrame with one row per (image, layer, cell, map): columns ``image``,
        ``image_index``, ``layer``, ``depth`` (0 = shallowest), ``grid_h``, ``grid_w``,
        ``row``, ``col``, ``map`` and the measures of :func:`cell_measures`.
    """
    check_images(images)
    cfg = _cell_config(config, overrides, model, recipe)
    size = (int(images.shape[-2]), int(images.shape[-1]))
    if progress is False:
        cfg = cfg.replace(progress=False)
    frames = []
    items = list(layers.items())
    for depth, (label, layer) in enumerate(tqdm(items, desc="layers", disable=not progress)):
        objective = cell_objective(model, layer, image_size=size)
        grid = objective.grid_shape(model, size)
        cells = sample_cells(grid, cells_per_layer, seed=seed)
        res = run_cells(model, images, layer, cells, cfg, recipe=recipe)
        traceable = with_rf and not isinstance(objective, TokenCell)
        rf = receptive_field(model, layer, size) if traceable else None
        frames.append(
            measure_run(
                res,
                layer=label,
                depth=depth,
                rf=rf,
                image_names=image_names,
                sigma=sigma,
                kernel_size=kernel_size,
            )
        )
    out = pd.concat(frames, ignore_index=True)
    out["layer"] = pd.Categorical(out["layer"], categories=[k for k, _ in items], ordered=True)
    return out


def summarize_by_depth(
    df: pd.DataFrame,
    measures: Sequence[str] = (
        "mass_in_box",
        "mass_in_centred_box",
        "com_dist_cells",
        "com_to_rf_centre_cells",
        "area50",
    ),
) -> pd.DataFrame:
    """Mean, median and count of each measure per (layer, map), layers in depth order."""
    keep = [m for m in measures if m in df.columns]
    g = df.groupby(["layer", "map"], observed=True)[keep]
    table = g.agg(["mean", "median"])
    table[("cells", "n")] = g.size()
    if "box_area" in df.columns:
        table[("box_area", "value")] = df.groupby(["layer", "map"], observed=True)[
            "box_area"
        ].first()
    return table


def describe_measurements(df: pd.DataFrame, map_kind: str = "delta") -> str:
    """A plain-text statement of what the measurement shows, generated from ``df``
    (per depth: mean share of mass inside the CAM box, centre-of-mass distance in cell
    widths, area holding 50% of the mass vs the box area)."""
    sub = df[df["map"] == map_kind]
    g = sub.groupby("layer", observed=True)
    mib = g["mass_in_box"].mean()
    com = g["com_dist_cells"].mean()
    area = g["area50"].mean()
    box = g["box_area"].first()
    n = g.size()
    label = "unblurred Δx" if map_kind == "delta" else "blurred map"
    lines = [f"On the {label} ({int(sub['image'].nunique())} images):"]
    lines.append(
        "  mean share of mass inside the CAM box: "
        + ", ".join(f"{k}: {v:.2f}" for k, v in mib.items())
    )
    lines.append(
        "  ... relative to a uniform map (share / box area): "
        + ", ".join(f"{k}: {v / b:.1f}x" for (k, v), b in zip(mib.items(), box))
    )
    lines.append(
        "  mean centre-of-mass distance to the cell centre (cell widths): "
        + ", ".join(f"{k}: {v:.2f}" for k, v in com.items())
    )
    if "uniform_com_dist_cells" in sub.columns:
        lines.append(
            "  ... for a uniform map (image centre) it would be: "
            + ", ".join(f"{k}: {v:.2f}" for k, v in g["uniform_com_dist_cells"].mean().items())
        )
    lines.append(
        "  mean area holding 50% of the mass / CAM box area: "
        + ", ".join(f"{k}: {a:.3f}/{b:.3f} ({a / b:.1f}x)" for (k, a), b in zip(area.items(), box))
    )
    if "mass_in_centred_box" in sub.columns:
        lines.append(
            "  with the box moved onto the receptive field's centre: mass share "
            + ", ".join(f"{k}: {v:.2f}" for k, v in g["mass_in_centred_box"].mean().items())
            + "; centre-of-mass distance to the field's centre (cell widths) "
            + ", ".join(f"{k}: {v:.2f}" for k, v in g["com_to_rf_centre_cells"].mean().items())
        )
    lines.append("  cells measured: " + ", ".join(f"{k}: {v}" for k, v in n.items()))
    if "mass_in_rf" in sub.columns:
        lines.append(
            "  min share inside the theoretical receptive field: "
            + ", ".join(f"{k}: {v:.3f}" for k, v in g["mass_in_rf"].min().items())
        )
    return "\n".join(lines)


def describe_depth_trend(df: pd.DataFrame) -> str:
    """One sentence on how the unblurred Δx (``map="delta"``) of the shallowest and the
    deepest layer of ``df`` (:func:`measure_layers`, layers in depth order) respect CAM's
    assumption: the mean share of mass inside the CAM box (and whether it falls with
    depth), that share against a uniform map's (the box area), and the mean centre-of-mass
    distance to the cell centre in cell widths against a uniform map's (paper Fig. 2)."""
    d = df[df["map"] == "delta"]
    if d.empty:
        raise ValueError("df has no rows with map == 'delta': pass measure_layers' table")
    g = d.groupby("layer", observed=True)
    mib, com = g["mass_in_box"].mean(), g["com_dist_cells"].mean()
    box, uni = g["box_area"].first(), g["uniform_com_dist_cells"].mean()
    first, last = mib.index[0], mib.index[-1]
    trend = "falls" if mib.iloc[-1] < mib.iloc[0] else "does not fall"
    return (
        f"From {first} to {last} the mean share of the unblurred attribution inside "
        f"the CAM box {trend} ({mib.iloc[0]:.2f} -> {mib.iloc[-1]:.2f}); at {last} "
        f"{100 * (1 - mib.iloc[-1]):.0f}% of a cell's attribution lies outside the patch "
        f"CAM assigns to it ({mib.iloc[-1] / box.iloc[-1]:.1f}x what a uniform map would "
        f"put there; at {first}: {mib.iloc[0] / box.iloc[0]:.0f}x), and its centre of mass "
        f"sits {com.iloc[-1]:.2f} cell widths from the cell centre (a uniform map: "
        f"{uni.iloc[-1]:.2f}; at {first}: {com.iloc[0]:.2f})."
    )


def receptive_field_table(rfs: Mapping[str, ReceptiveField]) -> pd.DataFrame:
    """The theoretical receptive field of each layer against its CAM box (paper Sec. 3).

    Args:
        rfs: ``{layer label: ReceptiveField}`` (:func:`receptive_field`), shallow → deep.

    Returns:
        DataFrame indexed by ``layer`` with columns ``grid`` (``"hxw"``), ``RF size (px)``
        (r_y), ``jump (px)`` (j_y), ``CAM box (px)`` (the box's width W/w),
        ``RF / box side`` and ``RF centre - cell centre (px)``: the ``(x, y)`` offset of
        cell (0, 0)'s field centre from its CAM box centre (non-zero under asymmetric
        padding such as TensorFlow "same").
    """
    rows = []
    for label, rf in rfs.items():
        h, w = rf.grid
        cam = cam_boxes(rf.grid, rf.image_size, [(0, 0)])[0]
        side = float(cam[2] - cam[0])
        offset = rf.centers[0, 0] - cell_centers(rf.grid, rf.image_size, [(0, 0)])[0]
        rows.append(
            {
                "layer": label,
                "grid": f"{h}x{w}",
                "RF size (px)": rf.size[0],
                "jump (px)": rf.jump[0],
                "CAM box (px)": side,
                "RF / box side": rf.size[0] / side,
                "RF centre - cell centre (px)": tuple(offset.tolist()),
            }
        )
    return pd.DataFrame(rows).set_index("layer")
