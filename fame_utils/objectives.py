"""Objectives L that FAME descends (paper Sec. 2-3), layer capture and :class:`Attribution`;
:class:`ClassLogit` and :class:`CosineSimilarity` are also every method's targets."""

from __future__ import annotations

import contextlib
import copy
import math
import numbers
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import (
    as_index_tensor,
    check_class_indices,
    check_model_input,
    check_model_output,
    check_threshold,
    model_device,
)


class _StopForward(Exception):
    pass


def capture_output(model: nn.Module, layer: nn.Module | str, *args: Any, **kwargs: Any) -> Any:
    """``layer``'s output during ``model(*args, **kwargs)``; nothing deeper runs."""
    module = resolve_layer(model, layer)
    store: list[Any] = []

    def hook(_module: nn.Module, _inputs: Any, out: Any) -> None:
        store.append(out)
        raise _StopForward

    handle = module.register_forward_hook(hook)
    try:
        with contextlib.suppress(_StopForward):
            model(*args, **kwargs)
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


def resolve_layer(model: nn.Module, layer: nn.Module | str | None) -> nn.Module:
    """A submodule given as a module or a dotted name; ``None``: :func:`default_target_layer`."""
    if isinstance(layer, nn.Module):
        return layer
    try:
        found = default_target_layer(model) if layer is None else model.get_submodule(layer)
    except AttributeError:
        found = None
    if found is None:
        what = (
            f"no default CAM target layer for {type(model).__name__}: pass target_layer=<module "
            "or dotted name> to the method (e.g. make_methods(['gradcam'], task, target_layer="
            "'layer4')) or to fame_utils.wrap(net, mean, std, target_layer=...)"
            if layer is None
            else f"model has no submodule {layer!r}"
        )
        raise ValueError(f"{what}; top-level children: {[n for n, _ in model.named_children()]}")
    return found


class Attribution(NamedTuple):
    """What every method returns: ``positive`` (B, H, W) in [0, 1] (class evidence or e₊)
    and ``negative`` (e₋, or ``None``), on the images' device."""

    positive: Tensor
    negative: Tensor | None = None


class Objective:
    """Base class: ``objective(model, inputs) -> (N,)`` losses to descend; ``row_fields``
    name the attributes holding one tensor row per sample."""

    row_fields: tuple[str, ...] = ()

    def expand(self, model: nn.Module, images: Tensor) -> tuple[Tensor, Objective]:
        """The optimisation batch (N, 3, H, W) and an objective bound to it (default N = B)."""
        return images, self

    def subset(self, index: slice | Tensor) -> Objective:
        """A copy for rows ``index`` of the batch: each ``row_fields`` tensor indexed."""
        bound = copy.copy(self)
        for name in self.row_fields:
            if isinstance(getattr(self, name), Tensor):
                setattr(bound, name, getattr(self, name)[index])
        return bound


class ClassLogit(Objective):
    """L_cls = z_o, the raw logit of class o (Sec. 3; |z_o| with ``absolute_logit``);
    ``targets``: (B,) class indices or one int for every image."""

    row_fields = ("targets",)

    def __init__(self, targets: int | Sequence[int] | Tensor):
        try:
            t = torch.as_tensor(targets if isinstance(targets, Tensor) else np.asarray(targets))
        except (TypeError, ValueError, RuntimeError):
            t = None
        if t is None or t.dtype == torch.bool or t.is_floating_point() or t.is_complex():
            raise TypeError(
                f"targets must be class indices (whole numbers), got {targets!r}; map class "
                "names to indices first (e.g. with the model's category list)"
            )
        self.targets = (
            int(targets) if isinstance(targets, numbers.Integral) else t.reshape(-1).long()
        )
        self._checked = False

    def indices(self, batch: int) -> Tensor:
        """(batch,) long class indices >= 0, checked against the batch size."""
        t = as_index_tensor(self.targets, batch, "ClassLogit targets")
        return check_class_indices(t, None, "ClassLogit targets")

    def expand(self, model: nn.Module, images: Tensor) -> tuple[Tensor, Objective]:
        t = self.indices(images.shape[0]).to(images.device)
        return images, ClassLogit(t)

    def __call__(self, model: nn.Module, inputs: Tensor) -> Tensor:
        logits = check_model_output(model(inputs))
        if logits.ndim != 2:
            raise ValueError(f"ClassLogit expects (N, classes) logits, got {tuple(logits.shape)}")
        t = as_index_tensor(self.targets, inputs.shape[0], "targets").to(logits.device)
        if not self._checked:  # one host sync, on the first call only
            check_class_indices(t, logits.shape[1], "ClassLogit targets")
            self._checked = True
        return logits.gather(1, t[:, None]).squeeze(1)


