"""The reference ledger's daily-signing entry points (:mod:`twin.market.signing_daily`):
orders relayed under a device-signed day schedule, intervals settled provisionally on the
relayed readings, and the true-up by each device's signed daily readings batch."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from twin.market import errors as e
from twin.market.place_bulk import place_bulk
from twin.market.provisional import AlreadyTruedUp, TrueUp
from twin.market.reference_settlement import ReferenceSettlement
from twin.market.reference_state import purpose, require_role
from twin.market.schedule_merkle import schedule_roots
from twin.market.signing import ZERO_ADDRESS, SignedOrder, _keccak
from twin.market.signing_batch import recover_rows
from twin.market.signing_daily import (
    REVISION_LIMIT,
    ROW_LEN_AMENDMENT,
    ROW_LEN_READINGS,
    ROW_LEN_SCHEDULE,
    BrokenAmendment,
    ScheduledOrder,
    SignedAmendment,
    SignedDailyReadings,
    SignedSchedule,
    StaleSchedule,
    WrongDay,
    amendment_rows,
    schedule_row,
    slot_of,
    slots_per_day,
)
from twin.market.types import Order, OrderIntent, SettlementRow
from twin.market.validation import reject_malformed

__all__ = ["ReferenceDaily"]



class ReferenceDaily(ReferenceSettlement):
    """Daily signing on the reference ledger (the module docstring)."""

    @property
    def per_day(self) -> int:
        return slots_per_day(self._interval_s)

    def _place(self, intents: Sequence[OrderIntent], sender: int | None,
               signed: Sequence[SignedOrder] | None,
               recovered: Sequence[Any] | None = None) -> list[Order]:
        raise NotImplementedError  # ReferenceLedger's

    # --- orders ---------------------------------------------------------------------------
    def place_scheduled_orders(self, orders: Sequence[ScheduledOrder], *,
                               sender: int | None = None, strict: bool = True) -> list[Order]:
        """Place each interval order relayed with its device's signed day schedule (any
        ``sender`` may relay). A schedule's signature is checked once, then the verified
        schedule is kept: an order is placed only if it equals its slot of the device's
        latest verified schedule of the order's day (nonce ``revision + 1``). A failing order
        is skipped and reported in :attr:`rejected`; ``strict``: the first rejection is then
        raised, as in ``place_signed_orders``."""
        self.rejected = []
        reject_malformed([o.intent for o in orders], is_registered=self._devices.__contains__,
                         is_closed=lambda i: self._status.get(i, "open") != "open",
                         action="place_scheduled_orders")
        fresh = self._verify_schedules(orders)
        per_day, schedules, signers = self.per_day, self._schedules, self._signers
        verdict: list[Any] = []
        for so in orders:  # the common case inline: the latest verified schedule's slot
            it, s = so.intent, so.schedule
            have = schedules.get(it.device_id)
            err = fresh.get(id(s)) if fresh else None
            if err is None and (have is None or it.device_id != s.device_id or s.day != have[0]
                                or s.revision < have[1] or it.interval // per_day != s.day
                                or slot_of(have[2], it.interval - s.day * per_day, it.side)
                                != (it.energy_wh, it.price_per_mwh)):
                err = self._leaf_error(it, s, per_day)
            verdict.append(err if err is not None else signers.get(it.device_id, ZERO_ADDRESS))
        placed = place_bulk(self, [so.intent for so in orders], [so.nonce for so in orders],
                            verdict, sender)
        if placed is not None:  # no check could fail: booked column-wise
            return placed
        # a scheduled order carries what the order checks read (intent, nonce = revision + 1)
        placed = self._place([so.intent for so in orders], sender, orders,  # type: ignore[arg-type]
                             verdict)
        if strict and self.rejected:
            raise self.rejected[0].error
        return placed

    def _leaf_error(self, it: OrderIntent, s: SignedSchedule | SignedAmendment,
                    per_day: int) -> e.MarketError | None:
        if it.device_id != s.device_id or not 0 <= s.revision < REVISION_LIMIT:
            return e.BadSignature(it.device_id)
        day = it.interval // per_day
        if s.day != day:
            return WrongDay(it.device_id, it.interval, s.day)
        have = self._schedules.get(it.device_id)
        if have is None or have[0] != day:
            return e.BadSignature(it.device_id)
        if s.revision < have[1]:
            return StaleSchedule(it.device_id, day, s.revision, have[1])
        # not what the device signed (also: a slot of a schedule the ledger has not verified)
        return e.BadSignature(it.device_id)

    def _verify_schedules(self, orders: Sequence[ScheduledOrder]) -> dict[int, e.MarketError]:
        """Recover the signer of every schedule and slot amendment newer than the device's
        verified revision (one batch per kind); keep the good ones, applying each device's in
        revision order (an amendment sets its slot of the verified schedule when it chains to
        it). -> id(schedule or amendment) -> error for the bad ones."""
        schedules = self._schedules
        new: dict[int, SignedSchedule | SignedAmendment] = {}
        for so in orders:
            for s in (*so.amends, so.schedule) if so.amends else (so.schedule,):
                have = schedules.get(s.device_id)
                if have is None or have[0] < s.day or (have[0] == s.day and have[1] < s.revision):
                    new.setdefault(id(s), s)
        if not new:
            return {}
        bad: dict[int, e.MarketError] = {}
        full = [s for s in new.values() if type(s) is SignedSchedule]
        amend = [s for s in new.values() if type(s) is SignedAmendment]
        rows: dict[int, bytes] = {}
        addr: dict[int, str] = {}
        # the schedules' Merkle roots in one numba batch (a malformed one: its own row() below)
        shaped = [s for s in full if np.shape(s.orders) == (self.per_day, 4)]  # type: ignore[union-attr]
        roots = dict(zip(map(id, shaped), schedule_roots(np.stack([s.orders for s in shaped]))  # type: ignore[union-attr]
                         if shaped else [], strict=True))
        rows.update(_amendment_rows(amend, self.per_day))  # the well-formed ones, at once
        for items, row_len in ((full, ROW_LEN_SCHEDULE), (amend, ROW_LEN_AMENDMENT)):
            keep = []
            for s in items:
                if id(s) in rows:
                    keep.append(s)
                    continue
                try:
                    if type(s) is SignedSchedule and s.orders.shape != (self.per_day, 4):
                        raise ValueError("shape")
                    if type(s) is SignedAmendment and not 0 <= s.slot < self.per_day:
                        raise ValueError("slot")
                    if not 0 <= s.revision < REVISION_LIMIT:  # the contract keeps a uint32
                        raise ValueError("revision")
                    rows[id(s)] = (schedule_row(s.device_id, s.day, s.revision, roots[id(s)])
                                   if id(s) in roots else s.row())
                    keep.append(s)
                except (ValueError, TypeError, OverflowError, AttributeError):
                    bad[id(s)] = e.BadSignature(s.device_id)
            if keep:
                sigs = b"".join(s.signature if len(s.signature) == 65 else bytes(65) for s in keep)
                got = recover_rows(self._domain, b"".join(rows[id(s)] for s in keep), row_len, sigs)
                addr.update(zip(map(id, keep), got, strict=True))
        for s in sorted((s for s in new.values() if id(s) in addr),
                        key=lambda s: (s.device_id, s.day, s.revision, type(s) is SignedAmendment)):
            if s.device_id in self._revoked:
                bad[id(s)] = e.DeviceRevoked(s.device_id)
                continue
            signer = self._signers.get(s.device_id, ZERO_ADDRESS)
            if signer == ZERO_ADDRESS or addr[id(s)] != signer:
                bad[id(s)] = e.BadSignature(s.device_id)
                continue
            have = schedules.get(s.device_id)
            if type(s) is SignedSchedule:
                if have is None or (have[0], have[1]) < (s.day, s.revision):
                    schedules[s.device_id] = (s.day, s.revision, np.array(s.orders, np.int64),
                                              _keccak(rows[id(s)]))
                continue
            a: SignedAmendment = s  # type: ignore[assignment]
            if have is None or have[0] != a.day or have[1] + 1 != a.revision or have[3] != a.prior:
                bad[id(a)] = BrokenAmendment(a.device_id, a.day, a.revision,
                                             -1 if have is None or have[0] != a.day else have[1])
                continue
            grid = have[2]
            grid[a.slot] = a.values
            schedules[a.device_id] = (a.day, a.revision, grid, _keccak(rows[id(a)]))
        return bad

    # --- readings -------------------------------------------------------------------------
    def settle_relayed(self, interval: int, metered_wh: Mapping[int, int], *,
                       sender: int | None = None) -> list[SettlementRow]:
        """Settle ``interval`` provisionally on the operator's relayed (unsigned) readings;
        each device's signed daily batch trues it up (:meth:`true_up_daily`)."""
        with purpose(f"settle_relayed: interval {interval}"):
            require_role(sender, self.operator, e.NotOperator)
            metered = self._with_estimates(interval, {}, metered_wh)
            rows = self._settle(interval, metered, sender)
        dev = np.fromiter((r.device_id for r in rows), np.int64, len(rows))
        order = np.argsort(dev, kind="stable")
        est = np.fromiter((r.metered_wh for r in rows), np.int64, len(rows))[order]
        traded = np.fromiter((r.traded_wh for r in rows), np.int64, len(rows))[order]
        self._daily_pending[interval] = (dev[order], est, traded, np.zeros(len(rows), bool))
        return rows

    def true_up_daily(self, batches: Sequence[SignedDailyReadings], *,
                      sender: int | None = None) -> list[TrueUp]:
        """True up every interval of each device's day that was settled on a relayed reading
        differing from its signed daily reading (:mod:`twin.market.provisional`'s rules:
        imbalance money of the signed value less that of the relayed one). A batch counts
        once per device and day; the whole call is refused on a bad batch (nothing applied).
        Returns the true-ups that moved energy (delta != 0)."""
        with purpose("true_up_daily"):
            require_role(sender, self.operator, e.NotOperator)
            per_day = self.per_day
            seen: set[tuple[int, int]] = set()
            rows = []
            for b in batches:
                if b.device_id not in self._devices:
                    raise e.UnknownDevice(b.device_id)
                if b.device_id in self._revoked:
                    raise e.DeviceRevoked(b.device_id)
                key = (b.device_id, b.day)
                if key in self._daily_done or key in seen:
                    raise AlreadyTruedUp(b.device_id, b.day * per_day)
                seen.add(key)
                if np.shape(b.metered_wh) != (per_day,):
                    raise e.BadReadings(b.device_id)
                cap = self.cap_wh(self._devices[b.device_id])
                worst = int(np.abs(b.metered_wh).max()) if per_day else 0
                if worst > cap:
                    raise e.MeterOutOfRange(b.device_id, cap, worst)
                rows.append(b.row())
            sigs = b"".join(b.signature if len(b.signature) == 65 else bytes(65) for b in batches)
            got = recover_rows(self._domain, b"".join(rows), ROW_LEN_READINGS, sigs) if rows else []
            for b, addr in zip(batches, got, strict=True):
                signer = self._signers.get(b.device_id, ZERO_ADDRESS)
                if signer == ZERO_ADDRESS or addr != signer:
                    raise e.BadSignature(b.device_id)
            return self._apply_daily(batches, per_day)

    def _apply_daily(self, batches: Sequence[SignedDailyReadings], per_day: int) -> list[TrueUp]:
        out: list[TrueUp] = []
        by_day: dict[int, list[SignedDailyReadings]] = {}
        for b in batches:
            by_day.setdefault(b.day, []).append(b)
            self._daily_done.add((b.device_id, b.day))
        for day, group in sorted(by_day.items()):
            ids = np.array([b.device_id for b in group], np.int64)
            signed = np.stack([b.metered_wh for b in group]).astype(np.int64)
            for k in range(day * per_day, (day + 1) * per_day):
                pend = self._daily_pending.get(k)
                if pend is None:
                    continue
                dev, est, traded, done = pend
                pos = np.searchsorted(dev, ids)
                hit = pos < dev.size
                hit[hit] = dev[pos[hit]] == ids[hit]
                pos, rows_ = pos[hit], np.flatnonzero(hit)
                done[pos] = True
                real = signed[rows_, k - day * per_day]
                for j in np.flatnonzero(real != est[pos]).tolist():
                    d = int(ids[rows_[j]])
                    out.append(self._pay_true_up(k, d, self._devices[d].owner, estimate_wh=int(est[pos[j]]),
                                                 traded_wh=int(traded[pos[j]]), metered_wh=int(real[j])))
                if done.all():
                    del self._daily_pending[k]
        return out

    def daily_waits(self, device_id: int) -> bool:
        """Whether one of the device's relayed-reading settlements waits for its batch."""
        for dev, _, _, done in self._daily_pending.values():
            p = int(np.searchsorted(dev, device_id))
            if p < dev.size and dev[p] == device_id and not done[p]:
                return True
        return False


def _amendment_rows(amends: list[SignedAmendment], per_day: int) -> dict[int, bytes]:
    """id -> encoded row of the amendments a town interval brings (~1,500), encoded in one
    :func:`amendment_rows` call; ``{}`` when one is malformed (each is then encoded alone,
    the bad ones refused)."""
    try:
        if not amends or any(len(a.prior) != 32 or len(a.values) != 4 or not 0 <= a.slot < per_day
                             or not 0 <= a.revision < REVISION_LIMIT for a in amends):
            return {}
        device, day, revision, slot = (np.array([getattr(a, f) for a in amends])
                                        for f in ("device_id", "day", "revision", "slot"))
        blob = amendment_rows(device, day, revision, slot,
                              np.array([a.values for a in amends], np.int64),
                              b"".join(a.prior for a in amends))
    except (ValueError, TypeError, OverflowError, AttributeError):
        return {}
    n = ROW_LEN_AMENDMENT
    return {id(a): blob[k * n:(k + 1) * n] for k, a in enumerate(amends)}
