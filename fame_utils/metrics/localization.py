"""Localisation metric of Table 2: IoU between the salient region and the object box.

For a map M ∈ [0, 1]^{H×W} and a threshold t the salient region is S_t = {M ≥ t}; with
the ground-truth box mask B (the first object of the image, mapped through the same
resize/crop as the image), IoU@t = |S_t ∩ B| / |S_t ∪ B| (paper Sec. 4, Table 2; the
tables report the mean over images ×100).

Everything is vectorised over images and thresholds and runs on the maps' device.

Box size. IoU on large boxes rewards diffuse maps: a constant map's IoU@t is the box's
share of the image at every t (:func:`box_area_shares`). Report each dataset's box-area
distribution (:func:`box_area_table`) and IoU per size stratum (:data:`SIZE_STRATA`:
small under 1/3 of the image, medium under 2/3, large; :func:`iou_by_box_size`) beside
the IoU columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from .._checks import check_maps, check_unit_interval

__all__ = [
    "iou_at_thresholds",
    "salient_region",
    "boxes_to_masks",
    "SIZE_STRATA",
    "box_area_shares",
    "size_strata",
    "box_area_table",
    "iou_by_box_size",
]

#: Box-size strata by the box's share of the image: ``{name: (low, high)}``, low ≤ share
#: < high (the last one includes 1).
SIZE_STRATA: dict[str, tuple[float, float]] = {
    "small": (0.0, 1 / 3),
    "medium": (1 / 3, 2 / 3),
    "large": (2 / 3, 1.0),
}


def _thresholds(thresholds: float | Sequence[float] | Tensor, device, dtype) -> Tensor:
    """IoU thresholds t as a (T,) tensor; each must lie in [0, 1] (the maps' range: a
    t > 1 gives an empty salient region, a t < 0 the whole image)."""
    t = torch.as_tensor(thresholds, dtype=torch.float64).reshape(-1)
    if t.numel() == 0:
        raise ValueError("thresholds is empty")
    bad = [v for v in t.tolist() if not 0.0 <= v <= 1.0]  # NaN fails too
    if bad:
        raise ValueError(
            f"IoU thresholds must lie in [0, 1] (the maps are normalised to [0, 1]), got {bad}"
        )
    return t.to(device=device, dtype=dtype)


def boxes_to_masks(boxes: Tensor | Sequence[Sequence[float]], size: tuple[int, int]) -> Tensor:
    """(B, 4) boxes ``(x0, y0, x1, y1)`` in pixel coordinates -> (B, H, W) bool masks.

    Uses :func:`fame_utils.data.transforms.box_mask`, the project's single definition of
    which pixels a box covers, so IoU and the figures agree. A box partly outside the
    image covers its pixels inside; a box of positive area that covers no pixel of the
    H × W image (e.g. in another image's coordinates) raises ``ValueError`` naming it,
    instead of silently becoming an empty box with IoU 0. A zero-area box (x0 = x1 or
    y0 = y1) is how :func:`fame_utils.data.transforms.map_boxes` marks an object that the
    centre crop cut off; it stays empty (IoU 0). NaN or reversed boxes raise too.
    """
    from ..data.transforms import box_mask  # lazy: avoids an import cycle at package import

    b = torch.as_tensor(boxes, dtype=torch.float32)
    if b.ndim == 1:
        b = b.unsqueeze(0)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape (B, 4) as (x0, y0, x1, y1), got {tuple(b.shape)}")
    masks = box_mask(b, size).reshape(b.shape[0], *size).bool()
    has_area = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
    empty = (has_area & ~masks.flatten(1).any(1)).nonzero().flatten().tolist()
    if empty:
        shown = ", ".join(f"{i}: {[round(v, 3) for v in b[i].tolist()]}" for i in empty[:5])
        raise ValueError(
            f"{len(empty)} box(es) of positive area cover no pixel of the {size[0]}x{size[1]} image "
            f"(index: x0, y0, x1, y1 = {shown}); boxes must be in the maps' pixel coordinates"
        )
    return masks


def salient_region(maps: Tensor, thresholds: float | Sequence[float] | Tensor) -> Tensor:
    """S_t = {M ≥ t}: (B, H, W) maps in [0, 1] and T thresholds in [0, 1] -> (B, T, H, W)
    bool."""
    check_maps(maps)
    check_unit_interval(maps, "maps (IoU thresholds are absolute; normalise the maps first)")
    t = _thresholds(thresholds, maps.device, maps.dtype)
    return maps.unsqueeze(1) >= t.view(1, -1, 1, 1)


def iou_at_thresholds(
    maps: Tensor,
    boxes: Tensor,
    thresholds: float | Sequence[float] | Tensor = (0.3, 0.5, 0.7),
) -> Tensor:
    """IoU@t between {map ≥ t} and the box region, per image and threshold (Table 2).

    Args:
        maps: (B, H, W) float attribution maps in [0, 1] (the thresholds are absolute,
            so maps must already be normalised), any device.
        boxes: either (B, H, W) bool box masks, or (B, 4) boxes ``(x0, y0, x1, y1)`` in
            the maps' pixel coordinates (converted with :func:`boxes_to_masks`; a box
            covering no pixel of the maps raises ``ValueError``).
        thresholds: T thresholds t in [0, 1].

    Returns:
        (B, T) float tensor of IoU in [0, 1] on the maps' device (multiply the mean by 100
        for the paper's tables). When both S_t and the box are empty the IoU is 0.
    """
    check_maps(maps)
    b, h, w = maps.shape
    if isinstance(boxes, Tensor) and boxes.ndim == 3:
        if boxes.shape != maps.shape:
            raise ValueError(
                f"box masks have shape {tuple(boxes.shape)} but maps have {tuple(maps.shape)}"
            )
        masks = boxes.to(device=maps.device).bool()
    else:
        masks = boxes_to_masks(boxes, (h, w)).to(maps.device)
        if masks.shape[0] != b:
            raise ValueError(f"{masks.shape[0]} boxes for {b} maps")
    sal = salient_region(maps, thresholds)  # (B, T, H, W)
    box = masks.unsqueeze(1)
    inter = (sal & box).flatten(2).sum(-1)
    union = (sal | box).flatten(2).sum(-1)
    return inter.to(maps.dtype) / union.clamp_min(1).to(maps.dtype)


def box_area_shares(boxes: Tensor, size: tuple[int, int] | None = None) -> Tensor:
    """Share of the image's pixels each box covers: (B, H, W) bool masks, or (B, 4) boxes
    with ``size`` = (H, W) -> (B,) float64 in [0, 1] (CPU). The same pixels as IoU's box,
    so a constant map's IoU@t equals this share."""
    if isinstance(boxes, Tensor) and boxes.ndim == 3:
        masks = boxes.bool()
    else:
        if size is None:
            raise ValueError("size=(H, W) is needed with (B, 4) boxes")
        masks = boxes_to_masks(boxes, size)
    return masks.flatten(1).double().mean(1).cpu()


