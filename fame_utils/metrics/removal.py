"""Which pixels a removal metric removes: pixel ranking, tie rules and removal masks.

Every removal metric (ROAD-Delete and the perturbation curves of
:mod:`fame_utils.metrics.road`, the face Deletion/Insertion of :mod:`fame_utils.metrics.face`)
takes its top-p % pixel sets from here. Maps are (B, H, W) float on any device; rankings,
keys and masks are built on the maps' device.

Ranking and ties (argument ``ties``, default from :attr:`fame_utils.recipes.Recipe.ties`,
seed from ``Recipe.tie_seed``). Which pixels go first among pixels of *equal* map value
matters wherever a map is flat (an all-zero e₊, the zero regions of CAM and FGGB maps):

- ``"random"`` (the paper recipe's default) — exact count: every map is ranked by
  decreasing value, and pixels of equal value in a seeded random order. The order is one
  permutation of the H·W pixel indices drawn on the CPU with
  ``torch.Generator().manual_seed(tie_seed)`` and moved to the maps' device, so it is the
  same on every device and for every map of the batch. Removing p % of an H×W map removes
  exactly ``round(p/100 · H·W)`` pixels (half up), however many ties the map has, and a
  flat map loses pixels spread over the whole image.
- ``"reference"`` (the reference recipe) — the percentile rule of the code behind the
  paper's tables: θ_p = the (100 − p)-th percentile of the map's values (linear
  interpolation, as ``numpy.percentile``), and the removed (Delete) or kept (Insert)
  pixels are those with value > θ_p, with no tie-break. The count then depends on the
  ties: a plateau is removed entirely or not at all, and a constant map removes nothing.
  (pytorch-grad-cam's ``ROADMostRelevantFirst`` uses ≥ θ instead, and its ``percentile``
  counts the pixels *kept*.)
- ``"index"`` — exact count with ties in row-major pixel order (the behaviour before
  ``"random"``; deterministic but biased: a flat map loses its top rows first). Only
  selectable explicitly, for comparison.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor

from .._checks import check_maps
from ..recipes import Recipe, get_recipe

__all__ = [
    "TieRule",
    "resolve_ties",
    "tie_order",
    "pixel_ranks",
    "top_pixel_sets",
    "removal_counts",
    "removal_masks",
]

TieRule = Literal["random", "reference", "index"]


def resolve_ties(
    ties: TieRule | None = None,
    tie_seed: int | None = None,
    recipe: str | Recipe | None = None,
) -> tuple[TieRule, int]:
    """``(ties, tie_seed)``: the given values, else those of ``recipe`` (``None`` → paper:
    ``("random", 0)``). Record both with the results."""
    r = get_recipe(recipe)
    rule = r.ties if ties is None else ties
    seed = r.tie_seed if tie_seed is None else tie_seed
    if rule not in ("random", "reference", "index"):
        raise ValueError(f"ties must be 'random', 'reference' or 'index', got {rule!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"tie_seed must be an int, got {seed!r}")
    return rule, seed


def tie_order(n_pixels: int, seed: int, device: torch.device | str = "cpu") -> Tensor:
    """The seeded random tie order: a permutation (n_pixels,) long of the pixel indices,
    drawn on the CPU (``torch.Generator().manual_seed(seed)``) and moved to ``device``, so
    the same on every device."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.randperm(n_pixels, generator=gen).to(device)


def pixel_ranks(
    maps: Tensor,
    *,
    ties: TieRule | None = None,
    tie_seed: int | None = None,
    recipe: str | Recipe | None = None,
) -> Tensor:
    """Rank of every pixel, 0 = most relevant: (B, H, W) maps -> (B, H, W) long.

    The ranking is a permutation of 0..H·W−1 for every map, deterministic on every
    device. Equal values are ordered by the seeded random order of :func:`tie_order`
    (``ties="random"``) or by row-major pixel index (``ties="index"``). ``"reference"``
    has no ranking (it thresholds, see the module docstring): use :func:`removal_masks`.
    """
    check_maps(maps)
    rule, seed = resolve_ties(ties, tie_seed, recipe)
    if rule == "reference":
        raise ValueError(
            "ties='reference' thresholds at a percentile and ranks nothing; use "
            "removal_masks (or ties='random' / 'index' for a ranking)"
        )
    b = maps.shape[0]
    # +0.0 turns -0.0 into 0.0 so that both compare equal in the sort keys.
    flat = maps.reshape(b, -1) + 0.0
    n = flat.shape[1]
    if rule == "random":
        perm = tie_order(n, seed, maps.device)
        order = perm[torch.sort(-flat[:, perm], dim=1, stable=True).indices]
    else:
        order = torch.sort(-flat, dim=1, stable=True).indices
    ranks = torch.empty_like(order)
    ar = torch.arange(n, device=maps.device).expand(b, -1)
    ranks.scatter_(1, order, ar)
    return ranks.view_as(maps)


