"""Face verification (paper Sec. 4, Table 1): the EER threshold θ and Deletion/Insertion
(Lu et al. 2024): Delete@P zeroes the top-P % pixels of each probe's e₊ map, Insert@P keeps
only them; Delete (↓) / Insert (↑) are the AUCs ×100 of accuracy at the clean θ vs P/100."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import roc_curve
from torch import Tensor, nn

from .._checks import check_count, check_model_input, check_threshold, frozen_eval, model_device
from .road import TieRule, removal_masks

FACE_PERCENTS = tuple(range(0, 101, 10))  # P ∈ {0, 10, …, 100} % as in the paper

Kind = Literal["delete", "insert"]


def eer(
    scores: Sequence[float] | np.ndarray, genuine: Sequence[bool] | np.ndarray
) -> tuple[float, float]:
    """``(eer, θ)`` of (N,) ``scores`` and (N,) ``genuine`` bool or 0/1: θ minimises |FAR − FRR|
    in integer counts (ties to the largest θ), eer = (FAR + FRR)/2 at θ. ``ValueError`` on
    mismatched shapes, non-finite scores, labels not 0/1 or a single class."""
    s, g = (np.asarray(v.detach().cpu() if hasattr(v, "detach") else v) for v in (scores, genuine))
    if s.ndim != 1 or s.shape != g.shape:
        raise ValueError(
            f"scores and genuine labels must be 1-D of one length, got {s.shape}, {g.shape}"
        )
    if not np.isfinite(s.astype(np.float64)).all():
        raise ValueError("scores contain NaN or infinite values")
    if not np.isin(g, (0, 1)).all():
        raise ValueError("genuine must hold booleans or 0/1 labels (1 = genuine pair)")
    g = g.astype(bool)
    n_gen, n_imp = int(g.sum()), int((~g).sum())
    if not n_gen or not n_imp:
        raise ValueError(
            f"the EER needs both genuine and impostor pairs; got {n_gen} genuine and {n_imp} impostor"
        )
    far, tpr, thresholds = roc_curve(g, s.astype(np.float64), drop_intermediate=False)
    # descending thresholds after the first (+inf); integer counts for an exact comparison
    fa = np.rint(far[1:] * n_imp).astype(np.int64)
    fr = n_gen - np.rint(tpr[1:] * n_gen).astype(np.int64)
    gap = np.abs(fa * n_gen - fr * n_imp)
    best = int(np.argmin(gap))  # the first minimum in descending order: the largest θ
    return float((fa[best] / n_imp + fr[best] / n_gen) / 2), float(thresholds[1:][best])


def eer_threshold(
    scores: Sequence[float] | np.ndarray, genuine: Sequence[bool] | np.ndarray
) -> float:
    """The EER threshold θ on the scores (accept when s ≥ θ; ties to the largest θ)."""
    return eer(scores, genuine)[1]


@torch.no_grad()
def embed(model: nn.Module, images: Tensor, batch_size: int = 64) -> Tensor:
    """(N, D) L2-normalised float32 embeddings of (N, 3, H, W) [0, 1] faces on ``images``'
    device, forwarded in chunks of ``batch_size`` on the model's device in eval mode."""
    check_count(batch_size, "batch_size", 1)
    dev = model_device(model)
    with frozen_eval(model):
        out = [
            F.normalize(model(images[i : i + batch_size].to(dev)).float(), dim=1)
            for i in range(0, images.shape[0], batch_size)
        ]
    return torch.cat(out).to(images.device)


def cosine_scores(model: nn.Module, gallery: Tensor, probe: Tensor, batch_size: int = 64) -> Tensor:
    """(N,) cosine similarities cos(φ(gallery_i), φ(probe_i)) of N pairs."""
    return (embed(model, gallery, batch_size) * embed(model, probe, batch_size)).sum(1)


