"""Live FAME maps for the notebooks: a run drawn while it optimises (in a background
thread, through :func:`~fame_utils.core.run_fame`'s progress hook), Stop, Pin, a live σ."""

from __future__ import annotations

import io
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import ipywidgets as W
import numpy as np
import torch
from matplotlib import cm, colormaps
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

from .core import FameResult
from .plotting import to_numpy_image
from .postprocess import gaussian_blur, kernel_size_for, normalize_maps

MAX_PINS = 4
PAPER_ITERATIONS = 500  # the paper's iterations (§4), one button away in every explorer
Settings = dict[str, Any]
SLIDER = {"continuous_update": False}


def image_controls(names: Sequence[str], iterations: int) -> dict[str, W.ValueWidget]:
    """Every explorer's first run controls: image (index into ``names``), iterations."""
    options = [(f"{i + 1}/{len(names)}: {name}", i) for i, name in enumerate(names)]
    return {
        "image": W.Dropdown(options=options, description="image"),
        "iterations": W.IntSlider(
            value=iterations, min=1, max=1000, description="iterations", **SLIDER
        ),
    }


def rows_of(widgets: Sequence[W.Widget], per_row: int = 3) -> list[W.HBox]:
    """``widgets`` in rows of ``per_row``, their descriptions shown in full."""
    for w in widgets:
        if hasattr(w.style, "description_width"):
            w.style.description_width = "initial"
    return [W.HBox(widgets[i : i + per_row]) for i in range(0, len(widgets), per_row)]


@dataclass
class _Map:
    """Unblurred Δx (H, W) on the CPU, loss curve [(iteration, loss)], steps done."""

    delta: Tensor
    curve: list[tuple[int, float]]
    steps: int
    final: bool = True
    result: FameResult | None = None


