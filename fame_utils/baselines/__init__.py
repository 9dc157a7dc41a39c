"""Baseline attribution methods under FAME's calling convention (:mod:`fame_utils.explain`).

Every method is a callable ``method(model, images, target) -> Attribution(positive,
negative)`` with a display ``name``, so notebooks can loop over them:

.. code-block:: python

    for method in face_methods(threshold):
        maps[method.name] = method(model, probes, SimilarityTarget(gallery_embeddings))

- Classification (paper Table 2): :class:`GradCAM`, :class:`GradCAMElementWise`,
  :class:`HiResCAM`, :class:`FullGrad` (pytorch-grad-cam 1.5.7, min-max scaled maps; see
  :mod:`fame_utils.baselines.cam` for how that differs from FAME's max normalisation).
- Face verification (paper Table 1, Fig. 3): :class:`GradCAM`, :class:`GradCAMElementWise`
  with a batch-safe cosine-similarity target, :class:`CorrRISE`, :class:`FGGB`.
"""

from __future__ import annotations

from ..core import FameConfig
from ..explain import Fame
from .cam import (
    CosineSimilarityTarget,
    FullGrad,
    GradCAM,
    GradCAMElementWise,
    HiResCAM,
    fullgrad_uncovered_biases,
)
from .corrrise import CorrRISE
from .fggb import FGGB

__all__ = [
    "GradCAM",
    "GradCAMElementWise",
    "HiResCAM",
    "FullGrad",
    "CorrRISE",
    "FGGB",
    "CosineSimilarityTarget",
    "fullgrad_uncovered_biases",
    "CLASSIFICATION_METHODS",
    "FACE_METHODS",
    "classification_methods",
    "face_methods",
]

CLASSIFICATION_METHODS: dict[str, type] = {
    "FAME": Fame,
    "Grad-CAM": GradCAM,
    "Grad-CAM-EW": GradCAMElementWise,
    "HiResCAM": HiResCAM,
    "FullGrad": FullGrad,
}
"""Display name -> method class for the classification comparison (Table 2 order)."""

FACE_METHODS: dict[str, type] = {
    "Grad-CAM": GradCAM,
    "Grad-CAM-EW": GradCAMElementWise,
    "CorrRISE": CorrRISE,
    "FGGB": FGGB,
    "FAME": Fame,
}
"""Display name -> method class for the face-verification comparison (Table 1 order)."""


def classification_methods(fame_config: FameConfig | None = None) -> list:
    """[FAME, Grad-CAM, Grad-CAM-EW, HiResCAM, FullGrad] instances with default settings
    (FAME with ``fame_config`` if given), each with a ``name``."""
    fame = Fame(fame_config) if fame_config is not None else Fame()
    return [fame, GradCAM(), GradCAMElementWise(), HiResCAM(), FullGrad()]


def face_methods(
    threshold: float | None = None,
    fame_config: FameConfig | None = None,
    *,
    n_masks: int = 500,
    seed: int = 0,
) -> list:
    """[Grad-CAM, Grad-CAM-EW, CorrRISE, FGGB, FAME] instances for face verification.

    Args:
        threshold: θ for FGGB (EER threshold on the cosine similarity); ``None`` makes FGGB
            read it from ``SimilarityTarget.threshold`` at call time.
        fame_config: FAME settings (verification defaults: early stop ε = 0.01, pixel steps).
        n_masks, seed: CorrRISE mask count and mask seed.
    """
    fame = Fame(fame_config) if fame_config is not None else Fame()
    return [
        GradCAM(),
        GradCAMElementWise(),
        CorrRISE(n_masks=n_masks, seed=seed),
        FGGB(threshold=threshold),
        fame,
    ]
