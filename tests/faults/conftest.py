"""Fixtures for the pure-Python market tests."""

from __future__ import annotations

import pytest

from twin.market.reference import ReferenceLedger
from twin.market.types import Device, DeviceKind

INTERVAL_S = 900
RETAIL = 250_000_000  # 250 currency/MWh
FEED_IN = 80_000_000


@pytest.fixture
def ledger() -> ReferenceLedger:
    """Devices 10+a for accounts a = 2..7, each 11 kW (cap 2750 Wh per 15 min), funded."""
    led = ReferenceLedger(
        interval_s=INTERVAL_S, retail_price_per_mwh=RETAIL, feed_in_price_per_mwh=FEED_IN
    )
    for a in range(2, 8):
        led.register_device(
            Device(device_id=10 + a, owner=a, kind=DeviceKind.PV, bus=a, capacity_w=11_000)
        )
        led.deposit(a, 10_000_000)
    led.deposit(1, 5_000_000)
    return led
