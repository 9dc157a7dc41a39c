"""FAME on feature cells (fame_utils.receptive.attributions) on networks whose true
dependence is known."""

from __future__ import annotations

import pytest
import torch
from receptive_nets import conv_stack, patchify_net

from fame_utils.receptive import (
    all_cells,
    cell_measures,
    explain_cells,
    receptive_field,
    run_cells,
)


def test_patchify_cells_stay_in_their_cam_box():
    net = patchify_net()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    res = run_cells(net, x, net[4], config=None, iterations=5, progress=False)
    assert res.grid == (4, 4) and res.delta.shape == (2, 16, 32, 32)
    # the theoretical receptive field is exactly the CAM box here
    rf = receptive_field(net, net[4], 32)
    assert torch.equal(rf.boxes_for(res.cells), res.cam_boxes())
    meas = cell_measures(res.delta.flatten(0, 1), res.cells, res.grid, rf=rf)
    assert torch.equal(meas["mass_in_box"], torch.ones(32, dtype=torch.float64))
    assert torch.equal(meas["mass_in_rf"], torch.ones(32, dtype=torch.float64))
    # every cell moved: its patch changed
    assert bool((res.delta.flatten(2).amax(2) > 0).all())
    assert float(meas["com_dist_cells"].max()) < 0.5
    # the blur leaks mass across the box edges
    blurred = cell_measures(res.blurred(sigma=2.0).flatten(0, 1), res.cells, res.grid)
    assert float(blurred["mass_in_box"].max()) < 1.0


def test_conv_stack_attribution_lies_inside_the_receptive_field():
    net = conv_stack().eval()
    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    cells = [(0, 0), (2, 5), (7, 3)]
    res = run_cells(net, x, net[4], cells, iterations=4, progress=False)
    rf = receptive_field(net, net[4], 16)
    meas = cell_measures(res.delta[0], res.cells, res.grid, rf=rf)
    assert torch.allclose(meas["mass_in_rf"], torch.ones(3, dtype=torch.float64))
    # the receptive field (9 px) is wider than the 2 px CAM box: mass leaves the box
    assert float(meas["mass_in_box"].max()) < 1.0
    # support of Δx within the clipped field, cell by cell
    boxes = rf.boxes_for(cells, clip=True)
    for k in range(3):
        ys, xs = res.delta[0, k].nonzero(as_tuple=True)
        x0, y0, x1, y1 = boxes[k].tolist()
        assert ys.min() >= y0 and ys.max() < y1 and xs.min() >= x0 and xs.max() < x1


def test_batched_cells_equal_one_at_a_time(tiny_cnn):
    x = torch.rand(2, 3, 12, 12, generator=torch.Generator().manual_seed(3))
    layer = tiny_cnn[2]  # 6 × 6 output
    cells = [(0, 0), (1, 4), (5, 5), (3, 2)]
    batched = run_cells(tiny_cnn, x, layer, cells, iterations=6, batch_size=3, progress=False)
    for b in range(2):
        for k, c in enumerate(cells):
            one = run_cells(tiny_cnn, x[b : b + 1], layer, [c], iterations=6, progress=False)
            torch.testing.assert_close(batched.delta[b, k], one.delta[0, 0], atol=1e-6, rtol=0)
    maps = explain_cells(tiny_cnn, x, layer, cells, iterations=6, progress=False)
    torch.testing.assert_close(maps, batched.maps(), atol=1e-6, rtol=0)
    # re-blurring reuses Δx: σ changes without a new run
    assert not torch.allclose(batched.maps(sigma=1.0), batched.maps(sigma=4.0))


def test_all_cells_and_bad_cells(tiny_cnn):
    x = torch.rand(1, 3, 8, 8)
    res = run_cells(tiny_cnn, x, tiny_cnn[2], iterations=1, progress=False)
    assert res.cells.tolist() == all_cells((4, 4)).tolist() and res.delta.shape == (1, 16, 8, 8)
    assert res.config.batch_size is not None  # chunked by default
    with pytest.raises(ValueError, match="outside"):
        run_cells(tiny_cnn, x, tiny_cnn[2], [(4, 0)], iterations=1, progress=False)
    with pytest.raises(TypeError):
        run_cells(tiny_cnn, x, tiny_cnn[2], [(0.5, 1.0)], iterations=1, progress=False)
