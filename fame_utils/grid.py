"""The grid pointing game and its DiFull control (beyond the paper, notebook 07): each cell's
class of a 2×2 grid (cell k at row k // 2, column k % 2) is explained on the whole grid and
scored by the map's positive mass in that cell (Böhle et al., CVPR 2021; Rao et al., CVPR
2022): 1 is perfect, 1/4 is chance."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.utils import make_grid

from .data.items import ClassificationDataset, Task
from .data.objects import load_sample_objects
from .experiment.result import ExperimentResult
from .experiment.run import run_experiment
from .methods import Fame, make_methods
from .metrics.adapters import Column
from .postprocess import gaussian_blur, kernel_size_for, normalize_maps
from .stats import DEFAULT_RESAMPLES, Interval

SIDE = 2  # cells per grid side


def make_grids(
    images: Tensor, labels: Tensor, names: Sequence[str], n_grids: int, seed: int = 0
) -> ClassificationDataset:
    """``n_grids`` seeded grids (3, 2h, 2w) of 4 pool images (N, 3, h, w) of distinct
    ``labels``: one item per (grid, cell), grid-major, with the cell's class, the cell as
    ``box`` and the name ``"g<grid>c<cell>:<source name>"``. ``ValueError``: too few
    classes, ``n_grids`` < 1."""
    n = SIDE * SIDE
    classes = labels.unique()
    if len(classes) < n:
        raise ValueError(
            f"the pool has {len(classes)} distinct classes, a 2x2 grid needs {n}: "
            "add images or lower the confidence threshold"
        )
    if n_grids < 1:
        raise ValueError(f"n_grids must be >= 1, got {n_grids}")
    gen = torch.Generator().manual_seed(int(seed))
    _, _, h, w = images.shape
    sources = torch.empty(n_grids, n, dtype=torch.long)
    for g in range(n_grids):
        chosen = classes[torch.randperm(len(classes), generator=gen)[:n]]
        for k, c in enumerate(chosen):
            members = (labels == c).nonzero().flatten()
            sources[g, k] = members[torch.randint(len(members), (1,), generator=gen)]
    grids = torch.stack([make_grid(images[s], nrow=SIDE, padding=0) for s in sources])
    boxes = [
        [k % SIDE * w, k // SIDE * h, (k % SIDE + 1) * w, (k // SIDE + 1) * h] for k in range(n)
    ]
    return ClassificationDataset(
        grids.repeat_interleave(n, 0),
        labels[sources].flatten(),
        torch.tensor(boxes, dtype=torch.float32).repeat(n_grids, 1),
        [f"g{g}c{k}:{names[int(sources[g, k])]}" for g in range(n_grids) for k in range(n)],
    )


def cell_masks(shape: Sequence[int], cells: Tensor) -> Tensor:
    """(B, H, W) bool masks of ``cells`` (B,): pixel (y, x) is in cell (2y // H)·2 + 2x // W."""
    height, width = int(shape[-2]), int(shape[-1])
    cells = torch.as_tensor(cells).long().reshape(-1)
    if ((cells < 0) | (cells >= SIDE * SIDE)).any():
        raise ValueError(f"cells must lie in [0, {SIDE * SIDE}), got {cells.tolist()}")
    ys = torch.arange(height, device=cells.device) * SIDE // height
    xs = torch.arange(width, device=cells.device) * SIDE // width
    r, c = (cells // SIDE).view(-1, 1, 1), (cells % SIDE).view(-1, 1, 1)
    return (ys.view(1, -1, 1) == r) & (xs.view(1, 1, -1) == c)


def _box_cells(boxes: Tensor, height: int, width: int) -> Tensor:
    """(B,) cell index of the centre of each (x0, y0, x1, y1) box."""
    centre = (boxes[:, :2] + boxes[:, 2:]) / 2
    return (centre[:, 1] * SIDE // height).long() * SIDE + (centre[:, 0] * SIDE // width).long()


def _share(values: Tensor, cells: Tensor, what: str) -> Tensor:
    if values.ndim != 3:
        raise ValueError(f"maps must be (B, H, W), got shape {tuple(values.shape)}")
    inside = cell_masks(values.shape, cells.to(values.device))
    if inside.shape[0] != values.shape[0]:
        raise ValueError(f"{values.shape[0]} maps but {inside.shape[0]} cells")
    total = values.sum((1, 2))
    empty = total <= 0
    if empty.any():
        warnings.warn(f"{int(empty.sum())} all-zero map(s) score 0 in the {what}", stacklevel=3)
    return torch.where(empty, 0.0, (values * inside).sum((1, 2)) / total.clamp_min(1e-30))


def grid_pointing_game(maps: Tensor, cells: Tensor) -> Tensor:
    """(B,) share of each map's (B, H, W, clipped at 0) mass inside its target cell
    (``cells`` (B,)); an all-zero map scores 0 with a warning."""
    return _share(maps.float().clamp_min(0), cells, "grid pointing game")


def energy_share(maps: Tensor, cells: Tensor) -> Tensor:
    """(B,) share of the squared map inside the target cell (the "energy")."""
    return _share(maps.float().clamp_min(0) ** 2, cells, "energy share")


def pointing_hit(maps: Tensor, cells: Tensor) -> Tensor:
    """(B,) 1.0 where the map's (first) argmax lies in the target cell, else 0.0."""
    flat = maps.float().flatten(1).argmax(1)
    inside = cell_masks(maps.shape, cells.to(maps.device)).flatten(1)
    return inside.gather(1, flat[:, None]).squeeze(1).float()


@dataclass
class GridMetric:
    """Runner metric: ``GridPG``, ``hit`` and ``energy`` of each item's map for the cell its
    ``box`` covers (:func:`make_grids`)."""

    task: Task = "classification"
    decimals: int = 3

    def columns(self) -> list[Column]:
        return [Column("GridPG"), Column("hit"), Column("energy")]

    def __call__(self, model, batch, attribution, **_):
        if batch.boxes is None:
            raise ValueError("GridMetric needs the target cell as each item's box (make_grids)")
        maps = attribution.positive.float()
        cells = _box_cells(batch.boxes.to(maps.device), *maps.shape[-2:])
        fns = (grid_pointing_game, pointing_hit, energy_share)
        return {c: fn(maps, cells) for c, fn in zip(self.columns(), fns)}


class DiFull(nn.Module):
    """The disconnected control of Rao et al. (2022): each grid cell goes through ``model``
    on its own, so any attribution outside cell k of cell k's logit is the method's error.
    Input (B, 3, 2h, 2w) in [0, 1]; output (B, 4K), entry ``k·K + c`` class c's logit of
    cell k; ``target_layer`` sees the cells' activations tiled into the grid.
    """

    unsupported = frozenset({"FullGrad"})

    def __init__(self, model: nn.Module):
        super().__init__()
        layer = getattr(model, "target_layer", None)
        if not isinstance(layer, nn.Module):
            raise ValueError("DiFull needs a model with a `target_layer` (load_classifier's)")
        self.model, self.grid = model, (SIDE, SIDE)  # grid: part of the cache fingerprint
        self.tiles = nn.Identity()
        self.name = f"DiFull({getattr(model, 'name', type(model).__name__)})"
        self.input_normalization = getattr(model, "input_normalization", None)
        self._active = False  # the hook acts only inside DiFull.forward, not on `model` alone
        layer.register_forward_hook(lambda _m, _i, out: self._retile(out) if self._active else None)

    @property
    def target_layer(self) -> nn.Module:
        return self.tiles

    def _retile(self, out: Tensor) -> Tensor:
        bn, ch, h, w = out.shape
        t = out.view(bn // SIDE**2, SIDE, SIDE, ch, h, w).permute(0, 3, 1, 4, 2, 5)
        t = self.tiles(t.reshape(-1, ch, SIDE * h, SIDE * w))
        t = t.view(-1, ch, SIDE, h, SIDE, w).permute(0, 2, 4, 1, 3, 5)
        return t.reshape(bn, ch, h, w)

    def forward(self, x: Tensor) -> Tensor:
        b, ch, height, width = x.shape
        if height % SIDE or width % SIDE:
            raise ValueError(f"a 2x2 DiFull grid needs even sides, got {height}x{width}")
        h, w = height // SIDE, width // SIDE
        cells = x.view(b, ch, SIDE, h, SIDE, w).permute(0, 2, 4, 1, 3, 5).reshape(-1, ch, h, w)
        self._active = True
        try:
            return self.model(cells).view(b, -1)
        finally:
            self._active = False


@dataclass
class GridRun:
    """One network's game: runner results, grid items (:func:`make_grids`), pool names."""

    grid: ExperimentResult
    difull: ExperimentResult
    data: ClassificationDataset
    pool: list[str]


def run_grid_game(
    model: nn.Module,
    methods: Sequence,
    out_dir: str,
    *,
    n_grids: int = 4,
    cell_size: int | None = None,
    confidence: float = 0.3,
    seed: int = 0,
    recipes: Sequence[str] | None = ("paper", "reference"),
    unblurred: bool = True,
    **settings,
) -> GridRun:
    """The grid game and DiFull of a :func:`~fame_utils.load_classifier` model by the
    runner (other ``settings``) in ``out_dir/grid`` and ``out_dir/difull``, on the bundled
    objects whose top-1 is their label with softmax ≥ ``confidence``, resized (bilinear,
    antialiased) to ``cell_size``. ``methods``, ``recipes``, ``settings["fame_settings"]``:
    for :func:`~fame_utils.methods.make_methods`; ``unblurred``: the first FAME also at
    σ = 0, right after it. On DiFull, item k·K + c is cell k's class c."""
    samples = load_sample_objects(resize=model.resize_size, crop=model.input_size)
    with torch.no_grad():
        logits = model(samples.images.to(next(model.parameters()).device))
    conf, top = logits.softmax(1).cpu().max(1)
    keep = (top == samples.labels.cpu()) & (conf >= confidence)
    images, labels = samples.images.cpu()[keep], samples.labels.cpu()[keep]
    if cell_size is not None and cell_size != images.shape[-1]:
        size = (cell_size, cell_size)
        images = F.interpolate(images, size=size, mode="bilinear", antialias=True).clamp(0, 1)
    names = [n for n, k in zip(samples.names, keep.tolist()) if k]
    data = make_grids(images, labels, names, n_grids, seed)
    fame = settings.pop("fame_settings", None)
    methods = make_methods(methods, "classification", recipes=recipes, fame_settings=fame)
    fames = [i for i, m in enumerate(methods) if isinstance(m, Fame)]
    if unblurred and fames:
        m = methods[fames[0]]
        methods.insert(fames[0] + 1, Fame(m.config.replace(sigma=0.0), f"{m.name}, σ=0"))
    metric = [GridMetric()]
    settings.setdefault("seed", seed)
    on_grid = run_experiment(model, data, methods, metric, f"{out_dir}/grid", **settings)
    labels = _box_cells(data.boxes, *data.images.shape[-2:]) * len(model.categories)
    cells = ClassificationDataset(data.images, labels + data.labels, data.boxes, data.names)
    kept = [m for m in methods if m.name not in DiFull.unsupported]
    on_difull = run_experiment(DiFull(model), cells, kept, metric, f"{out_dir}/difull", **settings)
    return GridRun(on_grid, on_difull, data, names)


def image_bootstrap(
    values: np.ndarray,
    sources: Sequence[str],
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    seed: int = 0,
    level: float = 0.95,
) -> Interval:
    """Mean of per-item ``values`` with a percentile interval that resamples the source
    images (``sources``, per item) with all their items: grids share images."""
    values = np.asarray(values, dtype=np.float64)
    names, index = np.unique(np.asarray(sources), return_inverse=True)
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(len(names), np.full(len(names), 1 / len(names)), size=n_resamples)
    weights = counts[:, index]
    keep = weights.sum(1) > 0
    means = (weights[keep] @ values) / weights[keep].sum(1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return Interval(float(values.mean()), float(low), float(high), level)


def grid_table(
    results: Mapping[str, GridRun], *, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0
) -> pd.DataFrame:
    """Method × network table of ``GridPG``, ``hit`` and ``DiFull`` share, each
    ``"mean [low, high]"`` to 2 decimals (:func:`image_bootstrap`); "—": not run."""
    columns, bootstrap = {}, {"n_resamples": n_resamples, "seed": seed}
    for network, runs in results.items():
        for run, metric, label in (
            ("grid", "GridPG", "GridPG"),
            ("grid", "hit", "hit"),
            ("difull", "GridPG", "DiFull"),
        ):
            table = getattr(runs, run).per_item(metric)
            sources = [str(item).split(":", 1)[-1] for item in table.index]
            column = {m: image_bootstrap(table[m].to_numpy(), sources, **bootstrap) for m in table}
            columns[f"{network} {label}"] = pd.Series(column).map(lambda iv: iv.format(2))
    return pd.concat(columns, axis=1, sort=False).fillna("—")


def draw_grid_example(
    runs: Mapping,
    network: str,
    run: str = "grid",
    grid: int = 0,
    cell: int = 0,
    method: str | None = None,
    sigma: float = 0.0,
) -> plt.Figure:
    """Fig. 7: one grid of ``runs[network]`` on model ``run`` (``"grid"`` or ``"difull"``),
    the target ``cell`` outlined, then ``method``'s map (``None``: all) with its GridPG share
    and largest value outside the cell; ``sigma`` > 0 blurs the maps further."""
    result = getattr(runs[network], run)
    index = grid * SIDE * SIDE + cell
    if method is not None and method not in result.methods:
        raise ValueError(
            f"{method!r} was not run on the {run} model; its methods: {result.methods}"
        )
    names = [n for n in result.methods if method in (None, n)]
    item = runs[network].data[index]
    fig, axes = plt.subplots(1, len(names) + 1, figsize=(2.3 * (len(names) + 1), 2.8))
    x0, y0, x1, y1 = (float(v) for v in item.box)
    for ax in axes:
        ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, ec="lime", lw=1.5))
        ax.set_xticks([]), ax.set_yticks([])
    axes[0].imshow(item.image.permute(1, 2, 0).numpy())
    source = item.name.split(":", 1)[-1]
    axes[0].set_title(f"{network} ({run})\ngrid {grid}, cell {cell}: {source}", fontsize=7)
    cells = torch.tensor([cell])
    for ax, name in zip(axes[1:], names):
        m = result.maps(name).positive[index : index + 1].float()
        if sigma > 0:
            m = normalize_maps(gaussian_blur(m, kernel_size_for(sigma), sigma))[0]
        share = float(grid_pointing_game(m, cells)[0])
        outside = float((m * ~cell_masks(m.shape, cells)).amax())
        ax.imshow(m[0].numpy(), cmap="jet", vmin=0, vmax=1)
        ax.set_title(f"{name}\nshare {share:.2f}, out max {outside:.2f}", fontsize=7)
    fig.tight_layout()
    return fig
