"""Widgets work headless, and changing σ re-blurs instead of re-optimising."""

from __future__ import annotations

import matplotlib
import pytest
import torch

from fame_utils import FameConfig, run_fame
from fame_utils.objectives import ClassLogit
from fame_utils.widgets import blur_explorer

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
    config = FameConfig(progress=False, iterations=2)
    box = blur_explorer(tiny_cnn, x, ["a", "b"], ClassLogit([0, 1]), config=config, iterations=2)
    live = box.explorer
    assert calls == [2]  # the first view, computed at creation
    shown = live.map.value
    live.sigma.value = 3.0  # live: re-blur only
    assert calls == [2] and live.map.value != shown
    live.controls["image"].value = 1  # not computed yet: pending until Run
    assert calls == [2] and "pending" in live.status.value
    live.run_button.click()
    live.wait(60)
    assert calls == [2, 2] and "✓ showing b (2/2)" in live.status.value
    live.controls["image"].value = 0  # computed before: shown at once, no run
    assert calls == [2, 2] and "pending" not in live.status.value
    live.controls["iterations"].value = 4
    assert calls == [2, 2]  # nothing until Run is pressed
    live.run_button.click()
    live.wait(60)
    assert calls == [2, 2, 4]
    live.controls["iterations"].value = 2  # every computed setting stays cached
    live.controls["image"].value = 1
    assert calls == [2, 2, 4] and "pending" not in live.status.value


def test_a_precomputed_batch_shows_without_a_run(tiny_cnn, monkeypatch):
    import fame_utils.widgets as widgets

    x = torch.rand(2, 3, 16, 16)
    first = run_fame(tiny_cnn, x, ClassLogit([0, 1]), iterations=3, progress=False)
    monkeypatch.setattr(widgets, "run_fame", None)  # any run would fail
    box = blur_explorer(
        tiny_cnn, x, ["a", "b"], ClassLogit([0, 1]), precomputed=first, iterations=3
    )
    live = box.explorer
    assert "3 it" in live.status.value
    before = live.map.value
    live.controls["image"].value = 1  # image b of the batch: shown at once, its own map
    assert "✓ showing b (2/2), 3 it" in live.status.value and live.map.value != before
    torch.testing.assert_close(live._shown.delta, first.delta[1])


def _png_count(out) -> int:
    return sum("image/png" in o.get("data", {}) for o in out.outputs)


def test_panel_renders_once_at_creation_and_on_each_press():
    import ipywidgets as W
    import matplotlib.pyplot as plt

    from fame_utils.widgets import panel

    seen = []

    def render(a, b):
        seen.append((a, b))
        fig, ax = plt.subplots()
        ax.plot([a, b])
        return fig, f"a={a} b={b}"

    box = panel(render, {"a": W.IntSlider(value=1), "b": W.IntSlider(value=2)}, button="Show")
    out = box.children[-1]
    assert seen == [(1, 2)]  # headless: drawn without any front end
    assert _png_count(out) == 1 and out.outputs[1]["text"] == "a=1 b=2\n"
    controls = box.children[0].children
    controls[1].value = 5
    controls[2].click()
    assert seen == [(1, 2), (1, 5)]
    assert _png_count(out) == 1 and out.outputs[1]["text"] == "a=1 b=5\n"  # replaced
    assert all(w.style.description_width == "initial" for w in controls[:2])  # no cut labels
    assert not plt.get_fignums()  # every figure was closed after rendering


def test_panel_button_applies_the_held_controls_and_errors_show_in_the_output():
    import ipywidgets as W
    from IPython.display import Markdown

    from fame_utils.widgets import panel

    seen = []

    def render(cheap, costly):
        if costly < 0:
            raise RuntimeError("negative cost")
        seen.append((cheap, costly))
        return Markdown(f"**{cheap} {costly}**")

    controls = {"cheap": W.IntText(value=0), "costly": W.IntText(value=10)}
    box = panel(render, controls, button="Go")
    out = box.children[-1]
    assert out.outputs[0]["data"]["text/markdown"] == "**0 10**"
    controls["costly"].value = 20  # held until Go
    controls["cheap"].value = 1
    assert seen == [(0, 10)]
    button = box.children[0].children[-1]
    assert button.description == "Go"
    button.click()
    assert seen[-1] == (1, 20)
    controls["costly"].value = -1
    button.click()  # the error is shown instead of vanishing into the kernel log
    assert "RuntimeError: negative cost" in out.outputs[0]["text"]


