"""Receptive fields across depth: feature-cell attributions against CAM's assumption
(paper Sec. 3, Fig. 2).

CAM methods upsample an h × w feature map to the H × W image, which assumes that cell
(i, j) "sees" the patch rows [i·H/h, (i+1)·H/h), columns [j·W/w, (j+1)·W/w) — the
**CAM-assumed box**. FAME can test that assumption directly: descend
L_a = ‖a[k] − 0‖₁ = Σ_c |a_c[k]| for one cell k of layer a and look where the input had to
change. This module

- explains many cells of a layer in one batched FAME run (:func:`run_cells`,
  :func:`explain_cells`), keeping the unblurred Δx so that σ can change without
  re-optimising;
- gives each cell its CAM-assumed box (:func:`cam_boxes`) and the layer's **theoretical
  receptive field** (:func:`receptive_field`), traced from the operations the network
  actually runs (convolutions, pooling, explicit padding such as TensorFlow "same",
  residual additions and concatenations), plus an empirical, gradient-based check
  (:func:`empirical_receptive_field`);
- measures, per cell, the share of attribution mass inside the CAM box
  (:func:`mass_in_box`), the distance of the attribution's centre of mass to the cell's
  centre (:func:`center_of_mass`, :func:`cell_measures`) and the area that holds half of
  the mass (:func:`mass_area`), and aggregates them over images and depths into a
  :class:`pandas.DataFrame` (:func:`measure_layers`, :func:`summarize_by_depth`);
- draws a contact sheet of all cells of a layer (:func:`plot_contact_sheet`), a few cells
  per depth (:func:`plot_cells_by_depth`) and the measurements against depth
  (:func:`plot_measurements`).

Coordinates: a box ``(x0, y0, x1, y1)`` is half-open in input pixels — it holds the pixels
with column index x0 ≤ x < x1 and row index y0 ≤ y < y1, so pixel k spans [k, k+1) and its
centre is k + 0.5. Centres of mass and cell centres use the same continuous coordinates.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten
from tqdm.auto import tqdm

from ._checks import check_images, model_device
from .core import FameConfig, FameResult, run_fame
from .objectives import FeatureCell, resolve_layer
from .postprocess import gaussian_blur

__all__ = [
    "DEFAULT_CELL_BATCH",
    "default_cell_batch",
    "CellAttributions",
    "ReceptiveField",
    "all_cells",
    "sample_cells",
    "cells_at",
    "cam_boxes",
    "cell_centers",
    "run_cells",
    "explain_cells",
    "receptive_field",
    "empirical_receptive_field",
    "clip_boxes",
    "mass_in_box",
    "center_of_mass",
    "mass_area",
    "cell_measures",
    "measure_layers",
    "summarize_by_depth",
    "describe_measurements",
    "DepthRow",
    "plot_contact_sheet",
    "plot_cells_by_depth",
    "plot_measurements",
    "cell_explorer",
]

DEFAULT_CELL_BATCH = {"cpu": 16, "cuda": 64}
"""Samples (image copies × cells) optimised together when the config sets no
``batch_size``, per device type (others use the CPU value). On a CPU, larger chunks run
*slower* per sample (EfficientNet-Lite0 at 224 px, 2 cores: ~16 ms per sample-iteration
in chunks of 16, ~140 ms in one chunk of 49, the activations no longer fit the caches and
page faults pile up); on a GPU 64 copies of a 224 px image keep a ResNet-50's or
EfficientNet-Lite0's activations to a few GiB."""


def default_cell_batch(device: torch.device | str) -> int:
    """The chunk size :func:`run_cells` uses on ``device`` when the config sets none."""
    kind = torch.device(device).type
    return DEFAULT_CELL_BATCH.get(kind, DEFAULT_CELL_BATCH["cpu"])


# --------------------------------------------------------------------------------------
# Cells and CAM boxes
# --------------------------------------------------------------------------------------


def _as_cells(cells: Sequence[tuple[int, int]] | Tensor) -> Tensor:
    t = torch.as_tensor(cells)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"cells must be integer (row, col) pairs, got dtype {t.dtype}")
    t = t.long()
    if t.numel() == 0 or t.shape[-1] != 2:
        raise ValueError(f"cells must be a (K, 2) list of (row, col) pairs, got {tuple(t.shape)}")
    return t.reshape(-1, 2)


def _check_grid(grid: Sequence[int]) -> tuple[int, int]:
    h, w = (int(v) for v in grid)
    if h < 1 or w < 1:
        raise ValueError(f"grid must be a positive (h, w), got {tuple(grid)}")
    return h, w


def all_cells(grid: Sequence[int]) -> Tensor:
    """Every cell of an h × w grid, row-major: (h·w, 2) long tensor of (row, col)."""
    h, w = _check_grid(grid)
    rr, cc = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([rr.reshape(-1), cc.reshape(-1)], 1)


def sample_cells(grid: Sequence[int], k: int | None, seed: int = 0) -> Tensor:
    """``k`` distinct cells of an h × w grid drawn with a fixed seed, sorted row-major;
    all cells when ``k`` is ``None`` or ≥ h·w. Returns a (K, 2) long tensor."""
    cells = all_cells(grid)
    if k is None or k >= cells.shape[0]:
        return cells
    if k < 1:
        raise ValueError(f"k must be >= 1 or None, got {k}")
    g = torch.Generator().manual_seed(int(seed))
    pick = torch.randperm(cells.shape[0], generator=g)[:k].sort().values
    return cells[pick]


def cells_at(grid: Sequence[int], positions: Sequence[tuple[float, float]]) -> Tensor:
    """The cells under relative image positions (y, x) in [0, 1) — the same image point
    at every depth. Returns (K, 2) long (row, col)."""
    h, w = _check_grid(grid)
    pos = torch.as_tensor(positions, dtype=torch.float64).reshape(-1, 2)
    if bool(((pos < 0) | (pos > 1)).any()):
        raise ValueError(f"positions must lie in [0, 1], got {pos.tolist()}")
    rows = (pos[:, 0] * h).floor().long().clamp(0, h - 1)
    cols = (pos[:, 1] * w).floor().long().clamp(0, w - 1)
    return torch.stack([rows, cols], 1)


def cam_boxes(
    grid: Sequence[int], image_size: Sequence[int], cells: Sequence | Tensor | None = None
) -> Tensor:
    """CAM-assumed boxes: the image region that upsampling an h × w map to H × W assigns
    to each cell, rows [i·H/h, (i+1)·H/h) and columns [j·W/w, (j+1)·W/w).

    Args:
        grid: (h, w) of the layer.
        image_size: (H, W) of the input.
        cells: (K, 2) (row, col); ``None``: every cell, row-major.

    Returns:
        (K, 4) float64 ``(x0, y0, x1, y1)``, half-open, in input pixels (CPU).
    """
    h, w = _check_grid(grid)
    H, W = (int(v) for v in image_size)
    c = all_cells((h, w)) if cells is None else _as_cells(cells)
    i, j = c[:, 0].double(), c[:, 1].double()
    return torch.stack([j * W / w, i * H / h, (j + 1) * W / w, (i + 1) * H / h], 1)


def cell_centers(
    grid: Sequence[int], image_size: Sequence[int], cells: Sequence | Tensor | None = None
) -> Tensor:
    """Centres of the CAM boxes: (K, 2) float64 ``(x, y)`` = ((j+½)·W/w, (i+½)·H/h)."""
    b = cam_boxes(grid, image_size, cells)
    return torch.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], 1)


def clip_boxes(boxes: Tensor, image_size: Sequence[int]) -> Tensor:
    """Boxes (..., 4) ``(x0, y0, x1, y1)`` clipped to an H × W image."""
    H, W = (int(v) for v in image_size)
    lo = boxes.new_tensor([0, 0, 0, 0])
    hi = boxes.new_tensor([W, H, W, H])
    return torch.minimum(torch.maximum(boxes, lo), hi)


