"""CAM baselines through pytorch-grad-cam (Table 2, Fig. 3): (B, H, W) maps in [0, 1] of
each image's raw logit or cosine similarity s to its partner embedding r.
``face_target="cosine"`` (paper): ∂s/∂o = (r̂ − s·ô)/‖o‖; ``"constant_norm"`` (code behind
Table 1) holds ‖o‖‖r‖ constant, ∂s/∂o = r̂/‖o‖. ViT tokens are folded to the patch grid."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np
import pytorch_grad_cam
import torch
import torch.nn.functional as F
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
from torch import Tensor, nn

from .._checks import check_class_indices, check_finite_output, frozen_eval
from ..objectives import (
    Attribution,
    ClassLogit,
    CosineSimilarity,
    method_inputs,
    resolve_layer,
    vit_reshape_transform,
)


class _SimilarityTarget:
    """pytorch-grad-cam target: cos(o, r) of embedding(s) o and the frozen partner r (D,)."""

    def __init__(self, reference: Tensor, constant_norm: bool = False):
        self.reference, self.constant_norm = reference.detach(), constant_norm

    def __call__(self, output: Tensor) -> Tensor:
        ref = self.reference.to(device=output.device, dtype=output.dtype)
        if self.constant_norm:
            norms = torch.linalg.vector_norm(output.detach(), dim=-1) * ref.norm()
            return (output * ref).sum(-1) / norms.clamp_min(torch.finfo(output.dtype).eps)
        return F.cosine_similarity(output, ref.expand_as(output), dim=-1)


class _FromNormalized(nn.Module):
    """A [0, 1]-input model on normalised tensors x_n = (x − mean)/std."""

    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        self.model = model
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32).view(1, -1, 1, 1))

    def forward(self, x_n: Tensor) -> Tensor:
        return self.model(x_n * self.std + self.mean)


def _run_cam(
    cam_class: type,
    model: nn.Module,
    images: Tensor,
    target: ClassLogit | CosineSimilarity,
    layer: nn.Module | None,
    constant_norm: bool = False,
    normalized: bool = False,
) -> Attribution:
    """One pytorch-grad-cam method under :func:`frozen_eval` (``normalized``: on the
    model's normalised tensor): (B, H, W) maps like ``images``."""
    x, per_image = method_inputs(model, images, target)
    norm = getattr(model, "input_normalization", None) if normalized else None
    if norm is not None:
        model = _FromNormalized(model, *norm).to(x.device)
        x = (x - model.mean) / model.std
    if isinstance(target, ClassLogit):
        targets = [ClassifierOutputTarget(c) for c in per_image.tolist()]
    else:
        targets = [_SimilarityTarget(r, constant_norm) for r in per_image]
    grid = getattr(model, "token_grid", None)
    with frozen_eval(model):
        cam = cam_class(
            model=model,
            target_layers=[] if layer is None else [layer],
            reshape_transform=None if grid is None else lambda t: vit_reshape_transform(t, grid),
        )
        try:  # with frozen parameters the input must require grad for the CAM's hooks
            maps = cam(input_tensor=x.clone().requires_grad_(True), targets=targets)
        except IndexError:  # a class beyond the logits: the message gives the range
            if isinstance(target, ClassLogit):
                check_class_indices(per_image, cam.outputs.shape[-1], "ClassLogit targets")
            raise
        finally:  # not `with cam:`: BaseCAM.__exit__ swallows IndexError
            cam.activations_and_grads.release()
            cam.outputs = None
    maps = torch.from_numpy(np.ascontiguousarray(maps, dtype=np.float32))
    return Attribution(check_finite_output(maps, f"{cam_class.__name__} maps").to(images))


@dataclass
class _PytorchGradCam:
    """A CAM at ``target_layer`` (module, dotted name, ``None``: the default layer)."""

    target_layer: nn.Module | str | None = None
    name: str = "CAM"
    face_target: Literal["cosine", "constant_norm"] = "cosine"
    cam_class: ClassVar[type]

    def __post_init__(self):
        if self.face_target not in ("cosine", "constant_norm"):
            raise ValueError(
                f"face_target must be 'cosine' or 'constant_norm', got {self.face_target!r}"
            )

    def __call__(
        self, model: nn.Module, images: Tensor, target: ClassLogit | CosineSimilarity
    ) -> Attribution:
        layer = resolve_layer(model, self.target_layer)
        constant_norm = self.face_target == "constant_norm"
        return _run_cam(self.cam_class, model, images, target, layer, constant_norm)


@dataclass
class GradCAM(_PytorchGradCam):
    """Grad-CAM (Selvaraju et al. 2017): ReLU(Σ_c ᾱ_c A_c), ᾱ_c = spatial mean of ∂y/∂A_c."""

    name: str = "Grad-CAM"
    cam_class: ClassVar[type] = pytorch_grad_cam.GradCAM


@dataclass
class GradCAMElementWise(_PytorchGradCam):
    """Grad-CAM-EW: Σ_c ReLU(∂y/∂A_c ⊙ A_c), element-wise gradient weights."""

    name: str = "Grad-CAM-EW"
    cam_class: ClassVar[type] = pytorch_grad_cam.GradCAMElementWise


@dataclass
class HiResCAM(_PytorchGradCam):
    """HiResCAM (Draelos & Carin 2020): ReLU(Σ_c ∂y/∂A_c ⊙ A_c)."""

    name: str = "HiResCAM"
    cam_class: ClassVar[type] = pytorch_grad_cam.HiResCAM
    targets: ClassVar[tuple[type, ...]] = (ClassLogit,)


@dataclass
class FullGrad:
    """FullGrad (Srinivas & Fleuret 2019): |∇ₓy ⊙ x| (x normalised) plus |b ⊙ ∇_b y| of
    every ``Conv2d``/``BatchNorm2d`` bias, each min-max scaled, summed; ``ValueError`` if
    the model has no such bias, or biases pytorch-grad-cam would leave out."""

    name: str = "FullGrad"
    targets: ClassVar[tuple[type, ...]] = (ClassLogit,)
    vit: ClassVar[bool] = False

    def __call__(
        self, model: nn.Module, images: Tensor, target: ClassLogit | CosineSimilarity
    ) -> Attribution:
        kinds = (nn.Conv2d, nn.BatchNorm2d)
        missing = [  # Linear-like biases have no spatial extent and are not in the map
            f"{name or '<model>'} ({type(m).__name__})"
            for name, m in model.named_modules()
            if isinstance(getattr(m, "bias", None), Tensor)
            and type(m) not in kinds
            and not isinstance(m, (nn.Linear, nn.Bilinear, nn.Conv1d))
        ]
        if missing or not any(type(m) in kinds and m.bias is not None for m in model.modules()):
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise ValueError(
                "FullGrad needs Conv2d or BatchNorm2d biases and no others (pytorch-grad-cam "
                f"collects only those); in {type(model).__name__} "
                + (f"{len(missing)} modules carry biases: {shown}" if missing else "there are none")
            )
        return _run_cam(pytorch_grad_cam.FullGrad, model, images, target, None, normalized=True)
