"""DemandResponse reference: the TSO/DSO posts an event (interval, target reduction, price),
participants commit a device, compensation is paid automatically on the metered reduction
against the device's baseline.

* ``post_event`` escrows the event budget ``payment(target_wh, price)`` from the poster.
* ``commit`` registers a device with its committed reduction: at most the device's energy
  cap in the interval (``capacity_w * interval_s // 3600``, as in the market) and the
  event's target in total (else ``CapacityExceeded``), and only before the event interval's
  delivery begins (clock ``< interval * interval_s``, else ``CommitClosed``). A commit
  escrows a bond ``payment(committed, price) * penalty_bps // 10000`` from the owner; at
  settlement the penalty ``payment(committed - paid reduction, price) * penalty_bps //
  10000`` goes from the bond to the poster, the rest of the bond back to the owner.
* Baseline: the mean metered consumption (floor) of the device over the ``baseline_n``
  intervals before the event, from the readings given to ``record_meter``.
* ``settle_event``: each committed device is paid ``payment(min(max(baseline - metered, 0),
  committed), price)``; the unspent budget returns to the poster. Budget == paid + refund
  exactly, and nobody is paid twice (an event settles once).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

from twin.market import errors as e
from twin.market.types import Device
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
    penalty: int = 0  # from the owner's bond to the poster (shortfall of the commitment)


class DemandResponseLedger:
    def __init__(
        self, *, baseline_n: int = 4, posters: Collection[int] | None = None,
        devices: Mapping[int, Device] | Callable[[int], Device], interval_s: int,
        clock: Callable[[], int], penalty_bps: int = 0,
    ) -> None:  # fmt: skip
        """``posters``: accounts allowed to post events (TSO, DSO); None: anyone.
        ``devices``: the registry (a mapping or the market ledger's ``device``); ``clock``:
        the market clock in seconds since its start (the market ledger's ``now_s``)."""
        if baseline_n <= 0:
            raise ValueError("baseline_n must be > 0")
        if interval_s <= 0:
            raise ValueError("interval_s must be > 0")
        if not 0 <= penalty_bps <= 10_000:
            raise ValueError("penalty_bps must be in [0, 10000]")
        self._device = devices.__getitem__ if isinstance(devices, Mapping) else devices
        self.interval_s = interval_s
        self._clock = clock
        self.penalty_bps = penalty_bps
        self.baseline_n = baseline_n
        self.posters = None if posters is None else frozenset(posters)
        self._events: dict[int, DREvent] = {}
        self._commits: dict[int, dict[int, tuple[int, int]]] = defaultdict(
            dict
        )  # dev -> (owner, wh)
        self.bonds: dict[int, dict[int, int]] = defaultdict(dict)  # event -> device -> bond
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

    def bond_of(self, wh: int, price_per_mwh: int) -> int:
        """Bond of a commitment of ``wh``, and penalty of a shortfall of ``wh``."""
        return payment(wh, price_per_mwh) * self.penalty_bps // 10_000

    def commit(self, *, event_id: int, device_id: int, owner: int, reduction_wh: int) -> int:
        """Commit (or re-commit) ``device_id``; returns the bond change pulled from the owner
        (negative: returned to it)."""
        try:
            dev = self._device(device_id)
        except KeyError:
            raise e.UnknownDevice(device_id) from None
        if dev.owner != owner:
            raise e.NotDeviceOwner(device_id, owner)
        ev = self._event(event_id)
        if event_id in self._settled:
            raise e.AlreadySettled(ev.interval)
        if reduction_wh <= 0:
            raise e.BadEnergy(device_id, reduction_wh)
        close, now = ev.interval * self.interval_s, self._clock()
        if now >= close:
            raise e.CommitClosed(event_id, close, now)
        cap = dev.capacity_w * self.interval_s // 3600
        if reduction_wh > cap:
            raise e.CapacityExceeded(device_id, cap, reduction_wh)
        committed = sum(wh for _, wh in self._commits[event_id].values())
        prior = self._commits[event_id].get(device_id, (owner, 0))[1]
        if committed - prior + reduction_wh > ev.target_wh:
            raise e.CapacityExceeded(device_id, ev.target_wh, committed - prior + reduction_wh)
        self._commits[event_id][device_id] = (owner, reduction_wh)
        bond = self.bond_of(reduction_wh, ev.price_per_mwh)
        delta = bond - self.bonds[event_id].get(device_id, 0)
        self.bonds[event_id][device_id] = bond
        self.escrow += delta
        return delta

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
        """Payouts of the event and the refund of its budget to the poster (who also gets
        the payouts' penalties; each owner gets ``amount + bond - penalty``)."""
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
                    self.bond_of(committed - reduction, ev.price_per_mwh),
                )
            )
            self.escrow -= self.bonds[event_id].get(dev, 0)
        paid = sum(p.amount for p in payouts)
        refund = ev.budget - paid
        self.escrow -= ev.budget
        self._settled.add(event_id)
        return payouts, refund
