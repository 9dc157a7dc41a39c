"""ipywidgets controls for the notebooks: one pattern that renders headless and in JupyterLab.

:func:`panel` is the one way the notebooks (and :func:`blur_explorer`, the receptive-field
cell explorer) build controls: a render function of the control values returns a figure
and/or text; the panel shows it in its own ``Output`` widget and renders once at creation
with the initial values, so a headless papermill run still produces the output.
"""

from __future__ import annotations

import io
import traceback
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

import ipywidgets as W
import matplotlib.pyplot as plt
from torch import Tensor, nn

from .core import FameConfig, FameResult, run_fame
from .objectives import Objective

__all__ = ["FameCache", "blur_explorer", "face_explorer", "metric_explorer", "panel", "show_in"]


def show_in(out: W.Output, *items: Any) -> None:
    """Replace the contents of ``out`` with ``items`` in order: a matplotlib figure (shown
    as a PNG, then closed), a ``str`` (plain text), or any IPython-displayable object
    (``Markdown``, a DataFrame, ...). ``None`` items are skipped.

    Sets the Output widget's state directly instead of capturing with ``with out:``:
    headless runs (papermill/nbclient) intermittently lost the kernel's idle message when
    plots were captured into an Output widget, and hung.
    """
    from IPython.display import Image

    out.outputs = ()
    for item in items:
        if item is None:
            continue
        if isinstance(item, plt.Figure):
            buf = io.BytesIO()
            item.savefig(buf, format="png", dpi=100, bbox_inches="tight")
            plt.close(item)
            out.append_display_data(Image(data=buf.getvalue()))
        elif isinstance(item, str):
            out.append_stdout(item if item.endswith("\n") else item + "\n")
        else:
            out.append_display_data(item)


def panel(
    render: Callable[..., Any],
    controls: Mapping[str, W.ValueWidget],
    *,
    button: str | None = None,
    per_row: int = 3,
) -> W.VBox:
    """Controls over an output area that shows ``render(**values)``.

    Without ``button`` every control re-renders when it changes. With ``button`` (its
    label, e.g. ``"Run"``) the controls take effect when the button is pressed, for
    settings that cost a recomputation. Renders once immediately with the initial values
    (an error there raises; later errors are shown in the output area as a traceback).
    Labels get their natural width (``description_width="initial"``), so none is cut.

    Args:
        render: keyword arguments named like ``controls`` -> a figure, text, a displayable
            object, or a tuple/list of those (see :func:`show_in`).
        controls: ``{argument name: widget}``, shown in this order, ``per_row`` per row.
        button: label of a button that applies the controls; ``None``: all act at once.

    Returns:
        ``VBox`` of rows of controls (the button last) and the ``Output`` (its last child).
    """
    applied = {name: w.value for name, w in controls.items()}
    out = W.Output()

    def draw() -> None:
        shown = render(**applied)
        show_in(out, *(shown if isinstance(shown, (tuple, list)) else (shown,)))

    def safe_draw() -> None:
        try:
            draw()
        except Exception:  # a callback's error would otherwise vanish into the kernel log
            show_in(out, traceback.format_exc())

    def on_change(name: str, value: Any) -> None:  # without a button
        applied[name] = value
        safe_draw()

    def on_press(_: W.Button) -> None:
        applied.update({name: w.value for name, w in controls.items()})
        safe_draw()

    widgets: list[W.Widget] = []
    for name, w in controls.items():
        if hasattr(w.style, "description_width"):
            w.style.description_width = "initial"
        if button is None:
            w.observe(lambda change, name=name: on_change(name, change["new"]), "value")
        widgets.append(w)
    if button is not None:
        run = W.Button(description=button, tooltip="apply the settings and recompute")
        run.on_click(on_press)
        widgets.append(run)
    draw()
    rows = [W.HBox(widgets[i : i + per_row]) for i in range(0, len(widgets), per_row)]
    return W.VBox([*rows, out])


