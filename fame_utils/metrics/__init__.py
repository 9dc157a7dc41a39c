"""Metrics of the paper's tables: :mod:`~.localization` (IoU@t), :mod:`~.road` (pixel sets,
ROAD-Delete@p), :mod:`~.face` (EER, Deletion/Insertion) and :mod:`~.adapters` (the metric
objects the runner evaluates)."""
