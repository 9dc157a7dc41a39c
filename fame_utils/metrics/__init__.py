"""Evaluation metrics of the paper's tables.

- :mod:`~fame_utils.metrics.localization` — IoU@t between {map ≥ t} and the object box
  (Table 2), box-area shares and IoU per box-size stratum.
- :mod:`~fame_utils.metrics.removal` — pixel ranking with a tie rule (seeded random, the
  reference's percentile rule, or row-major), removal counts and masks.
- :mod:`~fame_utils.metrics.imputation` — zero and noisy-linear (ROAD) removal.
- :mod:`~fame_utils.metrics.road` — ROAD-Delete@p (Table 2), insertion/deletion curves, AUC.
- :mod:`~fame_utils.metrics.face` — face-verification Deletion/Insertion at the clean EER
  threshold (Table 1).
- :mod:`~fame_utils.metrics.threshold` — EER threshold, EER, verification accuracy.
"""
