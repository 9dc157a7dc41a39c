"""Receptive-field measures (fame_utils.receptive.measures) on hand-made maps, and the
per-depth table."""

from __future__ import annotations

import math

import pandas as pd
import pytest
import torch

from fame_utils.receptive import (
    cell_measures,
    center_of_mass,
    describe_measurements,
    mass_area,
    mass_in_box,
    measure_layers,
    measure_run,
    receptive_field,
    run_cells,
    sample_cells,
)


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
    assert mass_area(m, share=1.0).tolist() == [pytest.approx(4 / 16), pytest.approx(3 / 16)]
    assert math.isnan(mass_area(torch.zeros(1, 3, 3)).item())
    with pytest.raises(ValueError):
        mass_area(torch.ones(4, 4))


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
    assert "16x16" in text and "8x8" in text and "CAM box" in text
    # one layer's run measured on its own gives that layer's rows
    res = run_cells(
        tiny_cnn, x, layers["8x8"], sample_cells((8, 8), 3), iterations=2, progress=False
    )
    rf = receptive_field(tiny_cnn, layers["8x8"], 16)
    one = measure_run(
        res, layer="8x8", depth=1, rf=rf, image_names=["a", "b"], sigma=1.0, kernel_size=5
    )
    rows = df[df["layer"] == "8x8"].reset_index(drop=True).astype({"layer": one["layer"].dtype})
    pd.testing.assert_frame_equal(one, rows, check_exact=False, atol=1e-9, rtol=0)
    with pytest.raises(ValueError, match="image_names"):
        measure_run(res, layer="8x8", image_names=["a"])
