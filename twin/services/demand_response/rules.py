"""DemandResponse reference: the TSO/DSO posts an event (interval, target reduction, price),
participants commit a device, compensation is paid automatically on the metered reduction
against the device's baseline.

* ``post_event`` escrows the event budget ``payment(target_wh, price)`` from the poster.
* ``commit`` (before the event's interval is settled) registers a device with its
  committed reduction; commitments beyond the target are refused.
* Baseline: the mean metered consumption (floor) of the device over the ``baseline_n``
  intervals before the event, from the readings given to ``record_meter``.
* ``settle_event``: each committed device is paid ``payment(min(max(baseline - metered, 0),
  committed), price)``; the unspent budget returns to the poster. Budget == paid + refund
  exactly, and nobody is paid twice (an event settles once).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from twin.market import errors as e
from twin.market.units import payment

__all__ = ["DREvent", "DRPayout", "DemandResponseLedger"]


@dataclass(frozen=True, slots=True)
class DREvent:
    event_id: int
    poster: int
    interval: int
    target_wh: int
    price_per_mwh: int
    budget: int


@dataclass(frozen=True, slots=True)
class DRPayout:
    event_id: int
    device_id: int
    owner: int
    baseline_wh: int
    metered_wh: int
    reduction_wh: int  # paid reduction (<= committed)
    amount: int


class DemandResponseLedger:
    def __init__(self, *, baseline_n: int = 4, posters: Collection[int] | None = None) -> None:
        """``posters``: accounts allowed to post events (TSO, DSO); None: anyone."""
        if baseline_n <= 0:
            raise ValueError("baseline_n must be > 0")
        self.baseline_n = baseline_n
        self.posters = None if posters is None else frozenset(posters)
        self._events: dict[int, DREvent] = {}
        self._commits: dict[int, dict[int, tuple[int, int]]] = defaultdict(
            dict
        )  # dev -> (owner, wh)
        self._settled: set[int] = set()
        self._meter: dict[int, dict[int, int]] = defaultdict(dict)  # device -> interval -> Wh
        self.escrow = 0

    def post_event(
        self, *, event_id: int, poster: int, interval: int, target_wh: int, price_per_mwh: int
    ) -> DREvent:
        if self.posters is not None and poster not in self.posters:
            raise e.NotPoster(poster)
        if event_id in self._events:
            raise e.DeviceExists(event_id)  # id taken
        if target_wh <= 0:
            raise e.BadAmount(target_wh)
        if price_per_mwh <= 0:
            raise e.BadPrice(0, price_per_mwh)
        ev = DREvent(
            event_id, poster, interval, target_wh, price_per_mwh, payment(target_wh, price_per_mwh)
        )
        self._events[event_id] = ev
        self.escrow += ev.budget
        return ev

    def _event(self, event_id: int) -> DREvent:
        ev = self._events.get(event_id)
        if ev is None:
            raise e.UnknownEvent(event_id)
        return ev

    def commit(self, *, event_id: int, device_id: int, owner: int, reduction_wh: int) -> None:
        ev = self._event(event_id)
        if event_id in self._settled:
            raise e.AlreadySettled(ev.interval)
        if reduction_wh <= 0:
            raise e.BadEnergy(device_id, reduction_wh)
        committed = sum(wh for _, wh in self._commits[event_id].values())
        prior = self._commits[event_id].get(device_id, (owner, 0))[1]
        if committed - prior + reduction_wh > ev.target_wh:
            raise e.CapacityExceeded(device_id, ev.target_wh, committed - prior + reduction_wh)
        self._commits[event_id][device_id] = (owner, reduction_wh)

    def record_meter(self, device_id: int, interval: int, metered_wh: int) -> None:
        self._meter[device_id][interval] = metered_wh

    def record_meters(self, interval: int, metered_wh: Mapping[int, int]) -> None:
        """Readings of one interval for several devices (one transaction on chain)."""
        for device_id, wh in metered_wh.items():
            self.record_meter(device_id, interval, wh)

    def baseline_wh(self, device_id: int, interval: int) -> int:
        past = [self._meter[device_id].get(interval - k) for k in range(1, self.baseline_n + 1)]
        known = [w for w in past if w is not None]
        return sum(known) // len(known) if known else 0

    def settle_event(
        self, event_id: int, metered_wh: Mapping[int, int]
    ) -> tuple[list[DRPayout], int]:
        """Payouts of the event and the refund to its poster."""
        ev = self._event(event_id)
        if event_id in self._settled:
            raise e.AlreadySettled(ev.interval)
        payouts: list[DRPayout] = []
        for dev, (owner, committed) in sorted(self._commits[event_id].items()):
            if dev not in metered_wh:
                raise e.MissingMeterReading(dev, ev.interval)
            base = self.baseline_wh(dev, ev.interval)
            reduction = min(max(base - metered_wh[dev], 0), committed)
            payouts.append(
                DRPayout(
                    event_id,
                    dev,
                    owner,
                    base,
                    metered_wh[dev],
                    reduction,
                    payment(reduction, ev.price_per_mwh),
                )
            )
        paid = sum(p.amount for p in payouts)
        refund = ev.budget - paid
        self.escrow -= ev.budget
        self._settled.add(event_id)
        return payouts, refund
