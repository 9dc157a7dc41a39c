"""Receptive-field measures (fame_utils.receptive.measures) on hand-made maps, and the
per-depth table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from fame_utils.receptive import (
    ReceptiveField,
    cell_measures,
    describe_depth_trend,
    describe_locality,
    describe_measurements,
    locality_table,
    measure_layers,
    receptive_field,
    receptive_field_table,
    run_cells,
)
from fame_utils.receptive.cells import sample_cells
from fame_utils.receptive.measures import center_of_mass, mass_area, mass_in_box


def test_mass_in_box_by_hand():
    m = torch.zeros(1, 4, 4)
    m[0, 0, 0], m[0, 1, 1], m[0, 3, 3], m[0, 2, 0] = 1.0, 2.0, 3.0, 4.0
    # box = rows 0-1, cols 0-1 holds 1 + 2 of 10
    assert mass_in_box(m, torch.tensor([0, 0, 2, 2])).item() == pytest.approx(0.3)
    # fractional box: pixel centres 0.5, 1.5 lie in [0, 1.6) -> same pixels
    assert mass_in_box(m, torch.tensor([0, 0, 1.6, 1.6])).item() == pytest.approx(0.3)
    # a box [0.6, 2) holds only pixel 1 (centre 1.5)
    assert mass_in_box(m, torch.tensor([0.6, 0.6, 2, 2])).item() == pytest.approx(0.2)
    # boxes beyond the image count only what is inside; empty maps give NaN
    both = torch.stack([m[0], torch.zeros(4, 4)])
    out = mass_in_box(both, torch.tensor([[-5, 1, 9, 9], [0, 0, 4, 4]]))
    assert out[0].item() == pytest.approx(0.9) and math.isnan(out[1].item())


def test_center_of_mass_and_distance_by_hand():
    m = torch.zeros(1, 4, 8)
    m[0, 1, 1] = 1.0  # centre (1.5, 1.5)
    m[0, 1, 5] = 3.0  # centre (5.5, 1.5)
    com = center_of_mass(m)
    assert com.tolist() == [[pytest.approx((1.5 + 3 * 5.5) / 4), pytest.approx(1.5)]]
    # 2 × 2 grid on a 4 × 8 image: cells are 4 px wide, 2 px high; cell (0, 0) centre (2, 1)
    meas = cell_measures(m, [(0, 0)], (2, 2))
    dx, dy = (1.5 + 3 * 5.5) / 4 - 2, 0.5
    assert meas["com_dist_px"].item() == pytest.approx(math.hypot(dx, dy))
    assert meas["com_dist_cells"].item() == pytest.approx(math.hypot(dx / 4, dy / 2))
    assert meas["mass_in_box"].item() == pytest.approx(0.25)
    assert meas["box_area"].item() == pytest.approx(0.25)
    # a uniform map's centre of mass is the image centre (4, 2): (-2/4, -1/2) cell widths
    assert meas["uniform_com_dist_cells"].item() == pytest.approx(math.hypot(0.5, 0.5))


def test_mass_area_by_hand():
    m = torch.zeros(2, 4, 4)
    m[0].view(-1)[:4] = torch.tensor([4.0, 3.0, 2.0, 1.0])  # 50% of 10: 4 + 3 -> 2 pixels
    m[1].view(-1)[:3] = torch.tensor([5.0, 3.0, 2.0])  # exactly 5 in the top pixel -> 1
    assert mass_area(m).tolist() == [pytest.approx(2 / 16), pytest.approx(1 / 16)]
    assert mass_area(torch.ones(1, 4, 4)).item() == pytest.approx(0.5)
    assert math.isnan(mass_area(torch.zeros(1, 3, 3)).item())
    with pytest.raises(ValueError, match="unsqueeze"):
        cell_measures(torch.ones(4, 4), [(0, 0)], (1, 1))


def test_measure_layers_table(tiny_cnn):
    x = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    layers = {"16x16": tiny_cnn[0], "8x8": tiny_cnn[2]}
    df = measure_layers(
        tiny_cnn,
        x,
        layers,
        cells_per_layer=3,
        iterations=2,
        sigma=1.0,
        kernel_size=5,
        image_names=["a", "b"],
        progress=False,
    )
    assert len(df) == 2 * 2 * 3 * 2  # layers x images x cells x maps
    assert list(df["layer"].cat.categories) == ["16x16", "8x8"]
    d = df[df["map"] == "delta"]
    # unblurred Δx never leaves the theoretical field
    assert d["mass_in_rf"].min() == pytest.approx(1.0)
    # the first conv (3×3, pad 1) reaches one pixel beyond its 1-pixel CAM box
    assert d[d["layer"] == "16x16"]["mass_in_box"].max() < 1.0
    text = describe_measurements(df)
    assert "16x16 (6 cells)" in text and "8x8 (6 cells)" in text and "CAM box" in text
    # a layer's rows are cell_measures of its run_cells on Δx, then on the blurred Δx
    blur = {"sigma": 1.0, "kernel_size": 5}
    cells = sample_cells((8, 8), 3)
    res = run_cells(tiny_cnn, x, layers["8x8"], cells, iterations=2, progress=False, **blur)
    rf = receptive_field(tiny_cnn, layers["8x8"], 16)
    rows = df[df["layer"] == "8x8"]
    for kind, maps in (("delta", res.delta), ("blurred", res.blurred())):
        got = rows[rows["map"] == kind]
        assert got["image"].tolist() == ["a"] * 3 + ["b"] * 3 and set(got["depth"]) == {1}
        assert got[["row", "col"]].to_numpy().tolist() == cells.repeat(2, 1).tolist()
        for name, value in cell_measures(maps.flatten(0, 1), cells, (8, 8), rf=rf).items():
            np.testing.assert_allclose(got[name], value.numpy(), atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match="image_names"):
        measure_layers(tiny_cnn, x, layers, image_names=["a"])


def _two_fields() -> dict[str, ReceptiveField]:
    """Hand-made fields on an 8 × 8 image: a 2 × 2 layer whose 6-px fields sit one pixel
    right of the 4-px CAM boxes (x [4j, 4j+6), y [4i-1, 4i+5)), and a 1 × 1 layer whose
    14-px field overhangs the image by 3 px on every side."""
    i, j = torch.meshgrid(torch.arange(2.0), torch.arange(2.0), indexing="ij")
    shallow = torch.stack([4 * j, 4 * i - 1, 4 * j + 6, 4 * i + 5], -1).double()
    deep = torch.tensor([[[-3.0, -3.0, 11.0, 11.0]]], dtype=torch.float64)
    return {
        "2x2": ReceptiveField(shallow, (6, 6), (4.0, 4.0), (8, 8)),
        "1x1": ReceptiveField(deep, (14, 14), (8.0, 8.0), (8, 8)),
    }


def test_receptive_field_table_by_hand(tiny_cnn):
    table = receptive_field_table(_two_fields())
    assert list(table.index) == ["2x2", "1x1"] and table.index.name == "layer"
    assert table.loc["2x2"].tolist() == ["2x2", 6, 4.0, 4.0, 1.5, (1.0, 0.0)]
    assert table.loc["1x1"].tolist() == ["1x1", 14, 8.0, 8.0, 1.75, (0.0, 0.0)]
    # traced: 3×3 pad 1, then 3×3 stride 2 pad 1 -> 5 px, jump 2; cell (0, 0) sees input
    # [-2, 3) (centre 0.5) while its CAM box is [0, 2) (centre 1)
    traced = receptive_field_table({"8x8": receptive_field(tiny_cnn, tiny_cnn[2], 16)})
    assert traced.loc["8x8"].tolist() == ["8x8", 5, 2.0, 2.0, 2.5, (-0.5, -0.5)]


def _trend_table(deep_mass: tuple[float, float]) -> pd.DataFrame:
    """Two layers named so that alphabetical order ("deep" < "shallow") is not depth
    order; the blurred rows carry values that must not enter the sentence."""
    rows = []
    for layer, mass, com, box, uni in (
        ("shallow", (0.8, 0.6), (0.1, 0.3), 0.25, (1.0, 1.0)),
        ("deep", deep_mass, (0.5, 0.7), 0.05, (0.9, 1.1)),
    ):
        for k in range(2):
            for kind, scale in (("delta", 1.0), ("blurred", 0.5)):
                rows.append(
                    {
                        "layer": layer,
                        "map": kind,
                        "mass_in_box": scale * mass[k],
                        "com_dist_cells": scale * com[k],
                        "box_area": box,
                        "uniform_com_dist_cells": uni[k],
                    }
                )
    df = pd.DataFrame(rows)
    df["layer"] = pd.Categorical(df["layer"], categories=["shallow", "deep"], ordered=True)
    return df


def test_describe_depth_trend_by_hand():
    # shallow: mass 0.7 (0.7 / 0.25 = 2.8 -> "3x"), distance 0.2; deep: mass 0.2
    # (0.2 / 0.05 = 4.0x, 80% outside), distance 0.6, uniform map 1.0
    assert describe_depth_trend(_trend_table((0.1, 0.3))) == (
        "From shallow to deep the mean share of the unblurred attribution inside the CAM "
        "box falls (0.70 -> 0.20); at deep 80% of a cell's attribution lies outside the "
        "patch CAM assigns to it (4.0x what a uniform map would put there; at shallow: "
        "3x), and its centre of mass sits 0.60 cell widths from the cell centre (a uniform "
        "map: 1.00; at shallow: 0.20)."
    )
    rising = describe_depth_trend(_trend_table((0.9, 0.9)))
    assert "CAM box does not fall (0.70 -> 0.90); at deep 10% of" in rising
    with pytest.raises(ValueError, match="map == 'delta'"):
        describe_depth_trend(_trend_table((0.1, 0.3)).query("map == 'blurred'"))


def test_locality_table_and_text_by_hand():
    """Uniform-relative locality from hand-made measurement rows of two networks."""

    def rows(layer, grid, mass, offset, uniform, area):
        return [
            {
                "layer": layer,
                "map": kind,
                "grid_h": grid,
                "grid_w": grid,
                "box_area": 1 / grid**2,
                "mass_in_box": mass if kind == "delta" else 0.0,
                "com_dist_cells": offset,
                "uniform_com_dist_cells": uniform,
                "area50": area,
            }
            for kind in ("delta", "blurred")
        ]

    vit_df = pd.DataFrame(
        rows("block1", 8, 0.25, 1.0, 2.0, 1 / 32) + rows("block4", 8, 0.0625, 2.0, 2.0, 0.25)
    )
    cnn_df = pd.DataFrame(
        rows("56x56", 56, 0.5, 0.1, 20.0, 0.0) + rows("7x7", 7, 0.1, 1.5, 3.0, 0.2)
    )
    table = locality_table({"vit": vit_df, "cnn": cnn_df})
    assert list(table.index) == [
        ("vit", "block1"),
        ("vit", "block4"),
        ("cnn", "56x56"),
        ("cnn", "7x7"),
    ]
    b1 = table.loc[("vit", "block1")]
    assert b1["grid"] == "8x8" and b1["cells"] == 1
    assert b1["x uniform"] == pytest.approx(16.0) and b1["offset / uniform"] == pytest.approx(0.5)
    assert b1["50% area / box"] == pytest.approx(2.0)
    assert table.loc[("vit", "block4"), "x uniform"] == pytest.approx(4.0)
    text = describe_locality(table, "vit", "block1", "cnn", "block4")
    assert "vit, block1: 0.25 of the mass in its own box (16.0x a uniform map)" in text
    assert "0.50 of a uniform map's offset" in text and "half the mass over 2.0 boxes" in text
    assert "cnn: cells stay local (offset below a quarter of a uniform map's) up to 56x56" in text
