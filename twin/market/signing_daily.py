"""Daily signing (``market.signing: daily``): standing orders and meter readings signed once
per device and day instead of once per interval.

A *schedule* is a device's standing orders for one day: for every interval slot of the day
(``interval % per_day``) a buy and a sell entry (energy Wh, limit price; energy 0 = no
order). The device signs it once::

    Schedule(uint64 device,uint64 day,uint64 revision,bytes32 orders)
    DailyReadings(uint64 device,uint64 day,bytes32 readings)

under the market's EIP-712 domain (:class:`twin.market.signing.Domain`: its per-deployment
salt makes a signature from another run worthless). ``orders`` is the root of the keccak
Merkle tree of the schedule's slots (:mod:`twin.market.schedule_merkle`: leaf
``keccak256(abi.encodePacked(slot, buyEnergy, buyPrice, sellEnergy, sellPrice))``, padded to a power
of two), so the chain keeps one word per schedule and checks each relayed order by its leaf's
proof (``DailySchedules.sol``); ``readings`` is the keccak of the day's metered Wh per slot
(packed int64).

Each interval's order is relayed as a :class:`ScheduledOrder`: the order plus the signed
schedule it belongs to. The ledger verifies a schedule's signature once (then keeps the
verified schedule) and places an order only if it equals its slot of the device's latest
verified schedule of that day. Order nonce = ``revision + 1``, so the per-(device, interval)
nonce floor of :mod:`twin.market.signing` applies: a slot is placed at most once per revision.
A device that changes its mind intraday signs an *amendment* of the one slot that changed::

    Amendment(uint64 device,uint64 day,uint64 revision,uint64 slot,int64 buyEnergy,
              int64 buyPrice,int64 sellEnergy,int64 sellPrice,bytes32 prior)

the slot's new buy and sell entries, ``revision`` one above the revision it amends, and
``prior`` the EIP-712 ``hashStruct`` of that revision (the schedule's, or the previous
amendment's): a chain from the day's signed schedule. The ledger verifies one small
signature and sets one slot of the schedule it keeps, instead of re-hashing and re-verifying
96 slots; an amendment that does not chain to the device's latest verified revision is
refused (:class:`BrokenAmendment`). An older revision is refused from then on
(:class:`StaleSchedule`). ``day`` is in the signed
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

from twin.market import errors as _errors
from twin.market.errors import MarketError
from twin.market.schedule_merkle import schedule_root
from twin.market.signing import _fits64, _keccak
from twin.market.types import OrderIntent, Side

__all__ = [
    "DAILY_READINGS_TYPEHASH",
    "REVISION_LIMIT",
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
    "slots_per_day",
]

AMENDMENT_TYPEHASH = keccak(text="Amendment(uint64 device,uint64 day,uint64 revision,uint64 slot,"
                                  "int64 buyEnergy,int64 buyPrice,int64 sellEnergy,int64 sellPrice,"
                                  "bytes32 prior)")
SCHEDULE_TYPEHASH = keccak(text="Schedule(uint64 device,uint64 day,uint64 revision,bytes32 orders)")
_DAY_S = 86_400


def slots_per_day(interval_s: int) -> int:
    """A day's interval slots (a schedule's length); both ledgers' ``per_day``."""
    if _DAY_S % interval_s:
        raise ValueError(f"daily signing needs interval_s dividing a day, got {interval_s}")
    return _DAY_S // interval_s


#: revisions from this one on are refused (BadSignature): the contract keeps a uint32
REVISION_LIMIT = 2**32
DAILY_READINGS_TYPEHASH = keccak(text="DailyReadings(uint64 device,uint64 day,bytes32 readings)")
ROW_LEN_SCHEDULE = 32 * 5
ROW_LEN_READINGS = 32 * 4
ROW_LEN_AMENDMENT = 32 * 10
#: columns of a schedule's slot: buy energy, buy price, sell energy, sell price
_COL = {Side.BUY: (0, 1), Side.SELL: (2, 3)}


class StaleSchedule(MarketError):
    """An order relayed under a schedule revision older than the device's latest one."""

    fields = ("device", "day", "revision", "latest")
    explanation = "the device has signed a newer schedule revision for that day"


