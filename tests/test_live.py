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


# --- the live explorer (fame_utils.live.LiveMap) --------------------------------------


def _poll(condition, timeout: float = 30.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting for the explorer"
        time.sleep(0.01)


@pytest.fixture
def gated(tiny_cnn):
    """A LiveMap over tiny_cnn whose live frames each wait for ``gate.release()``."""
    import threading

    import ipywidgets as W

    from fame_utils.live import LiveMap

    x, gate, runs = _images(), threading.Semaphore(0), []

    def run(settings, hook):
        runs.append(dict(settings))
        if "callback" in hook:
            callback = hook["callback"]
            hook = dict(
                hook, callback=lambda d, i, loss: gate.acquire(timeout=20) and callback(d, i, loss)
            )
        i = settings["image"]
        return run_fame(
            tiny_cnn,
            x[i : i + 1],
            ClassLogit([i]),
            iterations=settings["iterations"],
            **hook,
            **QUIET,
        )

    controls = {
        "image": W.Dropdown(options=[("a", 0), ("b", 1)]),
        "iterations": W.IntSlider(value=2, max=5000),
    }
    live = LiveMap(
        run,
        lambda s: x[s["image"]],
        controls,
        label=str,
        sigma=1.0,
    )
    live.callback_every, live.min_frame_s = 5, 0
    changes = []
    live.map.observe(lambda c: changes.append(live.busy), "value")
    return live, gate, runs, changes


def test_a_run_draws_live_frames_and_stop_keeps_its_map(gated):
    live, gate, runs, changes = gated
    assert runs == [{"image": 0, "iterations": 2}] and not live.busy  # first view, no thread
    live.controls["iterations"].value = 1000
    assert "pending" in live.status.value
    thread = live.start()
    assert live.run_button.disabled and not live.stop_button.disabled  # busy
    for frames in (1, 2):
        gate.release()
        _poll(lambda n=frames: live.frames == n)
    assert sum(changes) >= 2 and live.busy  # the map changed twice before the run ended
    assert "iteration 10 of 1000" in live.status.value
    before = live.map.value
    live.sigma.value = 4.0  # live during the run: re-blurs the frame at once
    assert live.map.value != before and "σ 4.0" in live.map_title.value
    live.stop()
    gate.release()  # the next frame sees the stop
    thread.join(20)
    assert not live.busy and live.frames == 2  # the counter stopped
    assert not live.run_button.disabled and live.stop_button.disabled
    assert live._applied == {"image": 0, "iterations": 15}  # the steps done
    assert "pending" in live.status.value  # the controls still ask for 1000


def test_a_new_run_cancels_the_one_in_flight_and_pins_stay(gated):
    live, gate, runs, changes = gated
    live.pin()
    pinned = live.pins.children[0].children[1].value
    live.controls["iterations"].value = 1000
    first = live.start()
    gate.release()
    _poll(lambda: live.frames == 1)
    live.controls["iterations"].value = 3  # < callback_every: this run draws no frame
    second = live.start()
    second.join(20)
    gate.release()  # the cancelled run's next frame ends it without drawing
    first.join(20)
    assert live._applied == {"image": 0, "iterations": 3} and not live.busy
    assert "✓ showing" in live.status.value
    assert len(live.pins.children) == 1 and live.pins.children[0].children[1].value == pinned
    for _ in range(5):
        live.pin()
    assert len(live.pins.children) == 4  # MAX_PINS
    live.clear_button.click()
    assert not live.pins.children and live.clear_button.disabled


def test_a_run_that_stops_early_at_eps_is_not_marked_stopped_and_on_show_gets_its_result(
    tiny_cnn,
):
    """``run_first=False`` waits for Run with an empty map; a run whose samples all stop
    early (steps < iterations, as at the face setting's ε) without Stop is shown under its
    own settings, and ``on_show`` gets the applied settings, the whole result and σ."""
    import ipywidgets as W

    from fame_utils.live import LiveMap

    x, shown = _images(), []

    def run(settings, hook):  # as if ε stopped every sample one step early
        its = settings["iterations"] - 1
        return run_fame(tiny_cnn, x[:1], ClassLogit([0]), iterations=its, **hook, **QUIET)

    live = LiveMap(
        run,
        lambda s: x[0],
        {"iterations": W.IntSlider(value=4)},
        label=str,
        sigma=1.0,
        on_show=lambda *a: shown.append(a),
        run_first=False,
    )
    assert shown == [({"iterations": 4}, None, 1.0)] and "not computed yet" in live.status.value
    live.start().join(20)
    assert live._applied == {"iterations": 4} and "✓ showing" in live.status.value
    settings, result, sigma = shown[-1]
    assert settings == {"iterations": 4} and result.steps.tolist() == [3] and sigma == 1.0
    live.sigma.value = 2.0
    assert shown[-1][0] == {"iterations": 4} and shown[-1][2] == 2.0


# --- notebooks never touch what is committed ------------------------------------------


def test_jupyter_saves_notebooks_without_outputs(tmp_path):
    """The server config that `make lab` uses: a notebook saved through Jupyter's own
    contents manager lands on disk without outputs, counts or widget state."""
    import runpy

    import nbformat
    from jupyter_server.services.contents.filemanager import FileContentsManager
    from test_notebooks import ROOT
    from traitlets.config import Config

    config = Config()
    runpy.run_path(
        str(ROOT / "jupyter_config" / "jupyter_server_config.py"),
        init_globals={"get_config": lambda: config},
    )
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("1 + 1", execution_count=3)
    cell.outputs = [
        nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=3)
    ]
    nb.cells = [cell, nbformat.v4.new_markdown_cell("# kept")]
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    manager = FileContentsManager(root_dir=str(tmp_path), config=config)
    manager.save({"type": "notebook", "format": "json", "content": nb}, "n.ipynb")
    saved = nbformat.read(tmp_path / "n.ipynb", 4)
    assert saved.cells[0].outputs == [] and saved.cells[0].execution_count is None
    assert saved.cells[0].source == "1 + 1" and saved.cells[1].source == "# kept"
    assert "widgets" not in saved.metadata
    manager.save({"type": "file", "format": "text", "content": "x"}, "t.txt")  # untouched
    assert (tmp_path / "t.txt").read_text() == "x"


def test_interactive_runs_write_under_build_and_make_figures_writes_figures():
    """Every notebook's own default writes figures under build/ (git-ignored); `make
    figures` runs scripts/run_notebooks.py, which passes figures_dir=figures/."""
    import ast

    import nbformat
    from test_notebooks import ROOT, notebooks

    for path in notebooks():
        nb = nbformat.read(path, 4)
        params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
        values = {
            t.id: ast.literal_eval(node.value)
            for node in ast.parse(params.source).body
            if isinstance(node, ast.Assign)
            for t in node.targets
            if isinstance(t, ast.Name) and t.id.endswith("_dir")
        }
        for name, value in values.items():
            where = (path.parent / value).resolve()
            assert where.is_relative_to(ROOT / "build") or where.is_relative_to(ROOT / "runs"), (
                f"{path.name}: {name} = {value!r} writes outside build/ and runs/"
            )
    makefile = (ROOT / "Makefile").read_text()
    assert "scripts/run_notebooks.py --figures-dir figures" in makefile
