"""Locality of cell maps compared across networks whose grids differ (issue 13).

:func:`~fame_utils.receptive.measures.measure_layers` measures, per cell, the share of mass
inside the cell's CAM box (for a ViT token: its own patch), the centre-of-mass offset from
the cell centre and the area holding half of the mass. Those raw numbers cannot be compared
between an 8 × 8 token grid and a 56 × 56 CNN grid, so :func:`locality_table` also divides
each by what a map spread evenly over the image would give:

- ``x uniform`` = mass in the box / box area (1: no locality; the box's inverse area: all
  of the mass in the box);
- ``offset / uniform`` = centre-of-mass offset / the offset of a uniform map's centre of
  mass, the image centre (1: no locality; 0: centred on the cell);
- ``50% area / box`` = area holding half of the mass / box area (≤ 0.5 when all of the mass
  lies in the box).

:func:`describe_locality` writes the comparison as text from such a table.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd

__all__ = ["locality_table", "describe_locality"]


def locality_table(frames: Mapping[str, pd.DataFrame], map_kind: str = "delta") -> pd.DataFrame:
    """Per network and layer, the mean locality measures and their uniform-relative forms.

    Args:
        frames: ``{network label: measure_layers(...) DataFrame}``.
        map_kind: ``"delta"`` (the unblurred Δx, default) or ``"blurred"``.

    Returns:
        DataFrame indexed by (network, layer) in the given and depth order, columns
        ``grid``, ``cells``, ``mass in own box``, ``x uniform``, ``offset (cells)``,
        ``offset / uniform``, ``50% area / box`` (see the module docstring).
    """
    out = {}
    for net, df in frames.items():
        d = df[df["map"] == map_kind].groupby("layer", observed=True)
        box = d["box_area"].first()
        mass, offset = d["mass_in_box"].mean(), d["com_dist_cells"].mean()
        out[net] = pd.DataFrame(
            {
                "grid": d["grid_h"].first().astype(str) + "x" + d["grid_w"].first().astype(str),
                "cells": d.size(),
                "mass in own box": mass,
                "x uniform": mass / box,
                "offset (cells)": offset,
                "offset / uniform": offset / d["uniform_com_dist_cells"].mean(),
                "50% area / box": d["area50"].mean() / box,
            }
        )
    return pd.concat(out, names=["network", "layer"])


def _layer_text(row: pd.Series) -> str:
    return (
        f"{row['mass in own box']:.2f} of the mass in its own box ({row['x uniform']:.1f}x a "
        f"uniform map), centre of mass {row['offset (cells)']:.2f} cells from the cell centre "
        f"({row['offset / uniform']:.2f} of a uniform map's offset), half the mass over "
        f"{row['50% area / box']:.1f} boxes"
    )


def describe_locality(
    table: pd.DataFrame,
    network: str,
    first: str,
    reference: str | None = None,
    sanity: str | None = None,
) -> str:
    """Plain text from :func:`locality_table`: ``network`` at layer ``first`` and at its
    last layer, optionally at a ``sanity`` layer of it that is local by construction (e.g.
    a ViT's patch embedding), and the ``reference`` network's deepest layer that is still
    local (offset / uniform < 0.25) and its last layer."""
    rows = table.loc[network]
    last = rows.index[-1]
    lines = [
        f"{network}, {first}: {_layer_text(rows.loc[first])}.",
        f"{network}, {last}: {_layer_text(rows.loc[last])}.",
    ]
    if sanity is not None:
        lines.append(
            f"{network}, {sanity} (local by construction): {_layer_text(rows.loc[sanity])}."
        )
    if reference is not None:
        ref = table.loc[reference]
        local = ref.index[ref["offset / uniform"] < 0.25]
        deepest = f"up to {local[-1]}" if len(local) else "at no layer"
        lines.append(
            f"{reference}: cells stay local (offset below a quarter of a uniform map's) "
            f"{deepest}; at {ref.index[-1]}: {_layer_text(ref.iloc[-1])}."
        )
    return "\n".join(lines)
