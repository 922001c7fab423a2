"""Rules of the reference ledger: clearing, escrow, curtailment, settlement, every error."""

from __future__ import annotations

import pytest

from tests._orders import buy, sell
from tests._orders import cleared as _cleared
from twin.market import errors as e
from twin.market.clearing import match_orders
from twin.market.reference import ReferenceLedger
from twin.market.types import DSO_ACCOUNT, Balance, Device, DeviceKind, Order, OrderIntent, Side
from twin.market.units import PRICE_MAX, payment

RETAIL = 250_000_000  # as in conftest.py
FEED_IN = 80_000_000




def _o(oid: int, side: Side, wh: int, price: int) -> Order:
    return Order(
        order_id=oid,
        device_id=oid,
        owner=2,
        interval=0,
        side=side,
        energy_wh=wh,
        price_per_mwh=price,
    )


# --- clearing (pure) -------------------------------------------------------------------
def test_match_orders_hand_example() -> None:
    book = [
        _o(1, Side.BUY, 2000, 120), _o(2, Side.BUY, 1500, 130), _o(3, Side.BUY, 500, 130),
        _o(4, Side.SELL, 2500, 90), _o(5, Side.SELL, 1000, 125), _o(6, Side.SELL, 700, 90),
    ]  # fmt: skip
    r = match_orders(book)
    assert r.bid_ids == (2, 3, 1)  # price desc, id asc
    assert r.ask_ids == (4, 6, 5)  # price asc, id asc
    assert [(f.buy_order_id, f.sell_order_id, f.energy_wh) for f in r.fills] == [
        (2, 4, 1500),
        (3, 4, 500),
        (1, 4, 500),
        (1, 6, 700),
    ]  # bid 1 (120) vs ask 5 (125) stops
    assert r.price_per_mwh == (120 + 90) // 2
    assert r.volume_wh == 3200


def test_match_orders_no_cross_and_empty() -> None:
    assert match_orders([]).price_per_mwh == 0
    r = match_orders([_o(1, Side.BUY, 100, 50), _o(2, Side.SELL, 100, 60)])
    assert r.fills == () and r.price_per_mwh == 0 and r.volume_wh == 0


def test_match_orders_both_exhausted_same_step() -> None:
    r = match_orders(
        [
            _o(1, Side.BUY, 100, 60),
            _o(2, Side.BUY, 100, 59),
            _o(3, Side.SELL, 100, 50),
            _o(4, Side.SELL, 50, 51),
        ]
    )
    assert [(f.buy_order_id, f.sell_order_id, f.energy_wh) for f in r.fills] == [
        (1, 3, 100),
        (2, 4, 50),
    ]
    assert r.price_per_mwh == (59 + 51) // 2


# --- orders and escrow -----------------------------------------------------------------
def test_order_ids_owner_and_escrow(ledger: ReferenceLedger) -> None:
    orders = ledger.place_orders([buy(12, 2000, 120_000_000), sell(13, 1000, 90_000_000)])
    assert [o.order_id for o in orders] == [1, 2]
    assert orders[0].owner == 2 and orders[1].owner == 3
    esc = payment(2000, 120_000_000)
    assert ledger.balance(2) == Balance(free=10_000_000 - esc, locked=esc, debt=0)
    assert ledger.balance(3) == Balance(free=10_000_000, locked=0, debt=0)
    assert ledger.place_orders([buy(14, 10, 1)])[0].order_id == 3
    assert ledger.orders(0) == [*orders, ledger.orders(0)[2]]


def test_clear_releases_escrow_beyond_trades(ledger: ReferenceLedger) -> None:
    ledger.place_orders([buy(12, 2000, 120_000_000), sell(13, 1500, 90_000_000)])
    c = ledger.clear(0)
    assert c.price_per_mwh == 105_000_000 and c.volume_wh == 1500
    (t,) = c.trades
    assert (t.trade_id, t.buy_order_id, t.sell_order_id, t.buyer_device, t.seller_device) == (
        1,
        1,
        2,
        12,
        13,
    )
    assert ledger.balance(2).locked == payment(1500, 105_000_000)
    assert ledger.interval_status(0) == "cleared"


def test_clear_without_match_releases_everything(ledger: ReferenceLedger) -> None:
    ledger.place_orders([buy(12, 2000, 50_000_000), sell(13, 1500, 90_000_000)])
    c = ledger.clear(0)
    assert c.trades == () and c.price_per_mwh == 0
    assert ledger.balance(2) == Balance(free=10_000_000, locked=0, debt=0)


def test_place_orders_is_atomic(ledger: ReferenceLedger) -> None:
    with pytest.raises(e.BadPrice):
        ledger.place_orders([buy(12, 100, 100), buy(13, 100, 0)])
    assert ledger.orders(0) == [] and ledger.balance(2).locked == 0
    assert ledger.place_orders([buy(12, 100, 100)])[0].order_id == 1


