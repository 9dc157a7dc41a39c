"""CorrRISE (Lu, Xu & Ebrahimi, WACV 2024): a pixel's attribution is the Spearman
correlation over occlusion masks between its mask value (1 kept, 0 occluded) and the masked
image's score (cosine similarity, or class probability); e₊ its positive part, e₋ its
negative part, each divided by its maximum."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_class_indices, check_count, check_finite_output, frozen_eval
from ..objectives import Attribution, ClassLogit, CosineSimilarity, method_inputs
from ..postprocess import normalize_maps


@lru_cache(maxsize=4)
def make_patch_masks(
    n_masks: int, size: tuple[int, int], patches: int = 3, patch_size: int = 40, seed: int = 0
) -> Tensor:
    """(n_masks, H, W) float32 CPU masks, each with ``patches`` black squares of side
    ``patch_size`` placed uniformly inside the image, seeded; cached, so read-only."""
    h, w = size
    if patch_size < 1 or patch_size > min(h, w):
        raise ValueError(f"patch_size must be in [1, {min(h, w)}] for a {h}x{w} image")
    gen = torch.Generator().manual_seed(seed)
    top = torch.randint(0, h - patch_size + 1, (n_masks, patches, 1), generator=gen)
    left = torch.randint(0, w - patch_size + 1, (n_masks, patches, 1), generator=gen)
    rows, cols = torch.arange(h).view(1, 1, h), torch.arange(w).view(1, 1, w)
    in_rows = (rows >= top) & (rows < top + patch_size)  # (n, p, H)
    in_cols = (cols >= left) & (cols < left + patch_size)  # (n, p, W)
    return (~(in_rows[..., :, None] & in_cols[..., None, :]).any(1)).float()


def rank_average(scores: Tensor) -> Tensor:
    """Ranks along the last dimension of (B, n) ``scores``, ties averaged (as scipy's
    ``rankdata``): #{smaller} + (#{equal} + 1)/2."""
    x, y = scores.unsqueeze(-1), scores.unsqueeze(-2)
    less = (y < x).sum(-1).to(scores.dtype)
    return less + ((y == x).sum(-1).to(scores.dtype) + 1) / 2


def spearman_map(masks: Tensor, scores: Tensor) -> Tensor:
    """(B, H, W) correlations in [−1, 1] between the (n, H, W) mask values and the ranks
    of the (B, n) scores (Spearman's ρ for binary masks); 0 where either is constant."""
    n = masks.shape[0]
    m = masks.reshape(n, -1).to(scores.dtype)
    m = m - m.mean(0, keepdim=True)
    r = rank_average(scores)
    r = r - r.mean(-1, keepdim=True)
    denom = torch.linalg.vector_norm(r, dim=-1, keepdim=True) * torch.linalg.vector_norm(m, dim=0)
    tiny = torch.finfo(scores.dtype).eps
    corr = torch.where(denom > tiny, (r @ m) / denom.clamp_min(tiny), 0.0)
    return corr.clamp(-1, 1).reshape(scores.shape[0], *masks.shape[1:])


@dataclass
class CorrRISE:
    """CorrRISE: ``Attribution(e₊, e₋)`` (B, H, W) in [0, 1] on ``images``' device from
    ``n_masks`` masks (>= 2) of ``patches`` squares of side ``patch_size`` (``None``:
    round(30/112 · min(H, W)), the paper's 30 px at 112), ``batch_size`` per forward pass."""

    n_masks: int = 500
    patches: int = 3
    patch_size: int | None = None
    seed: int = 0
    batch_size: int = 100
    name: str = "CorrRISE"
    runtime_fields: ClassVar[frozenset[str]] = frozenset({"batch_size"})

    def __post_init__(self):
        check_count(self.n_masks, "n_masks", 2)
        check_count(self.patches, "patches", 1)
        check_count(self.batch_size, "batch_size", 1)

    def masks(self, size: tuple[int, int]) -> Tensor:
        """The seeded (n_masks, H, W) CPU mask set for images of ``size`` (read-only)."""
        side = max(1, round(30 / 112 * min(size))) if self.patch_size is None else self.patch_size
        return make_patch_masks(self.n_masks, size, self.patches, int(side), self.seed)

    def scores(
        self, model: nn.Module, images: Tensor, target: ClassLogit | CosineSimilarity
    ) -> Tensor:
        """(B, n_masks) scores of the masked images (no grad, eval mode, model's device)."""
        x, per_image = method_inputs(model, images, target)
        b = x.shape[0]
        masks = self.masks(tuple(x.shape[-2:])).to(x.device)
        total = b * self.n_masks  # sample s: image s // n_masks with mask s % n_masks
        out = torch.empty(total, device=x.device, dtype=x.dtype)
        with torch.no_grad(), frozen_eval(model):
            for lo in range(0, total, self.batch_size):
                idx = torch.arange(lo, min(lo + self.batch_size, total), device=x.device)
                img = idx // self.n_masks
                y = model(x[img] * masks[idx % self.n_masks].unsqueeze(1))
                if isinstance(target, CosineSimilarity):
                    out[idx] = F.cosine_similarity(y, per_image[img].to(y.dtype), dim=1)
                else:
                    if lo == 0:
                        check_class_indices(per_image, y.shape[1], "ClassLogit.classes")
                    out[idx] = y.softmax(dim=1).gather(1, per_image[img].view(-1, 1)).squeeze(1)
        return out.view(b, self.n_masks)

    def __call__(
        self, model: nn.Module, images: Tensor, target: ClassLogit | CosineSimilarity
    ) -> Attribution:
        scores = check_finite_output(self.scores(model, images, target), "CorrRISE's scores")
        corr = spearman_map(self.masks(tuple(images.shape[-2:])).to(scores.device), scores)
        return Attribution(*(normalize_maps(c.clamp_min(0))[0].to(images) for c in (corr, -corr)))
