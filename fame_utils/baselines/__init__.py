"""Baseline attribution methods under FAME's calling convention (:mod:`fame_utils.methods`).

- Classification (paper Table 2): :class:`GradCAM`, :class:`GradCAMElementWise`,
  :class:`HiResCAM`, :class:`FullGrad` (pytorch-grad-cam 1.5.7, min-max scaled maps).
- Face verification (paper Table 1, Fig. 3): :class:`GradCAM`, :class:`GradCAMElementWise`
  with a batch-safe cosine-similarity target, :class:`CorrRISE`, :class:`FGGB`.

Make them by name with :func:`fame_utils.make_methods`.
"""
