"""Methods: FAME and every baseline under one calling convention, and the registry.

A *method* is a callable ``method(model, images, target) -> Attribution``:

- ``images``: float (B, 3, H, W) in [0, 1] RGB on any device;
- ``target``: :class:`~fame_utils.objectives.ClassLogit` (explain class logits, Table 2)
  or :class:`~fame_utils.objectives.CosineSimilarity` (explain the cosine similarity to
  frozen partner embeddings, Table 1 / Fig. 3);
- returns :class:`~fame_utils.objectives.Attribution` with ``positive`` (B, H, W) in
  [0, 1] — the map for the class, or e₊ for verification — and ``negative`` (B, H, W) e₋
  where the method has one (``None`` otherwise), both on ``images``' device.

So a notebook can do ``for m in methods: maps[m.name] = m(model, x, target)``.

**Adding a method**: a dataclass with a display ``name`` field and the class attributes
``targets`` (the target types it explains), optionally ``vit`` (``False`` if it cannot
explain Vision Transformers) and ``runtime_fields`` (fields that change speed or display,
not maps: they stay out of the cache key, :func:`fame_utils.experiment.keys.method_key`);
add it to :data:`METHODS`. A method whose maps
depend on a :class:`~fame_utils.recipes.Recipe` says how in a classmethod
``recipe_settings(recipe, task) -> dict`` of constructor arguments.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import torch
from torch import Tensor, nn

from .baselines.cam import FullGrad, GradCAM, GradCAMElementWise, HiResCAM, token_grid_of
from .baselines.corrrise import CorrRISE
from .baselines.fggb import FGGB
from .baselines.sanity import Centre, Constant, Random
from .core import FameConfig, FameResult, run_fame
from .objectives import Attribution, ClassLogit, CosineSimilarity, Objective, check_target
from .recipes import PAPER, Recipe, get_recipe

__all__ = [
    "Method",
    "Fame",
    "METHODS",
    "registry_key",
    "available_methods",
    "table_methods",
    "make_methods",
    "supports",
    "explain_all",
    "empty_maps",
]

Task = Literal["classification", "verification"]
_TASK_TARGET: dict[str, type] = {"classification": ClassLogit, "verification": CosineSimilarity}


@runtime_checkable
class Method(Protocol):
    """``method(model, images, target) -> Attribution``, with a display ``name``."""

    name: str

    def __call__(self, model: nn.Module, images: Tensor, target: Objective) -> Attribution: ...


class _BothSides(CosineSimilarity):
    """L₊ = s for the first B samples and L₋ = 1 − s for a second copy of the batch, so
    e₊ and e₋ come from one batched run of 2B samples."""

    def __init__(self, references: Tensor, sign: Tensor | None = None):
        super().__init__(references)
        self.sign = sign

    def expand(self, model: nn.Module, images: Tensor) -> tuple[Tensor, Objective]:
        refs = self.check(images.shape[0]).to(images.device)
        b = images.shape[0]
        sign = torch.cat([torch.ones(b), -torch.ones(b)]).to(images.device)
        return images.repeat(2, 1, 1, 1), _BothSides(refs.repeat(2, 1), sign)

    def subset(self, index: slice | Tensor) -> Objective:
        return _BothSides(self.references[index], self.sign[index])

    def __call__(self, model: nn.Module, inputs: Tensor) -> Tensor:
        s = self.similarity(model, inputs)
        return torch.where(self.sign > 0, s, 1.0 - s)


@dataclass
class Fame:
    """FAME (paper Eq. 3-4) under the shared convention; runs exactly ``config``.

    ``ClassLogit`` target: L_cls = z_o descended (|z_o| when ``config.absolute_logit``),
    one map. ``CosineSimilarity`` target: e₊ from L₊ = s and e₋ from L₋ = 1 − s, both in
    one batched run of 2B samples. ``Fame(config)(model, x, ClassLogit(c)).positive``
    equals ``fame(model, x, ClassLogit(c), config)``, and for a similarity target e₊
    equals ``fame(model, x, CosineSimilarity(refs), config)``.

    The default config is the paper's classification setting; for faces use
    ``Fame(FameConfig.paper("verification"))`` (pixel steps, ε = 0.01) or make it with
    :func:`make_methods`, which takes each task's config from the recipe.
    """

    config: FameConfig = field(default_factory=FameConfig)
    name: str = "FAME"

    targets: ClassVar[tuple[type, ...]] = (ClassLogit, CosineSimilarity)
    vit: ClassVar[bool] = True

    @classmethod
    def recipe_settings(cls, recipe: Recipe, task: Task) -> dict[str, Any]:
        return {"config": recipe.fame_config(task)}

    def run(self, model: nn.Module, images: Tensor, target: Objective, **hook) -> FameResult:
        """The unblurred :class:`FameResult` behind a call (B samples; 2B for a similarity
        target: e₊ then e₋), e.g. to re-blur at another σ; ``hook``: :func:`run_fame`'s
        ``callback`` and ``callback_every``."""
        check_target(target)
        if not isinstance(target, ClassLogit):
            target = _BothSides(target.check(images.shape[0]))
        return run_fame(model, images, target, self.config, **hook)

    def __call__(self, model: nn.Module, images: Tensor, target: Objective) -> Attribution:
        maps, b = self.run(model, images, target).maps(), images.shape[0]
        return (
            Attribution(maps) if isinstance(target, ClassLogit) else Attribution(maps[:b], maps[b:])
        )


METHODS: dict[str, type] = {
    "fame": Fame,
    "gradcam": GradCAM,
    "gradcam-ew": GradCAMElementWise,
    "hirescam": HiResCAM,
    "fullgrad": FullGrad,
    "corrrise": CorrRISE,
    "fggb": FGGB,
    # sanity baselines (issue 23): reference rows every table should carry
    "constant": Constant,
    "random": Random,
    "centre": Centre,
}
"""Every method by the key the command line and notebooks use."""

_TABLES: dict[str, tuple[str, ...]] = {
    "classification": ("fame", "gradcam", "gradcam-ew", "hirescam", "fullgrad"),
    "verification": ("gradcam", "gradcam-ew", "corrrise", "fggb", "fame"),
}


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def registry_key(name: str) -> str:
    """The :data:`METHODS` key of a key or display name (``"Grad-CAM-EW"`` → ``"gradcam-ew"``)."""
    return _method_class(name)[0]


def _method_class(name: str) -> tuple[str, type]:
    """The key and class of a key or display name (case and punctuation ignored)."""
    for key, cls in METHODS.items():
        display = next((f.default for f in dataclasses.fields(cls) if f.name == "name"), key)
        if _norm(name) in (_norm(key), _norm(str(display))):
            return key, cls
    raise ValueError(f"unknown method {name!r}; choose from {list(METHODS)}")


def _check_task(task: str) -> Task:
    if task not in _TASK_TARGET:
        raise ValueError(f"task must be 'classification' or 'verification', got {task!r}")
    return task  # type: ignore[return-value]


def supports(method: Any, task: Task) -> bool:
    """Whether ``method`` (an instance or class) explains ``task``'s target type."""
    targets = getattr(method, "targets", tuple(_TASK_TARGET.values()))
    return _TASK_TARGET[_check_task(task)] in tuple(targets)