def _percentile_thresholds(values: Tensor, q: Tensor) -> Tensor:
    """``numpy.percentile(values[b], q)`` (linear interpolation) for (B, N) float64 values
    and (P,) percentiles in [0, 100] -> (B, P), by sorting (no size limit)."""
    srt = values.sort(dim=1).values
    pos = (q / 100.0 * (values.shape[1] - 1)).to(values.device)
    lo = pos.floor().long()
    hi = pos.ceil().long()
    frac = (pos - lo.to(pos.dtype)).unsqueeze(0)
    a, c = srt[:, lo], srt[:, hi]
    return a + (c - a) * frac


def top_pixel_sets(
    maps: Tensor,
    percents: float | Sequence[float] | Tensor,
    *,
    most_relevant_first: bool = True,
    ties: TieRule | None = None,
    tie_seed: int | None = None,
    recipe: str | Recipe | None = None,
) -> tuple[Tensor, Tensor]:
    """The top-p % pixel sets of every map as ``(key, cut)``: pixel (h, w) of map b is in
    the set of percentage j iff ``key[b, h, w] > cut[b, j]``.

    ``key`` (B, H, W) and ``cut`` (B, P) live on the maps' device. Delete removes these
    sets and Insert keeps them; building the (B, P, H, W) masks at once is left to the
    caller (:func:`removal_masks`), so large batches can be masked in chunks.
    """
    check_maps(maps)
    rule, seed = resolve_ties(ties, tie_seed, recipe)
    ps = torch.as_tensor(percents, dtype=torch.float64).reshape(-1)
    n = maps.shape[1] * maps.shape[2]
    if rule == "reference":
        removal_counts(ps, n)  # validates the percentages
        m = maps.to(torch.float64) + 0.0
        if not most_relevant_first:
            m = -m
        key = m
        cut = _percentile_thresholds(m.reshape(m.shape[0], -1), 100.0 - ps)
        return key, cut
    ranks = pixel_ranks(maps, ties=rule, tie_seed=seed)
    if not most_relevant_first:
        ranks = (n - 1) - ranks
    k = torch.tensor(removal_counts(ps, n), device=maps.device)
    # rank < k  ⇔  −rank > −k
    return -ranks, (-k).expand(maps.shape[0], -1)


def removal_counts(percents: float | Sequence[float] | Tensor, n_pixels: int) -> list[int]:
    """Number of pixels removed for each percentage: ``floor(p/100 · n + 1/2)``.

    ``percents`` are in [0, 100]."""
    ps = torch.as_tensor(percents, dtype=torch.float64).reshape(-1).tolist()
    out = []
    for p in ps:
        if not 0.0 <= p <= 100.0:
            raise ValueError(f"percentages must lie in [0, 100], got {p}")
        # the 1e-9 guards against p/100·n landing a hair below an exact half in binary
        out.append(min(n_pixels, int(math.floor(p / 100.0 * n_pixels + 0.5 + 1e-9))))
    return out


def removal_masks(
    maps: Tensor,
    percents: float | Sequence[float] | Tensor,
    *,
    most_relevant_first: bool = True,
    ties: TieRule | None = None,
    tie_seed: int | None = None,
    recipe: str | Recipe | None = None,
) -> Tensor:
    """Masks of the removed pixels: (B, H, W) maps, P percentages -> (B, P, H, W) bool.

    ``True`` marks a removed pixel: the top-p % of each map (the bottom-p % when
    ``most_relevant_first=False``). With ``ties="random"`` or ``"index"`` each mask removes
    exactly :func:`removal_counts` pixels, in the order of :func:`pixel_ranks`; with
    ``ties="reference"`` the pixels above the (100 − p)-th percentile (see the module
    docstring). ``ties``/``tie_seed`` default to ``recipe``'s (paper: random, seed 0).
    """
    key, cut = top_pixel_sets(
        maps,
        percents,
        most_relevant_first=most_relevant_first,
        ties=ties,
        tie_seed=tie_seed,
        recipe=recipe,
    )
    return key.unsqueeze(1) > cut[:, :, None, None]
