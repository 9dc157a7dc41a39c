"""Objectives L that FAME descends (paper Sec. 2-3), which are also the targets every
method explains, and :class:`Attribution`, what a method returns.

The one calling convention is ``method(model, images, target) -> Attribution``. A target
is an objective: :class:`ClassLogit` (explain class logits, Table 2) or
:class:`CosineSimilarity` (explain the cosine similarity to frozen partner embeddings,
Table 1 / Fig. 3). FAME descends it; the CAMs, CorrRISE and FGGB explain the same
quantity. :class:`FeatureCell`, :class:`TokenCell` and :class:`Dissimilarity` are FAME
objectives only.

An objective turns the network's response to the current iterate x̄ into **one loss
per sample**; :func:`fame_utils.fame` always steps *down* that loss. Writing your own:

.. code-block:: python

    class MyObjective(Objective):
        def __call__(self, model, inputs):      # inputs: (N, 3, H, W), pixel space
            return model(inputs)[:, 3] ** 2       # -> (N,) on the inputs' device

Override :meth:`Objective.expand` when one image should give several maps (as
:class:`FeatureCell` does, one per cell of a CNN layer, and :class:`TokenCell`, one per
patch token of a transformer block) and :meth:`Objective.subset` when the
objective holds per-sample data (targets, reference embeddings) so that FAME can
split a batch into chunks.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import (
    as_index_tensor,
    check_labels,
    check_model_output,
    check_switch,
    check_threshold,
    model_device,
)
from .hooks import capture_output

__all__ = [
    "Attribution",
    "check_target",
    "Objective",
    "ClassLogit",
    "FeatureCell",
    "TokenCell",
    "cell_objective",
    "CosineSimilarity",
    "Dissimilarity",
]


class Attribution(NamedTuple):
    """What every method returns. ``positive``: (B, H, W) map in [0, 1] (class evidence,
    or e₊ for verification); ``negative``: (B, H, W) e₋ in [0, 1], or ``None`` for methods
    without one; both on the images' device."""

    positive: Tensor
    negative: Tensor | None = None


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

    As a target of the baselines it selects the logit z_o they explain.

    Args:
        targets: class index per image, (B,) ints (or one int for every image).
        absolute: use |z_o| as the reference implementation did (FAME's
            ``FameConfig.absolute_logit`` sets it for a run).
    """

    def __init__(self, targets: int | Sequence[int] | Tensor, *, absolute: bool = False):
        self.targets = check_labels(targets, "targets")
        self.absolute = check_switch(absolute, "absolute")
        self._checked = False

    def __repr__(self) -> str:
        t = self.targets if isinstance(self.targets, int) else self.targets.tolist()
        return f"ClassLogit({t}{', absolute=True' if self.absolute else ''})"

    def indices(self, batch: int) -> Tensor:
        """(batch,) long tensor of class indices, checked against the batch size."""
        return as_index_tensor(self.targets, batch, "ClassLogit targets")

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
        logits = check_model_output(model(inputs))
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

    def _with_rows(self, per_sample: Tensor | None) -> FeatureCell:
        """The same objective bound to ``per_sample`` rows (keeps subclass settings)."""
        bound = copy.copy(self)
        bound.per_sample = per_sample
        return bound

    def _grid(self, out: object) -> Tensor:
        """The layer's output as a (N, C, h, w) grid of cells."""
        if not isinstance(out, Tensor) or out.ndim != 4:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            tokens = isinstance(out, Tensor) and out.ndim == 3
            hint = "; for a transformer's (N, T, C) tokens use TokenCell" if tokens else ""
            raise ValueError(f"FeatureCell needs a (N, C, h, w) activation, got {got}{hint}")
        return out

    def _activation(self, model: nn.Module, inputs: Tensor) -> Tensor:
        return self._grid(capture_output(model, self.layer, inputs))

    def grid_shape(self, model: nn.Module, image_size: tuple[int, int]) -> tuple[int, int]:
        """The layer's (h, w) for inputs of ``image_size`` (one forward pass, no grad)."""
        x = torch.zeros(1, 3, *image_size, device=model_device(model))
        with torch.no_grad():
            h, w = self._activation(model, x).shape[-2:]
        return int(h), int(w)

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
        return expanded, self._with_rows(rows)

    def subset(self, index: slice | Tensor) -> Objective:
        if self.per_sample is None:
            return self
        return self._with_rows(self.per_sample[index])

    def __call__(self, model: nn.Module, inputs: Tensor) -> Tensor:
        if self.per_sample is None:
            raise RuntimeError(f"{type(self).__name__} must be expanded first (fame() does this)")
        a = self._activation(model, inputs)
        rows = self.per_sample.to(a.device)
        n = torch.arange(a.shape[0], device=a.device)
        return a[n, :, rows[:, 0], rows[:, 1]].abs().sum(1)


