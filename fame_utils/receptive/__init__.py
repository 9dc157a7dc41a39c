"""Receptive fields across depth against CAM's one-cell-one-patch assumption (Sec. 3, Fig. 2)."""

from .cells import CellAttributions as CellAttributions
from .cells import ReceptiveField as ReceptiveField
from .cells import cells_at as cells_at
from .cells import empirical_receptive_field as empirical_receptive_field
from .cells import receptive_field as receptive_field
from .cells import run_cells as run_cells
from .measures import cell_explorer as cell_explorer
from .measures import cell_measures as cell_measures
from .measures import describe_depth_trend as describe_depth_trend
from .measures import describe_locality as describe_locality
from .measures import describe_measurements as describe_measurements
from .measures import locality_table as locality_table
from .measures import measure_layers as measure_layers
from .measures import receptive_field_table as receptive_field_table
from .measures import summarize_by_depth as summarize_by_depth
from .plots import field_note as field_note
from .plots import plot_cells_by_depth as plot_cells_by_depth
from .plots import plot_contact_sheet as plot_contact_sheet
from .plots import plot_measurements as plot_measurements
