"""Receptive-field figures and the cell explorer (fame_utils.receptive.plots, .explorer)."""

from __future__ import annotations

import pytest
import torch

from fame_utils.receptive import (
    measure_layers,
    receptive_field,
    run_cells,
)


def _rectangles(ax):
    import matplotlib.pyplot as plt

    return [p for p in ax.patches if isinstance(p, plt.Rectangle)]


def test_contact_sheet_draws_each_cam_box_in_its_panel():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fame_utils.receptive import plot_contact_sheet

    image, maps = torch.rand(3, 8, 12), torch.rand(6, 8, 12)
    fig = plot_contact_sheet(image, maps, (2, 3))
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert len(axes) == 6
    # panel (1, 2) -> box cols [8, 12), rows [4, 8), drawn at pixel edges (-0.5 offset)
    (rect,) = _rectangles(fig.axes[5])
    assert rect.get_xy() == (7.5, 3.5) and (rect.get_width(), rect.get_height()) == (4, 4)
    plt.close(fig)
    with pytest.raises(ValueError, match="3136 panels"):
        plot_contact_sheet(image, torch.rand(3136, 2, 2), (56, 56))


@pytest.mark.slow
def test_depth_figure_and_measurement_plot(tiny_cnn):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from fame_utils.receptive import plot_cells_by_depth, plot_measurements

    x = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    rows = {}
    for label, layer in (("16x16", tiny_cnn[0]), ("8x8", tiny_cnn[2])):
        res = run_cells(tiny_cnn, x, layer, [(0, 0), (3, 3)], iterations=2, progress=False)
        rf = receptive_field(tiny_cnn, layer, 16)
        rows[label] = (res.maps(sigma=1.0, kernel_size=5)[0], res.cells, res.grid, rf)
    fig = plot_cells_by_depth(x[0], rows)
    assert len(fig.axes) == 2 * 3
    # cell (3, 3) of the 8x8 layer: CAM box [6, 8) (white) and receptive field (dashed)
    rects = _rectangles(fig.axes[5])
    assert sorted(r.get_edgecolor()[:3] == (1.0, 1.0, 1.0) for r in rects) == [False, True]
    plt.close(fig)
    df = measure_layers(
        tiny_cnn,
        x,
        {"16x16": tiny_cnn[0], "8x8": tiny_cnn[2]},
        cells_per_layer=2,
        iterations=2,
        sigma=1.0,
        kernel_size=5,
        progress=False,
    )
    fig = plot_measurements(df, sigma=1.0)
    assert len(fig.axes) == 3 and fig.axes[0].get_ylabel().startswith("share of mass")
    plt.close(fig)


def test_cell_explorer_caches_runs(tiny_cnn, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    import fame_utils.receptive as rfm
    import fame_utils.receptive.measures as explorer_module

    calls = []
    real = explorer_module.run_fame

    def counting(model, images, objective, *args, **kwargs):
        calls.append(objective.cells.tolist())
        return real(model, images, objective, *args, **kwargs)

    monkeypatch.setattr(explorer_module, "run_fame", counting)
    x = torch.rand(2, 3, 16, 16)
    w = rfm.cell_explorer(
        tiny_cnn,
        x,
        ["a", "b"],
        {"16x16": tiny_cnn[0], "8x8": tiny_cnn[2]},
        iterations=2,
        sigma=1.0,
    )  # draws the first view at creation, synchronously (headless)
    live = w.explorer
    assert calls == [[[4, 4]]]  # default: centre cell of the deepest layer
    live.sigma.value = 2.0  # σ: re-blur only (live)
    assert len(calls) == 1
    live.controls["layer"].value = "16x16"  # another layer: sliders get its range
    assert live.controls["row"].max == 15 and live.controls["row"].description == "row (of 16)"
    live.run_button.click()
    live.wait(60)
    assert len(calls) == 2
    live.run_button.click()  # same choice again: cached
    assert len(calls) == 2
    assert "mass in CAM box" in live.text.value


def test_field_note_and_figure_titles():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from fame_utils.receptive import (
        ReceptiveField,
        field_note,
        plot_cells_by_depth,
        plot_measurements,
    )

    # 1 × 1 fields on an 8 × 8 image: [-3, 11) clips to the whole image, [1, 7) does not
    whole = ReceptiveField(torch.tensor([[[-3.0, -3.0, 11.0, 11.0]]]), (14, 14), (8, 8), (8, 8))
    part = ReceptiveField(torch.tensor([[[1.0, 1.0, 7.0, 7.0]]]), (6, 6), (8, 8), (8, 8))
    assert field_note(whole) == "every receptive field covers the whole image"
    assert field_note(part) == "cyan: receptive field"

    row = {"1x1": (torch.rand(1, 8, 8), torch.tensor([[0, 0]]), (1, 1), part)}
    fig = plot_cells_by_depth(torch.rand(3, 8, 8), row, title="depths")
    assert fig._suptitle.get_text() == "depths"
    plt.close(fig)
    assert plot_cells_by_depth(torch.rand(3, 8, 8), row)._suptitle is None
    plt.close("all")
    df = pd.DataFrame(
        {
            "layer": pd.Categorical(["a", "a", "b", "b"], categories=["a", "b"], ordered=True),
            "map": ["delta", "blurred"] * 2,
            "mass_in_box": [0.5, 0.4, 0.2, 0.1],
            "com_dist_cells": [0.1, 0.2, 0.3, 0.4],
            "area50": [0.1, 0.2, 0.3, 0.4],
            "box_area": [0.25, 0.25, 0.05, 0.05],
            "uniform_com_dist_cells": [1.0, 1.0, 2.0, 2.0],
        }
    )
    fig = plot_measurements(df, sigma=2.0, title="measured")
    assert fig._suptitle.get_text() == "measured" and len(fig.axes) == 3
    plt.close(fig)