def test_capacity_counts_earlier_orders_and_batch(ledger: ReferenceLedger) -> None:
    ledger.place_orders([buy(12, 2000, 1)])
    with pytest.raises(e.CapacityExceeded) as info:
        ledger.place_orders([buy(12, 500, 1), buy(12, 500, 1)])
    assert info.value.values == {"device": 12, "cap": 2750, "requested": 3000}
    ledger.place_orders([buy(12, 750, 1)])  # exactly the cap
    ledger.place_orders([buy(12, 2750, 1, interval=1)])  # caps are per interval


@pytest.mark.parametrize(
    ("intent", "error", "values"),
    [
        (buy(99, 100, 1), e.UnknownDevice, {"device": 99}),
        (buy(12, 0, 1), e.BadEnergy, {"device": 12, "energy": 0}),
        (buy(12, -5, 1), e.BadEnergy, {"device": 12, "energy": -5}),
        (buy(12, 5, 0), e.BadPrice, {"device": 12, "price": 0}),
        (sell(12, 5, PRICE_MAX + 1), e.BadPrice, {"device": 12, "price": PRICE_MAX + 1}),
        (buy(12, 2751, 1), e.CapacityExceeded, {"device": 12, "cap": 2750, "requested": 2751}),
        (
            buy(12, 2000, PRICE_MAX),
            e.InsufficientBalance,
            {"account": 2, "needed": payment(2000, PRICE_MAX), "available": 10_000_000},
        ),
    ],
)
def test_order_rejections(
    ledger: ReferenceLedger, intent: OrderIntent, error: type[e.MarketError], values: dict[str, int]
) -> None:
    with pytest.raises(error) as info:
        ledger.place_orders([intent])
    assert info.value.values == values
    assert str(intent.device_id) in str(info.value)


def test_opposite_side_revoked_closed_not_owner(ledger: ReferenceLedger) -> None:
    ledger.place_orders([buy(12, 100, 1)])
    with pytest.raises(e.OppositeSide, match=r"OppositeSide\(device=12, interval=0\)"):
        ledger.place_orders([sell(12, 100, 1)])
    ledger.revoke_device(13)
    assert ledger.is_revoked(13)
    with pytest.raises(e.DeviceRevoked):
        ledger.place_orders([sell(13, 100, 1)])
    with pytest.raises(e.DeviceRevoked):
        ledger.revoke_device(13)
    with pytest.raises(e.NotDeviceOwner) as info:
        ledger.place_orders([sell(14, 100, 1)], sender=5)
    assert info.value.values == {"device": 14, "account": 5}
    ledger.clear(0)
    with pytest.raises(e.IntervalClosed):
        ledger.place_orders([buy(14, 100, 1)])


def test_role_errors(ledger: ReferenceLedger) -> None:
    dev = Device(device_id=50, owner=2, kind=DeviceKind.EV, bus=1, capacity_w=7000)
    with pytest.raises(e.NotDSO):
        ledger.register_device(dev, sender=0)
    ledger.register_device(dev)
    with pytest.raises(e.DeviceExists):
        ledger.register_device(dev)
    with pytest.raises(e.UnknownDevice):
        ledger.revoke_device(51)
    with pytest.raises(e.NotDSO):
        ledger.revoke_device(50, sender=2)
    with pytest.raises(e.NotOperator):
        ledger.clear(0, sender=DSO_ACCOUNT)
    with pytest.raises(e.NotOperator):
        ledger.settle(0, {}, sender=2)
    ledger.clear(0)
    with pytest.raises(e.AlreadyCleared):
        ledger.clear(0)


def test_deposit_withdraw(ledger: ReferenceLedger) -> None:
    with pytest.raises(e.BadAmount):
        ledger.deposit(2, 0)
    with pytest.raises(e.InsufficientBalance):
        ledger.withdraw(2, 10_000_001)
    ledger.withdraw(2, 4_000_000)
    assert ledger.wallet(2) == 4_000_000 and ledger.balance(2).free == 6_000_000
    assert ledger.total_supply() == 6 * 10_000_000 + 5_000_000


# --- curtailment and settlement --------------------------------------------------------

