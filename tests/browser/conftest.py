"""Headless-Chromium fixtures: serve the built book on loopback and open it with no network.

- `built_book`: the `_build/html` folder; built with `jupyter-book build` if `index.html` is
  missing (`make test` builds the book just before, so it is normally reused). The environment
  variable `QKLAB_BOOK_HTML` points the tests at another built book instead (never rebuilt), e.g.
  an older commit's build to show which tests it fails.
- `book_url`: the book served by `http.server` in a thread on 127.0.0.1.
- `browser`: Playwright driving the system Chromium (`/usr/bin/chromium`, installed with
  `apt-get install chromium`; never `playwright install`, which downloads a browser).
- `open_page(path)`: opens a page with every request to a host other than 127.0.0.1 aborted, and
  returns a `PageVisit` recording console errors, page errors, failed and blocked requests.
  The fixture `offline_tools` gives its two steps, `context(browser, width)` and `watch(page)`, to
  tests that keep one browser context and reuse it for many pages (`test_pages.py`).

Screenshots go to `ARTIFACTS`: `_build/browser-artifacts/` next to the book's `html` folder.

Test modules here set `pytestmark = pytest.mark.browser`. They are skipped, with the reason, when Chromium or
Playwright is missing, unless `QKLAB_REQUIRE_BROWSER=1` (set by `.ci/run`), where that is a
failure: CI must not pass by skipping the browser.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
BOOK = Path(os.environ["QKLAB_BOOK_HTML"]).resolve() if os.environ.get("QKLAB_BOOK_HTML") else ROOT / "_build" / "html"
ARTIFACTS = BOOK.parent / "browser-artifacts"
CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
LOCAL_HOSTS = {"127.0.0.1", "localhost"}


def _unavailable(reason: str):
    if os.environ.get("QKLAB_REQUIRE_BROWSER") == "1":
        pytest.fail(f"browser tests required (QKLAB_REQUIRE_BROWSER=1) but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def chromium_path() -> str:
    for candidate in (os.environ.get("QKLAB_CHROMIUM"), *CHROMIUM_CANDIDATES, shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    _unavailable("no Chromium found (apt-get install -y chromium, or set QKLAB_CHROMIUM)")


@pytest.fixture(scope="session")
def built_book() -> Path:
    if os.environ.get("QKLAB_BOOK_HTML"):
        if not (BOOK / "index.html").is_file():
            pytest.fail(f"QKLAB_BOOK_HTML={BOOK} holds no built book (no index.html)")
        return BOOK
    if not (BOOK / "index.html").is_file():
        jupyter_book = Path(sys.executable).with_name("jupyter-book")
        result = subprocess.run(
            [str(jupyter_book), "build", "-W", "-n", "--keep-going", str(ROOT)],
            cwd=ROOT, capture_output=True, text=True,
        )
        if result.returncode != 0:
            pytest.fail("building the book failed:\n" + result.stdout[-4000:] + result.stderr[-4000:])
    return BOOK


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="session")
def book_url(built_book: Path):
    handler = functools.partial(_QuietHandler, directory=str(built_book))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def browser(chromium_path: str):
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not importable (pip install playwright; no browser download needed)")
    # Playwright gives the browser a fresh temporary profile itself (it refuses --user-data-dir).
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium_path, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield browser
        finally:
            browser.close()


@dataclass
class PageVisit:
    """One page opened with the network cut off, and what went wrong on it."""

    page: object
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    failed_requests: list[str] = field(default_factory=list)
    blocked_requests: list[str] = field(default_factory=list)

    def problems(self) -> list[str]:
        return (
            [f"console error: {m}" for m in self.console_errors]
            + [f"page error: {m}" for m in self.page_errors]
            + [f"failed request: {m}" for m in self.failed_requests]
            + [f"non-local request (blocked): {m}" for m in self.blocked_requests]
        )

    def screenshot(self, name: str) -> Path:
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        path = ARTIFACTS / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


def offline_context(browser, width: int = 1280, height: int = 900):
    """A browser context of the given viewport in which every non-local request is aborted.

    Aborted requests are recorded by the page's `PageVisit` (see `watch`), through the context's
    `blocked` list, which `watch` points at the visit of the page it watches.
    """
    context = browser.new_context(viewport={"width": width, "height": height})
    context.blocked = []  # the current visit's list of aborted requests

    def route(route_obj):
        host = urlsplit(route_obj.request.url).hostname
        if route_obj.request.url.startswith(("data:", "blob:")) or host in LOCAL_HOSTS:
            route_obj.continue_()
        else:
            context.blocked.append(route_obj.request.url)
            route_obj.abort()

    context.route("**/*", route)
    return context


def watch(page) -> PageVisit:
    """Record what goes wrong on `page` from now on (console and page errors, failed requests)."""
    visit = PageVisit(page)
    page.context.blocked = visit.blocked_requests
    page.on("console", lambda msg: visit.console_errors.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda err: visit.page_errors.append(str(err)))

    def on_failed(request):
        if request.url not in visit.blocked_requests:
            visit.failed_requests.append(f"{request.url} ({request.failure})")

    page.on("requestfailed", on_failed)
    page.on(
        "response",
        lambda resp: visit.failed_requests.append(f"{resp.url} (HTTP {resp.status})") if resp.status >= 400 else None,
    )
    return visit


@pytest.fixture(scope="session")
def offline_tools() -> SimpleNamespace:
    """`context(browser, width, height)`: a context with the network cut; `watch(page)`: a PageVisit."""
    return SimpleNamespace(context=offline_context, watch=watch)


@pytest.fixture
def open_page(browser, book_url):
    contexts = []

    def _open(path: str, wait_until: str = "load") -> PageVisit:
        context = offline_context(browser)
        contexts.append(context)
        visit = watch(context.new_page())
        visit.page.goto(f"{book_url}/{path.lstrip('/')}", wait_until=wait_until)
        return visit

    yield _open
    for context in contexts:
        context.close()
