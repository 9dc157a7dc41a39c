"""Notebook controls, drawn at creation so that headless (papermill) runs show them too:
:func:`panel` and the explorers built on :class:`~fame_utils.live.LiveMap`."""

from __future__ import annotations

import io
import traceback
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as W
import matplotlib.pyplot as plt
from IPython.display import Image, Markdown
from torch import Tensor, nn

from .core import FameConfig, FameResult, run_fame
from .live import SLIDER, LiveMap, image_controls, rows_of
from .methods import Fame, explain_all, make_methods, table_methods
from .metrics.face import embed
from .objectives import Attribution, CosineSimilarity, Objective
from .postprocess import kernel_size_for


def show_in(out: W.Output, *items: Any) -> None:
    """Replace ``out``'s contents with ``items`` (a figure, as PNG, then closed; a ``str``;
    anything displayable; ``None`` skipped), not ``with out:``, which hung headless runs."""
    out.outputs = ()
    for item in items:
        if isinstance(item, plt.Figure):
            buf = io.BytesIO()
            item.savefig(buf, format="png", dpi=100, bbox_inches="tight")
            plt.close(item)
            out.append_display_data(Image(data=buf.getvalue()))
        elif isinstance(item, str):
            out.append_stdout(item if item.endswith("\n") else item + "\n")
        elif item is not None:
            out.append_display_data(item)


def panel(
    render: Callable[..., Any], controls: Mapping[str, W.ValueWidget], *, button: str
) -> W.VBox:
    """Controls, three per row, and a ``button`` (its label) over an ``Output`` (the last
    child) showing ``render(**values)`` (:func:`show_in`'s items or a tuple of them), drawn
    at creation and when the button is pressed; a later error shows as a traceback there."""
    out = W.Output()

    def draw() -> None:
        shown = render(**{name: w.value for name, w in controls.items()})
        show_in(out, *(shown if isinstance(shown, (tuple, list)) else (shown,)))

    def redraw(_) -> None:
        try:
            draw()
        except Exception:  # a callback's error would otherwise vanish into the kernel log
            show_in(out, traceback.format_exc())

    run = W.Button(description=button, tooltip="apply the settings and recompute")
    run.on_click(redraw)
    draw()
    return W.VBox([*rows_of([*controls.values(), run]), out])


def blur_explorer(
    model: nn.Module,
    images: Tensor,
    names: Sequence[str],
    objective: Objective,
    *,
    config: FameConfig | None = None,
    precomputed: FameResult | None = None,
    iterations: int = 100,
    step_size: float = 1 / 255,
    sigma: float = 7.7,
) -> W.VBox:
    """A live FAME explorer (:class:`~fame_utils.live.LiveMap`, ``explorer``) of one of N
    images (N, 3, H, W) in [0, 1] at a time (Fig. 1) for ``objective`` (of all N): image,
    iterations and step size apply on **Run**; σ is live. ``precomputed``: a run over all N
    images with ``config`` (e.g. the figure's); the other arguments: the first view's."""
    config, seeds = config or FameConfig(), []
    if precomputed is not None:
        done = {"iterations": precomputed.config.iterations}
        done["step_size"] = precomputed.config.step_size
        seeds = [({"image": i, **done}, precomputed[i]) for i in range(len(images))]

    def run(settings: dict, hook: dict) -> FameResult:
        one = slice(settings["image"], settings["image"] + 1)
        steps = {"iterations": settings["iterations"], "step_size": settings["step_size"]}
        return run_fame(model, images[one], objective.subset(one), config, **steps, **hook)

    def label(settings: dict) -> str:
        i, eta = settings["image"], settings["step_size"]
        return f"{names[i]} ({i + 1}/{len(names)}), {settings['iterations']} it, η {eta:.4f}"

    controls = image_controls(names, iterations)
    controls["step_size"] = W.FloatLogSlider(
        value=step_size, base=10, min=-4, max=-1, step=0.05, description="step size η", **SLIDER
    )
    explorer = LiveMap(
        run,
        lambda settings: images[settings["image"]],
        controls,
        sigma=sigma,
        kernel_size=config.kernel_size,
        seeds=seeds,
        label=label,
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
) -> W.VBox:
    """Fig. 3 for one genuine pair of ``protocols`` (``{subset: FacePairs}``) at a time: a
    live FAME e₊ map (:class:`~fame_utils.live.LiveMap`, ``explorer``) over every method's
    maps (the last child); ``runs`` counts ``{"FAME": n, "others": m}``. **Run** reruns
    what (pair, masks) or (pair, iterations) changed; σ re-blurs FAME's e₊ and e₋.
    ``start``: ``(subset, variation, k)``, the k-th genuine pair; ``precomputed``: ``{method
    name: Attribution}`` whose first row is the ``start`` pair (e.g. the figure's)."""
    from .plotting import draw_face_rows

    def genuine(variation: tuple[str, str]):
        return protocols[variation[0]].select(variation=variation[1], genuine=True)

    def pair_of(settings: dict):
        p = genuine(settings["variation"]).subset(settings["pair"])
        ref = embed(model, p.gallery)
        return p, ref, CosineSimilarity(ref, threshold=threshold)

    def keys(settings: dict) -> tuple:
        return tuple(settings[n] for n in ("variation", "pair", "iterations", "n_masks"))

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
        v, k, its, masks = keys(settings)
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
        v, k, its, masks = keys(settings)
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
    controls = {
        "variation": W.Dropdown(options=options, value=start[:2], description="variation"),
        "pair": W.BoundedIntText(value=start[2], max=len(genuine(start[:2])) - 1),
        "iterations": W.IntSlider(
            value=fame_config.iterations, min=1, max=1000, description="iterations", **SLIDER
        ),
        "n_masks": W.IntSlider(
            value=n_masks, min=8, max=2000, step=8, description="masks", **SLIDER
        ),
    }

    def label(settings: dict) -> str:
        v, k, its, masks = keys(settings)
        return f"{v[1]} pair {k}, {its} it, {masks} masks"

    pair = (controls["pair"], "max")  # the pairs that exist (value clamped), with their count
    W.dlink((controls["variation"], "value"), pair, lambda v: len(genuine(v)) - 1)
    W.dlink(pair, (controls["pair"], "description"), lambda m: f"genuine pair (0-{m} of {m + 1})")
    box = W.VBox()
    box.runs = runs
    box.explorer = LiveMap(
        run,
        lambda settings: pair_of(settings)[0].probe[0],
        controls,
        sigma=sigma0,
        kernel_size=fame_config.kernel_size,
        label=label,
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
    """On **Run**, IoU/ROAD of the chosen methods at the chosen thresholds, percents and
    imputation into ``out_dir`` (replaced), maps from the cache of ``run_settings``
    (:func:`~fame_utils.run_experiment`'s): the summary and bars beside ``paper``'s rows."""
    from .experiment.result import summary_markdown
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
