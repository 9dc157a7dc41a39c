"""The FAME loop (paper Sec. 2, Eq. 3 and 4): LOTS-style descent on the input.

x̄₀ = x;  x̄ ← x̄ − η ∇/max|∇|  with ∇ = ∂L(f(x̄), t)/∂x̄ and the max taken **per
sample**;  Δx = |gray(x̄) − gray(x)|, Gaussian-blurred and normalised to [0, 1].

This is the only implementation of the loop: every task is an
:class:`~fame_utils.objectives.Objective` plugged into :func:`run_fame`.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ._checks import check_images, model_device
from .objectives import Objective
from .postprocess import Normalization, gaussian_blur, normalize_maps, to_gray

__all__ = ["FameConfig", "FameResult", "run_fame", "fame"]

StepSpace = Literal["normalized", "pixel"]


@dataclass(frozen=True)
class FameConfig:
    """Settings of one FAME run. Defaults follow the paper (Sec. 2 and supplement).

    Attributes:
        iterations: number of update steps (500 in the paper; maps settle after ~75-200).
        step_size: η, the largest per-pixel change of one step, in step-space units (1/255).
        kernel_size: Gaussian blur kernel (odd; 49 in the paper's code).
        sigma: Gaussian blur σ in pixels (7.7). ``0`` disables the blur.
        normalization: ``"max"`` (paper) or ``"minmax"`` (reference code) or ``"none"``.
        early_stop: ε; a sample stops moving once its loss is below ε (``None``: never).
            The default ``"auto"`` means "the task's default": never for
            classification and :func:`run_fame`, the recipe's ``face_early_stop`` (0.01,
            paper §4.2) for face verification through :class:`fame_utils.explain.Fame`.
        step_space: ``"normalized"`` steps in the model's mean/std-normalised tensor, as
            the paper did for classification (needs ``model.input_normalization =
            (mean, std)``; models without it are stepped in pixels), and Δx is measured
            there; ``"pixel"`` steps in [0, 1] pixels, as the paper did for faces.
        clamp: keep x̄ inside [0, 1] pixels (off in the paper).
        batch_size: split the (expanded) batch into chunks of at most this many samples.
        early_stop_check_every: how often (iterations) to test whether every sample has
            stopped, which needs one host sync; the per-sample freeze itself is on device.
        progress: show a tqdm progress bar over iterations.
    """

    iterations: int = 500
    step_size: float = 1 / 255
    kernel_size: int = 49
    sigma: float = 7.7
    normalization: Normalization = "max"
    early_stop: float | None | Literal["auto"] = "auto"
    step_space: StepSpace = "normalized"
    clamp: bool = False
    batch_size: int | None = None
    early_stop_check_every: int = 10
    progress: bool = True

    def __post_init__(self):
        if not isinstance(self.iterations, int) or self.iterations < 0:
            raise ValueError(f"iterations must be a non-negative int, got {self.iterations!r}")
        if not self.step_size > 0:
            raise ValueError(f"step_size must be > 0, got {self.step_size}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int, got {self.kernel_size}")
        if self.sigma < 0:
            raise ValueError(f"sigma must be >= 0, got {self.sigma}")
        if self.normalization not in ("max", "minmax", "none"):
            raise ValueError(
                f"normalization must be 'max', 'minmax' or 'none', got {self.normalization!r}"
            )
        if self.step_space not in ("normalized", "pixel"):
            raise ValueError(f"step_space must be 'normalized' or 'pixel', got {self.step_space!r}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1 or None, got {self.batch_size}")
        if self.early_stop_check_every < 1:
            raise ValueError("early_stop_check_every must be >= 1")

    def replace(self, **overrides) -> FameConfig:
        """A copy with some fields changed; unknown names raise ``TypeError``."""
        names = {f.name for f in dataclasses.fields(self)}
        unknown = set(overrides) - names
        if unknown:
            raise TypeError(f"unknown FameConfig fields {sorted(unknown)}; valid: {sorted(names)}")
        return dataclasses.replace(self, **overrides)


@dataclass
class FameResult:
    """Everything one FAME run produced, before blur and normalisation.

    Attributes:
        delta: (N, H, W) unblurred Δx = |gray(x̄) − gray(x)| in step space, on the
            images' device. Re-blur with :meth:`maps` without re-optimising.
        steps: (N,) number of update steps each sample took (< iterations if it stopped early).
        initial_loss: (N,) L at x̄₀ = x.
        final_loss: (N,) L at the last iterate.
        config: the configuration used.
    """

    delta: Tensor
    steps: Tensor
    initial_loss: Tensor
    final_loss: Tensor
    config: FameConfig

    def maps(
        self,
        *,
        kernel_size: int | None = None,
        sigma: float | None = None,
        normalization: Normalization | None = None,
        warn_empty: bool = True,
    ) -> Tensor:
        """Blurred, normalised attribution maps (N, H, W) in [0, 1] (each map's max is 1,
        or the map is all zero when nothing moved; those are reported by a warning)."""
        k = self.config.kernel_size if kernel_size is None else kernel_size
        s = self.config.sigma if sigma is None else sigma
        norm = self.config.normalization if normalization is None else normalization
        blurred = gaussian_blur(self.delta, k, s)
        out, empty = normalize_maps(blurred, norm)
        if warn_empty and bool(empty.any()):
            idx = empty.nonzero().flatten().tolist()
            warnings.warn(
                f"FAME produced empty (all-zero) maps for samples {idx}: the input never moved "
                "(loss already below early_stop at the start, or a zero gradient). "
                "They are returned as zeros.",
                stacklevel=2,
            )
        return out

    def __getitem__(self, index: int | slice) -> FameResult:
        """The result of some samples (an int keeps the batch dimension)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        return FameResult(
            self.delta[index],
            self.steps[index],
            self.initial_loss[index],
            self.final_loss[index],
            self.config,
        )

    def __len__(self) -> int:
        return self.delta.shape[0]

    @property
    def empty(self) -> Tensor:
        """(N,) bool: samples whose Δx is all zero."""
        return self.delta.flatten(1).amax(1) <= 0


