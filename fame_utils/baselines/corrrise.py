"""CorrRISE (Lu, Xu & Ebrahimi, WACV 2024): occlusion masks correlated with the score.

Each of ``n_masks`` masks blacks out ``patches`` square patches (pixel value 0) placed
fully inside the image; the occluded probes go through the network and their score is
recorded (cosine similarity to the frozen partner embedding for verification). The
attribution of a pixel is the Spearman correlation, over the masks, between the mask
value at that pixel (1 = kept, 0 = occluded) and the score:

- the scores are rank-transformed (average ranks for ties) and Pearson-correlated with
  the binary mask per pixel, one matrix product for all pixels. Because a binary variable
  is an affine function of its own ranks, this *is* Spearman's ρ (what
  ``scipy.stats.spearmanr`` returns);
- sign: a pixel whose occlusion lowers the score has "kept" ↔ "high score", a positive
  correlation: the positive part is e₊ (what makes the pair similar), the negative part
  (occluding it raises the similarity) is e₋;
- pixels that every mask keeps (or every mask occludes, e.g. the extreme corners with few
  masks) have no defined correlation and get 0;
- e₊ and e₋ are each divided by their own maximum (max normalisation, as FAME's; an
  all-zero part stays zero), no blur (the square patches already make the maps smooth).

One seeded mask set is generated per image size and reused for every pair (cached per
size and device), so maps of different pairs are comparable, as in the paper.
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
    n_masks: int,
    size: tuple[int, int],
    patches: int = 3,
    patch_size: int = 40,
    seed: int = 0,
) -> Tensor:
    """``n_masks`` binary masks (n_masks, H, W) float32 on the CPU: 1 = kept, 0 = occluded.

    Each mask holds ``patches`` squares of side ``patch_size`` whose top-left corners are
    drawn uniformly so that every square lies fully inside the H × W image (squares of
    the same mask may overlap). Deterministic given ``seed`` (its own ``torch.Generator``).
    """
    h, w = size
    if patch_size < 1 or patch_size > min(h, w):
        raise ValueError(f"patch_size must be in [1, {min(h, w)}] for a {h}x{w} image")
    if n_masks < 2:
        raise ValueError(f"n_masks must be >= 2 for a correlation, got {n_masks}")
    if patches < 1:
        raise ValueError(f"patches must be >= 1, got {patches}")
    gen = torch.Generator().manual_seed(seed)
    top = torch.randint(0, h - patch_size + 1, (n_masks, patches), generator=gen)
    left = torch.randint(0, w - patch_size + 1, (n_masks, patches), generator=gen)
    rows = torch.arange(h).view(1, 1, h)
    cols = torch.arange(w).view(1, 1, w)
    in_rows = (rows >= top[..., None]) & (rows < top[..., None] + patch_size)  # (n, p, H)
    in_cols = (cols >= left[..., None]) & (cols < left[..., None] + patch_size)  # (n, p, W)
    occluded = (in_rows[..., :, None] & in_cols[..., None, :]).any(1)  # (n, H, W)
    return (~occluded).float()


def rank_average(scores: Tensor) -> Tensor:
    """Ranks 1..n along the last dimension of (B, n) ``scores``, ties getting their average
    rank (``scipy.stats.rankdata(method="average")``). Vectorised: rank = #{smaller} +
    (#{equal} + 1)/2, computed from an (B, n, n) comparison."""
    x = scores.unsqueeze(-1)  # (B, n, 1): row i
    y = scores.unsqueeze(-2)  # (B, 1, n): column j
    less = (y < x).sum(-1).to(scores.dtype)
    equal = (y == x).sum(-1).to(scores.dtype)
    return less + (equal + 1) / 2


def spearman_map(masks: Tensor, scores: Tensor) -> Tensor:
    """Per-pixel Spearman correlation between mask values and scores.

    Args:
        masks: (n, H, W) mask values (binary for CorrRISE; any values are Pearson-
            correlated as they are, so only binary masks give Spearman exactly).
        scores: (B, n) scores of the n masked versions of each of B images.

    Returns:
        (B, H, W) correlations in [−1, 1]; 0 where the mask or the scores are constant.
    """
    n = masks.shape[0]
    if scores.shape[-1] != n:
        raise ValueError(f"{scores.shape[-1]} scores per image for {n} masks")
    m = masks.reshape(n, -1).to(scores.dtype)
    m = m - m.mean(0, keepdim=True)
    r = rank_average(scores)
    r = r - r.mean(-1, keepdim=True)
    cov = r @ m  # (B, P), both centred: n·cov
    m_norm = torch.linalg.vector_norm(m, dim=0)  # (P,)
    r_norm = torch.linalg.vector_norm(r, dim=-1, keepdim=True)  # (B, 1)
    denom = r_norm * m_norm
    tiny = torch.finfo(scores.dtype).eps
    corr = torch.where(denom > tiny, cov / denom.clamp_min(tiny), torch.zeros_like(cov))
    return corr.clamp(-1, 1).reshape(scores.shape[0], *masks.shape[1:])


@dataclass
class CorrRISE:
    """CorrRISE under the shared convention (e₊ and e₋ for verification).

    Args:
        n_masks: number of occlusion masks (500 in the paper).
        patches: black squares per mask (3).
        patch_size: side of a square in pixels; ``None`` scales the paper's 30 px at a
            112 px chip to the image size: round(30/112 · min(H, W)) (40 at 150 px).
        seed: seed of the mask set (the same set is reused for every image of a size).
        batch_size: masked images per forward pass.
        progress: tqdm bar over forward chunks.

    Calling it with ``CosineSimilarity(references)`` scores each masked image by
    cos(φ(x ⊙ M), reference) with the partner embedding frozen; with ``ClassLogit`` by the
    class probability (softmax, as RISE does). Returns ``Attribution(e₊, e₋)`` (B, H, W) in [0, 1]
    on ``images``' device.
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
        """The cached mask set (n_masks, H, W) for ``size`` on ``device`` (1 kept, 0 black)."""
        key = (tuple(size), str(torch.device(device)))
        if key not in self._cache:
            cpu_key = (tuple(size), "cpu")
            if cpu_key not in self._cache:
                self._cache[cpu_key] = make_patch_masks(
                    self.n_masks, tuple(size), self.patches, self.patch_side(size), self.seed
                )
            self._cache[key] = self._cache[cpu_key].to(device)
        return self._cache[key]

    def scores(
        self, model: nn.Module, images: Tensor, target: ClassLogit | CosineSimilarity
    ) -> Tensor:
        """(B, n_masks) scores of every masked image, all forward passes batched in
        chunks of ``batch_size`` on the model's device (no gradients), with the model in
        eval mode (each module's own mode restored afterwards)."""
        device = model_device(model)
        x = images.detach().to(device)
        b, _, h, w = x.shape
        masks = self.masks((h, w), device)
        if isinstance(target, CosineSimilarity):
            refs = target.check(b).to(device)
            per_image = refs
        else:
            per_image = check_class_indices(target.indices(b), None, "ClassLogit.classes")
            per_image = per_image.to(device)
        total = b * self.n_masks
        # sample s = image s // n_masks with mask s % n_masks (image-major)
        out = torch.empty(total, device=device, dtype=x.dtype)
        starts = range(0, total, self.batch_size)
        with torch.no_grad(), eval_mode(model):
            for lo in tqdm(starts, desc=self.name, disable=not self.progress, leave=False):
                hi = min(lo + self.batch_size, total)
                idx = torch.arange(lo, hi, device=device)
                img, msk = idx // self.n_masks, idx % self.n_masks
                probe = x[img] * masks[msk].unsqueeze(1)
                y = model(probe)
                if lo == 0 and isinstance(target, ClassLogit):
                    check_class_indices(per_image, y.shape[1], "ClassLogit.classes")
                if isinstance(target, CosineSimilarity):
                    out[lo:hi] = F.cosine_similarity(y, per_image[img].to(y.dtype), dim=1)
                else:
                    y = y.softmax(dim=1)
                    out[lo:hi] = y.gather(1, per_image[img].view(-1, 1)).squeeze(1)
        return out.view(b, self.n_masks)

    def __call__(
        self, model: nn.Module, images: Tensor, target: ClassLogit | CosineSimilarity
    ) -> Attribution:
        """e₊ and e₋ (B, H, W) in [0, 1] for ``images`` (B, 3, H, W) in [0, 1]."""
        check_model_input(images, model)
        check_target(target)
        scores = check_finite_output(self.scores(model, images, target), "CorrRISE's scores")
        masks = self.masks(tuple(images.shape[-2:]), scores.device)
        corr = spearman_map(masks, scores)
        pos = max_normalize(corr.clamp_min(0))
        neg = max_normalize((-corr).clamp_min(0))
        return Attribution(
            pos.to(device=images.device, dtype=images.dtype),
            neg.to(device=images.device, dtype=images.dtype),
        )
