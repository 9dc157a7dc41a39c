"""Turning the accumulated input change into an attribution map (paper Sec. 2).

The order follows the paper: gray first (0.2989 R + 0.587 G + 0.114 B), then the
absolute difference, then a Gaussian blur (kernel 49, sigma 7.7 by default), then
normalisation to [0, 1]. All functions run on the tensor's device.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "GRAY_WEIGHTS",
    "to_gray",
    "gaussian_kernel1d",
    "gaussian_blur",
    "kernel_size_for",
    "normalize_maps",
    "max_normalize",
    "Normalization",
]

GRAY_WEIGHTS = (0.2989, 0.587, 0.114)
"""ITU-R 601 luma weights used by the paper for RGB -> gray."""

Normalization = Literal["max", "minmax", "none"]


def to_gray(images: Tensor) -> Tensor:
    """(B, 3, H, W) RGB -> (B, H, W) gray with :data:`GRAY_WEIGHTS`. Linear, so
    ``to_gray(a) - to_gray(b) == to_gray(a - b)`` up to rounding."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"to_gray expects (B, 3, H, W), got {tuple(images.shape)}")
    r, g, b = GRAY_WEIGHTS  # elementwise, so a pixel's gray never depends on the batch
    return r * images[:, 0] + g * images[:, 1] + b * images[:, 2]


def gaussian_kernel1d(
    kernel_size: int, sigma: float, *, dtype=torch.float32, device=None
) -> Tensor:
    """Normalised 1-D Gaussian of odd length ``kernel_size`` (sums to 1)."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    if not sigma > 0:
        raise ValueError(f"sigma must be > 0, got {sigma}")
    half = kernel_size // 2
    x = torch.arange(-half, half + 1, dtype=torch.float64)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return (k / k.sum()).to(dtype=dtype, device=device)


def kernel_size_for(sigma: float) -> int:
    """Odd kernel length covering ±3σ: 2·⌊3σ + ½⌋ + 1 (1 for σ <= 0, i.e. no blur).

    The paper fixes the pair (49, 7.7); this is the kernel used when σ alone is changed
    (e.g. in the interactive explorers), 2·23 + 1 = 47 at σ = 7.7.
    """
    if sigma <= 0:
        return 1
    return 2 * int(3 * sigma + 0.5) + 1


def gaussian_blur(maps: Tensor, kernel_size: int = 49, sigma: float = 7.7) -> Tensor:
    """Separable Gaussian blur of (B, H, W) maps on their device.

    Borders are reflected without repeating the edge pixel (scipy ``mode="mirror"``,
    OpenCV ``BORDER_REFLECT_101``); where the map is smaller than half the kernel the
    reflection falls back to replicate padding. ``sigma <= 0`` or ``kernel_size == 1``
    returns the input unchanged.
    """
    if maps.ndim != 3:
        raise ValueError(f"gaussian_blur expects maps of shape (B, H, W), got {tuple(maps.shape)}")
    if kernel_size == 1 or sigma <= 0:
        return maps
    k = gaussian_kernel1d(kernel_size, sigma, dtype=maps.dtype, device=maps.device)
    half = kernel_size // 2
    x = maps.unsqueeze(1)
    h, w = x.shape[-2:]
    mode = "reflect" if half < h and half < w else "replicate"
    x = F.pad(x, (half, half, half, half), mode=mode)
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    x = F.conv2d(x, k.view(1, 1, -1, 1))
    return x.squeeze(1)


def normalize_maps(maps: Tensor, mode: Normalization = "max") -> tuple[Tensor, Tensor]:
    """Scale each (H, W) map of a (B, H, W) batch to [0, 1].

    ``"max"`` divides by the map's maximum (the paper); ``"minmax"`` subtracts the
    minimum first (the reference code); ``"none"`` returns the maps as they are.

    Returns:
        ``(normalised, empty)`` where ``empty`` is a (B,) bool tensor marking maps
        whose range is zero: those stay all zero rather than being divided by zero.
    """
    if maps.ndim != 3:
        raise ValueError(f"normalize_maps expects (B, H, W), got {tuple(maps.shape)}")
    flat = maps.flatten(1)
    if mode == "none":
        return maps, flat.amax(1) <= flat.amin(1)
    if mode == "max":
        lo = torch.zeros_like(flat[:, :1])
    elif mode == "minmax":
        lo = flat.amin(1, keepdim=True)
    else:
        raise ValueError(f"normalization must be 'max', 'minmax' or 'none', got {mode!r}")
    span = flat.amax(1, keepdim=True) - lo
    empty = span.squeeze(1) <= 0
    out = torch.where(span > 0, (flat - lo) / span.clamp_min(torch.finfo(flat.dtype).tiny), 0.0)
    return out.view_as(maps), empty


def max_normalize(maps: Tensor) -> Tensor:
    """Each (H, W) map of a (B, H, W) batch divided by its maximum; maps whose maximum is
    <= 0 become all zero (the paper's max normalisation)."""
    return normalize_maps(maps, "max")[0]
