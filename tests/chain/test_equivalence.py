"""Property: on random order books the contracts equal the reference ledger — order for
order, trade for trade, error for error, token for token — through clearing, curtailment
and settlement (hypothesis, real Anvil, one snapshot per example)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.chain._helpers import PARAMS, both, module_ledger, reverted
from twin.chain.anvil import AnvilNode
from twin.chain.compile import CompiledContracts
from twin.chain.ledger import ChainLedger
from twin.market.ledger import Ledger
from twin.market.reference import ReferenceLedger
from twin.market.types import Device, DeviceKind, OrderIntent, Side

pytestmark = pytest.mark.chain

CAPACITY_W = {
    20: 11_000,
    21: 7_000,
    22: 3_000,
    23: 20_000,
    24: 5_000,
    25: 11_000,
    26: 4_000,
    27: 9_000,
}
OWNER = {20: 2, 21: 3, 22: 4, 23: 5, 24: 6, 25: 2, 26: 3, 27: 7}
ACCOUNTS = range(8)
PRICES = [40_000_000, 80_000_000, 100_000_000, 120_000_000, 150_000_000]


def _base(led: Ledger) -> None:
    for dev, cap in CAPACITY_W.items():
        led.register_device(
            Device(
                device_id=dev, owner=OWNER[dev], kind=DeviceKind(dev % 5), bus=dev, capacity_w=cap
            )
        )
    for a in ACCOUNTS:  # every account approves the market once (chain) and holds a little
        led.deposit(a, 100_000)


@pytest.fixture(scope="module")
def base(anvil: AnvilNode, compiled: CompiledContracts) -> Iterator[tuple[AnvilNode, ChainLedger]]:
    yield from module_ledger(anvil, compiled, setup=_base)


def _assert_same_state(ref: ReferenceLedger, led: ChainLedger, intervals: range) -> None:
    for a in ACCOUNTS:
        assert led.balance(a) == ref.balance(a), a
        assert led.wallet(a) == ref.wallet(a), a
    assert (
        led.total_supply()
        == ref.total_supply()
        == led.market_holdings() + sum(led.wallet(a) for a in ACCOUNTS)
    )
    for i in intervals:
        assert led.orders(i) == ref.orders(i)
        assert led.trades(i) == ref.trades(i)
        assert led.interval_status(i) == ref.interval_status(i)


@st.composite
def _book(draw: st.DrawFn) -> list[list[OrderIntent]]:
    """Batches of intents: mostly valid (each device keeps one side), a few rule breakers."""
    sides = {dev: draw(st.sampled_from(list(Side))) for dev in CAPACITY_W}
    batches = []
    for _ in range(draw(st.integers(1, 4))):
        batch = []
        n = draw(st.integers(1, 12))
        wild_at = draw(st.integers(0, 4 * n))  # about one batch in five has a rule breaker
        for k in range(n):
            dev = draw(st.sampled_from(list(CAPACITY_W)))
            wild = k == wild_at
            batch.append(
                OrderIntent(
                    device_id=dev,
                    interval=draw(st.integers(0, 1)),
                    side=draw(st.sampled_from(list(Side))) if wild else sides[dev],
                    energy_wh=draw(st.integers(-2, 6000) if wild else st.integers(1, 400)),
                    price_per_mwh=draw(
                        st.one_of(st.sampled_from(PRICES), st.integers(1, 200_000_000))
                    ),
                )
            )
        batches.append(batch)
    return batches


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    deposits=st.lists(st.integers(0, 1_000_000), min_size=len(ACCOUNTS), max_size=len(ACCOUNTS)),
    batches=_book(),
    data=st.data(),
)
def test_random_books_match_reference(
    base: tuple[AnvilNode, ChainLedger],
    deposits: list[int],
    batches: list[list[OrderIntent]],
    data: st.DataObject,
) -> None:
    anvil, led = base
    with reverted(anvil):
        ref = ReferenceLedger(**PARAMS)
        _base(ref)
        for a, amount in zip(ACCOUNTS, deposits, strict=True):
            if amount:
                both(
                    lambda a=a, amount=amount: ref.deposit(a, amount),
                    lambda a=a, amount=amount: led.deposit(a, amount),
                )
        for batch in batches:
            both(lambda b=batch: ref.place_orders(b), lambda b=batch: led.place_orders(b))
        # Small chunks force several clearChunk transactions (bounded clearing): the result
        # must not depend on where the book is cut.
        chunk = data.draw(st.sampled_from([None, 1, 2, 3, 7]), label="clear chunk orders")
        per_call = data.draw(st.sampled_from([None, 1, 2, 5]), label="clear chunk trades")
        for i in (0, 1):
            both(
                lambda i=i: ref.clear(i),
                lambda i=i: led.clear(i, chunk_orders=chunk, chunk_trades=per_call),
            )
        trades = ref.trades(0) + ref.trades(1)
        event(f"trades: {min(len(trades), 5)}+")
        event(f"orders: {min(len(ref.orders(0) + ref.orders(1)) // 5 * 5, 20)}+")
        for t in (
            data.draw(st.lists(st.sampled_from(trades), unique=True), label="curtail")
            if trades
            else []
        ):
            wh = data.draw(st.integers(0, t.energy_wh + 1), label=f"trade {t.trade_id} Wh")
            both(
                lambda t=t, wh=wh: ref.curtail(t.trade_id, wh),
                lambda t=t, wh=wh: led.curtail(t.trade_id, wh),
            )
        for i in (0, 1):
            metered: dict[int, Any] = {}
            for dev in CAPACITY_W:
                if data.draw(st.booleans(), label=f"meter {dev}@{i}"):
                    metered[dev] = data.draw(st.integers(-4000, 4000), label=f"reading {dev}@{i}")
            if data.draw(st.integers(0, 9), label="complete readings") > 0:  # usually
                for t in ref.trades(i):
                    metered.setdefault(t.buyer_device, t.energy_wh)
                    metered.setdefault(t.seller_device, -t.energy_wh)
            both(lambda i=i, m=metered: ref.settle(i, m), lambda i=i, m=metered: led.settle(i, m))
        _assert_same_state(ref, led, range(2))
