"""explain_all runs every method on one batch; empty_maps names the all-zero maps."""

from __future__ import annotations

import torch

from fame_utils import Attribution, ClassLogit, empty_maps, explain_all


class _Constant:
    """A stand-in method: a constant map (and e₋ when given)."""

    def __init__(self, name: str, value: float, negative: float | None = None):
        self.name, self.value, self.negative = name, value, negative
        self.calls = 0

    def __call__(self, model, images, target):
        self.calls += 1
        b, _, h, w = images.shape
        neg = None if self.negative is None else torch.full((b, h, w), self.negative)
        return Attribution(torch.full((b, h, w), self.value), neg)


def test_explain_all_calls_each_method_once_and_times_it():
    methods = [_Constant("A", 1.0), _Constant("B", 0.5, negative=0.0)]
    x = torch.rand(3, 3, 4, 4)
    maps, seconds = explain_all(methods, None, x, ClassLogit([0, 1, 2]))
    assert list(maps) == ["A", "B"] == list(seconds)
    assert [m.calls for m in methods] == [1, 1]
    assert torch.equal(maps["B"].positive, torch.full((3, 4, 4), 0.5))
    assert all(s >= 0 for s in seconds.values())


def test_empty_maps_lists_every_all_zero_map_by_row_label():
    pos = torch.ones(2, 4, 4)
    pos[1] = 0
    attributions = {
        "FAME": Attribution(pos, torch.zeros(2, 4, 4)),
        "Grad-CAM": Attribution(torch.ones(2, 4, 4)),
    }
    assert empty_maps(attributions, ["r0", "r1"]) == [
        "r1: FAME e₊",
        "r0: FAME e₋",
        "r1: FAME e₋",
    ]
