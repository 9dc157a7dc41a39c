"""Receptive fields across depth: feature-cell attributions against CAM's assumption that
cell (i, j) sees only its own patch (paper Sec. 3, Fig. 2)."""

from .cells import CellAttributions, cells_at, run_cells
from .explorer import cell_explorer
from .measures import (
    cell_measures,
    describe_depth_trend,
    describe_locality,
    describe_measurements,
    locality_table,
    measure_layers,
    receptive_field_table,
    summarize_by_depth,
)
from .plots import field_note, plot_cells_by_depth, plot_contact_sheet, plot_measurements
from .tracer import ReceptiveField, empirical_receptive_field, receptive_field

__all__ = [
    "CellAttributions",
    "ReceptiveField",
    "cell_explorer",
    "cell_measures",
    "cells_at",
    "describe_depth_trend",
    "describe_locality",
    "describe_measurements",
    "empirical_receptive_field",
    "field_note",
    "locality_table",
    "measure_layers",
    "plot_cells_by_depth",
    "plot_contact_sheet",
    "plot_measurements",
    "receptive_field",
    "receptive_field_table",
    "run_cells",
    "summarize_by_depth",
]
