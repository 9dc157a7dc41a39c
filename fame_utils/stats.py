"""Uncertainty of table numbers: seeded bootstrap intervals over images or pairs.

Every cell of a summary table is a mean over items (images for Table 2, pairs for
Table 1). :func:`bootstrap_interval` gives its 95 % percentile-bootstrap interval;
:func:`paired_difference` the interval of the difference of two methods' means over the
*same* items (resampling items, not methods), which is what a claim "A beats B" needs.
Resampling is done with numpy's ``default_rng(seed)`` so the intervals are the same on
every machine.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

__all__ = [
    "Interval",
    "bootstrap_interval",
    "paired_difference",
    "DEFAULT_RESAMPLES",
    "map_pearson",
]

DEFAULT_RESAMPLES = 2000


@dataclass(frozen=True)
class Interval:
    """A mean and its bootstrap interval ``[low, high]`` at ``level`` (e.g. 0.95)."""

    mean: float
    low: float
    high: float
    level: float = 0.95

    def format(self, decimals: int = 1) -> str:
        """``"46.1 [44.0, 48.3]"``."""
        return f"{self.mean:.{decimals}f} [{self.low:.{decimals}f}, {self.high:.{decimals}f}]"


def _as_vector(values: object, name: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0:
        raise ValueError(f"{name} is empty: a bootstrap interval needs at least one value")
    if not np.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values ({int((~np.isfinite(x)).sum())})")
    return x


def _check(n_resamples: int, level: float) -> None:
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")


def _interval(x: np.ndarray, n_resamples: int, seed: int, level: float) -> Interval:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(int(n_resamples), x.size))
    means = x[idx].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(means, [alpha, 1.0 - alpha])
    return Interval(float(x.mean()), float(low), float(high), float(level))


def bootstrap_interval(
    values: object,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Percentile-bootstrap interval of the mean of ``values`` (one value per item).

    Args:
        values: 1-D array-like of per-item values (finite).
        n_resamples: bootstrap resamples (items drawn with replacement).
        seed: numpy ``default_rng`` seed.
        level: coverage, e.g. 0.95.

    Returns:
        :class:`Interval` (a single item gives ``low == high == mean``).
    """
    _check(n_resamples, level)
    return _interval(_as_vector(values, "values"), n_resamples, seed, level)


def paired_difference(
    a: object,
    b: object,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Bootstrap interval of mean(a − b) where ``a[i]`` and ``b[i]`` belong to the same item.

    A method beats another on a higher-is-better column only when this interval lies
    above 0 (``interval.low > 0``); when it contains 0 the data cannot separate them.

    Raises:
        ValueError: different lengths (the values must be paired item by item).
    """
    _check(n_resamples, level)
    x, y = _as_vector(a, "a"), _as_vector(b, "b")
    if x.shape != y.shape:
        raise ValueError(f"paired values need equal lengths, got {x.size} and {y.size}")
    return _interval(x - y, n_resamples, seed, level)


def map_pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-map Pearson r between two batches of maps, for "how far did the map move".

    Args:
        a, b: (N, H, W) (or any (N, ...)) tensors of the same shape, on one device.

    Returns:
        (N,) float64 r on that device (NaN where a map is constant).
    """
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(
            f"map_pearson needs two (N, ...) batches of one shape, got {a.shape}, {b.shape}"
        )
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
