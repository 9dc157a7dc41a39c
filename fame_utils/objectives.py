"""Objectives L that FAME descends (paper Sec. 2-3).

An objective turns the network's response to the current iterate x̄ into **one loss
per sample**; :func:`fame_utils.fame` always steps *down* that loss. Writing your own:

.. code-block:: python

    class MyObjective(Objective):
        def __call__(self, model, inputs):      # inputs: (N, 3, H, W), pixel space
            return model(inputs)[:, 3] ** 2       # -> (N,) on the inputs' device

Override :meth:`Objective.expand` when one image should give several maps (as
:class:`FeatureCell` does, one per cell) and :meth:`Objective.subset` when the
objective holds per-sample data (targets, reference embeddings) so that FAME can
split a batch into chunks.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import as_index_tensor, model_device
from .hooks import capture_output, resolve_layer

__all__ = [
    "Objective",
    "ClassLogit",
    "FeatureCell",
    "CosineSimilarity",
    "Dissimilarity",
    "resolve_layer",
]


class Objective:
    """Base class: ``objective(model, inputs) -> (N,)`` losses to descend."""

    def expand(self, model: nn.Module, images: Tensor) -> tuple[Tensor, Objective]:
        """Map the user's batch (B, 3, H, W) to the optimisation batch (N, 3, H, W) and
        an objective bound to it. Default: identity (N = B, one map per image)."""
        return images, self

    def subset(self, index: slice | Tensor) -> Objective:
        """The objective for rows ``index`` (a slice or a 1-D index tensor) of the
        (expanded) batch. Default: ``self``, correct for objectives without per-sample data."""
        return self

    def __call__(self, model: nn.Module, inputs: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError


class ClassLogit(Objective):
    """L_cls = z_o, the raw logit of class o (paper Sec. 3, Table 2).

    Descending z_o removes the evidence for class o. The reference code used |z_o|,
    which flips the direction for negative logits; pass ``absolute=True`` to follow it.

    Args:
        targets: class index per image, (B,) ints (or one int for every image).
        absolute: use |z_o| as the reference implementation did.
    """

    def __init__(self, targets: int | Sequence[int] | Tensor, *, absolute: bool = False):
        self.targets = targets if isinstance(targets, int) else torch.as_tensor(targets).reshape(-1)
        self.absolute = absolute
        self._checked = False

    def expand(self, model: nn.Module, images: Tensor) -> tuple[Tensor, Objective]:
        t = as_index_tensor(self.targets, images.shape[0], "targets")
        if int(t.min()) < 0:
            raise ValueError(f"targets must be non-negative class indices, got {t.tolist()}")
        return images, ClassLogit(t.to(images.device), absolute=self.absolute)

    def subset(self, index: slice | Tensor) -> Objective:
        if isinstance(self.targets, int):
            return self
        return ClassLogit(self.targets[index], absolute=self.absolute)

    def __call__(self, model: nn.Module, inputs: Tensor) -> Tensor:
        logits = model(inputs)
        if logits.ndim != 2:
            raise ValueError(f"ClassLogit expects (N, classes) logits, got {tuple(logits.shape)}")
        t = as_index_tensor(self.targets, inputs.shape[0], "targets").to(logits.device)
        if not self._checked:  # one host sync, on the first call only
            if int(t.max()) >= logits.shape[1]:
                raise ValueError(
                    f"targets must lie in [0, {logits.shape[1] - 1}], got {t.tolist()}"
                )
            self._checked = True
        z = logits.gather(1, t[:, None]).squeeze(1)
        return z.abs() if self.absolute else z


class FeatureCell(Objective):
    """L_a = ‖a[k] − 0‖₁ = Σ_c |a_c[k]| at cell k of a module's output (paper Sec. 3, Fig. 2).

    One map per requested cell: a batch of B images and K cells is optimised as B·K
    samples in image-major order (image 0 with cells 0..K-1, then image 1, ...), so
    :func:`fame_utils.fame` returns (B·K, H, W) maps.

    Args:
        layer: the module whose output ``a`` (N, C, h, w) is explained, or its dotted name.
        cells: (row, col) pairs in the layer's h × w grid; ``None`` means every cell,
            row-major.
        per_sample: internal, the cell of each optimisation row after :meth:`expand`.
    """

    def __init__(
        self,
        layer: nn.Module | str,
        cells: Sequence[tuple[int, int]] | Tensor | None = None,
        *,
        per_sample: Tensor | None = None,
    ):
        self.layer = layer
        self.cells = None if cells is None else torch.as_tensor(cells, dtype=torch.long).view(-1, 2)
        self.per_sample = per_sample

    def _activation(self, model: nn.Module, inputs: Tensor) -> Tensor:
        a = capture_output(model, self.layer, inputs)
        if not isinstance(a, Tensor) or a.ndim != 4:
            raise ValueError(
                "FeatureCell needs a (N, C, h, w) activation, got "
                f"{tuple(getattr(a, 'shape', ())) or type(a).__name__}"
            )
        return a

    def grid_shape(self, model: nn.Module, image_size: tuple[int, int]) -> tuple[int, int]:
        """The layer's (h, w) for inputs of ``image_size`` (one forward pass, no grad)."""
        x = torch.zeros(1, 3, *image_size, device=model_device(model))
        with torch.no_grad():
            return tuple(self._activation(model, x).shape[-2:])

    def expand(self, model: nn.Module, images: Tensor) -> tuple[Tensor, Objective]:
        """Repeat each image once per cell and attach the cell of every row."""
        h, w = self.grid_shape(model, tuple(images.shape[-2:]))
        cells = self.cells
        if cells is None:
            rr, cc = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            cells = torch.stack([rr.reshape(-1), cc.reshape(-1)], 1)
        bad = (cells[:, 0] < 0) | (cells[:, 0] >= h) | (cells[:, 1] < 0) | (cells[:, 1] >= w)
        if bool(bad.any()):
            raise ValueError(f"cells {cells[bad].tolist()} lie outside the layer's {h}x{w} grid")
        k = cells.shape[0]
        expanded = images.repeat_interleave(k, dim=0)
        rows = cells.repeat(images.shape[0], 1).to(images.device)
        return expanded, FeatureCell(self.layer, self.cells, per_sample=rows)

    def subset(self, index: slice | Tensor) -> Objective:
        if self.per_sample is None:
            return self
        return FeatureCell(self.layer, self.cells, per_sample=self.per_sample[index])

    def __call__(self, model: nn.Module, inputs: Tensor) -> Tensor:
        if self.per_sample is None:
            raise RuntimeError("FeatureCell must be expanded first (fame() does this)")
        a = self._activation(model, inputs)
        rows = self.per_sample.to(a.device)
        n = torch.arange(a.shape[0], device=a.device)
        return a[n, :, rows[:, 0], rows[:, 1]].abs().sum(1)


