"""Every notebook, run from JupyterLab's own UI in headless Chromium (issue 11).

papermill (tests/test_notebooks.py) never loads JupyterLab's front end, so it cannot see a
widget that renders as ``Widget(...)`` text, a figure that never reaches the page or a
control whose callback is broken. This test starts one ``jupyter lab`` server on a copy of
the notebooks with their fast parameters injected, opens each notebook in Chromium, runs
it with the Run menu's "Run All Cells" (``runmenu:run-all``), and checks what a person
would see: no traceback, a figure, widgets rendered as widgets, and a slider that, when
moved, changes the displayed output. A full-page screenshot of each notebook goes to
``build/browser/NN_name.png``.

Browser: Debian's Chromium (``apt-get install chromium``) driven by Playwright for Python
(``pip install -e '.[test]'``). Without Chromium the test skips, except under ``CI=true``
where a missing browser fails.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from test_notebooks import CACHED, FAST, ROOT, notebooks  # the fast setting, one home

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SCREENSHOTS = ROOT / "build" / "browser"
INSTALL_HINT = (
    "install Chromium (Debian/Ubuntu: `sudo apt-get install chromium`, or set CHROMIUM=/path/to/"
    "chromium) and Playwright (`.venv/bin/pip install -e '.[test]'`)"
)
# Chromium on a closed network: without the background-networking flags its connection
# attempts are refused many at a time; Playwright gives every launch a fresh profile.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# The project's JupyterLab settings (also used by `make lab`): overrides.json switches the
# "get notified about official Jupyter news?" prompt off.
LAB_SETTINGS = ROOT / "jupyter_config" / "lab" / "settings"
RUN_TIMEOUT_S = 900  # one notebook's Run All at fast parameters (minutes on a busy 2-core CPU)
CONTROL_TIMEOUT_S = 180  # a moved control's output to change (may rerun FAME at 2-3 iterations)
# notebooks whose first control must act without a button press (notebook 01: σ re-blurs
# the cached Δx at once); elsewhere the test presses the control's apply button if any
LIVE = {"01_gaussian_blur.ipynb"}
# the text/plain fallback of an ipywidget shown without JupyterLab's widget manager
WIDGET_FALLBACK = re.compile(
    r"^\s*(?:[A-Z]\w*|interactive)\((?:children|value|options|description)="
)


def _chromium() -> str | None:
    explicit = os.environ.get("CHROMIUM")
    if explicit:
        return explicit if Path(explicit).exists() else None
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _require_browser() -> str:
    """The Chromium executable; skip (fail under CI=true) when it or Playwright is missing."""
    missing = []
    exe = _chromium()
    if exe is None:
        missing.append("Chromium")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("Playwright for Python")
    if missing:
        message = f"browser test needs {' and '.join(missing)}: {INSTALL_HINT}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: a missing browser is a failure)")
        pytest.skip(message)
    return exe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _stop(proc: subprocess.Popen, base: str, token: str) -> None:
    """Shut JupyterLab and its kernels down: the server's own shutdown, then signals."""
    import psutil

    children = _descendants(proc.pid)  # kernels run in their own process groups
    if proc.poll() is None:
        try:
            req = urllib.request.Request(
                f"{base}/api/shutdown", method="POST", headers={"Authorization": f"token {token}"}
            )
            urllib.request.urlopen(req, timeout=10).close()
            proc.wait(timeout=20)
        except (OSError, urllib.error.URLError, subprocess.TimeoutExpired):
            pass
    for sig in (signal.SIGTERM, signal.SIGKILL):
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, sig)
                proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass
    _, alive = psutil.wait_procs(children, timeout=5)
    for p in alive:
        p.kill()
    psutil.wait_procs(alive, timeout=5)


@pytest.fixture(scope="module")
def lab_root(tmp_path_factory) -> Path:
    """A folder with a papermill prepare-only copy of each notebook (fast parameters)."""
    import papermill as pm

    _require_browser()  # skip before any work when there is no browser
    root = tmp_path_factory.mktemp("lab")
    for path in notebooks():
        params = dict(FAST[path.name], figures_dir=str(root / "figures"))
        if path.name in CACHED:
            params.update(cache_dir=str(root / "cache"), out_dir=str(root / "out"))
        pm.execute_notebook(
            str(path),
            str(root / path.name),
            parameters=params,
            prepare_only=True,
            kernel_name="python3",
            progress_bar=False,
        )
    return root


