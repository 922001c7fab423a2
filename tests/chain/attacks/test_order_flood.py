"""Attack of issue #19: a device floods an interval's book with 1 Wh orders (each placement
costs it little; the book, and the operator's clearing, grows with every order). A device
places at most ``MAX_ORDERS`` orders per interval, on a real node and in the reference
alike: the order beyond is refused (``TooManyOrders``), alone or inside a batch."""

from __future__ import annotations

import pytest

from tests._orders import buy
from tests.chain.conftest import Ledger
from twin.market import errors as e
from twin.market.units import MAX_ORDERS

pytestmark = pytest.mark.chain

DEVICE, OTHER, PRICE, K = 12, 13, 100_000_000, 2


def test_order_flood_is_capped_per_device_and_interval(ledger: Ledger) -> None:
    with pytest.raises(e.TooManyOrders) as caught:  # one batch of MAX_ORDERS + 1 tiny orders
        ledger.place_orders([buy(DEVICE, 1, PRICE, K)] * (MAX_ORDERS + 1))
    assert caught.value.values == {"device": DEVICE, "interval": K, "max_orders": MAX_ORDERS}
    placed = ledger.place_orders([buy(DEVICE, 1, PRICE, K)] * (MAX_ORDERS - 1))
    assert len(placed) == MAX_ORDERS - 1  # the refused batch left no count behind
    ledger.place_orders([buy(DEVICE, 1, PRICE, K)])
    with pytest.raises(e.TooManyOrders):
        ledger.place_orders([buy(DEVICE, 1, PRICE, K)])
    ledger.place_orders([buy(DEVICE, 1, PRICE, K + 1), buy(OTHER, 1, PRICE, K)])  # others unaffected
