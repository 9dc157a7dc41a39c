"""Baseline attribution methods under FAME's calling convention (:mod:`fame_utils.methods`).

- Classification (paper Table 2): :class:`GradCAM`, :class:`GradCAMElementWise`,
  :class:`HiResCAM`, :class:`FullGrad` (pytorch-grad-cam 1.5.7, min-max scaled maps).
- Face verification (paper Table 1, Fig. 3): :class:`GradCAM`, :class:`GradCAMElementWise`
  with a batch-safe cosine-similarity target, :class:`CorrRISE`, :class:`FGGB`.

Make them by name with :func:`fame_utils.make_methods`.
"""

from .cam import FullGrad, GradCAM, GradCAMElementWise, HiResCAM, fullgrad_uncovered_biases
from .corrrise import CorrRISE
from .fggb import FGGB

__all__ = [
    "GradCAM",
    "GradCAMElementWise",
    "HiResCAM",
    "FullGrad",
    "CorrRISE",
    "FGGB",
    "fullgrad_uncovered_biases",
]
