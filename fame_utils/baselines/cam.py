"""CAM baselines through pytorch-grad-cam 1.5.7 (paper Table 2 and Fig. 3).

:class:`GradCAM`, :class:`GradCAMElementWise` (Grad-CAM-EW), :class:`HiResCAM` and
:class:`FullGrad` return ``Attribution(map, None)``. A ``ClassLogit`` target gives one
raw-logit target per image (Table 2); a ``CosineSimilarity`` target one cosine target per
image holding *that image's* frozen partner embedding: pytorch-grad-cam evaluates each
target on its own sample's output row and sums before one backward pass, so gradients of
different images never mix. ``face_target="cosine"`` (paper text) differentiates
s = cos(o, r) through the probe's norm, ∂s/∂o = (r̂ − s·ô)/‖o‖; ``"constant_norm"`` (the
code behind Table 1) holds ‖o‖‖r‖ constant, ∂s/∂o = r̂/‖o‖.

The CAMs read ``target_layer`` (default: the model's, see
:func:`fame_utils.hooks.default_target_layer`). FullGrad uses every ``Conv2d``/``BatchNorm2d``
bias instead, and computes its input term |∇ₓf ⊙ x| in the model's normalised space (the
paper's setting). On Vision Transformers (a ``token_grid``
attribute) the patch tokens are folded back to the (B, C, h, w) grid, class token dropped
(:func:`vit_reshape_transform`); FullGrad refuses them (pytorch-grad-cam skips LayerNorm biases).

pytorch-grad-cam clips the coarse CAM at 0, min-max scales it, resizes it bilinearly and
min-max scales again, so every map spans [0, 1] (a constant map becomes all zero); FAME's
paper recipe divides by the maximum only, which thresholded metrics see. Models run in eval
mode with their modes restored afterwards (:func:`fame_utils._checks.frozen_eval`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import pytorch_grad_cam
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import (
    check_class_indices,
    check_finite_output,
    check_model_input,
    frozen_eval,
    model_device,
)
from ..hooks import target_layer_of
from ..objectives import Attribution, ClassLogit, CosineSimilarity, check_target
from ..recipes import Recipe

__all__ = [
    "FaceCamTarget",
    "GradCAM",
    "GradCAMElementWise",
    "HiResCAM",
    "FullGrad",
    "fullgrad_uncovered_biases",
    "vit_reshape_transform",
    "token_grid_of",
]


FaceCamTarget = Literal["cosine", "constant_norm"]
"""Target of face Grad-CAM / Grad-CAM-EW: see :attr:`fame_utils.recipes.Recipe.face_cam_target`."""


def _check_face_target(face_target: str) -> None:
    if face_target not in ("cosine", "constant_norm"):
        raise ValueError(f"face_target must be 'cosine' or 'constant_norm', got {face_target!r}")


class _CosineTarget:
    """pytorch-grad-cam target: cos(output, reference) for ONE sample.

    ``reference`` is the frozen partner embedding r (D,) of that sample. pytorch-grad-cam
    calls a target on one sample's output row o (D,); a (N, D) output is also accepted
    (one similarity per row, all against the same reference).

    ``mode="cosine"`` (paper text) returns s = o·r / (‖o‖‖r‖) with the gradient flowing
    through ‖o‖: ∂s/∂o = (r̂ − s·ô)/‖o‖. ``mode="constant_norm"`` (the code behind Table 1)
    returns the same value but treats the norm product as a constant computed beforehand:
    ∂s/∂o = r/(‖o‖‖r‖) = r̂/‖o‖.
    """

    def __init__(self, reference: Tensor, mode: FaceCamTarget = "cosine"):
        if reference.ndim != 1:
            raise ValueError(f"reference must be a (D,) embedding, got {tuple(reference.shape)}")
        if mode not in ("cosine", "constant_norm"):
            raise ValueError(f"mode must be 'cosine' or 'constant_norm', got {mode!r}")
        self.reference = reference.detach()
        self.mode = mode

    def __call__(self, model_output: Tensor) -> Tensor:
        ref = self.reference.to(device=model_output.device, dtype=model_output.dtype)
        if model_output.shape[-1] != ref.shape[0]:
            raise ValueError(
                f"embedding size {model_output.shape[-1]} differs from the reference's "
                f"{ref.shape[0]}"
            )
        if self.mode == "constant_norm":
            norms = torch.linalg.vector_norm(model_output.detach(), dim=-1) * ref.norm()
            eps = torch.finfo(model_output.dtype).eps
            return (model_output * ref).sum(-1) / norms.clamp_min(eps)
        if model_output.ndim == 1:
            return F.cosine_similarity(model_output, ref, dim=0)
        return F.cosine_similarity(model_output, ref.expand_as(model_output), dim=-1)


class _ClassLogitTarget:
    """pytorch-grad-cam target: the raw logit of class ``index`` for ONE sample (what
    ``ClassifierOutputTarget`` computes), refusing an index beyond the model's outputs
    instead of failing inside pytorch-grad-cam."""

    def __init__(self, index: int):
        self.index = int(index)

    def __call__(self, model_output: Tensor) -> Tensor:
        check_class_indices(torch.tensor([self.index]), model_output.shape[-1], "ClassLogit")
        return model_output[..., self.index]


def cam_targets(
    target: ClassLogit | CosineSimilarity, batch: int, face_target: FaceCamTarget = "cosine"
) -> list:
    """One pytorch-grad-cam target object per image for the shared ``target``
    (``face_target`` chooses the :class:`_CosineTarget` mode)."""
    check_target(target)
    if isinstance(target, ClassLogit):
        classes = check_class_indices(target.indices(batch), None, "ClassLogit targets")
        return [_ClassLogitTarget(c) for c in classes.tolist()]
    refs = target.check(batch)
    return [_CosineTarget(r, face_target) for r in refs]


class _FromNormalized(nn.Module):
    """Wrap a [0, 1]-input model so it takes normalised tensors x_n = (x − mean)/std."""

    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x_n: Tensor) -> Tensor:
        return self.model(x_n * self.std + self.mean)


_FULLGRAD_TYPES = (nn.Conv2d, nn.BatchNorm2d)


def fullgrad_uncovered_biases(model: nn.Module) -> list[str]:
    """Names of modules whose bias FullGrad (pytorch-grad-cam) would silently leave out.

    pytorch-grad-cam's FullGrad collects the biases of modules whose type is exactly
    ``nn.Conv2d`` or ``nn.BatchNorm2d``. Any other module holding a non-``None`` ``bias``
    tensor with spatial extent (custom affine layers, ``BatchNorm2d`` subclasses,
    normalisation layers...) breaks FullGrad's completeness; ``nn.Linear`` biases have no
    spatial extent and are not part of the saliency map, so they are not listed.
    """
    out = []
    for name, m in model.named_modules():
        bias = getattr(m, "bias", None)
        if not isinstance(bias, Tensor) or type(m) in _FULLGRAD_TYPES:
            continue
        if isinstance(m, (nn.Linear, nn.Bilinear, nn.Conv1d)):
            continue
        out.append(f"{name or '<model>'} ({type(m).__name__})")
    return out


def vit_reshape_transform(tokens: Tensor, grid: tuple[int, int] | None = None) -> Tensor:
    """ViT tokens → patch-grid activations for pytorch-grad-cam (class token dropped).

    Args:
        tokens: (B, 1 + h·w, C): the class token at index 0, then the patch tokens in
            row-major order of the patch grid (torchvision's ``VisionTransformer``).
        grid: (h, w); ``None`` takes a square grid from the token count.

    Returns:
        (B, C, h, w): patch token 1 + r·w + c at grid cell (r, c); same device and dtype.

    Raises:
        ValueError: not a (B, T, C) tensor, or T − 1 does not fill the grid.
    """
    if tokens.ndim != 3:
        raise ValueError(f"expected ViT tokens (B, 1 + h*w, C), got shape {tuple(tokens.shape)}")
    patches = tokens.shape[1] - 1
    if grid is None:
        side = round(patches**0.5)
        grid = (side, side)
    h, w = grid
    if h * w != patches:
        raise ValueError(
            f"{tokens.shape[1]} tokens are not a class token plus a {h}x{w} patch grid; "
            "pass the model's token_grid"
        )
    return tokens[:, 1:].reshape(tokens.shape[0], h, w, tokens.shape[2]).permute(0, 3, 1, 2)


def token_grid_of(model: nn.Module) -> tuple[int, int] | None:
    """The (h, w) patch grid of a Vision Transformer wrapper (its ``token_grid``
    attribute, see :func:`fame_utils.load_classifier`); None for other models."""
    grid = getattr(model, "token_grid", None)
    return None if grid is None else (int(grid[0]), int(grid[1]))


def _reshape_transform_of(model: nn.Module):
    """pytorch-grad-cam's ``reshape_transform`` for ``model``: None for CNNs."""
    grid = token_grid_of(model)
    if grid is None:
        return None
    return lambda tokens: vit_reshape_transform(tokens, grid)


def _run_cam(
    cam_class: type,
    model: nn.Module,
    images: Tensor,
    target: ClassLogit | CosineSimilarity,
    layer: nn.Module | None,
    *,
    face_target: FaceCamTarget = "cosine",
    input_requires_grad: bool = True,
) -> Tensor:
    """Run one pytorch-grad-cam method in eval mode (the caller's modes restored after);
    (B, H, W) float32 maps on the model's device."""
    device = model_device(model)
    x = images.detach().to(device)
    targets = cam_targets(target, x.shape[0], face_target)
    if input_requires_grad:
        # with the parameters frozen, the input must require grad so that the target
        # layer's output does and pytorch-grad-cam's gradient hook fires
        x = x.clone().requires_grad_(True)
    layers = [] if layer is None else [layer]
    with frozen_eval(model):
        cam = cam_class(
            model=model, target_layers=layers, reshape_transform=_reshape_transform_of(model)
        )
        try:
            grayscale = cam(input_tensor=x, targets=targets)
        except IndexError as e:
            # e.g. a class index beyond the number of logits
            raise ValueError(
                f"{cam_class.__name__} failed while evaluating the targets ({e}); "
                "check the class indices against the model's number of outputs"
            ) from e
        finally:
            # not `with cam:` - BaseCAM.__exit__ swallows IndexError and returns None
            cam.activations_and_grads.release()
            cam.outputs = None
    return torch.from_numpy(np.ascontiguousarray(grayscale, dtype=np.float32)).to(device)


@dataclass
class _PytorchGradCam:
    """Base: a pytorch-grad-cam CAM at ``target_layer`` (default ``model.target_layer``).

    ``face_target`` (``"cosine"``, the paper's text, or ``"constant_norm"``, the reference
    code: see :class:`_CosineTarget`) is used with a ``CosineSimilarity`` target.
    """

    target_layer: nn.Module | str | None = None
    name: str = "CAM"
    face_target: FaceCamTarget = "cosine"
    cam_class: ClassVar[type]
    targets: ClassVar[tuple[type, ...]] = (ClassLogit, CosineSimilarity)
    vit: ClassVar[bool] = True

    def __post_init__(self):
        _check_face_target(self.face_target)  # fail at construction

    @classmethod
    def recipe_settings(cls, recipe: Recipe, task: str) -> dict[str, object]:
        return {"face_target": recipe.face_cam_target} if task == "verification" else {}

    def __call__(
        self, model: nn.Module, images: Tensor, target: ClassLogit | CosineSimilarity
    ) -> Attribution:
        """Maps for ``images`` (B, 3, H, W) in [0, 1].

        Returns:
            ``Attribution(positive, None)``: (B, H, W) maps in [0, 1] (min-max scaled by
            pytorch-grad-cam), on ``images``' device and dtype.
        """
        check_model_input(images, model)
        check_target(target)
        layer = target_layer_of(model, self.target_layer)
        maps = _run_cam(self.cam_class, model, images, target, layer, face_target=self.face_target)
        check_finite_output(maps, f"{self.name} maps")
        return Attribution(maps.to(device=images.device, dtype=images.dtype), None)


@dataclass
class GradCAM(_PytorchGradCam):
    """Grad-CAM (Selvaraju et al. 2017): ReLU(Σ_c ᾱ_c A_c), ᾱ_c = spatial mean of ∂y/∂A_c."""

    name: str = "Grad-CAM"
    cam_class: ClassVar[type] = pytorch_grad_cam.GradCAM


@dataclass
class GradCAMElementWise(_PytorchGradCam):
    """Grad-CAM-EW: Σ_c ReLU(∂y/∂A_c ⊙ A_c), element-wise instead of channel-averaged
    gradient weights (pytorch-grad-cam ``GradCAMElementWise``)."""

    name: str = "Grad-CAM-EW"
    cam_class: ClassVar[type] = pytorch_grad_cam.GradCAMElementWise


@dataclass
class HiResCAM(_PytorchGradCam):
    """HiResCAM (Draelos & Carin 2020): ReLU(Σ_c ∂y/∂A_c ⊙ A_c). For a network whose
    head is global-average-pool + linear it equals Grad-CAM (as in the paper's Table 2)."""

    name: str = "HiResCAM"
    cam_class: ClassVar[type] = pytorch_grad_cam.HiResCAM
    targets: ClassVar[tuple[type, ...]] = (ClassLogit,)


@dataclass
class FullGrad:
    """FullGrad (Srinivas & Fleuret 2019) through pytorch-grad-cam.

    |∇ₓy ⊙ x| plus |b ⊙ ∇_b y| of every ``Conv2d``/``BatchNorm2d`` bias, each min-max
    scaled and resized, summed, then min-max scaled.

    The input term is taken in the model's normalised space x_n = (x − mean)/std of
    ``model.input_normalization`` (pytorch-grad-cam on a torchvision model fed normalised
    tensors, the paper's setting); models without ``input_normalization`` use pixels.

    Args:
        allow_uncovered_biases: FullGrad needs the biases of all layers; by default a
            model with bias-carrying modules that pytorch-grad-cam does not collect (see
            :func:`fullgrad_uncovered_biases`) raises ``ValueError``. ``True`` runs anyway.

    Raises:
        ValueError: the model has no ``Conv2d``/``BatchNorm2d`` bias at all, or has
            uncovered biases (unless allowed).
    """

    allow_uncovered_biases: bool = False
    name: str = "FullGrad"
    targets: ClassVar[tuple[type, ...]] = (ClassLogit,)
    vit: ClassVar[bool] = False

    def check_model(self, model: nn.Module) -> None:
        """Raise ``ValueError`` if FullGrad cannot explain ``model`` faithfully."""
        covered = [m for m in model.modules() if type(m) in _FULLGRAD_TYPES and m.bias is not None]
        if not covered:
            raise ValueError(
                "FullGrad needs Conv2d or BatchNorm2d layers with biases; "
                f"{type(model).__name__} has none"
            )
        missing = fullgrad_uncovered_biases(model)
        if missing and not self.allow_uncovered_biases:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise ValueError(
                f"FullGrad needs the biases of all layers, but pytorch-grad-cam only collects "
                f"nn.Conv2d and nn.BatchNorm2d biases; these {len(missing)} modules carry "
                f"biases it would ignore: {shown}. Pass allow_uncovered_biases=True to run "
                "it anyway (the map then misses those bias terms)."
            )

    def __call__(
        self, model: nn.Module, images: Tensor, target: ClassLogit | CosineSimilarity
    ) -> Attribution:
        """(B, H, W) FullGrad maps in [0, 1] for ``images`` (B, 3, H, W) in [0, 1]."""
        check_model_input(images, model)
        check_target(target)
        self.check_model(model)
        norm = getattr(model, "input_normalization", None)
        x, net = images, model
        if norm is not None:
            mean, std = norm
            net = _FromNormalized(model, mean, std).to(model_device(model))
            x = (images.to(net.mean.device) - net.mean) / net.std
        maps = _run_cam(pytorch_grad_cam.FullGrad, net, x, target, None, input_requires_grad=False)
        check_finite_output(maps, f"{self.name} maps")
        return Attribution(maps.to(device=images.device, dtype=images.dtype), None)
