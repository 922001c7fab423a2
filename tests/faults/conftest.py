"""Fixtures for the fault tests on the reference ledger: the market tests' funded ledger."""

from tests.market.conftest import ledger  # noqa: F401  (the same fixture, defined once)
