"""FGGB (Lu, Xu & Ebrahimi, FG 2024): G_k = mean_c |∂φ̂_k/∂x_c| per dimension k of the
normalised embedding φ̂, L2-normalised over the pixels to G̃_k; w_k = φ̂_g,k · φ̂_p,k − θ/D;
S = Σ_k w_k G̃_k, e₊ = max(S, 0), e₋ = max(−S, 0), each blurred and divided by its maximum."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import check_count, check_threshold, frozen_eval
from ..objectives import Attribution, ClassLogit, CosineSimilarity, method_inputs
from ..postprocess import gaussian_blur, normalize_maps


@dataclass
class FGGB:
    """FGGB for a ``CosineSimilarity`` target: ``Attribution(e₊, e₋)`` (B, H, W) in [0, 1]
    on ``images``' device; ``threshold`` θ (``None``: the target's), blur 25 / σ 5 (paper),
    ``chunk_size`` embedding dimensions per batched backward (one at a time as fallback)."""

    threshold: float | None = None
    kernel_size: int = 25
    sigma: float = 5.0
    chunk_size: int = 32
    name: str = "FGGB"
    targets: ClassVar[tuple[type, ...]] = (CosineSimilarity,)
    runtime_fields: ClassVar[frozenset[str]] = frozenset({"chunk_size"})

    def __post_init__(self):
        check_count(self.chunk_size, "chunk_size", 1)
        if self.threshold is not None:
            check_threshold(self.threshold, "FGGB threshold θ")

    def saliency(self, model: nn.Module, images: Tensor, target: CosineSimilarity) -> Tensor:
        """The signed, unblurred S = Σ_k w_k G̃_k, (B, H, W) on the model's device."""
        x, refs = method_inputs(model, images, target, (CosineSimilarity,))
        theta = target.threshold if self.threshold is None else self.threshold
        if theta is None:
            raise ValueError(
                "FGGB needs the verification threshold θ (EER threshold on the cosine "
                "similarity): pass FGGB(threshold=...) or CosineSimilarity(references, "
                "threshold=...); compute it with fame_utils.eer_threshold(scores, genuine)"
            )
        x, refs = x.requires_grad_(True), F.normalize(refs.to(x.dtype))
        with frozen_eval(model):
            emb = F.normalize(model(x))  # (B, D), one forward pass
            if emb.ndim != 2 or emb.shape[1] != refs.shape[1]:
                raise ValueError(
                    f"the model's embeddings {tuple(emb.shape)} do not match the references "
                    f"{tuple(refs.shape)}"
                )
            b, d = emb.shape
            w = refs * emb.detach() - theta / d  # w_k = φ̂_g,k · φ̂_p,k − θ/D
            s = torch.zeros(b, *x.shape[-2:], device=x.device, dtype=x.dtype)
            eye = torch.eye(d, device=x.device, dtype=emb.dtype)
            for lo in range(0, d, self.chunk_size):
                hi = min(lo + self.chunk_size, d)
                v = eye[lo:hi, None].expand(hi - lo, b, d)  # cotangent k: dimension lo + k
                try:
                    (g,) = torch.autograd.grad(
                        emb, x, grad_outputs=v, retain_graph=True, is_grads_batched=True
                    )
                except RuntimeError:  # a backward without batching rules: one at a time
                    g = torch.stack(
                        [torch.autograd.grad(emb, x, vk, retain_graph=True)[0] for vk in v]
                    )
                gk = g.abs().mean(-3)  # (K, B, H, W), then L2-normalised over the pixels
                norm = torch.linalg.vector_norm(gk.flatten(-2), dim=-1)[..., None, None]
                gk = gk / norm.clamp_min(torch.finfo(gk.dtype).tiny)
                s = s + torch.einsum("kbhw,bk->bhw", gk, w[:, lo:hi])
        return s

    def __call__(
        self, model: nn.Module, images: Tensor, target: ClassLogit | CosineSimilarity
    ) -> Attribution:
        s = self.saliency(model, images, target)
        blur = (gaussian_blur(p.clamp_min(0), self.kernel_size, self.sigma) for p in (s, -s))
        return Attribution(*(normalize_maps(p)[0].to(images) for p in blur))
