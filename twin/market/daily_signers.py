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
from twin.market.schedule_merkle import schedule_roots
from twin.market.signing import Domain, _keccak
from twin.market.signing_batch import sign_rows
from twin.market.signing_daily import (
    ROW_LEN_AMENDMENT,
    ROW_LEN_READINGS,
    ROW_LEN_SCHEDULE,
    ScheduledOrder,
    SignedAmendment,
    SignedDailyReadings,
    SignedSchedule,
    amendment_rows,
    readings_row,
    schedule_row,
)
from twin.market.types import OrderIntent, Side

__all__ = ["DailySigners"]

#: intervals -> the orders planned for them as arrays: device id, interval, buy (bool),
#: energy Wh, price
Planner = Callable[[range], tuple[np.ndarray, ...]]


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
        #: the day's drafts, one row per device (ascending id): orders (per_day x 4),
        #: revision, and the schedule last signed from the row (None: changed since)
        self._ids = np.array(sorted(self.keys), np.int64)
        self._day = -1
        self._grid = np.zeros((0, per_day, 4), np.int64)
        self._rev = np.zeros(0, np.int64)
        self._signed: list[SignedSchedule | SignedAmendment | None] = []
        self._head: list[bytes] = []  # hashStruct of each row's latest signed revision
        #: day -> device -> metered Wh per slot (the meter's day profile)
        self._readings: dict[int, dict[int, np.ndarray]] = {}
        #: signatures made (schedules, reading batches): what the protocol costs the devices
        self.n_signed: dict[str, int] = defaultdict(int)

    def day_of(self, interval: int) -> int:
        return interval // self.per_day

    def _new_day(self, day: int) -> None:
        """Today's drafts: the devices' day-ahead plans (asked of the planner once a day)."""
        n = self._ids.size
        self._day, self._rev, self._signed = day, np.zeros(n, np.int64), [None] * n
        self._head = [b""] * n
        self._grid = np.zeros((n, self.per_day, 4), np.int64)
        if self.planner is None:
            return
        first = day * self.per_day
        ids, ks, buy, e, p = (np.asarray(a) for a in self.planner(range(first, first + self.per_day)))
        row = np.searchsorted(self._ids, ids)
        keep = (ks >= first) & (ks < first + self.per_day) & (row < n)
        keep[keep] = self._ids[row[keep]] == ids[keep]
        row, ks, col = row[keep], ks[keep] - first, np.where(buy[keep], 0, 2)
        self._grid[row, ks, col] = e[keep]
        self._grid[row, ks, col + 1] = p[keep]

    def sign_orders(self, intents: Sequence[OrderIntent],  # type: ignore[override]
                    *, domain: Domain) -> list[ScheduledOrder]:
        """Each order with its device's signed schedule; schedules new today or changed by
        an order, signed in one batch (an order whose slot is already as planned needs no
        signature)."""
        if not intents:
            return []
        for it in intents:
            self.key(it.device_id)
        ids = np.fromiter((it.device_id for it in intents), np.int64, len(intents))
        ks = np.fromiter((it.interval for it in intents), np.int64, len(intents))
        buy = np.fromiter((it.side == Side.BUY for it in intents), bool, len(intents))
        e = np.fromiter((it.energy_wh for it in intents), np.int64, len(intents))
        p = np.fromiter((it.price_per_mwh for it in intents), np.int64, len(intents))
        rows = np.searchsorted(self._ids, ids)
        out: list[ScheduledOrder | None] = [None] * len(intents)
        for day in np.unique(ks // self.per_day).tolist():
            sel = np.flatnonzero(ks // self.per_day == day)
            if day != self._day:
                self._new_day(day)
            r, slot, col = rows[sel], ks[sel] - day * self.per_day, np.where(buy[sel], 0, 2)
            cell = (r * self.per_day + slot) * 4 + col
            inv = np.unique(cell, return_inverse=True)[1].reshape(-1)
            if inv.max(initial=-1) + 1 < cell.size:  # a cell twice
                twice = np.flatnonzero(np.bincount(inv) > 1)[0]
                j = int(sel[np.flatnonzero(inv == twice)[0]])
                raise ValueError(f"daily signing: device {intents[j].device_id} has two orders "
                                 f"on one side of interval {intents[j].interval} in one batch; a "
                                 "schedule holds one order per side and interval")
            g = self._grid
            changed = (g[r, slot, col] != e[sel]) | (g[r, slot, col + 1] != p[sel])
            g[r[changed], slot[changed], col[changed]] = e[sel][changed]
            g[r[changed], slot[changed], col[changed] + 1] = p[sel][changed]
            # rows not signed today sign their schedule (with the changes); signed rows amend
            signed_before = np.fromiter((x is not None for x in self._signed), bool, len(self._signed))
            todo = [j for j in np.unique(r).tolist() if not signed_before[j]]
            if todo:
                self._sign_schedules(todo, day, domain)
            amended = changed & signed_before[r]
            chains = (self._sign_amendments(np.unique(r[amended] * self.per_day + slot[amended]), day, domain)
                      if amended.any() else {})
            for j, k in zip(r.tolist(), sel.tolist(), strict=True):
                out[k] = ScheduledOrder(intent=intents[k], schedule=self._signed[j],  # type: ignore[arg-type]
                                        amends=chains.get(j, ()))
        return out  # type: ignore[return-value]

    def _sign_schedules(self, rows: list[int], day: int, domain: Domain) -> None:
        grids = [self._grid[j].copy() for j in rows]
        roots = schedule_roots(self._grid[rows])  # the Merkle roots in one numba batch
        structs = []
        for j, grid, root in zip(rows, grids, roots, strict=True):
            grid.setflags(write=False)
            structs.append(schedule_row(int(self._ids[j]), day, int(self._rev[j]), root))
        sigs = sign_rows(domain, b"".join(structs), ROW_LEN_SCHEDULE,
                         b"".join(self.keys[int(self._ids[j])]._secret for j in rows))
        for j, grid, sig, st in zip(rows, grids, sigs, structs, strict=True):
            self._signed[j] = SignedSchedule(device_id=int(self._ids[j]), day=day,
                                             revision=int(self._rev[j]), orders=grid,
                                             signature=sig)
            self._head[j] = _keccak(st)
        self.n_signed["schedules"] += len(rows)

    def _sign_amendments(self, cells: np.ndarray, day: int,
                         domain: Domain) -> dict[int, tuple[SignedAmendment, ...]]:
        """Sign one amendment per changed slot (``cells``: row * per_day + slot, ascending),
        each chained to its device's previous revision; -> row -> the earlier amendments of
        this batch that its latest one chains to (when a device amended several slots)."""
        rows, slots = np.divmod(cells, self.per_day)
        first = np.r_[True, rows[1:] != rows[:-1]] if rows.size else np.zeros(0, bool)
        start = np.flatnonzero(first)
        link = np.arange(rows.size) - np.repeat(start, np.diff(np.r_[start, rows.size]))
        revs = self._rev[rows] + 1 + link  # consecutive revisions per device
        np.maximum.at(self._rev, rows, revs)
        values = self._grid[rows, slots]
        ids = self._ids[rows]
        days = np.full(rows.size, day, np.int64)
        priors: list[bytes] = [b""] * rows.size
        structs: list[bytes] = [b""] * rows.size
        for n_link in range(int(link.max()) + 1):  # each link's prior: the previous link's hash
            at = np.flatnonzero(link == n_link)
            pre = [self._head[j] for j in rows[at].tolist()]
            blob = amendment_rows(ids[at], days[at], revs[at], slots[at], values[at], b"".join(pre))
            for m, (n, j) in enumerate(zip(at.tolist(), rows[at].tolist(), strict=True)):
                st = blob[m * ROW_LEN_AMENDMENT:(m + 1) * ROW_LEN_AMENDMENT]
                priors[n], structs[n] = pre[m], st
                self._head[j] = _keccak(st)
        sigs = sign_rows(domain, b"".join(structs), ROW_LEN_AMENDMENT,
                         b"".join(self.keys[int(d)]._secret for d in ids.tolist()))
        chains: dict[int, list[SignedAmendment]] = {}
        vals = values.tolist()
        for n, j in enumerate(rows.tolist()):
            a = SignedAmendment(device_id=int(ids[n]), day=day, revision=int(revs[n]),
                                slot=int(slots[n]), values=tuple(vals[n]),  # type: ignore[arg-type]
                                prior=priors[n], signature=sigs[n])
            chains.setdefault(j, []).append(a)
            self._signed[j] = a
        self.n_signed["amendments"] += cells.size
        return {j: tuple(c[:-1]) for j, c in chains.items() if len(c) > 1}

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
