"""One table of range limits (twin/market/limits.py) for every order path: the column-wise
booking (place_bulk) declines exactly the batches in which the one-by-one path
(ReferenceLedger._place) or the pre-send check (validation.check_intents) refuses an order,
and all of them name the same error; at the limits themselves both paths book the same state."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from twin.market import errors as e
from twin.market.limits import order_limits
from twin.market.place_bulk import place_bulk
from twin.market.reference import ReferenceLedger
from twin.market.types import Device, DeviceKind, OrderIntent, Side
from twin.market.units import ENERGY_MAX_WH, INTERVAL_LIMIT, NONCE_LIMIT, PRICE_MAX
from twin.market.validation import check_intents

MIN_WH = 10
SIGNER = "0x" + "ab" * 20
BIG_W = 2**34  # a rating whose 15-minute cap holds ENERGY_MAX_WH


@dataclasses.dataclass(frozen=True)
class Relayed:
    """A signed order as the one-by-one path reads it (signer checked elsewhere)."""

    intent: OrderIntent
    nonce: int


def _ledger() -> ReferenceLedger:
    led = ReferenceLedger(interval_s=900, retail_price_per_mwh=250_000_000,
                          feed_in_price_per_mwh=80_000_000, min_order_wh=MIN_WH)
    for d in (1, 2, 3):
        led.register_device(Device(device_id=d, owner=10 + d, kind=DeviceKind.PV, bus=d,
                                   capacity_w=BIG_W))
        led.set_device_signer(d, SIGNER)
        led.deposit(10 + d, 10**15)
    return led


def _batch(field: str, value: int) -> tuple[list[OrderIntent], list[int]]:
    """Three good sell orders of interval 5, the last one's ``field`` set to ``value``."""
    intents = [OrderIntent(device_id=d, interval=5, side=Side.SELL, energy_wh=100,
                           price_per_mwh=50_000_000) for d in (1, 2, 3)]
    nonces = [1, 1, 1]
    if field == "nonce":
        nonces[2] = value
    else:
        intents[2] = dataclasses.replace(intents[2], **{field: value})
    return intents, nonces


def _state(led: ReferenceLedger) -> tuple[Any, ...]:
    fields = ("_orders", "_nonces", "_used", "_n_orders", "_device_info", "_escrow")
    return (*(dict(getattr(led, f)) for f in fields), led._next_order)


#: every limit's two sides just outside it -> the error both paths name (written out, not
#: taken from the table: a new limit must be added here too)
OUTSIDE: dict[str, list[tuple[int, e.MarketError]]] = {
    "nonce": [(0, e.ReplayedNonce(3, 5, 0)), (NONCE_LIMIT, e.ReplayedNonce(3, 5, NONCE_LIMIT))],
    "energy_wh": [(0, e.BadEnergy(3, 0)), (ENERGY_MAX_WH + 1, e.BadEnergy(3, ENERGY_MAX_WH + 1)),
                  (MIN_WH - 1, e.OrderTooSmall(3, MIN_WH, MIN_WH - 1))],
    "price_per_mwh": [(0, e.BadPrice(3, 0)), (PRICE_MAX + 1, e.BadPrice(3, PRICE_MAX + 1))],
    "interval": [(-1, e.IntervalClosed(-1)), (INTERVAL_LIMIT, e.IntervalClosed(INTERVAL_LIMIT))],
}


def test_every_limit_is_listed() -> None:
    assert {lim.field for lim in order_limits(MIN_WH)} == set(OUTSIDE)
    assert len(order_limits(MIN_WH)) == 5  # energy: its range and the market's minimum


@pytest.mark.parametrize(("field", "value", "error"),
                         [(f, v, err) for f, cases in OUTSIDE.items() for v, err in cases])
def test_both_paths_refuse_the_same_orders_with_the_same_error(
        field: str, value: int, error: e.MarketError) -> None:
    intents, nonces = _batch(field, value)
    led = _ledger()
    before = _state(led)
    assert place_bulk(led, intents, nonces, [SIGNER] * 3, None) is None  # declined
    assert _state(led) == before
    led.rejected = []
    placed = led._place(intents, None, [Relayed(i, n) for i, n in zip(intents, nonces, strict=True)],
                        [SIGNER] * 3)
    assert [o.device_id for o in placed] == [1, 2]
    assert [(r.index, r.error) for r in led.rejected] == [(2, error)]
    if field != "nonce" and error.name != "OrderTooSmall":  # the stateless pre-send check too
        (problem,) = check_intents(intents, is_registered=lambda d: True, is_closed=lambda k: False)
        assert (problem.index, problem.error) == (2, error)


@pytest.mark.parametrize(("field", "value"), [
    ("nonce", NONCE_LIMIT - 1), ("energy_wh", ENERGY_MAX_WH), ("energy_wh", MIN_WH),
    ("price_per_mwh", 1), ("price_per_mwh", PRICE_MAX), ("interval", 0),
    ("interval", INTERVAL_LIMIT - 1)])
def test_at_the_limits_both_paths_book_the_same(field: str, value: int) -> None:
    intents, nonces = _batch(field, value)
    if field == "interval":  # one interval per batch: the others too
        intents = [dataclasses.replace(it, interval=value) for it in intents]
    bulk, one = _ledger(), _ledger()
    one.set_time(-900)
    bulk.set_time(-900)
    assert place_bulk(bulk, intents, nonces, [SIGNER] * 3, None) is not None
    one.rejected = []
    one._place(intents, None, [Relayed(i, n) for i, n in zip(intents, nonces, strict=True)],
               [SIGNER] * 3)
    assert one.rejected == []
    assert _state(bulk) == _state(one)


def test_relayed_readings_checked_at_once_name_the_first_bad_device() -> None:
    """settle_relayed's readings (METER_LIMIT, |metered| <= the device's cap): the first
    device in id order with a problem is named; at the cap the interval settles."""
    led = ReferenceLedger(interval_s=900, retail_price_per_mwh=250_000_000,
                          feed_in_price_per_mwh=80_000_000)
    for d in (1, 2, 3):
        led.register_device(Device(device_id=d, owner=10 + d, kind=DeviceKind.PV, bus=d,
                                   capacity_w=4_000))  # cap 1,000 Wh
        led.deposit(10 + d, 10**12)
    led.deposit(1, 10**12)
    for k in (0, 1, 2):
        led.clear(k)
    with pytest.raises(e.MeterOutOfRange) as info:
        led.settle_relayed(0, {3: 5_000, 2: -1_001, 1: 1_000})
    assert info.value == e.MeterOutOfRange(2, 1_000, -1_001)
    with pytest.raises(e.MeterOutOfRange) as info:
        led.settle_relayed(0, {3: 1_000, 9: 1, 2: 7_000})
    assert info.value == e.MeterOutOfRange(2, 1_000, 7_000)  # device 2 before 9
    with pytest.raises(e.UnknownDevice) as unknown:
        led.settle_relayed(0, {3: 1_000, 9: 1})
    assert unknown.value == e.UnknownDevice(9)
    rows = led.settle_relayed(0, {3: -1_000, 2: 0, 1: 1_000})
    assert [(r.device_id, r.metered_wh, r.imbalance_wh) for r in rows] == [
        (1, 1_000, 1_000), (2, 0, 0), (3, -1_000, -1_000)]
