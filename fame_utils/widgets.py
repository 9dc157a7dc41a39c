"""ipywidgets controls for the notebooks.

Every control works headless too: the builders return the widget box *and* render once
with the initial values, so a papermill run still produces the plot.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

import ipywidgets as W
import matplotlib.pyplot as plt
from torch import Tensor, nn

from .core import FameConfig, FameResult, run_fame
from .objectives import Objective
from .plotting import overlay

__all__ = ["FameCache", "blur_explorer", "show_in"]


def show_in(out: W.Output, fig: plt.Figure) -> None:
    """Replace the contents of ``out`` with ``fig`` (as a PNG) and close the figure.

    Sets the Output widget's state directly instead of capturing with ``with out:``:
    headless runs (papermill/nbclient) intermittently lost the kernel's idle message when
    plots were captured into an Output widget, and hung.
    """
    import io

    from IPython.display import Image

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    out.outputs = ()
    out.append_display_data(Image(data=buf.getvalue()))


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
    objective_for: Callable[[int], Objective],
    *,
    iterations: int,
    step_size: float = 1 / 255,
    sigma: float = 7.7,
) -> W.Widget:
    """Image, σ, iterations and step-size controls over one FAME map.

    Changing σ re-blurs the cached Δx (instant); changing iterations or the step size
    recomputes when "Run" is pressed. Seed the cache with results you already have via
    ``cache.put((i,), result[i], iterations=..., step_size=...)``.

    Args:
        cache: :class:`FameCache` around the model.
        images: (N, 3, H, W) in [0, 1].
        names: N display names.
        objective_for: index -> objective for that single image.
    """
    image = W.Dropdown(options=list(zip(names, range(len(names)))), value=0, description="image")
    sig = W.FloatSlider(
        value=sigma, min=0.0, max=30.0, step=0.1, description="σ", continuous_update=False
    )
    its = W.IntSlider(
        value=iterations, min=1, max=1000, step=1, description="iterations", continuous_update=False
    )
    eta = W.FloatLogSlider(
        value=step_size,
        base=10,
        min=-4,
        max=-1,
        step=0.05,
        description="step size",
        continuous_update=False,
    )
    run = W.Button(description="Run", tooltip="recompute with these iterations / step size")
    out = W.Output()
    state = {"its": iterations, "eta": step_size}

    def render(*_):
        i = image.value
        res = cache.get(
            (i,),
            images[i : i + 1],
            objective_for(i),
            iterations=state["its"],
            step_size=state["eta"],
        )
        kernel = 2 * int(3 * sig.value + 0.5) + 1 if sig.value > 0 else 1
        m = res.maps(sigma=sig.value, kernel_size=kernel)
        fig, axes = plt.subplots(1, 2, figsize=(6, 3))
        overlay(axes[0], images[i], title=names[i])
        overlay(
            axes[1],
            images[i],
            m[0],
            title=f"σ={sig.value:.1f}, {state['its']} it, η={state['eta']:.4f}",
        )
        show_in(out, fig)

    def recompute(_):
        state["its"], state["eta"] = its.value, eta.value
        render()

    image.observe(render, "value")
    sig.observe(render, "value")
    run.on_click(recompute)
    render()
    return W.VBox([W.HBox([image, sig]), W.HBox([its, eta, run]), out])