@pytest.fixture(scope="module")
def lab(lab_root, tmp_path_factory):
    """One ``jupyter lab`` server over ``lab_root``; yields (base URL, token)."""
    port, token = _free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    state = tmp_path_factory.mktemp("jupyter")
    env = dict(
        os.environ,
        # a clean Jupyter state: no user settings, workspaces or config leak in
        JUPYTER_CONFIG_DIR=str(state / "config"),
        JUPYTER_RUNTIME_DIR=str(state / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(state / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(state / "workspaces"),
        # the project's server settings, as `make lab` uses them: saved without outputs
        JUPYTER_CONFIG_PATH=str(ROOT / "jupyter_config"),
    )
    cmd = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={lab_root}",
        f"--LabApp.app_settings_dir={LAB_SETTINGS}",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(state / "server.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        cmd, cwd=lab_root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"jupyter lab exited ({proc.returncode}): {(state / 'server.log').read_text()}"
                )
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except (OSError, urllib.error.URLError):
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"jupyter lab did not answer in 120 s: {(state / 'server.log').read_text()}"
                )
            time.sleep(0.5)
        yield base, token
    finally:
        _stop(proc, base, token)
        log.close()


@pytest.fixture(scope="module")
def browser(lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=_chromium(), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


# --- what the page shows (evaluated in the browser, scoped to the open notebook) -------------

_PANEL = "document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)')"
_STATE_JS = f"""() => {{
    const panel = {_PANEL};
    const bar = document.querySelector('#jp-main-statusbar');
    const prompts = panel ? [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')] : [];
    return {{
        idle: /\\|\\s*Idle\\b/.test(bar ? bar.innerText : ''),
        running: prompts.filter(p => p.textContent.includes('*')).length,
        unrun: prompts.map((p, i) => /\\[\\d+\\]/.test(p.textContent) ? -1 : i).filter(i => i >= 0),
        cells: prompts.length,
    }};
}}"""
# every output area of the open notebook: its code cell's index, text, images and widgets
_OUTPUTS_JS = f"""() => {{
    const cells = [...{_PANEL}.querySelectorAll('.jp-CodeCell')];
    return cells.map((cell, i) => {{
        const outs = [...cell.querySelectorAll('.jp-OutputArea-output')];
        return {{
            cell: i,
            texts: outs.map(o => o.textContent),
            images: [...cell.querySelectorAll('.jp-OutputArea-output img')]
                .filter(im => im.complete && im.naturalWidth > 0).length,
            widgets: cell.querySelectorAll('.jp-OutputArea-output .jupyter-widgets').length,
        }};
    }});
}}"""
# what a moved control may change in its cell: the images and the Output widgets' text
_SNAPSHOT_JS = """(cell) => JSON.stringify([
    [...cell.querySelectorAll('.jp-OutputArea-output img')].map(im => im.src),
    [...cell.querySelectorAll('.widget-output')].map(o => o.textContent),
])"""


def _poll(page, until, timeout_s: float, what: str):
    """Poll ``until()`` once a second until it returns a truthy value; fail after timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = until()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(what)
        page.wait_for_timeout(1000)


def _wait_idle(page, name: str, timeout_s: float, doing: str) -> dict:
    """Wait until the kernel shows Idle and no prompt shows ``[*]``, twice in a row."""
    seen = {"quiet": 0}

    def settled():
        state = page.evaluate(_STATE_JS)
        seen["quiet"] = seen["quiet"] + 1 if state["idle"] and not state["running"] else 0
        seen["state"] = state
        return state if seen["quiet"] >= 2 else None

    return _poll(
        page, settled, timeout_s, f"{name}: kernel not idle {timeout_s:.0f} s after {doing}"
    )


def _check_outputs(page, name: str) -> list[dict]:
    """No traceback, no ipywidget shown as text; returns the outputs per code cell."""
    outputs = page.evaluate(_OUTPUTS_JS)
    for o in outputs:
        for text in o["texts"]:
            if "Traceback" in text or "Error displaying widget" in text:
                pytest.fail(f"{name}: code cell {o['cell']} shows an error:\n{text[:3000]}")
            if WIDGET_FALLBACK.match(text) or "Loading widget..." in text:
                controls = re.findall(r"description='([^']*)'", text)
                pytest.fail(
                    f"{name}: code cell {o['cell']} shows its ipywidgets controls "
                    f"{controls or ''} as text, not as widgets (is jupyterlab_widgets installed "
                    f"in the environment that runs JupyterLab?): {text[:300]}"
                )
    return outputs


def _move_control(page, name: str) -> str:
    """Move the notebook's first slider by one step (else pick the next entry of its first
    dropdown); unless the notebook is in ``LIVE``, press the first button of the widget the
    control belongs to (manual ``interact``/"Run" buttons that apply settings); then wait
    until the control's cell shows a different image or Output-widget text.

    Returns what was moved, e.g. "slider 'σ' (7.70 -> 7.80)"."""
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    # a live explorer's σ (fame_utils.live) acts at once in every notebook that has one
    live_sigma = panel.locator(".jp-OutputArea-output .fame-live-sigma")
    live = name in LIVE or live_sigma.count() > 0
    sliders = (
        live_sigma if live_sigma.count() else panel.locator(".jp-OutputArea-output .widget-slider")
    )
    dropdowns = panel.locator(".jp-OutputArea-output .widget-dropdown")
    if sliders.count():
        control = sliders.first
    elif dropdowns.count():
        control = dropdowns.first
    else:
        pytest.fail(f"{name}: widgets rendered but no slider or dropdown to move; extend the test")
    control.scroll_into_view_if_needed()
    label = control.locator(".widget-label").first.inner_text()
    cell = control.locator("xpath=ancestor::div[contains(@class, 'jp-CodeCell')][1]")
    before = cell.evaluate(_SNAPSHOT_JS)
    if sliders.count():
        readout = control.locator(".widget-readout")
        old = readout.inner_text()
        handle = control.locator(".noUi-handle").first
        at_max = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemax")
        handle.focus()
        page.keyboard.press("ArrowLeft" if at_max else "ArrowRight")  # one step
        moved = f"slider '{label}' ({old} -> {readout.inner_text()})"
    else:
        select = control.locator("select")
        options = select.locator("option").all_inner_texts()
        old = select.evaluate("s => s.selectedIndex")
        new = (old + 1) % len(options)
        select.select_option(index=new)
        moved = f"dropdown '{label}' ({options[old]} -> {options[new]})"
    if not live:
        widget = control.locator("xpath=ancestor::div[contains(@class, 'jp-OutputArea-output')][1]")
        buttons = widget.locator("button")
        if buttons.count():
            moved += f" and pressed '{buttons.first.inner_text()}'"
            buttons.first.click()
    _poll(
        page,
        lambda: cell.evaluate(_SNAPSHOT_JS) != before,
        CONTROL_TIMEOUT_S,
        f"{name}: moved {moved} but the displayed output did not change "
        f"within {CONTROL_TIMEOUT_S} s",
    )
    return moved


# the window height that shows the open notebook down to its last cell's bottom
_HEIGHT_JS = f"""() => {{
    const outer = {_PANEL}.querySelector('.jp-WindowedPanel-outer');
    const cells = outer.querySelectorAll('.jp-Cell');
    const last = cells[cells.length - 1].getBoundingClientRect().bottom + outer.scrollTop;
    const bar = document.querySelector('#jp-main-statusbar');
    return last + (bar ? bar.getBoundingClientRect().height : 0) + 40;
}}"""


def _screenshot(page, path: Path) -> None:
    """The whole notebook: the notebook scrolls inside its panel, so grow the window to the
    last cell's bottom first (capped at 16000 px, Chromium's texture limit), with the file
    browser collapsed so the notebook gets the width."""
    side = page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current")
    if side.count():
        side.first.click()
    # cells far off screen are laid out at an estimated height (content-visibility) until
    # shown: grow, let them render, measure again until the height settles
    height = 0
    for _ in range(6):
        page.evaluate(
            f"() => {{ {_PANEL}.querySelector('.jp-WindowedPanel-outer').scrollTop = 0; }}"
        )
        page.wait_for_timeout(1000)  # relayout and repaint of the now visible cells
        needed = int(min(max(page.evaluate(_HEIGHT_JS), VIEWPORT["height"]), 16000))
        if needed == height:
            break
        height = needed
        page.set_viewport_size({"width": VIEWPORT["width"], "height": height})
    path.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(path), full_page=True)


def _shutdown_kernels(base: str, token: str, name: str) -> None:
    """Free the notebook's kernel before the next notebook starts one (REST, not the UI)."""
    headers = {"Authorization": f"token {token}"}
    with urllib.request.urlopen(
        urllib.request.Request(f"{base}/api/sessions", headers=headers), timeout=10
    ) as r:
        sessions = json.load(r)
    for s in sessions:
        if s["path"].endswith(name):
            req = urllib.request.Request(
                f"{base}/api/sessions/{s['id']}", method="DELETE", headers=headers
            )
            urllib.request.urlopen(req, timeout=30).close()


