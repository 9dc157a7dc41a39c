"""Seeded percentile-bootstrap intervals of means over items (scipy's differ in the last bits)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

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


def bootstrap_interval(
    values: object, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0, level: float = 0.95
) -> Interval:
    """Percentile-bootstrap interval of the mean of 1-D finite ``values`` (one per item):
    ``n_resamples`` resamples with replacement from ``default_rng(seed)``, coverage
    ``level``. A single item gives ``low == high == mean``."""
    if int(n_resamples) < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size == 0 or not np.isfinite(x).all():
        raise ValueError(f"values must be finite and non-empty, got {x[~np.isfinite(x)][:3]}")
    idx = np.random.default_rng(seed).integers(0, x.size, size=(int(n_resamples), x.size))
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(x[idx].mean(axis=1), [alpha, 1.0 - alpha])
    return Interval(float(x.mean()), float(low), float(high), float(level))


def paired_difference(
    a: object, b: object, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0, level: float = 0.95
) -> Interval:
    """Bootstrap interval of mean(a − b) over items (``a[i]``, ``b[i]`` of item i, equal
    lengths); A beats B on a higher-is-better column only when ``low > 0``."""
    x, y = (np.asarray(v, dtype=np.float64).reshape(-1) for v in (a, b))
    if x.shape != y.shape:
        raise ValueError(f"paired values need equal lengths, got {x.size} and {y.size}")
    return bootstrap_interval(x - y, n_resamples, seed, level)


def map_pearson(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-map Pearson r of two (N, ...) batches of one shape and device -> (N,) float64
    (NaN where a map is constant)."""
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(
            f"map_pearson needs two (N, ...) batches of one shape, got {a.shape}, {b.shape}"
        )
    a, b = a.flatten(1).double(), b.flatten(1).double()
    a, b = a - a.mean(1, keepdim=True), b - b.mean(1, keepdim=True)
    return (a * b).sum(1) / (a.norm(dim=1) * b.norm(dim=1))
