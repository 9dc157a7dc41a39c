"""Widgets work headless, and changing σ re-blurs instead of re-optimising."""

from __future__ import annotations

import matplotlib
import torch

from fame_utils import FameConfig, run_fame
from fame_utils.objectives import ClassLogit
from fame_utils.widgets import FameCache, blur_explorer

matplotlib.use("Agg")


def test_sigma_reblurs_cached_result_and_run_recomputes(tiny_cnn, monkeypatch):
    import fame_utils.widgets as widgets

    calls = []
    real = widgets.run_fame

    def counting(*a, **k):
        calls.append(k.get("iterations"))
        return real(*a, **k)

    monkeypatch.setattr(widgets, "run_fame", counting)
    x = torch.rand(2, 3, 16, 16)
    cache = FameCache(tiny_cnn, FameConfig(progress=False, iterations=2))
    box = blur_explorer(cache, x, ["a", "b"], lambda i: ClassLogit([i]), iterations=2)
    assert calls == [2] and len(cache) == 1
    controls = {w.description: w for row in box.children[:2] for w in row.children}
    controls["σ"].value = 3.0  # re-blur only
    assert calls == [2]
    controls["image"].value = 1  # new image: one run
    assert calls == [2, 2]
    controls["iterations"].value = 4
    assert calls == [2, 2]  # nothing until Run is pressed
    controls["Run"].click()
    assert calls == [2, 2, 4] and len(cache) == 3


def test_put_seeds_the_cache_with_a_batched_result(tiny_cnn):
    x = torch.rand(2, 3, 16, 16)
    batched = run_fame(tiny_cnn, x, ClassLogit([0, 1]), iterations=2, progress=False)
    cache = FameCache(tiny_cnn)
    cache.put((1,), batched[1], iterations=2)
    got = cache.get((1,), x[1:2], ClassLogit([1]), iterations=2)
    assert got.delta.shape == (1, 16, 16)
    torch.testing.assert_close(got.delta, batched.delta[1:2])
    assert len(cache) == 1
