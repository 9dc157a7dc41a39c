"""CorrRISE (Lu, Xu & Ebrahimi, WACV 2024): occlusion masks correlated with the score.

Each of ``n_masks`` masks blacks out ``patches`` squares (pixel value 0) lying fully
inside the image; the occluded probes' scores (the cosine similarity to the frozen
partner embedding, or the class probability) are recorded. A pixel's attribution is the
Spearman correlation over the masks between its mask value (1 kept, 0 occluded) and the
score: the rank-transformed scores Pearson-correlated with the binary mask (a binary
variable is an affine function of its own ranks, so this is ``scipy.stats.spearmanr``).
Its positive part is e₊ (occluding the pixel lowers the score), the negative part e₋,
each divided by its maximum, no blur; pixels that every mask keeps (or occludes) get 0.
One seeded mask set per image size is reused for every pair, so maps are comparable.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._checks import (
    check_class_indices,
    check_finite_output,
    check_model_input,
    eval_mode,
    model_device,
)
from ..objectives import Attribution, ClassLogit, CosineSimilarity, check_target
from ..postprocess import max_normalize

__all__ = ["CorrRISE", "make_patch_masks", "rank_average", "spearman_map"]


def make_patch_masks(
    n_masks: int, size: tuple[int, int], patches: int = 3, patch_size: int = 40, seed: int = 0
) -> Tensor:
    """``n_masks`` binary masks (n_masks, H, W) float32 on the CPU (1 kept, 0 occluded),
    each with ``patches`` (possibly overlapping) squares of side ``patch_size`` placed
    uniformly inside the image; deterministic given ``seed``."""
    h, w = size
    if patch_size < 1 or patch_size > min(h, w):
        raise ValueError(f"patch_size must be in [1, {min(h, w)}] for a {h}x{w} image")
    if n_masks < 2:
        raise ValueError(f"n_masks must be >= 2 for a correlation, got {n_masks}")
    if patches < 1:
        raise ValueError(f"patches must be >= 1, got {patches}")
    gen = torch.Generator().manual_seed(seed)
    top = torch.randint(0, h - patch_size + 1, (n_masks, patches, 1), generator=gen)
    left = torch.randint(0, w - patch_size + 1, (n_masks, patches, 1), generator=gen)
    rows, cols = torch.arange(h).view(1, 1, h), torch.arange(w).view(1, 1, w)
    in_rows = (rows >= top) & (rows < top + patch_size)  # (n, p, H)
    in_cols = (cols >= left) & (cols < left + patch_size)  # (n, p, W)
    return (~(in_rows[..., :, None] & in_cols[..., None, :]).any(1)).float()


def rank_average(scores: Tensor) -> Tensor:
    """Ranks 1..n along the last dimension of (B, n) ``scores``, ties at their average
    rank (``scipy.stats.rankdata(method="average")``): #{smaller} + (#{equal} + 1)/2."""
    x, y = scores.unsqueeze(-1), scores.unsqueeze(-2)
    less = (y < x).sum(-1).to(scores.dtype)
    return less + ((y == x).sum(-1).to(scores.dtype) + 1) / 2


def spearman_map(masks: Tensor, scores: Tensor) -> Tensor:
    """(B, H, W) correlations in [−1, 1] between the (n, H, W) mask values and the ranks
    of the (B, n) scores (Spearman's ρ for binary masks); 0 where either is constant."""
    n = masks.shape[0]
    if scores.shape[-1] != n:
        raise ValueError(f"{scores.shape[-1]} scores per image for {n} masks")
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
    """CorrRISE under the shared convention: ``Attribution(e₊, e₋)`` (B, H, W) in [0, 1]
    on ``images``' device. A ``CosineSimilarity`` target scores each masked image by
    cos(φ(x ⊙ M), reference), a ``ClassLogit`` by the class probability (as RISE).

    Args:
        n_masks: number of occlusion masks (500 in the paper).
        patches: black squares per mask (3).
        patch_size: side of a square in pixels; ``None`` scales the paper's 30 px at a
            112 px chip: round(30/112 · min(H, W)) (40 at 150 px).
        seed: seed of the mask set.
        batch_size: masked images per forward pass.
        progress: tqdm bar over forward chunks.
    """

    n_masks: int = 500
    patches: int = 3
    patch_size: int | None = None
    seed: int = 0
    batch_size: int = 100
    progress: bool = False
    name: str = "CorrRISE"
    targets: ClassVar[tuple[type, ...]] = (ClassLogit, CosineSimilarity)
    runtime_fields: ClassVar[frozenset[str]] = frozenset({"batch_size", "progress"})
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.n_masks < 2:
            raise ValueError(f"n_masks must be >= 2, got {self.n_masks}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")

    def patch_side(self, size: tuple[int, int]) -> int:
        """Patch side in pixels for an image of ``size`` (H, W)."""
        if self.patch_size is not None:
            return int(self.patch_size)
        return max(1, round(30 / 112 * min(size)))

    def masks(self, size: tuple[int, int], device: torch.device | str = "cpu") -> Tensor:
        """The cached mask set (n_masks, H, W) for ``size`` on ``device``."""
        key = (tuple(size), str(torch.device(device)))
        if key not in self._cache:
            masks = make_patch_masks(
                self.n_masks, size, self.patches, self.patch_side(size), self.seed
            )
            self._cache[key] = masks.to(device)
        return self._cache[key]

    def scores(
        self, model: nn.Module, images: Tensor, target: ClassLogit | CosineSimilarity
    ) -> Tensor:
        """(B, n_masks) scores of every masked image: no-grad forward passes of
        ``batch_size`` on the model's device, the model in eval mode."""
        device = model_device(model)
        x = images.detach().to(device)
        b = x.shape[0]
        masks = self.masks(tuple(x.shape[-2:]), device)
        if isinstance(target, CosineSimilarity):
            per_image = target.check(b).to(device)
        else:
            per_image = target.indices(b).to(device)
        total = b * self.n_masks  # sample s: image s // n_masks with mask s % n_masks
        out = torch.empty(total, device=device, dtype=x.dtype)
        starts = range(0, total, self.batch_size)
        with torch.no_grad(), eval_mode(model):
            for lo in tqdm(starts, desc=self.name, disable=not self.progress, leave=False):
                idx = torch.arange(lo, min(lo + self.batch_size, total), device=device)
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
        """e₊ and e₋ (B, H, W) in [0, 1] for ``images`` (B, 3, H, W) in [0, 1]."""
        check_model_input(images, model)
        check_target(target)
        scores = check_finite_output(self.scores(model, images, target), "CorrRISE's scores")
        corr = spearman_map(self.masks(tuple(images.shape[-2:]), scores.device), scores)
        pos, neg = (max_normalize(c.clamp_min(0)) for c in (corr, -corr))
        return Attribution(*(m.to(device=images.device, dtype=images.dtype) for m in (pos, neg)))
