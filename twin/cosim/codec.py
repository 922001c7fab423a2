"""Plain-data encoding of market records for mosaik connections.

Data crossing a mosaik connection is kept JSON-compatible (lists of dicts), so any
adapter could run out of process; these helpers are the only translation.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, fields
from operator import attrgetter
from typing import Any

from twin.agents.controls import DERControl
from twin.market.types import DRCall, OrderIntent, Side, Trade

__all__ = [
    "decode_der_controls", "decode_dr_calls", "decode_orders", "decode_trades",
    "encode_der_controls", "encode_dr_calls", "encode_orders", "encode_trades", "single",
    "timed",
]


# flat records as columns: field name -> one list of values (a town sends 10,000 orders and
# ~8,000 trades an interval; columns need no dict per record and read with attrgetter)
_TRADE_FIELDS = tuple(f.name for f in fields(Trade))
_ORDER_FIELDS = tuple(f.name for f in fields(OrderIntent))
_TRADE_GET = tuple(attrgetter(k) for k in _TRADE_FIELDS)
_ORDER_GET = tuple(attrgetter(k) for k in _ORDER_FIELDS)
_SIDES = (Side.BUY, Side.SELL)

Columns = dict[str, list[Any]]


def _columns(records: list[Any], names: tuple[str, ...], getters: tuple[Any, ...]) -> Columns:
    return {k: list(map(g, records)) for k, g in zip(names, getters, strict=True)}


def _checked(cols: Columns, names: tuple[str, ...], what: str) -> list[list[Any]]:
    """The columns in field order, all of one length (else a ValueError naming them)."""
    if set(cols) != set(names):
        raise ValueError(f"{what} columns: expected {list(names)}, got {sorted(cols)}")
    out = [cols[k] for k in names]
    lengths = {len(c) for c in out}
    if len(lengths) > 1:
        raise ValueError(f"{what} columns of different lengths: "
                         f"{ {k: len(cols[k]) for k in names} }")
    return out


def encode_trades(trades: list[Trade]) -> Columns:
    return _columns(trades, _TRADE_FIELDS, _TRADE_GET)


def decode_trades(cols: Columns | None) -> list[Trade]:
    """Columns (:func:`encode_trades`) -> trades."""
    if not cols:
        return []
    return list(map(Trade, *_checked(cols, _TRADE_FIELDS, "trade")))


def encode_orders(orders: list[OrderIntent]) -> Columns:
    out = _columns(orders, _ORDER_FIELDS, _ORDER_GET)
    out["side"] = [int(s) for s in out["side"]]
    return out


def decode_orders(cols: Columns | None) -> list[OrderIntent]:
    """Columns (:func:`encode_orders`, side 0 buy / 1 sell) -> intents."""
    if not cols:
        return []
    values = _checked(cols, _ORDER_FIELDS, "order")
    k = _ORDER_FIELDS.index("side")
    values[k] = [_SIDES[s] if type(s) is int and 0 <= s <= 1 else Side(s) for s in values[k]]
    return list(map(OrderIntent, *values))


def encode_der_controls(controls: dict[int, DERControl]) -> list[dict[str, Any]]:
    return [{"device_id": int(d)} | asdict(c) for d, c in sorted(controls.items())]


def decode_der_controls(rows: list[dict[str, Any]] | None) -> dict[int, DERControl]:
    return {int(r["device_id"]): DERControl(**{k: v for k, v in r.items() if k != "device_id"})
            for r in rows or []}


def encode_dr_calls(calls: list[DRCall]) -> list[dict[str, Any]]:
    # offers keyed by str: JSON object keys (mosaik may serialize inputs)
    return [{"interval": c.interval, "requested_wh": c.requested_wh,
             "price_per_mwh": c.price_per_mwh,
             "offers": {str(d): int(w) for d, w in sorted(c.offers.items())}} for c in calls]


def decode_dr_calls(rows: list[dict[str, Any]] | None) -> list[DRCall]:
    return [DRCall(interval=int(r["interval"]), requested_wh=int(r["requested_wh"]),
                   price_per_mwh=int(r["price_per_mwh"]),
                   offers={int(d): int(w) for d, w in r["offers"].items()}) for r in rows or []]


def single(values: dict[str, Any] | None) -> Any:
    """The one value of an input attribute (mosaik maps source full id -> value)."""
    if not values:
        return None
    if len(values) != 1:
        raise ValueError(f"expected one source, got {sorted(values)}")
    return next(iter(values.values()))


@contextmanager
def timed(timings: dict[str, float], key: str) -> Iterator[None]:
    """Add the wall time of the block to ``timings[key]`` (per-simulator cost split)."""
    t0 = time.perf_counter()
    try:
        yield
    finally:
        timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0