class _EmbeddingObjective(Objective):
    def __init__(self, references: Tensor):
        if not isinstance(references, Tensor) or references.ndim != 2:
            raise ValueError(
                "references must be a (B, D) tensor of partner embeddings, "
                f"got {getattr(references, 'shape', type(references).__name__)}"
            )
        self.references = references.detach()

    def expand(self, model: nn.Module, images: Tensor) -> tuple[Tensor, Objective]:
        if self.references.shape[0] != images.shape[0]:
            raise ValueError(
                f"{type(self).__name__} got {self.references.shape[0]} reference embeddings "
                f"for {images.shape[0]} images; pass one partner embedding per image"
            )
        return images, type(self)(self.references.to(images.device))

    def subset(self, index: slice | Tensor) -> Objective:
        return type(self)(self.references[index])

    def similarity(self, model: nn.Module, inputs: Tensor) -> Tensor:
        emb = model(inputs)
        if emb.shape[-1] != self.references.shape[-1]:
            raise ValueError(
                f"embedding size {emb.shape[-1]} differs from the references' "
                f"{self.references.shape[-1]}"
            )
        return F.cosine_similarity(emb, self.references.to(emb.device), dim=1)


class CosineSimilarity(_EmbeddingObjective):
    """L₊ = s = cos(φ(x̄), φ_ref): descending it removes what makes the pair similar,
    giving the e₊ map (paper Fig. 3). ``references`` (B, D) are frozen partner
    embeddings, one per image."""

    def __call__(self, model: nn.Module, inputs: Tensor) -> Tensor:
        return self.similarity(model, inputs)


class Dissimilarity(_EmbeddingObjective):
    """L₋ = 1 − s: descending it makes the pair more similar, giving the e₋ map."""

    def __call__(self, model: nn.Module, inputs: Tensor) -> Tensor:
        return 1.0 - self.similarity(model, inputs)