class TokenCell(FeatureCell):
    """L_a = ‖a[k]‖₁ = Σ_c |a_c[k]| at patch token k of a transformer block's output
    (paper Sec. 3's L_a, applied to tokens): the ViT counterpart of :class:`FeatureCell`.

    The block's output ``a`` is (N, T, C) with ``prefix_tokens`` leading tokens (the class
    token of torchvision's ``EncoderBlock``, index 0) followed by the h × w patch tokens in
    row-major order, T = prefix_tokens + h·w. A cell (row, col) is the patch token at
    index prefix_tokens + row·w + col; its CAM-assumed box is its patch. With
    ``class_token=True`` the class token is explained instead, as the single cell (0, 0)
    of a 1 × 1 grid (its box is the whole image). Batching is as for :class:`FeatureCell`:
    B images × K tokens give B·K samples in one run.

    Args:
        layer: the block (module or dotted name, e.g. ``"encoder.layers.encoder_layer_0"``)
            whose output is (N, T, C).
        cells: (row, col) pairs on the patch grid; ``None``: every patch token, row-major.
        grid: (h, w) patch grid; default: square, √(T − prefix_tokens) per side.
        prefix_tokens: tokens before the patch tokens (1: the class token).
        class_token: explain the class token (token 0) instead of patch tokens.
    """

    def __init__(
        self,
        layer: nn.Module | str,
        cells: Sequence[tuple[int, int]] | Tensor | None = None,
        *,
        grid: Sequence[int] | None = None,
        prefix_tokens: int = 1,
        class_token: bool = False,
        per_sample: Tensor | None = None,
    ):
        super().__init__(layer, cells, per_sample=per_sample)
        if prefix_tokens < 0:
            raise ValueError(f"prefix_tokens must be >= 0, got {prefix_tokens}")
        if class_token and prefix_tokens < 1:
            raise ValueError("class_token=True needs prefix_tokens >= 1 (the class token)")
        self.patch_grid = None if grid is None else (int(grid[0]), int(grid[1]))
        self.prefix_tokens = int(prefix_tokens)
        self.class_token = bool(class_token)

    def _grid(self, out: object) -> Tensor:
        """(N, T, C) tokens → (N, C, h, w) patch grid (or (N, C, 1, 1), the class token)."""
        if not isinstance(out, Tensor) or out.ndim != 3:
            got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(f"TokenCell needs a (N, T, C) token output, got {got}")
        n, t, c = out.shape
        if self.class_token:
            return out[:, :1].transpose(1, 2).reshape(n, c, 1, 1)
        patches = t - self.prefix_tokens
        if self.patch_grid is not None:
            h, w = self.patch_grid
        else:
            h = w = math.isqrt(max(patches, 0))
        if patches < 1 or h * w != patches:
            raise ValueError(
                f"{t} tokens minus {self.prefix_tokens} prefix token(s) do not form a "
                f"{'x'.join(map(str, self.patch_grid or ())) or 'square'} patch grid; "
                "pass grid=(h, w) and prefix_tokens="
            )
        return out[:, self.prefix_tokens :].transpose(1, 2).reshape(n, c, h, w)