class FeatureCell(Objective):
    """L_a = ‖a[k]‖₁ at cell k of ``layer``'s output (N, C, h, w) (Sec. 3, Fig. 2);
    ``cells`` (row, col) pairs (``None``: all); B·K samples, image-major."""

    row_fields = ("per_sample",)

    def __init__(
        self, layer: nn.Module | str, cells: Sequence[tuple[int, int]] | Tensor | None = None
    ):
        self.layer = layer
        self.cells = None if cells is None else torch.as_tensor(cells, dtype=torch.long).view(-1, 2)
        self.per_sample: Tensor | None = None  # each row's cell, after expand()

    def _grid(self, out: object) -> Tensor:
        if not isinstance(out, Tensor) or out.ndim != 4:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            tokens = isinstance(out, Tensor) and out.ndim == 3
            hint = "; for a transformer's (N, T, C) tokens use TokenCell" if tokens else ""
            raise ValueError(f"FeatureCell needs a (N, C, h, w) activation, got {got}{hint}")
        return out

    def grid_shape(self, model: nn.Module, image_size: tuple[int, int]) -> tuple[int, int]:
        """The layer's (h, w) for inputs of ``image_size`` (one no-grad forward pass)."""
        x = torch.zeros(1, 3, *image_size, device=model_device(model))
        with torch.no_grad():
            h, w = self._grid(capture_output(model, self.layer, x)).shape[-2:]
        return int(h), int(w)

    def expand(self, model: nn.Module, images: Tensor) -> tuple[Tensor, Objective]:
        h, w = self.grid_shape(model, tuple(images.shape[-2:]))
        cells = self.cells
        if cells is None:
            rr, cc = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            cells = torch.stack([rr.reshape(-1), cc.reshape(-1)], 1)
        bad = (cells[:, 0] < 0) | (cells[:, 0] >= h) | (cells[:, 1] < 0) | (cells[:, 1] >= w)
        if bool(bad.any()):
            raise ValueError(f"cells {cells[bad].tolist()} lie outside the layer's {h}x{w} grid")
        bound = copy.copy(self)  # keeps a subclass's settings
        bound.per_sample = cells.repeat(images.shape[0], 1).to(images.device)
        return images.repeat_interleave(cells.shape[0], dim=0), bound

    def __call__(self, model: nn.Module, inputs: Tensor) -> Tensor:
        if self.per_sample is None:
            raise RuntimeError(f"{type(self).__name__} must be expanded first (fame() does this)")
        a = self._grid(capture_output(model, self.layer, inputs))
        rows = self.per_sample.to(a.device)
        n = torch.arange(a.shape[0], device=a.device)
        return a[n, :, rows[:, 0], rows[:, 1]].abs().sum(1)


class TokenCell(FeatureCell):
    """The ViT :class:`FeatureCell` on a block's (N, T, C) tokens: cell (row, col) is token
    ``prefix_tokens`` + row·w + col (prefix >= 1: the class token; 2 for DeiT) of the (h, w)
    ``grid`` (default: square); ``class_token``: that token, as cell (0, 0) of a 1 × 1 grid.
    """

    def __init__(
        self,
        layer: nn.Module | str,
        cells: Sequence[tuple[int, int]] | Tensor | None = None,
        *,
        grid: Sequence[int] | None = None,
        prefix_tokens: int = 1,
        class_token: bool = False,
    ):
        super().__init__(layer, cells)
        if prefix_tokens < 1:
            raise ValueError(f"prefix_tokens must be >= 1 (the class token), got {prefix_tokens}")
        self.prefix_tokens = int(prefix_tokens)
        self.patch_grid = None if grid is None else (int(grid[0]), int(grid[1]))
        self.class_token = bool(class_token)

    def _grid(self, out: object) -> Tensor:
        if not isinstance(out, Tensor) or out.ndim != 3:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"TokenCell needs a (N, T, C) token output, got {got}")
        if self.class_token:
            return out[:, :1].transpose(1, 2).unsqueeze(-1)
        return vit_reshape_transform(out, self.patch_grid, self.prefix_tokens)


