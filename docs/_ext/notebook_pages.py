"""One page per ``notebooks/*.ipynb``, rendered with its outputs (issue 22).

Before Sphinx reads the sources, every notebook gets an executed copy in
``docs/notebooks/`` (git-ignored), which myst-nb renders without executing anything:

- ``make figures``' executed copy in ``build/notebooks/`` when its cells are the committed
  notebook's (embedded defaults, the committed figures);
- otherwise the notebook executed here in its fast setting (``FAST`` in
  ``tests/test_notebooks.py``, the one home of those parameters), cached in
  ``build/docs-exec/`` under a hash of the notebook and its parameters, so a rebuild
  without changes executes nothing. A change of ``fame_utils`` alone does not invalidate
  it: delete ``build/docs-exec/`` (or run ``make figures``) to refresh.

Widgets cannot run on a static page: each widget output is replaced by a note saying how to
run it live and by what its ``Output`` area showed at the controls' default values (read
from the widget state that papermill saves), so the page needs no ipywidgets script.
A copy is only rewritten when its content changes, which keeps Sphinx's incremental build.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import nbformat
from sphinx.application import Sphinx
from sphinx.util import logging

ROOT = Path(__file__).resolve().parents[2]
FIGURES_COPIES = ROOT / "build" / "notebooks"  # make figures' executed copies
EXEC = ROOT / "build" / "docs-exec"  # this build's fast-setting executions
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
log = logging.getLogger(__name__)


def _cells(nb: nbformat.NotebookNode) -> list[tuple[str, str]]:
    return [
        (c.cell_type, c.source)
        for c in nb.cells
        if "injected-parameters" not in c.metadata.get("tags", [])
    ]


def _fast_run(path: Path, fast: dict, cached: set) -> nbformat.NotebookNode:
    """The notebook executed in its fast setting, from the cache when nothing changed."""
    from run_notebooks import execute

    if path.name not in fast:
        raise RuntimeError(
            f"{path.name} has no fast parameter setting: add it to FAST in tests/test_notebooks.py"
        )
    params = dict(fast[path.name], figures_dir=str(EXEC / "figures"))
    if path.name in cached:
        params.update(cache_dir=str(EXEC / "cache"), out_dir=str(EXEC / "out"))
    key = hashlib.sha256(path.read_bytes() + json.dumps(params, sort_keys=True).encode())
    done = EXEC / "executed" / path.name
    if done.exists():
        nb = nbformat.read(done, as_version=4)
        if nb.metadata.get("fame_docs", {}).get("key") == key.hexdigest():
            return nb
    log.info(f"executing {path.name} in its fast setting {fast[path.name]}")
    seconds = execute(path, params, done.parent, cell_timeout=900)
    log.info(f"  {path.name}: {seconds:.0f} s")
    nb = nbformat.read(done, as_version=4)
    nb.metadata["fame_docs"] = {"key": key.hexdigest(), "fast": fast[path.name]}
    nbformat.write(nb, done)
    return nb


def _widget_outputs(state: dict, model_id: str) -> tuple[list, list[str]] | None:
    """The outputs of every ``Output`` widget under ``model_id`` and the controls' values;
    ``None`` for a progress bar."""
    outputs, controls, todo, seen, progress = [], [], [model_id], set(), False
    while todo:
        mid = todo.pop(0)
        if mid in seen or mid not in state:
            continue
        seen.add(mid)
        model = state[mid]
        s = model.get("state", {})
        progress |= model.get("model_name") in ("FloatProgressModel", "IntProgressModel")
        if model.get("model_name") == "OutputModel":
            outputs.extend(s.get("outputs", []))
        elif s.get("description") and "value" in s and "options" not in s:
            value = s["value"]
            controls.append(
                f"{s['description']} = {value:.4g}"
                if isinstance(value, float)
                else f"{s['description']} = {value}"
            )
        elif s.get("description") and "index" in s:
            labels = s.get("_options_labels", [])
            index = s["index"]
            picked = index if isinstance(index, list) else [index]
            names = [labels[i] if isinstance(i, int) and i < len(labels) else i for i in picked]
            value = ", ".join(map(str, names)) if isinstance(index, list) else names[0]
            controls.append(f"{s['description']} = {value}")
        children = [v for v in s.values() if isinstance(v, str)]
        children += [x for v in s.values() if isinstance(v, list) for x in v if isinstance(x, str)]
        todo += [c.removeprefix("IPY_MODEL_") for c in children if c.startswith("IPY_MODEL_")]
    if progress and not outputs:
        return None  # a progress bar (tqdm): nothing to show on a static page
    return outputs, controls


def _static_widgets(nb: nbformat.NotebookNode, name: str) -> None:
    """Replace each widget output by a note and its default-state outputs (in place)."""
    state = nb.metadata.pop("widgets", {}).get(WIDGET_STATE, {}).get("state", {})
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        new = []
        for out in cell.get("outputs", []):
            view = out.get("data", {}).get(WIDGET_VIEW)
            if view is None:
                new.append(out)
                continue
            found = _widget_outputs(state, view["model_id"])
            if found is None:
                continue
            shown, controls = found
            settings = f" (at {', '.join(controls)})" if controls else ""
            note = (
                f"**Interactive controls.** Widgets need a live kernel: run `make lab`, open "
                f"`{name}`, *Run > Run All Cells* and use the controls. Below: what they show "
                f"at their default values{settings}."
            )
            if not shown:
                note += " (No output of theirs was saved in this run.)"
            new.append(nbformat.v4.new_output("display_data", data={"text/markdown": note}))
            new.extend(nbformat.from_dict(o) for o in shown)
        cell.outputs = new


def _origin_note(source: str) -> nbformat.NotebookNode:
    cell = nbformat.v4.new_markdown_cell(f"```{{note}}\n{source}\n```")
    cell.id = "fame-docs-origin"  # a fixed id: an unchanged page is not rewritten
    return cell


def prepare(app: Sphinx) -> None:
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "scripts")]
    from run_notebooks import notebooks
    from test_notebooks import CACHED, FAST

    out = Path(app.srcdir) / "notebooks"
    out.mkdir(exist_ok=True)
    wanted = set()
    for path in notebooks():
        wanted.add(path.name)
        committed = nbformat.read(path, as_version=4)
        copy = FIGURES_COPIES / path.name
        nb = nbformat.read(copy, as_version=4) if copy.exists() else None
        if nb is not None and _cells(nb) == _cells(committed):
            note = (
                "Rendered from `make figures`' executed copy (`build/notebooks/`): the "
                "notebook's embedded defaults, the figures committed in `figures/`."
            )
        else:
            nb = _fast_run(path, FAST, CACHED)
            note = (
                f"Executed by `make docs` in the notebook's fast test setting "
                f"`{json.dumps(FAST[path.name])}` (tiny budgets, so the figures are rough); "
                "run `make figures` before `make docs` to render the full-budget outputs."
            )
        _static_widgets(nb, path.name)
        nb.cells.insert(1, _origin_note(note))
        text = nbformat.writes(nb)
        target = out / path.name
        if not target.exists() or target.read_text() != text:
            target.write_text(text)
    for stale in out.glob("*.ipynb"):
        if stale.name not in wanted:
            stale.unlink()


def setup(app: Sphinx) -> dict:
    app.connect("builder-inited", prepare)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