VIEWPORT = {"width": 1400, "height": 900}


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.name)
def test_notebook_in_jupyterlab(path, lab, lab_root, browser):
    """Run All from the Run menu; no traceback, a figure, widgets as widgets, a control
    that changes the output when moved; saved (without outputs) and reloaded, the notebook
    shows no widget error; full-page screenshot to build/browser/."""
    base, token = lab
    name = path.name
    page = browser.new_page(viewport=dict(VIEWPORT))
    passed = False
    try:
        # ?reset: do not restore an earlier workspace
        page.goto(f"{base}/lab/tree/{name}?reset&token={token}")
        page.wait_for_selector(".jp-NotebookPanel .jp-CodeCell", timeout=120_000)
        _wait_idle(page, name, 120, "opening the notebook")
        page.click(".lm-MenuBar-item:has-text('Run')")
        page.click("li[data-command='runmenu:run-all']")
        state = _wait_idle(page, name, RUN_TIMEOUT_S, "Run > Run All Cells")
        outputs = _check_outputs(page, name)
        assert not state["unrun"], f"{name}: code cells {state['unrun']} did not run"
        assert sum(o["images"] for o in outputs), f"{name}: no figure appeared"
        news = page.locator(".jp-toast-message:has-text('Jupyter news')")
        assert not news.count(), "JupyterLab's news prompt is shown (jupyter_config overrides)"
        if sum(o["widgets"] for o in outputs):
            moved = _move_control(page, name)
            _wait_idle(page, name, CONTROL_TIMEOUT_S, f"moving {moved}")
            _check_outputs(page, name)
        _screenshot(page, SCREENSHOTS / name.replace(".ipynb", ".png"))
        _save_and_reopen(page, lab_root, name)
        passed = True
    finally:
        try:
            if not passed:  # the failing state, for a person to look at
                _screenshot(page, SCREENSHOTS / name.replace(".ipynb", ".png"))
        finally:
            page.close()
            _shutdown_kernels(base, token, name)


