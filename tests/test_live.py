"""The FAME loop's progress hook (issue 21): frames every k iterations, a clean stop that
equals a shorter run, chunked batches, and no host sync added by the hook."""

from __future__ import annotations

import pytest
import torch

from fame_utils import run_fame
from fame_utils.objectives import ClassLogit

QUIET = {"progress": False}


def _images(n: int = 2) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(1))


def test_frames_every_k_iterations_end_on_the_result(tiny_cnn):
    x, seen = _images(), []

    def record(delta, iteration, loss):
        seen.append((iteration, delta.clone(), loss.clone()))

    r = run_fame(tiny_cnn, x, ClassLogit([0, 1]), iterations=12, callback=record, callback_every=4)
    assert [it for it, _, _ in seen] == [4, 8, 12]
    assert all(d.shape == (2, 16, 16) and loss.shape == (2,) for _, d, loss in seen)
    torch.testing.assert_close(seen[-1][1], r.delta)  # the last frame is the final Δx
    # frame k shows exactly the Δx of a k-iteration run
    r4 = run_fame(tiny_cnn, x, ClassLogit([0, 1]), iterations=4, **QUIET)
    torch.testing.assert_close(seen[0][1], r4.delta)
    assert not torch.equal(seen[0][1], seen[1][1])  # the map moves between frames
    # the loss of frame 4 is L at the iterate before step 4, i.e. after 3 steps
    r3 = run_fame(tiny_cnn, x, ClassLogit([0, 1]), iterations=3, **QUIET)
    torch.testing.assert_close(seen[0][2], r3.final_loss)
    assert r.steps.tolist() == [12, 12]


def test_stop_returns_the_result_of_the_iterations_done(tiny_cnn):
    x, seen = _images(), []

    def stop_at_10(delta, iteration, loss):
        seen.append(iteration)
        return iteration >= 10

    r = run_fame(
        tiny_cnn, x, ClassLogit([0, 1]), iterations=50, callback=stop_at_10, callback_every=5
    )
    assert seen == [5, 10]
    assert r.steps.tolist() == [10, 10]
    short = run_fame(tiny_cnn, x, ClassLogit([0, 1]), iterations=10, **QUIET)
    torch.testing.assert_close(r.delta, short.delta)
    torch.testing.assert_close(r.final_loss, short.final_loss)
    torch.testing.assert_close(r.initial_loss, short.initial_loss)
    assert r.maps().shape == (2, 16, 16)  # a valid result


def test_chunks_frame_the_whole_batch_and_a_stop_skips_later_chunks(tiny_cnn):
    x, frames = _images(3), []

    def stop_in_second_chunk(delta, iteration, loss):
        frames.append((delta.clone(), loss.clone()))
        return len(frames) == 3  # chunk 0 gives frames 1-2, chunk 1 stops at its first

    r = run_fame(
        tiny_cnn,
        x,
        ClassLogit([0, 1, 2]),
        iterations=4,
        batch_size=1,
        callback=stop_in_second_chunk,
        callback_every=2,
        **QUIET,
    )
    assert r.steps.tolist() == [4, 2, 0]
    first, loss1 = frames[0]
    assert first.shape == (3, 16, 16) and not first[1:].any()  # later chunks: zero Δx
    assert torch.isnan(loss1[1:]).all() and torch.isfinite(loss1[0])
    torch.testing.assert_close(frames[2][0][0], r.delta[0])  # finished chunk: final Δx
    assert not r.delta[2].any()
    torch.testing.assert_close(r.final_loss[2], r.initial_loss[2])  # 0 steps: L at x
    alone = run_fame(tiny_cnn, x[1:2], ClassLogit([1]), iterations=2, **QUIET)
    torch.testing.assert_close(r.delta[1:2], alone.delta)


class _SyncCounter:
    """Counts the tensor → Python conversions that force a host sync on an accelerator."""

    NAMES = ("__bool__", "__int__", "__float__", "item", "tolist", "nonzero", "cpu", "numpy")

    def __init__(self, monkeypatch):
        self.count = 0
        for name in self.NAMES:
            real = getattr(torch.Tensor, name)
            monkeypatch.setattr(torch.Tensor, name, self._counting(real))

    def _counting(self, real):
        def wrapper(*args, **kwargs):
            self.count += 1
            return real(*args, **kwargs)

        return wrapper


@pytest.mark.parametrize("early_stop", [None, -1e9])
def test_the_hook_adds_no_host_sync(tiny_cnn, monkeypatch, early_stop):
    x = _images()
    counter = _SyncCounter(monkeypatch)

    def syncs(iterations: int, **hook) -> int:
        before = counter.count
        run_fame(
            tiny_cnn,
            x,
            ClassLogit([0, 1]),
            iterations=iterations,
            early_stop=early_stop,
            early_stop_check_every=10,
            **hook,
            **QUIET,
        )
        return counter.count - before

    frames = []
    without = syncs(40)
    assert without > 0  # the counter sees the loop's own syncs (first iteration, the end)
    hook = {"callback": lambda d, it, loss: frames.append(it), "callback_every": 5}
    assert syncs(40, **hook) == without  # 8 frames, no sync added by the hook
    assert frames == list(range(5, 41, 5))
    if early_stop is None:  # no early-stop checks: the count does not grow with the run
        assert syncs(5) == without


def test_bad_callback_arguments_are_named(tiny_cnn):
    x = _images(1)
    with pytest.raises(ValueError, match="callback_every must be an int >= 1"):
        run_fame(tiny_cnn, x, ClassLogit([0]), iterations=2, callback=print, callback_every=0)
    with pytest.raises(TypeError, match="callback must be callable"):
        run_fame(tiny_cnn, x, ClassLogit([0]), iterations=2, callback=3)
