"""Pixel removal: the top-p % pixel masks of the maps and ROAD-Delete@p (paper Table 2).
``ties``: ``"random"`` (paper) removes exactly round(p/100 · H·W) pixels, equal values in one
seeded CPU permutation; ``"reference"`` those above the (100 − p)-th percentile (the paper's
code). ``mode``: ``"zero"`` (paper) or ``"noisy_linear"`` (Rong et al. 2022)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import (
    as_index_tensor,
    check_class_indices,
    check_count,
    check_maps,
    check_model_input,
    check_number,
    frozen_eval,
    model_device,
)

TieRule = Literal["random", "reference"]


def removal_masks(
    maps: Tensor,
    percents: float | Sequence[float] | Tensor,
    *,
    ties: TieRule = "random",
    tie_seed: int = 0,
) -> Tensor:
    """(B, H, W) maps, P percentages in [0, 100] -> (B, P, H, W) bool on the maps' device,
    True on the top-p % pixels; ValueError on a percentage outside [0, 100] or a bad ``ties``."""
    check_maps(maps)
    if ties not in ("random", "reference"):
        raise ValueError(f"ties must be 'random' or 'reference', got {ties!r}")
    ps = torch.as_tensor(percents, dtype=torch.float64).reshape(-1)
    bad = [p for p in ps.tolist() if not 0.0 <= p <= 100.0]
    if bad:
        raise ValueError(f"percentages must lie in [0, 100], got {bad}")
    b, n = maps.shape[0], maps.shape[1] * maps.shape[2]
    flat = maps.reshape(b, -1) + 0.0  # +0.0 makes -0.0 and 0.0 equal keys
    if ties == "reference":
        srt = flat.to(torch.float64).sort(dim=1).values
        pos = ((100.0 - ps) / 100.0 * (n - 1)).to(maps.device)
        lo, hi = pos.floor().long(), pos.ceil().long()
        cut = srt[:, lo] + (srt[:, hi] - srt[:, lo]) * (pos - lo.to(pos.dtype)).unsqueeze(0)
        return maps.to(torch.float64).unsqueeze(1) + 0.0 > cut[:, :, None, None]
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(tie_seed)).to(maps.device)
    order = perm[torch.sort(-flat[:, perm], dim=1, stable=True).indices]
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(n, device=maps.device).expand(b, -1))
    # the 1e-9 guards against p/100·n landing a hair below an exact half in binary
    k = [min(n, math.floor(p / 100.0 * n + 0.5 + 1e-9)) for p in ps.tolist()]
    return ranks.view_as(maps).unsqueeze(1) < torch.tensor(k, device=maps.device).view(1, -1, 1, 1)


@torch.no_grad()
def class_scores(model: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 64) -> Tensor:
    """(N,) logits of class ``labels`` (N,) of (N, 3, H, W) images, in eval mode and chunks."""
    check_count(batch_size, "batch_size", 1)
    dev = model_device(model)
    out = []
    with frozen_eval(model):
        for i in range(0, images.shape[0], batch_size):
            logits = model(images[i : i + batch_size].to(dev))
            if i == 0:
                check_class_indices(labels, logits.shape[1], "labels")
            y = labels[i : i + batch_size, None].to(logits.device)
            out.append(logits.gather(1, y).squeeze(1).float())
    return torch.cat(out).to(images.device)


def road_scores(
    model: nn.Module,
    images: Tensor,
    labels: int | Sequence[int] | Tensor,
    maps: Tensor,
    percents: Sequence[float] = (10, 30, 50),
    *,
    mode: Literal["zero", "noisy_linear"] = "zero",
    batch_size: int = 64,
    noise: float = 0.01,
    seed: int = 0,
    ties: TieRule = "random",
    tie_seed: int = 0,
) -> Tensor:
    """ROAD-Delete@p: (B, P) drops s(x) − s(x̃) of the class logit (:func:`class_scores`)
    when the top-p % pixels of the (B, H, W) maps are removed from the (B, 3, H, W) [0, 1]
    ``images`` on their device; ``noise`` / ``seed``: σ and seed of the imputation."""
    if mode not in ("zero", "noisy_linear"):
        raise ValueError(f"mode must be one of ('zero', 'noisy_linear'), got {mode!r}")
    check_maps(maps)
    b = images.shape[0]
    y = as_index_tensor(labels, b, "labels").to(images.device)
    clean = class_scores(model, check_model_input(images, model), y, batch_size)
    if maps.shape != (b, *images.shape[2:]):
        raise ValueError(
            f"maps must have shape {(b, *images.shape[2:])} to match images, got {tuple(maps.shape)}"
        )
    masks = removal_masks(maps.to(images.device), percents, ties=ties, tie_seed=tie_seed)
    gen = torch.Generator(device=images.device).manual_seed(seed)
    out = torch.empty(masks.shape[:2], device=images.device)
    for chunk in torch.arange(out.numel(), device=images.device).split(batch_size):
        ii, top = chunk // out.shape[1], masks.flatten(0, 1)[chunk]
        if mode == "zero":
            xt = images[ii] * (~top).unsqueeze(1).to(images.dtype)
        else:
            xt = noisy_linear_impute(images[ii], top, noise=noise, generator=gen)
        out.view(-1)[chunk] = class_scores(model, xt, y[ii], batch_size)
    return clean.unsqueeze(1) - out


def _neighbour_sum(x: Tensor) -> Tensor:
    """Σ_j w_j x_j over in-image neighbours of (N, 1, H, W) grids (edge 1/6, corner 1/12)."""
    xp = F.pad(x, (1, 1, 1, 1))
    rows = torch.add(xp[..., :, :-2], xp[..., :, 2:]).add_(xp[..., :, 1:-1], alpha=2)
    both = torch.add(rows[..., :-2, :], rows[..., 2:, :]).add_(rows[..., 1:-1, :], alpha=2)
    return (both - 4 * x) / 12


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return torch.einsum("nchw,nchw->n", a, b)


def noisy_linear_impute(
    images: Tensor,
    removed: Tensor,
    *,
    noise: float = 0.01,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Noisy linear imputation (Rong et al. 2022) of the ``removed`` (B, H, W) bool pixels of
    (B, 3, H, W) [0, 1] images on their device, clipped to [0, 1]; ``noise`` σ from
    ``generator``. Removed i: d_i x_i − Σ_{j removed} w_j x_j = Σ_{j kept} w_j v_j, by
    Jacobi-preconditioned CG to a relative residual of 1e-6 (no kept neighbour: 0)."""
    noise = check_number(noise, "noise (the imputation noise σ, >= 0; 0 turns it off)", lo=0.0)
    b, c, h, w = images.shape
    mask = removed.to(images.device).bool().unsqueeze(1)
    m = mask.expand(b, c, h, w).reshape(b * c, 1, h, w).to(images.dtype)
    values = images.reshape(b * c, 1, h, w)
    tiny = torch.finfo(images.dtype).tiny
    diag = _neighbour_sum(torch.ones(1, 1, h, w, dtype=images.dtype, device=images.device))
    inv_diag = 1.0 / diag
    rhs = m * _neighbour_sum((1 - m) * values)
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    z = r * inv_diag
    p = z.clone()
    rz = _dot(r, z)
    target = (1e-6 * _dot(rhs, rhs).sqrt()).clamp_min(tiny)
    for it in range(1, 4 * (h + w) + 101):
        ap = (diag * p).sub_(_neighbour_sum(p)).mul_(m)  # A p
        pap = _dot(p, ap)
        alpha = torch.where(pap > 0, rz / pap.clamp_min(tiny), 0.0).view(-1, 1, 1, 1)
        x.addcmul_(alpha, p)
        r.addcmul_(alpha, ap, value=-1.0)
        torch.mul(r, inv_diag, out=z)
        rz_new = _dot(r, z)
        beta = torch.where(rz > 0, rz_new / rz.clamp_min(tiny), 0.0).view(-1, 1, 1, 1)
        p.mul_(beta).add_(z)
        rz = rz_new
        if it % 25 == 0 and bool((_dot(r, r).sqrt() <= target).all()):
            break
    filled = x.reshape(b, c, h, w)
    if noise > 0:
        filled = filled + noise * torch.randn(
            filled.shape, generator=generator, device=images.device, dtype=filled.dtype
        )
    return torch.where(mask, filled, images).clamp(0, 1)