# --------------------------------------------------------------------------------------
# Explaining cells
# --------------------------------------------------------------------------------------


@dataclass
class CellAttributions:
    """FAME run over K cells of one layer for B images (paper Fig. 2, L_a).

    Attributes:
        result: the underlying :class:`~fame_utils.core.FameResult`; its ``delta`` is the
            unblurred Δx of the B·K samples in image-major order.
        cells: (K, 2) long (row, col) of the explained cells.
        grid: (h, w) of the layer's output.
        image_size: (H, W) of the input.
        layer: the layer as given (module or dotted name).
    """

    result: FameResult
    cells: Tensor
    grid: tuple[int, int]
    image_size: tuple[int, int]
    layer: object = field(repr=False, default=None)

    @property
    def num_images(self) -> int:
        return self.result.delta.shape[0] // self.cells.shape[0]

    @property
    def delta(self) -> Tensor:
        """(B, K, H, W) unblurred Δx = |gray(x̄) − gray(x)| (step-space units)."""
        return self.result.delta.view(self.num_images, self.cells.shape[0], *self.image_size)

    @property
    def config(self) -> FameConfig:
        return self.result.config

    def maps(
        self,
        *,
        sigma: float | None = None,
        kernel_size: int | None = None,
        normalization: str | None = None,
        warn_empty: bool = True,
    ) -> Tensor:
        """(B, K, H, W) blurred, normalised maps in [0, 1]; σ, kernel size and normalisation
        default to the run's config and can be changed without re-optimising."""
        m = self.result.maps(
            sigma=sigma, kernel_size=kernel_size, normalization=normalization, warn_empty=warn_empty
        )
        return m.view(self.num_images, self.cells.shape[0], *self.image_size)

    def blurred(self, *, sigma: float | None = None, kernel_size: int | None = None) -> Tensor:
        """(B, K, H, W) blurred Δx without normalisation (mass-preserving up to the
        mirrored borders), the map the blurred measurements use."""
        k = self.config.kernel_size if kernel_size is None else kernel_size
        s = self.config.sigma if sigma is None else sigma
        return gaussian_blur(self.result.delta, k, s).view_as(self.delta)

    def cam_boxes(self) -> Tensor:
        """(K, 4) CAM-assumed boxes of the cells (see :func:`cam_boxes`)."""
        return cam_boxes(self.grid, self.image_size, self.cells)

    def cell_centers(self) -> Tensor:
        """(K, 2) ``(x, y)`` centres of the CAM boxes."""
        return cell_centers(self.grid, self.image_size, self.cells)


def _cell_config(
    config: FameConfig | None, overrides: dict, model: nn.Module | None = None
) -> FameConfig:
    cfg = config or FameConfig()
    if overrides:
        cfg = cfg.replace(**overrides)
    if cfg.batch_size is None:
        device = model_device(model) if model is not None else torch.device("cpu")
        cfg = cfg.replace(batch_size=default_cell_batch(device))
    return cfg


def run_cells(
    model: nn.Module,
    images: Tensor,
    layer: nn.Module | str,
    cells: Sequence[tuple[int, int]] | Tensor | None = None,
    config: FameConfig | None = None,
    **overrides,
) -> CellAttributions:
    """FAME for K cells of ``layer`` on B images in one batched run (paper Fig. 2).

    Each image is copied once per cell and the B·K copies are optimised together with
    L_a = Σ_c |a_c[k]| (:class:`~fame_utils.objectives.FeatureCell`, whose hook stops the
    forward pass at ``layer``), in chunks of ``config.batch_size`` samples
    (:func:`default_cell_batch` of the model's device when the config sets none).

    Args:
        model: CNN in eval mode taking (B, 3, H, W) [0, 1] RGB; any module whose output is
            (N, C, h, w) can be explained.
        images: float (B, 3, H, W) in [0, 1], on any device.
        layer: the module or its dotted name.
        cells: (K, 2) (row, col) pairs; ``None``: all h·w cells, row-major.
        config: :class:`~fame_utils.core.FameConfig`; ``overrides`` replace single fields.

    Returns:
        :class:`CellAttributions` holding the unblurred Δx (B, K, H, W) on the images' device.
    """
    check_images(images)
    cfg = _cell_config(config, overrides, model)
    objective = FeatureCell(layer, None if cells is None else _as_cells(cells))
    grid = objective.grid_shape(model, tuple(images.shape[-2:]))
    cell_t = all_cells(grid) if cells is None else _as_cells(cells)
    result = run_fame(model, images, FeatureCell(layer, cell_t), cfg)
    return CellAttributions(
        result=result,
        cells=cell_t,
        grid=(int(grid[0]), int(grid[1])),
        image_size=(int(images.shape[-2]), int(images.shape[-1])),
        layer=layer,
    )


def explain_cells(
    model: nn.Module,
    images: Tensor,
    layer: nn.Module | str,
    cells: Sequence[tuple[int, int]] | Tensor | None = None,
    config: FameConfig | None = None,
    **overrides,
) -> Tensor:
    """FAME maps of K cells of ``layer``: (B, K, H, W) in [0, 1] on the images' device.

    Same arguments as :func:`run_cells` (which keeps the unblurred Δx for re-blurring);
    ``cells=None`` explains all h·w cells, row-major, so ``maps[b].view(h, w, H, W)`` is the
    contact sheet of image b."""
    return run_cells(model, images, layer, cells, config, **overrides).maps()


# --------------------------------------------------------------------------------------
# Theoretical receptive field, traced from the operations the network runs
# --------------------------------------------------------------------------------------