class FameCache:
    """Memoises :func:`run_fame` results by a key, so widgets that only change the blur
    (σ, kernel) re-blur the cached unblurred Δx instantly instead of re-optimising."""

    def __init__(self, model: nn.Module, config: FameConfig | None = None, max_items: int = 32):
        self.model = model
        self.config = config or FameConfig()
        self.max_items = max_items
        self._store: dict[Hashable, FameResult] = {}

    @staticmethod
    def _key(key: Hashable, overrides: dict) -> Hashable:
        return (key, tuple(sorted(overrides.items())))

    def put(self, key: Hashable, result: FameResult, **overrides) -> None:
        """Store a result computed elsewhere (e.g. one image of a batched run)."""
        if len(self._store) >= self.max_items:
            self._store.pop(next(iter(self._store)))
        self._store[self._key(key, overrides)] = result

    def get(self, key: Hashable, images: Tensor, objective: Objective, **overrides) -> FameResult:
        """The cached result for ``key`` and ``overrides``, computing it on a miss."""
        full = self._key(key, overrides)
        if full not in self._store:
            result = run_fame(self.model, images, objective, self.config, **overrides)
            self.put(key, result, **overrides)
        return self._store[full]

    def __len__(self) -> int:
        return len(self._store)


def blur_explorer(
    cache: FameCache,
    images: Tensor,
    names: Sequence[str],
    objective: Objective | Callable[[int], Objective],
    *,
    iterations: int = 100,
    step_size: float = 1 / 255,
    sigma: float = 7.7,
    paper_iterations: int = 500,
    callback_every: int = 1,
) -> W.VBox:
    """A live FAME explorer (:class:`fame_utils.live.LiveMap`) of one image at a time.

    Run controls (image, iterations, step size) apply on **Run**, which draws the map and
    the loss curve while FAME runs (the hook every ``callback_every`` iterations, frames
    at most every 0.2 s) (**Stop** keeps the
    map so far; one more button runs the paper's ``paper_iterations``); an image or setting
    already in ``cache`` shows at once. σ is live: it re-blurs the shown Δx. Seed the cache
    with results you already have via ``cache.put((i,), result[i], iterations=...,
    step_size=...)``. Starts at ``iterations`` (100: the supplement's maps settle at
    ~75-200; the first view runs at creation unless cached).

    Args:
        cache: :class:`FameCache` around the model (its config, e.g. the kernel size).
        images: (N, 3, H, W) in [0, 1].
        names: N display names.
        objective: the objective of all N images (each image gets its
            ``objective.subset(slice(i, i + 1))``), or a function index -> objective for that
            single image.

    Returns:
        ``VBox`` (its ``explorer`` attribute is the :class:`~fame_utils.live.LiveMap`).
    """
    from .live import LiveMap

    def objective_of(i: int) -> Objective:
        if isinstance(objective, Objective):
            return objective.subset(slice(i, i + 1))
        return objective(i)

    def run(settings: dict, hook: dict) -> FameResult:
        i = settings["image"]
        overrides = {"iterations": settings["iterations"], "step_size": settings["step_size"]}
        result = run_fame(
            cache.model, images[i : i + 1], objective_of(i), cache.config, **overrides, **hook
        )
        cache.put((i,), result, **overrides)
        return result

    def label(settings: dict) -> str:
        i = settings["image"]
        its, eta = settings["iterations"], settings["step_size"]
        return f"{names[i]} ({i + 1}/{len(names)}), {its} it, η {eta:.4f}"

    seeds = [
        ({"image": key[0], **dict(overrides)}, result)
        for (key, overrides), result in cache._store.items()
        if {k for k, _ in overrides} == {"iterations", "step_size"}
    ]
    slider = {"continuous_update": False}
    n = len(names)
    controls = {
        "image": W.Dropdown(
            options=[(f"{i + 1}/{n}: {name}", i) for i, name in enumerate(names)],
            description="image",
        ),
        "iterations": W.IntSlider(
            value=iterations, min=1, max=1000, description="iterations", **slider
        ),
        "step_size": W.FloatLogSlider(
            value=step_size, base=10, min=-4, max=-1, step=0.05, description="step size η", **slider
        ),
    }
    explorer = LiveMap(
        run,
        lambda settings: images[settings["image"]],
        controls,
        sigma=sigma,
        kernel_size=cache.config.kernel_size,
        seeds=seeds,
        label=label,
        callback_every=callback_every,
        paper=paper_iterations,
    )
    return explorer.widget


