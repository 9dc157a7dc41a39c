"""The FAME loop (paper Sec. 2, Eq. 3-4): x̄ ← x̄ − η ∇/max|∇| (max per sample) for any
:class:`~fame_utils.objectives.Objective`; map = blurred, normalised |gray(x̄) − gray(x)|."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal, get_args, get_origin, get_type_hints

import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from ._checks import check_count, check_model_input, check_number, frozen_eval, model_device
from .objectives import ClassLogit, Objective
from .postprocess import Normalization, gaussian_blur, normalize_maps, to_gray

if TYPE_CHECKING:
    from .recipes import FameTask


Callback = Callable[[Tensor, int, Tensor], "bool | None"]
AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class FameConfig:
    """Settings of one FAME run (paper Sec. 2 and supplement; defaults: classification);
    a run uses exactly these fields; :meth:`paper` gives the other tasks' settings.

    Attributes:
        iterations: update steps (500 in the paper).
        step_size: η, the largest per-pixel change of one step, in step-space units.
        kernel_size, sigma: the Gaussian blur (odd size, 49; σ 7.7 px; ``sigma=0``: none).
        normalization: ``"max"`` (paper), ``"minmax"`` (reference code) or ``"none"``.
        early_stop: ε; a sample stops once its loss is below ε (``None``: never).
        step_space: ``"normalized"``: in the model's ``input_normalization`` mean/std space
            (set by :func:`fame_utils.wrap`; pixels without it); ``"pixel"``: [0, 1] pixels.
        absolute_logit: descend |z_o| instead of z_o for a ``ClassLogit`` (reference code).
        batch_size: optimise the (expanded) batch in chunks of at most this many samples.
        early_stop_check_every: iterations between the host syncs that drop stopped samples.
        gray_order: luma of Δ (``"rgb"``) or of the channel-reversed Δ (``"bgr"``).
        precision: the objective under :func:`torch.autocast`; Δ and the update stay float32.
        channels_last: model and iterate in ``torch.channels_last`` for the run.
        compile: :func:`torch.compile` forward and update (eager, warning, where it fails).
        deterministic: one sample at a time, one CPU thread or deterministic cuDNN.
    """

    iterations: int = 500
    step_size: float = 1 / 255
    kernel_size: int = 49
    sigma: float = 7.7
    normalization: Normalization = "max"
    early_stop: float | None = None
    step_space: Literal["normalized", "pixel"] = "normalized"
    absolute_logit: bool = False
    batch_size: int | None = None
    early_stop_check_every: int = 10
    progress: bool = True
    gray_order: Literal["rgb", "bgr"] = "rgb"
    precision: Literal["float32", "bfloat16", "float16"] = "float32"
    channels_last: bool = False
    compile: bool = False
    deterministic: bool = False

    runtime_fields: ClassVar[frozenset[str]] = frozenset(
        {"progress", "batch_size", "early_stop_check_every"}
    )
    """Fields that change speed or display, not maps (left out of cache keys)."""

    def __post_init__(self):
        """Every field checked against its type hint (``None`` only where it allows it)."""
        step = self.step_size
        if isinstance(step, bool) or not isinstance(step, (int, float)) or not 0 < step < math.inf:
            raise ValueError(f"step_size must be a finite number > 0 (e.g. 1/255), got {step!r}")
        for name, hint in get_type_hints(FameConfig).items():
            value = getattr(self, name)
            if value is None and type(None) in get_args(hint):
                continue
            if hint in (int, int | None):
                check_count(value, name, int(name != "iterations"))
            elif hint in (float, float | None):
                check_number(value, name, 0.0 if name == "sigma" else -math.inf)
            elif hint is bool and not isinstance(value, (bool, np.bool_)):
                raise TypeError(f"{name} must be True or False, got {value!r}")
            elif get_origin(hint) is Literal and value not in get_args(hint):
                raise ValueError(f"{name} must be one of {get_args(hint)}, got {value!r}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int, got {self.kernel_size}")

    @classmethod
    def paper(cls, task: FameTask = "classification", **overrides) -> FameConfig:
        """The paper's settings for ``task`` (``PAPER.fame_config``): ``"classification"``,
        ``"verification"`` (pixel steps, ε = 0.01, §4.2) or ``"cells"``, ``overrides`` on top."""
        from .recipes import PAPER

        return PAPER.fame_config(task, **overrides)

    def replace(self, **overrides) -> FameConfig:
        """A copy with some fields changed; unknown names raise ``TypeError``."""
        return dataclasses.replace(self, **overrides)


@dataclass
class FameResult:
    """One FAME run before blur: ``delta`` (N, H, W) Δx in step space, ``steps``,
    ``initial_loss`` and ``final_loss`` (N,), the ``config``; on the images' device."""

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
        warn_empty: bool = True,
    ) -> Tensor:
        """Blurred, normalised maps (N, H, W) in [0, 1] (the config's blur unless given);
        zero (warning unless not ``warn_empty``) where nothing moved; ``ValueError`` on NaN."""
        k = self.config.kernel_size if kernel_size is None else kernel_size
        s = self.config.sigma if sigma is None else sigma
        _raise_if_nonfinite(~torch.isfinite(self.delta).flatten(1).all(1), "Δx")
        with deterministic(self.config.deterministic, self.delta.device):  # one map at a time
            parts = self.delta.split(1) if self.config.deterministic else [self.delta]
            blurred = torch.cat([gaussian_blur(d, k, s) for d in parts])
        out, empty = normalize_maps(blurred, self.config.normalization)
        if warn_empty and bool(empty.any()):
            where = empty.nonzero().flatten().tolist()
            msg = f"FAME produced empty (all-zero) maps for samples {where}: the input never moved"
            warnings.warn(
                f"{msg} (loss below early_stop at the start, or a zero gradient)", stacklevel=2
            )
        return out

    def __getitem__(self, index: int | slice) -> FameResult:
        """The result of some samples (an int keeps the batch dimension)."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        tensors = (self.delta, self.steps, self.initial_loss, self.final_loss)
        return FameResult(*(t[index] for t in tensors), self.config)

    def __len__(self) -> int:
        return self.delta.shape[0]

    @property
    def empty(self) -> Tensor:
        """(N,) bool: samples whose Δx is all zero or NaN."""
        return ~(self.delta.flatten(1).amax(1) > 0)


@contextlib.contextmanager
def deterministic(enabled: bool, device: torch.device) -> Iterator[None]:
    """One CPU thread, or deterministic cuDNN, for the block; the previous state after."""
    threads, cudnn = torch.get_num_threads(), torch.backends.cudnn
    flags = (cudnn.deterministic, cudnn.benchmark)
    if enabled and device.type == "cpu":
        torch.set_num_threads(1)
    elif enabled:
        cudnn.deterministic, cudnn.benchmark = True, False
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        cudnn.deterministic, cudnn.benchmark = flags


@contextlib.contextmanager
def channels_last(model: nn.Module, enabled: bool) -> Iterator[None]:
    """The model's 4-D parameters and buffers channels_last for the block, restored after."""
    tensors = [t for t in [*model.parameters(), *model.buffers()] if enabled and t.ndim == 4]
    was_contiguous = [t.is_contiguous() for t in tensors]
    if enabled:
        model.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        for t, contiguous in zip(tensors, was_contiguous):
            t.data = t.data.contiguous() if contiguous else t.data


