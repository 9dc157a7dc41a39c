"""Verification thresholds: the equal error rate (EER) threshold on similarity scores.

Convention (the paper's protocol, used by FGGB's weights and the Delete/Insert metrics):

- a pair is *accepted* (predicted genuine) when its score s ≥ θ;
- FAR(θ) = fraction of impostor pairs accepted, FRR(θ) = fraction of genuine pairs
  rejected (s < θ);
- the candidate thresholds are the unique scores; the EER threshold is the candidate
  that minimises |FAR(θ) − FRR(θ)|, compared exactly (in integer counts, so no rounding
  makes two candidates tie or not tie), and among candidates with the same minimal
  |FAR − FRR| the **largest** θ wins;
- the reported EER is (FAR(θ) + FRR(θ))/2 at that θ (FAR and FRR seldom meet exactly on
  a finite score list).

Scores may be lists, numpy arrays or torch tensors (any device); ``genuine`` holds
booleans or 0/1 labels (1 = genuine, as the ``T`` column of a pair protocol).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["eer_threshold", "eer"]


def _as_numpy(values: object, name: str) -> np.ndarray:
    if hasattr(values, "detach"):  # torch tensor on any device
        values = values.detach().cpu().numpy()
    return np.asarray(values)


def _check(scores: object, genuine: object) -> tuple[np.ndarray, np.ndarray]:
    s = _as_numpy(scores, "scores").astype(np.float64)
    g = _as_numpy(genuine, "genuine")
    if s.ndim != 1 or g.ndim != 1:
        raise ValueError(f"scores and genuine must be 1-D, got shapes {s.shape} and {g.shape}")
    if s.shape != g.shape:
        raise ValueError(f"{s.size} scores but {g.size} genuine labels")
    if not np.isfinite(s).all():
        raise ValueError("scores contain NaN or infinite values")
    if g.dtype != np.bool_:
        if not np.isin(g, (0, 1)).all():
            raise ValueError("genuine must hold booleans or 0/1 labels (1 = genuine pair)")
        g = g.astype(bool)
    if g.all() or not g.any():
        raise ValueError(
            "the EER needs both genuine and impostor pairs; got "
            f"{int(g.sum())} genuine and {int((~g).sum())} impostor"
        )
    return s, g


def _counts(s: np.ndarray, g: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, ...]:
    """Accepted impostors and rejected genuines (integer counts) at each threshold."""
    imp = np.sort(s[~g])
    gen = np.sort(s[g])
    false_accepts = imp.size - np.searchsorted(imp, thresholds, side="left")  # s >= θ
    false_rejects = np.searchsorted(gen, thresholds, side="left")  # s < θ
    return false_accepts, false_rejects, imp.size, gen.size


def eer(
    scores: Sequence[float] | np.ndarray, genuine: Sequence[bool] | np.ndarray
) -> tuple[float, float]:
    """``(eer_value, threshold)``: the EER threshold (see the module docstring for the
    convention) and (FAR + FRR)/2 there, both Python floats.

    Args:
        scores: (N,) similarity scores (higher = more similar), e.g. cosine similarities.
        genuine: (N,) booleans or 0/1, True/1 for genuine (same identity) pairs.

    Raises:
        ValueError: shapes differ, non-finite scores, labels not 0/1, or only one class.
    """
    s, g = _check(scores, genuine)
    candidates = np.unique(s)  # ascending
    fa, fr, n_imp, n_gen = _counts(s, g, candidates)
    # |FA/n_imp − FR/n_gen| compared exactly as |FA·n_gen − FR·n_imp| (integers)
    gap = np.abs(fa.astype(np.int64) * n_gen - fr.astype(np.int64) * n_imp)
    best = np.flatnonzero(gap == gap.min())[-1]  # ties -> the largest threshold
    value = (fa[best] / n_imp + fr[best] / n_gen) / 2
    return float(value), float(candidates[best])


def eer_threshold(
    scores: Sequence[float] | np.ndarray, genuine: Sequence[bool] | np.ndarray
) -> float:
    """The EER threshold θ on the scores (accept when s ≥ θ; ties to the largest θ)."""
    return eer(scores, genuine)[1]