@dataclass
class FacePerturbation:
    """Pair similarities: ``percents`` (P,) float64, ``threshold`` θ, ``genuine`` (N,) bool,
    ``delete_similarity`` / ``insert_similarity`` (N, P) and ``clean_similarity`` (N,)."""

    percents: Tensor
    threshold: float
    genuine: Tensor
    delete_similarity: Tensor
    insert_similarity: Tensor
    clean_similarity: Tensor

    def similarity(self, kind: Kind) -> Tensor:
        """(N, P) similarities under ``kind``, ``"delete"`` or ``"insert"``."""
        return {"delete": self.delete_similarity, "insert": self.insert_similarity}[kind]

    def correct(self, kind: Kind) -> Tensor:
        """(N, P) bool: pair decided correctly at each P (accept when s ≥ θ)."""
        return (self.similarity(kind) >= self.threshold) == self.genuine.unsqueeze(1)

    def pair_auc(self, kind: Kind) -> Tensor:
        """(N,) each pair's trapezoid AUC ×100 of its correctness vs P (over P's range)."""
        x = self.percents.to(self.genuine.device)
        area = torch.trapezoid(self.correct(kind).double(), x, dim=-1) / (x[-1] - x[0])
        return area.float() * 100

    def auc(self, kind: Kind) -> float:
        """Delete (↓) or Insert (↑) of Table 1: the mean of :meth:`pair_auc`."""
        return float(self.pair_auc(kind).double().mean())


def face_deletion_insertion(
    model: nn.Module,
    gallery: Tensor,
    probe: Tensor,
    genuine: Sequence[bool] | Tensor,
    probe_maps: Tensor,
    *,
    threshold: float | None = None,
    percents: Sequence[float] = FACE_PERCENTS,
    gallery_embeddings: Tensor | None = None,
    batch_size: int = 64,
    ties: TieRule = "random",
    tie_seed: int = 0,
) -> FacePerturbation:
    """Deletion and Insertion (Table 1) of (N, 3, H, W) [0, 1] ``probe`` images along their
    (N, H, W) e₊ ``probe_maps``, against ``gallery`` (or its (N, D) ``gallery_embeddings``),
    ``genuine`` (N,) bool or 0/1, at θ = ``threshold`` (default: the clean EER threshold) and
    strictly increasing ``percents`` in [0, 100]; a :class:`FacePerturbation` on ``probe``'s
    device."""
    check_model_input(gallery, model, "gallery")
    check_model_input(probe, model, "probe")
    n = probe.shape[0]
    if gallery.shape != probe.shape:
        raise ValueError(
            f"gallery {tuple(gallery.shape)} and probe {tuple(probe.shape)} shapes differ"
        )
    g = torch.as_tensor(genuine).to(probe.device).reshape(-1).bool()
    if g.numel() != n:
        raise ValueError(f"{g.numel()} genuine labels for {n} pairs")
    if probe_maps.shape != (n, *probe.shape[2:]):
        raise ValueError(
            f"probe_maps must have shape {(n, *probe.shape[2:])}, got {tuple(probe_maps.shape)}"
        )
    pct = torch.as_tensor(list(percents), dtype=torch.float64)
    if pct.numel() < 2 or not bool((pct[1:] > pct[:-1]).all()):
        raise ValueError(f"percents must be strictly increasing (two or more), got {pct.tolist()}")
    if gallery_embeddings is None:
        ref = embed(model, gallery, batch_size)
    else:
        ref = F.normalize(gallery_embeddings.to(probe.device).float(), dim=1)
    clean = (ref * embed(model, probe, batch_size)).sum(1)
    theta = (
        eer_threshold(clean, g) if threshold is None else check_threshold(threshold, "threshold θ")
    )
    masks = removal_masks(probe_maps.to(probe.device), pct, ties=ties, tie_seed=tie_seed)
    sims = torch.empty(2, *masks.shape[:2], device=probe.device)  # delete, insert
    for chunk in torch.arange(n * pct.numel(), device=probe.device).split(batch_size):
        ii, top = chunk // pct.numel(), masks.flatten(0, 1)[chunk]
        for sim, keep in zip(sims, (~top, top)):
            e = embed(model, probe[ii] * keep.unsqueeze(1).to(probe.dtype), batch_size)
            sim.view(-1)[chunk] = (e * ref[ii]).sum(1)
    return FacePerturbation(pct, theta, g, sims[0], sims[1], clean)
