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

from .face import (
    FACE_PERCENTS,
    FacePerturbation,
    cosine_scores,
    embed,
    face_deletion_insertion,
)
from .imputation import NEIGHBOUR_WEIGHTS, RemovalMode, noisy_linear_impute, remove_pixels
from .localization import (
    SIZE_STRATA,
    box_area_shares,
    box_area_table,
    boxes_to_masks,
    iou_at_thresholds,
    iou_by_box_size,
    salient_region,
    size_strata,
)
from .removal import (
    TieRule,
    pixel_ranks,
    removal_counts,
    removal_masks,
    resolve_ties,
    tie_order,
    top_pixel_sets,
)
from .road import ScoreKind, class_scores, curve_auc, perturbation_curves, road_scores
from .threshold import eer, eer_threshold, far_frr, verification_accuracy

__all__ = [
    "FACE_PERCENTS",
    "FacePerturbation",
    "cosine_scores",
    "embed",
    "face_deletion_insertion",
    "boxes_to_masks",
    "iou_at_thresholds",
    "salient_region",
    "SIZE_STRATA",
    "box_area_shares",
    "box_area_table",
    "iou_by_box_size",
    "size_strata",
    "NEIGHBOUR_WEIGHTS",
    "RemovalMode",
    "ScoreKind",
    "TieRule",
    "class_scores",
    "curve_auc",
    "noisy_linear_impute",
    "perturbation_curves",
    "pixel_ranks",
    "removal_counts",
    "removal_masks",
    "remove_pixels",
    "road_scores",
    "resolve_ties",
    "tie_order",
    "top_pixel_sets",
    "eer",
    "eer_threshold",
    "far_frr",
    "verification_accuracy",
]
