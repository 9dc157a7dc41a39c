"""Cells and CAM-assumed boxes (fame_utils.receptive.cells), by hand."""

from __future__ import annotations

import torch

from fame_utils.receptive.cells import (
    all_cells,
    cam_boxes,
    cell_centers,
    cells_at,
    sample_cells,
)


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