def _step_scale(model: nn.Module, step_space: StepSpace, device, dtype) -> Tensor:
    """Per-channel std s (1, 3, 1, 1) linking step space to pixels: x_pixel = x + s·δ."""
    norm = getattr(model, "input_normalization", None) if step_space == "normalized" else None
    if norm is None:
        return torch.ones(1, 3, 1, 1, device=device, dtype=dtype)
    std = torch.as_tensor(norm[1], device=device, dtype=dtype).reshape(-1)
    if std.numel() == 1:
        std = std.expand(3)
    return std.reshape(1, 3, 1, 1)


def _optimise_chunk(
    model: nn.Module, x_full: Tensor, objective: Objective, cfg: FameConfig, bar
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Descend ``objective`` on one chunk; returns (Δx gray-abs, steps, initial, final loss).

    With early stopping, finished samples are frozen on the device at once and, at every
    ``early_stop_check_every``-th iteration (one host sync), dropped from the batch so
    they stop costing forward/backward passes.
    """
    scale = _step_scale(model, cfg.step_space, x_full.device, x_full.dtype)
    n = x_full.shape[0]
    eps = None if cfg.early_stop == "auto" else cfg.early_stop
    delta_full = torch.zeros_like(x_full)
    steps = torch.zeros(n, dtype=torch.long, device=x_full.device)
    rows = torch.arange(n, device=x_full.device)  # chunk rows still being optimised
    x, delta, obj = x_full, torch.zeros_like(x_full), objective
    active = torch.ones(n, 1, 1, 1, dtype=torch.bool, device=x_full.device)
    initial = None
    for it in range(cfg.iterations):
        delta.requires_grad_(True)
        loss = obj(model, x + scale * delta)
        (grad,) = torch.autograd.grad(loss.sum(), delta)
        with torch.no_grad():
            loss = loss.detach()
            if initial is None:
                initial = loss.clone()
            gmax = grad.abs().amax(dim=(1, 2, 3), keepdim=True)
            step = grad / gmax.clamp_min(torch.finfo(grad.dtype).tiny)
            if eps is not None:
                active &= (loss >= eps).view(-1, 1, 1, 1)
                step = step * active
            steps.index_add_(0, rows, active.view(-1).long())
            delta = delta.detach() - cfg.step_size * step
            if cfg.clamp:
                delta = ((x + scale * delta).clamp(0, 1) - x) / scale
        if bar is not None:
            bar.update(1)
        if eps is not None and (it + 1) % cfg.early_stop_check_every == 0:
            n_active = int(active.sum())  # the one host sync early stopping needs
            if n_active < rows.numel():
                delta_full[rows] = delta
                keep = active.view(-1).nonzero().squeeze(1)
                rows, x, delta, active = rows[keep], x[keep], delta[keep], active[keep]
                obj = obj.subset(keep)
            if n_active == 0:
                if bar is not None:
                    bar.update(cfg.iterations - it - 1)
                break
    with torch.no_grad():
        delta_full[rows] = delta.detach()
        final = objective(model, x_full + scale * delta_full).detach()
    if initial is None:
        initial = final
    return to_gray(delta_full).abs(), steps, initial, final


def run_fame(
    model: nn.Module,
    images: Tensor,
    objective: Objective,
    config: FameConfig | None = None,
    **overrides,
) -> FameResult:
    """Optimise the input and return the unblurred Δx with diagnostics.

    Args:
        model: network in eval mode taking (N, 3, H, W) [0, 1] RGB (it normalises inside).
        images: float (B, 3, H, W) in [0, 1], RGB, any device.
        objective: the loss to descend, one value per sample (see
            :mod:`fame_utils.objectives`); it may expand B images to N samples.
        config: :class:`FameConfig`; keyword ``overrides`` replace single fields.

    Returns:
        :class:`FameResult` with tensors on ``images``' device.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(objective, Objective):
        raise TypeError(
            f"objective must be a fame_utils.objectives.Objective, got {type(objective).__name__}"
        )
    cfg = (config or FameConfig()).replace(**overrides) if overrides else (config or FameConfig())
    check_images(images)
    if model.training:
        warnings.warn(
            "model is in training mode; FAME assumes eval mode (call model.eval())", stacklevel=2
        )
    out_device = images.device
    device = model_device(model)
    x_all, bound = objective.expand(model, images.to(device))
    n = x_all.shape[0]
    chunk = cfg.batch_size or n
    bounds = [(i, min(i + chunk, n)) for i in range(0, n, chunk)]
    bar = tqdm(
        total=cfg.iterations * len(bounds),
        desc="FAME",
        unit="it",
        disable=not cfg.progress,
        leave=False,
    )
    parts = []
    try:
        for lo, hi in bounds:
            parts.append(
                _optimise_chunk(model, x_all[lo:hi], bound.subset(slice(lo, hi)), cfg, bar)
            )
    finally:
        bar.close()
    delta, steps, initial, final = (torch.cat(p).to(out_device) for p in zip(*parts))
    return FameResult(delta=delta, steps=steps, initial_loss=initial, final_loss=final, config=cfg)


def fame(
    model: nn.Module,
    images: Tensor,
    objective: Objective,
    config: FameConfig | None = None,
    **overrides,
) -> Tensor:
    """FAME attribution maps (paper Eq. 3-4).

    Args:
        model: network in eval mode taking (B, 3, H, W) [0, 1] RGB.
        images: float (B, 3, H, W) in [0, 1], RGB, any device.
        objective: e.g. ``ClassLogit(targets)``, ``FeatureCell(layer, cells)``,
            ``CosineSimilarity(refs)``, ``Dissimilarity(refs)``.
        config: :class:`FameConfig`; keyword ``overrides`` (``iterations=100``,
            ``sigma=3``...) replace single fields.

    Returns:
        (N, H, W) maps in [0, 1] on ``images``' device, each with max 1 (N = B except for
        objectives that expand the batch, e.g. B·K for K feature cells). A map whose
        input never moved stays all zero and is reported with a warning.
    """
    return run_fame(model, images, objective, config, **overrides).maps()
