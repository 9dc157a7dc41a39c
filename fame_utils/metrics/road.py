"""ROAD-Delete@p (paper Table 2): the drop of the ground-truth class score when the top-p %
pixels of the map (:mod:`~fame_utils.metrics.removal`) are removed.

Removal (``mode``): ``"zero"`` sets the pixels to 0 in the [0, 1] RGB image (the paper's
Table 2); ``"noisy_linear"`` is ROAD proper (Rong et al., ICML 2022): every removed pixel
takes the weighted mean of its 8 neighbours (1/6 edges, 1/12 corners, in-image neighbours
only), solved jointly as one sparse system per image and channel, plus N(0, 0.01²) noise
in pixel units (:func:`noisy_linear_impute`, equal to pytorch-grad-cam's
``NoisyLinearImputer`` with the noise off).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import (
    as_index_tensor,
    check_class_indices,
    check_count,
    check_images,
    check_maps,
    check_model_input,
    check_number,
    eval_mode,
    model_device,
)
from .removal import TieRule, top_pixel_chunks, top_pixel_sets

__all__ = ["RemovalMode", "class_scores", "road_scores", "noisy_linear_impute"]

RemovalMode = Literal["zero", "noisy_linear"]


@torch.no_grad()
def class_scores(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    score: Literal["logit", "probability"] = "logit",
    batch_size: int = 64,
) -> Tensor:
    """s_y(x), the logit (or softmax probability) of class ``labels`` (N,) for (N, 3, H, W)
    images, in chunks of ``batch_size`` on the model's device in eval mode (each module's
    mode restored after). Returns (N,) on ``images``' device."""
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


def road_scores(
    model: nn.Module,
    images: Tensor,
    labels: int | Sequence[int] | Tensor,
    maps: Tensor,
    percents: Sequence[float] = (10, 30, 50),
    *,
    mode: RemovalMode = "zero",
    score: Literal["logit", "probability"] = "logit",
    batch_size: int = 64,
    noise: float = 0.01,
    seed: int = 0,
    ties: TieRule = "random",
    tie_seed: int = 0,
) -> Tensor:
    """ROAD-Delete@p: s(x) − s(x̃) for the class ``labels`` with the top-p % pixels removed.

    Args:
        model: classifier of (N, 3, H, W) [0, 1] RGB -> (N, classes) logits.
        images: (B, 3, H, W) [0, 1] images on any device (perturbed there, forwarded on the
            model's device in chunks of ``batch_size`` perturbed images).
        labels: (B,) ground-truth classes (or one int).
        maps: (B, H, W) attribution maps (only their ranking matters).
        percents: P removal percentages in [0, 100].
        mode: ``"zero"`` or ``"noisy_linear"`` (module docstring).
        score: ``"logit"`` (the paper) or ``"probability"``.
        noise, seed: σ of the imputation noise and the seed of its generator.
        ties, tie_seed: order among equal map values (:mod:`~fame_utils.metrics.removal`).

    Returns:
        (B, P) float drops on ``images``' device (higher = more important pixels found).
    """
    if mode not in ("zero", "noisy_linear"):
        raise ValueError(f"mode must be 'zero' or 'noisy_linear', got {mode!r}")
    check_maps(maps)
    b = images.shape[0]
    y = as_index_tensor(labels, b, "labels")
    clean = class_scores(model, check_model_input(images, model), y, score, batch_size)
    if maps.shape != (b, *images.shape[2:]):
        raise ValueError(
            f"maps must have shape {(b, *images.shape[2:])} to match images, got {tuple(maps.shape)}"
        )
    y = y.to(images.device)
    key, cut = top_pixel_sets(maps.to(images.device), percents, ties=ties, tie_seed=tie_seed)
    gen = torch.Generator(device=images.device).manual_seed(seed)
    out = torch.empty(cut.shape, device=images.device)
    for ii, jj, top in top_pixel_chunks(key, cut, batch_size):
        if mode == "zero":
            xt = images[ii] * (~top).unsqueeze(1).to(images.dtype)
        else:
            xt = noisy_linear_impute(images[ii], top, noise=noise, generator=gen)
        out[ii, jj] = class_scores(model, xt, y[ii], score, batch_size)
    return clean.unsqueeze(1) - out


