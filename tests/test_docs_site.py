"""The built documentation site (``make docs`` -> build/docs/) in headless Chromium (issue 22).

Serves ``build/docs/`` on a local port and opens the home page, every notebook's page and the
API index as a reader would. On each page: every image has loaded, every link inside the site
points to a page that exists and, with ``#anchor``, to an element with that id there; no
request fails or leaves the machine (the site is offline); the figures are laid out visibly
(notebook pages: at least one output figure); the math is rendered (MathML boxes with a
size). A screenshot of each page goes to ``build/docs-screens/``.

Needs the site: without ``build/docs/index.html`` the test skips (run ``make docs``), except
with ``FAME_DOCS_REQUIRED=1`` (``.ci/run`` sets it after ``make docs``), where it fails.
Browser set-up as in tests/test_browser.py (Debian's Chromium driven by Playwright).
"""

from __future__ import annotations

import functools
import os
import re
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from test_browser import CHROMIUM_ARGS, _chromium, _require_browser
from test_notebooks import ROOT, notebooks

pytestmark = [pytest.mark.browser, pytest.mark.slow]

SITE = ROOT / "build" / "docs"
SCREENSHOTS = ROOT / "build" / "docs-screens"
VIEWPORT = {"width": 1400, "height": 900}
# the home page, the Markdown pages, every notebook's page and the API index
TEXT_PAGES = ["guide", "recipes", "models", "reproducibility", "performance", "cli"]
PAGES = [
    "index.html",
    *(f"{name}.html" for name in TEXT_PAGES),
    *(f"notebooks/{p.stem}.html" for p in notebooks()),
    "api.html",
]

# what the open page shows, measured in the browser
_PAGE_JS = """() => {
    const visible = el => {
        const r = el.getBoundingClientRect(), s = getComputedStyle(el);
        return r.width > 50 && r.height > 50 && s.visibility !== 'hidden' && s.display !== 'none'
            && el.closest('[hidden]') === null;
    };
    const imgs = [...document.querySelectorAll('article img')];
    return {
        broken: imgs.filter(im => !(im.complete && im.naturalWidth > 0)).map(im => im.src),
        figures: imgs.filter(im => im.complete && im.naturalWidth > 0 && visible(im)).length,
        outputs: [...document.querySelectorAll('article .cell_output img')]
            .filter(im => im.naturalWidth > 0 && visible(im)).length,
        math: [...document.querySelectorAll('article math')].map(m => {
            const r = m.getBoundingClientRect();
            return [r.width, r.height];
        }),
        links: [...document.querySelectorAll('a[href]')].map(a => a.href),
        height: document.documentElement.scrollHeight,
    };
}"""


def _site_required() -> None:
    if not (SITE / "index.html").exists():
        message = f"no built site in {SITE}: run `make docs` first"
        if os.environ.get("FAME_DOCS_REQUIRED") == "1":
            pytest.fail(message + " (FAME_DOCS_REQUIRED=1)")
        pytest.skip(message)


@functools.cache
def _ids(path: Path) -> frozenset[str]:
    """The element ids (and a names) in one HTML file of the site."""
    html = path.read_text(encoding="utf-8")
    return frozenset(re.findall(r'\s(?:id|name)="([^"]+)"', html))


def _link_problem(href: str, base: str) -> str | None:
    """Why ``href`` (absolute, from the page) is broken inside the site, or None."""
    if not href.startswith(base):
        return None  # outside the site (e.g. the theme's credit): not ours to check
    parts = urlsplit(href)
    rel = unquote(parts.path).lstrip("/") or "index.html"
    target = SITE / rel
    if target.is_dir():
        target = target / "index.html"
    if not target.exists():
        return f"{href}: no file {target.relative_to(SITE)}"
    if parts.fragment and target.suffix == ".html" and unquote(parts.fragment) not in _ids(target):
        return f"{href}: no element with id {parts.fragment!r} in {target.relative_to(SITE)}"
    return None


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def site():
    """``build/docs`` over HTTP on a free local port; yields the base URL."""
    _site_required()
    _require_browser()
    handler = functools.partial(_QuietHandler, directory=str(SITE))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser(site):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=_chromium(), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def test_every_notebook_has_a_page():
    _site_required()
    missing = [p for p in PAGES if not (SITE / p).exists()]
    assert not missing, f"pages missing from {SITE} (rebuild with `make docs`): {missing}"


@pytest.mark.parametrize("page_path", PAGES)
def test_page_in_chromium(page_path, site, browser):
    if not (SITE / page_path).exists():
        pytest.fail(f"{page_path} is not in {SITE}: rebuild with `make docs`")
    page = browser.new_page(viewport=dict(VIEWPORT))
    failed, remote = [], []
    page.on("requestfailed", lambda r: failed.append(f"{r.url} ({r.failure})"))
    page.on(  # the browser's own favicon probe is not something a page asks for
        "response",
        lambda r: (
            r.status >= 400
            and not r.url.endswith("/favicon.ico")
            and failed.append(f"{r.url} (HTTP {r.status})")
        ),
    )
    page.on("request", lambda r: not r.url.startswith((site, "data:")) and remote.append(r.url))
    try:
        response = page.goto(site + page_path, wait_until="load")
        assert response is not None and response.ok, f"{page_path}: {response and response.status}"
        page.wait_for_load_state("networkidle")
        shown = page.evaluate(_PAGE_JS)
        height = min(shown["height"], 12000)  # Chromium's texture limit, with a margin
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(
            path=str(SCREENSHOTS / page_path.replace("/", "_").replace(".html", ".png")),
            full_page=True,
            clip={"x": 0, "y": 0, "width": VIEWPORT["width"], "height": height},
        )
    finally:
        page.close()
    assert not remote, f"{page_path} requests resources outside the site (offline): {remote}"
    assert not failed, f"{page_path}: requests failed: {failed}"
    assert not shown["broken"], f"{page_path}: images that did not load: {shown['broken']}"
    broken = sorted({p for h in shown["links"] if (p := _link_problem(h, site))})
    assert not broken, f"{page_path}: broken links or anchors:\n" + "\n".join(broken)
    if page_path == "index.html":
        assert shown["figures"] >= 1, "the home page shows no figure"
    if page_path.startswith("notebooks/"):
        assert shown["outputs"] >= 1, f"{page_path}: no rendered output figure is visible"
    if page_path in ("index.html", "api.html"):
        assert shown["math"], f"{page_path}: no MathML equation on the page"
        flat = [m for m in shown["math"] if m[0] < 1 or m[1] < 1]
        assert not flat, f"{page_path}: equations laid out with no size: {flat}"
