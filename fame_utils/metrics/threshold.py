"""The equal error rate (EER) and its threshold θ (accept when s ≥ θ; paper Sec. 4): among
the unique scores (scikit-learn's ``roc_curve``) the θ minimising |FAR − FRR| in exact
integer counts, ties to the **largest** θ; the EER is (FAR + FRR)/2 there."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import roc_curve

__all__ = ["eer_threshold", "eer"]


def eer(
    scores: Sequence[float] | np.ndarray, genuine: Sequence[bool] | np.ndarray
) -> tuple[float, float]:
    """``(eer_value, threshold)`` floats of (N,) ``scores`` (list, numpy or torch) and
    (N,) ``genuine`` bool or 0/1 (1 = same identity); raises ``ValueError`` on mismatched
    shapes, non-finite scores, labels not 0/1 or a single class."""
    s, g = (np.asarray(v.detach().cpu() if hasattr(v, "detach") else v) for v in (scores, genuine))
    if s.ndim != 1 or s.shape != g.shape:
        raise ValueError(
            f"scores and genuine labels must be 1-D of one length, got {s.shape}, {g.shape}"
        )
    if not np.isfinite(s.astype(np.float64)).all():
        raise ValueError("scores contain NaN or infinite values")
    if not np.isin(g, (0, 1)).all():
        raise ValueError("genuine must hold booleans or 0/1 labels (1 = genuine pair)")
    g = g.astype(bool)
    n_gen, n_imp = int(g.sum()), int((~g).sum())
    if not n_gen or not n_imp:
        raise ValueError(
            f"the EER needs both genuine and impostor pairs; got {n_gen} genuine and {n_imp} impostor"
        )
    far, tpr, thresholds = roc_curve(g, s.astype(np.float64), drop_intermediate=False)
    # descending thresholds after the first (+inf); integer counts for an exact comparison
    fa = np.rint(far[1:] * n_imp).astype(np.int64)
    fr = n_gen - np.rint(tpr[1:] * n_gen).astype(np.int64)
    gap = np.abs(fa * n_gen - fr * n_imp)
    best = int(np.argmin(gap))  # the first minimum in descending order: the largest θ
    return float((fa[best] / n_imp + fr[best] / n_gen) / 2), float(thresholds[1:][best])


def eer_threshold(
    scores: Sequence[float] | np.ndarray, genuine: Sequence[bool] | np.ndarray
) -> float:
    """The EER threshold θ on the scores (accept when s ≥ θ; ties to the largest θ)."""
    return eer(scores, genuine)[1]
