"""Receptive fields across depth (issue 4): cells, CAM boxes, theoretical receptive fields,
measures, and FAME cell attributions on networks whose true dependence is known."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fame_utils.receptive import (
    all_cells,
    cam_boxes,
    cell_centers,
    cell_measures,
    cells_at,
    center_of_mass,
    describe_measurements,
    empirical_receptive_field,
    explain_cells,
    mass_area,
    mass_in_box,
    measure_layers,
    receptive_field,
    run_cells,
    sample_cells,
)

# ------------------------------------------------------------------------------------
# hand-built networks
# ------------------------------------------------------------------------------------


def _positive(module: nn.Module) -> nn.Module:
    """All weights positive, so that with positive inputs every unit is on and the
    gradient support equals the theoretical receptive field."""
    torch.manual_seed(0)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.rand_like(p) + 0.1)
    return module.eval()


def patchify_net() -> nn.Module:
    """Cell (i, j) provably depends only on its 8 × 8 patch: kernel = stride = 8, then 1 × 1."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 6, 8, stride=8),
        nn.ReLU(),
        nn.Conv2d(6, 6, 1),
        nn.Tanh(),
        nn.Conv2d(6, 4, 1),
    ).eval()


def conv_stack() -> nn.Module:
    """3×3 s1 p1 → 3×3 s2 p1 → 3×3 s1 p1. By hand (r, j, first row range):
    conv1 r=3 j=1 [-1, 1]; conv2 r=5 j=2 [-2, 2]; conv3 r=9 j=2 [-4, 4], so output row o
    covers input rows 2o-4 .. 2o+4 (half-open [2o-4, 2o+5))."""
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 4, 3, padding=1),
    )


class Residual(nn.Module):
    """main: 1×1 conv; shortcut: 5×5 conv (pad 2). The sum depends on the wider branch."""

    def __init__(self):
        super().__init__()
        self.main = nn.Conv2d(3, 4, 1)
        self.short = nn.Conv2d(3, 4, 5, padding=2)

    def forward(self, x):
        y = self.main(x)
        y += self.short(x)  # in-place add, as in torchvision's Bottleneck
        return torch.relu(y)