def face_explorer(
    model: nn.Module,
    protocols: Mapping[str, Any],
    threshold: float,
    fame_config: FameConfig,
    *,
    start: tuple[str, str, int],
    n_masks: int,
    seed: int = 0,
    precomputed: Mapping[str, Any] | None = None,
    callback_every: int = 1,
) -> W.VBox:
    """Fig. 3 for one genuine pair at a time: a live FAME e₊ map
    (:class:`~fame_utils.live.LiveMap`) over the comparison of every method.

    Run controls (variation, pair, FAME iterations, CorrRISE masks) apply on **Run**: the
    other methods run first when their (pair, masks) is new, then FAME in a background
    thread, drawing its e₊ map and loss curve while it optimises (**Stop** keeps the
    iterations done; a new Run cancels the run in flight); the comparison below redraws
    when the run ends. FAME's result is cached by (pair, iterations) and the other methods'
    maps by (pair, masks), so Run recomputes only what changed. σ is live: it re-blurs
    FAME's Δx (e₊ and e₋) at once, also during a run (the kernel is the config's at its σ,
    :func:`~fame_utils.postprocess.kernel_size_for` elsewhere).

    Args:
        model: face model, (N, 3, H, W) [0, 1] -> (N, D) embeddings.
        protocols: ``{subset: FacePairs}`` (:mod:`fame_utils.data.faces`).
        threshold: θ, the clean EER threshold (FGGB's weights, the target's threshold).
        fame_config: FAME's settings; iterations and σ start from it.
        start: ``(subset, variation, k)``: the k-th genuine pair shown first.
        n_masks, seed: CorrRISE's initial mask count and its mask seed.
        precomputed: ``{method name: Attribution}`` whose first row is the ``start`` pair at
            the initial settings (e.g. the figure's), so the first view costs nothing; the
            figure keeps no Δx, so moving σ first runs FAME for that pair (live).
        callback_every: iterations between FAME's progress calls (see ``LiveMap``).

    Returns:
        ``VBox``: the live map's widget, then the comparison's ``Output`` (last child). Its
        ``runs`` attribute counts the computations (``{"FAME": n, "others": m}``), its
        ``explorer`` is the :class:`~fame_utils.live.LiveMap`.
    """
    from .live import LiveMap
    from .methods import Fame, explain_all, make_methods, table_methods
    from .metrics.face import embed
    from .objectives import Attribution, CosineSimilarity
    from .plotting import draw_face_rows
    from .postprocess import kernel_size_for

    def genuine(variation: tuple[str, str]):
        return protocols[variation[0]].select(variation=variation[1], genuine=True)

    def pair_of(settings: dict):
        p = genuine(settings["variation"]).subset(settings["pair"])
        ref = embed(model, p.gallery)
        return p, ref, CosineSimilarity(ref, threshold=threshold)

    sigma0 = fame_config.sigma
    start = (start[0], start[1], start[2] % len(genuine(start[:2])))  # as the figure picks it
    others = [k for k in table_methods("verification") if k != "fame"]
    fame_runs: dict[tuple, FameResult] = {}  # (variation, pair, iterations) -> e₊ then e₋
    other_maps: dict[tuple, dict] = {}  # (variation, pair, n_masks) -> {name: Attribution}
    runs = {"FAME": 0, "others": 0}
    figure_fame = None
    if precomputed is not None:
        first = {
            k: type(a)(*(m if m is None else m[:1] for m in a)) for k, a in precomputed.items()
        }
        figure_fame = first.pop("FAME", None)
        other_maps[(start[:2], start[2], n_masks)] = first
    out, drawn = W.Output(), [None]

    def run(settings: dict, hook: dict) -> FameResult:
        v, k, its, masks = (settings[n] for n in ("variation", "pair", "iterations", "n_masks"))
        p, _, target = pair_of(settings)
        if (v, k, masks) not in other_maps:
            if hasattr(box, "explorer"):  # not during the first, synchronous view
                box.explorer.status.value = "⏳ computing the other methods…"
            kwargs = {"threshold": threshold, "n_masks": masks, "seed": seed}
            methods = make_methods(others, "verification", **kwargs)
            other_maps[(v, k, masks)] = explain_all(methods, model, p.probe, target)[0]
            runs["others"] += 1
        result = fame_runs.get((v, k, its))  # FAME's result does not depend on the masks
        if result is None:
            result = Fame(fame_config.replace(iterations=its)).run(model, p.probe, target, **hook)
            runs["FAME"] += 1
        return result

    def show(settings: dict, result: FameResult | None, sigma: float) -> None:
        v, k, its, masks = (settings[n] for n in ("variation", "pair", "iterations", "n_masks"))
        maps = dict(other_maps[(v, k, masks)])
        if result is None:  # the figure's maps: σ needs FAME's Δx, so run it (live)
            maps["FAME"] = figure_fame
            if sigma != sigma0 and not box.explorer.busy:
                box.explorer.start(settings)
            sigma = sigma0
        if drawn[0] == (settings, sigma, id(result)):
            return  # unchanged (σ moved while the figure's maps show): no redraw
        drawn[0] = (settings, sigma, id(result))
        if result is not None:
            fame_runs.setdefault((v, k, its), result)  # a stopped run by its steps done
            kernel = fame_config.kernel_size if sigma == sigma0 else kernel_size_for(sigma)
            both = result.maps(kernel_size=kernel, sigma=sigma, warn_empty=False)
            maps["FAME"] = Attribution(both[:1], both[1:])
        p, ref, _ = pair_of(settings)
        s = float((ref * embed(model, p.probe)).sum())
        verdict = "accepted" if s >= threshold else "rejected: below θ"
        label = f"{v[0]} ({v[1]}) genuine pair {k} of 0-{len(genuine(v)) - 1}"
        computed = (
            f"s = {s:.3f}, {verdict} (θ = {threshold:.3f}); FAME {its} it, σ {sigma:.1f}"
            f"; computed so far: FAME {runs['FAME']}×, the other methods {runs['others']}×"
        )
        rows = draw_face_rows(
            {"": (p.gallery, p.probe, maps, [f"{label}\ns = {s:.3f} ({verdict})"])}
        )
        show_in(out, computed, rows)

    options = [
        (f"{s}: {v}", (s, v)) for s, p in protocols.items() for v in dict.fromkeys(p.variation)
    ]
    slider = {"continuous_update": False}
    controls = {
        "variation": W.Dropdown(options=options, value=start[:2], description="variation"),
        "pair": W.BoundedIntText(value=start[2], min=0, max=len(genuine(start[:2])) - 1),
        "iterations": W.IntSlider(
            value=fame_config.iterations, min=1, max=1000, description="iterations", **slider
        ),
        "n_masks": W.IntSlider(
            value=n_masks, min=8, max=2000, step=8, description="masks", **slider
        ),
    }

    def bound_pair(change=None) -> None:  # the pairs that exist, with their count
        pair, n = controls["pair"], len(genuine(controls["variation"].value))
        pair.max, pair.value = n - 1, min(pair.value, n - 1)
        pair.description = f"genuine pair (0-{n - 1} of {n})"

    def label(settings: dict) -> str:
        v, k = settings["variation"], settings["pair"]
        return f"{v[1]} pair {k}, {settings['iterations']} it, {settings['n_masks']} masks"

    bound_pair()
    controls["variation"].observe(bound_pair, "value")
    box = W.VBox()
    box.runs = runs
    box.explorer = LiveMap(
        run,
        lambda settings: pair_of(settings)[0].probe[0],
        controls,
        sigma=sigma0,
        kernel_size=fame_config.kernel_size,
        label=label,
        callback_every=callback_every,
        on_show=show,
        run_first=figure_fame is None,
        sigma_max=20.0,
    )
    live = "<b>FAME e₊</b> (what makes the pair similar) of the probe, drawn while it runs:"
    every = "<b>Every method</b> for the applied pair (FAME's e₊ and e₋ at the live σ):"
    box.children = (W.HTML(live), box.explorer.widget, W.HTML(every), out)
    return box