def _save_and_reopen(page, lab_root: Path, name: str) -> None:
    """File > Save (the pre-save hook strips the outputs), then reload the page: the saved
    file holds no outputs and the reopened notebook shows no "Error displaying widget"."""
    path = lab_root / name
    before = path.stat().st_mtime_ns
    page.click(".lm-MenuBar-item:has-text('File')")
    page.click("li[data-command='docmanager:save']")
    _poll(page, lambda: path.stat().st_mtime_ns != before, 30, f"{name}: File > Save wrote nothing")
    saved = json.loads(path.read_text())
    assert all(not c.get("outputs") for c in saved["cells"]), f"{name}: saved with outputs"
    assert "widgets" not in saved["metadata"]
    page.reload()
    page.wait_for_selector(".jp-NotebookPanel .jp-CodeCell", timeout=120_000)
    page.wait_for_timeout(2000)
    _check_outputs(page, name)


# --- the live explorer of notebook 01 (issue 21) ------------------------------------------

_LIVE = ".jp-NotebookPanel:not(.lm-mod-hidden) .fame-live"


def _live_state(page) -> dict:
    return page.evaluate(
        f"""() => {{
        const root = document.querySelector('{_LIVE}');
        const button = name => [...root.querySelectorAll('button')]
            .find(b => b.textContent.trim().startsWith(name));
        return {{
            map: root.querySelector('.fame-live-map').src,
            title: root.querySelector('.fame-live-title').textContent,
            status: root.querySelector('.fame-live-status').textContent,
            run_disabled: button('Run').disabled,
            stop_disabled: button('Stop').disabled,
            pins: root.querySelector('.fame-live-pins').children.length,
            pin_srcs: [...root.querySelectorAll('.fame-live-pins img')].map(i => i.src),
        }};
    }}"""
    )


def _click(page, label: str) -> None:
    page.locator(f"{_LIVE} button:text-is('{label}')").click()


