"""Per-interval books of what the HIL devices delivered (pure; the HIL adapter feeds it).

The agents dispatch a market interval at its start; a HIL controller may curtail, lift or
reschedule a device at any HIL step inside it. :class:`IntervalBooks` integrates, per HIL
step, the difference between the power a mirrored device delivered (after the HIL) and
the power the agents dispatched for it (before), over the time that step's power holds
(``[t, t + step_s)``, what the grid sees). When a step closes an interval ``k`` it returns
:class:`DeliveredBook` for ``k``: by market device id the meter correction (Wh,
consumption positive, the agents' convention: add it to the interval's reading) and by
storage element row (and by EV charger load row) the extra AC energy the battery (the EV)
took in (Wh, consumption positive), from which the agents' state of charge at
``(k + 1)·T`` follows, and by PV sgen row the energy it did not produce (for the
``agents`` table's ``pv_wh``). Interval ``k`` is then
settled at ``(k + 1)·T`` on ``planned + delta`` (``twin hil serve``).

Element powers are pandapower's (MW; ``sgen`` generation positive, ``load`` and
``storage`` consumption positive).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["DeliveredBook", "IntervalBooks"]

_CONSUMPTION = {"sgen": -1.0, "load": 1.0, "storage": 1.0}  # element MW -> consumption-positive


@dataclass(slots=True)
class DeliveredBook:
    """One interval's delivered-energy corrections (see the module doc)."""

    interval: int
    #: market device id -> Wh to add to the agents' reading of the interval (consumption +)
    meter_delta_wh: dict[int, float] = field(default_factory=dict)
    #: storage element row -> extra AC energy the battery took in (Wh, consumption +)
    storage_delta_wh: dict[int, float] = field(default_factory=dict)
    #: load element row of an EV charger -> extra AC energy the EV took in (Wh, consumption +)
    ev_delta_wh: dict[int, float] = field(default_factory=dict)
    #: sgen element row of a PV inverter -> energy it did not produce (Wh, consumption +)
    sgen_delta_wh: dict[int, float] = field(default_factory=dict)
    #: unit id -> energy the device delivered over the interval (Wh, element convention)
    delivered_wh: dict[int, float] = field(default_factory=dict)

    def encode(self) -> dict[str, Any]:
        """JSON-safe message (mosaik attribute ``hil_books``)."""
        return {"interval": self.interval,
                "meter_delta_wh": {str(d): w for d, w in self.meter_delta_wh.items()},
                "storage_delta_wh": {str(r): w for r, w in self.storage_delta_wh.items()},
                "ev_delta_wh": {str(r): w for r, w in self.ev_delta_wh.items()},
                "sgen_delta_wh": {str(r): w for r, w in self.sgen_delta_wh.items()},
                "delivered_wh": {str(u): w for u, w in self.delivered_wh.items()}}

    @staticmethod
    def decode(msg: Mapping[str, Any] | None) -> DeliveredBook | None:
        if not msg:
            return None
        return DeliveredBook(
            interval=int(msg["interval"]),
            meter_delta_wh={int(d): float(w) for d, w in msg["meter_delta_wh"].items()},
            storage_delta_wh={int(r): float(w) for r, w in msg["storage_delta_wh"].items()},
            ev_delta_wh={int(r): float(w) for r, w in msg.get("ev_delta_wh", {}).items()},
            sgen_delta_wh={int(r): float(w) for r, w in msg.get("sgen_delta_wh", {}).items()},
            delivered_wh={int(u): float(w) for u, w in msg.get("delivered_wh", {}).items()})


@dataclass(frozen=True, slots=True)
class BookedElement:
    """One mirrored DER element: its unit, table and row, and the market device it meters to."""

    unit_id: int
    table: str  # "sgen" | "load" | "storage"
    row: int
    device_id: int | None  # None: metered by nobody in the market (no books to correct)


class IntervalBooks:
    """Integrates delivered minus dispatched energy per HIL step; closes each interval."""

    def __init__(self, elements: Sequence[BookedElement], *, interval_s: int) -> None:
        if interval_s <= 0:
            raise ValueError(f"IntervalBooks: interval_s must be > 0, got {interval_s}")
        self.elements = list(elements)
        self.interval_s = interval_s
        self._open: DeliveredBook | None = None

    def add(self, *, now_s: float, hold_s: float, dispatched: Mapping[str, Any],
            delivered: Mapping[str, Any]) -> DeliveredBook | None:
        """Book one HIL step at ``now_s`` whose powers hold for ``hold_s`` seconds.

        ``dispatched`` / ``delivered``: element MW by table (``sgen_p_mw`` ...). Returns the
        interval's book when this step's hold reaches the interval's end, else None.
        """
        k = int(now_s // self.interval_s)
        book = self._open
        if book is None or book.interval != k:
            book = self._open = DeliveredBook(interval=k)
        hours = hold_s / 3600.0
        for e in self.elements:
            before = float(dispatched[f"{e.table}_p_mw"][e.row])
            after = float(delivered[f"{e.table}_p_mw"][e.row])
            wh = _CONSUMPTION[e.table] * (after - before) * 1e6 * hours
            book.delivered_wh[e.unit_id] = book.delivered_wh.get(e.unit_id, 0.0) + after * 1e6 * hours
            if e.device_id is not None:
                book.meter_delta_wh[e.device_id] = book.meter_delta_wh.get(e.device_id, 0.0) + wh
            if e.table == "storage":
                book.storage_delta_wh[e.row] = book.storage_delta_wh.get(e.row, 0.0) + wh
            elif e.table == "load":  # a mirrored load is an EV charger
                book.ev_delta_wh[e.row] = book.ev_delta_wh.get(e.row, 0.0) + wh
            else:  # a PV inverter
                book.sgen_delta_wh[e.row] = book.sgen_delta_wh.get(e.row, 0.0) + wh
        if now_s + hold_s >= (k + 1) * self.interval_s - 1e-9:
            self._open = None
            return book
        return None