def metric_explorer(
    model: nn.Module,
    dataset: Sequence,
    methods: Sequence,
    out_dir: str,
    *,
    thresholds: Sequence[float],
    percents: Sequence[float],
    noisy_linear: bool = False,
    paper: Any = None,
    **run_settings: Any,
) -> W.VBox:
    """Re-evaluate IoU/ROAD with other methods, thresholds and percents (**Run**): the maps
    come from the run's cache (``run_settings`` such as ``cache_dir``, ``batch_size``), only
    the metrics are computed; shows the summary with intervals and the bar plot (beside
    ``paper`` when given: its rows of the chosen methods, its panels where it has the
    chosen columns).

    Args:
        dataset: classification items; ``methods``: method instances of the first run.
        out_dir: where the re-evaluated ``results.csv``/summaries go (each Run replaces them).
        thresholds, percents, noisy_linear: the initial IoU thresholds, ROAD percents and
            whether ROAD with noisy linear imputation is evaluated too.
    """
    from IPython.display import Markdown

    from .experiment.report import summary_markdown
    from .experiment.run import run_experiment
    from .metrics.adapters import IoUMetric, RoadMetric
    from .paper import paper_method
    from .plotting import draw_bars, table2_groups

    by_name = {m.name: m for m in methods}

    def render(shown, thresholds: str, percents: str, noisy_linear: bool):
        ts = tuple(float(v) for v in thresholds.split(",") if v.strip())
        ps = tuple(float(v) for v in percents.split(",") if v.strip())
        metrics = [IoUMetric(ts), RoadMetric(ps)]
        if noisy_linear:
            metrics.append(RoadMetric(ps, mode="noisy_linear"))
        chosen = [by_name[n] for n in shown] or list(methods)
        settings = {**run_settings, "overwrite": True, "progress": False}  # out_dir is ours
        res = run_experiment(model, dataset, chosen, metrics, out_dir, **settings)
        tables = {"ours": res.summary}
        if paper is not None:  # the paper's rows of the chosen methods only
            tables["paper"] = paper[paper.index.isin({paper_method(m.name) for m in chosen})]
        table = summary_markdown(res.summary, res.decimals, res.intervals)
        return Markdown(table), draw_bars(tables, table2_groups(res.summary.columns))

    names = list(by_name)
    controls = {
        "shown": W.SelectMultiple(
            options=names,
            value=tuple(names),
            description="methods (Ctrl/Shift-click)",
            tooltip="Ctrl-click picks or drops one method, Shift-click a range",
        ),
        "thresholds": W.Text(value=", ".join(f"{t:g}" for t in thresholds), description="IoU t"),
        "percents": W.Text(value=", ".join(f"{p:g}" for p in percents), description="ROAD p %"),
        "noisy_linear": W.Checkbox(value=noisy_linear, description="noisy linear too"),
    }
    return panel(render, controls, button="Run")