@dataclass
class _Axis:
    """Per-cell input interval [lo, hi] (inclusive pixel indices) along one axis, and the
    jump (input pixels per cell) used to extrapolate to padded positions."""

    lo: Tensor  # (n,) float64
    hi: Tensor  # (n,) float64
    jump: float

    @property
    def n(self) -> int:
        return self.lo.numel()

    def at(self, idx: Tensor) -> tuple[Tensor, Tensor]:
        """Intervals of (possibly out-of-range, i.e. padded) indices, extrapolated with
        the jump beyond either end."""
        n = self.n
        inside = idx.clamp(0, n - 1)
        shift = (idx - inside).double() * self.jump
        return self.lo[inside] + shift, self.hi[inside] + shift

    def window(self, n_out: int, kernel: int, stride: int, pad: int, dilation: int) -> _Axis:
        o = torch.arange(n_out).view(-1, 1)
        t = torch.arange(kernel).view(1, -1)
        lo, hi = self.at(o * stride - pad + t * dilation)
        return _Axis(lo.amin(1), hi.amax(1), self.jump * stride)

    def shifted(self, n_out: int, before: int) -> _Axis:
        lo, hi = self.at(torch.arange(n_out) - before)
        return _Axis(lo, hi, self.jump)

    def adaptive(self, n_out: int) -> _Axis:
        n = self.n
        o = torch.arange(n_out)
        start = (o * n) // n_out
        end = -((-(o + 1) * n) // n_out) - 1  # ceil((o+1)·n/n_out) − 1
        width = int((end - start).max()) + 1
        idx = torch.minimum(start.view(-1, 1) + torch.arange(width).view(1, -1), end.view(-1, 1))
        return _Axis(self.lo[idx].amin(1), self.hi[idx].amax(1), self.jump * n / n_out)

    def broadcast(self, n_out: int) -> _Axis:
        """A size-1 axis read by every output cell (e.g. a squeeze-excite gate)."""
        return _Axis(self.lo.expand(n_out).clone(), self.hi.expand(n_out).clone(), 0.0)

    def reduced(self) -> _Axis:
        """The whole axis collapsed to one cell (a mean/max over it with keepdim)."""
        return _Axis(self.lo.min().view(1), self.hi.max().view(1), self.jump * self.n)


@dataclass
class _Info:
    dims: tuple[int, int]  # positions of the (y, x) axes in the tensor
    ndim: int
    y: _Axis
    x: _Axis


class _Unknown:
    """Marks a tensor whose spatial dependence the tracer cannot follow."""

    def __init__(self, op: str):
        self.op = op


def _pair(v, name: str) -> tuple[int, int]:
    if isinstance(v, int):
        return v, v
    t = tuple(int(a) for a in v)
    if len(t) == 1:
        return t[0], t[0]
    if len(t) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {v!r}")
    return t  # type: ignore[return-value]


def _arg(args, kwargs, pos: int, name: str, default):
    if len(args) > pos:
        return args[pos]
    return kwargs.get(name, default)


class _RFTracer(TorchFunctionMode):
    """Follows, for every tensor computed from the input, which input interval each of its
    spatial cells depends on (Araujo et al., Distill 2019, generalised to per-cell
    intervals so that branches, broadcasting and asymmetric padding compose exactly)."""

    _CONV = {"conv2d", "convolution", "_convolution"}
    _POOL = {"max_pool2d", "avg_pool2d", "max_pool2d_with_indices", "lp_pool2d"}
    _ADAPTIVE = {"adaptive_avg_pool2d", "adaptive_max_pool2d", "adaptive_max_pool2d_with_indices"}
    _PAD = {"pad", "constant_pad_nd"}
    _PERMUTE = {"permute"}
    _TRANSPOSE = {"transpose", "swapaxes", "swapdims", "transpose_"}

    def __init__(self):
        super().__init__()
        self.info: dict[int, _Info | _Unknown] = {}
        self._alive: list[Tensor] = []  # keep traced tensors alive so ids stay unique

    def register(self, t: Tensor, info: _Info | _Unknown) -> None:
        self.info[id(t)] = info
        self._alive.append(t)

    def lookup(self, t: Tensor) -> _Info | _Unknown | None:
        return self.info.get(id(t))

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        flat_in, _ = tree_flatten((args, kwargs))
        traced = [(a, self.lookup(a)) for a in flat_in if isinstance(a, Tensor)]
        traced = [(a, i) for a, i in traced if i is not None]
        if not traced:
            return out
        name = getattr(func, "__name__", "?")
        outs = [o for o in tree_flatten(out)[0] if isinstance(o, Tensor)]
        if not outs:
            return out
        unknown = [i for _, i in traced if isinstance(i, _Unknown)]
        if unknown:
            for o in outs:
                self.register(o, unknown[0])
            return out
        try:
            infos = self._rule(name, args, kwargs, traced, outs)
        except _Untraceable as e:
            infos = [_Unknown(str(e))] * len(outs)
        for o, i in zip(outs, infos):
            if i is not None:
                self.register(o, i)
        return out

    # ---- rules ------------------------------------------------------------------------

    def _rule(self, name, args, kwargs, traced, outs):
        first, finfo = traced[0]
        if name in self._CONV and args and args[0] is first:
            return [self._conv(args, kwargs, finfo, outs[0])] + [None] * (len(outs) - 1)
        if name in self._POOL and args and args[0] is first:
            return [self._pool(name, args, kwargs, finfo, o) for o in outs[:1]] + [None] * (
                len(outs) - 1
            )
        if name in self._ADAPTIVE and args and args[0] is first:
            i = self._spatial(finfo, outs[0])
            y, x = outs[0].shape[i.dims[0]], outs[0].shape[i.dims[1]]
            return [_Info(i.dims, i.ndim, i.y.adaptive(y), i.x.adaptive(x))] + [None] * (
                len(outs) - 1
            )
        if name in self._PAD and args and args[0] is first:
            return [self._pad(args, kwargs, finfo, outs[0])]
        if name in self._PERMUTE and args and args[0] is first:
            dims = args[1:] if len(args) > 2 else _arg(args, kwargs, 1, "dims", None)
            dims = [int(d) % finfo.ndim for d in (dims if not isinstance(dims, int) else [dims])]
            return [self._moved(finfo, dims, outs[0])]
        if name in self._TRANSPOSE and args and args[0] is first:
            a = int(_arg(args, kwargs, 1, "dim0", 0)) % finfo.ndim
            b = int(_arg(args, kwargs, 2, "dim1", 0)) % finfo.ndim
            perm = list(range(finfo.ndim))
            perm[a], perm[b] = perm[b], perm[a]
            return [self._moved(finfo, perm, outs[0])]
        if name in {"interpolate", "upsample", "upsample_bilinear2d", "upsample_nearest2d"}:
            raise _Untraceable(name)
        return [self._elementwise(name, traced, o) for o in outs]

    @staticmethod
    def _spatial(info: _Info, out: Tensor) -> _Info:
        if out.ndim != info.ndim or info.dims != (info.ndim - 2, info.ndim - 1):
            raise _Untraceable("spatial op on a tensor whose last two axes are not (y, x)")
        return info

    def _conv(self, args, kwargs, info: _Info, out: Tensor) -> _Info:
        info = self._spatial(info, out)
        weight = _arg(args, kwargs, 1, "weight", None)
        if weight is None or weight.ndim != 4:
            raise _Untraceable("convolution that is not 2-D")
        ky, kx = weight.shape[-2:]
        sy, sx = _pair(_arg(args, kwargs, 3, "stride", 1), "stride")
        dy, dx = _pair(_arg(args, kwargs, 5, "dilation", 1), "dilation")
        padding = _arg(args, kwargs, 4, "padding", 0)
        if isinstance(padding, str):
            if padding == "valid":
                py = px = 0
            elif padding == "same":  # PyTorch puts the odd pixel at the end
                py, px = dy * (ky - 1) // 2, dx * (kx - 1) // 2
            else:
                raise _Untraceable(f"conv padding {padding!r}")
        else:
            py, px = _pair(padding, "padding")
        hy, wx = out.shape[-2:]
        return _Info(
            info.dims,
            info.ndim,
            info.y.window(hy, ky, sy, py, dy),
            info.x.window(wx, kx, sx, px, dx),
        )

    def _pool(self, name, args, kwargs, info: _Info, out: Tensor) -> _Info:
        info = self._spatial(info, out)
        if name == "lp_pool2d":
            k = _pair(_arg(args, kwargs, 2, "kernel_size", None), "kernel_size")
            s = _arg(args, kwargs, 3, "stride", None)
            p, d = (0, 0), (1, 1)
        else:
            k = _pair(_arg(args, kwargs, 1, "kernel_size", None), "kernel_size")
            s = _arg(args, kwargs, 2, "stride", None)
            p = _pair(_arg(args, kwargs, 3, "padding", 0), "padding")
            d = (
                _pair(_arg(args, kwargs, 4, "dilation", 1), "dilation")
                if name.startswith("max")
                else (1, 1)
            )
        s = k if s is None or (not isinstance(s, int) and len(s) == 0) else _pair(s, "stride")
        hy, wx = out.shape[-2:]
        return _Info(
            info.dims,
            info.ndim,
            info.y.window(hy, k[0], s[0], p[0], d[0]),
            info.x.window(wx, k[1], s[1], p[1], d[1]),
        )

    def _pad(self, args, kwargs, info: _Info, out: Tensor) -> _Info:
        pad = list(_arg(args, kwargs, 1, "pad", ()))
        pad += [0] * (2 * info.ndim - len(pad))
        # F.pad's pairs run from the last axis backwards: (last_before, last_after, ...)
        before = {info.ndim - 1 - i: int(pad[2 * i]) for i in range(len(pad) // 2)}
        ydim, xdim = info.dims
        y = info.y.shifted(out.shape[ydim], before.get(ydim, 0))
        x = info.x.shifted(out.shape[xdim], before.get(xdim, 0))
        return _Info(info.dims, info.ndim, y, x)

    @staticmethod
    def _moved(info: _Info, perm: Sequence[int], out: Tensor) -> _Info:
        if len(perm) != info.ndim or out.ndim != info.ndim:
            raise _Untraceable("permute")
        dims = (list(perm).index(info.dims[0]), list(perm).index(info.dims[1]))
        return _Info((dims[0], dims[1]), info.ndim, info.y, info.x)

    @staticmethod
    def _elementwise(name: str, traced, out: Tensor) -> _Info | None:
        """Default rule: an op that keeps the spatial axes (activation, norm, add, mul,
        channel concat...). Each traced input contributes per output cell; the union of
        the intervals is the output's dependence (the max over residual branches)."""
        merged: _Info | None = None
        for _, info in traced:
            if out.ndim != info.ndim:
                if out.ndim < 2:
                    return None  # flattened / pooled to a vector: no longer spatial
                raise _Untraceable(f"{name} changes the number of axes")
            axes = []
            for dim, ax in zip(info.dims, (info.y, info.x)):
                n_out = out.shape[dim]
                if n_out == ax.n:
                    axes.append(ax)
                elif ax.n == 1:
                    axes.append(ax.broadcast(n_out))
                elif n_out == 1:
                    axes.append(ax.reduced())
                else:
                    raise _Untraceable(f"{name} resizes a spatial axis ({ax.n} -> {n_out})")
            cur = _Info(info.dims, info.ndim, axes[0], axes[1])
            if merged is None:
                merged = cur
                continue
            if merged.dims != cur.dims:
                raise _Untraceable(f"{name} combines tensors with different spatial axes")
            merged = _Info(
                merged.dims,
                merged.ndim,
                _Axis(
                    torch.minimum(merged.y.lo, cur.y.lo),
                    torch.maximum(merged.y.hi, cur.y.hi),
                    max(merged.y.jump, cur.y.jump),
                ),
                _Axis(
                    torch.minimum(merged.x.lo, cur.x.lo),
                    torch.maximum(merged.x.hi, cur.x.hi),
                    max(merged.x.jump, cur.x.jump),
                ),
            )
        return merged


class _Untraceable(Exception):
    pass


class _Stop(Exception):
    pass


@dataclass
class ReceptiveField:
    """Theoretical receptive field of every cell of a layer.

    Attributes:
        boxes: (h, w, 4) float64 ``(x0, y0, x1, y1)`` half-open in input pixels, NOT
            clipped: the region of the zero-padded input plane the cell can depend on; it
            may extend beyond the image (use :meth:`box`/:meth:`boxes_for` with ``clip``).
        size: (r_y, r_x), the largest extent in pixels over the cells (equal for all cells
            in a plain conv/pool network; the classic "receptive field size").
        jump: (j_y, j_x), input pixels between neighbouring cells' fields (the effective
            stride); 0 when every cell depends on the same region, as after a
            squeeze-excitation gate (global pooling broadcast back over the map).
        image_size: (H, W) of the traced input.
    """

    boxes: Tensor
    size: tuple[int, int]
    jump: tuple[float, float]
    image_size: tuple[int, int]

    @property
    def grid(self) -> tuple[int, int]:
        return int(self.boxes.shape[0]), int(self.boxes.shape[1])

    def box(self, row: int, col: int, *, clip: bool = False) -> Tensor:
        """(4,) box of cell (row, col)."""
        b = self.boxes[row, col]
        return clip_boxes(b, self.image_size) if clip else b

    def boxes_for(self, cells: Sequence | Tensor | None = None, *, clip: bool = False) -> Tensor:
        """(K, 4) boxes of the given (row, col) cells (all, row-major, for ``None``)."""
        c = all_cells(self.grid) if cells is None else _as_cells(cells)
        b = self.boxes[c[:, 0], c[:, 1]]
        return clip_boxes(b, self.image_size) if clip else b

    @property
    def centers(self) -> Tensor:
        """(h, w, 2) ``(x, y)`` centres of the boxes (shifted from the CAM centres when the
        padding is asymmetric, e.g. TensorFlow "same" with stride 2)."""
        b = self.boxes
        return torch.stack([(b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2], -1)


def receptive_field(
    model: nn.Module, layer: nn.Module | str, image_size: int | Sequence[int] | None = None
) -> ReceptiveField:
    """Theoretical receptive field of each cell of ``layer`` (paper Fig. 2 context).

    Runs one forward pass (batch 1, no gradient) under a ``TorchFunctionMode`` that follows
    every operation from the input to the layer's output. A convolution or pooling with
    kernel k, stride s, padding p and dilation d maps the in-layer positions
    o·s − p + t·d (t = 0..k−1) of output cell o to input intervals — the recurrence
    r_out = r_in + (k − 1)·d·j_in, j_out = j_in·s, start_out = start_in + ((k−1)/2·d − p)·j_in
    of Araujo et al. (Distill 2019), kept per cell. Explicit ``F.pad`` (TensorFlow "same"
    padding computed in ``forward``) shifts the intervals; operations that keep the spatial
    axes (activations, normalisation, residual ``+``, channel concatenation) take the
    union over their inputs (the max over branches); broadcasting a 1 × 1 tensor (e.g. a
    squeeze-excite gate) makes every cell depend on that tensor's whole field. Upsampling
    and spatial slicing are not followed and raise ``NotImplementedError`` — use
    :func:`empirical_receptive_field` for such models.

    The pass only needs shapes, so a model built on the ``meta`` device (``with
    torch.device("meta"): net = resnet50()``) works too, without weights or arithmetic.

    Args:
        model: network taking (1, 3, H, W) input.
        layer: module (or dotted name) whose output (1, C, h, w) is described.
        image_size: input side or (H, W); default ``model.input_size`` or 224.

    Returns:
        :class:`ReceptiveField`.
    """
    if image_size is None:
        image_size = getattr(model, "input_size", 224)
    H, W = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    module = resolve_layer(model, layer)
    tracer = _RFTracer()
    captured: list[Tensor] = []

    def hook(_m, _i, out):
        captured.append(out)
        raise _Stop

    x = torch.zeros(1, 3, H, W, device=model_device(model))
    ar_h, ar_w = torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64)
    handle = module.register_forward_hook(hook)
    try:
        with torch.no_grad(), tracer:
            tracer.register(
                x, _Info((2, 3), 4, _Axis(ar_h, ar_h.clone(), 1.0), _Axis(ar_w, ar_w.clone(), 1.0))
            )
            try:
                model(x)
            except _Stop:
                pass
    finally:
        handle.remove()
    if not captured:
        raise RuntimeError(f"layer {layer!r} did not run in the model's forward pass")
    out = captured[0]
    if not isinstance(out, Tensor) or out.ndim != 4:
        raise ValueError("receptive_field needs a layer whose output is (N, C, h, w)")
    info = tracer.lookup(out)
    if isinstance(info, _Unknown):
        raise NotImplementedError(
            f"cannot follow the operation {info.op!r} between the input and {layer!r}; "
            "use empirical_receptive_field() instead"
        )
    if info is None:
        raise RuntimeError(f"the output of {layer!r} does not depend on the input")
    if info.dims != (2, 3):
        raise NotImplementedError("the layer's output is not laid out as (N, C, h, w)")
    y, x_ = info.y, info.x
    h, w = y.n, x_.n
    boxes = torch.stack(
        [
            x_.lo.view(1, w).expand(h, w),
            y.lo.view(h, 1).expand(h, w),
            x_.hi.view(1, w).expand(h, w) + 1,
            y.hi.view(h, 1).expand(h, w) + 1,
        ],
        -1,
    )
    size = (int((y.hi - y.lo).max()) + 1, int((x_.hi - x_.lo).max()) + 1)
    jy = float((y.lo[-1] - y.lo[0]) / (h - 1)) if h > 1 else y.jump
    jx = float((x_.lo[-1] - x_.lo[0]) / (w - 1)) if w > 1 else x_.jump
    return ReceptiveField(boxes=boxes, size=size, jump=(jy, jx), image_size=(H, W))


def empirical_receptive_field(
    model: nn.Module,
    layer: nn.Module | str,
    cells: Sequence[tuple[int, int]] | Tensor | None = None,
    image_size: int | Sequence[int] | None = None,
    *,
    images: Tensor | None = None,
    seed: int = 0,
) -> Tensor:
    """Gradient-based receptive field: the bounding box of the input pixels where
    ∂ Σ_c |a_c[k]| / ∂x ≠ 0, for each cell k (one backward pass per cell, batched).

    A lower bound of the theoretical field clipped to the image (a ReLU that is off, or a
    zero weight, hides pixels); on networks with positive weights and no dead units the
    two coincide. Use it as a check, or where :func:`receptive_field` cannot trace.

    Args:
        model, layer: as for :func:`receptive_field`.
        cells: (K, 2); ``None``: every cell.
        image_size: input side or (H, W) (default ``model.input_size`` or 224); ignored
            when ``images`` is given.
        images: (1, 3, H, W) input to differentiate at; default uniform noise (``seed``).

    Returns:
        (K, 4) float64 boxes ``(x0, y0, x1, y1)`` half-open, clipped to the image by
        construction; a cell with zero gradient everywhere gets NaNs.
    """
    device = model_device(model)
    if images is None:
        if image_size is None:
            image_size = getattr(model, "input_size", 224)
        H, W = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        g = torch.Generator().manual_seed(seed)
        images = torch.rand(1, 3, H, W, generator=g)
    check_images(images)
    if images.shape[0] != 1:
        raise ValueError("empirical_receptive_field takes a single image (1, 3, H, W)")
    obj = FeatureCell(layer, None if cells is None else _as_cells(cells))
    x, bound = obj.expand(model, images.to(device))
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(bound(model, x).sum(), x)
    support = grad.abs().amax(1) > 0  # (K, H, W)
    rows, cols = support.any(2), support.any(1)  # (K, H), (K, W)

    def extent(m: Tensor) -> tuple[Tensor, Tensor]:
        idx = torch.arange(m.shape[1], device=m.device, dtype=torch.float64)
        lo = torch.where(m, idx, math.inf).amin(1)
        hi = torch.where(m, idx, -math.inf).amax(1) + 1
        empty = ~m.any(1)
        return lo.masked_fill(empty, math.nan), hi.masked_fill(empty, math.nan)

    y0, y1 = extent(rows)
    x0, x1 = extent(cols)
    return torch.stack([x0, y0, x1, y1], 1).cpu()


# --------------------------------------------------------------------------------------
# Measures
# --------------------------------------------------------------------------------------


def _check_maps(maps: Tensor) -> Tensor:
    if not isinstance(maps, Tensor) or maps.ndim != 3 or not maps.is_floating_point():
        raise ValueError(
            f"maps must be a float (N, H, W) tensor, got {getattr(maps, 'shape', type(maps))}"
        )
    return maps


def _box_mask(boxes: Tensor, shape: Sequence[int], device) -> Tensor:
    """(N, H, W) bool: pixels whose centre (k + ½) lies in the half-open box."""
    H, W = shape
    b = boxes.to(device=device, dtype=torch.float64).reshape(-1, 4)
    ys = torch.arange(H, device=device, dtype=torch.float64) + 0.5
    xs = torch.arange(W, device=device, dtype=torch.float64) + 0.5
    in_y = (ys.view(1, H) >= b[:, 1:2]) & (ys.view(1, H) < b[:, 3:4])
    in_x = (xs.view(1, W) >= b[:, 0:1]) & (xs.view(1, W) < b[:, 2:3])
    return in_y[:, :, None] & in_x[:, None, :]


def mass_in_box(maps: Tensor, boxes: Tensor) -> Tensor:
    """Share of each map's mass inside its box: Σ_box m / Σ m.

    Args:
        maps: (N, H, W) non-negative maps (Δx or blurred), any device.
        boxes: (N, 4) or (4,) ``(x0, y0, x1, y1)`` half-open; a pixel counts when its
            centre lies inside (so fractional boxes work).

    Returns:
        (N,) float in [0, 1] on the maps' device; NaN for an all-zero map.
    """
    _check_maps(maps)
    boxes = boxes.reshape(-1, 4).expand(maps.shape[0], 4)
    mask = _box_mask(boxes, maps.shape[-2:], maps.device)
    m = maps.double()
    total = m.flatten(1).sum(1)
    inside = (m * mask).flatten(1).sum(1)
    return torch.where(total > 0, inside / total, math.nan).to(maps.dtype)


def center_of_mass(maps: Tensor) -> Tensor:
    """Centre of mass ``(x, y)`` of each map in continuous pixel coordinates (pixel k has
    its centre at k + ½). Returns (N, 2) on the maps' device; NaN for all-zero maps."""
    _check_maps(maps)
    N, H, W = maps.shape
    m = maps.double()
    total = m.flatten(1).sum(1)
    ys = torch.arange(H, device=maps.device, dtype=torch.float64) + 0.5
    xs = torch.arange(W, device=maps.device, dtype=torch.float64) + 0.5
    cx = (m.sum(1) * xs).sum(1) / total
    cy = (m.sum(2) * ys).sum(1) / total
    com = torch.stack([cx, cy], 1)
    return torch.where((total > 0).view(-1, 1), com, math.nan).to(maps.dtype)


def mass_area(maps: Tensor, share: float = 0.5) -> Tensor:
    """Fraction of the image covered by the smallest set of pixels holding ``share`` of a
    map's mass (its top pixels, taken in decreasing order until the cumulative mass
    reaches share · total). Multiply by H·W for pixels.

    Returns (N,) in (0, 1] on the maps' device; NaN for all-zero maps."""
    _check_maps(maps)
    if not 0 < share <= 1:
        raise ValueError(f"share must lie in (0, 1], got {share}")
    flat = maps.double().flatten(1)
    total = flat.sum(1, keepdim=True)
    vals = flat.sort(1, descending=True).values
    csum = vals.cumsum(1)
    # pixels needed = 1 + number of prefixes still short of the target (tiny relative slack
    # so that a hand-made exact split is not lost to rounding)
    target = share * total * (1 - 1e-12)
    count = (csum < target).sum(1) + 1
    frac = count.double() / flat.shape[1]
    return torch.where(total.squeeze(1) > 0, frac, math.nan).to(maps.dtype)


def cell_measures(
    maps: Tensor,
    cells: Sequence | Tensor,
    grid: Sequence[int],
    *,
    rf: ReceptiveField | None = None,
    share: float = 0.5,
) -> dict[str, Tensor]:
    """All per-cell measures of maps (N, H, W) whose cell k is ``cells[k % K]`` (image-major
    stacking of B images × K cells, as :func:`run_cells` returns after ``.flatten(0, 1)``).

    Returns a dict of (N,) CPU tensors:
        ``mass_in_box`` (share inside the CAM-assumed box), ``com_dist_px`` (distance of the
        centre of mass to the cell centre, pixels), ``com_dist_cells`` (the same in cell
        widths: dx/(W/w), dy/(H/h), then the norm), ``com_dx_px``/``com_dy_px`` (signed),
        ``area50`` (fraction of the image holding ``share`` of the mass), ``area50_px``,
        ``box_area`` (the CAM box's fraction of the image, which a map that respected CAM's
        assumption would not exceed, and the share a uniform map puts in the box),
        ``uniform_com_dist_cells`` (the distance a uniform map's centre of mass, the image
        centre, has from the cell centre), and with ``rf``: ``mass_in_rf`` (share inside the
        theoretical receptive field, 1 up to rounding on the unblurred Δx),
        ``mass_in_centred_box`` (share inside a CAM-sized box centred on the receptive
        field's centre) and ``com_to_rf_centre_cells`` (centre-of-mass distance to that
        centre, cell widths).
    """
    _check_maps(maps)
    N, H, W = maps.shape
    c = _as_cells(cells)
    K = c.shape[0]
    if N % K:
        raise ValueError(f"{N} maps cannot be B images x {K} cells")
    h, w = _check_grid(grid)
    reps = N // K
    boxes = cam_boxes((h, w), (H, W), c).repeat(reps, 1)
    centers = cell_centers((h, w), (H, W), c).repeat(reps, 1).to(maps.device)
    com = center_of_mass(maps).double()
    d = com - centers
    cell_w = torch.tensor([W / w, H / h], dtype=torch.float64, device=maps.device)
    area = mass_area(maps, share)
    out = {
        "mass_in_box": mass_in_box(maps, boxes),
        "com_dist_px": d.norm(dim=1),
        "com_dist_cells": (d / cell_w).norm(dim=1),
        "com_dx_px": d[:, 0],
        "com_dy_px": d[:, 1],
        "area50": area,
        "area50_px": area.double() * H * W,
        "box_area": torch.full((N,), 1.0 / (h * w), dtype=torch.float64),
        # baseline: a map spread evenly over the image has its centre of mass at the
        # image centre, this far from the cell centre
        "uniform_com_dist_cells": ((centers - centers.new_tensor([W / 2, H / 2])) / cell_w).norm(
            dim=1
        ),
    }
    if rf is not None:
        out["mass_in_rf"] = mass_in_box(maps, rf.boxes_for(c, clip=True).repeat(reps, 1))
        # CAM's box moved onto the receptive field's centre: separates the fixed geometric
        # offset of the field (padding, e.g. TF "same") from the spread of the attribution
        rf_c = rf.centers[c[:, 0], c[:, 1]].repeat(reps, 1)
        shift = (rf_c - centers.cpu()).repeat(1, 2)
        out["mass_in_centred_box"] = mass_in_box(maps, boxes + shift)
        d_rf = com - rf_c.to(maps.device)
        out["com_to_rf_centre_cells"] = (d_rf / cell_w).norm(dim=1)
    return {k: v.detach().double().cpu() for k, v in out.items()}


def measure_layers(
    model: nn.Module,
    images: Tensor,
    layers: Mapping[str, nn.Module | str],
    *,
    cells_per_layer: int | None = None,
    config: FameConfig | None = None,
    seed: int = 0,
    image_names: Sequence[str] | None = None,
    sigma: float | None = None,
    kernel_size: int | None = None,
    with_rf: bool = True,
    progress: bool = True,
    keep: bool = False,
    **overrides,
) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, CellAttributions]]:
    """Measure cell attributions at several depths over several images.

    For each layer (in the given order = depth), ``cells_per_layer`` cells are drawn with
    :func:`sample_cells` (fixed ``seed``; all cells when ``None``), explained on every image
    with :func:`run_cells`, and measured with :func:`cell_measures` on both the unblurred
    Δx (``map="delta"``) and the blurred Δx (``map="blurred"``, kernel/σ from the config or
    the arguments). Blurring leaks mass across box edges, so the two differ.

    Args:
        layers: ``{label: module or dotted name}`` ordered shallow → deep (e.g. the
            classifier's ``stages``: ``"56x56"``, ..., ``"7x7"``).
        keep: also return the :class:`CellAttributions` per layer.

    Returns:
        Long DataFrame with one row per (image, layer, cell, map): columns ``image``,
        ``image_index``, ``layer``, ``depth`` (0 = shallowest), ``grid_h``, ``grid_w``,
        ``row``, ``col``, ``map`` and the measures of :func:`cell_measures`.
    """
    check_images(images)
    cfg = _cell_config(config, overrides, model)
    if progress is False:
        cfg = cfg.replace(progress=False)
    B = images.shape[0]
    names = list(image_names) if image_names is not None else [f"image{i}" for i in range(B)]
    if len(names) != B:
        raise ValueError(f"{len(names)} image_names for {B} images")
    frames, kept = [], {}
    items = list(layers.items())
    for depth, (label, layer) in enumerate(tqdm(items, desc="layers", disable=not progress)):
        obj = FeatureCell(layer)
        grid = obj.grid_shape(model, tuple(images.shape[-2:]))
        cells = sample_cells(grid, cells_per_layer, seed=seed)
        res = run_cells(model, images, layer, cells, cfg)
        rf = receptive_field(model, layer, tuple(images.shape[-2:])) if with_rf else None
        maps = {
            "delta": res.delta.flatten(0, 1),
            "blurred": res.blurred(sigma=sigma, kernel_size=kernel_size).flatten(0, 1),
        }
        K = cells.shape[0]
        for kind, m in maps.items():
            meas = cell_measures(m, cells, grid, rf=rf)
            df = pd.DataFrame({k: v.numpy() for k, v in meas.items()})
            df.insert(0, "map", kind)
            df.insert(0, "col", cells[:, 1].repeat(B).numpy())
            df.insert(0, "row", cells[:, 0].repeat(B).numpy())
            df.insert(0, "grid_w", grid[1])
            df.insert(0, "grid_h", grid[0])
            df.insert(0, "depth", depth)
            df.insert(0, "layer", label)
            df.insert(0, "image_index", np.repeat(np.arange(B), K))
            df.insert(0, "image", np.repeat(np.asarray(names, dtype=object), K))
            frames.append(df)
        if keep:
            kept[label] = res
    out = pd.concat(frames, ignore_index=True)
    out["layer"] = pd.Categorical(out["layer"], categories=[k for k, _ in items], ordered=True)
    return (out, kept) if keep else out


def summarize_by_depth(
    df: pd.DataFrame,
    measures: Sequence[str] = (
        "mass_in_box",
        "mass_in_centred_box",
        "com_dist_cells",
        "com_to_rf_centre_cells",
        "area50",
    ),
) -> pd.DataFrame:
    """Mean, median and count of each measure per (layer, map), layers in depth order."""
    keep = [m for m in measures if m in df.columns]
    g = df.groupby(["layer", "map"], observed=True)[keep]
    table = g.agg(["mean", "median"])
    table[("cells", "n")] = g.size()
    if "box_area" in df.columns:
        table[("box_area", "value")] = df.groupby(["layer", "map"], observed=True)[
            "box_area"
        ].first()
    return table


def describe_measurements(df: pd.DataFrame, map_kind: str = "delta") -> str:
    """A plain-text statement of what the measurement shows, generated from ``df``
    (per depth: mean share of mass inside the CAM box, centre-of-mass distance in cell
    widths, area holding 50% of the mass vs the box area)."""
    sub = df[df["map"] == map_kind]
    g = sub.groupby("layer", observed=True)
    mib = g["mass_in_box"].mean()
    com = g["com_dist_cells"].mean()
    area = g["area50"].mean()
    box = g["box_area"].first()
    n = g.size()
    label = "unblurred Δx" if map_kind == "delta" else "blurred map"
    lines = [f"On the {label} ({int(sub['image'].nunique())} images):"]
    lines.append(
        "  mean share of mass inside the CAM box: "
        + ", ".join(f"{k}: {v:.2f}" for k, v in mib.items())
    )
    lines.append(
        "  ... relative to a uniform map (share / box area): "
        + ", ".join(f"{k}: {v / b:.1f}x" for (k, v), b in zip(mib.items(), box))
    )
    lines.append(
        "  mean centre-of-mass distance to the cell centre (cell widths): "
        + ", ".join(f"{k}: {v:.2f}" for k, v in com.items())
    )
    if "uniform_com_dist_cells" in sub.columns:
        lines.append(
            "  ... for a uniform map (image centre) it would be: "
            + ", ".join(f"{k}: {v:.2f}" for k, v in g["uniform_com_dist_cells"].mean().items())
        )
    lines.append(
        "  mean area holding 50% of the mass / CAM box area: "
        + ", ".join(f"{k}: {a:.3f}/{b:.3f} ({a / b:.1f}x)" for (k, a), b in zip(area.items(), box))
    )
    if "mass_in_centred_box" in sub.columns:
        lines.append(
            "  with the box moved onto the receptive field's centre: mass share "
            + ", ".join(f"{k}: {v:.2f}" for k, v in g["mass_in_centred_box"].mean().items())
            + "; centre-of-mass distance to the field's centre (cell widths) "
            + ", ".join(f"{k}: {v:.2f}" for k, v in g["com_to_rf_centre_cells"].mean().items())
        )
    lines.append("  cells measured: " + ", ".join(f"{k}: {v}" for k, v in n.items()))
    if "mass_in_rf" in sub.columns:
        lines.append(
            "  min share inside the theoretical receptive field: "
            + ", ".join(f"{k}: {v:.3f}" for k, v in g["mass_in_rf"].min().items())
        )
    return "\n".join(lines)


# --------------------------------------------------------------------------------------
# Figures
# --------------------------------------------------------------------------------------


def _imshow_limits(ax, H: int, W: int) -> None:
    ax.set_xlim(-0.5, W - 0.5)
    ax.set_ylim(H - 0.5, -0.5)


def plot_contact_sheet(
    image: Tensor,
    maps: Tensor,
    grid: Sequence[int],
    *,
    cells: Sequence | Tensor | None = None,
    rf: ReceptiveField | None = None,
    alpha: float = 0.5,
    panel_size: float = 1.3,
    box_color: str = "white",
    rf_color: str = "cyan",
    title: str | None = None,
    max_panels: int = 400,
):
    """An h × w grid of panels, panel (i, j) = the image with the map of cell (i, j) and its
    CAM-assumed box (white), optionally the theoretical receptive field clipped to the
    image (dashed). The seed's Fig. 2 layout for the last block.

    Args:
        image: (3, H, W) in [0, 1].
        maps: (K, H, W) maps in [0, 1] of ``cells`` (default: all h·w cells, row-major).
        grid: (h, w) of the layer.
        rf: :class:`ReceptiveField` of the layer, to draw its boxes too.

    Returns:
        matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    from .plotting import draw_box, overlay

    h, w = _check_grid(grid)
    if h * w > max_panels:
        raise ValueError(
            f"a {h}x{w} contact sheet has {h * w} panels (> max_panels={max_panels}); "
            "pick a deeper layer or raise max_panels"
        )
    c = all_cells((h, w)) if cells is None else _as_cells(cells)
    if maps.ndim != 3 or maps.shape[0] != c.shape[0]:
        raise ValueError(f"maps must be (K={c.shape[0]}, H, W), got {tuple(maps.shape)}")
    H, W = maps.shape[-2:]
    boxes = cam_boxes((h, w), (H, W), c)
    rfb = rf.boxes_for(c, clip=True) if rf is not None else None
    fig, axes = plt.subplots(h, w, figsize=(panel_size * w, panel_size * h), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for k, (i, j) in enumerate(c.tolist()):
        ax = axes[i, j]
        ax.axis("on")
        overlay(ax, image, maps[k], alpha=alpha)
        if rfb is not None:
            x0, y0, x1, y1 = rfb[k].tolist()
            ax.add_patch(
                plt.Rectangle(
                    (x0 - 0.5, y0 - 0.5),
                    x1 - x0,
                    y1 - y0,
                    fill=False,
                    edgecolor=rf_color,
                    linewidth=0.8,
                    linestyle="--",
                )
            )
        draw_box(ax, boxes[k], color=box_color, lw=1.0)
        _imshow_limits(ax, H, W)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.subplots_adjust(wspace=0.03, hspace=0.03, left=0.01, right=0.99, bottom=0.01, top=0.95)
    return fig


@dataclass
class DepthRow:
    """One row of :func:`plot_cells_by_depth`: a layer's maps (K, H, W) of ``cells`` on a
    ``grid``, optionally with its :class:`ReceptiveField`."""

    label: str
    maps: Tensor
    cells: Tensor
    grid: tuple[int, int]
    rf: ReceptiveField | None = None


def plot_cells_by_depth(
    image: Tensor,
    rows: Sequence[DepthRow],
    *,
    alpha: float = 0.5,
    panel_size: float = 2.0,
    show_com: bool = True,
    show_image: bool = True,
):
    """Rows = depths (shallow → deep), columns = a few cells per depth: the image with the
    cell's FAME map, the CAM-assumed box (white), the theoretical receptive field clipped
    to the image (dashed cyan, when given), the cell centre (white dot) and the map's
    centre of mass (black ×). The seed's Fig. 2 across depths.

    Args:
        image: (3, H, W) in [0, 1].
        rows: one :class:`DepthRow` per depth.

    Returns:
        matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    from .plotting import draw_box, overlay

    ncols = max(r.cells.shape[0] for r in rows) + int(show_image)
    fig, axes = plt.subplots(
        len(rows), ncols, figsize=(panel_size * ncols, panel_size * len(rows)), squeeze=False
    )
    for r, row in enumerate(rows):
        H, W = row.maps.shape[-2:]
        c0 = 0
        if show_image:
            overlay(axes[r, 0], image)
            axes[r, 0].set_ylabel(row.label, fontsize=9)
            c0 = 1
        boxes = cam_boxes(row.grid, (H, W), row.cells)
        centers = cell_centers(row.grid, (H, W), row.cells)
        coms = center_of_mass(row.maps.float())
        rfb = row.rf.boxes_for(row.cells, clip=True) if row.rf is not None else None
        for k, (i, j) in enumerate(row.cells.tolist()):
            ax = axes[r, c0 + k]
            overlay(ax, image, row.maps[k], alpha=alpha, title=f"{row.label} cell ({i}, {j})")
            if rfb is not None:
                x0, y0, x1, y1 = rfb[k].tolist()
                ax.add_patch(
                    plt.Rectangle(
                        (x0 - 0.5, y0 - 0.5),
                        x1 - x0,
                        y1 - y0,
                        fill=False,
                        edgecolor="cyan",
                        linewidth=1.0,
                        linestyle="--",
                    )
                )
            draw_box(ax, boxes[k], color="white", lw=1.5)
            if show_com:
                cx, cy = centers[k].tolist()
                ax.plot([cx - 0.5], [cy - 0.5], "o", color="white", ms=3)
                mx, my = coms[k].tolist()
                if math.isfinite(mx):
                    ax.plot([mx - 0.5], [my - 0.5], "x", color="black", ms=6, mew=1.5)
            _imshow_limits(ax, H, W)
            if k == 0 and not show_image:
                ax.set_ylabel(row.label, fontsize=9)
        for k in range(c0 + row.cells.shape[0], ncols):
            axes[r, k].axis("off")
    fig.tight_layout()
    return fig


_MEASURE_LABELS = {
    "mass_in_box": "share of mass inside the CAM box",
    "com_dist_cells": "centre-of-mass distance to cell centre\n(cell widths)",
    "com_dist_px": "centre-of-mass distance to cell centre (px)",
    "area50": "image fraction holding 50% of the mass",
}


def plot_measurements(
    df: pd.DataFrame,
    measures: Sequence[str] = ("mass_in_box", "com_dist_cells", "area50"),
    *,
    maps: Sequence[str] = ("delta", "blurred"),
    panel_size: tuple[float, float] = (4.2, 3.6),
    sigma: float | None = None,
):
    """Measures against depth: one boxplot panel per measure, layers on the x axis (depth
    order), hue = map (unblurred Δx vs blurred). Reference markers: on the mass panel the
    share a uniform map would put in the box (= the box's image fraction), on the distance
    panel the mean distance of a uniform map's centre of mass (the image centre), on the
    area panel the CAM box's own area — a map that respected CAM's assumption would stay
    inside it.

    Returns:
        matplotlib Figure.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    names = {
        "delta": "unblurred Δx",
        "blurred": "blurred" + (f" (σ={sigma:g})" if sigma is not None else ""),
    }
    sub = df[df["map"].isin(list(maps))].copy()
    sub["map"] = sub["map"].map(names)
    order = [c for c in df["layer"].cat.categories] if hasattr(df["layer"], "cat") else None
    fig, axes = plt.subplots(
        1, len(measures), figsize=(panel_size[0] * len(measures), panel_size[1]), squeeze=False
    )
    ref = df.groupby("layer", observed=True)["box_area"].first()
    for ax, m in zip(axes[0], measures):
        with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib's deprecated `vert`
            warnings.simplefilter("ignore", category=DeprecationWarning)
            warnings.simplefilter("ignore", category=PendingDeprecationWarning)
            sns.boxplot(
                data=sub,
                x="layer",
                y=m,
                hue="map",
                order=order,
                ax=ax,
                fliersize=1.5,
                linewidth=0.8,
            )
        if m in ("mass_in_box", "area50"):
            label = "uniform map (= box area)" if m == "mass_in_box" else "CAM box area"
            ax.plot(list(range(len(ref))), ref.values, "k_", ms=18, mew=2, label=label)
            ax.legend(fontsize=7, loc="best")
        elif m == "com_dist_cells" and "uniform_com_dist_cells" in df.columns:
            uni = df.groupby("layer", observed=True)["uniform_com_dist_cells"].mean()
            ax.plot(
                list(range(len(uni))), uni.values, "k_", ms=18, mew=2, label="uniform map (mean)"
            )
            ax.legend(fontsize=7, loc="best")
        elif ax.get_legend() is not None:
            ax.get_legend().remove()
        if m == "area50":
            ax.set_yscale("log")
        if m == "mass_in_box":
            top = float(sub[m].max()) if len(sub) else 1.0
            ax.set_ylim(-0.01, min(1.02, max(0.1, 1.15 * top)))
        ax.set_ylabel(_MEASURE_LABELS.get(m, m), fontsize=9)
        ax.set_xlabel("layer (shallow → deep)", fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------
# Interactive explorer
# --------------------------------------------------------------------------------------


def cell_explorer(
    model: nn.Module,
    images: Tensor,
    names: Sequence[str],
    layers: Mapping[str, nn.Module | str],
    *,
    iterations: int = 100,
    sigma: float = 7.7,
    config: FameConfig | None = None,
    precomputed: Mapping[str, tuple[int, CellAttributions]] | None = None,
    manual: bool = True,
):
    """An ``ipywidgets.interactive`` explorer of single cells: image, layer (depth), cell
    (row, column), iterations and σ. The Δx of every explained (image, layer, cell,
    iterations) is cached, so changing σ only re-blurs.

    Args:
        images: (B, 3, H, W) in [0, 1]; ``names``: B labels for the image dropdown.
        layers: ``{label: module or dotted name}``, shallow → deep.
        precomputed: ``{layer label: (image index, CellAttributions)}`` from earlier runs
            (e.g. the contact sheet) to seed the cache.
        manual: recompute only on the "Run FAME" button (a FAME run takes seconds on a
            CPU).

    Returns:
        ``ipywidgets.interactive`` to display; ``.update()`` draws the current choice into
        its output widget, ``.show_current()`` into the caller's output (use this one in
        notebooks that run headless).
    """
    import ipywidgets as W
    import matplotlib.pyplot as plt

    from .plotting import draw_box, overlay

    check_images(images)
    cfg = _cell_config(config, {"progress": False}, model)
    labels = list(layers)
    grids = {k: FeatureCell(layers[k]).grid_shape(model, tuple(images.shape[-2:])) for k in labels}
    rfs: dict[str, ReceptiveField | None] = {}
    cache: dict[tuple, Tensor] = {}
    for label, (b, res) in (precomputed or {}).items():
        for k, (i, j) in enumerate(res.cells.tolist()):
            cache[(b, label, i, j, res.config.iterations)] = res.delta[0, k]

    image_w = W.Dropdown(
        options=[(n, i) for i, n in enumerate(names)], value=0, description="image"
    )
    layer_w = W.Dropdown(options=labels, value=labels[-1], description="layer")
    h0, w0 = grids[labels[-1]]
    row_w = W.IntSlider(value=h0 // 2, min=0, max=h0 - 1, description="row")
    col_w = W.IntSlider(value=w0 // 2, min=0, max=w0 - 1, description="column")
    iter_w = W.IntSlider(value=iterations, min=1, max=500, step=1, description="iterations")
    sigma_w = W.FloatSlider(value=sigma, min=0.0, max=20.0, step=0.1, description="σ")

    def on_layer(change):
        h, w = grids[change["new"]]
        row_w.value, col_w.value = min(row_w.value, h - 1), min(col_w.value, w - 1)
        row_w.max, col_w.max = h - 1, w - 1

    layer_w.observe(on_layer, names="value")

    def show(image: int, layer: str, row: int, col: int, iterations: int, sigma: float):
        h, w = grids[layer]
        row, col = min(row, h - 1), min(col, w - 1)
        key = (image, layer, row, col, iterations)
        if key not in cache:
            res = run_cells(
                model,
                images[image : image + 1],
                layers[layer],
                [(row, col)],
                cfg,
                iterations=iterations,
            )
            cache[key] = res.delta[0, 0]
        delta = cache[key][None]
        # the config's kernel at its σ (49 at 7.7), else a ±3σ kernel
        kernel = cfg.kernel_size if sigma == cfg.sigma else 2 * int(3 * sigma + 0.5) + 1
        blurred = gaussian_blur(delta, kernel, sigma) if sigma > 0 else delta
        shown = blurred / blurred.max().clamp_min(torch.finfo(blurred.dtype).tiny)
        if layer not in rfs:
            try:
                rfs[layer] = receptive_field(model, layers[layer], tuple(images.shape[-2:]))
            except NotImplementedError:
                rfs[layer] = None
        rf = rfs[layer]
        m_d = cell_measures(delta, [(row, col)], (h, w), rf=rf)
        m_b = cell_measures(blurred, [(row, col)], (h, w))
        fig, axes = plt.subplots(1, 2, figsize=(8, 4))
        overlay(axes[0], images[image], title=f"{names[image]}")
        overlay(axes[1], images[image], shown[0], title=f"{layer} cell ({row}, {col})")
        if rf is not None:
            x0, y0, x1, y1 = rf.box(row, col, clip=True).tolist()
            axes[1].add_patch(
                plt.Rectangle(
                    (x0 - 0.5, y0 - 0.5),
                    x1 - x0,
                    y1 - y0,
                    fill=False,
                    edgecolor="cyan",
                    linestyle="--",
                )
            )
        draw_box(axes[1], cam_boxes((h, w), delta.shape[-2:], [(row, col)])[0])
        _imshow_limits(axes[1], *delta.shape[-2:])
        plt.show()
        print(
            f"mass in CAM box: Δx {m_d['mass_in_box'].item():.3f}, blurred "
            f"{m_b['mass_in_box'].item():.3f} | CoM distance {m_d['com_dist_cells'].item():.2f} "
            f"cells ({m_d['com_dist_px'].item():.1f} px) | 50% of Δx mass in "
            f"{100 * m_d['area50'].item():.2f}% of the image (box {100 / (h * w):.2f}%)"
            + (f" | in RF: {m_d['mass_in_rf'].item():.3f}" if rf is not None else "")
        )

    opts = {"manual": True, "manual_name": "Run FAME"} if manual else {}
    widget = W.interactive(
        show,
        opts,
        image=image_w,
        layer=layer_w,
        row=row_w,
        col=col_w,
        iterations=iter_w,
        sigma=sigma_w,
    )

    def show_current() -> None:
        """Draw the current choice into the caller's output, not the widget's ``Output``
        (headless runners such as papermill/nbclient can stall on output-widget messages,
        nbclient issue #312), e.g. as the last line of a notebook cell."""
        show(**{w._kwarg: w.get_interact_value() for w in widget.kwargs_widgets})

    widget.show_current = show_current
    return widget
