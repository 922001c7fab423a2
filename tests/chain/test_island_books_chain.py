"""Island books on chain (library IslandBooks behind EnergyMarket's fallback), on a real Anvil
node: a fixed island schedule (the feeder split into two or three books for some intervals,
devices without supply left out) clears, curtails and settles to the reference ledger's
trades, prices and books; every order must be in exactly one sorted book."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.chain._helpers import (
    FEED_IN,
    INTERVAL_S,
    RETAIL,
    mapping_slot,
    slot_constants,
    storage_word,
)
from twin.chain.ledger import ChainLedger
from twin.market.device_signers import DeviceSigners
from twin.market.errors import BadOrderList
from twin.market.reference import ReferenceLedger
from twin.market.step import Curtailment, MarketLog, MarketStep
from twin.market.types import Device, DeviceKind, OrderIntent, Side

pytestmark = pytest.mark.chain

DEVICES = {10 + k: 2 + k % 6 for k in range(9)}  # device -> owner
ACCOUNTS = range(0, 8)
SEED = 11
N = 5
#: interval -> device -> island book (None: the feeder is whole); 18 has no supply in 2 and 3
SCHEDULE: dict[int, dict[int, int] | None] = {
    1: None,
    2: {d: (0 if d < 13 else 1 if d < 16 else 2) for d in DEVICES if d != 18},
    3: {d: (0 if d % 2 else 1) for d in DEVICES if d != 18},
    4: {d: 0 for d in DEVICES},  # one book: no split
    5: None,
}


def _setup(led: Any, signers: DeviceSigners) -> int:
    for d, owner in DEVICES.items():
        led.register_device(Device(device_id=d, owner=owner, kind=DeviceKind.PV, bus=0,
                                   capacity_w=20_000))
    for a in range(1, 8):
        led.deposit(a, 10**12)
    signers.bind(led)
    return 7 * 10**12


def _run(led: Any) -> dict[str, list[dict]]:
    """``N`` market steps of seeded orders, island books, curtailments and readings."""
    rng = np.random.default_rng(SEED)
    signers = DeviceSigners(seed=SEED, device_ids=DEVICES)
    _setup(led, signers)
    step = MarketStep(ledger=led, interval_s=INTERVAL_S, n_intervals=N + 1, log=MarketLog(),
                      signers=signers)
    rows: dict[str, list[dict]] = {"trades": [], "island_market": [], "settlements": [],
                                   "clearings": []}
    last: list[Any] = []
    for k in range(N):
        metered = {d: int(rng.integers(-4000, 4000)) for d in DEVICES}
        side = {d: Side(int(rng.integers(0, 2))) for d in DEVICES}  # one side per device
        orders = [OrderIntent(device_id=d, interval=k + 1, side=side[d],
                              energy_wh=int(rng.integers(1, 3000)),
                              price_per_mwh=int(rng.integers(50, 250) + 100 * (side[d] == Side.BUY))
                              * 1_000_000)
                  for d in DEVICES for _ in range(int(rng.integers(1, 3)))]
        cut = [Curtailment(trade_id=t.trade_id, energy_wh=t.energy_wh // 2) for t in last[::2]]
        res = step.step(k, orders_interval=k + 1, orders=orders, curtailments=cut,
                        metered_wh=metered, metered_interval=k, books=SCHEDULE[k + 1])
        last = res.trades
        rows["trades"] += [{"id": t.trade_id, "b": t.buy_order_id, "s": t.sell_order_id,
                            "wh": t.energy_wh, "p": t.price_per_mwh} for t in res.trades]
        for t in rows:
            if t != "trades":
                rows[t] += [{c: v for c, v in r.items() if c != "time_s"} for r in res.rows.get(t, [])]
    return rows


def _books(led: Any) -> list[tuple[int, int, int]]:
    return [(led.balance(a).free, led.balance(a).locked, led.balance(a).debt) for a in ACCOUNTS]


def test_island_books_on_chain_equal_the_reference_ledger(deploy: Callable[..., ChainLedger]) -> None:
    chain = deploy()
    got = _run(chain)
    ref = ReferenceLedger(interval_s=INTERVAL_S, retail_price_per_mwh=RETAIL, feed_in_price_per_mwh=FEED_IN)
    want = _run(ref)
    islands = [r for r in want["island_market"] if r["interval"] in (2, 3)]
    assert len({r["island"] for r in islands if r["interval"] == 2}) == 3
    assert len({(r["interval"], r["price_per_mwh"]) for r in islands if r["trades"]}) >= 3, \
        "the schedule must clear islands at different prices"
    assert got == want
    assert _books(chain) == _books(ref)
    assert chain.total_supply() == 7 * 10**12


def test_clear_books_refuses_an_order_in_two_books_or_none(deploy: Callable[..., ChainLedger]) -> None:
    chain = deploy()
    signers = DeviceSigners(seed=SEED, device_ids=DEVICES)
    _setup(chain, signers)
    chain.place_signed_orders(signers.sign_orders(
        [OrderIntent(device_id=10, interval=1, side=Side.BUY, energy_wh=1000, price_per_mwh=200_000_000),
         OrderIntent(device_id=11, interval=1, side=Side.SELL, energy_wh=1000, price_per_mwh=100_000_000),
         OrderIntent(device_id=12, interval=1, side=Side.SELL, energy_wh=1000, price_per_mwh=150_000_000)],
        domain=chain.domain))
    chain.wait_for_gate(1)
    pm = chain._provisional_market
    for n_bids, n_asks, bids, asks in (
            ([1, 0], [1, 1], [1], [2, 2]),  # ask 2 in both books
            ([1, 0], [1, 0], [1], [2]),  # ask 3 in no book
            ([1], [2], [1], [3, 2])):  # not sorted
        with pytest.raises(BadOrderList):
            chain._transact(pm, "clearBooks", [1, n_bids, n_asks, bids, asks], sender=0, purpose="test")
    chain.set_books(1, {10: 0, 11: 0, 12: 1})
    c = chain.clear(interval=1)
    assert [(t.seller_device, t.price_per_mwh) for t in c.trades] == [(11, 150_000_000)]


def test_island_books_slot_constants_match_energy_markets_storage(
        deploy: Callable[..., ChainLedger]) -> None:
    """IslandBooks reaches the market's storage by slot number (MarketSlots): each constant must hold what
    EnergyMarket's getter of that variable reads."""
    slot = slot_constants("MarketSlots.sol")
    chain = deploy()
    signers = DeviceSigners(seed=SEED, device_ids=DEVICES)
    _setup(chain, signers)
    chain.place_signed_orders(signers.sign_orders(
        [OrderIntent(device_id=10, interval=1, side=Side.BUY, energy_wh=1000, price_per_mwh=200_000_000),
         OrderIntent(device_id=11, interval=1, side=Side.SELL, energy_wh=1000, price_per_mwh=100_000_000)],
        domain=chain.domain))
    chain.set_books(1, {10: 0, 11: 0})
    chain.clear(interval=1)
    m, at = chain.market, mapping_slot

    def word(s: int) -> int:
        return storage_word(chain.w3, m.address, s)

    assert word(slot["TRADE_COUNT"]) == m.functions.tradeCount().call() == 1
    assert word(slot["CLEARING_INTERVAL"]) == m.functions.clearingInterval().call() == 0
    assert word(slot["MECHANISM"]) & 0xFF == m.functions.mechanism().call()
    owner = chain.address_of(DEVICES[11])
    assert word(at(int(owner, 16), slot["ACCOUNTS"])) == m.functions.accounts(owner).call()[0]
    # two orders a slot (OrderWords): order 1 the high half of pair 0, order 2 the low half of pair 1;
    # device | interval << 30 | side << 58 | energyWh << 59 | price << 91
    assert word(at(0, slot["ORDERS"])) == (10 | 1 << 30 | 0 << 58 | 1000 << 59 | 200_000_000 << 91) << 128
    assert word(at(1, slot["ORDERS"])) == 11 | 1 << 30 | 1 << 58 | 1000 << 59 | 100_000_000 << 91
    orders = chain._provisional_market.functions.orders  # behind the market's fallback
    assert orders(1).call() == [10, 1, 0, 1000, 200_000_000] and orders(2).call() == [11, 1, 1, 1000, 100_000_000]
    assert word(at(10, slot["DEVICE_OWNERS"])) & (2**160 - 1) == int(chain.address_of(DEVICES[10]), 16)
    assert word(at(1, slot["TRADES"])) == 1 | 2 << 64 | 1000 << 128 | 1000 << 192
    assert word(at(1, slot["INTERVALS"])) & 0xFF == m.functions.intervals(1).call()[0] == 1
    assert word(at(10, at(1, slot["POSITIONS"]))) & (2**96 - 1) == 1000