def cell_objective(
    model: nn.Module,
    layer: nn.Module | str,
    cells: Sequence[tuple[int, int]] | Tensor | None = None,
    *,
    image_size: tuple[int, int] = (224, 224),
    **token_options: object,
) -> FeatureCell:
    """:class:`FeatureCell` for a layer with (N, C, h, w) output, :class:`TokenCell` for
    one with (N, T, C) tokens (decided by one forward pass without gradient on a zero
    image of ``image_size``). ``token_options`` (``grid``, ``prefix_tokens``,
    ``class_token``; ``None`` values mean the default) go to :class:`TokenCell` and are
    refused for a CNN layer."""
    x = torch.zeros(1, 3, *image_size, device=model_device(model))
    with torch.no_grad():
        out = capture_output(model, layer, x)
    given = {k: v for k, v in token_options.items() if v is not None}
    if isinstance(out, Tensor) and out.ndim == 3:
        return TokenCell(layer, cells, **given)
    if any(v is not False for v in given.values()):
        raise ValueError(
            f"{sorted(token_options)} apply to transformer token layers only; {layer!r} gives "
            f"{tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__}"
        )
    return FeatureCell(layer, cells)


class _EmbeddingObjective(Objective):
    def __init__(self, references: Tensor, threshold: float | None = None):
        if not isinstance(references, Tensor) or references.ndim != 2:
            raise ValueError(
                "references must be a (B, D) tensor of partner embeddings, "
                f"got {getattr(references, 'shape', type(references).__name__)}"
            )
        self.references = references.detach()
        self.threshold = None if threshold is None else check_threshold(threshold, "threshold θ")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(references {tuple(self.references.shape)}, threshold={self.threshold})"

    def check(self, batch: int) -> Tensor:
        """The (batch, D) references, checked against the batch size."""
        if self.references.shape[0] != batch:
            raise ValueError(
                f"{type(self).__name__} got {self.references.shape[0]} reference embeddings "
                f"for {batch} images; pass one partner embedding per image"
            )
        return self.references

    def expand(self, model: nn.Module, images: Tensor) -> tuple[Tensor, Objective]:
        refs = self.check(images.shape[0])
        return images, type(self)(refs.to(images.device), self.threshold)

    def subset(self, index: slice | Tensor) -> Objective:
        return type(self)(self.references[index], self.threshold)

    def similarity(self, model: nn.Module, inputs: Tensor) -> Tensor:
        emb = check_model_output(model(inputs))
        if emb.shape[-1] != self.references.shape[-1]:
            raise ValueError(
                f"embedding size {emb.shape[-1]} differs from the references' "
                f"{self.references.shape[-1]}"
            )
        return F.cosine_similarity(emb, self.references.to(emb.device), dim=1)


class CosineSimilarity(_EmbeddingObjective):
    """L₊ = s = cos(φ(x̄), φ_ref): descending it removes what makes the pair similar,
    giving the e₊ map (paper Fig. 3). ``references`` (B, D) are frozen partner
    embeddings, one per image. ``threshold`` is the verification threshold θ on s (the
    protocol's EER threshold), which FGGB needs; FAME and the CAMs ignore it.

    As a target, FAME explains it with e₊ (L₊ = s) and e₋ (L₋ = 1 − s) in one run."""

    def __call__(self, model: nn.Module, inputs: Tensor) -> Tensor:
        return self.similarity(model, inputs)


def check_target(target: object) -> ClassLogit | CosineSimilarity:
    """``target`` if it is one of the two targets every method explains, else a clear
    ``TypeError``."""
    if not isinstance(target, (ClassLogit, CosineSimilarity)):
        raise TypeError(
            "target must be fame_utils.ClassLogit(classes) or "
            f"fame_utils.CosineSimilarity(references, threshold), got {type(target).__name__}"
        )
    return target


class Dissimilarity(_EmbeddingObjective):
    """L₋ = 1 − s: descending it makes the pair more similar, giving the e₋ map."""

    def __call__(self, model: nn.Module, inputs: Tensor) -> Tensor:
        return 1.0 - self.similarity(model, inputs)
