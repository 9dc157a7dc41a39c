"""Input validation for the public entry points: messages that say what to do."""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import Tensor


def check_images(images: object, name: str = "images") -> Tensor:
    """``images`` if a float (B, 3, H, W) RGB batch in [0, 1]; else TypeError/ValueError."""
    if not isinstance(images, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape (B, 3, H, W), got {type(images).__name__}; "
            "convert with torchvision.transforms.functional.to_tensor or fame_utils.data.transforms.load_image"
        )
    if not images.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor with values in [0, 1], got dtype {images.dtype}; "
            "for uint8 images divide by 255: images.float() / 255"
        )
    if images.ndim != 4:
        hint = " (add a batch dimension with images.unsqueeze(0))" if images.ndim == 3 else ""
        raise ValueError(f"{name} must have shape (B, 3, H, W), got {tuple(images.shape)}{hint}")
    if images.shape[1] != 3:
        raise ValueError(
            f"{name} must have 3 RGB channels in dimension 1, got shape {tuple(images.shape)}; "
            "gray images: images.expand(-1, 3, -1, -1); channels-last: images.permute(0, 3, 1, 2)"
        )
    if images.shape[0] == 0 or images.shape[2] == 0 or images.shape[3] == 0:
        raise ValueError(f"{name} is empty: shape {tuple(images.shape)}")
    if images.device.type == "meta":
        raise ValueError(
            f"{name} is on the 'meta' device and holds no values; "
            "create it on a real device (e.g. torch.rand(..., device='cpu'))"
        )
    if not bool(torch.isfinite(images).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    lo, hi = float(images.min()), float(images.max())
    if lo < 0.0 or hi > 1.0:  # enough digits that 1.0001 does not print as 1
        raise ValueError(
            f"{name} must hold values in [0, 1], got range [{lo:.9g}, {hi:.9g}]; "
            "pass un-normalised RGB images (the models normalise internally); "
            "0-255 images: divide by 255"
        )
    return images


def check_maps(maps: object, name: str = "maps", *, finite: bool = True) -> Tensor:
    """``maps`` if a float (B, H, W) tensor (``finite``: no NaN/inf)."""
    if not isinstance(maps, Tensor) or maps.ndim != 3:
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        two_d = isinstance(maps, Tensor) and maps.ndim == 2
        hint = f" (add a batch dimension with {name}.unsqueeze(0))" if two_d else ""
        raise ValueError(f"{name} must be a float (B, H, W) tensor, got {shape}{hint}")
    if not maps.is_floating_point():
        raise TypeError(
            f"{name} must be a floating-point tensor, got {maps.dtype}; convert with .float()"
        )
    if finite and not bool(torch.isfinite(maps).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return maps


def as_index_tensor(values: int | Sequence[int] | Tensor, batch: int, name: str) -> Tensor:
    """Class indices as a (batch,) long tensor (an int is broadcast)."""
    if isinstance(values, int):
        return torch.full((batch,), values, dtype=torch.long)
    t = torch.as_tensor(values)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"{name} must be integer class indices, got dtype {t.dtype}")
    t = t.reshape(-1).long()
    if t.numel() != batch:
        raise ValueError(
            f"{name} has {t.numel()} entries but the batch has {batch} images; "
            "pass one target per image (or a single int for all)"
        )
    return t


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a model's first parameter or buffer (else CPU)."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return torch.device("cpu")


def check_model_input(images: object, model: torch.nn.Module, name: str = "images") -> Tensor:
    """:func:`check_images` plus the model's dtype (its first float tensor; else float32)."""
    check_images(images, name)
    floats = (t.dtype for t in (*model.parameters(), *model.buffers()) if t.is_floating_point())
    want = next(floats, torch.float32)
    if images.dtype != want:
        raise TypeError(
            f"{name} have dtype {images.dtype} but the model computes in {want}; "
            f"convert them with {name}.to({want}) (models of this package use torch.float32)"
        )
    return images


def check_class_indices(indices: Tensor, num_classes: int | None, name: str = "classes") -> Tensor:
    """``indices`` if in [0, num_classes − 1] (>= 0 for ``None``); one host sync."""
    bad = indices[(indices < 0) | (indices >= (math.inf if num_classes is None else num_classes))]
    if bad.numel():
        top = "number of classes − 1" if num_classes is None else str(num_classes - 1)
        raise ValueError(
            f"{name} must be class indices in [0, {top}], got {sorted(set(bad.tolist()))[:10]}; "
            "negative indices are not allowed (they do not count from the end)"
        )
    return indices


def check_threshold(value: object, name: str = "threshold") -> float:
    """A threshold θ on a cosine similarity as a float in [−1, 1]."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    return check_number(v, f"{name} (a threshold on the cosine similarity)", -1.0, 1.0)


def check_unit_interval(values: Tensor, name: str) -> Tensor:
    """``values`` if finite and in [0, 1]."""
    if values.numel() == 0:
        return values
    lo, hi = float(values.min()), float(values.max())
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name} must lie in [0, 1], got range [{lo:.9g}, {hi:.9g}]")
    return values


def check_count(value: object, name: str, minimum: int = 0) -> int:
    """A whole number >= ``minimum`` (numpy integers accepted, bools refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    return int(value)


def check_number(value: object, name: str, lo: float = -math.inf, hi: float = math.inf) -> float:
    """A finite real number in [``lo``, ``hi``] (bools, strings, NaN and ±inf refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v) or not lo <= v <= hi:
        raise ValueError(f"{name} must be a finite number in [{lo:g}, {hi:g}], got {value!r}")
    return v


def check_model_output(output: object, name: str = "the model") -> Tensor:
    """The model's output if one tensor (logits or embeddings), not a tuple or dict."""
    if isinstance(output, Tensor):
        return output
    keys = f" with keys {list(output)}" if isinstance(output, dict) else ""
    raise TypeError(
        f"{name} returned a {type(output).__name__}{keys}, expected one tensor of logits "
        "(N, classes) or embeddings (N, D); wrap the network in an nn.Module whose forward "
        "returns only that tensor (e.g. output[0] or output['logits'])"
    )


def check_finite_output(values: Tensor, what: str) -> Tensor:
    """``values`` (B, ...) from a model's output, if finite (else naming the images)."""
    bad = ~torch.isfinite(values.detach().reshape(values.shape[0], -1)).all(1)
    if bool(bad.any()):
        raise ValueError(
            f"{what} hold NaN or Inf for images {bad.nonzero().flatten().tolist()}: the "
            "model's output is not finite on them (check its weights and the images)"
        )
    return values


@contextmanager
def frozen_eval(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """Every module in eval mode and every parameter's ``requires_grad`` off for the
    block, both restored after."""
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        model.eval()
        for p, _ in flags:
            p.requires_grad_(False)
        yield model
    finally:
        for m, mode in modes:
            m.training = mode
        for p, flag in flags:
            p.requires_grad_(flag)