class BrokenAmendment(MarketError):
    """A slot amendment that does not chain to the device's latest verified revision of the
    day (a link withheld, or an amendment of a revision the ledger has not verified)."""

    fields = ("device", "day", "revision", "latest")
    explanation = "the amendment must amend the device's latest verified revision (revision + 1, its hash as prior)"


class WrongDay(MarketError):
    """A schedule or daily readings batch used for an interval of another day."""

    fields = ("device", "interval", "day")
    explanation = "the signed schedule or readings are for another day than the interval"


def _packed(a: np.ndarray) -> bytes:
    """``abi.encodePacked`` of int64 values (8 bytes big-endian two's complement each, row
    order)."""
    return np.ascontiguousarray(a, dtype=np.int64).astype(">i8").tobytes()


def schedule_hash(orders: np.ndarray) -> bytes:
    """The Merkle root of a schedule (``per_day`` x 4 int64: buy Wh, buy price, sell Wh, sell
    price; :func:`twin.market.schedule_merkle.schedule_root`)."""
    return schedule_root(orders)


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


def amendment_rows(device: np.ndarray, day: np.ndarray, revision: np.ndarray, slot: np.ndarray,
                   values: np.ndarray, prior: bytes) -> bytes:
    """Encoded ``Amendment`` structs, one 320-byte row each (columns: uint64 device, day,
    revision, slot; ``values`` n x 4 int64; ``prior`` the n 32-byte hashes joined). Raises
    ValueError for a field out of its type's range."""
    n = len(device)
    u = np.stack([np.asarray(c) for c in (device, day, revision, slot)], axis=1) if n else np.zeros((0, 4))
    if u.dtype.kind not in "iu" and n:
        raise ValueError("amendment: device, day, revision and slot are integers")
    if n and (u.min() < 0 or u.max() >= 2**63):  # uint64 fields, kept within int64 here
        raise ValueError("amendment: device, day, revision or slot out of uint64")
    words = np.concatenate([u.astype(np.int64).reshape(n, 4),
                            np.asarray(values, dtype=np.int64).reshape(n, 4)], axis=1)
    out = np.zeros((n, 10, 32), np.uint8)
    out[:, 0] = np.frombuffer(AMENDMENT_TYPEHASH, np.uint8)
    out[:, 1:9, :24] = np.where(words < 0, 0xFF, 0).astype(np.uint8)[:, :, None]  # sign-extended
    out[:, 1:9, 24:] = words.astype(">i8").view(np.uint8).reshape(n, 8, 8)
    out[:, 9] = np.frombuffer(prior, np.uint8).reshape(n, 32)
    return out.tobytes()


@dataclass(frozen=True, slots=True)
class SignedAmendment:
    """One slot of a device's day schedule changed (``values``: buy Wh, buy price, sell Wh,
    sell price), signed as revision ``revision`` on top of the revision whose ``hashStruct``
    is ``prior``."""

    device_id: int
    day: int
    revision: int
    slot: int
    values: tuple[int, int, int, int]
    prior: bytes
    signature: bytes

    def row(self) -> bytes:
        if len(self.prior) != 32 or len(self.values) != 4:
            raise ValueError("amendment: prior is 32 bytes, values 4 int64")
        return amendment_rows(np.array([self.device_id]), np.array([self.day]),
                              np.array([self.revision]), np.array([self.slot]),
                              np.array([self.values], dtype=np.int64), self.prior)


@dataclass(frozen=True, slots=True)
class ScheduledOrder:
    """One interval's order, relayed with the signed schedule revision whose slot it is: the
    day's schedule or the latest slot amendment (``amends``: the amendments it chains to that
    were signed in the same batch, oldest first, when a device amended several slots at
    once)."""

    intent: OrderIntent
    schedule: SignedSchedule | SignedAmendment
    amends: tuple[SignedAmendment, ...] = ()

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


# raised by the contracts too (DailySchedules.sol): decoded from a revert by name
_errors.ERRORS.update({cls.__name__: cls for cls in (StaleSchedule, BrokenAmendment, WrongDay)})

__all__ += ["AMENDMENT_TYPEHASH", "ROW_LEN_AMENDMENT", "ROW_LEN_READINGS", "ROW_LEN_SCHEDULE",
            "BrokenAmendment", "SignedAmendment", "amendment_rows", "set_slot"]
