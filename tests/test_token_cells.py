"""Token cells (issue 13): FAME on a transformer block's (N, T, C) output, one patch token
per cell, checked on tiny ViTs whose dependence on the input is known."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torchvision.models.vision_transformer import VisionTransformer

from fame_utils.core import run_fame
from fame_utils.objectives import FeatureCell, TokenCell, cell_objective
from fame_utils.receptive import (
    cell_measures,
    describe_measurements,
    empirical_receptive_field,
    measure_layers,
    receptive_field,
    run_cells,
)
from fame_utils.receptive.cells import all_cells, cam_boxes
from fame_utils.receptive.measures import mass_in_box

QUIET = dict(progress=False)


class IdentityAttention(nn.Module):
    """Self-attention whose attention matrix is the identity: token k's output is
    out_proj(W_v·x_k + b_v), built from the original layer's value and output weights."""

    def __init__(self, mha: nn.MultiheadAttention):
        super().__init__()
        e = mha.embed_dim
        self.w_v = mha.in_proj_weight[2 * e :]
        self.b_v = mha.in_proj_bias[2 * e :]
        self.out_proj = mha.out_proj

    def forward(self, query, key, value, need_weights=False):
        return self.out_proj(value @ self.w_v.T + self.b_v), None


def tiny_vit(identity: bool) -> VisionTransformer:
    """16 × 16 input, 4 × 4 patches (a 4 × 4 patch grid, 17 tokens with the class token),
    two blocks; ``identity``: every block's attention replaced by the identity, so that
    token k of every block depends on patch k alone (LayerNorm and MLP act per token)."""
    torch.manual_seed(0)
    net = VisionTransformer(
        image_size=16,
        patch_size=4,
        num_layers=2,
        num_heads=2,
        hidden_dim=8,
        mlp_dim=16,
        num_classes=3,
    )
    if identity:
        for block in net.encoder.layers:
            block.self_attention = IdentityAttention(block.self_attention)
    return net.eval()


def _images(b: int, seed: int) -> torch.Tensor:
    return torch.rand(b, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_token_cell_loss_by_hand():
    """A "transformer" whose tokens are the pixels (C = 3) after a zero class token: on a
    2 × 3 image the token of cell (1, 2) is pixel (1, 2), so L_a = Σ_c |x_c[1, 2]|."""

    class Tokens(nn.Module):
        def forward(self, x):
            cls = torch.zeros(x.shape[0], 1, 3)
            return torch.cat([cls, x.flatten(2).transpose(1, 2)], 1)  # (N, 1 + H·W, 3)

    net = nn.Sequential(Tokens())
    x = torch.rand(2, 3, 2, 3) - 0.5
    obj = TokenCell(net[0], [(1, 2), (0, 0)], grid=(2, 3))
    assert obj.grid_shape(net, (2, 3)) == (2, 3)
    xe, bound = obj.expand(net, x)
    assert xe.shape == (4, 3, 2, 3)
    expected = torch.stack(
        [
            x[0, :, 1, 2].abs().sum(),
            x[0, :, 0, 0].abs().sum(),
            x[1, :, 1, 2].abs().sum(),
            x[1, :, 0, 0].abs().sum(),
        ]
    )
    torch.testing.assert_close(bound(net, xe), expected)
    # the class token (index 0, all zero here) as the one cell of a 1 × 1 grid
    cls = TokenCell(net[0], class_token=True)
    assert cls.grid_shape(net, (2, 3)) == (1, 1)
    xe, bound = cls.expand(net, x)
    assert bound(net, xe).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="patch grid"):
        TokenCell(net[0]).grid_shape(net, (2, 3))  # 6 patch tokens are not square
    with pytest.raises(ValueError, match="use TokenCell"):
        FeatureCell(net[0]).grid_shape(net, (2, 3))
    assert isinstance(cell_objective(net, net[0], image_size=(2, 3), grid=(2, 3)), TokenCell)


def test_token_cell_skips_every_prefix_token():
    """DeiT-style tokens: class and distillation token first, then the 2 × 2 patches."""

    class Tokens(nn.Module):
        def forward(self, x):
            lead = torch.full((x.shape[0], 2, 3), 100.0)
            return torch.cat([lead, x.flatten(2).transpose(1, 2)], 1)  # (N, 2 + H·W, 3)

    net = nn.Sequential(Tokens())
    x = torch.rand(1, 3, 2, 2)
    obj = TokenCell(net[0], [(1, 0)], prefix_tokens=2)
    assert obj.grid_shape(net, (2, 2)) == (2, 2)  # 4 patch tokens, not 5
    xe, bound = obj.expand(net, x)
    torch.testing.assert_close(bound(net, xe), x[0, :, 1, 0].abs().sum()[None])
    with pytest.raises(ValueError, match="prefix token"):
        TokenCell(net[0]).grid_shape(net, (2, 2))  # 5 tokens after one are not square
    with pytest.raises(ValueError, match="prefix_tokens must be >= 1"):
        TokenCell(net[0], prefix_tokens=0)


