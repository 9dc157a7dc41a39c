"""Theoretical (a ``TorchFunctionMode`` over one forward pass) and empirical (a gradient's
support) receptive fields of any network's layer (paper Sec. 3)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten
from torchvision.ops import clip_boxes_to_image, masks_to_boxes

from .._checks import model_device
from ..objectives import capture_output, cell_objective
from .cells import as_cells


class _Untraceable(Exception):
    pass


@dataclass
class _Axis:
    """Inclusive input interval [lo, hi] of each position along one axis; ``jump``: input
    pixels per position, to extrapolate into padding (Araujo et al., Distill 2019)."""

    lo: Tensor  # (n,) float64
    hi: Tensor
    jump: float

    def gather(self, idx: Tensor, jump: float) -> _Axis:
        """Output o covers positions ``idx[o]`` ((n_out, m); outside the axis: padding)."""
        inside = idx.clamp(0, len(self.lo) - 1)
        shift = (idx - inside).double() * self.jump
        return _Axis((self.lo[inside] + shift).amin(1), (self.hi[inside] + shift).amax(1), jump)

    def window(self, n_out: int, kernel: int, stride: int, pad: int, dilation: int) -> _Axis:
        """Output o reads positions o·stride − pad + t·dilation, t = 0..kernel−1."""
        idx = torch.arange(n_out)[:, None] * stride - pad + torch.arange(kernel) * dilation
        return self.gather(idx, self.jump * stride)

    def adaptive(self, n_out: int) -> _Axis:
        n, o = len(self.lo), torch.arange(n_out)
        start, end = (o * n) // n_out, -((-(o + 1) * n) // n_out) - 1  # end: ceil − 1
        span = torch.arange(int((end - start).max()) + 1)
        return self.gather(
            torch.minimum(start[:, None] + span, end[:, None]), self.jump * n / n_out
        )

    def resized(self, n_out: int, op: str) -> _Axis:
        """Kept, broadcast from size 1 (a squeeze-excite gate) or reduced to 1."""
        n = len(self.lo)
        if n_out == n:
            return self
        if n == 1:
            return self.gather(torch.zeros(n_out, 1, dtype=torch.long), 0.0)
        if n_out == 1:
            return self.gather(torch.arange(n)[None], self.jump * n)
        raise _Untraceable(f"{op} resizes a spatial axis ({n} -> {n_out})")

    def union(self, other: _Axis) -> _Axis:
        lo, hi = torch.minimum(self.lo, other.lo), torch.maximum(self.hi, other.hi)
        return _Axis(lo, hi, max(self.jump, other.jump))


@dataclass
class _Info:
    dims: tuple[int, int]  # positions of the (y, x) axes in the tensor
    axes: tuple[_Axis, _Axis]


def _pair(v) -> tuple[int, int]:
    t = (v,) if isinstance(v, int) else tuple(int(a) for a in v)
    return (t[0], t[0]) if len(t) == 1 else (t[0], t[1])


# the spatial ops the tracer follows: their parameters after the input, as F.* takes them
_CONV = ("weight", "bias", "stride", "padding", "dilation")
_MAX = ("kernel_size", "stride", "padding", "dilation")
_ADAPTIVE = ("output_size",)
_PARAMS = {
    **dict.fromkeys(("conv2d", "convolution", "_convolution"), _CONV),
    **dict.fromkeys(("max_pool2d", "max_pool2d_with_indices"), _MAX),
    "avg_pool2d": ("kernel_size", "stride", "padding"),
    "lp_pool2d": ("norm_type", "kernel_size", "stride"),
    **dict.fromkeys(("pad", "constant_pad_nd"), ("pad",)),
    **dict.fromkeys(("adaptive_avg_pool2d", "adaptive_max_pool2d"), _ADAPTIVE),
    "adaptive_max_pool2d_with_indices": _ADAPTIVE,
    "permute": ("dims",),
    **dict.fromkeys(("transpose", "swapaxes", "swapdims", "transpose_"), ("dim0", "dim1")),
}


def _windows(p: dict) -> zip:
    """(kernel, stride, padding, dilation) per axis of a convolution, pooling or pad call."""
    if "pad" in p:  # F.pad's pairs run from the last axis: x before, x after, y before
        pad = [int(v) for v in p["pad"]] + [0] * 4
        return zip((1, 1), (1, 1), (pad[2], pad[0]), (1, 1))
    if "weight" in p:
        if p["weight"] is None or p["weight"].ndim != 4:
            raise _Untraceable("convolution that is not 2-D")
        k, s = tuple(p["weight"].shape[-2:]), p.get("stride", 1)
    else:
        k = _pair(p["kernel_size"])
        s = p.get("stride") or k  # None or []: the kernel
    pad, d = p.get("padding", 0), _pair(p.get("dilation", 1))
    if pad == "same":  # PyTorch puts the odd pixel at the end
        pad = tuple(di * (ki - 1) // 2 for di, ki in zip(d, k))
    return zip(k, _pair(s), _pair(0 if pad == "valid" else pad), d)


class _Tracer(TorchFunctionMode):
    """An :class:`_Info` (or why it cannot follow) for every tensor computed from the input."""

    def __init__(self):
        super().__init__()
        self.info: dict[int, _Info | str] = {}
        self._alive: list[Tensor] = []  # traced tensors stay alive, so their ids stay unique

    def register(self, t: Tensor, info: _Info | str) -> None:
        self.info[id(t)] = info
        self._alive.append(t)

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        flat = tree_flatten((args, kwargs))[0]
        traced = [a for a in flat if isinstance(a, Tensor) and id(a) in self.info]
        outs = [o for o in tree_flatten(out)[0] if isinstance(o, Tensor)]
        if traced and outs:
            try:
                infos = self._rule(getattr(func, "__name__", "?"), args, kwargs, traced, outs)
            except _Untraceable as e:
                infos = [str(e)] * len(outs)
            for o, i in zip(outs, infos):
                self.register(o, i)
        return out

    def _rule(self, name, args, kwargs, traced, outs) -> list[_Info]:
        infos = [self.info[id(a)] for a in traced]
        unknown = [i for i in infos if isinstance(i, str)]
        if unknown:
            raise _Untraceable(unknown[0])
        first, info, ndim = traced[0], infos[0], traced[0].ndim
        if name not in _PARAMS or not args or args[0] is not first:  # rules read the 1st arg
            return [_elementwise(name, traced, infos, o) for o in outs]
        p = dict(zip(_PARAMS[name], args[1:])) | kwargs
        if "dim0" in p or "dims" in p:  # transpose, permute
            perm = list(range(ndim))
            if "dims" in p:
                dims = args[1:] if len(args) > 2 else p["dims"]
                perm = [int(d) % ndim for d in ([dims] if isinstance(dims, int) else dims)]
            else:
                a, b = int(p["dim0"]) % ndim, int(p["dim1"]) % ndim
                perm[a], perm[b] = perm[b], perm[a]
            return [_Info((perm.index(info.dims[0]), perm.index(info.dims[1])), info.axes)]
        if outs[0].ndim != ndim or info.dims != (ndim - 2, ndim - 1):
            raise _Untraceable(f"{name} on a tensor whose last two axes are not (y, x)")
        sizes = outs[0].shape[-2:]
        if "output_size" in p:
            axes = tuple(a.adaptive(n) for a, n in zip(info.axes, sizes))
        else:
            axes = tuple(a.window(n, *w) for a, n, w in zip(info.axes, sizes, _windows(p)))
        return [_Info(info.dims, axes)]  # a max-pool's indices stay untraced


def _elementwise(name: str, traced: list[Tensor], infos: list[_Info], out: Tensor) -> _Info:
    """An op that keeps the spatial axes (activation, ``+``, concat): the inputs' union."""
    merged = None
    for t, info in zip(traced, infos):
        if out.ndim != t.ndim or (merged is not None and merged.dims != info.dims):
            raise _Untraceable(f"{name} changes the number of axes or mixes spatial layouts")
        axes = tuple(a.resized(out.shape[d], name) for d, a in zip(info.dims, info.axes))
        if merged is not None:
            axes = tuple(a.union(m) for a, m in zip(axes, merged.axes))
        merged = _Info(info.dims, axes)
    return merged


