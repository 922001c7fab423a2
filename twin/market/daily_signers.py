"""The devices' keys under daily signing (``market.signing: daily``,
:mod:`twin.market.signing_daily`): each device signs its day's standing orders once and its
day's meter readings once.

At its day's first order a device signs a schedule: its day-ahead plan when the run gives
one (``planner``: intervals -> the order intents the devices plan for them, e.g. households
from their forecasts), otherwise no standing order. When an interval's order differs from
its slot, the device revises the schedule (the slot changed, ``revision + 1``) and signs the
revision. The operator relays each order with the schedule it belongs to. Meter readings are
kept by the device (its meter's day profile) and signed as one batch after the day's last
interval (or the run's).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from twin.market.device_signers import DeviceSigners
from twin.market.signing import Domain
from twin.market.signing_batch import sign_rows
from twin.market.signing_daily import (
    _COL,
    ROW_LEN_READINGS,
    ROW_LEN_SCHEDULE,
    ScheduledOrder,
    SignedDailyReadings,
    SignedSchedule,
    readings_row,
    schedule_hash,
    schedule_row,
)
from twin.market.types import OrderIntent, Side

__all__ = ["DailySigners"]

Planner = Callable[[range], Sequence[OrderIntent]]


class DailySigners(DeviceSigners):
    """One key per device; schedules and daily readings signed under the ledger's domain."""

    daily = True

    def __init__(self, *, seed: int | str, device_ids: Iterable[int], per_day: int,
                 planner: Planner | None = None) -> None:
        super().__init__(seed=seed, device_ids=device_ids)
        if per_day <= 0:
            raise ValueError(f"daily signing needs intervals per day > 0, got {per_day}")
        self.per_day = per_day
        self.planner = planner
        #: device -> (day, revision, orders (per_day x 4), the last signed schedule or None)
        self._draft: dict[int, tuple[int, int, np.ndarray, SignedSchedule | None]] = {}
        self._planned_day = -1
        self._plan: dict[int, np.ndarray] = {}
        #: day -> device -> metered Wh per slot (the meter's day profile)
        self._readings: dict[int, dict[int, np.ndarray]] = {}
        #: signatures made (schedules, reading batches): what the protocol costs the devices
        self.n_signed: dict[str, int] = defaultdict(int)

    def day_of(self, interval: int) -> int:
        return interval // self.per_day

    def _day_plan(self, day: int) -> dict[int, np.ndarray]:
        """The devices' day-ahead plans of ``day`` (asked of the planner once per day)."""
        if self._planned_day != day:
            self._planned_day, self._plan = day, {}
            if self.planner is not None:
                first = day * self.per_day
                for it in self.planner(range(first, first + self.per_day)):
                    if it.device_id not in self.keys or self.day_of(it.interval) != day:
                        continue
                    grid = self._plan.get(it.device_id)
                    if grid is None:
                        grid = self._plan[it.device_id] = np.zeros((self.per_day, 4), np.int64)
                    e, p = _COL[Side(it.side)]
                    grid[it.interval - first, e] = it.energy_wh
                    grid[it.interval - first, p] = it.price_per_mwh
        return self._plan

    def sign_orders(self, intents: Sequence[OrderIntent],  # type: ignore[override]
                    *, domain: Domain) -> list[ScheduledOrder]:
        """Each order with its device's signed schedule; schedules new today or changed by
        an order signed now, all in one batch."""
        changed: dict[int, None] = {}
        for it in intents:
            d, day = it.device_id, self.day_of(it.interval)
            self.key(d)
            draft = self._draft.get(d)
            if draft is None or draft[0] != day:
                plan = self._day_plan(day).get(d)
                grid = np.zeros((self.per_day, 4), np.int64) if plan is None else plan.copy()
                draft = self._draft[d] = (day, 0, grid, None)
                changed[d] = None
            _, rev, grid, signed = draft
            slot = it.interval - day * self.per_day
            e, p = _COL[Side(it.side)]
            if grid[slot, e] != it.energy_wh or grid[slot, p] != it.price_per_mwh:
                if signed is not None:  # a revision of a schedule already signed
                    grid = grid.copy()
                    draft = self._draft[d] = (day, rev + 1, grid, None)
                grid[slot, e] = it.energy_wh
                grid[slot, p] = it.price_per_mwh
                changed[d] = None
        if changed:
            self._sign_schedules(list(changed), domain)
        out = []
        for it in intents:
            sched = self._draft[it.device_id][3]
            assert sched is not None
            out.append(ScheduledOrder(intent=it, schedule=sched))
        return out

    def _sign_schedules(self, devices: list[int], domain: Domain) -> None:
        rows = []
        for d in devices:
            day, rev, grid, _ = self._draft[d]
            grid.setflags(write=False)
            rows.append(schedule_row(d, day, rev, schedule_hash(grid)))
        sigs = sign_rows(domain, b"".join(rows), ROW_LEN_SCHEDULE,
                         b"".join(self.keys[d]._secret for d in devices))
        for d, sig in zip(devices, sigs, strict=True):
            day, rev, grid, _ = self._draft[d]
            self._draft[d] = (day, rev, grid,
                              SignedSchedule(device_id=d, day=day, revision=rev, orders=grid,
                                             signature=sig))
        self.n_signed["schedules"] += len(devices)

    # --- readings ------------------------------------------------------------------------
    def record_readings(self, *, interval: int, metered_wh: Mapping[int, int]) -> None:
        """The devices' meters keep the interval's readings in their day profile."""
        day = self.day_of(interval)
        slot = interval - day * self.per_day
        book = self._readings.setdefault(day, {})
        for d, wh in metered_wh.items():
            row = book.get(d)
            if row is None:
                self.key(d)
                row = book[d] = np.zeros(self.per_day, np.int64)
            row[slot] = wh

    def daily_readings(self, *, day: int, domain: Domain) -> list[SignedDailyReadings]:
        """Each device's readings of ``day`` signed as one batch (ascending device id); the
        day's profile is then handed over (forgotten here)."""
        book = self._readings.pop(day, {})
        devices = sorted(book)
        rows = [readings_row(d, day, _readings_hash(book[d])) for d in devices]
        sigs = sign_rows(domain, b"".join(rows), ROW_LEN_READINGS,
                         b"".join(self.keys[d]._secret for d in devices))
        self.n_signed["reading_batches"] += len(devices)
        return [SignedDailyReadings(device_id=d, day=day, metered_wh=book[d], signature=s)
                for d, s in zip(devices, sigs, strict=True)]

    def day_ends(self, interval: int, *, n_intervals: int) -> bool:
        """Whether the readings batch of ``interval``'s day is due after ``interval``."""
        return (interval + 1) % self.per_day == 0 or interval == n_intervals - 1


def _readings_hash(row: np.ndarray) -> bytes:
    from twin.market.signing_daily import readings_hash

    row.setflags(write=False)
    return readings_hash(row)