def test_curtail(ledger: ReferenceLedger) -> None:
    _cleared(ledger)
    locked = ledger.balance(2).locked
    t = ledger.curtail(2, 400)
    assert (t.cleared_wh, t.energy_wh, t.curtailed_wh) == (1000, 400, 600)
    assert ledger.balance(2).locked == locked - (
        payment(1000, 105_000_000) - payment(400, 105_000_000)
    )
    with pytest.raises(e.CurtailIncrease) as info:
        ledger.curtail(2, 401)
    assert info.value.values == {"trade": 2, "current": 400, "requested": 401}
    with pytest.raises(e.UnknownTrade):
        ledger.curtail(9, 0)
    with pytest.raises(e.NotDSO):
        ledger.curtail(2, 0, sender=0)
    with pytest.raises(e.BadEnergy):
        ledger.curtail(2, -1)
    assert ledger.trades(0)[1] == t


def test_settle_pays_trades_then_imbalance(ledger: ReferenceLedger) -> None:
    _cleared(ledger)
    ledger.curtail(2, 400)
    rows = ledger.settle(0, {12: 500, 13: 1500, 14: -1900, 15: 100})
    by = {r.device_id: r for r in rows}
    p = 105_000_000
    assert [r.device_id for r in rows] == [12, 13, 14, 15]
    assert by[12].traded_wh == 400 and by[12].imbalance_wh == 100
    # curtailed energy consumed anyway costs the trade price, not retail
    assert by[12].trade_amount == -payment(400, p) and by[12].imbalance_amount == -payment(100, p)
    assert by[13].imbalance_wh == 0 and by[13].imbalance_amount == 0
    assert by[14].traded_wh == -1900 and by[14].imbalance_wh == 0
    # the curtailed seller is whole: the DSO pays the curtailed 600 Wh at the trade price
    assert by[14].trade_amount == payment(1500, p) + payment(1000, p)
    assert by[15].traded_wh == 0 and by[15].imbalance_amount == -payment(100, RETAIL)
    assert all(ledger.balance(a).locked == 0 for a in range(8))
    assert ledger.market_holdings() == ledger.total_supply() == 65_000_000
    assert ledger.interval_status(0) == "settled"
    with pytest.raises(e.AlreadySettled):
        ledger.settle(0, {12: 0, 13: 0, 14: 0})
    with pytest.raises(e.AlreadySettled):
        ledger.curtail(1, 0)


def test_settle_feed_in_and_debt(ledger: ReferenceLedger) -> None:
    ledger.withdraw(3, 10_000_000)  # account 3 has nothing left
    ledger.withdraw(1, 5_000_000)  # nor the DSO
    ledger.clear(0)
    rows = ledger.settle(0, {13: 40_000, 14: -30_000})
    assert rows[0].imbalance_amount == 0 and rows[0].debt == payment(40_000, RETAIL)
    assert ledger.balance(3).debt == payment(40_000, RETAIL)
    assert rows[1].imbalance_amount == 0 and rows[1].debt == payment(30_000, FEED_IN)
    assert ledger.balance(DSO_ACCOUNT).debt == payment(30_000, FEED_IN)


def test_settle_errors(ledger: ReferenceLedger) -> None:
    with pytest.raises(e.NotCleared):
        ledger.settle(0, {})
    _cleared(ledger)
    with pytest.raises(e.MissingMeterReading) as info:
        ledger.settle(0, {12: 0, 14: 0})
    assert info.value.values == {"device": 13, "interval": 0}
    with pytest.raises(e.UnknownDevice):
        ledger.settle(0, {12: 0, 13: 0, 14: 0, 77: 0})


def test_error_message_names_things() -> None:
    err = e.CapacityExceeded(7, 2750, 3000, purpose="place_orders: order for device 7 interval 3")
    assert str(err).startswith(
        "place_orders: order for device 7 interval 3 reverted with CapacityExceeded(device=7, cap=2750, requested=3000)"
    )
    assert err == e.CapacityExceeded(device=7, cap=2750, requested=3000)


def test_trade_ticket_carries_creator_and_creation_time(ledger: ReferenceLedger) -> None:
    # the seed paper's trade ticket: either side may initiate; the creator is the owner of
    # the later order (it met the one already in the book), created at the clearing time
    ledger.place_orders([sell(14, 1000, 90_000_000)])  # owner 4, first in the book
    ledger.place_orders([buy(12, 600, 120_000_000), buy(13, 400, 110_000_000)])  # owners 2, 3
    now = ledger.gate_s(0) + 1  # an interval clears once its gate closed
    trades = ledger.clear(0).trades
    assert {(t.buyer_device, t.creator, t.created_s) for t in trades} == {(12, 2, now), (13, 3, now)}
    ledger.place_orders([buy(12, 500, 120_000_000, interval=1)])
    ledger.set_time(now + 600)
    ledger.place_orders([sell(14, 500, 90_000_000, interval=1)])
    (t,) = ledger.clear(1).trades
    assert (t.creator, t.created_s) == (4, ledger.gate_s(1) + 1)  # the seller initiated this one
    assert ledger.trades(1) == [t]