def _neighbour_sum(x: Tensor) -> Tensor:
    """Σ_j w_j x_j over the in-image 3×3 neighbours of (N, 1, H, W) grids: the kernel
    ([1, 2, 1] ⊗ [1, 2, 1] − 4·δ) / 12, as two 3-tap passes (faster than ``conv2d``)."""
    xp = F.pad(x, (1, 1, 1, 1))
    rows = torch.add(xp[..., :, :-2], xp[..., :, 2:]).add_(xp[..., :, 1:-1], alpha=2)
    both = torch.add(rows[..., :-2, :], rows[..., 2:, :]).add_(rows[..., 1:-1, :], alpha=2)
    return (both - 4 * x) / 12


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-grid inner products of (N, 1, H, W) tensors -> (N,)."""
    return torch.einsum("nchw,nchw->n", a, b)


def _solve_interpolation(values: Tensor, mask: Tensor, tol: float = 1e-6) -> Tensor:
    """Jacobi-preconditioned CG for N grids at once: for removed i (``mask`` (N, 1, H, W)
    float, 1 on removed pixels), d_i x_i − Σ_{j removed} w_j x_j = Σ_{j kept} w_j v_j with
    d_i = Σ_{j in image} w_j. Returns x on the removed pixels (0 elsewhere), relative
    residual below ``tol`` (checked every 25 iterations), at most 4·(H + W) + 100 steps."""
    h, w = values.shape[-2:]
    tiny = torch.finfo(values.dtype).tiny
    diag = _neighbour_sum(torch.ones(1, 1, h, w, dtype=values.dtype, device=values.device))
    inv_diag = 1.0 / diag
    rhs = mask * _neighbour_sum((1 - mask) * values)
    x = torch.zeros_like(rhs)
    r = rhs.clone()
    z = r * inv_diag
    p = z.clone()
    rz = _dot(r, z)
    # groups of removed pixels without a kept neighbour get rhs = 0 and stay 0
    target = (tol * _dot(rhs, rhs).sqrt()).clamp_min(tiny)
    for it in range(1, 4 * (h + w) + 101):
        ap = (diag * p).sub_(_neighbour_sum(p)).mul_(mask)  # A p
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
    return x


def noisy_linear_impute(
    images: Tensor,
    removed: Tensor,
    *,
    noise: float = 0.01,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Noisy linear imputation (Rong et al. 2022; module docstring), batched on the device.

    A connected group of removed pixels touching no kept pixel is filled with 0.

    Args:
        images: (B, 3, H, W) float images in [0, 1], any device.
        removed: (B, H, W) bool, ``True`` where a pixel is removed.
        noise: σ of the Gaussian noise on the imputed pixels (0 turns it off).
        generator: torch generator for the noise, on the images' device.

    Returns:
        (B, 3, H, W) images clipped to [0, 1], images' dtype and device.
    """
    check_images(images)
    noise = check_number(noise, "noise (the imputation noise σ, >= 0; 0 turns it off)", lo=0.0)
    b, c, h, w = images.shape
    if not isinstance(removed, Tensor) or removed.shape != (b, h, w):
        got = tuple(removed.shape) if isinstance(removed, Tensor) else type(removed).__name__
        raise ValueError(f"removed must be a (B, H, W) bool tensor of shape {(b, h, w)}, got {got}")
    mask = removed.to(images.device).bool().unsqueeze(1)
    m = mask.expand(b, c, h, w).reshape(b * c, 1, h, w).to(images.dtype)
    filled = _solve_interpolation(images.reshape(b * c, 1, h, w), m).reshape(b, c, h, w)
    if noise > 0:
        filled = filled + noise * torch.randn(
            filled.shape, generator=generator, device=images.device, dtype=filled.dtype
        )
    return torch.where(mask, filled, images).clamp(0, 1)
