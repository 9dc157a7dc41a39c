"""Sanity baselines: maps that carry no information about the model or the image.

A table that cannot tell a real explanation from these cannot rank explanations (issue
23; the evaluation pitfalls of the bundled data: a constant map scores IoU@t = the box's
share of the image, random deletion leads ROAD-Delete with zero removal). They run under
the shared calling convention of :mod:`fame_utils.methods`
(``method(model, images, target) -> Attribution``) for classification and verification
targets alike, ignore the model and the target, and return (B, H, W) maps in [0, 1] on
``images``' device:

- :class:`Constant` — every pixel 1. Pixel removal then follows the metric's seeded tie
  rule (:mod:`fame_utils.metrics.road`), i.e. removes pixels in a random order; IoU@t
  is the box's area share at every t.
- :class:`Random` — seeded uniform noise blurred with FAME's kernel (49, σ 7.7, paper
  Sec. 3) and min-max scaled, so as smooth as a FAME map and placed at random.
- :class:`Centre` — a centred Gaussian prior, σ = ``width`` × the image side per axis,
  peak 1 (the photographer's bias: objects sit in the middle).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor, nn

from ..objectives import Attribution, ClassLogit, CosineSimilarity
from ..postprocess import gaussian_blur, normalize_maps

__all__ = ["Constant", "Random", "Centre", "BASELINE_NAMES"]

#: Display names of the sanity baselines: the rows tables, sentences and figures mark as
#: references rather than methods.
BASELINE_NAMES: tuple[str, ...] = ("Constant", "Random", "Centre")


def _check_images(images: Tensor) -> tuple[int, int, int]:
    if not isinstance(images, Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__
        raise ValueError(f"images must be a (B, C, H, W) tensor, got {shape}")
    b, _, h, w = images.shape
    return b, h, w


@dataclass
class Constant:
    """Every pixel 1: (B, H, W) ones on ``images``' device (model and target unused)."""

    name: str = "Constant"
    targets: ClassVar[tuple[type, ...]] = (ClassLogit, CosineSimilarity)

    def __call__(self, model: nn.Module, images: Tensor, target: object) -> Attribution:
        b, h, w = _check_images(images)
        return Attribution(torch.ones(b, h, w, device=images.device))


@dataclass
class Random:
    """Seeded uniform noise, blurred with FAME's Gaussian (``kernel_size``, ``sigma``) and
    min-max scaled to [0, 1] per map.

    The noise is drawn on the CPU from ``torch.Generator().manual_seed(seed)`` as one
    (B, H, W) block and moved to ``images``' device, so the same seed, batch size and
    image size give the same maps on every device (map b depends on its position in the
    batch, not on the image).
    """

    seed: int = 0
    kernel_size: int = 49
    sigma: float = 7.7
    name: str = "Random"
    targets: ClassVar[tuple[type, ...]] = (ClassLogit, CosineSimilarity)

    def __call__(self, model: nn.Module, images: Tensor, target: object) -> Attribution:
        b, h, w = _check_images(images)
        gen = torch.Generator().manual_seed(int(self.seed))
        noise = torch.rand(b, h, w, generator=gen).to(images.device)
        blurred = gaussian_blur(noise, self.kernel_size, self.sigma)
        return Attribution(normalize_maps(blurred, "minmax")[0])


@dataclass
class Centre:
    """A centred Gaussian exp(−½((x − cₓ)²/σₓ² + (y − c_y)²/σ_y²)) with σₓ = ``width`` · W,
    σ_y = ``width`` · H (pixel centres, peak 1 at the image centre)."""

    width: float = 0.25
    name: str = "Centre"
    targets: ClassVar[tuple[type, ...]] = (ClassLogit, CosineSimilarity)

    def __post_init__(self):
        if not self.width > 0:
            raise ValueError(f"width must be > 0 (σ as a share of the side), got {self.width}")

    def __call__(self, model: nn.Module, images: Tensor, target: object) -> Attribution:
        b, h, w = _check_images(images)
        dev = images.device
        y = (torch.arange(h, device=dev, dtype=torch.float32) - (h - 1) / 2) / (self.width * h)
        x = (torch.arange(w, device=dev, dtype=torch.float32) - (w - 1) / 2) / (self.width * w)
        prior = torch.exp(-0.5 * (y[:, None] ** 2 + x[None, :] ** 2))
        return Attribution(prior.expand(b, h, w).clone())
