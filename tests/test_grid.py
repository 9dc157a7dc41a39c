"""The grid pointing game (fame_utils.grid): metrics on hand-made maps, grid construction,
the DiFull control's exactness for FAME on a real network, and the image bootstrap."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from fame_utils import Attribution, Fame, FameConfig
from fame_utils import ClassLogit as Target  # the one place the target is named
from fame_utils.data.items import collate
from fame_utils.grid import (
    DiFull,
    GridMetric,
    cell_masks,
    energy_share,
    grid_pointing_game,
    grid_table,
    image_bootstrap,
    make_grids,
    pointing_hit,
    run_grid_game,
)
from fame_utils.metrics.adapters import Column
from fame_utils.models.classifiers import load_classifier


def _cell_map(cell: int, h: int = 8, w: int = 8) -> torch.Tensor:
    m = torch.zeros(h, w)
    r, c = divmod(cell, 2)
    m[r * h // 2 : (r + 1) * h // 2, c * w // 2 : (c + 1) * w // 2] = 1
    return m


# ------------------------------------------------------------------------ the metrics


def test_share_all_in_cell_uniform_and_elsewhere():
    cells = torch.tensor([0, 1, 2, 3, 3])
    maps = torch.stack(
        [_cell_map(0), _cell_map(1), torch.ones(8, 8), 1 - _cell_map(3), -_cell_map(0)]
    )
    maps[4] += _cell_map(3) * 0.5  # negative mass elsewhere is clipped away
    share = grid_pointing_game(maps, cells)
    torch.testing.assert_close(share, torch.tensor([1.0, 1.0, 0.25, 0.0, 1.0]))


def test_all_zero_map_scores_zero_with_a_warning():
    with pytest.warns(UserWarning, match="all-zero"):
        share = grid_pointing_game(torch.zeros(2, 4, 4), torch.tensor([0, 3]))
    assert share.tolist() == [0.0, 0.0]


def test_energy_share_and_pointing_hit_by_hand():
    # 1 on the 16 pixels of cell 1, 0.5 on the other 48
    m = (0.5 + 0.5 * _cell_map(1))[None]
    torch.testing.assert_close(grid_pointing_game(m, torch.tensor([1])), torch.tensor([16 / 40]))
    torch.testing.assert_close(energy_share(m, torch.tensor([1])), torch.tensor([16 / 28]))
    assert pointing_hit(m, torch.tensor([1])).tolist() == [1.0]
    assert pointing_hit(m, torch.tensor([2])).tolist() == [0.0]


def test_cell_masks_on_a_non_divisible_map():
    # a 3x5 map: pixel y is in row y*2//3 -> rows 0,1 | 2; columns 0,1,2 | 3,4
    masks = cell_masks((3, 5), torch.tensor([0, 1, 3]))
    assert masks[0].int().tolist() == [[1, 1, 1, 0, 0]] * 2 + [[0] * 5]
    assert masks[1].int().tolist() == [[0, 0, 0, 1, 1]] * 2 + [[0] * 5]
    assert masks[2].int().tolist() == [[0] * 5] * 2 + [[0, 0, 0, 1, 1]]
    with pytest.raises(ValueError, match="cells must lie"):
        cell_masks((4, 4), torch.tensor([4]))


# ------------------------------------------------------------------ grid construction


def _pool(n: int = 6, side: int = 4):
    images = torch.rand(n, 3, side, side, generator=torch.Generator().manual_seed(1))
    labels = torch.tensor([10, 10, 20, 30, 40, 50])[:n]
    return images, labels, [f"img{i}" for i in range(n)]


def test_grids_have_distinct_classes_exact_cells_and_follow_the_seed():
    images, labels, names = _pool()
    data = make_grids(images, labels, names, 20, seed=3)
    assert data.images.shape == (80, 3, 8, 8)
    assert data.boxes[:4].tolist() == [[0, 0, 4, 4], [4, 0, 8, 4], [0, 4, 4, 8], [4, 4, 8, 8]]
    sources = torch.tensor([int(name.split(":img")[1]) for name in data.names]).view(20, 4)
    for g in range(20):
        assert len(set(data.labels[4 * g : 4 * g + 4].tolist())) == 4
        for k in range(4):
            r, c = divmod(k, 2)
            assert data.names[4 * g + k].startswith(f"g{g}c{k}:")
            src = images[sources[g, k]]
            cell = data.images[4 * g + k, :, r * 4 : (r + 1) * 4, c * 4 : (c + 1) * 4]
            assert torch.equal(cell, src) and torch.equal(
                data.images[4 * g + k], data.images[4 * g]
            )
            assert data.labels[4 * g + k] == labels[sources[g, k]]
    again = make_grids(images, labels, names, 20, seed=3)
    assert torch.equal(again.images, data.images) and again.names == data.names
    assert make_grids(images, labels, names, 20, seed=4).names != data.names
    with pytest.raises(ValueError, match="distinct classes"):
        make_grids(images[:2], labels[:2], names[:2], 1)


def test_grid_items_carry_the_target_cell_and_the_metric_reads_it():
    images, labels, names = _pool()
    data = make_grids(images, labels, names, 2, seed=0)
    assert len(data) == 8
    batch = collate([data[i] for i in range(4)], range(4))
    maps = torch.stack([_cell_map(k) for k in (0, 1, 3, 3)])
    out = GridMetric()(None, batch, Attribution(maps))
    assert out[Column("GridPG")].tolist() == [1.0, 1.0, 0.0, 1.0]
    assert out[Column("hit")].tolist() == [1.0, 1.0, 0.0, 1.0]


def test_image_bootstrap_resamples_images_not_items():
    # image a brings three items (1.0), image b one (0.0): resampled means are 0, 0.75, 1
    iv = image_bootstrap(np.array([1.0, 1.0, 1.0, 0.0]), ["a", "a", "a", "b"], n_resamples=400)
    assert iv.mean == 0.75 and iv.low == 0.0 and iv.high == 1.0
    same = image_bootstrap(np.array([0.5, 0.5]), ["a", "b"])
    assert (same.low, same.high) == (0.5, 0.5)


# -------------------------------------------------------------- DiFull on a real network


@pytest.fixture(scope="module")
def lite0():
    return load_classifier("efficientnet_lite0", device="cpu")


def test_difull_logits_are_each_cells_own_and_leave_the_model_alone(lite0):
    x = torch.rand(2, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = lite0(x)
    difull = DiFull(lite0)
    with torch.no_grad():
        z = difull(x).view(2, 4, 1000)
        for k in range(4):
            r, c = divmod(k, 2)
            own = lite0(x[:, :, r * 64 : (r + 1) * 64, c * 64 : (c + 1) * 64])
            torch.testing.assert_close(z[:, k], own, atol=1e-4, rtol=1e-4)
        # the retiling hook on the head acts only inside DiFull.forward
        assert torch.equal(lite0(x), before)
    seen = []
    hook = difull.target_layer.register_forward_hook(lambda _m, _i, out: seen.append(out.shape))
    with torch.no_grad():
        difull(x)
    hook.remove()
    assert seen == [(2, 1280, 4, 4)]  # the cells' 2x2 head maps tiled into the grid


def test_fame_on_difull_is_exactly_zero_outside_the_target_cell(lite0):
    x = torch.rand(4, 3, 128, 128, generator=torch.Generator().manual_seed(2))
    cells, classes = torch.arange(4), torch.tensor([1, 2, 3, 4])
    fame = Fame(FameConfig(iterations=3, sigma=0.0, progress=False))
    maps = fame(DiFull(lite0), x, Target(cells * 1000 + classes)).positive
    outside = ~cell_masks(maps.shape, cells)
    assert torch.equal(maps[outside], torch.zeros_like(maps[outside]))
    assert (maps * ~outside).amax((1, 2)).min() > 0
    assert grid_pointing_game(maps, cells).tolist() == [1.0] * 4


def test_grid_game_adds_unblurred_fame_and_labels_difull_by_cell(lite0, tmp_path):
    """run_grid_game: FAME's copy at σ = 0 is FAME with sigma=0 (a run of its own), FullGrad
    is left out on DiFull, and DiFull's labels name each target's own cell: there FAME's
    unblurred Δx lies wholly in the target cell."""
    fast = {"iterations": 2, "progress": False}
    options = {"n_grids": 1, "cell_size": 32, "batch_size": 4, "progress": False}
    run = run_grid_game(
        lite0, ["FAME", "FullGrad"], str(tmp_path), recipes=None, fame_settings=fast, **options
    )
    assert run.grid.methods == ["FAME", "FAME, σ=0", "FullGrad"]
    assert run.difull.methods == ["FAME", "FAME, σ=0"]
    raw, blurred = (run.grid.maps(m).positive for m in ("FAME, σ=0", "FAME"))
    alone = Fame(FameConfig(sigma=0.0, **fast))(lite0, run.data.images, Target(run.data.labels))
    torch.testing.assert_close(raw, alone.positive)
    assert not torch.equal(blurred, raw)
    assert run.difull.per_item("GridPG")["FAME, σ=0"].tolist() == [1.0] * 4


def test_grid_table_formats_each_network_and_marks_missing_methods():
    from types import SimpleNamespace

    items = ["g0c0:a", "g0c1:b", "g1c0:a"]

    def run(**columns):
        frame = pd.DataFrame(columns, index=items)
        return SimpleNamespace(per_item=lambda metric: frame * (2 if metric == "hit" else 1))

    runs = SimpleNamespace(
        grid=run(FAME=[1.0, 0.0, 1.0], FullGrad=[0.5] * 3), difull=run(FAME=[0.25] * 3)
    )
    table = grid_table({"net": runs}, n_resamples=50)
    assert list(table.index) == ["FAME", "FullGrad"]
    assert list(table.columns) == ["net GridPG", "net hit", "net DiFull"]
    fame = image_bootstrap(np.array([1.0, 0.0, 1.0]), ["a", "b", "a"], n_resamples=50)
    assert table.loc["FAME", "net GridPG"] == fame.format(2)
    assert table.loc["FullGrad", "net hit"].startswith("1.00")
    assert table.loc["FAME", "net DiFull"].startswith("0.25")
    assert table.loc["FullGrad", "net DiFull"] == "—"  # not run on DiFull