def _poll_live(page, until, timeout_s: float, what: str) -> dict:
    """Poll the explorer's state every 50 ms until ``until(state)``; fail after timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = _live_state(page)
        if until(state):
            return state
        if time.monotonic() > deadline:
            pytest.fail(f"{what} (last state: {state['status']!r})")
        page.wait_for_timeout(50)


def _two_live_frames(page) -> tuple[float, str]:
    """After Run: Run is disabled and Stop enabled while busy, and the shown map changes
    at least twice while the status still says running. Returns when the first frame came
    (``time.monotonic()``) and the last map shown."""
    busy = _poll_live(  # two widget messages: poll until both arrived
        page,
        lambda s: s["run_disabled"] and not s["stop_disabled"],
        30,
        "Run was not disabled, or Stop not enabled, while the run is busy",
    )
    maps, t_first = [busy["map"]], None
    while len(maps) < 3:  # the view before the run, then two live frames
        state = _poll_live(
            page, lambda s, m=maps[-1]: s["map"] != m, CONTROL_TIMEOUT_S, "no live frame"
        )
        assert "running" in state["status"], "the map changed only after the run ended"
        t_first = t_first or time.monotonic()
        maps.append(state["map"])
    return t_first, maps[-1]


def test_live_explorer_in_jupyterlab(lab, lab_root, browser):
    """Notebook 01's explorer in JupyterLab: Run draws the map live (it changes at least
    twice before the run ends), Run is disabled while busy, σ moved during the run changes
    the display, a pinned panel stays while the next run draws, Stop ends the run and the
    counter stops; saving keeps the notebook output-free and the repository unchanged, and
    the reopened notebook shows no widget error. Prints the latencies a person feels."""
    base, token = lab
    name = "01_gaussian_blur.ipynb"
    git_before = subprocess.run(
        ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
    ).stdout
    page = browser.new_page(viewport=dict(VIEWPORT))
    try:
        page.goto(f"{base}/lab/tree/{name}?reset&token={token}")
        page.wait_for_selector(".jp-NotebookPanel .jp-CodeCell", timeout=120_000)
        _wait_idle(page, name, 120, "opening the notebook")
        page.click(".lm-MenuBar-item:has-text('Run')")
        page.click("li[data-command='runmenu:run-all']")
        _wait_idle(page, name, RUN_TIMEOUT_S, "Run > Run All Cells")
        _check_outputs(page, name)
        page.locator(_LIVE).scroll_into_view_if_needed()
        first = _live_state(page)
        assert "✓ showing" in first["status"] and not first["run_disabled"]
        _click(page, "Pin")
        _poll_live(page, lambda s: s["pins"] == 1, 30, "Pin added no panel")
        pinned = _live_state(page)["pin_srcs"]

        t0 = time.monotonic()
        _click(page, "Run 500 it (paper)")  # not cached: a live run
        t_first, last = _two_live_frames(page)
        t_first -= t0
        assert _live_state(page)["pin_srcs"] == pinned  # the pin stays while the run draws

        sigma = page.locator(f"{_LIVE} .fame-live-sigma .noUi-handle").first
        sigma.focus()
        t1 = time.monotonic()
        for _ in range(5):
            page.keyboard.press("ArrowRight")
        moved = _poll_live(
            page,
            lambda s: "σ 8.2" in s["title"],
            CONTROL_TIMEOUT_S,
            "σ moved during the run did not change the display",
        )
        t_sigma = time.monotonic() - t1
        assert moved["map"] != last

        t2 = time.monotonic()
        _click(page, "Stop")
        stopped = _poll_live(
            page, lambda s: "running" not in s["status"], CONTROL_TIMEOUT_S, "Stop did not end it"
        )
        t_stop = time.monotonic() - t2
        assert not stopped["run_disabled"] and stopped["stop_disabled"]
        page.wait_for_timeout(3000)
        after = _live_state(page)
        assert after["status"] == stopped["status"] and after["map"] == stopped["map"]
        print(
            f"\nlatencies (notebook 01, {name}): first live frame {t_first:.2f} s after Run, "
            f"σ redraw during a run {t_sigma:.2f} s (5 key steps), Stop {t_stop:.2f} s"
        )

        page.keyboard.press("Control+s")  # the pre-save hook strips the outputs
        page.wait_for_timeout(3000)
        saved = json.loads((lab_root / name).read_text())
        code = [c for c in saved["cells"] if c["cell_type"] == "code"]
        assert all(not c["outputs"] and c["execution_count"] is None for c in code)
        assert "widgets" not in saved["metadata"]
        git_after = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True
        ).stdout
        assert git_after == git_before, "an interactive run changed files of the repository"
        _screenshot(page, SCREENSHOTS / "01_live_explorer.png")
        page.reload()
        page.wait_for_selector(".jp-NotebookPanel .jp-CodeCell", timeout=120_000)
        page.wait_for_timeout(3000)
        _check_outputs(page, name)  # no "Error displaying widget" after reopening
    finally:
        page.close()
        _shutdown_kernels(base, token, name)


# --- the face explorer of notebook 03 (issue 21) -------------------------------------------

_FACE_JS = f"""() => {{
    const cell = document.querySelector('{_LIVE}').closest('.jp-CodeCell');
    const counts = cell.textContent.match(/FAME (\\d+)×, the other methods (\\d+)×/);
    const shown = cell.textContent.match(/FAME (\\d+) it, σ ([\\d.]+)/);
    return {{
        figure: [...cell.querySelectorAll('.widget-output img')].map(i => i.src),
        counts: counts ? [Number(counts[1]), Number(counts[2])] : null,
        shown: shown ? [Number(shown[1]), Number(shown[2])] : null,
    }};
}}"""


def test_face_explorer_runs_fame_live_in_jupyterlab(lab, browser):
    """Notebook 03's explorer: Run draws FAME's e₊ of the pair live (the map changes at
    least twice before the run ends), σ moved during the run changes the display, Stop
    ends the run and the counter stops, and the comparison of every method then shows the
    stopped FAME at the moved σ with no other method rerun (events and counts, not times).
    Prints the latencies a person feels."""
    base, token = lab
    name = "03_face_comparisons.ipynb"
    page = browser.new_page(viewport=dict(VIEWPORT))
    try:
        page.goto(f"{base}/lab/tree/{name}?reset&token={token}")
        page.wait_for_selector(".jp-NotebookPanel .jp-CodeCell", timeout=120_000)
        _wait_idle(page, name, 120, "opening the notebook")
        page.click(".lm-MenuBar-item:has-text('Run')")
        page.click("li[data-command='runmenu:run-all']")
        _wait_idle(page, name, RUN_TIMEOUT_S, "Run > Run All Cells")
        _check_outputs(page, name)
        page.locator(_LIVE).scroll_into_view_if_needed()
        first, face = _live_state(page), page.evaluate(_FACE_JS)
        assert "not computed yet" in first["status"] and not first["run_disabled"], first
        assert face["counts"] == [0, 0], face  # the figure's maps: nothing computed

        t0 = time.monotonic()
        _click(page, "Run 500 it (paper)")  # the other methods are cached: FAME at once
        t_first, last = _two_live_frames(page)
        t_first -= t0

        sigma = page.locator(f"{_LIVE} .fame-live-sigma .noUi-handle").first
        sigma.focus()
        t1 = time.monotonic()
        for _ in range(5):
            page.keyboard.press("ArrowRight")
        moved = _poll_live(
            page,
            lambda s: "σ 8.2" in s["title"] and "running" in s["status"],
            CONTROL_TIMEOUT_S,
            "σ moved during the run did not change the display",
        )
        t_sigma = time.monotonic() - t1
        assert moved["map"] != last

        t2 = time.monotonic()
        _click(page, "Stop")
        stopped = _poll_live(
            page, lambda s: "running" not in s["status"], CONTROL_TIMEOUT_S, "Stop did not end it"
        )
        t_stop = time.monotonic() - t2
        assert not stopped["run_disabled"] and stopped["stop_disabled"]
        assert "pending" in stopped["status"], stopped["status"]  # the controls ask for 500
        done = int(re.search(r"(\d+) it", stopped["title"]).group(1))
        assert 0 < done < 500, stopped["title"]
        face = _poll(  # the comparison: the stopped FAME at σ 8.2, no other method rerun
            page,
            lambda: (f := page.evaluate(_FACE_JS))["shown"] == [done, 8.2] and f,
            CONTROL_TIMEOUT_S,
            f"{name}: the comparison did not show the stopped FAME ({done} it) at σ 8.2",
        )
        assert face["counts"] == [1, 0], face
        page.wait_for_timeout(3000)
        after = _live_state(page)
        assert after["status"] == stopped["status"] and after["map"] == stopped["map"]
        _check_outputs(page, name)
        print(
            f"\nlatencies (notebook 03, {name}): first live frame {t_first:.2f} s after Run, "
            f"σ redraw during a run {t_sigma:.2f} s (5 key steps), Stop {t_stop:.2f} s "
            f"(stopped at {done} of 500 it)"
        )
        _screenshot(page, SCREENSHOTS / "03_face_explorer.png")
    finally:
        page.close()
        _shutdown_kernels(base, token, name)
