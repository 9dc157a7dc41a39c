"""FGGB (Lu, Xu & Ebrahimi, FG 2024): feature-gradient-guided explanations of verification.

For the L2-normalised embedding φ̂(x) = φ(x)/‖φ(x)‖ of the explained image (the probe)
and the frozen, normalised partner embedding φ̂_g:

1. G_k = mean_c |∂φ̂_k/∂x_c| (H, W) for every dimension k = 1..D (input gradients,
   absolute value averaged over the colour channels);
2. G̃_k = G_k / ‖G_k‖₂ (L2 over the pixels);
3. w_k = φ̂_g,k · φ̂_p,k − θ/D, θ the verification threshold on the cosine similarity
   (EER threshold of the protocol), so Σ_k w_k = cos(φ_g, φ_p) − θ;
4. S = Σ_k w_k G̃_k;  e₊ = max(S, 0), e₋ = max(−S, 0);
5. each blurred (kernel 25, σ 5, :func:`fame_utils.postprocess.gaussian_blur`) and
   divided by its maximum (max normalisation; an all-zero part stays zero).

The D input gradients are computed vectorised: one forward pass and batched
vector-Jacobian products with one-hot cotangents (``torch.autograd.grad(...,
is_grads_batched=True)``, ``jacobian="vmap"``), or, for networks whose backward has no
batching rule, one forward/backward of the image repeated once per dimension
(``jacobian="repeat"``); both in chunks of ``chunk_size`` dimensions to bound memory,
never a Python loop of D backward passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .._checks import check_model_input, check_threshold, frozen_eval, model_device
from ..objectives import Attribution, ClassLogit, CosineSimilarity, check_target
from ..postprocess import gaussian_blur, max_normalize

__all__ = ["FGGB"]


def _normalized_gradient_maps(grads: Tensor) -> Tensor:
    """(..., 3, H, W) input gradients -> (..., H, W) mean_c |·|, L2-normalised over pixels."""
    g = grads.abs().mean(-3)
    norm = torch.linalg.vector_norm(g.flatten(-2), dim=-1)[..., None, None]
    return g / norm.clamp_min(torch.finfo(g.dtype).tiny)


@dataclass
class FGGB:
    """FGGB under the shared convention (verification only: ``CosineSimilarity``).

    Args:
        threshold: θ, the verification threshold on the cosine similarity (EER
            threshold, :func:`fame_utils.metrics.threshold.eer_threshold`). When set it
            is used; when ``None`` the target's ``CosineSimilarity.threshold`` is used;
            if neither is given the call raises ``ValueError``.
        kernel_size, sigma: Gaussian blur of e₊ and e₋ (25 and 5 as in the paper).
        jacobian: ``"vmap"`` (one forward, batched backward) or ``"repeat"``.
        chunk_size: embedding dimensions per batched backward.
        progress: tqdm bar over the chunks.

    Returns ``Attribution(e₊, e₋)``, (B, H, W) in [0, 1] on ``images``' device.
    """

    threshold: float | None = None
    kernel_size: int = 25
    sigma: float = 5.0
    jacobian: Literal["vmap", "repeat"] = "vmap"
    chunk_size: int = 32
    progress: bool = False
    name: str = "FGGB"
    targets: ClassVar[tuple[type, ...]] = (CosineSimilarity,)
    runtime_fields: ClassVar[frozenset[str]] = frozenset({"chunk_size", "progress"})

    def __post_init__(self):
        if self.jacobian not in ("vmap", "repeat"):
            raise ValueError(f"jacobian must be 'vmap' or 'repeat', got {self.jacobian!r}")
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {self.chunk_size}")
        if self.threshold is not None:
            check_threshold(self.threshold, "FGGB threshold θ")

    def resolve_threshold(self, target: CosineSimilarity) -> float:
        """θ from the constructor, else from the target; ``ValueError`` if neither, or if
        θ is NaN or outside [−1, 1] (a threshold on the cosine similarity)."""
        if self.threshold is not None:
            return check_threshold(self.threshold, "FGGB threshold θ")
        if target.threshold is not None:
            return check_threshold(target.threshold, "CosineSimilarity.threshold θ")
        raise ValueError(
            "FGGB needs the verification threshold θ (EER threshold on the cosine "
            "similarity): pass FGGB(threshold=...) or CosineSimilarity(references, "
            "threshold=...); compute it with fame_utils.eer_threshold(scores, genuine)"
        )

    def saliency(self, model: nn.Module, images: Tensor, target: CosineSimilarity) -> Tensor:
        """The signed, unblurred S = Σ_k w_k G̃_k, (B, H, W) on the model's device."""
        theta = self.resolve_threshold(target)
        device = model_device(model)
        x = images.detach().to(device)
        b = x.shape[0]
        refs = F.normalize(target.check(b).to(device).to(x.dtype))
        with frozen_eval(model):
            if self.jacobian == "vmap":
                return self._saliency_vmap(model, x, refs, theta)
            return self._saliency_repeat(model, x, refs, theta)

    def _weights(self, emb: Tensor, refs: Tensor, theta: float) -> Tensor:
        if emb.ndim != 2 or emb.shape[1] != refs.shape[1]:
            raise ValueError(
                f"the model's embeddings {tuple(emb.shape)} do not match the references "
                f"{tuple(refs.shape)}"
            )
        return refs * emb - theta / emb.shape[1]  # (B, D)

    def _chunks(self, d: int):
        starts = range(0, d, self.chunk_size)
        bar = tqdm(starts, desc=self.name, disable=not self.progress, leave=False)
        return ((lo, min(lo + self.chunk_size, d)) for lo in bar)

    def _saliency_vmap(self, model: nn.Module, x: Tensor, refs: Tensor, theta: float) -> Tensor:
        x = x.clone().requires_grad_(True)
        emb = F.normalize(model(x))  # (B, D), one forward pass
        w = self._weights(emb.detach(), refs, theta)
        b, d = emb.shape
        s = torch.zeros(b, *x.shape[-2:], device=x.device, dtype=x.dtype)
        eye = torch.eye(d, device=x.device, dtype=emb.dtype)
        for lo, hi in self._chunks(d):
            # cotangent i selects dimension lo + i of every image: (K, B, D)
            v = eye[lo:hi].unsqueeze(1).expand(hi - lo, b, d)
            try:
                (g,) = torch.autograd.grad(
                    emb, x, grad_outputs=v, retain_graph=hi < d, is_grads_batched=True
                )
            except RuntimeError as e:
                raise RuntimeError(
                    f"batched backward failed for this network ({e}); use FGGB(jacobian='repeat')"
                ) from e
            gk = _normalized_gradient_maps(g)  # (K, B, H, W)
            s = s + torch.einsum("kbhw,bk->bhw", gk, w[:, lo:hi])
        return s

    def _saliency_repeat(self, model: nn.Module, x: Tensor, refs: Tensor, theta: float) -> Tensor:
        b = x.shape[0]
        with torch.no_grad():
            emb = F.normalize(model(x))
        w = self._weights(emb, refs, theta)
        d = emb.shape[1]
        s = torch.zeros(b, *x.shape[-2:], device=x.device, dtype=x.dtype)
        for lo, hi in self._chunks(d):
            k = hi - lo
            # rows: image-major, image i repeated for dims lo..hi-1
            xr = x.repeat_interleave(k, dim=0).requires_grad_(True)
            dims = torch.arange(lo, hi, device=x.device).repeat(b)
            out = F.normalize(model(xr))
            sel = out.gather(1, dims.view(-1, 1)).sum()
            (g,) = torch.autograd.grad(sel, xr)
            gk = _normalized_gradient_maps(g).view(b, k, *x.shape[-2:])
            s = s + torch.einsum("bkhw,bk->bhw", gk, w[:, lo:hi])
        return s

    def __call__(
        self, model: nn.Module, images: Tensor, target: ClassLogit | CosineSimilarity
    ) -> Attribution:
        """e₊, e₋ (B, H, W) in [0, 1] for ``images`` (B, 3, H, W) in [0, 1] (the probes)
        against ``target.references`` (the frozen gallery embeddings). The model runs in
        eval mode (each module's own mode restored afterwards)."""
        check_model_input(images, model)
        check_target(target)
        if not isinstance(target, CosineSimilarity):
            raise TypeError(
                "FGGB explains face verification and needs a CosineSimilarity "
                "(partner embeddings and threshold), not a ClassLogit"
            )
        s = self.saliency(model, images, target)
        pos = max_normalize(gaussian_blur(s.clamp_min(0), self.kernel_size, self.sigma))
        neg = max_normalize(gaussian_blur((-s).clamp_min(0), self.kernel_size, self.sigma))
        return Attribution(
            pos.to(device=images.device, dtype=images.dtype),
            neg.to(device=images.device, dtype=images.dtype),
        )
