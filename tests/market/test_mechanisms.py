"""Market mechanisms behind ``twin.market.mechanisms.match``: hand-checked small books."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests._orders import buy, sell
from twin.market.cda import continuous_double_auction
from twin.market.clearing import PricedFill, match_orders
from twin.market.mechanisms import match
from twin.market.reference import ReferenceLedger
from twin.market.types import Device, DeviceKind, Order, Side
from twin.market.units import payment

B, S = Side.BUY, Side.SELL


def book(*rows: tuple[Side, int, int]) -> list[Order]:
    """Orders 1, 2, ... (id = arrival order) of interval 0 from (side, Wh, price)."""
    return [
        Order(order_id=k, device_id=100 + k, owner=2, interval=0, side=side, energy_wh=wh,
              price_per_mwh=price)
        for k, (side, wh, price) in enumerate(rows, start=1)
    ]  # fmt: skip


def fills(*rows: tuple[int, int, int, int]) -> tuple[PricedFill, ...]:
    return tuple(
        PricedFill(buy_order_id=b, sell_order_id=s, energy_wh=q, price_per_mwh=p)
        for b, s, q, p in rows
    )


def test_cda_price_time_priority_and_pay_as_bid() -> None:
    orders = book(
        (S, 100, 50), (S, 100, 40), (S, 100, 40),  # asks; 2 and 3 tie on price, 2 is older
        (B, 250, 60),  # sweeps 2, then 3 (time priority), then half of 1, each at its price
        (B, 100, 45),  # below the best ask (1 @ 50): rests
        (S, 30, 45),  # meets the resting bid 5 at the bid's price
        (S, 200, 30),  # takes the rest of bid 5 at 45, its remainder 130 rests at 30
        (B, 20, 35),  # pays the resting ask's 30, not its own 35
    )  # fmt: skip
    res = match(orders, mechanism="cda")
    assert res.fills == fills(
        (4, 2, 100, 40), (4, 3, 100, 40), (4, 1, 50, 50), (5, 6, 30, 45), (5, 7, 70, 45),
        (8, 7, 20, 30),
    )  # fmt: skip
    assert res.volume_wh == 370
    # volume-weighted mean, floored: (4000 + 4000 + 2500 + 1350 + 3150 + 600) // 370
    assert res.price_per_mwh == 15600 // 370 == 42
    cda = continuous_double_auction(orders)
    assert cda.resting_asks == (7, 1)  # 7 @ 30 (110 Wh left) before 1 @ 50 (50 Wh left)
    assert cda.resting_bids == ()
    # hints: predecessor in the book when the remainder rested (0: head)
    assert [(s.order_id, s.fills, s.rested, s.hint) for s in cda.steps] == [
        (1, 0, True, 0), (2, 0, True, 0), (3, 0, True, 2), (4, 3, False, 0),
        (5, 0, True, 0), (6, 1, False, 0), (7, 1, True, 0), (8, 1, False, 0),
    ]  # fmt: skip


def test_cda_no_cross_and_empty_book() -> None:
    res = match(book((B, 100, 30), (S, 100, 40), (B, 50, 39)), mechanism="cda")
    assert res.fills == () and res.price_per_mwh == 0 and res.volume_wh == 0
    assert continuous_double_auction(book((B, 100, 30), (B, 50, 39))).resting_bids == (2, 1)
    assert match([], mechanism="cda").fills == ()


def test_cda_partial_fills_keep_the_remainder_resting() -> None:
    # a big resting bid is filled piecewise by later asks, always at its own price
    orders = book((B, 500, 70), (S, 120, 10), (S, 80, 69), (S, 400, 71), (S, 400, 60))
    res = match(orders, mechanism="cda")
    assert res.fills == fills((1, 2, 120, 70), (1, 3, 80, 70), (1, 5, 300, 70))
    cda = continuous_double_auction(orders)
    assert cda.resting_asks == (5, 4)  # 5 @ 60 keeps 100 Wh, ahead of 4 @ 71
    # equal prices on both sides cross; the resting side's price is the trade price
    assert match(book((S, 10, 55), (B, 10, 55)), mechanism="cda").fills == fills((2, 1, 10, 55))


def test_uniform_through_the_interface_is_match_orders() -> None:
    orders = book((B, 200, 120), (B, 150, 130), (S, 250, 90))
    res = match(orders)  # the default mechanism
    ref = match_orders(orders)
    assert res.price_per_mwh == ref.price_per_mwh == 105
    assert [(f.buy_order_id, f.sell_order_id, f.energy_wh) for f in res.fills] == [
        (f.buy_order_id, f.sell_order_id, f.energy_wh) for f in ref.fills
    ]
    assert {f.price_per_mwh for f in res.fills} == {105}


def test_unknown_mechanism_names_the_argument() -> None:
    with pytest.raises(ValueError, match="mechanism: unknown market mechanism 'vickrey'"):
        match([], mechanism="vickrey")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="mechanism"):
        ReferenceLedger(
            interval_s=900, retail_price_per_mwh=1, feed_in_price_per_mwh=0,
            mechanism="vickrey",  # type: ignore[arg-type]
        )  # fmt: skip


side_st = st.sampled_from([B, S])
rows_st = st.lists(
    st.tuples(side_st, st.integers(1, 400), st.integers(1, 12).map(lambda p: p * 10)),
    max_size=25,
)


@settings(max_examples=150, deadline=None)
@given(rows=rows_st)
def test_cda_invariants_on_random_books(rows: list[tuple[Side, int, int]]) -> None:
    orders = book(*rows)
    by_id = {o.order_id: o for o in orders}
    cda = continuous_double_auction(orders)
    filled = dict.fromkeys(by_id, 0)
    for f in cda.fills:
        b, s = by_id[f.buy_order_id], by_id[f.sell_order_id]
        assert b.side == B and s.side == S
        assert s.price_per_mwh <= f.price_per_mwh <= b.price_per_mwh
        assert f.price_per_mwh == by_id[min(b.order_id, s.order_id)].price_per_mwh  # resting
        filled[b.order_id] += f.energy_wh
        filled[s.order_id] += f.energy_wh
    assert all(filled[k] <= by_id[k].energy_wh for k in by_id)
    resting = set(cda.resting_bids) | set(cda.resting_asks)
    assert resting == {k for k in by_id if filled[k] < by_id[k].energy_wh}
    if cda.resting_bids and cda.resting_asks:  # the final book does not cross
        assert by_id[cda.resting_bids[0]].price_per_mwh < by_id[cda.resting_asks[0]].price_per_mwh
    assert sum(s.fills for s in cda.steps) == len(cda.fills)


def test_reference_ledger_cda_escrow_and_settlement_use_trade_prices() -> None:
    led = ReferenceLedger(
        interval_s=900, retail_price_per_mwh=250_000_000, feed_in_price_per_mwh=80_000_000,
        mechanism="cda",
    )  # fmt: skip
    for a in (2, 3, 4):
        led.register_device(
            Device(device_id=10 + a, owner=a, kind=DeviceKind.PV, bus=a, capacity_w=11_000)
        )
        led.deposit(a, 10_000_000)
    led.deposit(1, 5_000_000)
    led.place_orders([sell(14, 600, 80_000_000)])  # rests first
    led.place_orders([buy(12, 1000, 100_000_000), sell(13, 300, 95_000_000)])
    escrow = payment(1000, 100_000_000)
    assert led.balance(2).locked == escrow
    clearing = led.clear(0)
    # bid 2 pays the resting ask's 80 for 600 Wh; ask 3 meets the resting bid at its 100
    assert [(t.buy_order_id, t.sell_order_id, t.energy_wh, t.price_per_mwh)
            for t in clearing.trades] == [(2, 1, 600, 80_000_000), (2, 3, 300, 100_000_000)]  # fmt: skip
    kept = payment(600, 80_000_000) + payment(300, 100_000_000)
    assert led.balance(2).locked == kept  # the rest of the escrow (and 100 Wh unfilled) freed
    assert clearing.price_per_mwh == (600 * 80_000_000 + 300 * 100_000_000) // 900
    led.curtail(2, 200)  # curtailment releases at the trade's own price
    assert led.balance(2).locked == kept - payment(100, 100_000_000)
    rows = {r.device_id: r for r in led.settle(0, {12: 800, 13: -200, 14: -600})}
    assert rows[14].trade_amount == payment(600, 80_000_000)
    assert rows[13].trade_amount == payment(300, 100_000_000)  # curtailed 100 Wh paid by the DSO
    assert rows[12].trade_amount == -(payment(600, 80_000_000) + payment(200, 100_000_000))
    assert led.balance(2).locked == 0


@settings(max_examples=150, deadline=None)
@given(rows=st.lists(st.tuples(side_st, st.integers(1, 60), st.integers(1, 6).map(lambda p: p * 10)),
                     max_size=40), shuffle=st.randoms(use_true_random=False))
def test_uniform_column_walk_equals_the_order_by_order_walk(
        rows: list[tuple[Side, int, int]], shuffle: Any) -> None:
    """twin.market.clearing's column-wise walk (books of 64 orders and more) gives the very
    fills, ids and price of the walk order by order: ties of price, of running sums (a bid and
    an ask ending together) and of ids in any order."""
    import twin.market.clearing as clearing

    orders = book(*rows)
    shuffle.shuffle(orders)
    cols = clearing.book_columns(orders)
    assert cols is not None
    m = clearing.match_columns(*cols)
    old = clearing.COLUMNS_MIN
    try:
        clearing.COLUMNS_MIN = 10**9
        walk = match_orders(orders)
    finally:
        clearing.COLUMNS_MIN = old
    assert tuple(m.bid_ids.tolist()) == walk.bid_ids and tuple(m.ask_ids.tolist()) == walk.ask_ids
    assert list(zip(m.buy_ids.tolist(), m.sell_ids.tolist(), m.energy_wh.tolist(), strict=True)) \
        == [(f.buy_order_id, f.sell_order_id, f.energy_wh) for f in walk.fills]
    assert m.price_per_mwh == walk.price_per_mwh