@dataclass
class ReceptiveField:
    """Theoretical receptive field of every cell of a layer: ``boxes`` (h, w, 4) float64
    ``(x0, y0, x1, y1)``, half-open input pixels, not clipped; ``size`` (r_y, r_x), the
    largest extent; ``jump`` (j_y, j_x), pixels between neighbouring fields (0 after a
    squeeze-excite gate); ``image_size`` (H, W) of the traced input."""

    boxes: Tensor
    size: tuple[int, int]
    jump: tuple[float, float]
    image_size: tuple[int, int]

    @property
    def grid(self) -> tuple[int, int]:
        return int(self.boxes.shape[0]), int(self.boxes.shape[1])

    def boxes_for(self, cells: Sequence | Tensor | None = None, *, clip: bool = False) -> Tensor:
        """(K, 4) boxes of (row, col) ``cells`` (``None``: all, row-major)."""
        b = self.boxes.flatten(0, 1) if cells is None else self.boxes[tuple(as_cells(cells).T)]
        return clip_boxes_to_image(b, self.image_size) if clip else b

    @property
    def centers(self) -> Tensor:
        """(h, w, 2) ``(x, y)`` box centres (off the CAM centres under asymmetric padding)."""
        return (self.boxes[..., :2] + self.boxes[..., 2:]) / 2


