"""Theoretical receptive fields (fame_utils.receptive.cells) by hand, against published
values and against gradient support."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from receptive_nets import Residual, TFSame, conv_stack, make_positive
from torch import nn

from fame_utils.receptive import (
    cell_measures,
    empirical_receptive_field,
    receptive_field,
)


def test_receptive_field_of_conv_stack_by_hand():
    net = conv_stack().eval()
    rf = receptive_field(net, net[4], 16)
    assert rf.grid == (8, 8) and rf.size == (9, 9) and rf.jump == (2.0, 2.0)
    o = torch.arange(8, dtype=torch.float64)
    assert torch.equal(rf.boxes[0, :, 0], 2 * o - 4) and torch.equal(rf.boxes[0, :, 2], 2 * o + 5)
    assert torch.equal(rf.boxes[:, 0, 1], 2 * o - 4) and torch.equal(rf.boxes[:, 0, 3], 2 * o + 5)
    assert rf.boxes_for([(0, 0)], clip=True)[0].tolist() == [0, 0, 5, 5]
    # the gradient support of a positive network fills the clipped field exactly
    make_positive(net)
    cells = [(0, 0), (3, 5), (7, 7)]
    emp = empirical_receptive_field(net, net[4], cells, 16)
    assert torch.equal(emp, rf.boxes_for(cells, clip=True))


def test_receptive_field_is_the_max_over_residual_branches():
    net = nn.Sequential(Residual()).eval()
    rf = receptive_field(net, net[0], 12)
    assert rf.size == (5, 5) and rf.jump == (1.0, 1.0)
    assert rf.boxes_for([(4, 6)])[0].tolist() == [4, 2, 9, 7]
    make_positive(net)
    emp = empirical_receptive_field(net, net[0], [(0, 0), (4, 6)], 12)
    assert torch.equal(emp, rf.boxes_for([(0, 0), (4, 6)], clip=True))


def test_receptive_field_follows_dynamic_tf_same_padding():
    net = TFSame().eval()
    rf = receptive_field(net, net, 16)
    # conv: cell o covers 2o .. 2o+2 (r 3, j 2); 2×2 pool: r = 3 + 2 = 5, j = 4,
    # cell o covers 4o .. 4o+4
    assert rf.grid == (4, 4) and rf.size == (5, 5) and rf.jump == (4.0, 4.0)
    assert rf.boxes_for([(1, 2)])[0].tolist() == [8, 4, 13, 9]
    cells = [(0, 0), (1, 2), (3, 3)]
    make_positive(net)
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
    assert rf.boxes_for([(3, 3)])[0].tolist() == [96 - 213, 96 - 213, 96 + 214, 96 + 214]
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
    from fame_utils.models.classifiers import load_classifier

    model = load_classifier("efficientnet_lite0")
    stages = model.stages
    for key, r in (("28x28", 67), ("14x14", 339), ("7x7", 851)):
        rf = receptive_field(model, stages[key])
        assert rf.size == (r, r), key
    rf = receptive_field(model, stages["14x14"])
    # TF "same" pads stride-2 layers at the bottom/right: fields shift down-right
    assert rf.boxes_for([(0, 0)])[0].tolist() == [-154, -154, 185, 185]
    cells = [(0, 0), (5, 9), (13, 13)]
    emp = empirical_receptive_field(model, stages["14x14"], cells)
    assert torch.equal(emp, rf.boxes_for(cells, clip=True))


class ChannelsLast(nn.Module):
    """A ConvNeXt-style block: 3×3 conv, then a LayerNorm and a linear layer on the
    channels-last view (permute there and back), then another 3×3 conv. The channel ops
    act per pixel, so the field is that of the two convs: 5 px, jump 1."""

    def __init__(self):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1)
        self.norm, self.linear = nn.LayerNorm(4), nn.Linear(4, 4)

    def forward(self, x):
        y = self.linear(self.norm(self.conv1(x).permute(0, 2, 3, 1)))
        return self.conv2(y.transpose(3, 1).transpose(2, 3))


def test_receptive_field_follows_permutes_to_channels_last():
    net = ChannelsLast().eval()
    rf = receptive_field(net, net.conv2, 10)
    assert rf.size == (5, 5) and rf.jump == (1.0, 1.0)
    assert rf.boxes_for([(4, 6)])[0].tolist() == [4, 2, 9, 7]
    emp = empirical_receptive_field(net, net.conv2, [(0, 0), (4, 6), (9, 9)], 10)
    assert torch.equal(emp, rf.boxes_for([(0, 0), (4, 6), (9, 9)], clip=True))


def test_receptive_field_follows_uneven_adaptive_pooling():
    """AdaptiveAvgPool2d(3) on 10 positions pools [0, 4), [3, 7), [6, 10) (PyTorch's floor
    start, ceil end); the 3×3 conv before it widens each by one pixel on either side."""
    net = nn.Sequential(nn.Conv2d(3, 2, 3, padding=1), nn.AdaptiveAvgPool2d(3)).eval()
    rf = receptive_field(net, net[1], 10)
    assert rf.grid == (3, 3) and rf.size == (6, 6)
    assert rf.boxes[0, :, 0].tolist() == [-1, 2, 5] and rf.boxes[0, :, 2].tolist() == [5, 8, 11]
    make_positive(net)
    cells = [(0, 0), (1, 2), (2, 1)]
    emp = empirical_receptive_field(net, net[1], cells, 10)
    assert torch.equal(emp, rf.boxes_for(cells, clip=True))