def available_methods(task: Task, model: Any = None) -> list[str]:
    """Keys of every method that supports ``task`` (and ``model``: a Vision Transformer,
    one with a ``token_grid``, leaves out methods with ``vit = False``)."""
    vit = model is not None and token_grid_of(model) is not None
    return [
        k for k, c in METHODS.items() if supports(c, task) and (getattr(c, "vit", True) or not vit)
    ]


def table_methods(task: Task) -> list[str]:
    """Keys of the paper's table rows: Table 2 for classification, Table 1 for verification."""
    return list(_TABLES[_check_task(task)])


def _recipe_settings(cls: type, recipe: Recipe, task: Task) -> dict[str, Any]:
    own = getattr(cls, "recipe_settings", None)
    return dict(own(recipe, task)) if own is not None else {}


def make_methods(
    names: Iterable[str],
    task: Task,
    *,
    recipe: Recipe | str | None = None,
    recipes: Sequence[Recipe | str] | None = None,
    fame_settings: dict[str, Any] | None = None,
    **settings: Any,
) -> list:
    """Method instances for ``task`` from keys or display names, in the order given.

    Args:
        names: e.g. ``["fame", "gradcam"]`` (see :func:`available_methods`).
        task: ``"classification"`` or ``"verification"``.
        recipe: ``"paper"`` (``None``, the default), ``"reference"`` or a
            :class:`~fame_utils.recipes.Recipe`: each method's recipe-dependent settings
            (FAME's config, the face CAMs' target) come from it.
        recipes: several recipes instead: methods the recipe changes are made once per
            recipe and named ``"FAME (paper)"``, ``"FAME (reference)"``; the others once.
        fame_settings: :class:`~fame_utils.core.FameConfig` fields set on top of each
            recipe's config (``{"iterations": 100, "progress": False}``): FAME then holds
            ``recipe.fame_config(task, **fame_settings)``. Not together with ``config``.
        **settings: constructor arguments, each given to every chosen method that has a
            field of that name (a name no method has is an error) (``config=FameConfig(...)``, ``target_layer="layer4"``,
            ``threshold=0.3``, ``n_masks=100``...). ``None`` values count as not given.
            A setting the recipe also decides is used as given, and must agree with the
            recipe when ``recipe``/``recipes`` is given explicitly.

    Raises:
        ValueError: unknown name, a method that does not support ``task``, both
            ``recipe`` and ``recipes``, or a setting that disagrees with the recipe.
        TypeError: a setting none of the chosen methods has.
    """
    _check_task(task)
    if recipe is not None and recipes is not None:
        raise ValueError("give either recipe= or recipes=, not both")
    if recipes is not None and not list(recipes):
        raise ValueError("recipes is empty: give at least one recipe name")
    chosen = [get_recipe(r) for r in recipes] if recipes is not None else [get_recipe(recipe)]
    classes = [_method_class(n) for n in names]
    given = {k: v for k, v in settings.items() if v is not None}
    fields_of = {key: {f.name for f in dataclasses.fields(cls)} for key, cls in METHODS.items()}
    unknown = set(given) - set().union(*fields_of.values())
    if unknown:
        raise TypeError(
            f"unknown method settings {sorted(unknown)}; the methods' fields: "
            f"{sorted(set().union(*fields_of.values()) - {'name'})}"
        )
    if fame_settings and "config" in given:
        raise ValueError("give either config= or fame_settings=, not both")
    explicit = recipe is not None or recipes is not None
    out = []
    for key, cls in classes:
        if not supports(cls, task):
            raise ValueError(
                f"{key} does not support {task}; choose from {available_methods(task)}"
            )
        own = {k: v for k, v in given.items() if k in fields_of[key]}
        per_recipe = len(chosen) > 1 and _recipe_settings(cls, PAPER, task) != _recipe_settings(
            cls, get_recipe("reference"), task
        )
        for r in chosen if per_recipe else chosen[:1]:
            kwargs = _recipe_settings(cls, r, task)
            if fame_settings and isinstance(kwargs.get("config"), FameConfig):
                kwargs["config"] = kwargs["config"].replace(**fame_settings)
            for k, v in own.items() if explicit else ():
                if k == "config" and k in kwargs:
                    r.check_config(v, task)
                elif k in kwargs and kwargs[k] != v:
                    raise ValueError(
                        f"{key}: {k}={v!r} disagrees with recipe {r.name!r} ({kwargs[k]!r})"
                    )
            method = cls(**{**kwargs, **own})
            if per_recipe:
                method.name = f"{method.name} ({r.name})"
            out.append(method)
    return out


def explain_all(
    methods: Sequence[Method], model: nn.Module, images: Tensor, target: Objective
) -> tuple[dict[str, Attribution], dict[str, float]]:
    """Run every method on the same batch: ``({name: Attribution}, {name: wall seconds})``."""
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
