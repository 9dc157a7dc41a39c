"""How a FAME run executes, not what it computes: :class:`~fame_utils.core.FameConfig`'s
``precision``, ``channels_last``, ``compile`` and ``deterministic`` (measured in
``docs/performance.md``)."""

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

__all__ = ["AUTOCAST_DTYPES", "Step", "channels_last", "deterministic"]

#: The autocast dtypes of ``FameConfig.precision`` besides float32.
AUTOCAST_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16}


@contextlib.contextmanager
def deterministic(enabled: bool, device: torch.device) -> Iterator[None]:
    """One CPU thread, or deterministic cuDNN, for the block; the previous state after."""
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
    """The model's 4-D parameters and buffers in channels_last memory format for the
    block; those that were contiguous before are made contiguous again after."""
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
    for ``cfg.precision``) and ``update``, both :func:`torch.compile`-d for ``cfg.compile``;
    :meth:`first` falls back to eager, with a warning, where compilation fails."""

    def __init__(self, model: nn.Module, cfg: FameConfig, device: torch.device, update=None):
        self.eager = (model, update)
        self.compiled = cfg.compile
        self.model, self.update = self.eager
        if cfg.compile:
            self.model = torch.compile(model)
            self.update = None if update is None else torch.compile(update)
        dtype = AUTOCAST_DTYPES.get(cfg.precision)
        self.autocast = lambda: (
            contextlib.nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)
        )

    def loss(self, objective: Objective, inputs: Tensor, *, eager: bool = False) -> Tensor:
        """(N,) float32 losses of float32 ``inputs``; ``eager`` skips the compiled model
        (for the one no-grad pass at the end, which would compile anew)."""
        with self.autocast():
            return objective(self.eager[0] if eager else self.model, inputs).float()

    def first(self, fn: Callable[[], object]):
        """``fn()``; if torch.compile fails in it, continue eagerly and call it again."""
        try:
            return fn()
        except Exception as err:
            module = type(err).__module__
            compile_error = module.startswith(("torch._dynamo", "torch._inductor")) or isinstance(
                err, torch._dynamo.exc.TorchDynamoException
            )
            if not (self.compiled and compile_error):
                raise
            warnings.warn(
                f"torch.compile failed ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
                "FAME continues eagerly (compile=False gives the same maps without trying)",
                stacklevel=4,
            )
            self.model, self.update = self.eager
            self.compiled = False
            return fn()
