"""Localisation against a pixel mask instead of a box (e.g. the strokes of a digit).

:class:`MaskMetric` is a metric adapter for :func:`fame_utils.run_experiment`
(the :class:`~fame_utils.metrics.adapters.Metric` protocol) on classification data whose
items have a per-pixel object mask rather than a box — the stroke masks of
:mod:`fame_utils.data.digits`. It holds the masks of the whole dataset in dataset order and
picks a batch's by ``batch.indices``. Columns, all ×100 (percent):

- ``IoU@t``: |{map ≥ t} ∩ mask| / |{map ≥ t} ∪ mask| (:func:`iou_at_thresholds`, the
  Table 2 measure with the mask in place of the box);
- ``Mass-on-mask``: Σ map·mask / Σ map, the share of the attribution mass on the mask
  (:func:`mass_on_mask`); a map that ignored the mask would score the mask's area share,
  which :func:`mask_share` gives (an all-zero map scores 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from .._checks import check_maps
from ..data.items import Task
from .adapters import Column, float_tuple
from .localization import iou_at_thresholds

__all__ = ["MaskMetric", "mass_on_mask", "mask_share"]


def mass_on_mask(maps: Tensor, masks: Tensor) -> Tensor:
    """Share of each map's mass on its mask: (B, H, W) maps ≥ 0 and (B, H, W) bool masks →
    (B,) in [0, 1] on the maps' device; 0 for an all-zero map."""
    check_maps(maps)
    if masks.shape != maps.shape:
        raise ValueError(f"masks have shape {tuple(masks.shape)} but maps {tuple(maps.shape)}")
    total = maps.flatten(1).sum(1)
    on = (maps * masks.to(device=maps.device, dtype=maps.dtype)).flatten(1).sum(1)
    return on / total.clamp_min(torch.finfo(maps.dtype).tiny)


def mask_share(masks: Tensor) -> Tensor:
    """Area share of each mask: (B, H, W) bool → (B,) float in [0, 1]."""
    return masks.flatten(1).float().mean(1)


@dataclass
class MaskMetric:
    """IoU@t ×100 and mass-on-mask ×100 against per-item pixel masks (module docstring).

    Args:
        masks: (N, H, W) bool masks of the whole dataset, in dataset order (item i's mask
            is ``masks[i]``), on any device.
        thresholds: the IoU thresholds t in [0, 1].
    """

    masks: Tensor = field(repr=False)
    thresholds: tuple[float, ...] = (0.3, 0.5, 0.7)
    task: Task = "classification"
    decimals: int = 1

    def __post_init__(self):
        if not isinstance(self.masks, Tensor) or self.masks.ndim != 3:
            raise ValueError("masks must be a (N, H, W) tensor, one mask per dataset item")
        self.masks = self.masks.bool()
        self.thresholds = float_tuple(self.thresholds, "IoU thresholds", 0.0, 1.0)

    def columns(self) -> list[Column]:
        return [Column("IoU", threshold=t) for t in self.thresholds] + [Column("Mass-on-mask")]

    def summary_columns(self) -> list[Column]:
        return self.columns()

    def __call__(self, model, batch, attribution, context):
        maps = attribution.positive.float()
        index = torch.as_tensor(batch.indices, dtype=torch.long, device=self.masks.device)
        if int(index.max()) >= self.masks.shape[0]:
            raise ValueError(
                f"item {int(index.max())} has no mask: {self.masks.shape[0]} masks given"
            )
        masks = self.masks[index].to(maps.device)
        iou = iou_at_thresholds(maps, masks, self.thresholds)
        out = {c: iou[:, j] * 100 for j, c in enumerate(self.columns()[:-1])}
        out[self.columns()[-1]] = mass_on_mask(maps, masks) * 100
        return out
