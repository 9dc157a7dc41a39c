"""Live FAME maps for the notebooks (issue 21): a run drawn while it optimises, Stop, Pin.

A :class:`LiveMap` shows one image, its FAME map blurred with the current σ over it (with
a colourbar) and the loss curve of the run. A redraw composes the map with the image in
numpy and updates one ``ipywidgets.Image`` (no new matplotlib figure: tens of ms at 224 px);
the loss curve is one kept matplotlib figure whose line data are updated, drawn only when
the curve changes.

- **Run controls** (image, iterations, step size, layer, cell...) apply on **Run**: a
  FAME run starts in a background thread (ipywidgets' "Asynchronous widgets" pattern:
  widget state set from the thread, one lock around every redraw) and draws a frame every
  ``callback_every`` iterations through :func:`fame_utils.core.run_fame`'s progress hook,
  so the kernel stays free: σ can move while FAME runs. **Stop** ends the run at the next
  frame and keeps the map of the iterations done; a new run cancels the one in flight.
  Settings already computed (cached) show at once, without Run.
- **Live controls** (σ, Pin) act at once: σ re-blurs the shown Δx.
- **Pin** keeps the current map, titled with its settings, beside the next runs (up to
  ``MAX_PINS``); **Clear pins** removes them.

Headless (papermill), nothing runs in the background: the first map is drawn (or
computed) synchronously when the explorer is created. ``on_show`` lets a caller draw more
from the shown result (notebook 03: every method's maps of the pair beside FAME's).
"""

from __future__ import annotations

import io
import threading
import time
import traceback
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import ipywidgets as W
import numpy as np
import torch
from matplotlib import cm, colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

from .core import FameResult
from .plotting import to_numpy_image
from .postprocess import gaussian_blur, kernel_size_for, normalize_maps

__all__ = ["LiveMap", "MAX_PINS"]

MAX_PINS = 4
Settings = dict[str, Any]
Hook = dict[str, Any]  # {} headless, else {"callback": ..., "callback_every": k} for run_fame


@dataclass
class _Map:
    """One map the explorer can show: its unblurred Δx (H, W) on the CPU, the loss curve
    [(iteration, loss)], the steps done, whether it is final, and the run's result."""

    delta: Tensor
    curve: list[tuple[int, float]]
    steps: int
    final: bool = True
    result: FameResult | None = None


def _key(settings: Mapping[str, Any]) -> Hashable:
    return tuple(sorted(settings.items()))


def _describe(settings: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in settings.items()
    )


def _draw_rect(rgb: np.ndarray, box, color: str, dashed: bool) -> None:
    """Outline the half-open pixel box (x0, y0, x1, y1) on (H, W, 3) ``rgb`` in place."""
    h, w = rgb.shape[:2]
    x0, y0 = max(int(box[0]), 0), max(int(box[1]), 0)
    x1, y1 = min(int(box[2]), w) - 1, min(int(box[3]), h) - 1
    if x1 < x0 or y1 < y0:
        return
    c = np.asarray(to_rgb(color))
    on = lambda n: (np.arange(n) // 4) % 2 == 0 if dashed else np.ones(n, bool)  # noqa: E731
    xs, ys = np.arange(x0, x1 + 1), np.arange(y0, y1 + 1)
    for y in (y0, y1):
        rgb[y, xs[on(len(xs))]] = c
    for x in (x0, x1):
        rgb[ys[on(len(ys))], x] = c


def _colourbar() -> bytes:
    """The map's colour scale (jet, 0 to 1) as a small PNG, drawn once."""
    fig = Figure(figsize=(0.9, 2.9), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.1, 0.08, 0.25, 0.8))
    fig.colorbar(cm.ScalarMappable(cmap="jet"), cax=ax).set_label("attribution", fontsize=11)
    ax.tick_params(labelsize=10)
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


