"""The range limits of an order's and a meter reading's numbers, checked column-wise by every
path of the reference ledger.

One table, :data:`ORDER_LIMITS` (the constants of :mod:`twin.market.units`), in the order the
contract checks them. :func:`range_codes` checks a whole batch at once (numpy), and every
path uses it:

* the pre-send check of both ledgers (:func:`twin.market.validation.check_intents`);
* the one-by-one path (``ReferenceLedger._place``): the batch's codes are computed once, and
  each order raises its code's error at the point of its checks where the contract would
  (:meth:`Limit.error_for`; ``stage`` says whether in the signature or the order checks);
* the column-wise path (:mod:`twin.market.place_bulk`), which declines any batch with a
  failing code.

A limit added to the table therefore reaches every path at once. Meter readings have one
limit, ``|metered_wh| <= cap_wh`` (:data:`METER_LIMIT`, the cap per device:
``MeterOutOfRange``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from twin.market import errors as e
from twin.market.units import ENERGY_MAX_WH, INTERVAL_LIMIT, NONCE_LIMIT, PRICE_MAX

__all__ = ["METER_LIMIT", "ORDER_LIMITS", "Limit", "column", "first_failed", "order_columns",
           "order_limits", "range_codes"]

#: (device, interval, value, lowest, highest) -> the error the contract reverts with
ErrorOf = Callable[[int, int, int, int, int], e.MarketError]


@dataclass(frozen=True, slots=True)
class Limit:
    """``lo <= column <= hi`` (``None``: the row's own bound, given to :func:`range_codes`)."""

    field: str  # the column: an OrderIntent attribute, "nonce" or "metered_wh"
    lo: int | None
    hi: int | None
    #: where the one-by-one path raises it: with the signed order's signature and nonce
    #: checks, or with the order's own checks
    stage: Literal["signature", "order", "reading"]
    error: ErrorOf

    def error_for(self, *, device: int, interval: int, value: int, lo: int = 0,
                  hi: int = 0) -> e.MarketError:
        return self.error(device, interval, value, lo if self.lo is None else self.lo,
                          hi if self.hi is None else self.hi)


#: Every range limit of an order, in the contract's order of checks (the first that fails is
#: the order's error). ``nonce``: signed and scheduled orders only (a stored nonce is >= 0, so
#: a nonce below 1 is always a replay). The market's ``min_order_wh`` adds its own entry
#: (:func:`order_limits`).
ORDER_LIMITS: tuple[Limit, ...] = (
    Limit("nonce", 1, NONCE_LIMIT - 1, "signature", lambda d, k, v, lo, hi: e.ReplayedNonce(d, k, v)),
    Limit("energy_wh", 1, ENERGY_MAX_WH, "order", lambda d, k, v, lo, hi: e.BadEnergy(d, v)),
    Limit("price_per_mwh", 1, PRICE_MAX, "order", lambda d, k, v, lo, hi: e.BadPrice(d, v)),
    Limit("interval", 0, INTERVAL_LIMIT - 1, "order", lambda d, k, v, lo, hi: e.IntervalClosed(k)),
)

#: A meter reading's energy within the device's capacity over the interval (both signs).
METER_LIMIT = Limit("metered_wh", None, None, "reading",
                    lambda d, k, v, lo, hi: e.MeterOutOfRange(d, hi, v))


def order_limits(min_order_wh: int) -> tuple[Limit, ...]:
    """:data:`ORDER_LIMITS` with a market's minimum order energy (``OrderTooSmall``, checked
    right after the energy's range)."""
    if min_order_wh <= 1:
        return ORDER_LIMITS
    at = next(j for j, lim in enumerate(ORDER_LIMITS) if lim.field == "energy_wh") + 1
    small = Limit("energy_wh", min_order_wh, ENERGY_MAX_WH, "order",
                  lambda d, k, v, lo, hi: e.OrderTooSmall(d, lo, v))
    return (*ORDER_LIMITS[:at], small, *ORDER_LIMITS[at:])


def column(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Integers as an int64 array; anything else (an int beyond int64, a float, a bool) as an
    object array of the values themselves, compared exactly as Python compares them."""
    if len(values) == 0:
        return np.zeros(0, np.int64)
    arr = values if isinstance(values, np.ndarray) else np.array(values)
    if arr.dtype.kind == "i" and arr.ndim == 1:
        return arr.astype(np.int64, copy=False)
    out = np.empty(len(values), object)
    out[:] = list(values)
    return out


def range_codes(columns: Mapping[str, np.ndarray], limits: Sequence[Limit] = ORDER_LIMITS, *,
                bounds: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None) -> np.ndarray:
    """Per row, 0 when every limit of ``limits`` whose column is given holds, else 1 + the
    index in ``limits`` of the first that fails. ``bounds``: a column's per-row (lowest,
    highest) for limits without fixed bounds."""
    n = len(next(iter(columns.values()))) if columns else 0
    codes = np.zeros(n, np.int16)
    for j in range(len(limits) - 1, -1, -1):  # the first failing limit written last
        lim = limits[j]
        col = columns.get(lim.field)
        if col is None:
            continue
        lo: Any = lim.lo
        hi: Any = lim.hi
        if lo is None or hi is None:  # the row's own bounds
            lo_row, hi_row = (bounds or {})[lim.field]
            lo = lo_row if lo is None else lo
            hi = hi_row if hi is None else hi
        bad = (col < lo) | (col > hi)
        if bad.any():
            codes[bad] = j + 1
    return codes


def order_columns(intents: Sequence[Any], nonces: Sequence[int] | None = None,
                  limits: Sequence[Limit] = ORDER_LIMITS) -> dict[str, np.ndarray]:
    """The columns ``limits`` check, of order intents (their attributes) and, for signed
    orders, their ``nonces``."""
    fields = dict.fromkeys(lim.field for lim in limits if lim.field != "nonce")
    cols = {f: column([getattr(it, f) for it in intents]) for f in fields}
    if nonces is not None:
        cols["nonce"] = column(nonces)
    return cols


def first_failed(intents: Sequence[Any], nonces: Sequence[int] | None = None,
                 limits: Sequence[Limit] = ORDER_LIMITS) -> list[Limit | None]:
    """Each order's first failing limit (``None``: all hold), checked for the batch at once."""
    if not intents:
        return []
    codes = range_codes(order_columns(intents, nonces, limits), limits).tolist()
    return [None if c == 0 else limits[c - 1] for c in codes]
