"""Localisation (paper Sec. 4, Table 2): IoU@t = |S_t ∩ B| / |S_t ∪ B| with S_t = {M ≥ t}
for a map M in [0, 1] and B the first object's box (or pixel mask). A constant map scores
the box's area share, so Table 2 also reports IoU per box-size stratum (:data:`SIZE_STRATA`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .._checks import check_maps, check_unit_interval

#: Box-size strata by the box's image share: ``{name: (low, high)}``, low ≤ share < high (≤ 1).
SIZE_STRATA: dict[str, tuple[float, float]] = {
    "small": (0.0, 1 / 3),
    "medium": (1 / 3, 2 / 3),
    "large": (2 / 3, 1.0),
}


def float_tuple(values: Any, name: str, lo: float, hi: float) -> tuple[float, ...]:
    """Settings as a tuple of floats (so 10 and 10.0 hash alike), each within [lo, hi]."""
    out = tuple(float(v) for v in (values if isinstance(values, Iterable) else [values]))
    if not out:
        raise ValueError(f"{name} is empty")
    bad = [v for v in out if not lo <= v <= hi]
    if bad:
        raise ValueError(f"{name} must lie in [{lo:g}, {hi:g}], got {bad}")
    return out


def boxes_to_masks(boxes: Tensor | Sequence[Sequence[float]], size: tuple[int, int]) -> Tensor:
    """(B, 4) boxes ``(x0, y0, x1, y1)`` in pixels -> (B, H, W) bool masks of
    :func:`fame_utils.data.transforms.box_mask`, which also checks the boxes; a zero-area box
    (cropped off) stays empty, one of positive area that covers no pixel raises ValueError."""
    from ..data.transforms import box_mask  # lazy: avoids an import cycle at package import

    b = torch.as_tensor(boxes, dtype=torch.float32)
    masks = box_mask(b, size)
    b = b.reshape(-1, 4)
    empty = ((b[:, 2:] > b[:, :2]).all(1) & ~masks.flatten(1).any(1)).nonzero().flatten()
    if empty.numel():
        raise ValueError(
            f"boxes {empty.tolist()[:5]} (x0, y0, x1, y1 = {b[empty[:5]].tolist()}) cover no pixel "
            f"of the {size[0]}x{size[1]} maps; boxes must be in the maps' pixel coordinates"
        )
    return masks


def iou_at_thresholds(
    maps: Tensor, boxes: Tensor, thresholds: float | Sequence[float] = (0.3, 0.5, 0.7)
) -> Tensor:
    """(B, T) IoU@t on the maps' device of {map ≥ t} for (B, H, W) maps in [0, 1] and ``boxes``
    ((B, H, W) bool masks or (B, 4) pixel boxes) at T thresholds t in [0, 1] (0 if both empty)."""
    check_maps(maps)
    check_unit_interval(maps, "maps (IoU thresholds are absolute; normalise the maps first)")
    t = torch.tensor(float_tuple(thresholds, "IoU thresholds", 0.0, 1.0), dtype=torch.float64)
    if isinstance(boxes, Tensor) and boxes.ndim == 3:
        masks = boxes.to(device=maps.device).bool()
    else:
        masks = boxes_to_masks(boxes, maps.shape[1:]).to(maps.device)
    if masks.shape != maps.shape:
        raise ValueError(
            f"box masks have shape {tuple(masks.shape)} but maps have {tuple(maps.shape)}"
        )
    sal = maps.unsqueeze(1) >= t.to(device=maps.device, dtype=maps.dtype).view(1, -1, 1, 1)
    box = masks.unsqueeze(1)
    inter = (sal & box).flatten(2).sum(-1)
    union = (sal | box).flatten(2).sum(-1)
    return inter.to(maps.dtype) / union.clamp_min(1).to(maps.dtype)


def mass_on_mask(maps: Tensor, masks: Tensor) -> Tensor:
    """(B,) Σ map·mask / Σ map in [0, 1] of (B, H, W) maps ≥ 0 on (B, H, W) bool masks (0
    for an all-zero map; a map that ignores the mask scores :func:`mask_share`)."""
    check_maps(maps)
    if masks.shape != maps.shape:
        raise ValueError(f"masks have shape {tuple(masks.shape)} but maps {tuple(maps.shape)}")
    total = maps.flatten(1).sum(1)
    on = (maps * masks.to(device=maps.device, dtype=maps.dtype)).flatten(1).sum(1)
    return on / total.clamp_min(torch.finfo(maps.dtype).tiny)


def mask_share(masks: Tensor) -> Tensor:
    """Area share of each mask: (B, H, W) bool -> (B,) float in [0, 1]."""
    return masks.flatten(1).float().mean(1)


def box_area_shares(boxes: Tensor, size: tuple[int, int]) -> Tensor:
    """(B,) float64 CPU share of the ``size`` = (H, W) image that each (B, 4) box covers."""
    return boxes_to_masks(boxes, size).flatten(1).double().mean(1).cpu()


def size_strata(shares: Tensor | Sequence[float]) -> list[str]:
    """The :data:`SIZE_STRATA` name of each box-area share (in [0, 1])."""
    values = torch.as_tensor(shares, dtype=torch.float64).reshape(-1).tolist()
    bad = [v for v in values if not 0.0 <= v <= 1.0]
    if bad:
        raise ValueError(f"box-area shares must lie in [0, 1], got {bad[:5]}")
    names = list(SIZE_STRATA)
    return [next(n for n in names if v < SIZE_STRATA[n][1] or n == names[-1]) for v in values]


def box_area_table(shares: Mapping[str, Tensor | Sequence[float]]) -> pd.DataFrame:
    """``{dataset: (N,) shares}`` -> datasets × ``n``, ``mean %``, ``median %``, ``q25 %``,
    ``q75 %``, ``min %``, ``max %`` and the item count of each stratum (``n small``...)."""
    rows = {}
    for name, values in shares.items():
        v = torch.as_tensor(values, dtype=torch.float64).reshape(-1).numpy()
        strata = size_strata(v)
        q = np.percentile(v, [50, 25, 75, 0, 100]) * 100
        rows[name] = {
            "n": len(v),
            "mean %": 100 * float(v.mean()),
            **dict(zip(("median %", "q25 %", "q75 %", "min %", "max %"), q)),
            **{f"n {s}": strata.count(s) for s in SIZE_STRATA},
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def iou_by_box_size(
    per_item: Mapping[str, pd.DataFrame], shares: Tensor | Sequence[float]
) -> pd.DataFrame:
    """Mean IoU per box-size stratum: ``{IoU column: items × methods}`` (index = item
    position) and the (N,) shares of all items -> methods × ``"<column> <stratum> (n=k)"``."""
    strata = np.asarray(size_strata(shares))
    out = {}
    for column, values in per_item.items():
        idx = values.index.to_numpy()
        if len(idx) and (idx.min() < 0 or idx.max() >= len(strata)):
            raise ValueError(f"{column!r}: item index out of range for {len(strata)} shares")
        for s in SIZE_STRATA:
            rows = values[strata[idx] == s]
            if len(rows):
                out[f"{column} {s} (n={len(rows)})"] = rows.mean(axis=0)
    return pd.DataFrame(out)
