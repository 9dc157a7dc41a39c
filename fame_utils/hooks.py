"""Reaching inside a network: find a layer and capture its output (paper Sec. 3's L_a,
the receptive-field tracer, the CAM baselines), stopping the forward pass there."""

from __future__ import annotations

from typing import Any

from torch import nn

__all__ = ["resolve_layer", "capture_output", "default_target_layer", "target_layer_of"]


class _StopForward(Exception):
    """Raised by :func:`capture_output`'s hook once the layer has run."""


def resolve_layer(model: nn.Module, layer: nn.Module | str) -> nn.Module:
    """A submodule given as a module or a dotted name (``"layer4"``, ``"blocks.5"``).

    Raises:
        ValueError: no submodule of that name (the message lists the top-level children).
    """
    if isinstance(layer, nn.Module):
        return layer
    try:
        return model.get_submodule(layer)
    except AttributeError as e:
        names = [n for n, _ in model.named_children()]
        raise ValueError(f"model has no submodule {layer!r}; top-level children: {names}") from e


def capture_output(model: nn.Module, layer: nn.Module | str, *args: Any, **kwargs: Any) -> Any:
    """``layer``'s output during ``model(*args, **kwargs)``, as the layer gave it (e.g.
    (N, C, h, w) for a CNN stage, (N, T, C) tokens for a transformer block); nothing deeper
    runs. Autograd and ``torch.no_grad`` apply as usual.

    Raises:
        RuntimeError: ``layer`` did not run in the model's forward pass.
    """
    module = resolve_layer(model, layer)
    store: list[Any] = []

    def hook(_module: nn.Module, _inputs: Any, out: Any) -> None:
        store.append(out)
        raise _StopForward

    handle = module.register_forward_hook(hook)
    try:
        model(*args, **kwargs)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not store:
        raise RuntimeError(f"layer {layer!r} did not run in the model's forward pass")
    return store[0]


def default_target_layer(model: nn.Module) -> nn.Module | None:
    """The CAM layer of a common torchvision architecture, or ``None``: the model's own
    ``target_layer`` (loaders and :func:`fame_utils.wrap` set one), else ResNet
    ``layer4[-1]``; VGG, DenseNet, ConvNeXt, MobileNet, EfficientNet ``features[-1]``;
    RegNet ``trunk_output[-1]``; a ViT's last encoder block's ``ln_1``."""
    found = getattr(model, "target_layer", None)
    if isinstance(found, nn.Module):
        return found
    net = getattr(model, "net", model)
    for name in ("layer4", "features", "trunk_output"):
        block = getattr(net, name, None)
        if isinstance(block, nn.Sequential) and len(block) > 0:
            return block[-1]
    layers = getattr(getattr(net, "encoder", None), "layers", None)
    if isinstance(layers, nn.Sequential) and len(layers) > 0 and hasattr(layers[-1], "ln_1"):
        return layers[-1].ln_1
    return None


def target_layer_of(model: nn.Module, layer: nn.Module | str | None) -> nn.Module:
    """``layer`` as a module (a module or a dotted name), or for ``None`` the
    :func:`default_target_layer`.

    Raises:
        ValueError: ``None`` and no default is known; the message says which argument to pass.
    """
    if layer is not None:
        return resolve_layer(model, layer)
    found = default_target_layer(model)
    if found is None:
        names = [n for n, _ in model.named_children()]
        raise ValueError(
            f"no default CAM target layer for {type(model).__name__}: pass "
            "target_layer=<module or dotted name> to the method (e.g. "
            "make_methods(['gradcam'], task, target_layer='layer4')) or to "
            f"fame_utils.wrap(net, mean, std, target_layer=...); top-level children: {names}"
        )
    return found
