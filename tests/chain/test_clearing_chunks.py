"""Bounded clearing: an interval cleared in many ``clearChunk`` transactions equals the
reference clearing, and the interval is closed, unsettleable and exclusive meanwhile."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from tests.chain.conftest import FEED_IN, INTERVAL_S, RETAIL, setup_market
from twin.chain.chunks import plan_clearing, take_order
from twin.chain.ledger import ChainLedger
from twin.market import errors as e
from twin.market.clearing import match_orders, sort_book
from twin.market.reference import ReferenceLedger
from twin.market.types import OPERATOR_ACCOUNT, OrderIntent, Side

pytestmark = pytest.mark.chain


def _book(seed: int, interval: int, n: int) -> list[OrderIntent]:
    rng = np.random.default_rng(seed)
    side = {dev: Side(int(rng.integers(2))) for dev in range(12, 18)}
    return [
        OrderIntent(
            device_id=(dev := int(rng.integers(12, 18))),
            interval=interval,
            side=side[dev],
            energy_wh=int(rng.integers(1, 60)),
            price_per_mwh=int(rng.integers(90, 110)) * 1_000_000,
        )
        for _ in range(n)
    ]


def _chunk(
    led: ChainLedger, interval: int, bids: Sequence[int], asks: Sequence[int], m: int, n: int = 30
):
    b, a, _, _, done = led._provisional_market.functions.clearingProgress(interval).call()
    return led._transact(  # at the cursor's position (chunks may follow one that reverted)
        led.market, "clearChunk", [interval, n, b + a + done, list(bids), list(asks), m],
        sender=OPERATOR_ACCOUNT, purpose=f"clearChunk {interval}",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("seed", "chunk_orders", "chunk_trades"), [(1, 1, 1), (2, 4, 3), (3, 9, 50)]
)
def test_chunked_clearing_equals_reference(
    chain_ledger: ChainLedger, seed: int, chunk_orders: int, chunk_trades: int
) -> None:
    ref = setup_market(
        ReferenceLedger(
            interval_s=INTERVAL_S, retail_price_per_mwh=RETAIL, feed_in_price_per_mwh=FEED_IN
        )
    )
    book = _book(seed, 0, 60)
    assert chain_ledger.place_orders(book) == ref.place_orders(book)
    n_tx = len(chain_ledger.transactions)
    got = chain_ledger.clear(0, chunk_orders=chunk_orders, chunk_trades=chunk_trades)
    want = ref.clear(0)
    assert got == want and len(want.trades) > 3
    txs = chain_ledger.transactions[n_tx:]
    assert len(txs) >= 60 // chunk_orders and {t.function for t in txs} == {
        "EnergyMarket.clearChunk"
    }
    for a in range(8):
        assert chain_ledger.balance(a) == ref.balance(a)
    assert chain_ledger.trades(0) == ref.trades(0)
    assert chain_ledger.interval_status(0) == "cleared"
    assert chain_ledger.market.functions.clearingInterval().call() == 0


def test_interval_is_closed_and_exclusive_while_clearing(chain_ledger: ChainLedger) -> None:
    led = chain_ledger
    placed = led.place_orders(_book(5, 0, 30)) + led.place_orders(_book(6, 1, 4))
    orders0 = [o for o in placed if o.interval == 0]
    bids, asks = sort_book(orders0)
    result = match_orders(orders0)
    plan = plan_clearing(bids, asks, n_trades=len(result.fills), chunk_orders=5, chunk_trades=4)
    first = plan[0]
    led.wait_for_gate(0)  # no clearing path starts while the gate is open
    # A chunk bringing an id the walk does not reach yet is refused.
    takes = take_order(bids, asks)
    extra = next(oid for s, oid in takes[5:] if s == Side.BUY)
    with pytest.raises(e.BadOrderList):
        _chunk(led, 0, [*first.bid_ids, extra], first.ask_ids, 0)
    # A plan made before another order arrived cannot start (it could never complete).
    with pytest.raises(e.BookChanged) as changed:
        _chunk(led, 0, first.bid_ids, first.ask_ids, 0, n=29)
    assert changed.value.values == {"interval": 0, "planned": 29, "actual": 30}
    _chunk(led, 0, first.bid_ids, first.ask_ids, 0)
    assert led.interval_status(0) == "clearing"
    with pytest.raises(e.IntervalClosed):
        led.place_orders(_book(7, 0, 1))
    with pytest.raises(e.ClearingInProgress) as info:
        led.clear(1)
    assert info.value.values == {"interval": 0}
    with pytest.raises(e.NotCleared):
        led.settle(0, {})
    if led.market.functions.tradeCount().call() > 0:
        with pytest.raises(e.NotCleared):
            led.curtail(1, 0)
    with pytest.raises(e.AlreadyCleared):  # the one-shot form needs an open interval
        led.submit_clearing(0, bid_ids=result.bid_ids, ask_ids=result.ask_ids)
    for c in plan[1:]:
        _chunk(led, 0, c.bid_ids, c.ask_ids, c.max_trades)
    assert led.interval_status(0) == "cleared"
    assert [(t.buy_order_id, t.sell_order_id, t.energy_wh) for t in led.trades(0)] == [
        (f.buy_order_id, f.sell_order_id, f.energy_wh) for f in result.fills
    ]
    with pytest.raises(e.AlreadyCleared):
        _chunk(led, 0, [], [], 1)
    assert led.clear(1).interval == 1  # the lock is free again
