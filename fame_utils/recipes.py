"""Recipes: every choice where the paper's text (:data:`PAPER`, the default) and the
authors' code behind Tables 1 and 2 (:data:`REFERENCE`) differ."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from .core import FameConfig


FameTask = Literal["classification", "verification", "cells"]


@dataclass(frozen=True)
class Recipe:
    """The choices on which paper text and reference code differ (paper value first).

    Attributes:
        name: ``"paper"``, ``"reference"`` or a user's own.
        normalization: FAME maps scaled by ``"max"`` (Eq. 4) or ``"minmax"`` (as the CAMs).
        class_logit_absolute: L_cls descends z_o (§3) or |z_o|.
        classification_early_stop: ε for classification: none, or 1e-3 on |z_o|.
        face_early_stop: ε for face verification: 0.01 in both (§4.2).
        face_gray_order: luma weights on the RGB image or on the face network's BGR tensor.
        face_cam_target: face Grad-CAM's target (:mod:`fame_utils.baselines.cam`).
        ties: equal map values in exact-count removal (ROAD, face Delete/Insert): a seeded
            random order or a percentile threshold (``"reference"``).
        tie_seed: seed of the ``"random"`` tie order.
        feature_cell_step_space: where feature-cell FAME (Fig. 2) steps.
        box_convention: ImageNet boxes through Resize + CenterCrop: aspect-preserving
            (``"aspect"``) or each axis scaled as if the image were square (``"per_axis"``).
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

    def fame_fields(self, task: FameTask) -> dict[str, object]:
        """The ``FameConfig`` fields this recipe sets for ``task``: ``"classification"``
        (Table 2), ``"verification"`` (Table 1) or ``"cells"`` (Fig. 2)."""
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
        """This recipe's :class:`~fame_utils.core.FameConfig` for ``task``, ``overrides`` on top."""
        from .core import FameConfig

        return FameConfig(**{**self.fame_fields(task), **overrides})

    def check_config(self, config: FameConfig, task: FameTask) -> None:
        """``ValueError`` naming every field where ``config`` disagrees with this recipe."""
        said = ", ".join(
            f"{k}={getattr(config, k)!r} (recipe: {v!r})"
            for k, v in self.fame_fields(task).items()
            if getattr(config, k) != v
        )
        if said:
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
    """``None`` (→ ``"paper"``), a name or a :class:`Recipe` as a :class:`Recipe`."""
    if isinstance(recipe, Recipe):
        return recipe
    if recipe not in (None, *RECIPES):
        raise ValueError(
            f"unknown recipe {recipe!r}; choose one of {sorted(RECIPES)} "
            "('paper' follows the paper's text, 'reference' the code behind its tables)"
        )
    return RECIPES[recipe or "paper"]
