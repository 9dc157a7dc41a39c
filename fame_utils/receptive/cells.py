"""Cells of a layer, their theoretical and empirical receptive fields and FAME over many
cells at once (paper Sec. 3, Fig. 2). Upsampling an h × w map to H × W assumes cell (i, j)
sees rows [i·H/h, (i+1)·H/h) and columns [j·W/w, (j+1)·W/w), its **CAM box**."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten
from torchvision.ops import clip_boxes_to_image, masks_to_boxes

from .._checks import check_images, model_device
from ..core import FameConfig, FameResult, run_fame
from ..objectives import capture_output, cell_objective
from ..postprocess import gaussian_blur
from ..recipes import Recipe, get_recipe


def as_cells(cells: Sequence[tuple[int, int]] | Tensor) -> Tensor:
    """``cells`` as a (K, 2) long tensor of (row, col); refuses floats and other shapes."""
    t = torch.as_tensor(cells)
    if t.is_floating_point() or t.dtype == torch.bool:
        raise TypeError(f"cells must be integer (row, col) pairs, got dtype {t.dtype}")
    if t.numel() == 0 or t.shape[-1] != 2:
        raise ValueError(f"cells must be a (K, 2) list of (row, col) pairs, got {tuple(t.shape)}")
    return t.long().reshape(-1, 2)


def all_cells(grid: Sequence[int]) -> Tensor:
    """Every cell of an h × w grid, row-major: (h·w, 2) long (row, col)."""
    h, w = (int(v) for v in grid)
    return torch.cartesian_prod(torch.arange(h), torch.arange(w)).reshape(-1, 2)


def sample_cells(grid: Sequence[int], k: int | None, seed: int = 0) -> Tensor:
    """``k`` distinct cells drawn with ``seed``, row-major: (K, 2) long (``None``: all)."""
    cells = all_cells(grid)
    if k is None or k >= len(cells):
        return cells
    if k < 1:
        raise ValueError(f"k must be >= 1 or None, got {k}")
    pick = torch.randperm(len(cells), generator=torch.Generator().manual_seed(int(seed)))
    return cells[pick[:k].sort().values]


def cells_at(grid: Sequence[int], positions: Sequence[tuple[float, float]]) -> Tensor:
    """The cells under relative image positions (y, x) in [0, 1]: (K, 2) long (row, col)."""
    pos = torch.as_tensor(positions, dtype=torch.float64).reshape(-1, 2)
    if bool(((pos < 0) | (pos > 1)).any()):
        raise ValueError(f"positions must lie in [0, 1], got {pos.tolist()}")
    hw = pos.new_tensor([int(v) for v in grid])
    return (pos * hw).floor().long().minimum(hw.long() - 1)


def cam_boxes(
    grid: Sequence[int], image_size: Sequence[int], cells: Sequence | Tensor | None = None
) -> Tensor:
    """CAM-assumed boxes of ``cells`` ((K, 2); ``None``: all, row-major) of an h × w ``grid``
    on an H × W image: (K, 4) float64 ``(x0, y0, x1, y1)`` on the CPU."""
    c = (all_cells(grid) if cells is None else as_cells(cells)).double()
    size, n = c.new_tensor(image_size).flip(0), c.new_tensor(grid).flip(0)
    return torch.cat([c.flip(1) * size / n, (c.flip(1) + 1) * size / n], 1)


def cell_centers(
    grid: Sequence[int], image_size: Sequence[int], cells: Sequence | Tensor | None = None
) -> Tensor:
    """Centres of the CAM boxes: (K, 2) float64 ``(x, y)``."""
    b = cam_boxes(grid, image_size, cells)
    return (b[:, :2] + b[:, 2:]) / 2


def cell_config(
    config: FameConfig | None, overrides: dict, model: nn.Module, recipe: str | Recipe | None = None
) -> FameConfig:
    """``config`` with ``overrides`` (checked against ``recipe``), else the recipe's; batch 16
    (CPU) or 64 (GPU) where ``batch_size`` is ``None``."""
    if config is None:
        cfg = get_recipe(recipe).fame_config("cells", **overrides)
    else:
        cfg = config.replace(**overrides) if overrides else config
        if recipe is not None:
            get_recipe(recipe).check_config(cfg, "cells")
    if cfg.batch_size is None:
        cfg = cfg.replace(batch_size=64 if model_device(model).type == "cuda" else 16)
    return cfg


@dataclass
class CellAttributions:
    """FAME over K ``cells`` (K, 2) of a layer's (h, w) ``grid`` for B images of
    ``image_size`` (H, W) (paper Fig. 2, L_a): the ``result`` of B·K samples, image-major."""

    result: FameResult
    cells: Tensor
    grid: tuple[int, int]
    image_size: tuple[int, int]

    @property
    def delta(self) -> Tensor:
        """(B, K, H, W) unblurred Δx = |gray(x̄) − gray(x)|."""
        return self.result.delta.view(-1, len(self.cells), *self.image_size)

    def maps(self, **options: object) -> Tensor:
        """(B, K, H, W) maps in [0, 1]; ``options`` as :meth:`FameResult.maps`."""
        return self.result.maps(**options).view_as(self.delta)

    def blurred(self, *, sigma: float | None = None) -> Tensor:
        """(B, K, H, W) Δx blurred at ``sigma`` (default: the config's), not normalised."""
        cfg = self.result.config
        s = cfg.sigma if sigma is None else sigma
        return gaussian_blur(self.result.delta, cfg.kernel_size, s).view_as(self.delta)


def run_cells(
    model: nn.Module,
    images: Tensor,
    layer: nn.Module | str,
    cells: Sequence[tuple[int, int]] | Tensor | None = None,
    config: FameConfig | None = None,
    *,
    class_token: bool = False,
    recipe: str | Recipe | None = None,
    **overrides: object,
) -> CellAttributions:
    """FAME for K ``cells`` ((K, 2) (row, col); ``None``: all) of ``layer`` (output
    (N, C, h, w) or (N, T, C) tokens) on B images (B, 3, H, W) in [0, 1], one batched run of
    B·K copies descending L_a = Σ_c |a_c[k]| (paper Fig. 2; ``class_token``: a ViT's class
    token), config as :func:`cell_config`: :class:`CellAttributions` on the images' device."""
    check_images(images)
    cfg = cell_config(config, overrides, model, recipe)
    size = (int(images.shape[-2]), int(images.shape[-1]))
    cell_t = None if cells is None else as_cells(cells)
    objective = cell_objective(model, layer, cell_t, image_size=size, class_token=class_token)
    grid = objective.grid_shape(model, size)
    result = run_fame(model, images, objective, cfg)
    return CellAttributions(result, all_cells(grid) if cell_t is None else cell_t, grid, size)


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
        idx = torch.minimum(
            start[:, None] + torch.arange(int((end - start).max()) + 1), end[:, None]
        )
        return self.gather(idx, self.jump * n / n_out)

    def resized(self, n_out: int, op: str) -> _Axis:
        """Kept, broadcast from size 1 (a squeeze-excite gate) or reduced to 1."""
        n = len(self.lo)
        if n_out == n:
            return self
        if n == 1:
            return self.gather(torch.zeros(n_out, 1, dtype=torch.long), 0.0)
        if n_out == 1:
            return self.gather(torch.arange(n)[None], self.jump * n)
        raise NotImplementedError(f"{op} resizes a spatial axis ({n} -> {n_out})")

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


# the spatial ops nn's layers (and F.pad, permute, transpose) call: their parameters after
# the input, as F.* takes them
_ADAPTIVE = ("adaptive_avg_pool2d", "adaptive_max_pool2d", "adaptive_max_pool2d_with_indices")
_PARAMS = {
    "conv2d": ("weight", "bias", "stride", "padding", "dilation"),
    **dict.fromkeys(
        ("max_pool2d", "max_pool2d_with_indices"), ("kernel_size", "stride", "padding", "dilation")
    ),
    "avg_pool2d": ("kernel_size", "stride", "padding"),
    "lp_pool2d": ("norm_type", "kernel_size", "stride"),
    "pad": ("pad",),
    **dict.fromkeys(_ADAPTIVE, ("output_size",)),
}
_MOVES = ("permute", "transpose", "swapaxes", "movedim")  # ops that only reorder the axes


def _windows(p: dict) -> zip:
    """(kernel, stride, padding, dilation) per axis of a convolution, pooling or pad call."""
    if "pad" in p:  # F.pad's pairs run from the last axis: x before, x after, y before
        pad = [int(v) for v in p["pad"]] + [0] * 4
        return zip((1, 1), (1, 1), (pad[2], pad[0]), (1, 1))
    if "weight" in p:  # conv2d
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
                infos = self._rule(func, args, kwargs, traced, outs)
            except NotImplementedError as e:
                infos = [str(e)] * len(outs)
            for o, i in zip(outs, infos):
                self.register(o, i)
        return out

    def _rule(self, func, args, kwargs, traced, outs) -> list[_Info]:
        name = getattr(func, "__name__", "?")
        infos = [self.info[id(a)] for a in traced]
        unknown = [i for i in infos if isinstance(i, str)]
        if unknown:
            raise NotImplementedError(unknown[0])
        first, info, ndim = traced[0], infos[0], traced[0].ndim
        if not args or args[0] is not first or name not in (*_PARAMS, *_MOVES):
            return [_elementwise(name, traced, infos, o) for o in outs]  # rules read the 1st arg
        if name in _MOVES:  # the op on a shape-only probe of distinct sizes shows the new order
            sizes = list(range(2, ndim + 2))
            moved = func(torch.empty(sizes, device="meta"), *args[1:], **kwargs).shape
            return [_Info(tuple(moved.index(sizes[d]) for d in info.dims), info.axes)]
        p = dict(zip(_PARAMS[name], args[1:])) | kwargs
        if outs[0].ndim != ndim or info.dims != (ndim - 2, ndim - 1):
            raise NotImplementedError(f"{name} on a tensor whose last two axes are not (y, x)")
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
            raise NotImplementedError(f"{name} changes the number of axes or mixes spatial layouts")
        axes = tuple(a.resized(out.shape[d], name) for d, a in zip(info.dims, info.axes))
        if merged is not None:
            axes = tuple(a.union(m) for a, m in zip(axes, merged.axes))
        merged = _Info(info.dims, axes)
    return merged


@dataclass
class ReceptiveField:
    """Theoretical fields of a layer's cells: ``boxes`` (h, w, 4) float64 half-open, not
    clipped; ``size`` (r_y, r_x), the largest; ``jump`` (j_y, j_x), pixels between fields (0
    after a squeeze-excite gate); ``image_size`` (H, W) of the traced input."""

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
    """Theoretical receptive field of each cell of ``layer`` (output (1, C, h, w)) for an
    input of ``image_size`` (side or (H, W); default ``model.input_size`` or 224), paper
    Sec. 3, Fig. 2: one no-grad forward pass follows each convolution, pooling, ``F.pad``,
    permute and spatial-axis-keeping op. ``NotImplementedError`` on upsampling, spatial
    slicing or token layers (use :func:`empirical_receptive_field`)."""
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
    """Bounding box of the pixels where ∂ Σ_c |a_c[k]| / ∂x ≠ 0 at seeded uniform noise per
    cell k (``None``: all), token layers too, a lower bound of the clipped theoretical field:
    (K, 4) float64 CPU ``(x0, y0, x1, y1)`` half-open, NaN where the gradient is all zero."""
    size = _image_size(model, image_size)
    noise = torch.rand(1, 3, *size, generator=torch.Generator().manual_seed(0))
    obj = cell_objective(model, layer, None if cells is None else as_cells(cells), image_size=size)
    x, bound = obj.expand(model, noise.to(model_device(model)))
    x = x.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(bound(model, x).sum(), x)
    support = grad.abs().amax(1) > 0  # (K, H, W)
    moved = support.flatten(1).any(1)
    boxes = torch.full((len(support), 4), math.nan, dtype=torch.float64)
    found = masks_to_boxes(support[moved]).double().cpu()  # inclusive (x0, y0, x1, y1)
    boxes[moved.cpu()] = found + found.new_tensor([0, 0, 1, 1])
    return boxes