def vit_reshape_transform(
    tokens: Tensor, grid: tuple[int, int] | None = None, prefix_tokens: int = 1
) -> Tensor:
    """ViT tokens (B, p + h·w, C), p = ``prefix_tokens``, → (B, C, h, w), token p + r·w + c
    at (r, c); ``grid`` defaults to a square. The CAMs' ``reshape_transform``."""
    if tokens.ndim != 3:
        raise ValueError(f"expected ViT tokens (B, 1 + h*w, C), got shape {tuple(tokens.shape)}")
    patches = tokens.shape[1] - prefix_tokens
    h, w = grid or (math.isqrt(max(patches, 0)),) * 2
    if patches < 1 or h * w != patches:
        raise ValueError(
            f"{tokens.shape[1]} tokens are not {prefix_tokens} prefix token(s) plus a {h}x{w} "
            "patch grid; pass the model's token_grid (TokenCell: grid=(h, w), prefix_tokens=)"
        )
    return (
        tokens[:, prefix_tokens:]
        .reshape(tokens.shape[0], h, w, tokens.shape[2])
        .permute(0, 3, 1, 2)
    )


def cell_objective(
    model: nn.Module,
    layer: nn.Module | str,
    cells: Sequence[tuple[int, int]] | Tensor | None = None,
    *,
    image_size: tuple[int, int] = (224, 224),
    **token_options: object,
) -> FeatureCell:
    """:class:`FeatureCell`, or :class:`TokenCell` (with ``token_options``; ``None``: the
    default) where ``layer`` gives (N, T, C) tokens on a zero image of ``image_size``."""
    x = torch.zeros(1, 3, *image_size, device=model_device(model))
    with torch.no_grad():
        out = capture_output(model, layer, x)
    given = {k: v for k, v in token_options.items() if v is not None}
    if isinstance(out, Tensor) and out.ndim == 3:
        return TokenCell(layer, cells, **given)
    if any(v is not False for v in given.values()):
        raise ValueError(
            f"{sorted(token_options)} apply to transformer token layers only; {layer!r} gives "
            f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}"
        )
    return FeatureCell(layer, cells)


class CosineSimilarity(Objective):
    """L₊ = s = cos(φ(x̄), φ_ref), the e₊ objective (Fig. 3); ``references`` (B, D)
    partner embeddings, ``threshold`` θ on s (used by FGGB)."""

    row_fields = ("references",)

    def __init__(self, references: Tensor, threshold: float | None = None):
        if not isinstance(references, Tensor) or references.ndim != 2:
            got = getattr(references, "shape", type(references).__name__)
            raise ValueError(f"references must be a (B, D) tensor of partner embeddings, got {got}")
        self.references = references.detach()
        self.threshold = None if threshold is None else check_threshold(threshold, "threshold θ")

    def check(self, batch: int) -> Tensor:
        """The (batch, D) references, checked against the batch size."""
        if self.references.shape[0] != batch:
            raise ValueError(
                f"{type(self).__name__} got {self.references.shape[0]} reference embeddings "
                f"for {batch} images; pass one partner embedding per image"
            )
        return self.references

    def expand(self, model: nn.Module, images: Tensor) -> tuple[Tensor, Objective]:
        refs = self.check(images.shape[0])
        return images, type(self)(refs.to(images.device), self.threshold)

    def __call__(self, model: nn.Module, inputs: Tensor) -> Tensor:
        emb = check_model_output(model(inputs))
        if emb.shape[-1] != self.references.shape[-1]:
            raise ValueError(
                f"embedding size {emb.shape[-1]} differs from the references' "
                f"{self.references.shape[-1]}"
            )
        return F.cosine_similarity(emb, self.references.to(emb.device), dim=1)


class Dissimilarity(CosineSimilarity):
    """L₋ = 1 − s, the e₋ objective (a FAME objective, not a method's target)."""

    def __call__(self, model: nn.Module, inputs: Tensor) -> Tensor:
        return 1.0 - super().__call__(model, inputs)


TARGET_HINTS = {
    ClassLogit: "fame_utils.ClassLogit(classes)",
    CosineSimilarity: "fame_utils.CosineSimilarity(references, threshold)",
}


def method_inputs(
    model: nn.Module, images: Tensor, target: object, types: tuple[type, ...] = tuple(TARGET_HINTS)
) -> tuple[Tensor, Tensor]:
    """A method's checked images and per-image targets ((B,) classes or (B, D) references)
    on the model's device; ``TypeError`` for a target not of ``types`` (or a Dissimilarity)."""
    check_model_input(images, model)
    if not isinstance(target, types) or isinstance(target, Dissimilarity):
        wanted = " or ".join(TARGET_HINTS[t] for t in types)
        raise TypeError(f"target must be {wanted}, got {type(target).__name__}")
    b, device = images.shape[0], model_device(model)
    per_image = target.indices(b) if isinstance(target, ClassLogit) else target.check(b)
    return images.detach().to(device), per_image.to(device)
