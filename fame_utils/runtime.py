"""How a FAME run executes, not what it computes: :class:`FameConfig`'s ``precision``,
``channels_last``, ``compile`` and ``deterministic`` (``docs/performance.md`` measures them).
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from .core import FameConfig
    from .objectives import Objective

__all__ = ["AUTOCAST_DTYPES", "Step", "channels_last", "deterministic", "is_compile_error"]

#: The autocast dtypes of ``FameConfig.precision`` besides float32.
AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@contextlib.contextmanager
def deterministic(enabled: bool, device: torch.device) -> Iterator[None]:
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
def channels_last(model: nn.Module, enabled: bool) -> Iterator[None]:
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


class Step:
    """The per-iteration functions of one run: the objective's forward (under autocast
    when asked) and ``update`` (FAME's step), optionally compiled with :func:`torch.compile`.

    A compiled function that fails on its first call (no compiler, unsupported model) is
    replaced by the eager one with a warning, once per run.
    """

    def __init__(
        self,
        model: nn.Module,
        cfg: FameConfig,
        device: torch.device,
        update: Callable | None = None,
    ):
        self.model: Callable = model
        self.update: Callable | None = update
        self._eager_update = update
        self._compiled = cfg.compile
        if cfg.compile:
            self.model = torch.compile(model)
            self.update = None if update is None else torch.compile(update)
        if cfg.precision == "float32":
            self._autocast: Callable = contextlib.nullcontext
        else:
            dtype = AUTOCAST_DTYPES[cfg.precision]
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
        self.model, self.update, self._compiled = self._eager_model, self._eager_update, False

    def first(self, fn: Callable, *args):
        """Call ``fn(*args)``; if torch.compile fails in it, fall back and retry eagerly."""
        if not self._compiled:
            return fn(*args)
        try:
            return fn(*args)
        except Exception as err:
            if not is_compile_error(err):
                raise
            self._fallback(err)
            return fn(*args)


def is_compile_error(err: Exception) -> bool:
    """An error raised by torch.compile's machinery (Dynamo, Inductor, the C++ compiler)
    rather than by the model or the objective."""
    module = type(err).__module__
    return module.startswith(("torch._dynamo", "torch._inductor")) or isinstance(
        err, torch._dynamo.exc.TorchDynamoException
    )