class LiveMap:
    """An explorer of one FAME map whose runs draw while they optimise.

    Args:
        run: ``run(settings, hook) -> FameResult`` of one sample: runs FAME for the run
            controls' values, passing ``hook`` (``{}`` headless, else ``callback`` and
            ``callback_every``) on to :func:`~fame_utils.core.run_fame` as keywords.
        image_of: ``settings -> (3, H, W)`` image in [0, 1] the map is drawn over.
        controls: ``{setting name: widget}`` of the run controls, shown in this order; an
            ``"iterations"`` control gets a button that runs the paper's ``paper``
            iterations in one click.
        sigma: initial σ of the live blur (pixels); the kernel is ``kernel_size`` at this σ
            and :func:`~fame_utils.postprocess.kernel_size_for` elsewhere.
        seeds: ``(settings, FameResult of one sample)`` already computed (the figure's).
        label: ``settings -> str`` naming them in titles, the status and pins (default:
            ``"name value, ..."``).
        annotate: ``settings -> [(x0, y0, x1, y1, colour, dashed)]`` boxes (half-open
            pixels) outlined on the map.
        describe: ``(settings, Δx (1, H, W), blurred (1, H, W)) -> str`` text under the map.
        callback_every: iterations between calls of the progress hook (1: Stop acts
            after the iteration in flight; the calls cost nothing but the throttle check).
        min_frame_s: a frame is drawn only when at least this long, and ten times the last
            frame's drawing time, has passed since the previous one, so that drawing costs
            a fast model at most ~10 % of its run (frames skipped read nothing from the
            device); ``0`` draws every frame.
        paper: the paper's iteration count (the one-click button).
        on_show: ``(settings, FameResult or None, σ) -> None``, called with the applied
            settings, their whole result (all samples; ``None``: not computed yet) and σ
            whenever they are shown or σ moves; at the end of a run, from its thread; one
            call at a time, each with the settings and σ current when it starts.
        run_first: ``False``: uncached first settings are not computed at creation; the
            image shows with an empty map until **Run**.
    """

    def __init__(
        self,
        run: Callable[[Settings, Hook], FameResult],
        image_of: Callable[[Settings], Tensor],
        controls: Mapping[str, W.ValueWidget],
        *,
        sigma: float = 7.7,
        kernel_size: int = 49,
        seeds: Iterable[tuple[Settings, FameResult]] = (),
        label: Callable[[Settings], str] | None = None,
        annotate: Callable[[Settings], Iterable[tuple]] | None = None,
        describe: Callable[[Settings, Tensor, Tensor], str] | None = None,
        callback_every: int = 1,
        min_frame_s: float = 0.2,
        paper: int = 500,
        sigma_max: float = 30.0,
        on_show: Callable[[Settings, FameResult | None, float], None] | None = None,
        run_first: bool = True,
    ):
        self._run, self._image_of, self.controls = run, image_of, dict(controls)
        self._label = label or _describe
        self._annotate, self._describe_fn, self._on_show = annotate, describe, on_show
        self._sigma0, self._kernel0 = sigma, kernel_size
        self.callback_every, self.min_frame_s = callback_every, min_frame_s
        self._cache: dict[Hashable, _Map] = {}
        for settings, result in seeds:
            self._store(settings, result)
        self._lock = threading.RLock()
        self._notifying = threading.RLock()  # one on_show at a time, with the latest σ
        self._stop: threading.Event | None = None
        self._generation = 0  # the run whose frames are drawn; older runs were cancelled
        self._stop_pressed: float | None = None
        self.busy = False
        self.frames = 0  # live frames drawn by the current (or last) run
        self.timings: dict[str, float] = {}  # last σ redraw, first live frame, Stop (s)
        self._build_widgets(sigma_max, paper)
        self._build_figure()
        self._applied = self._values()
        self._running: Settings | None = None
        shown = self._cache.get(_key(self._applied))
        if shown is None and run_first:  # headless-safe: computed here, synchronously
            shown = self._store(self._applied, self._run(self._applied, {}))
        elif shown is None:  # an empty map until Run
            shown = _Map(torch.zeros(self._image_of(self._applied).shape[-2:]), [], 0, False)
        self._shown = shown
        self._render()
        self._notify()
        for w in self.controls.values():
            w.observe(self._on_run_control, "value")
        self.sigma.observe(self._on_sigma, "value")

    # --- widgets -------------------------------------------------------------------------

    def _build_widgets(self, sigma_max: float, paper: int) -> None:
        for w in self.controls.values():
            if hasattr(w.style, "description_width"):
                w.style.description_width = "initial"
        self.run_button = W.Button(
            description="Run",
            icon="play",
            button_style="primary",
            tooltip="run FAME with the run controls",
        )
        self.stop_button = W.Button(
            description="Stop", icon="stop", disabled=True, tooltip="end the run, keep its map"
        )
        buttons = [self.run_button, self.stop_button]
        if "iterations" in self.controls:
            self.paper_button = W.Button(
                description=f"Run {paper} it (paper)", tooltip=f"iterations = {paper} and run"
            )
            self.paper_button.on_click(lambda _: self._run_paper(paper))
            buttons.insert(1, self.paper_button)
        self.run_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.sigma = W.FloatSlider(
            value=self._sigma0,
            min=0.0,
            max=sigma_max,
            step=0.1,
            description="σ (live)",
            continuous_update=False,
            style={"description_width": "initial"},
        )
        self.pin_button = W.Button(description="Pin", icon="thumb-tack", tooltip="keep this map")
        self.clear_button = W.Button(description="Clear pins", disabled=True)
        self.pin_button.on_click(lambda _: self.pin())
        self.clear_button.on_click(lambda _: self.clear_pins())
        self.status = W.HTML()
        self.image, self.map, self.curve = (W.Image(format="png") for _ in range(3))
        for w in (self.image, self.map):
            w.layout.width = "300px"
        self.image_title, self.map_title = W.HTML(), W.HTML()
        self._image_key: Hashable | None = None
        self.text = W.HTML()
        self.pins = W.HBox()
        self.errors = W.Output()
        run_row = list(self.controls.values())
        rows = [W.HBox(run_row[i : i + 3]) for i in range(0, len(run_row), 3)]
        legend = (
            "<b>Run controls</b> (apply on <b>Run</b>; settings already computed show at "
            "once): " + ", ".join(w.description for w in self.controls.values())
        )
        live = "<b>Live controls</b> (act at once): σ re-blurs the shown Δx; Pin keeps this map"
        self.widget = W.VBox(
            [
                W.HTML(legend),
                *rows,
                W.HBox(buttons),
                W.HTML(live),
                W.HBox([self.sigma, self.pin_button, self.clear_button]),
                self.status,
                W.HBox(
                    [
                        W.VBox([self.image_title, self.image]),
                        W.VBox([self.map_title, self.map]),
                        W.Image(value=_colourbar(), format="png"),
                        self.curve,
                    ]
                ),
                self.text,
                self.pins,
                self.errors,
            ]
        )
        self.widget.explorer = self  # for tests and for code that drives the explorer
        for w, name in (
            (self.widget, "fame-live"),
            (self.map, "fame-live-map"),
            (self.status, "fame-live-status"),
            (self.pins, "fame-live-pins"),
            (self.sigma, "fame-live-sigma"),
            (self.map_title, "fame-live-title"),
        ):
            w.add_class(name)  # stable hooks for the browser test

    def _build_figure(self) -> None:
        fig = Figure(figsize=(3.8, 2.9), dpi=80)
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        fig.subplots_adjust(left=0.2, right=0.96, bottom=0.17, top=0.88)
        (self._curve_line,) = ax.plot([], [], "o-", ms=3, color="tab:blue")
        ax.set_xlabel("iteration", fontsize=11)
        ax.set_ylabel("loss L (mean)", fontsize=11)
        ax.set_title("loss during the run", fontsize=11)
        ax.tick_params(labelsize=10)
        ax.grid(alpha=0.3)
        self._fig, self._ax = fig, ax
        self._curve_drawn: list[tuple[int, float]] | None = None
        self._jet = colormaps["jet"]

    # --- state ---------------------------------------------------------------------------

    def _values(self) -> Settings:
        return {name: w.value for name, w in self.controls.items()}

    def _store(self, settings: Settings, result: FameResult) -> _Map:
        steps = int(result.steps.max()) if len(result.steps) else 0
        initial, final = float(result.initial_loss.mean()), float(result.final_loss.mean())
        delta = result.delta[0].detach().float().cpu()
        entry = _Map(delta, [(0, initial), (steps, final)], steps, result=result)
        self._cache[_key(settings)] = entry
        return entry

    def _blurred(self, delta: Tensor) -> tuple[Tensor, Tensor]:
        """(1, H, W) blurred Δx at the current σ and its max-normalised map."""
        s = float(self.sigma.value)
        k = self._kernel0 if s == self._sigma0 else kernel_size_for(s)
        blurred = gaussian_blur(delta[None], k, s)
        return blurred, normalize_maps(blurred, "max")[0]

    def _png(self, rgb: np.ndarray) -> bytes:
        """(H, W, 3) float [0, 1] -> PNG, upscaled (nearest) to at least ~256 px."""
        factor = max(1, 256 // max(rgb.shape[:2]))
        if factor > 1:
            rgb = rgb.repeat(factor, 0).repeat(factor, 1)
        buf = io.BytesIO()
        Image.fromarray((rgb * 255).round().astype(np.uint8)).save(buf, "png", compress_level=1)
        return buf.getvalue()

    def _overlay(self, image: np.ndarray, shown: np.ndarray, settings: Settings) -> np.ndarray:
        """The map in jet at alpha 0.5 over the image, with the ``annotate`` boxes."""
        rgb = 0.5 * image + 0.5 * self._jet(shown)[..., :3]
        for x0, y0, x1, y1, color, dashed in self._boxes(settings):
            _draw_rect(rgb, (x0, y0, x1, y1), color, dashed)
        return rgb

    def _boxes(self, settings: Settings) -> list:
        return [] if self._annotate is None else list(self._annotate(settings))

    def _render(self, live: tuple[int, int] | None = None) -> None:
        """Redraw from the shown map and the current σ (under the lock)."""
        with self._lock:
            t0 = time.perf_counter()
            settings = self._running if live is not None else self._applied
            image = to_numpy_image(self._image_of(settings))
            blurred, shown = self._blurred(self._shown.delta)
            key = _key(settings)
            if key != self._image_key:  # the plain image changes with the settings only
                self.image.value, self._image_key = self._png(image), key
            self.map.value = self._png(self._overlay(image, shown[0].numpy(), settings))
            self.image_title.value = f"<b>{self._label(settings)}</b>"
            done = f"{live[0]}/{live[1]} it, running" if live else f"{self._shown.steps} it"
            self.map_title.value = f"<b>FAME map</b>, σ {self.sigma.value:.1f}, {done}"
            if self._curve_drawn != self._shown.curve:
                its, losses = zip(*self._shown.curve) if self._shown.curve else ((), ())
                self._curve_line.set_data(its, losses)
                self._ax.relim()
                self._ax.autoscale_view()
                buf = io.BytesIO()
                self._fig.savefig(buf, format="png")
                self.curve.value = buf.getvalue()
                self._curve_drawn = list(self._shown.curve)
            if self._describe_fn is not None:
                self.text.value = self._describe_fn(settings, self._shown.delta[None], blurred)
            self._status(live)
            self.timings["redraw_s"] = time.perf_counter() - t0

    def _status(self, live: tuple[int, int] | None) -> None:
        if live is not None:
            loss = self._shown.curve[-1][1] if self._shown.curve else float("nan")
            self.status.value = (
                f"<span style='color:#b26b00'>⏳ FAME running: iteration {live[0]} of {live[1]}"
                f", loss {loss:.4g} (frames at most every {self.min_frame_s:g} s). Stop keeps this map."
                "</span>"
            )
        elif self._values() != self._applied:
            self.status.value = (
                "<span style='color:#c00'>⚠ pending: the map shows "
                f"{self._label(self._applied)}; press Run for "
                f"{self._label(self._values())}</span>"
            )
        elif not self._shown.final and not self._shown.steps:
            self.status.value = f"○ not computed yet: press Run for {self._label(self._applied)}"
        else:
            stopped = "" if self._shown.final else " (stopped)"
            self.status.value = (
                f"<span style='color:#070'>✓ showing {self._label(self._applied)}"
                f"{stopped}, σ {self.sigma.value:.1f}</span>"
            )

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        self.run_button.disabled = busy
        self.run_button.description = "Running…" if busy else "Run"
        self.stop_button.disabled = not busy

    # --- events --------------------------------------------------------------------------

    def _on_sigma(self, _change) -> None:
        self._safe(lambda: self._render(self._live_now()))
        self._notify()

    def _notify(self) -> None:
        """``on_show`` of the applied settings and σ, read once the previous call (maybe
        from a run's thread) ended; outside the redraw lock: it may take a while."""
        if self._on_show is None:
            return
        with self._notifying:
            settings, sigma = dict(self._applied), float(self.sigma.value)
            entry = self._cache.get(_key(settings))
            result = None if entry is None else entry.result
            self._safe(lambda: self._on_show(settings, result, sigma))

    def _live_now(self) -> tuple[int, int] | None:
        if not self.busy or self._shown.final:
            return None
        return self._shown.steps, int(self._running.get("iterations", 0))

    def _on_run_control(self, _change) -> None:
        settings = self._values()
        cached = self._cache.get(_key(settings))
        if cached is not None and not self.busy:  # computed before: show it at once
            self._applied, self._shown = settings, cached
        if not self.busy:
            self._safe(self._render)
            if cached is not None:
                self._notify()
        else:
            self._status(self._live_now())

    def _run_paper(self, iterations: int) -> None:
        self.controls["iterations"].value = iterations
        self.start()

    def _safe(self, fn: Callable[[], None]) -> None:
        try:
            fn()
        except Exception:  # a callback's error would otherwise vanish into the kernel log
            self.errors.outputs = ()
            self.errors.append_stdout(traceback.format_exc())

    def start(self, settings: Settings | None = None) -> threading.Thread | None:
        """Run FAME for ``settings`` (default: the controls) in a background thread,
        cancelling the run in flight; cached settings show at once (returns ``None``)."""
        settings = dict(self._values() if settings is None else settings)
        cached = self._cache.get(_key(settings))
        if cached is not None:
            self._cancel()
            self._generation += 1  # a run in flight no longer draws or finishes here
            self._set_busy(False)
            self._applied, self._shown = settings, cached
            self._safe(self._render)
            self._notify()
            return None
        self._cancel()
        self._generation += 1
        stop = self._stop = threading.Event()
        self._running, self.frames, self._stop_pressed = settings, 0, None
        self.errors.outputs = ()
        self._set_busy(True)
        self._status((0, int(settings.get("iterations", 0))))
        thread = threading.Thread(
            target=self._work,
            args=(settings, stop, self._generation, time.perf_counter()),
            daemon=True,
        )
        thread.start()
        return thread

    def _cancel(self) -> None:
        if self._stop is not None:
            self._stop.set()

    def stop(self) -> None:
        """Ask the run in flight to end at its next frame (its map is kept)."""
        self._stop_pressed = time.perf_counter()
        self._cancel()

    def _work(self, settings: Settings, stop: threading.Event, generation: int, t0: float):
        total = int(settings.get("iterations", 0))
        curve: list[tuple[int, float]] = []
        drawn = {"at": -float("inf"), "cost": 0.0}

        def callback(delta: Tensor, iteration: int, loss: Tensor) -> bool:
            if stop.is_set() or generation != self._generation:
                return True
            now = time.perf_counter()
            wait = max(self.min_frame_s, 10 * drawn["cost"]) if self.min_frame_s > 0 else 0
            if now - drawn["at"] < wait:
                return False  # too soon after the last frame: no draw, no host sync
            curve.append((iteration, float(torch.nanmean(loss.float()))))
            with self._lock:
                self._shown = _Map(delta[0].detach().float().cpu(), list(curve), iteration, False)
                self._render((iteration, total))
                self.frames += 1
                if self.frames == 1:
                    self.timings["first_frame_s"] = time.perf_counter() - t0
            drawn["at"] = time.perf_counter()
            drawn["cost"] = drawn["at"] - now
            return stop.is_set()

        try:
            result = self._run(
                settings, {"callback": callback, "callback_every": self.callback_every}
            )
        except Exception:
            if generation == self._generation:
                self.errors.outputs = ()
                self.errors.append_stdout(traceback.format_exc())
                self._set_busy(False)
            return
        steps = int(result.steps.max())  # < total also when every sample stopped early at ε
        done = dict(settings, iterations=steps) if stop.is_set() and steps < total else settings
        entry = self._store(done, result)
        entry.curve = [entry.curve[0], *curve, entry.curve[-1]]
        if generation != self._generation:  # cancelled by a newer run: keep it cached only
            return
        with self._lock:
            self._applied, self._shown = done, entry
            if done is not settings and "iterations" in self.controls:
                self._shown.final = False  # stopped early: marked in the status
            self._safe(self._render)
            self._set_busy(False)
            if self._stop_pressed is not None:
                self.timings["stop_s"] = time.perf_counter() - self._stop_pressed
        self._notify()

    def wait(self, timeout: float | None = None) -> None:
        """Block until no run is in flight (tests, scripts)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.busy and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.02)

    # --- pins ----------------------------------------------------------------------------

    def pin(self) -> None:
        """Keep the current map, titled with its settings, beside the next runs."""
        with self._lock:
            settings = self._running if self._live_now() else self._applied
            title = f"{self._label(settings)}, σ {self.sigma.value:.1f}"
            title += f", {self._shown.steps} it done"
            png = self.map.value
        picture = W.Image(value=png, format="png", layout={"width": "240px"})
        panel = W.VBox(
            [W.HTML(f"<small><b>pinned</b>: {title}</small>"), picture], layout={"width": "250px"}
        )
        self.pins.children = (*self.pins.children, panel)[-MAX_PINS:]
        self.clear_button.disabled = False

    def clear_pins(self) -> None:
        self.pins.children = ()
        self.clear_button.disabled = True
