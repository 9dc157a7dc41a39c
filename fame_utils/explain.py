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

A method declares (the :class:`Method` protocol) its display ``name``, the ``targets`` it
supports (default: both) and, through ``cache_settings()``, the settings its maps depend
on (they enter the experiment cache key; speed and display knobs stay out). Methods are
made by name through the one registry, :mod:`fame_utils.methods`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from typing import ClassVar, NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from ._checks import as_index_tensor
from .core import FameConfig, run_fame
from .objectives import ClassLogit, CosineSimilarity, Objective
from .recipes import Recipe, get_recipe

__all__ = [
    "Attribution",
    "ClassTarget",
    "SimilarityTarget",
    "Target",
    "TARGETS",
    "Method",
    "method_targets",
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
TARGETS: tuple[type, ...] = (ClassTarget, SimilarityTarget)
"""Every target type; a method that declares no ``targets`` is taken to support these."""


@runtime_checkable
class Method(Protocol):
    """``method(model, images, target) -> Attribution``, with a display ``name``.

    Optional declarations (read by :mod:`fame_utils.methods` and the experiment runner):

    - ``targets``: tuple of the target types the method supports (default :data:`TARGETS`);
    - ``cache_settings() -> dict``: the settings its maps depend on (default: the
      registry's declaration for registered classes, else every public field).
    """

    name: str

    def __call__(self, model: nn.Module, images: Tensor, target: Target) -> Attribution: ...


def method_targets(method: object) -> tuple[type, ...]:
    """The target types ``method`` declares (``targets``), or :data:`TARGETS`."""
    return tuple(getattr(method, "targets", TARGETS))


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

    ``recipe`` (``"paper"``, ``"reference"`` or a :class:`~fame_utils.recipes.Recipe`),
    when given, sets the choices on which paper text and reference code differ and
    overrides those fields of ``config``: ``normalization``, ``early_stop``
    (``classification_early_stop`` / ``face_early_stop``), the face gray order (where
    :class:`FameConfig` has a ``gray_order`` field) and L_cls = |z_o| when
    ``class_logit_absolute``. ``None`` (default) runs ``config`` as given with L_cls = z_o.
    """

    config: FameConfig = field(default_factory=FameConfig)
    name: str = "FAME"
    recipe: Recipe | str | None = None

    targets: ClassVar[tuple[type, ...]] = TARGETS
    runtime_fields: ClassVar[frozenset[str]] = frozenset(
        {"progress", "batch_size", "early_stop_check_every"}
    )
    """FameConfig fields that change speed or display, not maps (kept out of the cache key)."""

    def __post_init__(self):
        if self.recipe is not None:
            self.recipe = get_recipe(self.recipe)

    def cache_settings(self) -> dict[str, object]:
        """What the maps depend on: the config (minus :attr:`runtime_fields`) and recipe."""
        config = {
            f.name: getattr(self.config, f.name)
            for f in fields(self.config)
            if f.name not in self.runtime_fields
        }
        recipe = None if self.recipe is None else self.recipe.as_dict()
        return {"config": config, "recipe": recipe}

    def _with_recipe(self, cfg: FameConfig, face: bool) -> FameConfig:
        """``cfg`` with the recipe's choices for classification or faces (``face``)."""
        r = self.recipe
        if r is None:
            return cfg
        changes: dict[str, object] = {
            "normalization": r.normalization,
            "early_stop": r.face_early_stop if face else r.classification_early_stop,
        }
        if face and "gray_order" in {f.name for f in fields(cfg)}:
            changes["gray_order"] = r.face_gray_order
        return cfg.replace(**changes)

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
            absolute = self.recipe is not None and self.recipe.class_logit_absolute
            cfg = self._with_recipe(self.config, face=False)
            objective = ClassLogit(cls, absolute=absolute)
            return Attribution(run_fame(model, images, objective, cfg).maps())
        if isinstance(target, SimilarityTarget):
            refs = target.check(images.shape[0])
            cfg = self._with_recipe(self.verification_config(), face=True)
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
