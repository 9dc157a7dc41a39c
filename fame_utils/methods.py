"""FAME and every baseline as ``method(model, images, target) -> Attribution``, and the
registry: a new method is a dataclass with a display ``name`` (optional class attributes
``targets``, ``vit = False``, ``runtime_fields``), added to :data:`METHODS`."""

from __future__ import annotations

import copy
import dataclasses
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor, nn

from .baselines.cam import FullGrad, GradCAM, GradCAMElementWise, HiResCAM
from .baselines.corrrise import CorrRISE
from .baselines.fggb import FGGB
from .baselines.sanity import Centre, Constant, Random
from .core import FameConfig, FameResult, run_fame
from .objectives import Attribution, ClassLogit, CosineSimilarity, Objective, method_inputs
from .recipes import PAPER, REFERENCE, Recipe, get_recipe

Task = Literal["classification", "verification"]
_TASK_TARGET: dict[str, type] = {"classification": ClassLogit, "verification": CosineSimilarity}


class _BothSides(CosineSimilarity):
    """L₊ = s on the batch and L₋ = 1 − s on a second copy (``sign`` −1): one run of 2B."""

    row_fields = ("references", "sign")
    sign: Tensor | None = None  # +1: L₊ = s, −1: L₋ = 1 − s, after expand()

    def expand(self, model: nn.Module, images: Tensor) -> tuple[Tensor, Objective]:
        bound, b = copy.copy(self), images.shape[0]
        bound.references = self.check(b).to(images.device).repeat(2, 1)
        bound.sign = torch.tensor([1.0, -1.0], device=images.device).repeat_interleave(b)
        return images.repeat(2, 1, 1, 1), bound

    def __call__(self, model: nn.Module, inputs: Tensor) -> Tensor:
        s = super().__call__(model, inputs)
        return torch.where(self.sign > 0, s, 1.0 - s)


@dataclass
class Fame:
    """FAME (Eq. 3-4), running exactly ``config`` (faces: ``FameConfig.paper("verification")``):
    ``fame(model, x, target, config)`` for a ``ClassLogit``; for a ``CosineSimilarity`` e₊
    (L₊ = s) and e₋ (L₋ = 1 − s) from one batched run of 2B samples."""

    config: FameConfig = field(default_factory=FameConfig)
    name: str = "FAME"

    def run(self, model: nn.Module, images: Tensor, target: Objective, **hook) -> FameResult:
        """The unblurred :class:`FameResult` behind a call (2B rows for a similarity: e₊
        then e₋); ``hook``: :func:`run_fame`'s ``callback`` and ``callback_every``."""
        per_image = method_inputs(model, images, target)[1]
        if isinstance(target, CosineSimilarity):
            target = _BothSides(per_image)
        return run_fame(model, images, target, self.config, **hook)

    def __call__(self, model: nn.Module, images: Tensor, target: Objective) -> Attribution:
        maps, b = self.run(model, images, target).maps(), images.shape[0]
        if isinstance(target, ClassLogit):
            return Attribution(maps)
        return Attribution(maps[:b], maps[b:])


METHODS: dict[str, type] = {
    "fame": Fame,
    "gradcam": GradCAM,
    "gradcam-ew": GradCAMElementWise,
    "hirescam": HiResCAM,
    "fullgrad": FullGrad,
    "corrrise": CorrRISE,
    "fggb": FGGB,
    "constant": Constant,  # the sanity baselines (issue 23)
    "random": Random,
    "centre": Centre,
}
"""Every method by the key the command line and notebooks use."""

_TABLES: dict[str, tuple[str, ...]] = {
    "classification": ("fame", "gradcam", "gradcam-ew", "hirescam", "fullgrad"),
    "verification": ("gradcam", "gradcam-ew", "corrrise", "fggb", "fame"),
}


def registry_key(name: str) -> str:
    """The :data:`METHODS` key of a key or display name, case and punctuation ignored."""
    norm = re.sub(r"[^a-z0-9]", "", name.lower())
    for key, cls in METHODS.items():
        if norm in (re.sub(r"[^a-z0-9]", "", f.lower()) for f in (key, cls.name)):
            return key
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
    """Keys of every method that supports ``task`` (and ``model``: on a ViT, one with a
    ``token_grid``, not those with ``vit = False``)."""
    vit = getattr(model, "token_grid", None) is not None
    usable = [k for k, c in METHODS.items() if getattr(c, "vit", True) or not vit]
    return [k for k in usable if supports(METHODS[k], task)]