def size_strata(shares: Tensor | Sequence[float]) -> list[str]:
    """The :data:`SIZE_STRATA` name of each box-area share (in [0, 1])."""
    values = torch.as_tensor(shares, dtype=torch.float64).reshape(-1).tolist()
    bad = [v for v in values if not 0.0 <= v <= 1.0]
    if bad:
        raise ValueError(f"box-area shares must lie in [0, 1], got {bad[:5]}")
    names = list(SIZE_STRATA)
    return [next(n for n in names if v < SIZE_STRATA[n][1] or n == names[-1]) for v in values]


def box_area_table(shares: Mapping[str, Tensor | Sequence[float]]) -> pd.DataFrame:
    """Box-area distribution per dataset: ``{dataset: (N,) shares}`` -> rows = datasets,
    columns ``n``, ``mean %``, ``median %``, ``q25 %``, ``q75 %``, ``min %``, ``max %``
    and the item count of each :data:`SIZE_STRATA` stratum (``n small``...)."""
    rows = {}
    for name, values in shares.items():
        v = torch.as_tensor(values, dtype=torch.float64).reshape(-1).numpy()
        strata = size_strata(v)
        q = np.percentile(v, [0, 25, 50, 75, 100]) * 100
        rows[name] = {
            "n": len(v),
            "mean %": 100 * float(v.mean()),
            "median %": q[2],
            "q25 %": q[1],
            "q75 %": q[3],
            "min %": q[0],
            "max %": q[4],
            **{f"n {s}": strata.count(s) for s in SIZE_STRATA},
        }
    return pd.DataFrame.from_dict(rows, orient="index")


def iou_by_box_size(
    per_item: Mapping[str, pd.DataFrame], shares: Tensor | Sequence[float]
) -> pd.DataFrame:
    """Mean IoU per box-size stratum.

    Args:
        per_item: ``{IoU column: items × methods}`` (index = item position in the
            dataset, as :attr:`fame_utils.paper.Comparison.per_item`).
        shares: (N,) box-area share of every dataset item (:func:`box_area_shares`).

    Returns:
        methods × ``"<column> <stratum> (n=k)"`` means; strata without items left out.
    """
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
