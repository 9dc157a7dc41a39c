"""Receptive fields across depth: feature-cell attributions against CAM's assumption
(paper Sec. 3, Fig. 2).

CAM upsamples an h × w feature map to the image, assuming that cell (i, j) sees only its
own patch, the **CAM-assumed box**. FAME tests that directly: descend
L_a = ‖a[k] − 0‖₁ = Σ_c |a_c[k]| for cell k of layer a and look where the input changed.
:mod:`.cells` gives the cells, their boxes and the batched cell runner; :mod:`.tracer` the
theoretical (traced) and empirical receptive fields of any network; :mod:`.measures` the
measures, tables and their descriptions; :mod:`.plots` the figures; :mod:`.explorer` the
notebook widget. Boxes are ``(x0, y0, x1, y1)``, half-open, in input pixels.
"""

from .cells import (
    CellAttributions,
    all_cells,
    cam_boxes,
    cell_centers,
    cells_at,
    default_cell_batch,
    run_cells,
    sample_cells,
)
from .explorer import cell_explorer
from .measures import (
    cell_measures,
    center_of_mass,
    describe_depth_trend,
    describe_locality,
    describe_measurements,
    locality_table,
    mass_area,
    mass_in_box,
    measure_layers,
    measure_run,
    receptive_field_table,
    summarize_by_depth,
)
from .plots import DepthRow, field_note, plot_cells_by_depth, plot_contact_sheet, plot_measurements
from .tracer import ReceptiveField, empirical_receptive_field, receptive_field

__all__ = [
    "CellAttributions",
    "DepthRow",
    "ReceptiveField",
    "all_cells",
    "cam_boxes",
    "cell_centers",
    "cell_explorer",
    "cell_measures",
    "cells_at",
    "center_of_mass",
    "default_cell_batch",
    "describe_depth_trend",
    "describe_locality",
    "describe_measurements",
    "empirical_receptive_field",
    "field_note",
    "locality_table",
    "mass_area",
    "mass_in_box",
    "measure_layers",
    "measure_run",
    "plot_cells_by_depth",
    "plot_contact_sheet",
    "plot_measurements",
    "receptive_field",
    "receptive_field_table",
    "run_cells",
    "sample_cells",
    "summarize_by_depth",
]
