"""Evaluation metrics of the paper's tables: :mod:`~.localization` (IoU@t, Table 2),
:mod:`~.road` (top-p % pixel sets, ROAD-Delete@p, Table 2),
:mod:`~.face` (face Deletion/Insertion, Table 1), :mod:`~.threshold` (EER) and
:mod:`~.adapters` (the metric objects the experiment runner evaluates).
"""
