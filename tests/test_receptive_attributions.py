"""FAME on feature cells (fame_utils.receptive.cells.run_cells) on networks whose true
dependence is known."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from receptive_nets import conv_stack, patchify_net
from torch import nn

from fame_utils.core import FameConfig
from fame_utils.postprocess import GRAY_WEIGHTS
from fame_utils.receptive import cell_measures, measure_layers, receptive_field, run_cells
from fame_utils.receptive.cells import all_cells, cam_boxes


def test_patchify_cells_stay_in_their_cam_box():
    net = patchify_net()
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    res = run_cells(net, x, net[4], config=None, iterations=5, progress=False)
    assert res.grid == (4, 4) and res.delta.shape == (2, 16, 32, 32)
    # the theoretical receptive field is exactly the CAM box here
    rf = receptive_field(net, net[4], 32)
    assert torch.equal(rf.boxes_for(res.cells), cam_boxes(res.grid, res.image_size, res.cells))
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
    # chunking does not change the maps: the default chunk holds all 8 samples
    maps = run_cells(tiny_cnn, x, layer, cells, iterations=6, progress=False).maps()
    torch.testing.assert_close(maps, batched.maps(), atol=1e-6, rtol=0)
    # re-blurring reuses Δx: σ changes without a new run
    assert not torch.allclose(batched.maps(sigma=1.0), batched.maps(sigma=4.0))


def test_all_cells_and_bad_cells(tiny_cnn):
    x = torch.rand(1, 3, 8, 8)
    res = run_cells(tiny_cnn, x, tiny_cnn[2], iterations=1, progress=False)
    assert res.cells.tolist() == all_cells((4, 4)).tolist() and res.delta.shape == (1, 16, 8, 8)
    assert res.result.config.batch_size is not None  # chunked by default
    with pytest.raises(ValueError, match="outside"):
        run_cells(tiny_cnn, x, tiny_cnn[2], [(4, 0)], iterations=1, progress=False)
    with pytest.raises(TypeError):
        run_cells(tiny_cnn, x, tiny_cnn[2], [(0.5, 1.0)], iterations=1, progress=False)


# ------------------------------------------------------------------------------------
# step space from the recipe (issue 10, item 5)
# ------------------------------------------------------------------------------------

_MEAN, _STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


class _NormalisedSum(nn.Module):
    """a = Σ_c w_c·(x_c − m_c)/s_c with w_c = s_c, i.e. a = Σ_c (x_c − m_c) per pixel: the
    model normalises inside (``input_normalization``), so the step space matters."""

    input_normalization = (_MEAN, _STD)

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor(_STD).view(1, 3, 1, 1))

    def forward(self, x):
        m = torch.tensor(_MEAN).view(1, 3, 1, 1)
        s = torch.tensor(_STD).view(1, 3, 1, 1)
        return self.conv((x - m) / s)


def test_recipe_sets_the_feature_cell_step_space():
    """One step on a = Σ_c (x_c − m_c) at pixel (1, 2), a > 0. In pixel space (reference)
    ∂a/∂x_c = 1 in every channel, so the max-normalised step moves every channel by
    exactly η and a drops by 3η. In normalised space (paper) x = x₀ + s·δ, ∂a/∂δ_c = s_c,
    the step is s_c / max s, so channel c moves by η·s_c²/max s (at most η·0.229)."""
    net = _NormalisedSum().eval()
    x = torch.full((1, 3, 4, 4), 0.9)
    eta = 1 / 255
    kw = dict(iterations=1, progress=False)
    ref = run_cells(net, x, net.conv, [(1, 2)], recipe="reference", **kw)
    paper = run_cells(net, x, net.conv, [(1, 2)], **kw)  # default: the paper recipe
    assert (
        ref.result.config.step_space == "pixel" and paper.result.config.step_space == "normalized"
    )
    drop_ref = float(ref.result.initial_loss - ref.result.final_loss)
    drop_paper = float(paper.result.initial_loss - paper.result.final_loss)
    assert drop_ref == pytest.approx(3 * eta, rel=1e-4)  # every channel moved by η
    assert drop_paper == pytest.approx(eta * sum(s * s for s in _STD) / max(_STD), rel=1e-4)
    # Δx (gray of the step-space change) sits on the cell's pixel only
    gray = sum(GRAY_WEIGHTS)
    assert ref.delta[0, 0, 1, 2].item() == pytest.approx(eta * gray, rel=1e-5)
    assert ref.delta[0, 0].sum().item() == pytest.approx(eta * gray, rel=1e-5)
    # an explicit step_space= sets that field; a given config runs as given, and one that
    # disagrees with an explicitly given recipe is refused
    forced = run_cells(net, x, net.conv, [(1, 2)], recipe="paper", step_space="pixel", **kw)
    torch.testing.assert_close(forced.delta, ref.delta)
    mine = run_cells(net, x, net.conv, [(1, 2)], FameConfig(step_space="pixel"), **kw)
    torch.testing.assert_close(mine.delta, ref.delta)
    with pytest.raises(ValueError, match="disagrees with recipe 'paper'"):
        run_cells(net, x, net.conv, [(1, 2)], FameConfig(step_space="pixel"), recipe="paper", **kw)
    # measure_layers takes step_space= as run_cells does (it used to refuse it)
    sample = {"cells_per_layer": 2, **kw}
    forced = measure_layers(net, x, {"1x1": net.conv}, step_space="pixel", **sample)
    pd.testing.assert_frame_equal(
        forced, measure_layers(net, x, {"1x1": net.conv}, recipe="reference", **sample)
    )
