"""Localisation metric of Table 2: IoU between the salient region and the object box.

For a map M ∈ [0, 1]^{H×W} and a threshold t the salient region is S_t = {M ≥ t}; with
the ground-truth box mask B (the first object of the image, mapped through the same
resize/crop as the image), IoU@t = |S_t ∩ B| / |S_t ∪ B| (paper Sec. 4, Table 2; the
tables report the mean over images ×100).

Everything is vectorised over images and thresholds and runs on the maps' device.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .._checks import check_maps

__all__ = ["iou_at_thresholds", "salient_region", "boxes_to_masks"]


def _thresholds(thresholds: float | Sequence[float] | Tensor, device, dtype) -> Tensor:
    t = torch.as_tensor(thresholds, dtype=torch.float64).reshape(-1)
    if t.numel() == 0:
        raise ValueError("thresholds is empty")
    return t.to(device=device, dtype=dtype)


def boxes_to_masks(boxes: Tensor | Sequence[Sequence[float]], size: tuple[int, int]) -> Tensor:
    """(B, 4) boxes ``(x0, y0, x1, y1)`` in pixel coordinates -> (B, H, W) bool masks.

    Uses :func:`fame_utils.data.transforms.box_mask`, the project's single definition of
    which pixels a box covers, so IoU and the figures agree.
    """
    from ..data.transforms import box_mask  # lazy: avoids an import cycle at package import

    b = torch.as_tensor(boxes, dtype=torch.float32)
    if b.ndim == 1:
        b = b.unsqueeze(0)
    if b.ndim != 2 or b.shape[1] != 4:
        raise ValueError(f"boxes must have shape (B, 4) as (x0, y0, x1, y1), got {tuple(b.shape)}")
    return box_mask(b, size).reshape(b.shape[0], *size).bool()


def salient_region(maps: Tensor, thresholds: float | Sequence[float] | Tensor) -> Tensor:
    """S_t = {M ≥ t}: (B, H, W) maps and T thresholds -> (B, T, H, W) bool."""
    check_maps(maps)
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
            the maps' pixel coordinates (converted with :func:`boxes_to_masks`).
        thresholds: T thresholds t.

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
