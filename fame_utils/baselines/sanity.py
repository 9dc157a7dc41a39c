"""Sanity baselines (issue 23): (B, H, W) maps in [0, 1] that ignore model and target."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .._checks import check_images
from ..objectives import Attribution
from ..postprocess import gaussian_blur, normalize_maps

#: Display names of the sanity baselines, the rows marked as references, not methods.
BASELINE_NAMES: tuple[str, ...] = ("Constant", "Random", "Centre")


@dataclass
class Constant:
    """Every pixel 1: (B, H, W) ones on ``images``' device."""

    name: str = "Constant"

    def __call__(self, model: nn.Module, images: Tensor, target: object) -> Attribution:
        return Attribution(torch.ones(check_images(images)[:, 0].shape, device=images.device))


@dataclass
class Random:
    """Seeded uniform CPU noise, blurred as FAME (49, σ 7.7), min-max scaled per map."""

    seed: int = 0
    kernel_size: int = 49
    sigma: float = 7.7
    name: str = "Random"

    def __call__(self, model: nn.Module, images: Tensor, target: object) -> Attribution:
        gen = torch.Generator().manual_seed(int(self.seed))
        noise = torch.rand(check_images(images)[:, 0].shape, generator=gen).to(images.device)
        blurred = gaussian_blur(noise, self.kernel_size, self.sigma)
        return Attribution(normalize_maps(blurred, "minmax")[0])


@dataclass
class Centre:
    """exp(−½((x − cₓ)²/σₓ² + (y − c_y)²/σ_y²)) with σₓ = ``width`` · W, σ_y = ``width`` · H
    (pixel centres, peak 1 at the image centre)."""

    width: float = 0.25
    name: str = "Centre"

    def __post_init__(self):
        if not self.width > 0:
            raise ValueError(f"width must be > 0 (σ as a share of the side), got {self.width}")

    def __call__(self, model: nn.Module, images: Tensor, target: object) -> Attribution:
        b, _, h, w = check_images(images).shape
        y, x = (
            (torch.arange(n, device=images.device, dtype=torch.float32) - (n - 1) / 2)
            / (self.width * n)
            for n in (h, w)
        )
        prior = torch.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2))
        return Attribution(prior.expand(b, h, w).clone())
