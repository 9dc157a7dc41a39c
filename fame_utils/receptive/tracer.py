"""Theoretical receptive fields, traced from the operations a network actually runs.

:func:`receptive_field` follows one forward pass with a ``TorchFunctionMode`` and keeps,
for every cell of a layer, the interval of input rows and columns it can depend on
(convolutions, pooling, explicit padding such as TensorFlow "same", residual additions and
concatenations); :func:`empirical_receptive_field` reads the same from the support of a
gradient. Both work for any network whose layer output is (N, C, h, w); the feature-cell
measures (:mod:`fame_utils.receptive.measures`) compare FAME maps with them.

Boxes are ``(x0, y0, x1, y1)``, half-open, in input pixels (see
:mod:`fame_utils.receptive.cells`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from .._checks import check_images, model_device
from ..hooks import capture_output
from ..objectives import cell_objective
from .cells import _as_cells, all_cells, clip_boxes

__all__ = ["ReceptiveField", "receptive_field", "empirical_receptive_field"]


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
    tracer = _RFTracer()
    x = torch.zeros(1, 3, H, W, device=model_device(model))
    ar_h, ar_w = torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64)
    with torch.no_grad(), tracer:
        tracer.register(
            x, _Info((2, 3), 4, _Axis(ar_h, ar_h.clone(), 1.0), _Axis(ar_w, ar_w.clone(), 1.0))
        )
        out = capture_output(model, layer, x)
    if not isinstance(out, Tensor) or out.ndim != 4:
        raise NotImplementedError(
            "receptive_field needs a layer whose output is (N, C, h, w); for a "
            "transformer's (N, T, C) tokens, which see the whole image after the first "
            "attention, use empirical_receptive_field()"
        )
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
    obj = cell_objective(
        model, layer, None if cells is None else _as_cells(cells), image_size=images.shape[-2:]
    )
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
