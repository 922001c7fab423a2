"""End to end: `twin dashboard` served on loopback, every page driven in Debian's headless
Chromium (Playwright with executable_path=/usr/bin/chromium); headings and charts render, no
exception text appears, and a screenshot of each page is saved.

Screenshots go to $TWIN_SCREENSHOTS when set, else to the test's temporary folder. One
Chromium serves the module (a fresh context, i.e. fresh cookies and storage, per test) and one
`twin dashboard` server the two tests of the run folder.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from browser_driver import (
    CHROMIUM,
    EXCEPTION_SELECTOR,
    PageCheck,
    check_page,
    chromium,
    context,
    dashboard_server,
)

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not CHROMIUM.is_file(),
                       reason="/usr/bin/chromium missing (apt-get install chromium; .ci/run does)"),
    pytest.mark.timeout(300),
]
pytest.importorskip("playwright", reason="playwright not installed (it is in requirements.lock)")

RUN_CHECKS = [
    PageCheck("", "Run overview", 1),  # the default page of a run folder
    PageCheck("feeder", "Feeder", 3),
    PageCheck("market", "Market", 1),  # lazy tabs: the first tab's chart
    PageCheck("ledger", "Ledger", 1),  # lazy tabs: the first tab's chart
    PageCheck("resilience", "Resilience", 3),
    PageCheck("hil", "Hardware in the loop", 3),
    PageCheck("sweep", "Sweep", 0, text="is a single run folder, not a sweep"),
    PageCheck("compare", "Compare", 0, text="is not a comparison folder"),
]
SWEEP_CHECKS = [
    PageCheck("", "Sweep", 3),  # the default page of a sweep folder
    PageCheck("overview", "Run overview", 1),
    PageCheck("hil", "Hardware in the loop", 0, text="No hardware-in-the-loop data"),
]


def _shots(tmp_path: Path, name: str) -> Path:
    root = os.environ.get("TWIN_SCREENSHOTS")
    return (Path(root) if root else tmp_path) / name


COMPARE_CHECKS = [
    PageCheck("", "Compare", 1, text="KPIs side by side"),  # the default page of a comparison
    PageCheck("ledger", "Ledger", 1),
    PageCheck("sweep", "Sweep", 0, text="not a sweep: the Compare page"),
]


@pytest.fixture(scope="module")
def chrome() -> Iterator[Any]:
    with chromium() as b:
        yield b


@pytest.fixture
def ctx(chrome: Any) -> Iterator[Any]:
    with context(chrome) as c:
        yield c


@pytest.fixture(scope="module")
def run_url(full_run: Path) -> Iterator[str]:
    with dashboard_server(full_run) as url:
        yield url


def test_every_page_in_chromium_on_a_run(run_url, ctx, tmp_path):
    shots = _shots(tmp_path, "run")
    results = [check_page(ctx, base_url=run_url, check=c, screenshot_dir=shots) for c in RUN_CHECKS]
    for r, c in zip(results, RUN_CHECKS, strict=True):
        assert r.charts >= c.min_charts
        assert r.screenshot is not None and r.screenshot.stat().st_size > 10_000


def test_ledger_tabs_in_chromium(run_url, ctx, tmp_path):
    """The lazy ledger tabs draw their charts when clicked, with no exception."""
    page = ctx.new_page()
    page.goto(f"{run_url}/ledger")
    for label, text in (("Certificates", "Certificates issued"),
                        ("Demand response", "Payouts per participant"),
                        ("Tokenized assets", "Claims by holders")):
        page.get_by_role("tab", name=label).click()
        page.get_by_text(text).first.wait_for(timeout=30_000)
        page.wait_for_function("() => document.querySelectorAll("
                               "'[data-testid=\"stVegaLiteChart\"] canvas, "
                               "[data-testid=\"stVegaLiteChart\"] svg.marks').length >= 1",
                               timeout=30_000)
        assert page.locator(EXCEPTION_SELECTOR).count() == 0
    shots = _shots(tmp_path, "run")
    shots.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shots / "ledger_assets.png"))
    page.close()


def test_compare_pages_and_a_run_link_in_chromium(compare, ctx, tmp_path):
    shots = _shots(tmp_path, "compare")
    with dashboard_server(compare) as url:
        for c in COMPARE_CHECKS:
            check_page(ctx, base_url=url, check=c, screenshot_dir=shots)
        page = ctx.new_page()
        page.goto(f"{url}/market?run=cda%20market")  # a scenario's link opens its pages
        page.get_by_text("run cda market of comparison").first.wait_for(timeout=30_000)
        page.close()


def test_sweep_pages_and_a_run_link_in_chromium(sweep, ctx, tmp_path):
    shots = _shots(tmp_path, "sweep")
    with dashboard_server(sweep) as url:
        for c in SWEEP_CHECKS:
            check_page(ctx, base_url=url, check=c, screenshot_dir=shots)
        # a run's link (?run=) opens that run's pages
        page = ctx.new_page()
        page.goto(f"{url}/overview?run=r0003")
        page.get_by_text("run r0003 of sweep").first.wait_for(timeout=30_000)
        page.close()
