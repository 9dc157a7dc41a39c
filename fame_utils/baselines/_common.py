"""Small helpers shared by the baseline methods (not public API)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..explain import ClassTarget, SimilarityTarget
from ..hooks import resolve_layer
from ..postprocess import normalize_maps

__all__ = [
    "check_target",
    "target_layer_of",
    "l2_normalize",
    "max_normalize",
]


def check_target(target: object) -> ClassTarget | SimilarityTarget:
    """Raise a clear ``TypeError`` unless ``target`` is one of the two shared targets."""
    if not isinstance(target, (ClassTarget, SimilarityTarget)):
        raise TypeError(
            f"target must be ClassTarget or SimilarityTarget, got {type(target).__name__}"
        )
    return target


def target_layer_of(model: nn.Module, layer: nn.Module | str | None) -> nn.Module:
    """``layer`` as a module: ``None`` means ``model.target_layer`` (the wrapper contract),
    a string is a dotted submodule name (``"layer4"``)."""
    if layer is None:
        found = getattr(model, "target_layer", None)
        if not isinstance(found, nn.Module):
            raise ValueError(
                "the model has no `target_layer` attribute (an nn.Module); pass "
                "target_layer=<module or dotted name> to the method"
            )
        return found
    return resolve_layer(model, layer)


def l2_normalize(x: Tensor, dim: int = -1, eps: float = 1e-12) -> Tensor:
    """``x / max(‖x‖₂, eps)`` along ``dim`` (same as ``torch.nn.functional.normalize``)."""
    return x / torch.linalg.vector_norm(x, dim=dim, keepdim=True).clamp_min(eps)


def max_normalize(maps: Tensor) -> Tensor:
    """Divide each (H, W) map of a (B, H, W) batch by its maximum; maps whose maximum is
    <= 0 become all zero (the paper's max normalisation, FAME's default; the same as
    :func:`fame_utils.postprocess.normalize_maps` with ``"max"``)."""
    return normalize_maps(maps, "max")[0]
