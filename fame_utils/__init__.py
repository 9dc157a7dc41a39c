"""fame_utils: FAME (Feature Activation Map Explanation) for image networks.

Zhang & Günther, "FAME: Feature Activation Map Explanation on Image Classification
and Face Recognition", CVPR Workshops (XAI4CV) 2026.

Core API: :func:`fame` / :func:`run_fame` with a :class:`FameConfig` and an objective from
:mod:`fame_utils.objectives`; :class:`Fame` and the targets in :mod:`fame_utils.explain`
put FAME under the calling convention shared with the baselines.
"""

from . import objectives
from .core import FameConfig, FameResult, fame, run_fame
from .explain import Attribution, ClassTarget, Fame, SimilarityTarget

__all__ = [
    "Attribution",
    "ClassTarget",
    "Fame",
    "FameConfig",
    "FameResult",
    "SimilarityTarget",
    "fame",
    "objectives",
    "run_fame",
]
__version__ = "0.1.0"
