"""The method registry: the one place that knows every attribution method by name.

The command line (``python -m fame_utils --methods ...``), the experiment runner and the
notebooks make methods here::

    from fame_utils.methods import make_methods, available_methods

    available_methods("verification")   # ['gradcam', 'gradcam-ew', 'corrrise', 'fggb', 'fame']
    make_methods(["fame", "gradcam"], "classification", recipe="reference")
    make_methods(["fame", "gradcam"], "classification", recipes=("paper", "reference"))
    # -> FAME (paper), FAME (reference), Grad-CAM: recipe-dependent methods once per recipe

Names are matched ignoring case and punctuation (``"Grad-CAM-EW"``, ``"gradcam_ew"``).

**Adding a method**: write a callable class under the shared convention of
:mod:`fame_utils.explain` (``name``; optionally ``targets`` and ``cache_settings()``) and
:func:`register` a :class:`MethodSpec` for it below: its key, the target types it
supports, a factory, the keyword settings the factory reads, and the fields that change
speed or display only (kept out of the cache key).
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .baselines.cam import FullGrad, GradCAM, GradCAMElementWise, HiResCAM, token_grid_of
from .baselines.corrrise import CorrRISE
from .baselines.fggb import FGGB
from .baselines.sanity import Centre, Constant, Random
from .core import FameConfig
from .data.items import Task
from .explain import ClassTarget, Fame, SharedRuns, SimilarityTarget
from .recipes import Recipe, get_recipe

__all__ = [
    "MethodSpec",
    "register",
    "get_spec",
    "available_methods",
    "table_methods",
    "make_methods",
    "cache_settings",
    "supports",
]

_TASK_TARGET: dict[str, type] = {"classification": ClassTarget, "verification": SimilarityTarget}


@dataclass(frozen=True)
class MethodSpec:
    """How to make one method.

    Attributes:
        key: the name the command line uses (``"gradcam-ew"``).
        cls: the method class (its ``name`` default is the display name).
        targets: target types it supports (``ClassTarget`` and/or ``SimilarityTarget``).
        factory: ``factory(recipe, task, settings) -> method``; ``recipe`` is a
            :class:`~fame_utils.recipes.Recipe` or ``None`` (the method's own defaults),
            ``settings`` the keyword settings of :func:`make_methods` it accepts.
        settings: keyword settings of :func:`make_methods` the factory reads.
        runtime_fields: fields that change speed or display but not maps (left out of the
            cache key); ``name`` is always left out.
        recipe_dependent: ``recipe_dependent(task)`` is True when the recipe changes the
            maps for that task (such methods appear once per recipe in
            ``make_methods(..., recipes=...)``).
        vit: runs on Vision Transformers (models with a ``token_grid``): FAME needs only
            the input gradient, the CAMs fold the tokens to the patch grid
            (:func:`fame_utils.baselines.cam.vit_reshape_transform`); FullGrad does not
            (pytorch-grad-cam leaves out the LayerNorm/Linear biases its completeness needs).
    """

    key: str
    cls: type
    targets: tuple[type, ...]
    factory: Callable[[Recipe | None, Task, Mapping[str, Any]], Any]
    settings: tuple[str, ...] = ()
    runtime_fields: frozenset[str] = frozenset()
    recipe_dependent: Callable[[Task], bool] = lambda task: False
    vit: bool = True


_REGISTRY: dict[str, MethodSpec] = {}

_TABLES: dict[str, tuple[str, ...]] = {
    "classification": ("fame", "gradcam", "gradcam-ew", "hirescam", "fullgrad"),
    "verification": ("gradcam", "gradcam-ew", "corrrise", "fggb", "fame"),
}
"""The rows of the paper's Table 2 (classification) and Table 1 (verification), in order."""


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def register(spec: MethodSpec) -> MethodSpec:
    """Add a method to the registry (its key must be new)."""
    k = _norm(spec.key)
    if k in _REGISTRY:
        raise ValueError(f"a method named {spec.key!r} is already registered")
    _REGISTRY[k] = spec
    return spec


def get_spec(name: str) -> MethodSpec:
    """The :class:`MethodSpec` of a key or display name (case and punctuation ignored)."""
    try:
        return _REGISTRY[_norm(name)]
    except KeyError:
        known = [s.key for s in _REGISTRY.values()]
        raise ValueError(f"unknown method {name!r}; choose from {known}") from None


def available_methods(task: Task, model: Any = None) -> list[str]:
    """Keys of every registered method that supports ``task`` (and ``model``: a Vision
    Transformer, one with a ``token_grid``, leaves out methods registered with
    ``vit=False``), in registry order."""
    target = _TASK_TARGET[_check_task(task)]
    vit = model is not None and token_grid_of(model) is not None
    return [s.key for s in _REGISTRY.values() if target in s.targets and (s.vit or not vit)]


def table_methods(task: Task) -> list[str]:
    """Keys of the paper's table rows: Table 2 for classification, Table 1 for verification."""
    return list(_TABLES[_check_task(task)])


def supports(method: Any, task: Task) -> bool:
    """Whether ``method`` declares (``targets``) or is registered with ``task``'s target."""
    spec = _spec_of(method)
    targets = getattr(method, "targets", None) or (
        spec.targets if spec else tuple(_TASK_TARGET.values())
    )
    return _TASK_TARGET[_check_task(task)] in tuple(targets)


def cache_settings(method: Any) -> dict[str, Any]:
    """The settings ``method``'s maps depend on (the method part of the cache key).

    ``method.cache_settings()`` where the method declares it; otherwise its public
    (dataclass init) fields minus ``name``, its ``runtime_fields`` and those of its
    registered :class:`MethodSpec`; a plain function is identified by its qualified name.
    """
    own = getattr(method, "cache_settings", None)
    if callable(own):
        return dict(own())
    if isinstance(method, (types.FunctionType, types.BuiltinFunctionType)):
        return {"function": f"{method.__module__}.{method.__qualname__}"}
    spec = _spec_of(method)
    skip = {"name", *getattr(method, "runtime_fields", ()), *(spec.runtime_fields if spec else ())}
    if dataclasses.is_dataclass(method):
        values = {f.name: getattr(method, f.name) for f in dataclasses.fields(method) if f.init}
    else:
        values = dict(vars(method)) if hasattr(method, "__dict__") else {}
    return {k: v for k, v in values.items() if not k.startswith("_") and k not in skip}


def make_methods(
    names: Iterable[str],
    task: Task,
    *,
    recipe: Recipe | str | None = None,
    recipes: Sequence[Recipe | str] | None = None,
    **settings: Any,
) -> list:
    """Method instances for ``task`` from keys or display names, in the order given.

    Args:
        names: e.g. ``["fame", "gradcam"]`` (see :func:`available_methods`).
        task: ``"classification"`` or ``"verification"``.
        recipe: ``"paper"``, ``"reference"`` or a :class:`~fame_utils.recipes.Recipe` for
            every method; ``None`` leaves each method at its own defaults (the paper's).
        recipes: several recipes instead: methods the recipe changes (FAME; the face CAMs'
            target) are made once per recipe and named ``"FAME (paper)"``,
            ``"FAME (reference)"``; the others once, with the first recipe.
        **settings: ``fame_config`` (:class:`~fame_utils.core.FameConfig`),
            ``threshold`` (FGGB's θ), ``n_masks`` and ``seed`` (CorrRISE). ``None``
            values count as not given.

    Raises:
        ValueError: unknown name, a method that does not support ``task``, or both
            ``recipe`` and ``recipes``.
        TypeError: a setting no registered method reads.
    """
    _check_task(task)
    if recipe is not None and recipes is not None:
        raise ValueError("give either recipe= or recipes=, not both")
    known = {s for spec in _REGISTRY.values() for s in spec.settings}
    unknown = set(settings) - known
    if unknown:
        raise TypeError(f"unknown method settings {sorted(unknown)}; known: {sorted(known)}")
    given = {k: v for k, v in settings.items() if v is not None}
    several = recipes is not None
    if several:
        chosen: list[Recipe | None] = [get_recipe(r) for r in recipes]
        if not chosen:
            raise ValueError("recipes is empty: give at least one recipe name")
    else:
        chosen = [None if recipe is None else get_recipe(recipe)]
    out = []
    for raw in names:
        spec = get_spec(raw)
        if _TASK_TARGET[task] not in spec.targets:
            raise ValueError(
                f"{spec.key} does not support {task}; choose from {available_methods(task)}"
            )
        own = {k: v for k, v in given.items() if k in spec.settings}
        per_recipe = several and spec.recipe_dependent(task)
        for r in chosen if per_recipe else chosen[:1]:
            method = spec.factory(r, task, own)
            if per_recipe:
                method.name = f"{method.name} ({r.name})"
            out.append(method)
    _share_fame_runs(out, task)
    return out


def _share_fame_runs(methods: Sequence[Any], task: Task) -> None:
    """Give FAME methods whose optimisation for ``task`` is identical (equal
    :meth:`~fame_utils.explain.Fame.run_key`, e.g. ``FAME (paper)`` and
    ``FAME (reference)`` on faces) one :class:`~fame_utils.explain.SharedRuns`, so each
    batch is optimised once for all of them; their maps are unchanged."""
    groups: dict[Any, list[Fame]] = {}
    for m in methods:
        if isinstance(m, Fame):
            groups.setdefault(m.run_key(task), []).append(m)
    for group in groups.values():
        if len(group) > 1:
            shared = SharedRuns(len(group))
            for m in group:
                m.shared = shared


def _check_task(task: str) -> Task:
    if task not in _TASK_TARGET:
        raise ValueError(f"task must be 'classification' or 'verification', got {task!r}")
    return task  # type: ignore[return-value]


def _spec_of(method: Any) -> MethodSpec | None:
    for spec in _REGISTRY.values():
        if type(method) is spec.cls:
            return spec
    return None


def _accepts(cls: type, option: str) -> bool:
    return option in inspect.signature(cls).parameters


# ----------------------------------------------------------------------------- methods


def _fame(recipe: Recipe | None, task: Task, settings: Mapping[str, Any]) -> Fame:
    return Fame(settings.get("fame_config") or FameConfig(), recipe=recipe)


def _face_cam_option(cls: type, recipe: Recipe) -> dict[str, Any]:
    """The face CAM target the recipe chooses, as the constructor takes it."""
    if _accepts(cls, "face_target"):
        return {"face_target": recipe.face_cam_target}
    if _accepts(cls, "target"):
        return {"target": recipe.face_cam_target}
    if _accepts(cls, "recipe"):
        return {"recipe": recipe}
    return {}


def _cam(cls: type) -> Callable[[Recipe | None, Task, Mapping[str, Any]], Any]:
    def factory(recipe: Recipe | None, task: Task, settings: Mapping[str, Any]) -> Any:
        if recipe is None or task != "verification":
            return cls()
        return cls(**_face_cam_option(cls, recipe))

    return factory


def _face_cam_dependent(cls: type) -> Callable[[Task], bool]:
    return lambda task: task == "verification" and bool(_face_cam_option(cls, get_recipe()))


_BOTH = (ClassTarget, SimilarityTarget)
register(MethodSpec("fame", Fame, _BOTH, _fame, ("fame_config",), recipe_dependent=lambda t: True))
for _key, _cls in (("gradcam", GradCAM), ("gradcam-ew", GradCAMElementWise)):
    register(MethodSpec(_key, _cls, _BOTH, _cam(_cls), recipe_dependent=_face_cam_dependent(_cls)))
register(MethodSpec("hirescam", HiResCAM, (ClassTarget,), _cam(HiResCAM)))
register(MethodSpec("fullgrad", FullGrad, (ClassTarget,), _cam(FullGrad), vit=False))
register(
    MethodSpec(
        "corrrise",
        CorrRISE,
        _BOTH,
        lambda recipe, task, s: CorrRISE(**s),
        ("n_masks", "seed"),
        runtime_fields=frozenset({"batch_size", "progress"}),
    )
)
register(
    MethodSpec(
        "fggb",
        FGGB,
        (SimilarityTarget,),
        lambda recipe, task, s: FGGB(**s),
        ("threshold",),
        runtime_fields=frozenset({"chunk_size", "progress"}),
    )
)
# sanity baselines (issue 23): reference rows every table should carry; ``seed`` seeds Random
register(MethodSpec("constant", Constant, _BOTH, lambda recipe, task, s: Constant()))
register(MethodSpec("random", Random, _BOTH, lambda r, t, s: Random(**s), ("seed",)))
register(MethodSpec("centre", Centre, _BOTH, lambda recipe, task, s: Centre()))
