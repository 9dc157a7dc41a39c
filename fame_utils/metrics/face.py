"""Face-verification Deletion and Insertion (paper Table 1; protocol of Lu et al. 2024).

For every pair (gallery g, probe p) only the probe is perturbed, using its e₊ map (the
map that explains the similarity to the gallery image):

- **Delete@P**: the top-P % pixels of e₊ are set to 0 (in [0, 1] RGB);
- **Insert@P**: only the top-P % pixels are kept, every other pixel is 0;

for P ∈ {0, 10, …, 100} %. At each P the cosine similarity s = cos(φ(g), φ(p̃)) of every
pair, genuine and impostor, is compared with the **clean** EER threshold θ (computed from
the unperturbed scores of the same model and protocol, accept when s ≥ θ; see
:mod:`fame_utils.metrics.threshold`), giving the verification accuracy over all pairs.
Delete (↓) and Insert (↑) are the trapezoid areas under accuracy-vs-P with P rescaled to
[0, 1], ×100. The top-P % sets are those of
:func:`fame_utils.metrics.removal.top_pixel_sets`: exact counts with a seeded random order
among equal values (``ties="random"``, the paper recipe) or the reference code's
percentile rule (``ties="reference"``); the rule and seed are stored in the result.

Because the trapezoid rule is linear, the dataset AUC equals the mean over pairs of each
pair's own AUC of its 0/1 correctness curve (:meth:`FacePerturbation.pair_auc`), which is
how the experiment runner stores it per pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._checks import check_count, check_model_input, check_threshold, eval_mode, model_device
from ..recipes import Recipe
from .removal import TieRule, resolve_ties, top_pixel_sets
from .road import curve_auc
from .threshold import eer_threshold

__all__ = [
    "FACE_PERCENTS",
    "FacePerturbation",
    "embed",
    "cosine_scores",
    "face_deletion_insertion",
]

FACE_PERCENTS = tuple(range(0, 101, 10))
"""P ∈ {0, 10, …, 100} % as in the paper."""

Kind = Literal["delete", "insert"]


@torch.no_grad()
def embed(model: nn.Module, images: Tensor, batch_size: int = 64) -> Tensor:
    """L2-normalised embeddings (N, D) of (N, 3, H, W) [0, 1] faces, forwarded in chunks of
    ``batch_size`` on the model's device in eval mode (each module's own mode restored
    afterwards); returned on ``images``' device as float32."""
    check_count(batch_size, "batch_size", 1)
    dev = model_device(model)
    with eval_mode(model):
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
    """Similarity of every pair under Delete and Insert.

    Attributes:
        percents: (P,) float, the percentages P in [0, 100].
        threshold: θ, the clean EER threshold the decisions use (accept when s ≥ θ).
        genuine: (N,) bool.
        delete_similarity: (N, P) cos(φ(g), φ(p̃)) with the top-P % of the probe zeroed.
        insert_similarity: (N, P) the same with only the top-P % kept.
        clean_similarity: (N,) the unperturbed scores.
        ties, tie_seed: the tie rule and seed the top-P % sets were built with.
    """

    percents: Tensor
    threshold: float
    genuine: Tensor
    delete_similarity: Tensor
    insert_similarity: Tensor
    clean_similarity: Tensor
    ties: TieRule = "random"
    tie_seed: int = 0

    def similarity(self, kind: Kind) -> Tensor:
        if kind == "delete":
            return self.delete_similarity
        if kind == "insert":
            return self.insert_similarity
        raise ValueError(f"kind must be 'delete' or 'insert', got {kind!r}")

    def correct(self, kind: Kind) -> Tensor:
        """(N, P) bool: pair decided correctly at each P (s ≥ θ exactly for genuine pairs)."""
        return (self.similarity(kind) >= self.threshold) == self.genuine.unsqueeze(1)

    def accuracy(self, kind: Kind) -> Tensor:
        """(P,) verification accuracy over all pairs at each P, in [0, 1]."""
        return self.correct(kind).float().mean(0)

    def auc(self, kind: Kind) -> float:
        """Delete (↓) or Insert (↑): trapezoid AUC of accuracy vs P/100, ×100 (Table 1)."""
        return float(curve_auc(self.percents, self.accuracy(kind))) * 100

    def pair_auc(self, kind: Kind) -> Tensor:
        """(N,) each pair's trapezoid AUC of its 0/1 correctness curve, ×100; their mean is
        :meth:`auc`."""
        return curve_auc(self.percents, self.correct(kind).float()) * 100

    def genuine_similarity(self, kind: Kind) -> Tensor:
        """(P,) mean cosine similarity of the genuine pairs at each P."""
        return self.similarity(kind)[self.genuine].mean(0)


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
    progress: bool = False,
    ties: TieRule | None = None,
    tie_seed: int | None = None,
    recipe: str | Recipe | None = None,
) -> FacePerturbation:
    """Deletion and Insertion of the probes along their e₊ maps (Table 1).

    Args:
        model: face embedder taking (N, 3, H, W) [0, 1] RGB, returning (N, D) embeddings.
        gallery, probe: (N, 3, H, W) [0, 1] images of the N pairs, any device.
        genuine: (N,) bool (or 0/1), True for same-identity pairs.
        probe_maps: (N, H, W) e₊ maps of the probes (only their ranking matters).
        threshold: θ on the cosine similarity; ``None`` computes the clean EER threshold
            of these pairs (:func:`~fame_utils.metrics.threshold.eer_threshold`). Pass the
            protocol's threshold when evaluating a subset of its pairs.
        percents: the P values in [0, 100], increasing (default 0, 10, …, 100).
        gallery_embeddings: (N, D) precomputed gallery embeddings (normalised inside).
        batch_size: perturbed probes per forward pass on the model's device.
        ties, tie_seed: order among equal map values (:mod:`fame_utils.metrics.removal`);
            ``None`` takes ``recipe``'s (paper: ``"random"``, seed 0; reference: the
            percentile rule).

    Returns:
        :class:`FacePerturbation` (tensors on ``probe``'s device).
    """
    check_model_input(gallery, model, "gallery")
    check_model_input(probe, model, "probe")
    check_count(batch_size, "batch_size", 1)
    rule, seed = resolve_ties(ties, tie_seed, recipe)
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
    if gallery_embeddings is None:
        ref = embed(model, gallery, batch_size)
    else:
        ref = F.normalize(gallery_embeddings.to(probe.device).float(), dim=1)
    clean = (ref * embed(model, probe, batch_size)).sum(1)
    if threshold is None:
        theta = float(eer_threshold(clean, g))
    else:
        theta = check_threshold(threshold, "threshold θ")

    pct = torch.as_tensor(list(percents), dtype=torch.float64)
    key, cut = top_pixel_sets(probe_maps.to(probe.device), pct, ties=rule, tie_seed=seed)
    n_p = cut.shape[1]
    sims = {"delete": torch.empty(n, n_p, device=probe.device), "insert": None}
    sims["insert"] = torch.empty_like(sims["delete"])
    pairs = [(i, j) for i in range(n) for j in range(n_p)]
    bar = tqdm(total=2 * len(pairs), desc="face delete/insert", disable=not progress, leave=False)
    dev = model_device(model)
    try:
        with torch.no_grad(), eval_mode(model):
            for lo in range(0, len(pairs), batch_size):
                chunk = pairs[lo : lo + batch_size]
                ii = torch.tensor([i for i, _ in chunk], device=probe.device)
                jj = torch.tensor([j for _, j in chunk], device=probe.device)
                top = (key[ii] > cut[ii, jj].view(-1, 1, 1)).unsqueeze(1)
                for kind, keep in (("delete", ~top), ("insert", top)):
                    x = probe[ii] * keep.to(probe.dtype)
                    e = F.normalize(model(x.to(dev)).float(), dim=1).to(probe.device)
                    sims[kind][ii, jj] = (e * ref[ii]).sum(1)
                    bar.update(len(chunk))
    finally:
        bar.close()
    return FacePerturbation(
        percents=pct,
        threshold=theta,
        genuine=g,
        delete_similarity=sims["delete"],
        insert_similarity=sims["insert"],
        clean_similarity=clean,
        ties=rule,
        tie_seed=seed,
    )
