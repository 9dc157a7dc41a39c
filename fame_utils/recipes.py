"""Recipes: every choice where the paper's text and the code behind its numbers differ.

A :class:`Recipe` is a frozen bundle of those choices: ``"paper"`` (:data:`PAPER`, the
default everywhere) follows the paper's text, ``"reference"`` (:data:`REFERENCE`) what
the authors' public code did for the published Tables 1 and 2 (from an audit collected in
the project's paper notes; none of that code is copied here). Every consumer (FAME, the
face CAMs, ROAD and face Delete/Insert, the feature cells, the ImageNet loader, the
runner, the CLI, notebooks 04/05) reads its choice from a recipe, so switching
``recipe="paper"`` → ``"reference"`` switches all of them together.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .core import FameConfig

__all__ = ["Recipe", "PAPER", "REFERENCE", "RECIPES", "get_recipe", "RecipeName", "FameTask"]

RecipeName = Literal["paper", "reference"]
FameTask = Literal["classification", "verification", "cells"]


@dataclass(frozen=True)
class Recipe:
    """One consistent set of the choices on which paper text and reference code differ
    (paper value first, then the reference code's).

    Attributes:
        name: ``"paper"`` or ``"reference"`` (or a user's own after :meth:`replace`).
        normalization: FAME maps scaled by ``"max"`` (§3, Eq. 4) or ``"minmax"`` (as
            pytorch-grad-cam's CAMs, so IoU@t compares like with like).
        class_logit_absolute: L_cls descends z_o (§3, ``False``) or |z_o| (``True``, an L1
            loss towards 0 that stalls once the logit reaches 0).
        classification_early_stop: ε for classification: none, or 1e-3 on |z_o|.
        face_early_stop: ε for face verification: 0.01 in both (§4.2).
        face_gray_order: luma weights on the RGB image (``"rgb"``) or on the BGR tensor the
            face network takes (``"bgr"``: 0.2989·B + 0.587·G + 0.114·R).
        face_cam_target: face Grad-CAM's target: the cosine similarity to the frozen
            partner embedding (``"cosine"``, gradient (r̂ − s·ô)/‖o‖) or the dot product
            over a norm product held constant (``"constant_norm"``, gradient r̂/‖o‖).
        ties: pixels of equal map value in exact-count removal (ROAD, face Delete/Insert):
            a seeded random order (``"random"``; the paper is silent) or a percentile
            threshold without tie-break (``"reference"``, pytorch-grad-cam style).
        tie_seed: seed of the ``"random"`` tie order (recorded with the results).
        feature_cell_step_space: where feature-cell FAME (L_a, Fig. 2) steps: the
            normalised tensor as for classification (``"normalized"``; the paper is
            silent) or [0, 1] pixels (``"pixel"``).
        box_convention: ImageNet boxes through Resize + CenterCrop: aspect-preserving
            (``"aspect"``, correct) or each axis scaled as if the image were square, then the
            crop offset subtracted (``"per_axis"``).

    Neither recipe reproduces the earlier face scripts' ranking of a jet-coloured,
    re-blurred RGB rendering of e₊ for Delete/Insert; both rank the e₊ map itself.
    """

    name: str = "paper"
    normalization: Literal["max", "minmax"] = "max"
    class_logit_absolute: bool = False
    classification_early_stop: float | None = None
    face_early_stop: float | None = 0.01
    face_gray_order: Literal["rgb", "bgr"] = "rgb"
    face_cam_target: Literal["cosine", "constant_norm"] = "cosine"
    ties: Literal["random", "reference"] = "random"
    tie_seed: int = 0
    feature_cell_step_space: Literal["normalized", "pixel"] = "normalized"
    box_convention: Literal["aspect", "per_axis"] = "aspect"

    def replace(self, **changes: object) -> Recipe:
        """A copy with some fields changed (e.g. ``PAPER.replace(ties="reference")``)."""
        return replace(self, **changes)

    def as_dict(self) -> dict[str, object]:
        """Plain dict of every field (for ``run.json`` and cache keys)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def fame_fields(self, task: FameTask) -> dict[str, object]:
        """The :class:`~fame_utils.core.FameConfig` fields this recipe sets for ``task``:
        ``"classification"`` (Table 2: normalised steps, L_cls), ``"verification"``
        (Table 1, Fig. 3: pixel steps, ε = 0.01, the face gray order) or ``"cells"``
        (feature cells, Fig. 2)."""
        if task == "classification":
            return {
                "normalization": self.normalization,
                "early_stop": self.classification_early_stop,
                "absolute_logit": self.class_logit_absolute,
                "step_space": "normalized",
            }
        if task == "verification":
            return {
                "normalization": self.normalization,
                "early_stop": self.face_early_stop,
                "step_space": "pixel",
                "gray_order": self.face_gray_order,
            }
        if task == "cells":
            return {"step_space": self.feature_cell_step_space}
        raise ValueError(f"task must be 'classification', 'verification' or 'cells', got {task!r}")

    def fame_config(self, task: FameTask = "classification", **overrides: object) -> FameConfig:
        """The FAME configuration of this recipe for ``task`` (other fields at their
        defaults, ``overrides`` on top): what :class:`~fame_utils.methods.Fame` runs when
        no config is given. ``print()`` it to see every setting before a run."""
        from .core import FameConfig

        return FameConfig(**{**self.fame_fields(task), **overrides})

    def check_config(self, config: FameConfig, task: FameTask) -> None:
        """Raise ``ValueError`` naming every field where ``config`` disagrees with this
        recipe for ``task`` (a recipe never rewrites a config it is given)."""
        wrong = {
            k: (getattr(config, k), v)
            for k, v in self.fame_fields(task).items()
            if getattr(config, k) != v
        }
        if wrong:
            said = ", ".join(f"{k}={got!r} (recipe: {want!r})" for k, (got, want) in wrong.items())
            raise ValueError(
                f"the config disagrees with recipe {self.name!r} for {task}: {said}; give "
                f"only one of them, or build the config with get_recipe({self.name!r})"
                f".fame_config({task!r}, ...)"
            )


PAPER = Recipe()
REFERENCE = Recipe(
    name="reference",
    normalization="minmax",
    class_logit_absolute=True,
    classification_early_stop=1e-3,
    face_early_stop=0.01,
    face_gray_order="bgr",
    face_cam_target="constant_norm",
    ties="reference",
    feature_cell_step_space="pixel",
    box_convention="per_axis",
)
RECIPES: dict[str, Recipe] = {"paper": PAPER, "reference": REFERENCE}


def get_recipe(recipe: str | Recipe | None = None) -> Recipe:
    """Resolve ``None`` (→ ``"paper"``), a name or a :class:`Recipe` to a :class:`Recipe`.

    Raises:
        ValueError: an unknown name (the message lists the known ones).
        TypeError: neither a name nor a Recipe.
    """
    if recipe is None:
        return PAPER
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, str):
        try:
            return RECIPES[recipe]
        except KeyError:
            raise ValueError(
                f"unknown recipe {recipe!r}; choose one of {sorted(RECIPES)} "
                "('paper' follows the paper's text, 'reference' the code behind its tables)"
            ) from None
    raise TypeError(f"recipe must be a name or a Recipe, got {type(recipe).__name__}")