@pytest.mark.slow
def test_face_explorer_runs_fame_live_reblurs_its_cached_delta_and_recomputes_what_changed():
    """Notebook 03's explorer on dlib's network and the bundled pairs: Run draws FAME's e₊
    live from a thread, σ re-blurs FAME's cached Δx (no run), masks rerun the other methods
    only, iterations FAME only, and a genuine pair below θ says it is rejected."""
    import fame_utils as fu
    from fame_utils.widgets import face_explorer

    model = fu.load_face_model("dlib_resnet", device="cpu")
    load = {"size": model.input_size, "padding": 0.25}
    protocols = {s: fu.load_sample_faces(s, **load) for s in fu.SAMPLE_FACE_SUBSETS}
    config = fu.FameConfig.paper("verification", iterations=2, progress=False)
    start = ("occlusion", "glasses", 0)
    box = face_explorer(model, protocols, 0.999, config, start=start, n_masks=16)
    live, out = box.explorer, box.children[-1]
    assert box.runs == {"FAME": 1, "others": 1} and not live.busy  # synchronous first view
    assert "rejected: below θ (θ = 0.999)" in out.outputs[0]["text"]  # genuine, yet below θ
    shown = out.outputs
    live.sigma.value = 3.0  # live: re-blurs, no run
    assert box.runs == {"FAME": 1, "others": 1} and out.outputs != shown
    assert "σ 3.0" in out.outputs[0]["text"] and "σ 3.0" in live.map_title.value
    live.controls["n_masks"].value = 24  # a Run control: nothing until Run
    assert box.runs == {"FAME": 1, "others": 1} and "pending" in live.status.value
    live.start().join(120)
    assert box.runs == {"FAME": 1, "others": 2}  # FAME's Δx is cached by (pair, iterations)
    live.min_frame_s = 0  # every progress call draws a frame
    live.controls["iterations"].value = 6
    live.start().join(120)
    assert box.runs == {"FAME": 2, "others": 2} and live.frames >= 2  # live frames drawn
    assert "✓ showing" in live.status.value and "FAME 6 it" in out.outputs[0]["text"]
    live.controls["iterations"].value = 2
    assert live.start() is None  # both cached: shown at once, no thread
    assert "FAME 2×, the other methods 2×" in out.outputs[0]["text"]
    assert "FAME 2 it" in out.outputs[0]["text"]
    # the figure's maps show the first view; σ then needs FAME's Δx: one live run
    size = model.input_size
    names = ["Grad-CAM", "Grad-CAM-EW", "CorrRISE", "FGGB", "FAME"]
    figure = {
        n: fu.Attribution(torch.rand(3, size, size), torch.rand(3, size, size)) for n in names
    }
    box = face_explorer(model, protocols, -1.0, config, start=start, n_masks=16, precomputed=figure)
    live, out = box.explorer, box.children[-1]
    assert box.runs == {"FAME": 0, "others": 0} and not live.busy
    assert "accepted (θ = -1.000)" in out.outputs[0]["text"]
    assert "not computed yet" in live.status.value
    live.sigma.value = 3.0  # starts FAME for the shown pair in the background
    live.wait(120)
    assert not live.errors.outputs, live.errors.outputs
    live.sigma.value = 4.0
    assert box.runs == {"FAME": 1, "others": 0} and "σ 4.0" in out.outputs[0]["text"]


def test_metric_explorer_draws_the_papers_rows_of_the_chosen_methods_only(
    tiny_cnn, data, tmp_path, monkeypatch
):
    from matplotlib.colors import to_rgba

    import fame_utils.plotting as plotting
    from fame_utils.baselines.cam import GradCAM, HiResCAM
    from fame_utils.paper import table2
    from fame_utils.widgets import metric_explorer

    shown, real = [], plotting.draw_bars
    monkeypatch.setattr(
        plotting, "draw_bars", lambda *a, **k: shown.append(real(*a, **k)) or shown[-1]
    )
    methods = [GradCAM(target_layer=tiny_cnn[2]), HiResCAM(target_layer=tiny_cnn[2])]
    box = metric_explorer(
        tiny_cnn, data, methods, tmp_path, thresholds=[0.3], percents=[10], paper=table2()
    )
    controls = {w.description.split()[0]: w for row in box.children[:-1] for w in row.children}
    controls["methods"].value = ("Grad-CAM",)
    controls["IoU"].value = "0.4"  # a threshold the paper does not have
    controls["Run"].click()
    assert "Traceback" not in str(box.children[-1].outputs)
    first, chosen = shown
    assert [ax.get_title() for ax in first.axes] == ["ours", "ours", "paper", "paper"]
    assert {c.get_label() for ax in first.axes for c in ax.containers} == {"Grad-CAM", "HiResCAM"}
    # Grad-CAM alone at IoU@0.4: the paper keeps its ROAD@10 % panel, one bar, Grad-CAM's colour
    assert [ax.get_title() for ax in chosen.axes] == ["ours", "ours", "paper"]
    assert [len(ax.containers) for ax in chosen.axes] == [1, 1, 1]
    (bar,) = chosen.axes[2].containers[0].patches
    assert bar.get_facecolor() == to_rgba(plotting.method_colour("Grad-CAM"))