class TFSame(nn.Module):
    """TensorFlow "same" padding done in forward: 3×3 stride 2 on an even input pads
    (0, 1): output cell o covers input 2o .. 2o+2 (CAM would centre it at 2o + 1)."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)
        self.pool = nn.AvgPool2d(2)  # (a max-pool's gradient reaches only the argmax)

    def forward(self, x):
        x = F.pad(x, (0, 1, 0, 1))
        return self.pool(self.conv(x))


# ------------------------------------------------------------------------------------
# cells and CAM boxes
# ------------------------------------------------------------------------------------


def test_cam_boxes_by_hand():
    b = cam_boxes((7, 7), (224, 224), [(2, 3), (0, 0), (6, 6)])
    assert b.tolist() == [[96, 64, 128, 96], [0, 0, 32, 32], [192, 192, 224, 224]]
    # non-integer cell size: 10 px over 3 cells
    b = cam_boxes((3, 3), (10, 10), [(1, 2)])
    assert torch.allclose(b, torch.tensor([[20 / 3, 10 / 3, 10.0, 20 / 3]], dtype=torch.float64))
    c = cell_centers((2, 4), (4, 8), [(1, 3)])
    assert c.tolist() == [[7.0, 3.0]]


def test_cell_helpers():
    assert all_cells((2, 3)).tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1], [1, 2]]
    s1, s2 = sample_cells((56, 56), 5, seed=3), sample_cells((56, 56), 5, seed=3)
    assert torch.equal(s1, s2) and len({tuple(c) for c in s1.tolist()}) == 5
    assert not torch.equal(s1, sample_cells((56, 56), 5, seed=4))
    assert sample_cells((7, 7), 100).shape == (49, 2)
    assert cells_at((7, 7), [(0.5, 0.5), (0.0, 0.99)]).tolist() == [[3, 3], [0, 6]]


# ------------------------------------------------------------------------------------
# measures on hand-made maps
# ------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------
# theoretical receptive fields
# ------------------------------------------------------------------------------------


def test_receptive_field_of_conv_stack_by_hand():
    net = conv_stack().eval()
    rf = receptive_field(net, net[4], 16)
    assert rf.grid == (8, 8) and rf.size == (9, 9) and rf.jump == (2.0, 2.0)
    o = torch.arange(8, dtype=torch.float64)
    assert torch.equal(rf.boxes[0, :, 0], 2 * o - 4) and torch.equal(rf.boxes[0, :, 2], 2 * o + 5)
    assert torch.equal(rf.boxes[:, 0, 1], 2 * o - 4) and torch.equal(rf.boxes[:, 0, 3], 2 * o + 5)
    assert rf.box(0, 0, clip=True).tolist() == [0, 0, 5, 5]
    # the gradient support of a positive network fills the clipped field exactly
    _positive(net)
    cells = [(0, 0), (3, 5), (7, 7)]
    emp = empirical_receptive_field(net, net[4], cells, 16)
    assert torch.equal(emp, rf.boxes_for(cells, clip=True))


def test_receptive_field_is_the_max_over_residual_branches():
    net = nn.Sequential(Residual()).eval()
    rf = receptive_field(net, net[0], 12)
    assert rf.size == (5, 5) and rf.jump == (1.0, 1.0)
    assert rf.box(4, 6).tolist() == [4, 2, 9, 7]
    _positive(net)
    emp = empirical_receptive_field(net, net[0], [(0, 0), (4, 6)], 12)
    assert torch.equal(emp, rf.boxes_for([(0, 0), (4, 6)], clip=True))


def test_receptive_field_follows_dynamic_tf_same_padding():
    net = TFSame().eval()
    rf = receptive_field(net, net, 16)
    # conv: cell o covers 2o .. 2o+2 (r 3, j 2); 2×2 pool: r = 3 + 2 = 5, j = 4,
    # cell o covers 4o .. 4o+4
    assert rf.grid == (4, 4) and rf.size == (5, 5) and rf.jump == (4.0, 4.0)
    assert rf.box(1, 2).tolist() == [8, 4, 13, 9]
    cells = [(0, 0), (1, 2), (3, 3)]
    _positive(net)
    assert torch.equal(
        empirical_receptive_field(net, net, cells, 16), rf.boxes_for(cells, clip=True)
    )


def test_receptive_field_rejects_upsampling():
    class Up(nn.Module):
        def forward(self, x):
            return F.interpolate(x, scale_factor=2.0)

    net = nn.Sequential(nn.Conv2d(3, 2, 3), Up(), nn.Conv2d(2, 2, 1)).eval()
    with pytest.raises(NotImplementedError, match="interpolate"):
        receptive_field(net, net[2], 8)


@pytest.mark.slow
def test_resnet50_receptive_fields_match_published_values():
    """torchvision ResNet-50 (stride in the first block's 3×3 conv, "v1.5"): 35, 91, 267,
    427 px with jumps 4, 8, 16, 32 — the table "ResNet Receptive Field Size" (samson-wang,
    GitHub gist a6073c18f2adf16e0ab5fb95b53db3e6: resnet50 layer1..layer4 = 35/91/267/427,
    counting the stem's max-pool, maxpool = 11).

    Araujo, Norris & Sim, "Computing Receptive Fields of Convolutional Neural Networks",
    Distill 2019, list 483 px (jump 32) for TF-slim ``resnet_v1_50``'s final end-point. That
    network puts the stride-2 3×3 in the *last* unit of blocks 1-3 (and none in block 4), so
    more 3×3 convs run at the finer jump; rebuilding ResNet-50 with torchvision blocks in
    that layout reproduces 483, which checks the tracer against the Distill table too."""
    from torchvision.models import resnet50
    from torchvision.models.resnet import Bottleneck

    with torch.device("meta"):  # shapes only: no weights to initialise, no arithmetic
        net = resnet50().eval()
    expected = {"maxpool": 11, "layer1": 35, "layer2": 91, "layer3": 267, "layer4": 427}
    for name, r in expected.items():
        rf = receptive_field(net, name, 224)
        assert rf.size == (r, r), name
    rf = receptive_field(net, "layer4", 224)
    assert rf.jump == (32.0, 32.0) and rf.grid == (7, 7)
    # symmetric padding: the field of cell (i, j) is centred on 32·(i, j) + 0.5, i.e.
    # half a cell up-left of the CAM box centre 32·(i, j) + 16
    assert rf.box(3, 3).tolist() == [96 - 213, 96 - 213, 96 + 214, 96 + 214]
    # a blob at pixels 84..87 lies outside cell (3, 3)'s CAM box [96, 128) but inside the
    # CAM-sized box centred on the field's centre, [80.5, 112.5)
    blob = torch.zeros(1, 224, 224)
    blob[0, 84:88, 84:88] = 1.0
    meas = cell_measures(blob, [(3, 3)], (7, 7), rf=rf)
    assert meas["mass_in_box"].item() == 0.0 and meas["mass_in_centred_box"].item() == 1.0
    assert meas["com_dist_px"].item() == pytest.approx(math.hypot(26, 26))
    assert meas["com_to_rf_centre_cells"].item() == pytest.approx(math.hypot(10.5, 10.5) / 32)

    def stage(cin, planes, units, stride_last):
        layers = []
        for u in range(units):
            stride = 2 if (stride_last and u == units - 1) else 1
            inp = cin if u == 0 else planes * 4
            down = None
            if stride != 1 or inp != planes * 4:
                down = nn.Sequential(nn.Conv2d(inp, planes * 4, 1, stride=stride, bias=False))
            layers.append(Bottleneck(inp, planes, stride=stride, downsample=down))
        return nn.Sequential(*layers)

    with torch.device("meta"):
        slim = nn.Sequential(
            nn.Conv2d(3, 64, 7, stride=2, padding=3),
            nn.MaxPool2d(3, stride=2, padding=1),
            stage(64, 64, 3, True),
            stage(256, 128, 4, True),
            stage(512, 256, 6, True),
            stage(1024, 512, 3, False),
        ).eval()
    rf = receptive_field(slim, slim[5], 224)
    assert rf.size == (483, 483) and rf.jump == (32.0, 32.0)


@pytest.mark.slow
def test_efficientnet_lite0_receptive_field_matches_gradients():
    """EfficientNet-Lite0 with TF "same" padding: the traced field equals the gradient
    support at the 28x28 and 14x14 stages. Sizes by hand with r += (k-1)·j: 67 px at
    blocks.4 (j 8), 339 px at blocks.10 (j 16), 851 px at the head (j 32)."""
    from fame_utils.models import load_classifier

    model = load_classifier("efficientnet_lite0")
    stages = model.stages
    for key, r in (("28x28", 67), ("14x14", 339), ("7x7", 851)):
        rf = receptive_field(model, stages[key])
        assert rf.size == (r, r), key
    rf = receptive_field(model, stages["14x14"])
    # TF "same" pads stride-2 layers at the bottom/right: fields shift down-right
    assert rf.box(0, 0).tolist() == [-154, -154, 185, 185]
    cells = [(0, 0), (5, 9), (13, 13)]
    emp = empirical_receptive_field(model, stages["14x14"], cells)
    assert torch.equal(emp, rf.boxes_for(cells, clip=True))


# ------------------------------------------------------------------------------------
# FAME on cells
# ------------------------------------------------------------------------------------


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


# ------------------------------------------------------------------------------------
# figures and the explorer
# ------------------------------------------------------------------------------------


def _rectangles(ax):
    import matplotlib.pyplot as plt

    return [p for p in ax.patches if isinstance(p, plt.Rectangle)]


def test_contact_sheet_draws_each_cam_box_in_its_panel():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fame_utils.receptive import plot_contact_sheet

    image, maps = torch.rand(3, 8, 12), torch.rand(6, 8, 12)
    fig = plot_contact_sheet(image, maps, (2, 3))
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 6
    # panel (1, 2) -> box cols [8, 12), rows [4, 8), drawn at pixel edges (-0.5 offset)
    (rect,) = _rectangles(fig.axes[5])
    assert rect.get_xy() == (7.5, 3.5) and (rect.get_width(), rect.get_height()) == (4, 4)
    plt.close(fig)
    with pytest.raises(ValueError, match="max_panels"):
        plot_contact_sheet(image, torch.rand(3136, 2, 2), (56, 56))


@pytest.mark.slow
def test_depth_figure_and_measurement_plot(tiny_cnn):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fame_utils.receptive import DepthRow, plot_cells_by_depth, plot_measurements

    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    rows = []
    for label, layer in (("16x16", tiny_cnn[0]), ("8x8", tiny_cnn[2])):
        res = run_cells(tiny_cnn, x, layer, [(0, 0), (3, 3)], iterations=2, progress=False)
        rf = receptive_field(tiny_cnn, layer, 16)
        rows.append(DepthRow(label, res.maps(sigma=1.0, kernel_size=5)[0], res.cells, res.grid, rf))
    fig = plot_cells_by_depth(x[0], rows)
    assert len(fig.axes) == 2 * 3
    # cell (3, 3) of the 8x8 layer: CAM box [6, 8) (white) and receptive field (dashed)
    rects = _rectangles(fig.axes[5])
    assert sorted(r.get_edgecolor()[:3] == (1.0, 1.0, 1.0) for r in rects) == [False, True]
    plt.close(fig)
    df = measure_layers(
        tiny_cnn,
        x,
        {"16x16": tiny_cnn[0], "8x8": tiny_cnn[2]},
        cells_per_layer=2,
        iterations=2,
        sigma=1.0,
        kernel_size=5,
        progress=False,
    )
    fig = plot_measurements(df, sigma=1.0)
    assert len(fig.axes) == 3 and fig.axes[0].get_ylabel().startswith("share of mass")
    plt.close(fig)


def test_cell_explorer_caches_runs(tiny_cnn, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import fame_utils.receptive as rfm

    calls = []
    real = rfm.run_cells

    def counting(*args, **kwargs):
        calls.append(args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr(rfm, "run_cells", counting)
    x = torch.rand(2, 3, 16, 16)
    w = rfm.cell_explorer(
        tiny_cnn,
        x,
        ["a", "b"],
        {"16x16": tiny_cnn[0], "8x8": tiny_cnn[2]},
        iterations=2,
        sigma=1.0,
    )
    w.update()
    assert calls == [[(4, 4)]]  # default: centre cell of the deepest layer
    w.children[5].value = 2.0  # σ: re-blur only
    w.update()
    assert len(calls) == 1
    w.children[1].value = "16x16"  # another layer: one new run; sliders get its range
    w.update()
    assert len(calls) == 2 and w.children[2].max == 15
    w.show_current()  # same choice, drawn outside the output widget: cached
    assert len(calls) == 2
