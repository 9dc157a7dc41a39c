"""The FAME loop (paper Sec. 2, Eq. 3 and 4): LOTS-style descent on the input.

x̄₀ = x;  x̄ ← x̄ − η ∇/max|∇|  with ∇ = ∂L(f(x̄), t)/∂x̄ and the max taken **per
sample**;  Δx = |gray(x̄) − gray(x)|, Gaussian-blurred and normalised to [0, 1].

This is the only implementation of the loop: every task is an
:class:`~fame_utils.objectives.Objective` plugged into :func:`run_fame`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ._checks import (
    check_count,
    check_model_input,
    check_number,
    check_switch,
    frozen_eval,
    model_device,
)
from .objectives import ClassLogit, Objective
from .postprocess import Normalization, gaussian_blur, normalize_maps, to_gray

if TYPE_CHECKING:
    from .recipes import FameTask

__all__ = ["FameConfig", "FameResult", "run_fame", "fame", "frozen_eval"]

StepSpace = Literal["normalized", "pixel"]
Precision = Literal["float32", "bfloat16", "float16"]
GrayOrder = Literal["rgb", "bgr"]
_AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class FameConfig:
    """Settings of one FAME run. Defaults follow the paper's text for classification (Sec. 2
    and supplement); :meth:`paper` gives the paper's settings for another task and
    :meth:`fame_utils.recipes.Recipe.fame_config` a recipe's. A run uses exactly these
    fields: nothing is merged in at call time.

    Attributes:
        iterations: number of update steps (500 in the paper; maps settle after ~75-200).
        step_size: η, the largest per-pixel change of one step, in step-space units (1/255).
        kernel_size: Gaussian blur kernel (odd; 49 in the paper's code).
        sigma: Gaussian blur σ in pixels (7.7). ``0`` disables the blur.
        normalization: ``"max"`` (paper) or ``"minmax"`` (reference code) or ``"none"``.
        early_stop: ε; a sample stops moving once its loss is below ε (``None``, the
            default: never, as for classification in the paper; faces use 0.01, §4.2).
        step_space: ``"normalized"`` steps in the model's mean/std-normalised tensor, as
            the paper did for classification (the model declares its normalisation as
            ``model.input_normalization = (mean, std)``, which :func:`fame_utils.wrap` and
            every loader set; models without it are stepped in pixels), and Δx is
            measured there; ``"pixel"`` steps in [0, 1] pixels, as the paper did for faces.
        absolute_logit: descend |z_o| instead of z_o when the objective is
            :class:`~fame_utils.objectives.ClassLogit` (the reference code's L_cls).
        clamp: keep x̄ inside [0, 1] pixels (off in the paper).
        batch_size: split the (expanded) batch into chunks of at most this many samples.
        early_stop_check_every: how often (iterations) to test whether every sample has
            stopped, which needs one host sync; the per-sample freeze itself is on device.
        progress: show a tqdm progress bar over iterations.
        gray_order: which channel the luma weights 0.2989/0.587/0.114 of
            Δx = |gray(x̄) − gray(x)| multiply. ``"rgb"`` (paper text): 0.2989·R +
            0.587·G + 0.114·B of the RGB image. ``"bgr"`` (the reference code for faces,
            whose network takes a BGR tensor): 0.2989·B + 0.587·G + 0.114·R. Face runs read
            it from :attr:`fame_utils.recipes.Recipe.face_gray_order`.
        precision: ``"float32"`` (default), ``"bfloat16"`` or ``"float16"``: the objective's
            forward pass (and so its backward) runs under :func:`torch.autocast` on the
            model's device type, while Δ, x̄, the per-sample max and the update stay
            float32. Losses are reported as float32 of the autocast values.
        channels_last: run the model and the iterate in ``torch.channels_last`` memory
            format (the model's parameters are converted for the run and restored after).
        compile: compile the model's forward (and with it, through AOTAutograd, the
            input-gradient backward) and the update step with :func:`torch.compile`. The
            first call pays the compilation (tens of seconds on a CPU); where compilation
            fails the run continues eagerly with a warning.
        deterministic: maps that do not depend on the batch or the caller's thread count:
            every sample is optimised alone (``batch_size`` 1) and, on a CPU, on one
            thread (the caller's count is restored after); on CUDA cuDNN is switched to
            deterministic algorithms for the call. Batching changes the kernels' summation
            order and FAME's normalised steps grow such 1e-7 differences into visible map
            changes; ``benchmarks/rerun_spread.py`` measures that spread and this mode's cost.
    """

    iterations: int = 500
    step_size: float = 1 / 255
    kernel_size: int = 49
    sigma: float = 7.7
    normalization: Normalization = "max"
    early_stop: float | None = None
    step_space: StepSpace = "normalized"
    absolute_logit: bool = False
    clamp: bool = False
    batch_size: int | None = None
    early_stop_check_every: int = 10
    progress: bool = True
    gray_order: GrayOrder = "rgb"
    precision: Precision = "float32"
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = False

    runtime_fields: ClassVar[frozenset[str]] = frozenset(
        {"progress", "batch_size", "early_stop_check_every"}
    )
    """Fields that change speed or display, not maps (left out of cache keys)."""

    def __post_init__(self):
        check_count(self.iterations, "iterations", 0)
        check_count(self.kernel_size, "kernel_size", 1)
        check_number(self.sigma, "sigma", 0.0)
        if self.early_stop not in (None, "auto"):
            check_number(self.early_stop, "early_stop")
        for switch in ("clamp", "progress", "channels_last", "compile", "deterministic"):
            check_switch(getattr(self, switch), switch)
        if not isinstance(self.iterations, int) or self.iterations < 0:
            raise ValueError(f"iterations must be a non-negative int, got {self.iterations!r}")
        if not isinstance(self.step_size, (int, float)) or not (
            math.isfinite(self.step_size) and self.step_size > 0
        ):
            raise ValueError(
                f"step_size must be a finite number > 0 (e.g. 1/255), got {self.step_size!r}"
            )
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
        if self.gray_order not in ("rgb", "bgr"):
            raise ValueError(f"gray_order must be 'rgb' or 'bgr', got {self.gray_order!r}")
        if self.precision not in ("float32", *_AUTOCAST_DTYPES):
            raise ValueError(
                f"precision must be 'float32', 'bfloat16' or 'float16', got {self.precision!r}"
            )

    @classmethod
    def paper(cls, task: FameTask = "classification", **overrides) -> FameConfig:
        """The paper's settings for ``task``: ``"classification"`` (the defaults),
        ``"verification"`` (pixel steps, ε = 0.01, §4.2) or ``"cells"`` (feature cells);
        ``overrides`` replace single fields. Same as ``PAPER.fame_config(task)``."""
        from .recipes import PAPER

        return PAPER.fame_config(task, **overrides)

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
        or the map is all zero when nothing moved; those are reported by a warning).

        Raises:
            ValueError: some Δx holds NaN or Inf (the message names the samples); such a
                map is never returned as a number.
        """
        k = self.config.kernel_size if kernel_size is None else kernel_size
        s = self.config.sigma if sigma is None else sigma
        norm = self.config.normalization if normalization is None else normalization
        _raise_if_nonfinite(~torch.isfinite(self.delta).flatten(1).all(1), "Δx")
        if self.config.deterministic:  # the blur's convolution, too, one map at a time
            with _deterministic(True, self.delta.device):
                blurred = torch.cat([gaussian_blur(d[None], k, s) for d in self.delta])
        else:
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
        """(N,) bool: samples without a usable Δx: all zero, or holding NaN (never > 0)."""
        return ~(self.delta.flatten(1).amax(1) > 0)


def _raise_if_nonfinite(bad: Tensor, what: str, offset: int = 0, by: str = "") -> None:
    """Raise naming the samples flagged in the (N,) bool ``bad`` (one host sync)."""
    if bool(bad.any()):
        idx = (bad.nonzero().flatten() + offset).tolist()
        raise ValueError(
            f"FAME found NaN or Inf in the {what} of samples {idx}{by} (rows of the "
            "optimisation batch: image-major, one per image unless the objective expands "
            "images, e.g. one per feature cell); check that the model's output on these "
            "images is finite (model(images)) and that the objective is defined there"
        )


@contextlib.contextmanager
def _deterministic(enabled: bool, device: torch.device) -> Iterator[None]:
    """One CPU thread, or deterministic cuDNN, for the call; the previous state after."""
    if not enabled:
        yield
        return
    threads = torch.get_num_threads()
    cudnn = torch.backends.cudnn
    flags = (cudnn.deterministic, cudnn.benchmark)
    if device.type == "cpu":
        torch.set_num_threads(1)
    else:
        cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        cudnn.deterministic, cudnn.benchmark = flags


@contextlib.contextmanager
def _channels_last(model: nn.Module, enabled: bool) -> Iterator[None]:
    """Hold the model's 4-D parameters and buffers in channels_last memory format for the
    run; those that were contiguous before are made contiguous again on exit."""
    if not enabled:
        yield
        return
    tensors = [t for t in [*model.parameters(), *model.buffers()] if t.ndim == 4]
    was_contiguous = [t.is_contiguous() for t in tensors]
    model.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        for t, contiguous in zip(tensors, was_contiguous):
            if contiguous and not t.is_contiguous():
                t.data = t.data.contiguous()


def _step_scale(model: nn.Module, step_space: StepSpace, device, dtype) -> Tensor:
    """Per-channel std s (1, 3, 1, 1) linking step space to pixels: x_pixel = x + s·δ."""
    norm = getattr(model, "input_normalization", None) if step_space == "normalized" else None
    if norm is None:
        return torch.ones(1, 3, 1, 1, device=device, dtype=dtype)
    std = torch.as_tensor(norm[1], device=device, dtype=dtype).reshape(-1)
    if std.numel() == 1:
        std = std.expand(3)
    return std.reshape(1, 3, 1, 1)


def _gray_abs(delta: Tensor, order: GrayOrder) -> Tensor:
    """|gray(Δ)| (N, H, W) of an RGB change Δ (N, 3, H, W); ``"bgr"`` applies the luma
    weights to the channel-reversed tensor (0.2989·B + 0.587·G + 0.114·R)."""
    return to_gray(delta.flip(1) if order == "bgr" else delta).abs()


def _update(
    x: Tensor,
    delta: Tensor,
    grad: Tensor,
    scale: Tensor,
    step_size: float,
    clamp: bool,
    moving: Tensor | None,
) -> tuple[Tensor, Tensor]:
    """One LOTS step (Eq. 3) in float32: δ ← δ − η ∇/max|∇| with the max per sample;
    ``moving`` (N, 1, 1, 1) bool freezes stopped samples. Returns (δ, (N,) max|∇|)."""
    gmax = grad.abs().amax(dim=(1, 2, 3), keepdim=True)
    step = grad / gmax.clamp_min(torch.finfo(grad.dtype).tiny)
    if moving is not None:
        step = step * moving
    delta = delta - step_size * step
    if clamp:
        delta = ((x + scale * delta).clamp(0, 1) - x) / scale
    return delta, gmax.view(-1)


class _Step:
    """The per-iteration functions of one run: the objective's forward (under autocast
    when asked) and the update, optionally compiled with :func:`torch.compile`.

    A compiled function that fails on its first call (no compiler, unsupported model) is
    replaced by the eager one with a warning, once per run.
    """

    def __init__(self, model: nn.Module, cfg: FameConfig, device: torch.device):
        self.model: Callable = model
        self.update: Callable = _update
        self._compiled = cfg.compile
        if cfg.compile:
            self.model = torch.compile(model)
            self.update = torch.compile(_update)
        if cfg.precision == "float32":
            self._autocast: Callable = contextlib.nullcontext
        else:
            dtype = _AUTOCAST_DTYPES[cfg.precision]
            self._autocast = lambda: torch.autocast(device.type, dtype=dtype)
        self._eager_model = model

    def loss(self, objective: Objective, inputs: Tensor, *, eager: bool = False) -> Tensor:
        """(N,) float32 losses of ``inputs`` (float32, autocast inside); ``eager`` skips the
        compiled model (for the one no-grad pass at the end, which would compile anew)."""
        with self._autocast():
            return objective(self._eager_model if eager else self.model, inputs).float()

    def _fallback(self, err: Exception) -> None:
        warnings.warn(
            f"torch.compile failed ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            "FAME continues eagerly (compile=False gives the same maps without trying)",
            stacklevel=4,
        )
        self.model, self.update, self._compiled = self._eager_model, _update, False

    def first(self, fn: Callable, *args):
        """Call ``fn(*args)``; if torch.compile fails in it, fall back and retry eagerly."""
        if not self._compiled:
            return fn(*args)
        try:
            return fn(*args)
        except Exception as err:
            if not _is_compile_error(err):
                raise
            self._fallback(err)
            return fn(*args)


def _is_compile_error(err: Exception) -> bool:
    """An error raised by torch.compile's machinery (Dynamo, Inductor, the C++ compiler)
    rather than by the model or the objective."""
    module = type(err).__module__
    return module.startswith(("torch._dynamo", "torch._inductor")) or isinstance(
        err, torch._dynamo.exc.TorchDynamoException
    )


def _optimise_chunk(
    model: nn.Module,
    x_full: Tensor,
    objective: Objective,
    cfg: FameConfig,
    bar,
    fns: _Step,
    offset: int,
    callback: Callable[[Tensor, int, Tensor], bool | None] | None = None,
    callback_every: int = 25,
) -> tuple[Tensor, Tensor, Tensor, Tensor, bool]:
    """Descend ``objective`` on one chunk; returns (δ (n, 3, H, W), steps, initial, final
    loss, stopped), δ the signed change of the iterate in step space (gray and abs come
    after) and ``stopped`` whether ``callback`` asked to stop.

    ``callback(δ, iteration, loss)`` runs every ``callback_every`` iterations with the
    chunk's whole current δ (n, 3, H, W) and (n,) loss on the device (frozen samples keep
    their last loss); the loop adds no host sync for it, and a ``True`` return ends the
    loop there.

    With early stopping, finished samples are frozen on the device at once and, at every
    ``early_stop_check_every``-th iteration (one host sync), dropped from the batch so
    they stop costing forward/backward passes. A NaN/Inf loss or gradient is flagged on
    the device and raised (naming the samples) at the first iteration, at those checks
    and at the end, never with a sync of its own in between.
    """
    scale = _step_scale(model, cfg.step_space, x_full.device, x_full.dtype)
    n = x_full.shape[0]
    eps = cfg.early_stop
    delta_full = torch.zeros_like(x_full)
    steps = torch.zeros(n, dtype=torch.long, device=x_full.device)
    nonfinite = torch.zeros(n, dtype=torch.long, device=x_full.device)
    rows = torch.arange(n, device=x_full.device)  # chunk rows still being optimised
    x, delta, obj = x_full, torch.zeros_like(x_full), objective
    active = torch.ones(n, 1, 1, 1, dtype=torch.bool, device=x_full.device)
    initial = None
    done = 0  # iterations run
    stopped = False
    last_loss = None if callback is None else torch.full((n,), float("nan"), device=x.device)

    def loss_and_grad(obj: Objective, x: Tensor, delta: Tensor) -> tuple[Tensor, Tensor]:
        delta = delta.detach().requires_grad_(True)
        loss = fns.loss(obj, x + scale * delta)
        (grad,) = torch.autograd.grad(loss.sum(), delta)
        return loss.detach(), grad

    def check(what: str, it: int) -> None:
        _raise_if_nonfinite(nonfinite > 0, what, offset, f" by iteration {it}")

    for it in range(cfg.iterations):
        if it == 0:
            loss, grad = fns.first(loss_and_grad, obj, x, delta)
        else:
            loss, grad = loss_and_grad(obj, x, delta)
        with torch.no_grad():
            if initial is None:
                initial = loss.clone()
            if eps is not None:
                active &= (loss >= eps).view(-1, 1, 1, 1)
            moving = active if eps is not None else None
            if it == 0:
                delta, gmax = fns.first(
                    fns.update, x, delta, grad, scale, cfg.step_size, cfg.clamp, moving
                )
            else:
                delta, gmax = fns.update(x, delta, grad, scale, cfg.step_size, cfg.clamp, moving)
            steps.index_add_(0, rows, active.view(-1).long())
            bad = ~(torch.isfinite(loss) & torch.isfinite(gmax))
            nonfinite.index_add_(0, rows, bad.long())
            if last_loss is not None and (it + 1) % callback_every == 0:
                last_loss[rows] = loss
        done = it + 1
        if bar is not None:
            bar.update(1)
        if it == 0:
            check("loss or input gradient", 1)  # one sync: a NaN model fails at once
        if eps is not None and (it + 1) % cfg.early_stop_check_every == 0:
            check("loss or input gradient", it + 1)
            n_active = int(active.sum())  # the one host sync early stopping needs
            if n_active < rows.numel():
                delta_full[rows] = delta
                if last_loss is not None:  # the dropped samples' last loss
                    last_loss[rows] = loss
                keep = active.view(-1).nonzero().squeeze(1)
                rows, x, delta, active = rows[keep], x[keep], delta[keep], active[keep]
                obj = obj.subset(keep)
            if n_active == 0:
                if bar is not None:
                    bar.update(cfg.iterations - it - 1)
                break
        if callback is not None and (it + 1) % callback_every == 0:
            with torch.no_grad():
                delta_full[rows] = delta
            if callback(delta_full, it + 1, last_loss):
                stopped = True
                if bar is not None:
                    bar.update(cfg.iterations - it - 1)
                break
    check("loss or input gradient", done)
    with torch.no_grad():
        delta_full[rows] = delta.detach()
        final = fns.loss(objective, x_full + scale * delta_full, eager=True).detach()
    _raise_if_nonfinite(~torch.isfinite(final), "final loss", offset)
    if initial is None:
        initial = final
    return delta_full, steps, initial, final, stopped


def _batch_callback(
    callback: Callable[[Tensor, int, Tensor], bool | None],
    done: list[tuple[Tensor, ...]],
    n: int,
    gray_order: GrayOrder,
) -> Callable[[Tensor, int, Tensor], bool | None]:
    """The chunk loop's callback for a batch of ``n`` samples split into chunks: Δx (n, H, W)
    and loss (n,) of the whole batch (finished chunks final, later ones zero / NaN)."""

    def chunk_callback(moved: Tensor, iteration: int, loss: Tensor) -> bool | None:
        delta, losses = [_gray_abs(p[0], gray_order) for p in done], [p[3] for p in done]
        delta.append(_gray_abs(moved, gray_order))
        losses.append(loss)
        rest = n - sum(d.shape[0] for d in delta)
        if rest:
            delta.append(delta[-1].new_zeros(rest, *delta[-1].shape[1:]))
            losses.append(loss.new_full((rest,), float("nan")))
        return callback(torch.cat(delta), iteration, torch.cat(losses))

    return chunk_callback


def run_fame(
    model: nn.Module,
    images: Tensor,
    objective: Objective,
    config: FameConfig | None = None,
    *,
    callback: Callable[[Tensor, int, Tensor], bool | None] | None = None,
    callback_every: int = 25,
    **overrides,
) -> FameResult:
    """Optimise the input and return the unblurred Δx with diagnostics.

    The model runs in eval mode with its parameters frozen for the call (both restored
    afterwards, see :func:`frozen_eval`): FAME never updates BatchNorm statistics.

    Args:
        model: network taking (N, 3, H, W) [0, 1] RGB (it normalises inside).
        images: float (B, 3, H, W) in [0, 1], RGB, any device.
        objective: the loss to descend, one value per sample (see
            :mod:`fame_utils.objectives`); it may expand B images to N samples.
        config: :class:`FameConfig` (default ``FameConfig()``, the paper's classification
            setting); keyword ``overrides`` replace single fields.
        callback: progress hook for live displays, called every ``callback_every``
            iterations as ``callback(delta, iteration, loss)`` with the current unblurred
            Δx (N, H, W) and per-sample loss (N,) on the model's device (with
            ``batch_size`` chunks: the chunk being optimised, earlier chunks final, later
            ones zero and NaN) and the iterations done in that chunk. Returning ``True``
            stops the run: the result holds the iterations done (:attr:`FameResult.steps`;
            chunks not started take 0 steps). Without a callback the loop does no extra
            work; the hook itself adds no host sync (what the callback reads, e.g.
            ``delta.cpu()``, syncs).
        callback_every: k, iterations between callbacks (>= 1).

    Returns:
        :class:`FameResult` with tensors on ``images``' device.

    Raises:
        ValueError: NaN or Inf in a loss or input gradient (the message names the samples).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(objective, Objective):
        raise TypeError(
            f"objective must be a fame_utils.objectives.Objective, got {type(objective).__name__}"
        )
    cfg = (config or FameConfig()).replace(**overrides) if overrides else (config or FameConfig())
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
    if not isinstance(callback_every, int) or callback_every < 1:
        raise ValueError(f"callback_every must be an int >= 1, got {callback_every!r}")
    if cfg.absolute_logit:
        if not isinstance(objective, ClassLogit):
            raise ValueError(
                f"absolute_logit=True applies to ClassLogit objectives, got {type(objective).__name__}"
            )
        objective = ClassLogit(objective.targets, absolute=True)
    check_model_input(images, model)  # dtype too, as the baselines check
    out_device = images.device
    device = model_device(model)
    with (
        frozen_eval(model),
        _channels_last(model, cfg.channels_last),
        _deterministic(cfg.deterministic, device),
    ):
        x_all, bound = objective.expand(model, images.to(device))
        if cfg.channels_last:
            x_all = x_all.contiguous(memory_format=torch.channels_last)
        n = x_all.shape[0]
        chunk = 1 if cfg.deterministic else (cfg.batch_size or n)
        bounds = [(i, min(i + chunk, n)) for i in range(0, n, chunk)]
        fns = _Step(model, cfg, device)
        bar = tqdm(
            total=cfg.iterations * len(bounds),
            desc="FAME",
            unit="it",
            disable=not cfg.progress,
            leave=False,
        )
        parts: list[tuple[Tensor, ...]] = []
        live = None if callback is None else _batch_callback(callback, parts, n, cfg.gray_order)
        stopped = False
        try:
            for lo, hi in bounds:
                *part, stopped = _optimise_chunk(
                    model,
                    x_all[lo:hi],
                    bound.subset(slice(lo, hi)),
                    cfg.replace(iterations=0) if stopped else cfg,  # stopped: 0 steps
                    bar,
                    fns,
                    lo,
                    live,
                    callback_every,
                )
                parts.append(tuple(part))
        finally:
            bar.close()
    moved, steps, initial, final = (torch.cat(p) for p in zip(*parts))
    delta = _gray_abs(moved, cfg.gray_order)  # per pixel: the same whatever the chunks
    delta, steps, initial, final = (t.to(out_device) for t in (delta, steps, initial, final))
    return FameResult(delta, steps, initial, final, cfg)


def fame(
    model: nn.Module,
    images: Tensor,
    objective: Objective,
    config: FameConfig | None = None,
    **overrides,
) -> Tensor:
    """FAME attribution maps (paper Eq. 3-4).

    Args:
        model: network taking (B, 3, H, W) [0, 1] RGB (run in eval mode, see :func:`run_fame`).
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