def _draw_rect(rgb: np.ndarray, box, color: str, dashed: bool) -> None:
    """Outline the half-open pixel box (x0, y0, x1, y1) on (H, W, 3) ``rgb`` in place."""
    h, w = rgb.shape[:2]
    x0, y0 = max(int(box[0]), 0), max(int(box[1]), 0)
    x1, y1 = min(int(box[2]), w) - 1, min(int(box[3]), h) - 1
    c = np.asarray(to_rgb(color))
    xs, ys = np.arange(x0, x1 + 1), np.arange(y0, y1 + 1)
    if dashed:
        xs, ys = xs[(xs - x0) // 4 % 2 == 0], ys[(ys - y0) // 4 % 2 == 0]
    rgb[np.ix_([y0, y1], xs)] = c
    rgb[np.ix_(ys, [x0, x1])] = c


def _png(picture: Figure | np.ndarray) -> bytes:
    """A figure, or an (H, W, 3) float [0, 1] image upscaled (nearest) to at least ~256 px,
    as PNG."""
    buf = io.BytesIO()
    if isinstance(picture, Figure):
        picture.savefig(buf, format="png")
        return buf.getvalue()
    factor = max(1, 256 // max(picture.shape[:2]))
    rgb = picture.repeat(factor, 0).repeat(factor, 1)
    Image.fromarray((rgb * 255).round().astype(np.uint8)).save(buf, "png", compress_level=1)
    return buf.getvalue()


def _colourbar() -> bytes:
    """The map's colour scale (jet, 0 to 1) as a small PNG."""
    fig = Figure(figsize=(0.9, 2.9), dpi=80)
    ax = fig.add_axes((0.1, 0.08, 0.25, 0.8))
    fig.colorbar(cm.ScalarMappable(cmap="jet"), cax=ax).set_label("attribution", fontsize=11)
    ax.tick_params(labelsize=10)
    return _png(fig)


class LiveMap:
    """An explorer of one FAME map: run controls apply on **Run** (cached settings show at
    once), σ and **Pin** act at once; headless, the first map is computed at creation.

    Args:
        run: ``run(settings, hook) -> FameResult`` of one sample, passing ``hook`` on to
            :func:`~fame_utils.core.run_fame` as keywords.
        image_of: ``settings -> (3, H, W)`` image in [0, 1] the map is drawn over.
        controls: ``{setting name: widget}``, the run controls (``"iterations"`` gets a
            button for :data:`PAPER_ITERATIONS`); ``label``: ``settings -> str``.
        sigma, kernel_size, sigma_max: the live blur's initial σ and kernel, the slider's end.
        seeds: ``(settings, FameResult of one sample)`` already computed.
        annotate: ``settings -> [(x0, y0, x1, y1, colour, dashed)]`` boxes on the map.
        describe: ``(settings, Δx (1, H, W), blurred (1, H, W)) -> str`` under the map.
        on_show: ``(settings, FameResult or None, σ)`` whenever the applied settings show
            or σ moves; ``run_first=False``: uncached first settings wait for **Run**.
    Settable: ``callback_every`` (iterations between progress calls), ``min_frame_s``
    (least time between frames, and 10× the last frame's drawing time)."""

    callback_every, min_frame_s = 1, 0.2

    def __init__(
        self,
        run: Callable[[Settings, Settings], FameResult],
        image_of: Callable[[Settings], Tensor],
        controls: Mapping[str, W.ValueWidget],
        *,
        label: Callable[[Settings], str],
        sigma: float = 7.7,
        kernel_size: int = 49,
        seeds: Iterable[tuple[Settings, FameResult]] = (),
        annotate: Callable[[Settings], Iterable[tuple]] | None = None,
        describe: Callable[[Settings, Tensor, Tensor], str] | None = None,
        sigma_max: float = 30.0,
        on_show: Callable[[Settings, FameResult | None, float], None] | None = None,
        run_first: bool = True,
    ):
        self._run, self._image_of, self.controls = run, image_of, dict(controls)
        self._label = label
        self._annotate, self._describe_fn = annotate, describe
        self._on_show = on_show or (lambda *_: None)
        self._sigma0, self._kernel0 = sigma, kernel_size
        self._cache: dict[frozenset, _Map] = {}  # by the settings' items
        for settings, result in seeds:
            self._store(settings, result)
        self._lock = threading.RLock()
        self._notifying = threading.RLock()  # one on_show at a time, with the latest σ
        self._stop = threading.Event()  # the current run's; older runs were cancelled
        self.busy = False
        self.frames = 0  # live frames drawn by the current (or last) run
        self._build_widgets(sigma_max)
        self._applied = self._values()
        self._running: Settings | None = None
        shown = self._cache.get(frozenset(self._applied.items()))
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

    def _build_widgets(self, sigma_max: float) -> None:
        self.run_button = W.Button(
            description="Run", icon="play", button_style="primary", tooltip="run FAME"
        )
        self.stop_button = W.Button(
            description="Stop", icon="stop", disabled=True, tooltip="end the run, keep its map"
        )
        self.run_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        buttons = [self.run_button, self.stop_button]
        if "iterations" in self.controls:
            self.paper_button = W.Button(
                description=f"Run {PAPER_ITERATIONS} it (paper)",
                tooltip=f"iterations = {PAPER_ITERATIONS} and run",
            )
            self.paper_button.on_click(lambda _: self._run_paper())
            buttons.insert(1, self.paper_button)
        self.sigma = W.FloatSlider(
            value=self._sigma0, min=0.0, max=sigma_max, step=0.1, description="σ (live)", **SLIDER
        )
        self.pin_button = W.Button(description="Pin", icon="thumb-tack", tooltip="keep this map")
        self.clear_button = W.Button(description="Clear pins", disabled=True)
        self.pin_button.on_click(lambda _: self.pin())
        self.clear_button.on_click(lambda _: self.clear_pins())
        self.status, self.text, self.image_title, self.map_title = (W.HTML() for _ in range(4))
        self.image, self.map, self.curve = (W.Image(format="png") for _ in range(3))
        self.image.layout.width = self.map.layout.width = "300px"
        self.pins, self.errors = W.HBox(), W.Output()
        names = ", ".join(w.description for w in self.controls.values())
        legend = "<b>Run controls</b> (apply on <b>Run</b>; settings already computed show at "
        live = "<b>Live controls</b> (act at once): σ re-blurs the shown Δx; Pin keeps this map"
        pictures = [W.VBox([self.image_title, self.image]), W.VBox([self.map_title, self.map])]
        colourbar = W.Image(value=_colourbar(), format="png")
        self.widget = W.VBox(
            [
                W.HTML(f"{legend}once): {names}"),
                *rows_of(list(self.controls.values())),
                W.HBox(buttons),
                W.HTML(live),
                *rows_of([self.sigma, self.pin_button, self.clear_button]),
                self.status,
                W.HBox([*pictures, colourbar, self.curve]),
                self.text,
                self.pins,
                self.errors,
            ]
        )
        self.widget.explorer = self  # for tests and for code that drives the explorer
        for w, name in zip(
            (self.widget, self.map, self.status, self.pins, self.sigma, self.map_title),
            ("", "-map", "-status", "-pins", "-sigma", "-title"),
        ):
            w.add_class(f"fame-live{name}")  # stable hooks for the browser test
        fig = self._fig = Figure(figsize=(3.8, 2.9), dpi=80)
        ax = self._ax = fig.subplots()
        fig.subplots_adjust(left=0.2, right=0.96, bottom=0.17, top=0.88)
        (self._curve_line,) = ax.plot([], [], "o-", ms=3, color="tab:blue")
        ax.set_xlabel("iteration", fontsize=11)
        ax.set_ylabel("loss L (mean)", fontsize=11)
        ax.set_title("loss during the run", fontsize=11)
        ax.tick_params(labelsize=10)
        ax.grid(alpha=0.3)
        self._curve_drawn: list[tuple[int, float]] | None = None

    def _values(self) -> Settings:
        return {name: w.value for name, w in self.controls.items()}

    def _store(self, settings: Settings, result: FameResult, curve: Sequence = ()) -> _Map:
        steps, delta = int(result.steps.max()), result.delta[0].detach().float().cpu()
        initial, final = float(result.initial_loss.mean()), float(result.final_loss.mean())
        entry = _Map(delta, [(0, initial), *curve, (steps, final)], steps, result=result)
        self._cache[frozenset(settings.items())] = entry
        return entry

    def _render(self, live: tuple[int, int] | None = None) -> None:
        """Redraw from the shown map and the current σ (under the lock)."""
        with self._lock:
            settings = self._running if live is not None else self._applied
            image = to_numpy_image(self._image_of(settings))
            s = float(self.sigma.value)
            k = self._kernel0 if s == self._sigma0 else kernel_size_for(s)
            blurred = gaussian_blur(self._shown.delta[None], k, s)
            shown = normalize_maps(blurred, "max")[0][0].numpy()
            rgb = 0.5 * image + 0.5 * colormaps["jet"](shown)[..., :3]
            for *box, color, dashed in [] if self._annotate is None else self._annotate(settings):
                _draw_rect(rgb, box, color, dashed)
            self.image.value = _png(image)  # traitlets syncs changed bytes only
            self.map.value = _png(rgb)
            self.image_title.value = f"<b>{self._label(settings)}</b>"
            done = f"{live[0]}/{live[1]} it, running" if live else f"{self._shown.steps} it"
            self.map_title.value = f"<b>FAME map</b>, σ {s:.1f}, {done}"
            if self._curve_drawn != self._shown.curve:
                its, losses = zip(*self._shown.curve) if self._shown.curve else ((), ())
                self._curve_line.set_data(its, losses)
                self._ax.relim()
                self._ax.autoscale_view()
                self.curve.value = _png(self._fig)
                self._curve_drawn = list(self._shown.curve)
            if self._describe_fn is not None:
                self.text.value = self._describe_fn(settings, self._shown.delta[None], blurred)
            self._status(live)

    def _status(self, live: tuple[int, int] | None) -> None:
        applied, wanted = self._label(self._applied), self._values()
        if live is not None:
            loss = self._shown.curve[-1][1] if self._shown.curve else float("nan")
            colour = "#b26b00"
            text = f"⏳ FAME running: iteration {live[0]} of {live[1]}, loss {loss:.4g}. "
            text += f"Frames at most every {self.min_frame_s:g} s; Stop keeps this map."
        elif wanted != self._applied:
            colour = "#c00"
            text = f"⚠ pending: the map shows {applied}; press Run for {self._label(wanted)}"
        elif not self._shown.final and not self._shown.steps:
            colour, text = "inherit", f"○ not computed yet: press Run for {applied}"
        else:
            stopped = "" if self._shown.final else " (stopped)"
            colour, text = "#070", f"✓ showing {applied}{stopped}, σ {self.sigma.value:.1f}"
        self.status.value = f"<span style='color:{colour}'>{text}</span>"

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        self.run_button.disabled = busy
        self.run_button.description = "Running…" if busy else "Run"
        self.stop_button.disabled = not busy

    def _on_sigma(self, _change) -> None:
        self._safe(lambda: self._render(self._live_now()))
        self._notify()

    def _notify(self) -> None:
        """``on_show`` of the applied settings and σ, outside the redraw lock."""
        with self._notifying:
            settings, sigma = dict(self._applied), float(self.sigma.value)
            entry = self._cache.get(frozenset(settings.items()))
            result = None if entry is None else entry.result
            self._safe(lambda: self._on_show(settings, result, sigma))

    def _live_now(self) -> tuple[int, int] | None:
        if not self.busy or self._shown.final:
            return None
        return self._shown.steps, int(self._running.get("iterations", 0))

    def _on_run_control(self, _change) -> None:
        settings = self._values()
        cached = self._cache.get(frozenset(settings.items()))
        if self.busy:
            self._status(self._live_now())
        elif cached is None:
            self._safe(self._render)  # the status says: pending
        else:  # computed before: show it at once
            self._show(settings, cached)

    def _show(self, settings: Settings, entry: _Map) -> None:
        self._applied, self._shown = settings, entry
        self._safe(self._render)
        self._notify()

    def _run_paper(self) -> None:
        self.controls["iterations"].value = PAPER_ITERATIONS
        self.start()

    def _safe(self, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception:  # a callback's error would otherwise vanish into the kernel log
            self._show_error()

    def _show_error(self) -> None:
        self.errors.outputs = ()
        self.errors.append_stdout(traceback.format_exc())

    def start(self, settings: Settings | None = None) -> threading.Thread | None:
        """Run FAME for ``settings`` (default: the controls) in a background thread,
        cancelling the run in flight; cached settings show at once (returns ``None``)."""
        settings = dict(self._values() if settings is None else settings)
        cached = self._cache.get(frozenset(settings.items()))
        self.stop()
        stop = self._stop = threading.Event()  # a run in flight no longer draws or finishes
        if cached is not None:
            self._set_busy(False)
            self._show(settings, cached)
            return None
        self._running, self.frames = settings, 0
        self.errors.outputs = ()
        self._set_busy(True)
        self._status((0, int(settings.get("iterations", 0))))
        thread = threading.Thread(target=self._work, args=(settings, stop), daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        """Ask the run in flight to end at its next frame (its map is kept)."""
        self._stop.set()

    def _work(self, settings: Settings, stop: threading.Event):
        total = int(settings.get("iterations", 0))
        curve: list[tuple[int, float]] = []
        drawn = {"at": -float("inf"), "cost": 0.0}

        def callback(delta: Tensor, iteration: int, loss: Tensor) -> bool:
            if stop.is_set():  # Stop, or a newer run
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
            drawn["at"] = time.perf_counter()
            drawn["cost"] = drawn["at"] - now
            return stop.is_set()

        try:
            result = self._run(
                settings, {"callback": callback, "callback_every": self.callback_every}
            )
        except Exception:
            if stop is self._stop:
                self._show_error()
                self._set_busy(False)
            return
        steps = int(result.steps.max())  # < total also when every sample stopped early at ε
        done = dict(settings, iterations=steps) if stop.is_set() and steps < total else settings
        entry = self._store(done, result, curve)
        if stop is not self._stop:  # cancelled by a newer run: keep it cached only
            return
        with self._lock:
            self._applied, self._shown = done, entry
            entry.final = done is settings  # stopped early: marked in the status
            self._set_busy(False)  # buttons before the final status reaches the page
            self._safe(self._render)
        self._notify()

    def wait(self, timeout: float | None = None) -> None:
        """Block until no run is in flight (tests, scripts)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.busy and (deadline is None or time.monotonic() < deadline):
            time.sleep(0.02)
        with self._lock:  # the run's final render, done under the lock, has finished
            pass

    def pin(self) -> None:
        """Keep the current map, titled with its settings, beside the next runs."""
        with self._lock:
            settings = self._running if self._live_now() else self._applied
            title = f"{self._label(settings)}, σ {self.sigma.value:.1f}, {self._shown.steps} it"
            picture = W.Image(value=self.map.value, format="png", layout={"width": "240px"})
        pinned = W.HTML(f"<small><b>pinned</b>: {title} done</small>")
        panel = W.VBox([pinned, picture], layout={"width": "250px"})
        self.pins.children = (*self.pins.children, panel)[-MAX_PINS:]
        self.clear_button.disabled = False

    def clear_pins(self) -> None:
        self.pins.children = ()
        self.clear_button.disabled = True
