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

import hashlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field, fields, replace
from typing import ClassVar, NamedTuple, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from ._checks import as_index_tensor
from .core import FameConfig, FameResult, run_fame
from .data.items import hash_tensor
from .objectives import ClassLogit, CosineSimilarity, Objective
from .recipes import PAPER, Recipe, get_recipe

__all__ = [
    "Attribution",
    "ClassTarget",
    "SimilarityTarget",
    "Target",
    "TARGETS",
    "Method",
    "method_targets",
    "Fame",
    "SharedRuns",
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
    e₋ from L₋ = 1 − s, both in one batched run (2B samples), stepping in pixels.
    Early stopping for verification follows ``config.early_stop``: a number is ε,
    ``None`` never stops, and the default ``"auto"`` (nothing said) takes
    :attr:`fame_utils.recipes.Recipe.face_early_stop` of the paper recipe, ε = 0.01
    (paper §4.2).

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
    shared: SharedRuns | None = field(default=None, init=False, repr=False, compare=False)
    """Runs shared with sibling methods whose optimisation is the same (set by
    :func:`fame_utils.methods.make_methods`; see :class:`SharedRuns`). Maps do not depend
    on it."""

    targets: ClassVar[tuple[type, ...]] = TARGETS
    runtime_fields: ClassVar[frozenset[str]] = frozenset(
        {"progress", "batch_size", "early_stop_check_every"}
    )
    """FameConfig fields that change speed or display, not maps (kept out of the cache key)."""
    post_fields: ClassVar[frozenset[str]] = frozenset(
        {"gray_order", "kernel_size", "sigma", "normalization", "progress"}
    )
    """FameConfig fields applied after the optimisation (Δx's gray order, blur,
    normalisation) or for display: runs that differ only in these share one optimisation."""

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
        """The config of a verification run: pixel steps, and ε = 0.01 when
        ``config.early_stop`` is ``"auto"`` (an explicit ``None`` or ε is kept)."""
        cfg = self.config
        changes = {}
        if cfg.early_stop == "auto":
            changes["early_stop"] = PAPER.face_early_stop
        if cfg.step_space == "normalized":
            changes["step_space"] = "pixel"
        return cfg.replace(**changes) if changes else cfg

    def task_config(self, task: str) -> tuple[FameConfig, bool]:
        """The config a ``"classification"`` or ``"verification"`` run uses (recipe and
        task defaults applied) and whether L_cls is |z_o| (classification only)."""
        if task == "verification":
            return self._with_recipe(self.verification_config(), face=True), False
        absolute = self.recipe is not None and self.recipe.class_logit_absolute
        return self._with_recipe(self.config, face=False), absolute

    def run_key(self, task: str) -> Hashable:
        """What the optimisation of a ``task`` run depends on besides model and inputs:
        equal keys mean identical iterates (only :attr:`post_fields` may differ)."""
        cfg, absolute = self.task_config(task)
        kept = tuple(
            (f.name, getattr(cfg, f.name)) for f in fields(cfg) if f.name not in self.post_fields
        )
        return (task, absolute, kept)

    def _run(
        self, model: nn.Module, images: Tensor, objective: Objective, task: str, target: Tensor
    ) -> FameResult:
        cfg, _ = self.task_config(task)
        if self.shared is None:
            return run_fame(model, images, objective, cfg)
        key = (self.run_key(task), SharedRuns.fingerprint(model, images, target))
        result = self.shared.get(key, images.device)
        if result is None:
            result = run_fame(model, images, objective, cfg, keep_moved=True)
            self.shared.put(key, result)
        return replace(result.regray(cfg.gray_order), config=cfg)

    def __call__(self, model: nn.Module, images: Tensor, target: Target) -> Attribution:
        if isinstance(target, ClassTarget):
            cls = target.indices(images.shape[0])
            _, absolute = self.task_config("classification")
            objective = ClassLogit(cls, absolute=absolute)
            return Attribution(self._run(model, images, objective, "classification", cls).maps())
        if isinstance(target, SimilarityTarget):
            refs = target.check(images.shape[0])
            b = images.shape[0]
            both = self._run(model, images, _BothSides(refs), "verification", refs).maps()
            return Attribution(both[:b], both[b:])
        raise TypeError(
            f"target must be ClassTarget or SimilarityTarget, got {type(target).__name__}"
        )


class SharedRuns:
    """One FAME optimisation for sibling methods that differ only after it.

    ``"FAME (paper)"`` and ``"FAME (reference)"`` on faces take the same steps (same
    objective, ε, pixel steps) and differ only in Δx's gray order and the normalisation
    (:attr:`Fame.post_fields`), so the second need not optimise again.
    :func:`fame_utils.methods.make_methods` gives one ``SharedRuns`` to each group of
    ``users`` siblings with equal :meth:`Fame.run_key`. The first sibling to explain a
    batch runs FAME, keeping the 3-channel δ, and leaves the run here (on the CPU); each
    other sibling takes it, re-grays it in its own order and blurs and normalises it its
    own way: maps bit-identical to its own run (tested). A run is dropped once every
    sibling has taken it. Runs beyond ``max_bytes`` are not kept (the siblings then
    optimise again: same maps, more time); :attr:`runs` and :attr:`reused` count both.

    Batches are matched by a fingerprint of the model and the exact input bytes
    (:meth:`fingerprint`), never by position.
    """

    def __init__(self, users: int, max_bytes: int = 1 << 30):
        if users < 2:
            raise ValueError(f"SharedRuns needs at least 2 users, got {users}")
        self.users, self.max_bytes = users, max_bytes
        self.runs = self.reused = self.bytes = 0
        self._kept: dict[Hashable, list] = {}  # key -> [FameResult on CPU, takers left, bytes]

    @staticmethod
    def fingerprint(model: nn.Module, images: Tensor, target: Tensor) -> Hashable:
        """The model (identity and in-place versions of its parameters) and the dtype,
        shape and bytes of ``images`` and ``target`` (SHA-256)."""
        digest = hashlib.sha256()
        for t in (images, target):
            hash_tensor(digest, t)
        params = list(model.parameters())
        version = sum(p._version for p in params)
        return (id(model), version, params[0].data_ptr() if params else 0, digest.hexdigest())

    def get(self, key: Hashable, device: torch.device) -> FameResult | None:
        """The kept run for ``key`` on ``device`` (counted as taken), or ``None``."""
        entry = self._kept.get(key)
        if entry is None:
            return None
        entry[1] -= 1
        if entry[1] <= 0:
            del self._kept[key]
            self.bytes -= entry[2]
        self.reused += 1
        return _result_to(entry[0], device)

    def put(self, key: Hashable, result: FameResult) -> None:
        """Keep a fresh run (with :attr:`FameResult.moved`) for the other siblings."""
        self.runs += 1
        size = sum(t.numel() * t.element_size() for t in _result_tensors(result))
        if self.bytes + size > self.max_bytes:
            return
        self._kept[key] = [_result_to(result, torch.device("cpu")), self.users - 1, size]
        self.bytes += size


def _result_tensors(r: FameResult) -> list[Tensor]:
    return [t for t in (r.delta, r.steps, r.initial_loss, r.final_loss, r.moved) if t is not None]


def _result_to(r: FameResult, device: torch.device) -> FameResult:
    """A copy of ``r`` on ``device`` (never aliasing ``r``'s tensors)."""
    moved = None if r.moved is None else r.moved.to(device, copy=True)
    return FameResult(
        r.delta.to(device, copy=True),
        r.steps.to(device, copy=True),
        r.initial_loss.to(device, copy=True),
        r.final_loss.to(device, copy=True),
        r.config,
        moved,
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
