"""Input validation shared by every public entry point.

Every function that takes images checks them here, so a wrong shape, range or dtype
fails early with a message that says what to do instead of deep inside a model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["check_images", "check_maps", "as_index_tensor", "model_device"]


def check_images(images: object, name: str = "images", *, check_range: bool = True) -> Tensor:
    """Validate a batch of RGB images and return it unchanged.

    Args:
        images: float tensor (B, 3, H, W) with values in [0, 1], RGB, any device.
        name: how the argument is called in error messages.
        check_range: also require values in [0, 1] (disable for inputs that are
            deliberately outside, e.g. an adversarial iterate).

    Raises:
        TypeError: not a tensor, or not a floating-point tensor.
        ValueError: wrong rank or channel count, empty batch, NaN/inf, values outside [0, 1].
    """
    if not isinstance(images, Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor of shape (B, 3, H, W), got {type(images).__name__}; "
            "convert with torchvision.transforms.functional.to_tensor or fame_utils.data.load_image"
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
    if not bool(torch.isfinite(images).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    if check_range:
        lo, hi = float(images.min()), float(images.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"{name} must hold values in [0, 1], got range [{lo:.4g}, {hi:.4g}]; "
                "pass un-normalised RGB images (the models normalise internally); "
                "0-255 images: divide by 255"
            )
    return images


def check_maps(maps: object, name: str = "maps", *, finite: bool = True) -> Tensor:
    """Validate a batch of attribution maps and return it unchanged.

    Args:
        maps: float tensor (B, H, W), any device (the value range is not checked: the
            receptive-field measures take unnormalised Δx, the metrics normalised maps).
        name: how the argument is called in error messages.
        finite: also reject NaN/inf (one device sync). The receptive-field measures switch
            it off: they return NaN for all-zero maps and accept what they return.

    Raises:
        ValueError: not a tensor, wrong rank, or (``finite``) NaN/inf values.
        TypeError: not a floating-point tensor.
    """
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
    """Turn class indices into a long tensor of shape (batch,), checking the count.

    A single int is broadcast to the whole batch; a sequence or tensor must have
    exactly ``batch`` entries.
    """
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
    """The device of a model's first parameter or buffer (CPU for a parameter-free model)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")
