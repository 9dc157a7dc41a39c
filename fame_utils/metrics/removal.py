"""Which pixels a removal metric removes: the top-p % pixel sets of the maps.

ROAD-Delete (:mod:`~fame_utils.metrics.road`, Table 2) and the face Deletion/Insertion
(:mod:`~fame_utils.metrics.face`, Table 1) take their pixel sets from here. The order among
pixels of *equal* map value (``ties``, :attr:`fame_utils.recipes.Recipe.ties`) matters
wherever a map is flat:

- ``"random"`` (the paper recipe): exact counts, round(p/100 · H·W) pixels (half up), the
  equal values in one seeded permutation of the pixel indices (drawn on the CPU with
  ``torch.Generator().manual_seed(tie_seed)``, so the same on every device and map).
- ``"reference"`` (the reference recipe): the percentile rule of the code behind the
  paper's tables: the pixels with value > the (100 − p)-th percentile (linear, as
  ``numpy.percentile``); a plateau goes entirely or not at all.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
from torch import Tensor

from .._checks import check_maps

__all__ = ["TieRule", "top_pixel_sets", "removal_masks", "top_pixel_chunks"]

TieRule = Literal["random", "reference"]


def top_pixel_sets(
    maps: Tensor,
    percents: float | Sequence[float] | Tensor,
    *,
    ties: TieRule = "random",
    tie_seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """The top-p % pixel sets of (B, H, W) maps as ``(key, cut)`` on the maps' device:
    pixel (h, w) of map b is in the set of percentage j iff ``key[b, h, w] > cut[b, j]``.

    Raises:
        ValueError: a percentage outside [0, 100] or an unknown tie rule.
    """
    check_maps(maps)
    if ties not in ("random", "reference"):
        raise ValueError(f"ties must be 'random' or 'reference', got {ties!r}")
    if isinstance(tie_seed, bool) or not isinstance(tie_seed, int):
        raise TypeError(f"tie_seed must be an int, got {tie_seed!r}")
    ps = torch.as_tensor(percents, dtype=torch.float64).reshape(-1)
    bad = [p for p in ps.tolist() if not 0.0 <= p <= 100.0]
    if bad:
        raise ValueError(f"percentages must lie in [0, 100], got {bad}")
    b, n = maps.shape[0], maps.shape[1] * maps.shape[2]
    flat = maps.reshape(b, -1) + 0.0  # +0.0 makes -0.0 and 0.0 equal keys
    if ties == "reference":
        srt = flat.to(torch.float64).sort(dim=1).values
        pos = ((100.0 - ps) / 100.0 * (n - 1)).to(maps.device)
        lo, hi = pos.floor().long(), pos.ceil().long()
        frac = (pos - lo.to(pos.dtype)).unsqueeze(0)
        cut = srt[:, lo] + (srt[:, hi] - srt[:, lo]) * frac
        return maps.to(torch.float64) + 0.0, cut
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(tie_seed)).to(maps.device)
    order = perm[torch.sort(-flat[:, perm], dim=1, stable=True).indices]
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(n, device=maps.device).expand(b, -1))
    # the 1e-9 guards against p/100·n landing a hair below an exact half in binary
    k = [min(n, math.floor(p / 100.0 * n + 0.5 + 1e-9)) for p in ps.tolist()]
    # rank < k  ⇔  −rank > −k
    return -ranks.view_as(maps), -torch.tensor(k, device=maps.device).expand(b, -1)


def removal_masks(
    maps: Tensor,
    percents: float | Sequence[float] | Tensor,
    *,
    ties: TieRule = "random",
    tie_seed: int = 0,
) -> Tensor:
    """(B, H, W) maps, P percentages -> (B, P, H, W) bool, ``True`` on the top-p % pixels
    (the removed ones of Delete) of :func:`top_pixel_sets`."""
    key, cut = top_pixel_sets(maps, percents, ties=ties, tie_seed=tie_seed)
    return key.unsqueeze(1) > cut[:, :, None, None]


def top_pixel_chunks(
    key: Tensor, cut: Tensor, batch_size: int
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """All (image i, percentage j) pairs of :func:`top_pixel_sets`' ``(key, cut)``,
    image-major, in chunks of ``batch_size``: ``(ii, jj, top)`` with ``top`` the (n, H, W)
    bool top-p % masks of the chunk, on ``key``'s device."""
    b, n_p = cut.shape
    pairs = torch.arange(b * n_p, device=key.device)
    for chunk in pairs.split(batch_size):
        ii, jj = chunk // n_p, chunk % n_p
        yield ii, jj, key[ii] > cut[ii, jj].view(-1, 1, 1)
