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

Make them by name through the one registry, :mod:`fame_utils.methods` (``make_methods``);
:func:`classification_methods` and :func:`face_methods` are its paper-table shortcuts.
"""

from __future__ import annotations

from .. import methods as _registry
from ..core import FameConfig
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
    "classification_methods",
    "face_methods",
]


def classification_methods(fame_config: FameConfig | None = None) -> list:
    """Table 2's rows [FAME, Grad-CAM, Grad-CAM-EW, HiResCAM, FullGrad] from the registry
    (:mod:`fame_utils.methods`), FAME with ``fame_config`` if given."""
    return _registry.make_methods(
        _registry.table_methods("classification"), "classification", fame_config=fame_config
    )


def face_methods(
    threshold: float | None = None,
    fame_config: FameConfig | None = None,
    *,
    n_masks: int = 500,
    seed: int = 0,
) -> list:
    """Table 1's rows [Grad-CAM, Grad-CAM-EW, CorrRISE, FGGB, FAME] from the registry.

    Args:
        threshold: θ for FGGB (EER threshold on the cosine similarity); ``None`` makes FGGB
            read it from ``SimilarityTarget.threshold`` at call time.
        fame_config: FAME settings (verification defaults: early stop ε = 0.01, pixel steps).
        n_masks, seed: CorrRISE mask count and mask seed.
    """
    return _registry.make_methods(
        _registry.table_methods("verification"),
        "verification",
        threshold=threshold,
        fame_config=fame_config,
        n_masks=n_masks,
        seed=seed,
    )
