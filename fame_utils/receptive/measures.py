"""Where a cell's attribution lies against CAM's assumption (paper Sec. 3, Fig. 2), per cell
(live in :func:`cell_explorer`) and across depths. Maps: (N, H, W), non-negative."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._checks import check_images, check_maps
from ..core import FameConfig, run_fame
from ..data.transforms import box_mask
from ..objectives import TokenCell, cell_objective
from ..recipes import Recipe
from .cells import (
    CellAttributions,
    ReceptiveField,
    as_cells,
    cam_boxes,
    cell_centers,
    cell_config,
    receptive_field,
    run_cells,
    sample_cells,
)


def _share(maps: Tensor, part: Tensor, total: Tensor | None = None) -> Tensor:
    """part / total per map (total: the map's mass), NaN where the map is all zero."""
    mass = maps.double().flatten(1).sum(1)
    return torch.where(mass > 0, part / (mass if total is None else total), math.nan).to(maps.dtype)


def mass_in_box(maps: Tensor, boxes: Tensor) -> Tensor:
    """Share of each map's mass (pixel centres) in its (N, 4) box: (N,), NaN: all zero."""
    boxes = boxes.reshape(-1, 4).expand(len(maps), 4).to(maps.device, torch.float64)
    return _share(maps, (maps.double() * box_mask(boxes, tuple(maps.shape[-2:]))).flatten(1).sum(1))


def center_of_mass(maps: Tensor) -> Tensor:
    """Centre of mass ``(x, y)`` of each map, pixel k centred at k + ½: (N, 2) (NaN: zero)."""
    m = maps.double()
    xs = torch.arange(maps.shape[2], device=maps.device, dtype=torch.float64) + 0.5
    ys = torch.arange(maps.shape[1], device=maps.device, dtype=torch.float64) + 0.5
    return torch.stack(
        [_share(maps, (m.sum(1) * xs).sum(1)), _share(maps, (m.sum(2) * ys).sum(1))], 1
    )


def mass_area(maps: Tensor) -> Tensor:
    """Image fraction of the fewest pixels holding half of each map's mass: (N,)."""
    flat = maps.double().flatten(1)
    csum = flat.sort(1, descending=True).values.cumsum(1)
    # a tiny relative slack, so that an exact split by hand is not lost to rounding
    count = (csum < 0.5 * csum[:, -1:] * (1 - 1e-12)).sum(1) + 1
    return _share(maps, count.double(), torch.tensor(flat.shape[1]))


def cell_measures(
    maps: Tensor,
    cells: Sequence | Tensor,
    grid: Sequence[int],
    *,
    rf: ReceptiveField | None = None,
) -> dict[str, Tensor]:
    """Measures of maps (N, H, W), map n of ``cells[n % K]``: (N,) float64 CPU tensors
    ``mass_in_box`` (share in the CAM box), ``com_dist_px`` / ``_cells`` (centre of mass to
    cell centre), ``area50``, ``box_area`` / ``uniform_com_dist_cells`` (a uniform map's);
    with ``rf``: ``mass_in_rf`` (clipped field), ``mass_in_centred_box`` (a CAM-sized box on
    the field's centre) and ``com_to_rf_centre_cells``."""
    check_maps(maps, finite=False)
    N, H, W = maps.shape
    c = as_cells(cells)
    if N % len(c):
        raise ValueError(f"{N} maps cannot be B images x {len(c)} cells")
    reps, (h, w) = N // len(c), (int(v) for v in grid)
    boxes = cam_boxes(grid, (H, W), c).repeat(reps, 1)
    centers = cell_centers(grid, (H, W), c).repeat(reps, 1)
    com = center_of_mass(maps).double().cpu()
    cell_w = torch.tensor([W / w, H / h], dtype=torch.float64)
    out = {
        "mass_in_box": mass_in_box(maps, boxes),
        "com_dist_px": (com - centers).norm(dim=1),
        "com_dist_cells": ((com - centers) / cell_w).norm(dim=1),
        "area50": mass_area(maps),
        "box_area": torch.full((N,), 1.0 / (h * w), dtype=torch.float64),
        "uniform_com_dist_cells": ((centers - com.new_tensor([W / 2, H / 2])) / cell_w).norm(dim=1),
    }
    if rf is not None:
        rf_c = rf.centers[tuple(c.T)].repeat(reps, 1)
        out["mass_in_rf"] = mass_in_box(maps, rf.boxes_for(c, clip=True).repeat(reps, 1))
        # CAM's box moved onto the field's centre: the field's fixed offset (padding such as
        # TF "same") apart from the spread of the attribution
        out["mass_in_centred_box"] = mass_in_box(maps, boxes + (rf_c - centers).repeat(1, 2))
        out["com_to_rf_centre_cells"] = ((com - rf_c) / cell_w).norm(dim=1)
    return {k: v.detach().double().cpu() for k, v in out.items()}


def measure_layers(
    model: nn.Module,
    images: Tensor,
    layers: Mapping[str, nn.Module | str],
    *,
    cells_per_layer: int | None = None,
    config: FameConfig | None = None,
    seed: int = 0,
    image_names: Sequence[str] | None = None,
    recipe: str | Recipe | None = None,
    **overrides: object,
) -> pd.DataFrame:
    """:func:`cell_measures` (with the traced field on CNN layers) of ``cells_per_layer``
    seeded cells (``None``: all) of each of ``layers`` (``{label: layer}``, shallow → deep)
    run on B images (:func:`run_cells`; paper Fig. 2), on Δx (``map="delta"``) and Δx
    blurred at the config's σ (``"blurred"``): one row per (layer, map, image, cell)."""
    check_images(images)
    B, size = len(images), tuple(images.shape[-2:])
    names = [f"image{i}" for i in range(B)] if image_names is None else list(image_names)
    if len(names) != B:
        raise ValueError(f"{len(names)} image_names for {B} images")
    cfg = cell_config(config, overrides, model, recipe)
    frames = []
    bar = tqdm(layers.items(), "layers", disable=not cfg.progress)
    for depth, (label, layer) in enumerate(bar):
        objective = cell_objective(model, layer, image_size=size)
        cells = sample_cells(objective.grid_shape(model, size), cells_per_layer, seed=seed)
        res = run_cells(model, images, layer, cells, cfg)
        rf = None if isinstance(objective, TokenCell) else receptive_field(model, layer, size)
        index = {
            "image": np.repeat(np.asarray(names, dtype=object), len(cells)),
            "image_index": np.repeat(np.arange(B), len(cells)),
            "layer": label,
            "depth": depth,
            "grid_h": res.grid[0],
            "grid_w": res.grid[1],
            "row": cells[:, 0].repeat(B).numpy(),
            "col": cells[:, 1].repeat(B).numpy(),
        }
        for kind, maps in (("delta", res.delta), ("blurred", res.blurred())):
            meas = cell_measures(maps.flatten(0, 1), cells, res.grid, rf=rf)
            frames.append(
                pd.DataFrame({**index, "map": kind, **{k: v.numpy() for k, v in meas.items()}})
            )
    out = pd.concat(frames, ignore_index=True)
    out["layer"] = pd.Categorical(out["layer"], categories=list(layers), ordered=True)
    return out


def summarize_by_depth(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and median of a :func:`measure_layers` table's main measures per (layer, map)."""
    main = ["mass_in_box", "mass_in_centred_box", "com_dist_cells", "com_to_rf_centre_cells"]
    g = df.groupby(["layer", "map"], observed=True)
    table = g[[m for m in [*main, "area50"] if m in df.columns]].agg(["mean", "median"])
    table[("cells", "n")] = g.size()
    table[("box_area", "value")] = g["box_area"].first()
    return table


def describe_depth_trend(df: pd.DataFrame) -> str:
    """One sentence: CAM's assumption at a table's first and last layer (unblurred Δx)."""
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
    """Each layer's receptive field (``{label: ReceptiveField}``) against its CAM box."""
    rows = []
    for label, rf in rfs.items():
        side = rf.image_size[1] / rf.grid[1]
        offset = rf.centers[0, 0] - cell_centers(rf.grid, rf.image_size, [(0, 0)])[0]
        rows.append(
            {
                "layer": label,
                "grid": "x".join(map(str, rf.grid)),
                "RF size (px)": rf.size[0],
                "jump (px)": rf.jump[0],
                "CAM box (px)": side,
                "RF / box side": rf.size[0] / side,
                "RF centre - cell centre (px)": tuple(offset.tolist()),
            }
        )
    return pd.DataFrame(rows).set_index("layer")


def locality_table(frames: Mapping[str, pd.DataFrame], map_kind: str = "delta") -> pd.DataFrame:
    """Per network (``{label: measure_layers table}``) and layer: locality vs a uniform map."""
    out = {}
    for net, df in frames.items():
        d = df[df["map"] == map_kind].groupby("layer", observed=True)
        box, mass, offset = d["box_area"].first(), d["mass_in_box"].mean(), d["com_dist_cells"]
        out[net] = pd.DataFrame(
            {
                "grid": d["grid_h"].first().astype(str) + "x" + d["grid_w"].first().astype(str),
                "cells": d.size(),
                "mass in own box": mass,
                "x uniform": mass / box,
                "offset (cells)": offset.mean(),
                "offset / uniform": offset.mean() / d["uniform_com_dist_cells"].mean(),
                "50% area / box": d["area50"].mean() / box,
            }
        )
    return pd.concat(out, names=["network", "layer"])


def _locality_text(row: pd.Series) -> str:
    return (
        f"{row['mass in own box']:.2f} of the mass in its own box ({row['x uniform']:.1f}x a "
        f"uniform map), centre of mass {row['offset (cells)']:.2f} cells from the cell centre "
        f"({row['offset / uniform']:.2f} of a uniform map's offset), half the mass over "
        f"{row['50% area / box']:.1f} boxes"
    )


def describe_measurements(df: pd.DataFrame, map_kind: str = "delta") -> str:
    """Plain text, per layer, of a :func:`measure_layers` table's ``map_kind`` maps."""
    sub = df[df["map"] == map_kind]
    rf_cols = ["mass_in_rf", "mass_in_centred_box", "com_to_rf_centre_cells"]
    rf = sub.reindex(columns=["layer", *rf_cols]).groupby("layer", observed=True)
    least, centred = rf["mass_in_rf"].min(), rf[rf_cols[1:]].mean()
    label = "unblurred Δx" if map_kind == "delta" else "blurred map"
    lines = [f"On the {label} ({sub['image'].nunique()} images; box: the cell's CAM box):"]
    for layer, row in locality_table({"": df}, map_kind).loc[""].iterrows():
        text = f"  {layer} ({row['cells']} cells): {_locality_text(row)}"
        if pd.notna(least[layer]):  # a CNN layer, with its receptive field
            box, dist = centred.loc[layer]
            text += (
                f"; least share inside the receptive field {least[layer]:.3f}; a CAM-sized box "
                f"on the field's centre holds {box:.2f}, the field's centre lies {dist:.2f} "
                "cells from the centre of mass"
            )
        lines.append(text)
    return "\n".join(lines)


def describe_locality(
    table: pd.DataFrame, network: str, first: str, reference: str, sanity: str
) -> str:
    """Plain text from :func:`locality_table`: ``network`` at ``first``, last and ``sanity``;
    ``reference``'s deepest still-local (offset / uniform < 0.25) and last layers."""
    rows, ref = table.loc[network], table.loc[reference]
    last = rows.index[-1]
    local = ref.index[ref["offset / uniform"] < 0.25]
    deepest = f"up to {local[-1]}" if len(local) else "at no layer"
    lines = [
        f"{network}, {first}: {_locality_text(rows.loc[first])}.",
        f"{network}, {last}: {_locality_text(rows.loc[last])}.",
        f"{network}, {sanity} (local by construction): {_locality_text(rows.loc[sanity])}.",
        f"{reference}: cells stay local (offset below a quarter of a uniform map's) "
        f"{deepest}; at {ref.index[-1]}: {_locality_text(ref.iloc[-1])}.",
    ]
    return "\n".join(lines)


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
    """A live explorer (a ``VBox`` whose ``explorer`` is the :class:`~fame_utils.live.LiveMap`)
    of single cells of ``layers`` (``{label: layer}``) on images (B, 3, H, W) in [0, 1]
    (paper Fig. 2): the map with the CAM box (white), the clipped receptive field (dashed
    cyan) and the :func:`cell_measures`; ``precomputed``: ``{label: (image, CellAttributions)}``."""
    import ipywidgets as W

    from ..live import SLIDER, LiveMap, image_controls

    check_images(images)
    cfg = cell_config(config, {"progress": False}, model)
    labels = list(layers)
    size = tuple(images.shape[-2:])
    grids, rfs = {}, {}
    for k in labels:
        grids[k] = cell_objective(model, layers[k], image_size=size).grid_shape(model, size)
        try:
            rfs[k] = receptive_field(model, layers[k], size)
        except NotImplementedError:  # token layers
            rfs[k] = None
    seeds = []
    for label, (b, res) in (precomputed or {}).items():
        for k, (i, j) in enumerate(res.cells.tolist()):
            settings = {"image": b, "layer": label, "row": i, "col": j}
            seeds.append(({**settings, "iterations": res.result.config.iterations}, res.result[k]))

    def run(settings: dict, hook: dict):
        cell = [(settings["row"], settings["col"])]
        objective = cell_objective(model, layers[settings["layer"]], cell, image_size=size)
        x, n = images[settings["image"] : settings["image"] + 1], settings["iterations"]
        return run_fame(model, x, objective, cfg, iterations=n, **hook)

    def annotate(settings: dict) -> list[tuple]:
        layer, row, col = settings["layer"], settings["row"], settings["col"]
        boxes = [(*cam_boxes(grids[layer], size, [(row, col)])[0].tolist(), "white", False)]
        rf = rfs[layer]
        if rf is not None:
            boxes.append((*rf.boxes_for([(row, col)], clip=True)[0].tolist(), "cyan", True))
        return boxes

    def describe(settings: dict, delta: Tensor, blurred: Tensor) -> str:
        layer, cell = settings["layer"], (settings["row"], settings["col"])
        (h, w), rf = grids[layer], rfs[layer]
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