def table_methods(task: Task) -> list[str]:
    """Keys of the paper's table rows: Table 2 for classification, Table 1 for verification."""
    return list(_TABLES[_check_task(task)])


def _recipe_settings(cls: type, recipe: Recipe, task: Task) -> dict[str, Any]:
    """The constructor arguments ``recipe`` decides: FAME's config, the face CAMs' target."""
    if cls is Fame:
        return {"config": recipe.fame_config(task)}
    if hasattr(cls, "face_target") and task == "verification":
        return {"face_target": recipe.face_cam_target}
    return {}


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
    ``recipe``: a name or :class:`~fame_utils.recipes.Recipe` (``None``: paper); ``recipes``:
    several, a method they change made once per recipe (``"FAME (paper)"``);
    ``fame_settings``: ``FameConfig`` fields on each recipe's config; ``settings``:
    constructor arguments of every chosen method with that field (``None``: not given).

    Raises:
        ValueError: unknown name or task, both ``recipe`` and ``recipes``, ``config`` with
            ``fame_settings``, or a setting that disagrees with the recipe.
        TypeError: a setting none of the methods has.
    """
    _check_task(task)
    if recipe is not None and recipes is not None:
        raise ValueError("give either recipe= or recipes=, not both")
    if recipes is not None and not list(recipes):
        raise ValueError("recipes is empty: give at least one recipe name")
    chosen = [get_recipe(r) for r in recipes] if recipes is not None else [get_recipe(recipe)]
    given = {k: v for k, v in settings.items() if v is not None}
    fields_of = {k: {f.name for f in dataclasses.fields(c)} for k, c in METHODS.items()}
    known = set().union(*fields_of.values())
    if set(given) - known:
        raise TypeError(
            f"unknown method settings {sorted(set(given) - known)}; the methods' fields: "
            f"{sorted(known - {'name'})}"
        )
    if fame_settings and "config" in given:
        raise ValueError("give either config= or fame_settings=, not both")
    out = []
    for key in map(registry_key, names):
        cls = METHODS[key]
        if not supports(cls, task):
            raise ValueError(
                f"{key} does not support {task}; choose from {available_methods(task)}"
            )
        own = {k: v for k, v in given.items() if k in fields_of[key]}
        differ = _recipe_settings(cls, PAPER, task) != _recipe_settings(cls, REFERENCE, task)
        per_recipe = len(chosen) > 1 and differ
        for r in chosen if per_recipe else chosen[:1]:
            kwargs = _recipe_settings(cls, r, task)
            if fame_settings and "config" in kwargs:
                kwargs["config"] = kwargs["config"].replace(**fame_settings)
            for k in own.keys() & kwargs.keys() if (recipe, recipes) != (None, None) else ():
                if k == "config":
                    r.check_config(own[k], task)
                elif kwargs[k] != own[k]:
                    raise ValueError(
                        f"{key}: {k}={own[k]!r} disagrees with recipe {r.name!r} ({kwargs[k]!r})"
                    )
            method = cls(**{**kwargs, **own})
            if per_recipe:
                method.name = f"{method.name} ({r.name})"
            out.append(method)
    return out


def explain_all(
    methods: Sequence[Any], model: nn.Module, images: Tensor, target: Objective
) -> tuple[dict[str, Attribution], dict[str, float]]:
    """Run every method on the same batch: ``({name: Attribution}, {name: wall seconds})``."""
    maps, seconds = {}, {}
    for method in methods:
        t0 = time.perf_counter()
        maps[method.name] = method(model, images, target)
        seconds[method.name] = time.perf_counter() - t0
    return maps, seconds


def empty_maps(attributions: dict[str, Attribution], labels: Sequence[str]) -> list[str]:
    """``"<label>: <method> e₊|e₋"`` for every all-zero map, rows labelled by ``labels``."""
    found = []
    for name, a in attributions.items():
        for part, maps in (("e₊", a.positive), ("e₋", a.negative)):
            if maps is not None:
                zero = (maps.flatten(1).amax(dim=1) == 0).nonzero().flatten().tolist()
                found += [f"{labels[r]}: {name} {part}" for r in zero]
    return found
