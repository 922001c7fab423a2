"""Order-book helpers shared by the market and chain tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from twin.market import errors as e
from twin.market.types import OrderIntent, Side


def buy(device: int, wh: int, price: int, interval: int = 0) -> OrderIntent:
    return OrderIntent(
        device_id=device, interval=interval, side=Side.BUY, energy_wh=wh, price_per_mwh=price
    )


def sell(device: int, wh: int, price: int, interval: int = 0) -> OrderIntent:
    return OrderIntent(
        device_id=device, interval=interval, side=Side.SELL, energy_wh=wh, price_per_mwh=price
    )


def cleared(led: Any) -> None:
    """Devices 12, 13 buy and 14 sells in interval 0, then it clears.

    Price 105 (micro-units x 1e6 per MWh); trades (13 <- 14, 1500 Wh), (12 <- 14, 1000 Wh).
    """
    led.place_orders(
        [buy(12, 2000, 120_000_000), buy(13, 1500, 130_000_000), sell(14, 2500, 90_000_000)]
    )
    led.clear(0)


def raises(error: type[e.MarketError], fn: Callable[[], object], **values: Any) -> e.MarketError:
    """``fn()`` raises ``error`` carrying exactly ``values``."""
    with pytest.raises(error) as info:
        fn()
    assert info.value.values == values
    return info.value
