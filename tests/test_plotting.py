"""The notebooks' figure functions draw what they say, from hand-made results."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgba  # noqa: E402

from fame_utils import Attribution, run_fame  # noqa: E402
from fame_utils.data.items import ClassificationDataset  # noqa: E402
from fame_utils.experiment.result import ExperimentResult  # noqa: E402
from fame_utils.objectives import ClassLogit  # noqa: E402
from fame_utils.paper import table2  # noqa: E402
from fame_utils.plotting import (  # noqa: E402
    draw_bars,
    draw_blur_figure,
    draw_face_curves,
    draw_face_rows,
    draw_item_maps,
    method_colour,
    table2_groups,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def _texts(fig) -> list[str]:
    return [t.get_text() for ax in fig.axes for t in [ax.title, *ax.texts]]


def test_blur_figure_has_image_raw_delta_each_sigma_and_the_chosen_setting(tiny_cnn):
    x = torch.rand(2, 3, 16, 16)
    result = run_fame(tiny_cnn, x, ClassLogit([0, 1]), iterations=2, progress=False)
    fig = draw_blur_figure(x, result, ["a", "b"], sigmas=[1.0, 2.0], chosen=(5, 1.5))
    assert len(fig.axes) == 2 * (2 + 2 + 1)
    titles = [ax.get_title() for ax in fig.axes[:5]]
    assert titles == [
        "image",
        "Δx, no blur (clipped)",
        "(a) σ = 1",
        "(b) σ = 2",
        "(c) σ = 1.5, kernel 5",
    ]
    assert fig.axes[5].get_ylabel() == "b"


def test_face_rows_label_an_all_zero_map_as_empty():
    g, p = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8)
    attributions = {"A": Attribution(torch.rand(1, 8, 8)), "B": Attribution(torch.zeros(1, 8, 8))}
    cols = [("A", "positive", "A e₊"), ("B", "positive", "B e₊")]
    fig = draw_face_rows({"": (g, p, attributions, ["row"])}, columns=cols)
    assert len(fig.axes) == 4
    assert [ax.texts[0].get_text() for ax in fig.axes if ax.texts] == ["empty map"]
    assert fig.axes[3].get_title() == "B e₊"
    assert fig.axes[0].get_ylabel() == "row"  # network "": the label alone


def test_bars_give_each_method_its_fixed_colour_in_every_panel():
    ours = pd.DataFrame(
        {"IoU@0.3": [1.0, 2.0, 3.0], "ROAD-Delete@10%": [0.1, 0.2, 0.3]},
        index=["Grad-CAM", "FAME (paper)", "FAME (reference)"],
    )
    groups = table2_groups(ours.columns)
    assert groups == {"IoU ×100": ["IoU@0.3"], "logit drop": ["ROAD-Delete@10%"]}
    fig = draw_bars({"ours": ours, "paper": table2()}, groups)
    colour = {
        (ax_i, c.get_label()): c.patches[0].get_facecolor()
        for ax_i, ax in enumerate(fig.axes)
        for c in ax.containers
    }
    for (_, name), rgba in colour.items():
        assert rgba == to_rgba(method_colour(name))
    assert colour[(0, "Grad-CAM")] == colour[(2, "Grad-CAM")] == colour[(1, "Grad-CAM")]
    fames = {colour[(0, "FAME (reference)")], colour[(0, "FAME (paper)")], colour[(2, "FAME")]}
    assert len(fames) == 3  # our two recipes and the paper's row are told apart
    heights = [p.get_height() for p in fig.axes[0].containers[2].patches]
    assert heights == [3.0]  # FAME (reference)'s IoU@0.3
    # one figure legend naming every method once, and no panel legend over the bars
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "Grad-CAM",
        "FAME (paper)",
        "FAME (reference)",
        "Grad-CAM-EW",
        "HiResCAM",
        "FullGrad",
        "FAME",
    ]
    assert all(ax.get_legend() is None for ax in fig.axes)
    # an unknown name keeps one colour across calls; the baselines are not a method colour
    assert method_colour("my method") == method_colour("my method")
    assert all(to_rgba(method_colour(b)) != to_rgba("0.3") for b in ("Constant", "Random"))


def test_bars_draw_only_panels_and_bars_with_data():
    ours = pd.DataFrame(
        {"IoU@0.4": [1.0, 2.0], "ROAD-NL-Delete@20%": [0.1, 0.2], "ROAD-Delete@20%": [0.3, 0.4]},
        index=["Grad-CAM", "Constant"],
    )
    paper = table2().loc[["Grad-CAM", "FAME"]]  # no IoU@0.4, no ROAD@20 %, no noisy linear
    fig = draw_bars({"ours": ours, "paper": paper}, table2_groups(ours.columns))
    assert [ax.get_title() for ax in fig.axes] == ["ours"] * 3  # no empty paper panels
    assert all(len(ax.containers) == 1 for ax in fig.axes)  # Constant is a band, not a bar
    assert all(ax.collections for ax in fig.axes)  # the band
    paper = pd.DataFrame({"IoU@0.4": [5.0, np.nan]}, index=["Grad-CAM", "FAME"])
    fig = draw_bars({"ours": ours, "paper": paper}, table2_groups(ours.columns))
    assert [ax.get_title() for ax in fig.axes] == ["ours"] * 3 + ["paper"]
    (bars,) = fig.axes[3].containers  # FAME has no value there: no bar, no slot
    assert bars.get_label() == "Grad-CAM" and len(bars.patches) == 1


def _face_result(values: dict) -> ExperimentResult:
    """Two pairs (0 genuine, 1 impostor), methods A and B, Delete-acc/-sim at 0 and 100 %."""
    rows = []
    for (method, metric, percent), per_pair in values.items():
        for i, v in enumerate(per_pair):
            rows.append((i, f"p{i}", method, metric, np.nan, percent, v))
    frame = pd.DataFrame(
        rows, columns=["index", "item", "method", "metric", "threshold", "percent", "value"]
    )
    summary = pd.DataFrame({"Delete": [60.0, 40.0], "Insert": [1.0, 2.0]}, index=["A", "B"])
    return ExperimentResult(frame, summary, {}, {}, 0.5, 1)


def test_face_curves_average_accuracy_over_all_pairs_and_similarity_over_genuine_ones():
    values = {}
    for m, acc, sim in (("A", [100.0, 0.0], [0.9, 0.1]), ("B", [100.0, 100.0], [0.3, 0.7])):
        for kind in ("Delete", "Insert"):
            for pct in (0.0, 100.0):
                values[(m, f"{kind}-acc", pct)] = acc
                values[(m, f"{kind}-sim", pct)] = sim
    result = _face_result(values)
    fig = draw_face_curves(
        {"n": {"s": result}},
        ["A", "B"],
        genuine={"n": {"s": torch.tensor([True, False])}},
        thresholds={"n": {"s": 0.5}},
    )
    assert len(fig.axes) == 4  # accuracy and similarity, each Delete and Insert
    acc_lines = {ln.get_label(): ln.get_ydata().tolist() for ln in fig.axes[0].lines}
    assert acc_lines == {"A": [50.0, 50.0], "B": [100.0, 100.0]}
    assert [ln.get_color() for ln in fig.axes[0].lines] == [method_colour(m) for m in "AB"]
    # the row's legend sits right of its last panel and gives the AUC per subset
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["A: 60.0", "B: 40.0"]
    assert legend.get_title().get_text() == "n Delete AUC ×100 (s)"
    assert fig.axes[2].get_legend() is None
    sim = {
        ln.get_label(): np.asarray(ln.get_ydata()).tolist()
        for ln in fig.axes[2].lines
        if not ln.get_label().startswith("_")  # θ's dotted line
    }
    assert sim["A"] == [0.9, 0.9] and sim["B"] == [0.3, 0.3]  # the genuine pair only
    assert fig.axes[2].get_title() == "n · s: Delete"
    assert fig.axes[2].get_ylabel() == "genuine cos"
    assert [ln.get_ydata()[0] for ln in fig.axes[2].lines if ln.get_linestyle() == ":"] == [0.5]


def test_item_maps_outline_the_salient_region_and_write_the_items_values():
    images = torch.rand(1, 3, 8, 8)
    data = ClassificationDataset(images, torch.tensor([3]), torch.tensor([[1.0, 1.0, 5.0, 5.0]]))
    rows = pd.DataFrame(
        [
            (0, "0", "A", "IoU", 0.5, np.nan, 42.0),
            (0, "0", "A", "ROAD-Delete", np.nan, 30.0, 0.25),
            (0, "0", "A", "ROAD-Delete", np.nan, 10.0, 0.125),
        ],
        columns=["index", "item", "method", "metric", "threshold", "percent", "value"],
    )
    result = ExperimentResult(rows, pd.DataFrame({"IoU@0.5": [42.0]}, index=["A"]), {}, {}, None, 1)
    m = torch.zeros(1, 8, 8)
    m[0, 2:4, 2:4] = 1.0
    result.maps = lambda name: Attribution(m)
    fig = draw_item_maps(data, result, 0, 0.5)
    # percents ascending, each named
    assert fig.axes[1].get_title() == "A\nIoU@0.5 42\nROAD-Delete 10%: 0.12, 30%: 0.25"
    assert fig.axes[0].get_title() == "0\ntiger shark (3)"  # ImageNet's name of class 3
    assert len(fig.axes[1].collections) == 1  # the contour of {map ≥ t}
    fig = draw_item_maps(data, result, 0, 0.7)
    assert fig.axes[1].get_title().split("\n")[1] == "S at t=0.7"  # no IoU at 0.7 in the run


def test_face_curves_across_networks_one_row_per_network_and_kind():
    def result(a, b):
        values = {}
        for m, acc in (("A", a), ("B", b)):
            for kind in ("Delete", "Insert"):
                for pct in (0.0, 50.0, 100.0):
                    values[(m, f"{kind}-acc", pct)] = acc
        return _face_result(values)

    fig = draw_face_curves(
        {
            "n1": {"s": result([100.0, 0.0], [0.0, 0.0])},
            "n2": {"s": result([0.0, 0.0], [100.0, 100.0])},
        }
    )
    assert len(fig.axes) == 4  # (n1, n2) x (Delete, Insert), one subset
    assert [ax.get_title() for ax in fig.axes] == [
        "n1 · s: Delete",
        "n1 · s: Insert",
        "n2 · s: Delete",
        "n2 · s: Insert",
    ]
    lines = {ln.get_label(): ln.get_ydata().tolist() for ln in fig.axes[2].lines}
    assert lines == {"A": [0.0, 0.0, 0.0], "B": [100.0] * 3}
    assert [ln.get_color() for ln in fig.axes[2].lines] == [method_colour(m) for m in "AB"]
    legend = fig.axes[0].get_legend()
    assert [t.get_text() for t in legend.get_texts()] == ["A: 60.0", "B: 40.0"]
    assert legend.get_title().get_text() == "n1 Delete AUC ×100 (s)"


def test_face_rows_across_networks_stack_each_networks_rows_at_its_own_size():
    cols = [("A", "positive", "A e₊"), ("A", "negative", "A e₋")]
    small = (torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))
    big = (torch.rand(1, 3, 10, 10), torch.rand(1, 3, 10, 10))
    panels = {
        "n1": (*small, {"A": Attribution(torch.rand(2, 8, 8), torch.zeros(2, 8, 8))}, ["r0", "r1"]),
        "n2": (*big, {"A": Attribution(torch.rand(1, 10, 10), torch.rand(1, 10, 10))}, ["r0"]),
    }
    fig = draw_face_rows(panels, columns=cols)
    assert len(fig.axes) == 3 * 4  # 3 rows x (gallery, probe, 2 maps)
    assert [fig.axes[4 * r].get_ylabel() for r in range(3)] == ["n1\nr0", "n1\nr1", "n2\nr0"]
    assert fig.axes[8].get_images()[0].get_array().shape[:2] == (10, 10)
    empty = [i for i, ax in enumerate(fig.axes) if ax.texts]
    assert empty == [3, 7]  # n1's all-zero e₋ maps, not n2's


def test_recipe_variants_share_their_methods_hue_and_baselines_are_grey_dashed_in_fig4():
    from matplotlib.colors import to_rgb

    blue = to_rgb("tab:blue")
    assert to_rgb(method_colour("Grad-CAM (paper)")) == blue
    assert to_rgb(method_colour("Grad-CAM (reference)")) == tuple(0.6 * c for c in blue)
    assert method_colour("FAME (reference)") == "tab:brown"  # listed names win
    values = {}
    for m in ("Grad-CAM (paper)", "Random"):
        for kind in ("Delete", "Insert"):
            for pct in (0.0, 100.0):
                values[(m, f"{kind}-acc", pct)] = [50.0, 50.0]
    result = _face_result(values)
    result.summary.index = ["Grad-CAM (paper)", "Random"]
    fig = draw_face_curves({"n": {"s": result}})
    cam, random = fig.axes[0].lines
    assert to_rgb(cam.get_color()) == blue and cam.get_linestyle() == "-"
    assert to_rgb(random.get_color()) == to_rgb("0.45") and random.get_linestyle() not in (
        "-",
        "None",
    )
    assert random.get_marker() in (None, "None", "")


def test_method_rows_outline_the_mask_on_the_input_and_mark_empty_maps():
    from fame_utils.plotting import draw_method_rows

    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[:, 2:5, 2:5] = True
    maps = {"A": Attribution(torch.rand(2, 8, 8)), "B": Attribution(torch.zeros(2, 8, 8))}
    fig = draw_method_rows(torch.rand(2, 3, 8, 8), maps, ["x", "y"], masks=masks, title="t")
    assert [ax.get_title() for ax in fig.axes] == ["input", "A", "B", "", "", ""]
    assert [ax.get_ylabel() for ax in fig.axes[::3]] == ["x", "y"]
    assert [len(ax.collections) for ax in fig.axes] == [1, 0, 0, 1, 0, 0]  # the outlines
    assert [i for i, ax in enumerate(fig.axes) if ax.texts] == [2, 5]  # B's empty maps


class _Pairs:
    """Two face pairs as ``FacePairs`` holds them: pair 0 genuine, pair 1 impostor."""

    gallery, probe = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    genuine = torch.tensor([True, False])

    def __len__(self):
        return 2


def test_pair_removal_titles_each_method_with_its_pairs_values():
    from fame_utils.plotting import draw_pair_removal

    values = {}
    for kind, acc, sim in (
        ("Delete", [0.0, 100.0], [0.2, 0.4]),
        ("Insert", [100.0, 0.0], [0.9, 0.1]),
    ):
        values[("A", f"{kind}-acc", 50.0)] = acc
        values[("A", f"{kind}-sim", 50.0)] = sim
        values[("A", kind, np.nan)] = [12.0, 34.0] if kind == "Delete" else [56.0, 78.0]
    result = _face_result(values)
    result.summary = result.summary.loc[["A"]]
    result.maps = lambda name: Attribution(torch.rand(2, 8, 8))
    fig = draw_pair_removal({"s": _Pairs()}, {"s": result}, "s", 5, 50.0, ())  # 5: the last
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[1] == "probe (impostor)" and titles[2] == "A e₊"
    assert titles[3:] == ["delete 50%: s=0.400 ✓", "insert 50%: s=0.100 ✗"]
    assert fig.axes[0].get_ylabel() == "A\nDel 34 / Ins 78"
