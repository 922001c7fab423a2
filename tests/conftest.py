"""Test-session set-up shared by every test package."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    """Run the tests under the twin command's runtime set-up (numba work-queue layer, malloc tuning)."""
    from twin.runtime import configure

    configure()
