"""Receptive fields across depth: feature-cell attributions against CAM's assumption
(paper Sec. 3, Fig. 2). Modules: :mod:`.cells` (cells, CAM boxes), :mod:`.attributions`
(the batched cell runner), :mod:`.tracer` (theoretical and empirical receptive fields of
any network), :mod:`.measures`, :mod:`.plots` and :mod:`.explorer` (the widget); every
public name is importable from ``fame_utils.receptive``.

CAM methods upsample an h × w feature map to the H × W image, which assumes that cell
(i, j) "sees" the patch rows [i·H/h, (i+1)·H/h), columns [j·W/w, (j+1)·W/w) — the
**CAM-assumed box**. FAME can test that assumption directly: descend
L_a = ‖a[k] − 0‖₁ = Σ_c |a_c[k]| for one cell k of layer a and look where the input had to
change. This module

- explains many cells of a layer in one batched FAME run (:func:`run_cells`,
  :func:`explain_cells`), keeping the unblurred Δx so that σ can change without
  re-optimising;
- gives each cell its CAM-assumed box (:func:`cam_boxes`) and the layer's **theoretical
  receptive field** (:func:`receptive_field`), traced from the operations the network
  actually runs (convolutions, pooling, explicit padding such as TensorFlow "same",
  residual additions and concatenations), plus an empirical, gradient-based check
  (:func:`empirical_receptive_field`);
- measures, per cell, the share of attribution mass inside the CAM box
  (:func:`mass_in_box`), the distance of the attribution's centre of mass to the cell's
  centre (:func:`center_of_mass`, :func:`cell_measures`) and the area that holds half of
  the mass (:func:`mass_area`), and aggregates them over images and depths into a
  :class:`pandas.DataFrame` (:func:`measure_layers`, :func:`measure_run`,
  :func:`summarize_by_depth`), put into words (:func:`describe_measurements`,
  :func:`describe_depth_trend`), and tabulates each layer's receptive field against its
  CAM box (:func:`receptive_field_table`);
- draws a contact sheet of all cells of a layer (:func:`plot_contact_sheet`), a few cells
  per depth (:func:`plot_cells_by_depth`) and the measurements against depth
  (:func:`plot_measurements`).

Coordinates: a box ``(x0, y0, x1, y1)`` is half-open in input pixels — it holds the pixels
with column index x0 ≤ x < x1 and row index y0 ≤ y < y1, so pixel k spans [k, k+1) and its
centre is k + 0.5. Centres of mass and cell centres use the same continuous coordinates.
"""

from .attributions import CellAttributions, explain_cells, run_cells
from .cells import (
    DEFAULT_CELL_BATCH,
    all_cells,
    cam_boxes,
    cell_centers,
    cells_at,
    clip_boxes,
    default_cell_batch,
    sample_cells,
)
from .explorer import cell_explorer
from .measures import (
    cell_measures,
    center_of_mass,
    describe_depth_trend,
    describe_measurements,
    mass_area,
    mass_in_box,
    measure_layers,
    measure_run,
    receptive_field_table,
    summarize_by_depth,
)
from .plots import (
    DepthRow,
    field_note,
    plot_cells_by_depth,
    plot_contact_sheet,
    plot_measurements,
)
from .tracer import ReceptiveField, empirical_receptive_field, receptive_field

__all__ = [
    "DEFAULT_CELL_BATCH",
    "default_cell_batch",
    "CellAttributions",
    "ReceptiveField",
    "all_cells",
    "sample_cells",
    "cells_at",
    "cam_boxes",
    "cell_centers",
    "run_cells",
    "explain_cells",
    "receptive_field",
    "empirical_receptive_field",
    "clip_boxes",
    "mass_in_box",
    "center_of_mass",
    "mass_area",
    "cell_measures",
    "measure_layers",
    "measure_run",
    "summarize_by_depth",
    "describe_measurements",
    "describe_depth_trend",
    "receptive_field_table",
    "DepthRow",
    "plot_contact_sheet",
    "plot_cells_by_depth",
    "plot_measurements",
    "field_note",
    "cell_explorer",
]