def _raise_if_nonfinite(bad: Tensor, what: str, offset: int = 0, by: str = "") -> None:
    """Raise naming the samples flagged in the (N,) bool ``bad`` (one host sync)."""
    if bool(bad.any()):
        idx = (bad.nonzero().flatten() + offset).tolist()
        raise ValueError(
            f"FAME found NaN or Inf in the {what} of samples {idx}{by} (rows of the expanded "
            "batch, image-major); check that model(images) is finite on them"
        )


def _gray_abs(delta: Tensor, order: str) -> Tensor:
    """|gray(Δ)| (N, H, W) of an RGB change Δ (N, 3, H, W) in ``order``."""
    return to_gray(delta.flip(1) if order == "bgr" else delta).abs()


def _update(delta: Tensor, grad: Tensor, step_size: float, moving) -> tuple[Tensor, Tensor]:
    """One LOTS step (Eq. 3) in float32: δ ← δ − η ∇/max|∇| with the max per sample;
    ``moving`` (N, 1, 1, 1) bool freezes stopped samples. Returns (δ, (N,) max|∇|)."""
    gmax = grad.abs().amax(dim=(1, 2, 3), keepdim=True)
    step = grad / gmax.clamp_min(torch.finfo(grad.dtype).tiny)
    if moving is not None:
        step = step * moving
    return delta - step_size * step, gmax.view(-1)


