"""Provisional settlement on estimated meter readings, and the true-up when the real
reading arrives (the pilots' "automatic compensation" for lost or late meter data).

Rules (the reference ledger applies them; :class:`MeterDesk` drives them in a run):

- At settlement, a device that has no reading by the deadline is settled on an *estimate*
  the operator supplies (``settle(..., estimated_wh=...)``). Its imbalance against its traded
  position is charged or credited at the tariffs like any other; the ledger remembers
  ``(interval, device) -> (estimate_wh, traded_wh)`` as provisional.
- When the device-signed real reading arrives, ``true_up`` settles the difference once:
  the imbalance money the real reading implies minus what the estimate moved (signed, owner
  side positive), paid by the DSO to the owner or by the owner to the DSO as in settlement
  (from free balance, then imbalance bond, the rest as debt; an indebted payee's debt first). Trades are not touched: their energy and
  payments are final at settlement.
- A second true-up of the same ``(interval, device)`` raises :class:`AlreadyTruedUp`, a true-up
  of a device that was settled on a real reading raises :class:`NotProvisional`: a late or
  duplicated reading can never count twice. Tokens are conserved by construction (a
  transfer between the two accounts). A device's bond is not released while one of its
  estimates waits for its true-up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from twin.market.errors import AlreadyTruedUp, NotProvisional
from twin.market.units import payment

__all__ = [
    "AlreadyTruedUp",
    "MeterDesk",
    "NotProvisional",
    "TrueUp",
    "imbalance_value",
]


def imbalance_value(imbalance_wh: int, *, retail_price_per_mwh: int,
                    feed_in_price_per_mwh: int) -> int:
    """What settling ``imbalance_wh`` is worth to the device's owner (signed: an import is
    charged at retail, negative; an export is credited at feed-in, positive)."""
    if imbalance_wh > 0:
        return -payment(imbalance_wh, retail_price_per_mwh)
    if imbalance_wh < 0:
        return payment(-imbalance_wh, feed_in_price_per_mwh)
    return 0


@dataclass(frozen=True, slots=True)
class TrueUp:
    """One true-up: ``amount`` > 0 paid to the owner by the DSO, < 0 paid by the owner."""

    interval: int
    device_id: int
    owner: int
    estimated_wh: int
    metered_wh: int
    delta_wh: int
    amount: int
    paid: int
    debt: int


@dataclass
class MeterDesk:
    """The operator's meter desk in a run: takes each step's meter-data message, settles on
    readings and estimates, trues up late readings, drops duplicates (module docstring).

    ``estimate``: ``"schedule"`` (the device's traded position after curtailment: its own
    forecast when it bid) or ``"last"`` (its last real reading)."""

    estimate: str = "schedule"
    last_wh: dict[int, int] = field(default_factory=dict)
    #: (interval, device) settled on an estimate and not yet trued up -> estimate
    open_estimates: dict[tuple[int, int], int] = field(default_factory=dict)
    #: (interval, device) whose real reading has been used (settled or trued up)
    used: set[tuple[int, int]] = field(default_factory=set)
    duplicates_dropped: int = 0
    late_unneeded: int = 0

    def estimates(self, *, interval: int, expected: Sequence[int], readings: Mapping[int, int],
                  trades: Sequence[Any]) -> dict[int, int]:
        """Estimates for the expected devices without a reading."""
        net: dict[int, int] = {}
        for t in trades:
            net[t.buyer_device] = net.get(t.buyer_device, 0) + t.energy_wh
            net[t.seller_device] = net.get(t.seller_device, 0) - t.energy_wh
        out = {}
        for d in expected:
            if d in readings:
                continue
            out[d] = net.get(d, 0) if self.estimate == "schedule" else self.last_wh.get(d, 0)
        return out

    def take(self, *, interval: int, readings: Mapping[int, int]) -> dict[int, int]:
        """The on-time readings of ``interval`` not seen before (a duplicate is dropped)."""
        fresh = {}
        for d, wh in readings.items():
            if (interval, d) in self.used:
                self.duplicates_dropped += 1
                continue
            fresh[d] = wh
            self.used.add((interval, d))
            self.last_wh[d] = wh
        return fresh

    def settled_on(self, *, interval: int, estimates: Mapping[int, int]) -> None:
        for d, wh in estimates.items():
            self.open_estimates[(interval, d)] = wh

    def late(self, late: Sequence[Sequence[int]]) -> list[tuple[int, int, int]]:
        """The late readings ``(interval, device, wh)`` to true up (duplicates and readings
        already used dropped; a late reading of a device never estimated is dropped too)."""
        out = []
        for interval, d, wh in late:
            key = (int(interval), int(d))
            if key in self.used:
                self.duplicates_dropped += 1
                continue
            self.used.add(key)
            if key not in self.open_estimates:  # its interval settled nothing (no trades)
                self.late_unneeded += 1
                continue
            del self.open_estimates[key]
            out.append((key[0], key[1], int(wh)))
        return out
