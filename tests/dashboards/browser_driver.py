"""Drive ``twin dashboard`` in Debian's headless Chromium (Playwright, never ``playwright
install``): start the server on a free loopback port, open each page, wait until its heading
and its charts (plotly or Vega-Lite) have rendered, check no exception is shown, take a screenshot.

Used by ``tests/dashboards/test_browser.py`` and ``bench/dashboard.py``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
REPO = Path(__file__).resolve().parents[2]
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage",
]
#: JS: the script run of the page has finished.
_SCRIPT_DONE = ("() => { const a = document.querySelector('[data-testid=\"stApp\"]');"
                " return a && a.getAttribute('data-test-script-state') === 'notRunning'; }")
#: CSS: every chart element, plotly or Vega-Lite.
_CHARTS = '[data-testid=\"stPlotlyChart\"], [data-testid=\"stVegaLiteChart\"]'
#: JS expression: charts drawn so far (plotly: its .main-svg layers; Vega-Lite: its canvas
#: or marks svg).
_DRAWN = (f"Array.from(document.querySelectorAll('{_CHARTS}'))"
          ".filter(e => e.querySelector('.main-svg, canvas, svg.marks')).length")
#: What a page shows when Streamlit caught an exception.
EXCEPTION_SELECTOR = '[data-testid="stException"]'


@dataclass(frozen=True)
class PageCheck:
    url_path: str  # st.Page url_path; "" for the default page (served at "/" only)
    heading: str  # the page's st.title
    min_charts: int  # plotly charts that must render
    text: str | None = None  # a text that must appear (e.g. a "no data" message)


@dataclass
class PageResult:
    url_path: str
    seconds: float
    charts: int
    screenshot: Path | None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def dashboard_server(folder: Path, *, port: int | None = None,
                     timeout_s: float = 60.0) -> Iterator[str]:
    """``twin dashboard FOLDER`` on a free loopback port; yields its base URL; stops it."""
    port = port or free_port()
    twin = Path(sys.executable).with_name("twin")
    cmd = [str(twin), "dashboard", str(folder), "--port", str(port), "--host", "127.0.0.1"]
    log = tempfile.TemporaryFile()
    env = os.environ.copy() | {"STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                            cwd=REPO, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"twin dashboard exited with {proc.returncode}:\n"
                                   f"{log.read().decode(errors='replace')[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"twin dashboard not healthy on {url} after {timeout_s} s")
            time.sleep(0.2)
        yield url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)  # twin and its streamlit child
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Headless /usr/bin/chromium under Playwright, launched once for many contexts."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@contextlib.contextmanager
def context(chrome: Any, *, width: int = 1400, height: int = 1800) -> Iterator[Any]:
    """A fresh browser context (its own cookies and storage) of a running :func:`chromium`,
    loopback requests only."""
    ctx = chrome.new_context(viewport={"width": width, "height": height})
    ctx.route("**/*", lambda route: route.continue_()
              if route.request.url.startswith(("http://127.0.0.1", "data:", "blob:"))
              else route.abort())  # loopback only
    try:
        yield ctx
    finally:
        ctx.close()


@contextlib.contextmanager
def browser(*, width: int = 1400, height: int = 1800) -> Iterator[Any]:
    """A browser context on its own /usr/bin/chromium (stopped afterwards)."""
    with chromium() as chrome, context(chrome, width=width, height=height) as ctx:
        yield ctx


def check_page(ctx: Any, *, base_url: str, check: PageCheck, query: str = "",
               screenshot_dir: Path | None = None, timeout_s: float = 30.0) -> PageResult:
    """Open one page in a new tab; seconds until heading and charts are drawn (first render)."""
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        t0 = time.perf_counter()
        page.goto(f"{base_url}/{check.url_path}{query}", wait_until="domcontentloaded",
                  timeout=timeout_s * 1000)
        page.get_by_role("heading", name=check.heading, exact=True).first.wait_for(
            timeout=timeout_s * 1000)
        # the script run has finished (stApp's script state), then every chart is drawn
        page.wait_for_function(_SCRIPT_DONE, timeout=timeout_s * 1000)
        if check.min_charts:
            page.wait_for_function(f"n => ({_DRAWN}) >= n", arg=check.min_charts,
                                   timeout=timeout_s * 1000)
        page.wait_for_function(f"() => ({_DRAWN}) === document.querySelectorAll("
                               f"'{_CHARTS}').length",
                               timeout=timeout_s * 1000)
        if check.text:
            page.get_by_text(check.text).first.wait_for(timeout=timeout_s * 1000)
        seconds = time.perf_counter() - t0
        charts = page.evaluate(f"() => {_DRAWN}")
        shown = page.locator(EXCEPTION_SELECTOR).count()
        body = page.inner_text("body")
        shot = None
        if screenshot_dir is not None:
            screenshot_dir.mkdir(parents=True, exist_ok=True)
            shot = screenshot_dir / f"{check.heading.lower().replace(' ', '_')}.png"
            page.screenshot(path=str(shot))  # Streamlit scrolls inside its own container
        if shown or "Traceback" in body or "Page not found" in body:
            raise AssertionError(f"{check.url_path}: the page shows an exception:\n{body[:2000]}")
        if errors:
            raise AssertionError(f"{check.url_path}: JavaScript errors: {errors}")
        return PageResult(url_path=check.url_path, seconds=seconds, charts=charts, screenshot=shot)
    finally:
        page.close()