def _image_size(model: nn.Module, image_size: int | Sequence[int] | None) -> tuple[int, int]:
    size = getattr(model, "input_size", 224) if image_size is None else image_size
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def receptive_field(
    model: nn.Module, layer: nn.Module | str, image_size: int | Sequence[int] | None = None
) -> ReceptiveField:
    """Theoretical receptive field of each cell of ``layer`` (module or dotted name, output
    (1, C, h, w)) for an input of ``image_size`` (side or (H, W); default
    ``model.input_size`` or 224), paper Sec. 3, Fig. 2: one forward pass follows each
    convolution, pooling, ``F.pad``, permute and spatial-axis-keeping op (no gradient).

    Raises:
        NotImplementedError: upsampling, spatial slicing or token layers (use
            :func:`empirical_receptive_field`).
    """
    H, W = _image_size(model, image_size)
    rows, cols = torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64)
    tracer, x = _Tracer(), torch.zeros(1, 3, H, W, device=model_device(model))
    tracer.register(x, _Info((2, 3), (_Axis(rows, rows, 1.0), _Axis(cols, cols, 1.0))))
    with torch.no_grad(), tracer:
        out = capture_output(model, layer, x)
    if not isinstance(out, Tensor) or out.ndim != 4:  # a transformer's (N, T, C) tokens, say
        info = "a layer output that is not (N, C, h, w)"
    else:
        info = tracer.info.get(id(out))
    if isinstance(info, _Info) and info.dims != (2, 3):
        info = "a layer output laid out other than (N, C, h, w)"
    if isinstance(info, str):
        raise NotImplementedError(
            f"receptive_field cannot follow {info!r} from the input to {layer!r}; "
            "use empirical_receptive_field() instead"
        )
    if info is None:
        raise RuntimeError(f"the output of {layer!r} does not depend on the input")
    y, x = info.axes
    corners = (x.lo[None], y.lo[:, None], x.hi[None] + 1, y.hi[:, None] + 1)
    boxes = torch.stack(torch.broadcast_tensors(*corners), -1)
    size = (int((y.hi - y.lo).max()) + 1, int((x.hi - x.lo).max()) + 1)
    jump = tuple(
        float((a.lo[-1] - a.lo[0]) / (len(a.lo) - 1)) if len(a.lo) > 1 else a.jump for a in (y, x)
    )
    return ReceptiveField(boxes, size, jump, (H, W))


def empirical_receptive_field(
    model: nn.Module,
    layer: nn.Module | str,
    cells: Sequence[tuple[int, int]] | Tensor | None = None,
    image_size: int | Sequence[int] | None = None,
) -> Tensor:
    """Bounding box of the pixels where ∂ Σ_c |a_c[k]| / ∂x ≠ 0 at uniform noise (seed 0),
    per cell k (``cells`` (K, 2); ``None``: all), token layers too: a lower bound of the
    clipped theoretical field. Returns (K, 4) float64 ``(x0, y0, x1, y1)`` half-open on
    the CPU, NaN where the gradient is zero everywhere."""
    size = _image_size(model, image_size)
    noise = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    obj = cell_objective(model, layer, None if cells is None else as_cells(cells), image_size=size)
    x, bound = obj.expand(model, noise.to(model_device(model)))
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(bound(model, x).sum(), x)
    support = grad.abs().amax(1) > 0  # (K, H, W)
    moved = support.flatten(1).any(1)
    boxes = torch.full((len(support), 4), math.nan, dtype=torch.float64)
    if bool(moved.any()):  # masks_to_boxes gives inclusive (x0, y0, x1, y1)
        found = masks_to_boxes(support[moved]).double().cpu()
        boxes[moved.cpu()] = found + found.new_tensor([0, 0, 1, 1])
    return boxes
