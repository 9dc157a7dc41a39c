"""The attribution map from the input change (paper Sec. 2, Eq. map): gray, absolute
difference, Gaussian blur (kernel 49, σ 7.7), normalisation to [0, 1], on the tensor's device."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)  # ITU-R 601 luma, as in the paper

Normalization = Literal["max", "minmax", "none"]


def to_gray(images: Tensor) -> Tensor:
    """(B, 3, H, W) RGB -> (B, H, W) gray with :data:`GRAY_WEIGHTS` (linear, per pixel)."""
    r, g, b = GRAY_WEIGHTS
    return r * images[:, 0] + g * images[:, 1] + b * images[:, 2]


def kernel_size_for(sigma: float) -> int:
    """Odd kernel length covering ±3σ, 2·⌊3σ + ½⌋ + 1 (1: no blur), for a σ changed alone."""
    return 2 * int(3 * sigma + 0.5) + 1 if sigma > 0 else 1


def gaussian_blur(maps: Tensor, kernel_size: int = 49, sigma: float = 7.7) -> Tensor:
    """Separable Gaussian blur of (B, H, W) maps on their device (odd ``kernel_size``, else
    ValueError; kernel normalised in float64), borders mirrored (scipy ``mode="mirror"``;
    replicated where a map is under half the kernel); ``sigma <= 0`` or size 1: no blur."""
    if kernel_size == 1 or sigma <= 0:
        return maps
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    half = kernel_size // 2
    k = torch.exp(-0.5 * (torch.arange(-half, half + 1, dtype=torch.float64) / sigma) ** 2)
    k = (k / k.sum()).to(dtype=maps.dtype, device=maps.device)
    mode = "reflect" if half < maps.shape[1] and half < maps.shape[2] else "replicate"
    x = F.pad(maps.unsqueeze(1), (half, half, half, half), mode=mode)
    x = F.conv2d(F.conv2d(x, k.view(1, 1, 1, -1)), k.view(1, 1, -1, 1))
    return x.squeeze(1)


def normalize_maps(maps: Tensor, mode: Normalization = "max") -> tuple[Tensor, Tensor]:
    """``(maps in [0, 1], empty)`` of (B, H, W) maps: ``"max"`` divides by the maximum (the
    paper), ``"minmax"`` subtracts the minimum first (the reference code), ``"none"`` keeps
    them; ``empty`` (B,) bool marks zero-range maps (left all zero)."""
    flat = maps.flatten(1)
    if mode == "none":
        return maps, flat.amax(1) <= flat.amin(1)
    lo = flat.amin(1, keepdim=True) if mode == "minmax" else torch.zeros_like(flat[:, :1])
    span = flat.amax(1, keepdim=True) - lo
    out = torch.where(span > 0, (flat - lo) / span.clamp_min(torch.finfo(flat.dtype).tiny), 0.0)
    return out.view_as(maps), span.squeeze(1) <= 0
