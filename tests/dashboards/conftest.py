"""Fixture folders for the dashboard tests (built once per session, read-only afterwards)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))  # dashboard_fixtures, browser_driver

from dashboard_fixtures import make_compare, make_run, make_study, make_sweep


@pytest.fixture(scope="session")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run with every table: HIL, resilience and certificates included."""
    return make_run(tmp_path_factory.mktemp("dash") / "full", hil=True, resilience=True,
                    extras=True)


@pytest.fixture(scope="session")
def plain_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run as plain `twin run` writes it: no HIL, no resilience study."""
    return make_run(tmp_path_factory.mktemp("dash") / "plain")


@pytest.fixture(scope="session")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 runs (3 PV shares x 2 EV counts x 2 seeds), every 5th failed, 5 run folders."""
    return make_sweep(tmp_path_factory.mktemp("dash") / "sweep", run_folders=5, fail_every=5)


@pytest.fixture(scope="session")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A resilience study folder as `twin resilience --out` writes it (no manifest)."""
    return make_study(tmp_path_factory.mktemp("dash") / "study")


@pytest.fixture(scope="session")
def compare(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three scenarios compared (twin compare): two with run folders, one failed."""
    return make_compare(tmp_path_factory.mktemp("dash") / "compare")
