"""Pixel-removal metrics: ROAD-Delete (Table 2) and insertion/deletion curves.

The metrics rank and remove pixels with the building blocks of two sibling modules:

- :mod:`fame_utils.metrics.removal` — which pixels go: pixel ranking, the tie rules
  (``ties``: seeded random, the reference's percentile rule, or row-major), removal counts
  and masks;
- :mod:`fame_utils.metrics.imputation` — what replaces them (``mode``): ``"zero"`` (the
  paper's Table 2) or ``"noisy_linear"`` (ROAD proper, Rong et al. 2022).

Score. ``score_drop = s(x) − s(x̃)`` for the ground-truth class, with s the raw logit
(the paper's "drop of the ground-truth logit", higher = better) or the softmax
probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._checks import (
    as_index_tensor,
    check_class_indices,
    check_count,
    check_maps,
    check_model_input,
    eval_mode,
    model_device,
)
from ..recipes import Recipe
from .imputation import RemovalMode, remove_pixels
from .removal import TieRule, top_pixel_sets

__all__ = ["ScoreKind", "class_scores", "road_scores", "perturbation_curves", "curve_auc"]

ScoreKind = Literal["logit", "probability"]


@torch.no_grad()
def class_scores(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    score: ScoreKind = "logit",
    batch_size: int = 64,
) -> Tensor:
    """s_y(x): the logit (or softmax probability) of class ``labels`` (N,) for (N, 3, H, W)
    images, forwarded in chunks of ``batch_size`` on the model's device with the model in
    eval mode (each module's own mode restored afterwards). Returns (N,) on ``images``'
    device."""
    if score not in ("logit", "probability"):
        raise ValueError(f"score must be 'logit' or 'probability', got {score!r}")
    check_count(batch_size, "batch_size", 1)
    dev = model_device(model)
    out = []
    with eval_mode(model):
        for i in range(0, images.shape[0], batch_size):
            logits = model(images[i : i + batch_size].to(dev))
            y = labels[i : i + batch_size].to(logits.device)
            if i == 0:
                check_class_indices(labels, logits.shape[1], "labels")
            if score == "probability":
                logits = logits.softmax(1)
            out.append(logits.gather(1, y[:, None]).squeeze(1).float())
    return torch.cat(out).to(images.device)


def _perturbed_scores(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    maps: Tensor,
    percents: Sequence[float],
    *,
    mode: RemovalMode,
    keep: bool,
    score: ScoreKind,
    batch_size: int,
    noise: float,
    seed: int | None,
    progress: bool,
    desc: str,
    least_first: bool = False,
    ties: TieRule | None = None,
    tie_seed: int | None = None,
    recipe: str | Recipe | None = None,
) -> Tensor:
    """(B, P) scores of the images with the top-p % removed (``keep=False``) or with
    everything but the top-p % removed (``keep=True``); ``least_first`` reverses the
    ranking (the bottom-p %, exactly the complement order of the top)."""
    check_model_input(images, model)
    check_count(batch_size, "batch_size", 1)
    check_maps(maps)
    b = images.shape[0]
    if maps.shape != (b, *images.shape[2:]):
        raise ValueError(
            f"maps must have shape {(b, *images.shape[2:])} to match images, got {tuple(maps.shape)}"
        )
    y = as_index_tensor(labels, b, "labels").to(images.device)
    key, cut = top_pixel_sets(
        maps.to(images.device),
        percents,
        most_relevant_first=not least_first,
        ties=ties,
        tie_seed=tie_seed,
        recipe=recipe,
    )
    n_p = cut.shape[1]
    gen = None
    if mode == "noisy_linear" and noise > 0 and seed is not None:
        gen = torch.Generator(device=images.device).manual_seed(seed)
    # all (image, percentage) pairs, image-major, processed in chunks of batch_size
    pairs = [(i, j) for i in range(b) for j in range(n_p)]
    out = torch.empty(b, n_p, device=images.device)
    bar = tqdm(total=len(pairs), desc=desc, disable=not progress, leave=False)
    try:
        for lo in range(0, len(pairs), batch_size):
            chunk = pairs[lo : lo + batch_size]
            ii = torch.tensor([i for i, _ in chunk], device=images.device)
            jj = torch.tensor([j for _, j in chunk], device=images.device)
            top = key[ii] > cut[ii, jj].view(-1, 1, 1)
            removed = ~top if keep else top
            xt = remove_pixels(images[ii], removed, mode, noise=noise, generator=gen)
            out[ii, jj] = class_scores(model, xt, y[ii], score, batch_size)
            bar.update(len(chunk))
    finally:
        bar.close()
    return out


def road_scores(
    model: nn.Module,
    images: Tensor,
    labels: int | Sequence[int] | Tensor,
    maps: Tensor,
    percents: Sequence[float] = (10, 30, 50),
    *,
    mode: RemovalMode = "zero",
    score: ScoreKind = "logit",
    most_relevant_first: bool = True,
    batch_size: int = 64,
    noise: float = 0.01,
    seed: int | None = 0,
    progress: bool = False,
    ties: TieRule | None = None,
    tie_seed: int | None = None,
    recipe: str | Recipe | None = None,
) -> Tensor:
    """ROAD-Delete@p: drop of the class score when the top-p % pixels are removed (Table 2).

    Args:
        model: classifier taking (N, 3, H, W) [0, 1] RGB and returning (N, classes) logits.
        images: (B, 3, H, W) [0, 1] images, any device (perturbations are built there and
            forwarded on the model's device in chunks of ``batch_size`` perturbed images).
        labels: (B,) ground-truth classes (or one int).
        maps: (B, H, W) attribution maps (only their ranking matters).
        percents: P removal percentages in [0, 100].
        mode: ``"zero"`` (the paper's Table 2) or ``"noisy_linear"`` (ROAD proper).
        score: ``"logit"`` (the paper) or ``"probability"``.
        most_relevant_first: remove the top-p % (MoRF, "Delete"); ``False`` removes the
            least relevant p % (LeRF).
        noise, seed: imputation noise σ and the seed of its generator (``None``: global RNG).
        ties, tie_seed: order among equal map values (module docstring); ``None`` takes
            ``recipe``'s (paper: ``"random"``, seed 0; reference: the percentile rule).

    Returns:
        (B, P) float tensor ``s(x) − s(x̃)`` on ``images``' device (higher = the map found
        more important pixels, for MoRF).
    """
    y = as_index_tensor(labels, images.shape[0], "labels")
    clean = class_scores(model, check_model_input(images, model), y, score, batch_size)
    pert = _perturbed_scores(
        model,
        images,
        y,
        maps,
        list(percents),
        mode=mode,
        keep=False,
        score=score,
        batch_size=batch_size,
        noise=noise,
        seed=seed,
        progress=progress,
        desc=f"ROAD {mode}",
        least_first=not most_relevant_first,
        ties=ties,
        tie_seed=tie_seed,
        recipe=recipe,
    )
    return clean.unsqueeze(1) - pert


def perturbation_curves(
    model: nn.Module,
    images: Tensor,
    labels: int | Sequence[int] | Tensor,
    maps: Tensor,
    percents: Sequence[float] = tuple(range(0, 101, 10)),
    *,
    kind: Literal["deletion", "insertion"] = "deletion",
    mode: RemovalMode = "zero",
    score: ScoreKind = "probability",
    batch_size: int = 64,
    noise: float = 0.01,
    seed: int | None = 0,
    progress: bool = False,
    ties: TieRule | None = None,
    tie_seed: int | None = None,
    recipe: str | Recipe | None = None,
) -> Tensor:
    """Deletion or insertion curves over the removal percentages (RISE-style).

    ``"deletion"``: score of the image with its top-p % pixels removed; ``"insertion"``:
    score of the image with only its top-p % pixels kept (the rest removed with ``mode``).
    At p = 0 deletion gives the clean score and insertion the fully removed image.
    ``ties``/``tie_seed``/``recipe`` as in :func:`road_scores`.

    Returns:
        (B, P) class scores (softmax probability by default, or logits) on ``images``'
        device; summarise with :func:`curve_auc`.
    """
    if kind not in ("deletion", "insertion"):
        raise ValueError(f"kind must be 'deletion' or 'insertion', got {kind!r}")
    y = as_index_tensor(labels, images.shape[0], "labels")
    return _perturbed_scores(
        model,
        images,
        y,
        maps,
        list(percents),
        mode=mode,
        keep=kind == "insertion",
        score=score,
        batch_size=batch_size,
        noise=noise,
        seed=seed,
        progress=progress,
        desc=f"{kind} {mode}",
        ties=ties,
        tie_seed=tie_seed,
        recipe=recipe,
    )


def curve_auc(percents: Sequence[float] | Tensor, values: Tensor) -> Tensor:
    """Trapezoid area under ``values`` (..., P) over ``percents`` (P,) in [0, 100],
    normalised by the x-range so that a constant curve c has area c (for the paper's face
    Delete/Insert: x = P/100 ∈ [0, 1], then ×100 for the table)."""
    x = torch.as_tensor(percents, dtype=torch.float64).reshape(-1)
    if x.numel() < 2:
        raise ValueError("curve_auc needs at least two points")
    if not bool((x[1:] > x[:-1]).all()):
        raise ValueError(f"percents must be strictly increasing, got {x.tolist()}")
    if values.shape[-1] != x.numel():
        raise ValueError(f"values have {values.shape[-1]} points for {x.numel()} percentages")
    xv = x.to(device=values.device, dtype=torch.float64)
    area = torch.trapezoid(values.to(torch.float64), xv, dim=-1)
    return (area / (xv[-1] - xv[0])).to(
        values.dtype if values.is_floating_point() else torch.float64
    )
