"""Daily signing on chain (``market.signing: daily``, :mod:`twin.market.signing_daily`): a
device's signed day schedule is verified once by the library ``DailySchedules`` (behind
EnergyMarket's fallback), which keeps its Merkle root; each relayed order then carries its
slot's proof and is placed without an ecrecover. A layer of
:class:`~twin.chain.ledger.ChainLedger`; the reference ledger's counterpart is
:class:`twin.market.reference_daily.ReferenceDaily` (same hashes, same refusals)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np

from twin.chain.ledger_settlement import SettlingLedger, _fn
from twin.market import errors as e
from twin.market.provisional import TrueUp
from twin.market.schedule_merkle import depth_of, schedule_levels, schedule_proof, schedules_levels
from twin.market.signing import Rejection
from twin.market.signing_daily import (
    ScheduledOrder,
    SignedAmendment,
    SignedDailyReadings,
    SignedSchedule,
    slots_per_day,
)
from twin.market.types import OPERATOR_ACCOUNT, Order, SettlementRow, Side

__all__ = ["DAILY_READINGS_CHUNK", "SCHEDULED_ORDER_CHUNK", "DailyLedger"]

_W = 2**256
#: scheduled orders a relaySchedules transaction carries (with the schedules they need: a
#: device's first schedule of a day costs ~75,000 gas, an order ~45,000)
SCHEDULED_ORDER_CHUNK = 120
#: daily readings batches a trueUpDaily transaction carries (~1 M gas a device-day of 96
#: provisional settlements, each a cold read and a write)
DAILY_READINGS_CHUNK = 12
_DAILY_FUNCTIONS = (_fn("relaySchedules", "uint256[]", "uint256[]"), _fn("trueUpDaily", "uint256[]"))

_Item = SignedSchedule | SignedAmendment
#: a device's schedule as the chain has (or will have) it: day, revision, grid, tree levels
_State = tuple[int, int, np.ndarray, list[list[bytes]] | None]


class DailyLedger(SettlingLedger):
    """Scheduled orders (see the module docstring)."""

    @property
    def per_day(self) -> int:
        return slots_per_day(self._interval_s)

    @property
    def _daily_market(self) -> Any:
        """The market's address under DailySchedules' ABI (its fallback runs it)."""
        c = getattr(self, "_daily_contract", None)
        if c is None:
            c = self.w3.eth.contract(address=self.market.address, abi=[
                *self.compiled["DailySchedules"].abi, *_DAILY_FUNCTIONS])
            self._daily_contract = c
        return c

    def schedule_of(self, device_id: int) -> tuple[int, int, bytes, bytes]:
        """The device's verified schedule on chain: day, revision, the Merkle root's top 160
        bits (zero-padded to 32 bytes: what the contract keeps), hashStruct."""
        day, rev, root, head = self._daily_market.functions.scheduleOf(device_id).call()
        return int(day), int(rev), bytes(root), bytes(head)

    def _verified(self) -> dict[int, _State]:
        v: dict[int, _State] | None = getattr(self, "_daily_verified", None)
        if v is None:
            v = {}
            self._daily_verified: dict[int, _State] = v
        return v

    def place_scheduled_orders(self, orders: Sequence[ScheduledOrder], *,
                               sender: int | None = None, strict: bool = True,
                               chunk_size: int = SCHEDULED_ORDER_CHUNK) -> list[Order]:
        """Relay orders with their devices' signed day schedules (``relaySchedules``, by
        default as the operator); as the reference ledger's ``place_scheduled_orders``: a
        failing order is skipped and reported in :attr:`rejected` (``strict``: the first
        rejection raised once the batch went through). Each transaction carries the new
        schedules and amendments its orders need (the contract verifies each once)."""
        self.rejected = []
        if not orders:
            return []
        self._reject_malformed([so.intent for so in orders], "place_scheduled_orders")
        placed: list[Order] = []
        for lo in range(0, len(orders), chunk_size):
            part = orders[lo:lo + chunk_size]
            got, rej = self._relay(part, sender=OPERATOR_ACCOUNT if sender is None else sender)
            placed += got
            self.rejected += [Rejection(lo + r.index, r.order, r.error) for r in rej]  # type: ignore[arg-type]
        self.rejected.sort(key=lambda r: r.index)
        if strict and self.rejected:
            raise self.rejected[0].error
        return placed

    def _items(self, orders: Sequence[ScheduledOrder]) -> list[_Item]:
        """The batch's schedules and amendments newer than the chain's verified revision of
        their device, in the reference's order (device, day, revision, amendment last)."""
        have = self._verified()
        new: dict[int, _Item] = {}
        for so in orders:
            for s in (*so.amends, so.schedule):
                h = have.get(s.device_id)
                if h is None or (h[0], h[1]) < (s.day, s.revision):
                    new.setdefault(id(s), s)
        return sorted(new.values(), key=lambda s: (s.device_id, s.day, s.revision,
                                                    type(s) is SignedAmendment))

    def _relay(self, orders: Sequence[ScheduledOrder], *,
               sender: int) -> tuple[list[Order], list[Rejection]]:
        per_day = self.per_day
        depth = depth_of(per_day)
        items = self._items(orders)
        state: dict[int, _State] = dict(self._verified())  # candidates, item by item
        after: list[_State] = []
        words: list[int] = []
        index: dict[int, int] = {}
        full = [s for s in items if type(s) is SignedSchedule]
        grids = [np.array(s.orders, np.int64).reshape(per_day, 4) for s in full]  # type: ignore[union-attr]
        trees = dict(zip(map(id, full), zip(grids, schedules_levels(np.stack(grids)) if grids else [],
                                            strict=True), strict=True))  # one batch of trees
        for i, s in enumerate(items):
            index[id(s)] = i
            sig = s.signature if len(s.signature) == 65 else bytes(65)
            rsv = [int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:64], "big"), sig[64]]
            if type(s) is SignedSchedule:
                grid, levels = trees[id(s)]
                words += [0, s.device_id, s.day, s.revision, int.from_bytes(levels[-1][0], "big"), *rsv]
                state[s.device_id] = (s.day, s.revision, grid, levels)
            else:
                a: SignedAmendment = s  # type: ignore[assignment]
                cur = state.get(a.device_id)
                slot = a.slot if 0 <= a.slot < per_day else 0
                if cur is not None and cur[0] == a.day and cur[1] + 1 == a.revision:
                    grid = cur[2].copy()
                    levels = cur[3] if cur[3] is not None else schedule_levels(cur[2])
                    old = [int(x) for x in grid[slot]]
                    proof = schedule_proof(levels, slot)
                    grid[slot] = a.values
                    state[a.device_id] = (a.day, a.revision, grid, None)
                else:  # refused on chain as BrokenAmendment before its proof is read
                    old, proof = [0] * 4, [bytes(32)] * depth
                words += [1, a.device_id, a.day, a.revision, a.slot, *(v % _W for v in a.values),
                          int.from_bytes(a.prior, "big"), *(v % _W for v in old), *rsv,
                          *(int.from_bytes(p, "big") for p in proof)]
            after.append(state[s.device_id])
        owords: list[int] = []
        for so in orders:
            it, s = so.intent, so.schedule
            cur = state.get(s.device_id)  # the relayed schedule's tree (another device's: refused)
            other, proof = (0, 0), [bytes(32)] * depth
            slot = it.interval - s.day * per_day
            if cur is not None and (cur[0], cur[1]) == (s.day, s.revision) and 0 <= slot < per_day:
                if cur[3] is None:
                    state[s.device_id] = cur = (cur[0], cur[1], cur[2], schedule_levels(cur[2]))
                row = cur[2][slot].tolist()
                other = (row[2], row[3]) if it.side == Side.BUY else (row[0], row[1])
                proof = schedule_proof(cur[3], slot)  # type: ignore[arg-type]
            owords += [it.device_id, it.interval, int(it.side), it.energy_wh % _W,
                       it.price_per_mwh % _W, s.day, s.revision, other[0] % _W, other[1] % _W,
                       index.get(id(s), -1) + 1, *(int.from_bytes(p, "big") for p in proof)]
        intervals = {so.intent.interval for so in orders}
        events = self._transact(
            self._daily_market, "relaySchedules", [words, owords], sender=sender,
            interval=next(iter(intervals)) if len(intervals) == 1 else None,
            purpose=f"place_scheduled_orders: {len(items)} schedules/amendments, {len(orders)} orders",
        )  # fmt: skip
        failed = {(int(v["device"]), int(v["day"]), int(v["revision"]))
                  for name, v in events if name == "ScheduleRejected"}
        have = self._verified()
        for s, st in zip(items, after, strict=True):
            if (s.device_id, s.day, s.revision) not in failed:
                have[s.device_id] = st
        rejected: list[Rejection] = []
        early = [v for name, v in events if name == "ScheduledOrderRejected"]
        skipped = {int(v["position"]) for v in early}
        passed = [k for k in range(len(orders)) if k not in skipped]
        for name, v in events:
            if name not in ("ScheduledOrderRejected", "OrderRejected"):
                continue
            k = int(v["position"]) if name == "ScheduledOrderRejected" else passed[int(v["position"])]
            err = self.tx.revert_error(
                {"data": "0x" + bytes(v["reason"]).hex()}, tx_hash=None,
                purpose=(f"place_scheduled_orders: order for device {v['device']} interval "
                         f"{v['interval']} nonce {v['nonce']}"), error_context=None)
            if not isinstance(err, e.MarketError):
                raise err
            rejected.append(Rejection(k, orders[k], err))  # type: ignore[arg-type]
        return self._booked(events, len(orders) - len(rejected)), rejected

    # --- readings -------------------------------------------------------------------------
    def settle_relayed(self, interval: int, metered_wh: Mapping[int, int], *,
                       sender: int | None = None) -> list[SettlementRow]:
        """Settle ``interval`` provisionally on the operator's relayed (unsigned) readings
        (ProvisionalSettlement's estimates); each device's signed daily batch trues it up
        (:meth:`true_up_daily`)."""
        return self.settle(interval, {}, sender=sender, estimated_wh=metered_wh)

    def true_up_daily(self, batches: Sequence[SignedDailyReadings], *, sender: int | None = None,
                      chunk_size: int = DAILY_READINGS_CHUNK) -> list[TrueUp]:
        """``trueUpDaily``: each device's signed readings of a day, verified once on chain,
        true up the intervals it was settled on relayed readings that differ (the reference
        ledger's ``true_up_daily``). Returns the true-ups that moved energy."""
        per_day = self.per_day
        out: list[TrueUp] = []
        for lo in range(0, len(batches), chunk_size):
            words: list[int] = []
            part = batches[lo:lo + chunk_size]
            for b in part:
                sig = b.signature if len(b.signature) == 65 else bytes(65)
                wh = np.asarray(b.metered_wh, np.int64).reshape(-1)
                if wh.size != per_day:
                    raise e.BadReadings(b.device_id, purpose=f"true_up_daily: device {b.device_id} "
                                        f"has {wh.size} readings, a day has {per_day}")
                words += [b.device_id, b.day, int.from_bytes(sig[:32], "big"),
                          int.from_bytes(sig[32:64], "big"), sig[64], *(v % _W for v in wh.tolist())]
            events = self._transact(
                self._daily_market, "trueUpDaily", [words],
                sender=OPERATOR_ACCOUNT if sender is None else sender,
                purpose=f"true_up_daily: {len(part)} daily readings batches",
            )  # fmt: skip
            out += [TrueUp(interval=t["interval"], device_id=t["device"], owner=cast(int, t["owner"]),
                           estimated_wh=t["estimatedWh"], metered_wh=t["meteredWh"],
                           delta_wh=t["meteredWh"] - t["estimatedWh"], amount=t["amount"],
                           paid=t["paid"], debt=t["debt"])
                    for name, t in events if name == "TruedUp"]
        return out