def test_identity_attention_token_maps_stay_in_their_patch():
    """Hand-justified bound: with identity attention token k depends on patch k only, so
    ∂L_a/∂x is exactly 0 outside patch k at every iterate and the unblurred Δx stays
    exactly 0 there: all of its mass lies in the token's CAM box (its patch)."""
    net = tiny_vit(identity=True)
    x = _images(2, 1)
    for block in ("encoder.layers.encoder_layer_0", "encoder.layers.encoder_layer_1"):
        res = run_cells(net, x, block, iterations=4, **QUIET)
        assert res.grid == (4, 4) and res.delta.shape == (2, 16, 16, 16)
        assert res.cells.tolist() == all_cells((4, 4)).tolist()
        # the CAM-assumed boxes of a 4 × 4 patch grid on 16 px are the 4 px patches
        assert cam_boxes(res.grid, res.image_size, res.cells)[6].tolist() == [
            8,
            4,
            12,
            8,
        ]  # token (1, 2)
        flat = res.delta.flatten(0, 1)
        boxes = cam_boxes(res.grid, res.image_size, res.cells).repeat(2, 1)
        assert torch.equal(mass_in_box(flat, boxes), torch.ones(32))
        assert bool((res.delta.flatten(2).amax(2) > 0).all())  # every token moved
        meas = cell_measures(flat, res.cells, res.grid)
        assert torch.equal(meas["mass_in_box"], torch.ones(32, dtype=torch.float64))
        # the centre of mass lies inside the patch: at most √2·1.5 px = 0.53 cell widths
        # from its centre (pixel centres in a 4 px patch are ≤ 1.5 px from the middle)
        assert float(meas["com_dist_cells"].max()) <= math.hypot(1.5, 1.5) / 4 + 1e-9
        assert float(meas["area50"].max()) <= 1 / 16  # half the mass within one patch
    # the class token sees only itself (a constant): nothing in the image can move it
    cls = run_cells(
        net, x, "encoder.layers.encoder_layer_1", class_token=True, iterations=2, **QUIET
    )
    assert cls.grid == (1, 1) and torch.equal(cls.delta, torch.zeros(2, 1, 16, 16))
    assert cam_boxes(cls.grid, cls.image_size, cls.cells).tolist() == [[0, 0, 16, 16]]
    # gradient support of token (1, 2) = its patch
    emp = empirical_receptive_field(net, "encoder.layers.encoder_layer_1", [(1, 2)], 16)
    assert emp.tolist() == [[8, 4, 12, 8]]


def test_real_attention_spreads_token_maps_beyond_their_patch():
    """The same network with its attention left alone: a token sees every patch from the
    first block on, so its map leaves its patch (the identity test above can fail)."""
    net = tiny_vit(identity=False)
    res = run_cells(
        net,
        _images(1, 1),
        "encoder.layers.encoder_layer_0",
        [(1, 2), (3, 0)],
        iterations=3,
        **QUIET,
    )
    share = mass_in_box(res.delta[0], cam_boxes(res.grid, res.image_size, res.cells))
    assert float(share.max()) < 1.0
    cls = run_cells(
        net,
        _images(1, 1),
        "encoder.layers.encoder_layer_0",
        class_token=True,
        iterations=2,
        **QUIET,
    )
    assert float(cls.delta.amax()) > 0  # the class token attends to the patches


def test_batched_tokens_equal_one_at_a_time():
    net = tiny_vit(identity=False)
    x = _images(2, 3)
    block = net.encoder.layers[1]
    cells = [(0, 0), (1, 3), (2, 2)]
    batched = run_cells(net, x, block, cells, iterations=3, batch_size=4, **QUIET)
    for b in range(2):
        for k, c in enumerate(cells):
            one = run_cells(net, x[b : b + 1], block, [c], iterations=3, **QUIET)
            torch.testing.assert_close(batched.delta[b, k], one.delta[0, 0], atol=1e-6, rtol=0)
    # TokenCell through run_fame directly: the same B·K image-major rows
    direct = run_fame(net, x, TokenCell(block, cells), iterations=3, **QUIET)
    torch.testing.assert_close(direct.delta, batched.result.delta, atol=1e-6, rtol=0)


def test_measure_layers_on_token_blocks():
    net = tiny_vit(identity=True)
    layers = {"block 1": net.encoder.layers[0], "block 2": net.encoder.layers[1]}
    df = measure_layers(
        net,
        _images(1, 4),
        layers,
        cells_per_layer=3,
        iterations=2,
        sigma=1.0,
        kernel_size=5,
        progress=False,
    )
    assert len(df) == 2 * 3 * 2 and set(df["grid_h"]) == {4}
    assert "mass_in_rf" not in df.columns  # no traced receptive field for tokens
    assert (df[df["map"] == "delta"]["mass_in_box"] == 1.0).all()
    # beside the patch embedding (a CNN layer with a field) the blocks get no field clause
    layers = {"patches": net.conv_proj, "block 1": net.encoder.layers[0]}
    mixed = measure_layers(net, _images(1, 4), layers, cells_per_layer=2, iterations=1, **QUIET)
    patches, block = describe_measurements(mixed).splitlines()[1:]
    assert "receptive field 1.000" in patches and "receptive field" not in block
    assert "nan" not in block
    with pytest.raises(NotImplementedError, match="empirical_receptive_field"):
        receptive_field(net, net.encoder.layers[0], 16)
    with pytest.raises(ValueError, match="token layers only"):
        cell_objective(net, net.conv_proj, image_size=(16, 16), class_token=True)
    assert cam_boxes((4, 4), (16, 16), [(3, 3)]).tolist() == [[12, 12, 16, 16]]


def test_cell_explorer_on_token_blocks():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fame_utils.receptive import cell_explorer

    net = tiny_vit(identity=True)
    layers = {"block 1": net.encoder.layers[0], "block 2": net.encoder.layers[1]}
    w = cell_explorer(net, _images(1, 5), ["a"], layers, iterations=2, sigma=1.0)
    live = w.explorer
    assert live.controls["row"].max == 3 and live.controls["col"].max == 3  # 4x4 patches
    assert "mass in CAM box" in live.text.value  # drawn at creation
    plt.close("all")
