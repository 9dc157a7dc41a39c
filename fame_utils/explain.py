"""One calling convention for FAME and every baseline.

A *method* is a callable ``method(model, images, target) -> Attribution``:

- ``images``: float (B, 3, H, W) in [0, 1] RGB on any device;
- ``target``: :class:`ClassTarget` (explain class logits, Table 2) or
  :class:`SimilarityTarget` (explain the cosine similarity to frozen partner
  embeddings, Table 1 / Fig. 3);
- returns :class:`Attribution` with ``positive`` (B, H, W) in [0, 1] — the map for the
  class, or e₊ for verification — and ``negative`` (B, H, W) e₋ where the method has one
  (``None`` otherwise), both on ``images``' device.

So a notebook can do ``for method in methods: maps[method.name] = method(model, x, t)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from ._checks import as_index_tensor
from .core import FameConfig, run_fame
from .objectives import ClassLogit, CosineSimilarity, Objective

__all__ = [
    "Attribution",
    "ClassTarget",
    "SimilarityTarget",
    "Method",
    "Fame",
    "explain_all",
    "empty_maps",
]


class Attribution(NamedTuple):
    """``positive``: (B, H, W) map in [0, 1] (class evidence, or e₊ for verification);
    ``negative``: (B, H, W) e₋ in [0, 1], or ``None`` for methods without one."""

    positive: Tensor
    negative: Tensor | None = None


@dataclass
class ClassTarget:
    """Explain the logit of ``classes`` (B,) (one class per image, or one int for all)."""

    classes: int | Sequence[int] | Tensor

    def indices(self, batch: int) -> Tensor:
        """(batch,) long tensor of class indices, checked against the batch size."""
        return as_index_tensor(self.classes, batch, "ClassTarget.classes")


@dataclass
class SimilarityTarget:
    """Explain cos(φ(image), reference) for frozen partner embeddings ``references`` (B, D).

    ``threshold`` is the verification threshold θ on the cosine similarity (EER
    threshold of the protocol); methods that need it (FGGB) raise if it is ``None``.
    """

    references: Tensor
    threshold: float | None = None

    def check(self, batch: int) -> Tensor:
        if not isinstance(self.references, Tensor) or self.references.ndim != 2:
            raise ValueError("SimilarityTarget.references must be a (B, D) tensor")
        if self.references.shape[0] != batch:
            raise ValueError(
                f"SimilarityTarget has {self.references.shape[0]} references for {batch} images"
            )
        return self.references.detach()


Target = ClassTarget | SimilarityTarget


@runtime_checkable
class Method(Protocol):
    """``method(model, images, target) -> Attribution``, with a display ``name``."""

    name: str

    def __call__(self, model: nn.Module, images: Tensor, target: Target) -> Attribution: ...


class _BothSides(CosineSimilarity):
    """L₊ for the first B samples and L₋ = 1 − s for a second copy of the batch, so e₊
    and e₋ come from one batched run of 2B samples."""

    def __init__(self, references: Tensor, sign: Tensor | None = None):
        super().__init__(references)
        self.sign = sign

    def expand(self, model: nn.Module, images: Tensor) -> tuple[Tensor, Objective]:
        _, bound = super().expand(model, images)
        b = images.shape[0]
        sign = torch.cat([torch.ones(b), -torch.ones(b)]).to(images.device)
        refs = bound.references.repeat(2, 1)
        return images.repeat(2, 1, 1, 1), _BothSides(refs, sign)

    def subset(self, index: slice | Tensor) -> Objective:
        return _BothSides(self.references[index], self.sign[index])

    def __call__(self, model: nn.Module, inputs: Tensor) -> Tensor:
        s = self.similarity(model, inputs)
        return torch.where(self.sign > 0, s, 1.0 - s)


@dataclass
class Fame:
    """FAME under the shared convention.

    Classification: L_cls = z_o descended, one map. Verification: e₊ from L₊ = s and
    e₋ from L₋ = 1 − s, both in one batched run (2B samples), stepping in pixels and
    stopping early at ε = 0.01 unless ``config`` says otherwise (paper Sec. 3).
    """

    config: FameConfig = field(default_factory=FameConfig)
    name: str = "FAME"

    def verification_config(self) -> FameConfig:
        cfg = self.config
        changes = {}
        if cfg.early_stop is None:
            changes["early_stop"] = 0.01
        if cfg.step_space == "normalized":
            changes["step_space"] = "pixel"
        return cfg.replace(**changes) if changes else cfg

    def __call__(self, model: nn.Module, images: Tensor, target: Target) -> Attribution:
        if isinstance(target, ClassTarget):
            cls = target.indices(images.shape[0])
            return Attribution(run_fame(model, images, ClassLogit(cls), self.config).maps())
        if isinstance(target, SimilarityTarget):
            refs = target.check(images.shape[0])
            cfg = self.verification_config()
            b = images.shape[0]
            both = run_fame(model, images, _BothSides(refs), cfg).maps()
            return Attribution(both[:b], both[b:])
        raise TypeError(
            f"target must be ClassTarget or SimilarityTarget, got {type(target).__name__}"
        )


def explain_all(
    methods: Sequence[Method], model: nn.Module, images: Tensor, target: Target
) -> tuple[dict[str, Attribution], dict[str, float]]:
    """Run every method on the same batch: ``({name: Attribution}, {name: seconds})``.

    Seconds are the wall-clock time of each call.
    """
    import time

    maps, seconds = {}, {}
    for method in methods:
        t0 = time.perf_counter()
        maps[method.name] = method(model, images, target)
        seconds[method.name] = time.perf_counter() - t0
    return maps, seconds


def empty_maps(attributions: dict[str, Attribution], labels: Sequence[str]) -> list[str]:
    """``"<label>: <method> e₊|e₋"`` for every all-zero map (e.g. FAME's e₊ of a pair whose
    loss is below ε at the start), rows labelled by ``labels`` (one per image)."""
    found = []
    for name, a in attributions.items():
        for part, maps in (("e₊", a.positive), ("e₋", a.negative)):
            if maps is None:
                continue
            zero = maps.flatten(1).amax(dim=1) == 0
            found += [f"{labels[r]}: {name} {part}" for r in zero.nonzero().flatten().tolist()]
    return found