def run_fame(
    model: nn.Module,
    images: Tensor,
    objective: Objective,
    config: FameConfig | None = None,
    *,
    callback: Callback | None = None,
    callback_every: int = 25,
    **overrides,
) -> FameResult:
    """Optimise the input (Eq. 3) under :func:`frozen_eval`: the unblurred
    :class:`FameResult` on ``images``' device.

    Args:
        model: network taking (N, 3, H, W) [0, 1] RGB (it normalises inside).
        images: float (B, 3, H, W) in [0, 1], RGB, any device.
        objective: the loss to descend, one per sample; it may expand B images to N.
        config: :class:`FameConfig` (default ``FameConfig()``); ``overrides`` replace fields.
        callback: ``callback(delta, iteration, loss)`` every ``callback_every`` iterations
            with Δx (N, H, W) and loss (N,) on the model's device (chunks not yet run: 0
            and NaN); ``True`` stops the run.

    Raises:
        ValueError: NaN or Inf in a loss or input gradient (naming the samples).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(objective, Objective):
        kind = type(objective).__name__
        raise TypeError(f"objective must be a fame_utils.Objective, got {kind}")
    cfg = (config or FameConfig()).replace(**overrides)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None, got {type(callback).__name__}")
    if not isinstance(callback_every, int) or callback_every < 1:
        raise ValueError(f"callback_every must be an int >= 1, got {callback_every!r}")
    if cfg.absolute_logit and not isinstance(objective, ClassLogit):
        raise ValueError(
            f"absolute_logit=True applies to ClassLogit, got {type(objective).__name__}"
        )
    check_model_input(images, model)
    try:
        return _descend(model, images, objective, cfg, callback, callback_every)
    except Exception as err:
        compiler = type(err).__module__.startswith(("torch._dynamo", "torch._inductor"))
        if not (
            cfg.compile and (compiler or isinstance(err, torch._dynamo.exc.TorchDynamoException))
        ):
            raise
        warnings.warn(
            f"torch.compile failed ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
            "FAME continues eagerly (compile=False gives the same maps without trying)",
            stacklevel=2,
        )
        eager = _descend(
            model, images, objective, cfg.replace(compile=False), callback, callback_every
        )
        return dataclasses.replace(eager, config=cfg)


def _descend(
    model: nn.Module,
    images: Tensor,
    objective: Objective,
    cfg: FameConfig,
    callback: Callback | None,
    callback_every: int,
) -> FameResult:
    """:func:`run_fame` after its checks: each chunk of the expanded batch in turn."""
    device, eps = model_device(model), cfg.early_stop
    net, update = (
        (torch.compile(model), torch.compile(_update)) if cfg.compile else (model, _update)
    )
    dtype = AUTOCAST_DTYPES.get(cfg.precision)
    parts: list[tuple[Tensor, ...]] = []  # (δ, steps, initial loss, final loss) per chunk

    def loss_of(obj: Objective, inputs: Tensor, eager: bool = False) -> Tensor:
        """(N,) float32 losses under ``cfg.precision``; ``eager``: the uncompiled model."""
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = obj(model if eager else net, inputs).float()
        return loss.abs() if cfg.absolute_logit else loss

    def whole_batch(moved: Tensor, iteration: int, loss: Tensor) -> bool | None:
        """The callback on the whole batch: finished chunks final, later ones 0 / NaN."""
        rest = n - moved.shape[0] - sum(p[0].shape[0] for p in parts)
        moved = torch.cat([*(p[0] for p in parts), moved, moved.new_zeros(rest, *moved.shape[1:])])
        losses = torch.cat([*(p[3] for p in parts), loss, loss.new_full((rest,), float("nan"))])
        return callback(_gray_abs(moved, cfg.gray_order), iteration, losses)

    def descend_chunk(x_full: Tensor, objective: Objective, offset: int, iterations: int) -> bool:
        """Descend ``objective`` on one chunk, append its (δ (n, 3, H, W) in step space,
        steps, initial and final loss) to ``parts``; whether ``callback`` stopped the run.
        Stopped samples are dropped at every ``early_stop_check_every``-th iteration (one
        host sync); NaN/Inf raise at iteration 1, at those checks and at the end."""
        n, dev = x_full.shape[0], x_full.device
        delta_full = torch.zeros_like(x_full)
        steps = torch.zeros(n, dtype=torch.long, device=dev)
        nonfinite = torch.zeros(n, dtype=torch.long, device=dev)
        rows = torch.arange(n, device=dev)  # chunk rows still being optimised
        x, delta, obj = x_full, torch.zeros_like(x_full), objective
        active = torch.ones(n, 1, 1, 1, dtype=torch.bool, device=dev)
        initial, done, stopped = None, 0, False
        last_loss = None if callback is None else torch.full((n,), float("nan"), device=dev)

        def check(it: int) -> None:
            _raise_if_nonfinite(
                nonfinite > 0, "loss or input gradient", offset, f" by iteration {it}"
            )

        for it in range(iterations):
            d = delta.detach().requires_grad_(True)
            loss = loss_of(obj, x + scale * d)
            (grad,) = torch.autograd.grad(loss.sum(), d)
            with torch.no_grad():
                loss = loss.detach()
                if eps is not None:  # stopped samples stay frozen
                    active = active & (loss >= eps).view(-1, 1, 1, 1)
                delta, gmax = update(delta, grad, cfg.step_size, None if eps is None else active)
                if initial is None:
                    initial = loss.clone()
                steps.index_add_(0, rows, active.view(-1).long())
                bad = ~(torch.isfinite(loss) & torch.isfinite(gmax))
                nonfinite.index_add_(0, rows, bad.long())
                if last_loss is not None and (it + 1) % callback_every == 0:
                    last_loss[rows] = loss
            done = it + 1
            bar.update(1)
            if it == 0:
                check(1)  # one sync: a NaN model fails at once
            if eps is not None and done % cfg.early_stop_check_every == 0:
                check(done)
                n_active = int(active.sum())  # the one host sync early stopping needs
                if n_active < rows.numel():
                    delta_full[rows] = delta
                    if last_loss is not None:  # the dropped samples' last loss
                        last_loss[rows] = loss
                    keep = active.view(-1).nonzero().squeeze(1)
                    rows, x, delta, active = rows[keep], x[keep], delta[keep], active[keep]
                    obj = obj.subset(keep)
                if n_active == 0:
                    break
            if callback is not None and done % callback_every == 0:
                with torch.no_grad():
                    delta_full[rows] = delta
                if whole_batch(delta_full, done, last_loss):
                    stopped = True
                    break
        bar.update(iterations - done)
        check(done)
        with torch.no_grad():
            delta_full[rows] = delta.detach()
            final = loss_of(objective, x_full + scale * delta_full, eager=True).detach()
        _raise_if_nonfinite(~torch.isfinite(final), "final loss", offset)
        parts.append((delta_full, steps, final if initial is None else initial, final))
        return stopped

    with (
        frozen_eval(model),
        channels_last(model, cfg.channels_last),
        deterministic(cfg.deterministic, device),
    ):
        x_all, bound = objective.expand(model, images.to(device))
        if cfg.channels_last:
            x_all = x_all.contiguous(memory_format=torch.channels_last)
        n = x_all.shape[0]
        chunk = 1 if cfg.deterministic else (cfg.batch_size or n)
        norm = getattr(model, "input_normalization", None)
        std = 1.0 if norm is None or cfg.step_space == "pixel" else norm[1]
        scale = torch.as_tensor(std, device=device, dtype=x_all.dtype)  # pixels: x + scale·δ
        scale = scale.reshape(-1).expand(3).reshape(1, 3, 1, 1)
        total = cfg.iterations * math.ceil(n / chunk)
        with tqdm(
            total=total, desc="FAME", unit="it", disable=not cfg.progress, leave=False
        ) as bar:
            stopped = False
            for lo in range(0, n, chunk):  # after a stop: 0 steps
                part = bound.subset(slice(lo, lo + chunk))
                stopped = descend_chunk(
                    x_all[lo : lo + chunk], part, lo, 0 if stopped else cfg.iterations
                )
    moved, steps, initial, final = (torch.cat(p) for p in zip(*parts))
    delta = _gray_abs(moved, cfg.gray_order)  # per pixel: the same whatever the chunks
    out = (t.to(images.device) for t in (delta, steps, initial, final))
    return FameResult(*out, cfg)


def fame(
    model: nn.Module,
    images: Tensor,
    objective: Objective,
    config: FameConfig | None = None,
    **overrides,
) -> Tensor:
    """FAME maps (Eq. 3-4), ``run_fame(...).maps()``: (N, H, W) in [0, 1] on ``images``'
    device (N = B unless the objective expands the batch, e.g. B·K for K feature cells)."""
    return run_fame(model, images, objective, config, **overrides).maps()
