"""Daily signing (``market.signing: daily``): standing orders and meter readings signed once
per device and day instead of once per interval.

A *schedule* is a device's standing orders for one day: for every interval slot of the day
(``interval % per_day``) a buy and a sell entry (energy Wh, limit price; energy 0 = no
order). The device signs it once::

    Schedule(uint64 device,uint64 day,uint64 revision,bytes32 orders)
    DailyReadings(uint64 device,uint64 day,bytes32 readings)

under the market's EIP-712 domain (:class:`twin.market.signing.Domain`: its per-deployment
salt makes a signature from another run worthless). ``orders`` is the keccak of the packed
schedule (``abi.encodePacked`` of int64: per slot buy energy, buy price, sell energy, sell
price); ``readings`` the keccak of the day's metered Wh per slot (packed int64).

Each interval's order is relayed as a :class:`ScheduledOrder`: the order plus the signed
schedule it belongs to. The ledger verifies a schedule's signature once (then keeps the
verified schedule) and places an order only if it equals its slot of the device's latest
verified schedule of that day. Order nonce = ``revision + 1``, so the per-(device, interval)
nonce floor of :mod:`twin.market.signing` applies: a slot is placed at most once per revision.
A device that changes its mind intraday signs a new revision (higher ``revision``); an
older revision is refused from then on (:class:`StaleSchedule`). ``day`` is in the signed
message and must be the order's day (an order's interval ``i`` belongs to day
``i // per_day``), so a schedule cannot be replayed on another day.

Readings: each interval settles provisionally on the relayed (unsigned) meter values; the
device's signed :class:`SignedDailyReadings` of the day then trues up every interval whose
signed value differs (:mod:`twin.market.provisional`'s rules), once per device and day.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from eth_utils import keccak

from twin.market.errors import MarketError
from twin.market.signing import _fits64, _keccak
from twin.market.types import OrderIntent, Side

__all__ = [
    "DAILY_READINGS_TYPEHASH",
    "SCHEDULE_TYPEHASH",
    "ScheduledOrder",
    "SignedDailyReadings",
    "SignedSchedule",
    "StaleSchedule",
    "WrongDay",
    "readings_hash",
    "readings_row",
    "schedule_hash",
    "schedule_row",
    "slot_of",
]

SCHEDULE_TYPEHASH = keccak(text="Schedule(uint64 device,uint64 day,uint64 revision,bytes32 orders)")
DAILY_READINGS_TYPEHASH = keccak(text="DailyReadings(uint64 device,uint64 day,bytes32 readings)")
ROW_LEN_SCHEDULE = 32 * 5
ROW_LEN_READINGS = 32 * 4
#: columns of a schedule's slot: buy energy, buy price, sell energy, sell price
_COL = {Side.BUY: (0, 1), Side.SELL: (2, 3)}


class StaleSchedule(MarketError):
    """An order relayed under a schedule revision older than the device's latest one."""

    fields = ("device", "day", "revision", "latest")
    explanation = "the device has signed a newer schedule revision for that day"


class WrongDay(MarketError):
    """A schedule or daily readings batch used for an interval of another day."""

    fields = ("device", "interval", "day")
    explanation = "the signed schedule or readings are for another day than the interval"


def _packed(a: np.ndarray) -> bytes:
    """``abi.encodePacked`` of int64 values (8 bytes big-endian two's complement each, row
    order)."""
    return np.ascontiguousarray(a, dtype=np.int64).astype(">i8").tobytes()


def schedule_hash(orders: np.ndarray) -> bytes:
    """keccak of a packed schedule (``per_day`` x 4 int64: buy Wh, buy price, sell Wh, sell
    price)."""
    return _keccak(_packed(orders))


def readings_hash(metered_wh: np.ndarray) -> bytes:
    """keccak of a day's packed readings (``per_day`` int64 Wh)."""
    return _keccak(_packed(metered_wh))


def _u64(name: str, x: int) -> bytes:
    _fits64(name, x)
    return int(x).to_bytes(32, "big")


def schedule_row(device_id: int, day: int, revision: int, orders_hash: bytes) -> bytes:
    """The encoded ``Schedule`` struct (its keccak is EIP-712's ``hashStruct``)."""
    return (SCHEDULE_TYPEHASH + _u64("device_id", device_id) + _u64("day", day)
            + _u64("revision", revision) + orders_hash)


def readings_row(device_id: int, day: int, readings_hash_: bytes) -> bytes:
    return DAILY_READINGS_TYPEHASH + _u64("device_id", device_id) + _u64("day", day) + readings_hash_


@dataclass(frozen=True, slots=True, eq=False)
class SignedSchedule:
    """A device's standing orders of one day (``orders``: per_day x 4 int64, read-only),
    signed once per revision."""

    device_id: int
    day: int
    revision: int
    orders: np.ndarray
    signature: bytes

    def row(self) -> bytes:
        return schedule_row(self.device_id, self.day, self.revision, schedule_hash(self.orders))


@dataclass(frozen=True, slots=True)
class ScheduledOrder:
    """One interval's order, relayed with the signed schedule whose slot it is."""

    intent: OrderIntent
    schedule: SignedSchedule

    @property
    def nonce(self) -> int:
        return self.schedule.revision + 1

    @property
    def signature(self) -> bytes:
        return self.schedule.signature


@dataclass(frozen=True, slots=True, eq=False)
class SignedDailyReadings:
    """A device's metered Wh of every slot of one day (``metered_wh``: per_day int64), signed
    once."""

    device_id: int
    day: int
    metered_wh: np.ndarray
    signature: bytes

    def row(self) -> bytes:
        return readings_row(self.device_id, self.day, readings_hash(self.metered_wh))


def slot_of(orders: np.ndarray, slot: int, side: Any) -> tuple[int, int]:
    """(energy Wh, price) of one side of a schedule's slot."""
    e, p = _COL[side if type(side) is Side else Side(side)]
    row = orders[slot].tolist()
    return row[e], row[p]


def set_slot(orders: np.ndarray, slot: int, intent: OrderIntent) -> None:
    e, p = _COL[Side(intent.side)]
    orders[slot, e] = intent.energy_wh
    orders[slot, p] = intent.price_per_mwh


__all__ += ["ROW_LEN_READINGS", "ROW_LEN_SCHEDULE", "set_slot"]
