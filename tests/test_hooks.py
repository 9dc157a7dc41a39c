"""One capture hook, one layer resolver, one map check, one kernel-size rule (issue 8)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fame_utils._checks import check_maps
from fame_utils.objectives import capture_output, resolve_layer
from fame_utils.postprocess import kernel_size_for, normalize_maps


class _Boom(nn.Module):
    def forward(self, x):
        raise AssertionError("the forward pass ran past the captured layer")


def test_capture_output_stops_after_the_layer():
    net = nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU(), _Boom())
    x = torch.rand(2, 3, 4, 4)
    out = capture_output(net, "1", x)
    torch.testing.assert_close(out, torch.relu(net[0](x)))
    assert not net[1]._forward_hooks  # the hook is removed again
    with pytest.raises(RuntimeError, match="did not run"):
        capture_output(net[:2], nn.Linear(1, 1), x)


def test_capture_output_keeps_autograd():
    net = nn.Sequential(nn.Conv2d(3, 2, 1, bias=False), _Boom())
    x = torch.rand(1, 3, 2, 2, requires_grad=True)
    (g,) = torch.autograd.grad(capture_output(net, net[0], x).sum(), x)
    expected = net[0].weight.sum(0).view(1, 3, 1, 1).expand_as(x)
    torch.testing.assert_close(g, expected)


def test_one_layer_resolver():
    net = nn.Sequential(nn.Sequential(nn.Conv2d(3, 2, 1), nn.ReLU()))
    assert resolve_layer(net, "0.1") is net[0][1]
    assert resolve_layer(net, net[0]) is net[0]
    with pytest.raises(ValueError, match=r"no submodule 'layer4'; top-level children: \['0'\]"):
        resolve_layer(net, "layer4")
    with pytest.raises(ValueError, match=r"pass target_layer=.*top-level children: \['0'\]"):
        resolve_layer(net, None)


def test_check_maps_strictness():
    m = torch.rand(2, 3, 3)
    assert check_maps(m) is m
    with pytest.raises(ValueError, match=r"unsqueeze\(0\)"):
        check_maps(torch.rand(3, 3))
    with pytest.raises(TypeError, match="floating-point"):
        check_maps(torch.ones(1, 3, 3, dtype=torch.long))
    bad = m.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        check_maps(bad, "saliency")
    assert check_maps(bad, finite=False) is bad  # the receptive measures accept NaN


def test_kernel_size_for_covers_three_sigma():
    # 2·⌊3σ + ½⌋ + 1 by hand
    assert kernel_size_for(7.7) == 47
    assert kernel_size_for(1.0) == 7
    assert kernel_size_for(0.1) == 1 and kernel_size_for(0.0) == 1
    assert all(kernel_size_for(s) % 2 == 1 for s in (0.3, 2.5, 13.0))


def test_max_normalisation_divides_by_the_maximum_and_zeroes_empty_maps():
    m = torch.tensor([[[0.0, 2.0], [1.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]]])
    out, empty = normalize_maps(m, "max")
    assert out.tolist() == [[[0.0, 0.5], [0.25, 1.0]], [[0.0, 0.0], [0.0, 0.0]]]
    assert empty.tolist() == [False, True]
