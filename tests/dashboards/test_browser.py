"""End to end: `twin dashboard` served on loopback, every page driven in Debian's headless
Chromium (Playwright with executable_path=/usr/bin/chromium); headings and charts render, no
exception text appears, and a screenshot of each page is saved.

Screenshots go to $TWIN_SCREENSHOTS when set, else to the test's temporary folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser_driver import CHROMIUM, PageCheck, browser, check_page, dashboard_server

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
    PageCheck("market", "Market", 3),
    PageCheck("ledger", "Ledger", 2),
    PageCheck("resilience", "Resilience", 3),
    PageCheck("hil", "Hardware in the loop", 3),
    PageCheck("sweep", "Sweep", 0, text="is a single run folder, not a sweep"),
]
SWEEP_CHECKS = [
    PageCheck("", "Sweep", 3),  # the default page of a sweep folder
    PageCheck("overview", "Run overview", 1),
    PageCheck("hil", "Hardware in the loop", 0, text="No hardware-in-the-loop data"),
]


def _shots(tmp_path: Path, name: str) -> Path:
    root = os.environ.get("TWIN_SCREENSHOTS")
    return (Path(root) if root else tmp_path) / name


def test_every_page_in_chromium_on_a_run(full_run, tmp_path):
    shots = _shots(tmp_path, "run")
    with dashboard_server(full_run) as url, browser() as ctx:
        results = [check_page(ctx, base_url=url, check=c, screenshot_dir=shots) for c in RUN_CHECKS]
    for r, c in zip(results, RUN_CHECKS, strict=True):
        assert r.charts >= c.min_charts
        assert r.screenshot is not None and r.screenshot.stat().st_size > 10_000


def test_sweep_pages_and_a_run_link_in_chromium(sweep, tmp_path):
    shots = _shots(tmp_path, "sweep")
    with dashboard_server(sweep) as url, browser() as ctx:
        for c in SWEEP_CHECKS:
            check_page(ctx, base_url=url, check=c, screenshot_dir=shots)
        # a run's link (?run=) opens that run's pages
        page = ctx.new_page()
        page.goto(f"{url}/overview?run=r0003")
        page.get_by_text("run r0003 of sweep").first.wait_for(timeout=30_000)
        page.close()
