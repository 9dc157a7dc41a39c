"""Reaching inside a network: find a layer, capture its output and stop the forward pass.

Feature-cell objectives (paper Sec. 3, L_a), the receptive-field tracer and the CAM
baselines all need the output ``a`` of one inner layer. Everything after that layer is
wasted work, so :func:`capture_output` aborts the forward pass as soon as the layer has
run (its hook raises :class:`StopForward`, which is caught here).
"""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["StopForward", "resolve_layer", "capture_output"]


class StopForward(Exception):
    """Raised by :func:`capture_output`'s hook once the layer of interest has run."""


def resolve_layer(model: nn.Module, layer: nn.Module | str) -> nn.Module:
    """A submodule given as a module or a dotted name (``"layer4"``, ``"blocks.5"``).

    Raises:
        ValueError: ``model`` has no submodule of that name (the message lists the
            top-level children to pick from).
    """
    if isinstance(layer, nn.Module):
        return layer
    try:
        return model.get_submodule(layer)
    except AttributeError as e:
        names = [n for n, _ in model.named_children()]
        raise ValueError(f"model has no submodule {layer!r}; top-level children: {names}") from e


def capture_output(model: nn.Module, layer: nn.Module | str, *args: Any, **kwargs: Any) -> Any:
    """Run ``model(*args, **kwargs)`` until ``layer`` has produced its output; return it.

    The forward pass stops right after ``layer`` (nothing deeper runs), so the call costs
    only the layers up to it. Autograd, ``torch.no_grad`` and any ``TorchFunctionMode``
    active around the call apply as usual; the output is returned as the layer gave it
    (for a CNN stage a (N, C, h, w) tensor on the model's device, for a transformer block
    (N, T, C) tokens).

    Raises:
        RuntimeError: ``layer`` did not run in the model's forward pass.
    """
    module = resolve_layer(model, layer)
    store: list[Any] = []

    def hook(_module: nn.Module, _inputs: Any, out: Any) -> None:
        store.append(out)
        raise StopForward

    handle = module.register_forward_hook(hook)
    try:
        model(*args, **kwargs)
    except StopForward:
        pass
    finally:
        handle.remove()
    if not store:
        raise RuntimeError(f"layer {layer!r} did not run in the model's forward pass")
    return store[0]
