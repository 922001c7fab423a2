"""Settlement on chain: meter readings (plain or device-signed), in one transaction or
bounded chunks after a dry run, resumable; settlement rows from the logs; a layer of
:class:`~twin.chain.ledger.ChainLedger`."""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

from twin.chain.abi import decode_static
from twin.chain.chunks import plan_settlement
from twin.chain.ledger_base import (
    INTERVAL_STATE,
    SETTLE_CHUNK_DEVICES,
    SETTLE_CHUNK_TRADES,
    STATUS,
    UINT64,
)
from twin.chain.ledger_clearing import OUT_OF_GAS_RETRIES, RESUMABLE, ClearingLedger
from twin.chain.tx import ChainRevert
from twin.market import errors as e
from twin.market.provisional import TrueUp
from twin.market.signing import SignedReading
from twin.market.types import OPERATOR_ACCOUNT, SettlementRow

__all__ = ["SettlingLedger"]


class SettlingLedger(ClearingLedger):
    """Settlement (see :class:`~twin.chain.ledger.ChainLedger`)."""

    # --- settlement -------------------------------------------------------------------
    def settle(
        self,
        interval: int,
        metered_wh: Mapping[int, int],
        *,
        sender: int | None = None,
        chunk_trades: int | None = None,
        chunk_devices: int | None = None,
        estimated_wh: Mapping[int, int] | None = None,
    ) -> list[SettlementRow]:
        """Settle on meter readings: one ``settle`` transaction when the interval has at most
        ``chunk_trades`` trades and ``chunk_devices`` readings (defaults: the ledger's
        ``settle_chunk_trades`` / ``settle_chunk_devices``), else bounded ``settleChunk``
        transactions (:func:`twin.chain.chunks.plan_settlement`) after a dry run of the
        whole settlement's checks (``checkSettlement``).

        An interval left "settling" by an interrupted chunk sequence is resumed from the
        contract's cursor (pass the same readings: those already settled are skipped); the
        rows returned are those of every chunk.

        ``estimated_wh``: devices without a reading, settled provisionally on the operator's
        estimate (``settleProvisionalChunk`` of library ProvisionalSettlement; :meth:`true_up`
        settles the real reading later)."""
        devices = sorted(metered_wh)
        for d in devices:
            if not 0 <= d < UINT64:
                raise e.UnknownDevice(d, purpose=f"settle: interval {interval}")
        if estimated_wh:  # real readings stated by the operator (v = 1), estimates v = 0
            return self._settle_provisional(
                interval, {d: (metered_wh[d], (b"", b"", 1)) for d in devices}, estimated_wh,
                sender=sender, chunk_trades=chunk_trades, chunk_devices=chunk_devices)
        return self._settle_chunked(
            interval, devices, [metered_wh[d] for d in devices], None, sender=sender,
            chunk_trades=chunk_trades, chunk_devices=chunk_devices,
        )  # fmt: skip

    def _settle_provisional(
        self, interval: int, readings: Mapping[int, tuple[int, tuple[bytes, bytes, int]]],
        estimated_wh: Mapping[int, int], *, sender: int | None, chunk_trades: int | None,
        chunk_devices: int | None,
    ) -> list[SettlementRow]:
        """Readings (device -> (Wh, (r, s, v))) and estimates (v = 0) merged by device id."""
        where = f"settle: interval {interval}"
        merged = dict(readings)
        for d, wh in estimated_wh.items():
            if not 0 <= d < UINT64:
                raise e.UnknownDevice(d, purpose=where)
            if d in merged:
                raise e.BadReadings(d, purpose=f"{where}: device {d} has a reading and an estimate")
            merged[d] = (int(wh), (b"", b"", 0))
        devices = sorted(merged)
        return self._settle_chunked(
            interval, devices, [merged[d][0] for d in devices], [merged[d][1] for d in devices],
            sender=sender, chunk_trades=chunk_trades, chunk_devices=chunk_devices,
            provisional=True,
        )  # fmt: skip

    def _settle_chunked(
        self,
        interval: int,
        devices: list[int],
        metered: list[int],
        sigs: list[tuple[bytes, bytes, int]] | None,
        *,
        sender: int | None,
        chunk_trades: int | None,
        chunk_devices: int | None,
        provisional: bool = False,
    ) -> list[SettlementRow]:
        signed = sigs is not None and not provisional
        what = "settle_signed" if signed else "settle"
        kind = "signed readings" if signed else "meter readings"
        if provisional:
            kind += " and estimates"
        who = OPERATOR_ACCOUNT if sender is None else sender
        reading_kind = "settle_reading_signed" if signed else "settle_reading"
        per_trades = chunk_trades or self.settle_chunk_trades or self._chunk_size(
            "settle_trade", SETTLE_CHUNK_TRADES)
        per_devices = chunk_devices or self.settle_chunk_devices or self._chunk_size(
            reading_kind, SETTLE_CHUNK_DEVICES)
        state = self._view(self.market, "intervals", [interval], INTERVAL_STATE)
        n_trades = int(state[6])
        fixed = bool(chunk_trades or chunk_devices or self.settle_chunk_trades
                     or self.settle_chunk_devices)
        one = None if fixed else self.gas_sizes.fits(
            {"settle_trade": (n_trades, 0), reading_kind: (len(devices), 0)})
        prunes = self._send_prunes(before=interval)  # in the settlement's block
        try:
            for attempt in range(OUT_OF_GAS_RETRIES + 1):
                try:
                    rows = self._settle_sent(
                        interval, devices, metered, sigs, who=who, what=what, kind=kind,
                        state=state, per_trades=per_trades, per_devices=per_devices,
                        provisional=provisional, signed=signed, one=one,
                        reading_kind=reading_kind, sequential=not fixed)
                    break
                except (ChainRevert, e.CursorMismatch) as exc:  # resumed from the cursor
                    if exc.name not in RESUMABLE or attempt == OUT_OF_GAS_RETRIES:
                        raise
                    one = False
                    state = self._view(self.market, "intervals", [interval], INTERVAL_STATE)
        finally:  # confirmed even when the settlement fails: nothing stays in the node's pool
            self._confirm_prunes(prunes)
        if self.prune_settled:
            self._unpruned.append((interval, int(state[5]), n_trades, int(state[3]) + int(state[4]),
                                   self._last_block))
        if self.compact_node is not None and self._freed_slots >= self.compact_after_slots:
            self._compact_node()
        return rows

    def _settle_sent(
        self, interval: int, devices: list[int], metered: list[int],
        sigs: list[tuple[bytes, bytes, int]] | None, *, who: int, what: str, kind: str,
        state: Sequence[Any], per_trades: int, per_devices: int, provisional: bool, signed: bool,
        one: bool | None = None, reading_kind: str = "settle_reading", sequential: bool = False,
    ) -> list[SettlementRow]:
        """``one``: whether one transaction fits by gas (None: decide by the chunk counts)."""
        n_trades = int(state[6])
        resume = STATUS[state[0]] == "settling"  # an interrupted chunk sequence
        fn, contract = "settleProvisionalChunk", self.market
        if provisional:  # ProvisionalSettlement via the market's fallback, in chunks
            assert sigs is not None
            contract = self._provisional_market
            sigs = [(r.rjust(32, b"\0"), s.rjust(32, b"\0"), v) for r, s, v in sigs]
        by_count = n_trades <= per_trades and len(devices) <= per_devices
        if not resume and (by_count if one is None else one) and not provisional:
            args: list[Any] = [interval, devices, metered] + ([sigs] if signed else [])
            events = self._transact(
                self.market, "settleSigned" if signed else "settle", args,
                sender=who, interval=interval,
                purpose=f"{what}: interval {interval} ({len(devices)} {kind})",
            )  # fmt: skip
        else:
            purpose = f"{what}: interval {interval} ({len(devices)} {kind}, {n_trades} trades)"
            # the whole plan must be able to complete, else nothing is sent
            self.tx.dry_run(self.market, "checkSettlement",
                            [interval, devices, metered, sigs if signed else [], signed],
                            sender=who, purpose=purpose)
            paid = start = n_read = 0
            if resume:  # continue from the cursor: readings up to its last device are settled
                paid, n_read, last = self._view(
                    self._provisional_market, "settlementProgress", [interval], ("uint256",) * 3
                )
                start = bisect.bisect_right(devices, last) if n_read else 0
            plan = plan_settlement(
                n_trades=n_trades - paid, n_readings=len(devices) - start,
                chunk_trades=per_trades, chunk_devices=per_devices, at=paid + n_read,
            )  # fmt: skip
            events = []
            left = n_trades - paid

            def confirm(c: Any, p: Any) -> list[tuple[str, dict[str, Any]]]:
                nonlocal left  # each receipt teaches the gas sizes
                if c.max_trades and c.stop == c.start:
                    done = min(c.max_trades, left)
                    left -= done
                    return self._finish(p, kind="settle_trade", items=done)
                if c.stop > c.start and not c.max_trades and not provisional:
                    return self._finish(p, kind=reading_kind, items=c.stop - c.start)
                return self._finish(p)

            pending = []
            for k, c in enumerate(plan):
                cut = slice(start + c.start, start + c.stop)
                part: list[Any] = [interval, c.at, c.max_trades, devices[cut], metered[cut]]
                if provisional and sigs is not None:
                    part += [[x[i] for x in sigs[cut]] for i in range(3)]  # rs, ss, vs
                elif sigs is not None:
                    part.append(sigs[cut])
                pending.append((c, self._send(
                    contract,
                    fn if provisional else "settleSignedChunk" if signed else "settleChunk",
                    [*part, c.last], sender=who, interval=interval,
                    purpose=(
                        f"{what}: interval {interval} chunk {k + 1}/{len(plan)} "
                        f"({c.max_trades} trades, {c.stop - c.start} {kind})"
                    ),
                )))  # fmt: skip
                if sequential:  # sized by gas: each confirmed before the next is sized
                    events += confirm(*pending.pop())
            for k, (c, p) in enumerate(pending):  # fixed counts: all sent, confirmed in order
                try:
                    events += confirm(c, p)
                except (ChainRevert, e.MarketError):
                    for _, q in pending[k + 1:]:  # behind it: each reverts CursorMismatch
                        try:
                            self._finish(q)
                        except (ChainRevert, e.MarketError):
                            pass
                    raise
            if resume:  # the rows of every chunk, the earlier ones included
                events = self._logs(["Settled"], topic1=interval)
        self._cleared_trades.pop(interval, None)
        return self._settlement_rows(events)

    # --- freeing settled intervals' storage (library IntervalPruning) -------------------
    def _send_prunes(self, *, before: int) -> list[Any]:
        """Send ``pruneInterval`` for the intervals settled by this ledger before ``before``
        (their services ran since: certificates read the market's trades and injections):
        their orders, usage, positions, injections and trades are freed, the events stay their
        record. Sent, not confirmed: they share the settlement's block. An interval whose
        settlement a test's ``evm_revert`` undid is dropped."""
        todo = [u for u in self._unpruned if u[0] < before]
        pending = self._send_void_prunes() if self._void_unpruned else []
        if not todo:
            return pending
        self._unpruned = [u for u in self._unpruned if u[0] >= before]
        books = {k: self._pruning_book.pop(k) for k in [k for k in self._pruning_book if k < before]}
        for interval, first, n_trades, n_orders, mark in todo:
            if not self._canonical(mark):
                continue
            # the book this ledger cleared (as clear(): used while nobody else placed orders
            # and its block stands), else the OrdersPlaced logs; the book also names orders
            # placed more than KEEP_TX_BLOCKS blocks ago, whose logs the node dropped
            book = books.get(interval)
            if book is not None and len(book[0]) == n_orders and self._canonical(book[1]):
                orders = book[0]
            else:
                orders = self.orders(interval)
            ids = [o.order_id for o in orders]
            devices = sorted({o.device_id for o in orders})
            plan = _prune_plan(len(ids), len(devices), n_trades,
                               slots=self._chunk_size("prune", PRUNE_SLOTS))
            self._freed_slots += len(ids) + 4 * len(devices) + 2 * n_trades
            for k, (oi, di, ti) in enumerate(plan):
                pending.append(self._send(
                    self._provisional_market, "pruneInterval",
                    [interval, ids[oi], devices[di], first + ti.start, first + ti.stop],
                    sender=OPERATOR_ACCOUNT, interval=interval,
                    purpose=(f"prune: interval {interval} part {k + 1}/{len(plan)} "
                             f"({len(ids[oi])} orders, {len(devices[di])} devices, "
                             f"{ti.stop - ti.start} trades)")))
                self._prune_slots[pending[-1].tx_hash] = (
                    len(ids[oi]) + 4 * len(devices[di]) + 2 * (ti.stop - ti.start))
        return pending

    def _confirm_prunes(self, prunes: Sequence[Any]) -> None:
        """Confirm the prunes sent with a settlement; each sized one's receipt teaches its gas
        per slot. Parts free an interval's trades in order: behind a part that reverted (out of
        its gas limit) the later ones revert CursorMismatch, and every reverted part is sent
        again once, one at a time (freeing is idempotent), before an error is raised."""
        failed: list[tuple[Any, ChainRevert | e.MarketError]] = []
        for p in prunes:
            slots = self._prune_slots.pop(p.tx_hash, 0)
            try:
                self._finish(p, kind="prune" if slots else None, items=slots)
            except (ChainRevert, e.MarketError) as err:
                failed.append((p, err))
        for p, why in failed:
            if why.name not in RESUMABLE:
                raise why
            self._finish(self.tx.send(self._provisional_market, "pruneInterval", [],
                                      calldata=p.tx["data"], sender=p.sender,
                                      purpose=f"{p.purpose} (again)", interval=p.interval))

    def _send_void_prunes(self) -> list[Any]:
        """``pruneInterval`` for each interval voided by a reclaim here, in one call naming
        all its orders, once its last buy order's escrow is reclaimed (a dry run says so:
        BadOrderList until then, and the interval waits for a later settlement)."""
        pending: list[Any] = []
        waiting = []
        for interval, mark in self._void_unpruned:
            if not self._canonical(mark):
                continue
            state = self._view(self.market, "intervals", [interval], INTERVAL_STATE)
            book = self._book.get(interval)
            if book is not None and len(book[0]) == state[3] + state[4] and self._canonical(book[1]):
                orders = book[0]
            else:
                orders = self.orders(interval)
            devices = sorted({o.device_id for o in orders})
            args: list[Any] = [interval, sorted(o.order_id for o in orders), devices, 0, 0]
            what = f"prune: void interval {interval} ({len(orders)} orders)"
            try:
                self.tx.dry_run(self._provisional_market, "pruneInterval", args,
                                sender=OPERATOR_ACCOUNT, purpose=what)
            except e.BadOrderList:  # escrow not all reclaimed yet
                waiting.append((interval, mark))
                continue
            self._book.pop(interval, None)
            self._freed_slots += len(orders) + 4 * len(devices)
            pending.append(self._send(self._provisional_market, "pruneInterval", args,
                                      sender=OPERATOR_ACCOUNT, interval=interval, purpose=what))
        self._void_unpruned = waiting
        return pending

    @staticmethod
    def _settlement_rows(events: Sequence[tuple[str, dict[str, Any]]]) -> list[SettlementRow]:
        return [
            SettlementRow(
                interval=v["interval"],
                device_id=v["device"],
                owner=cast(int, v["owner"]),
                traded_wh=v["tradedWh"],
                metered_wh=v["meteredWh"],
                imbalance_wh=v["imbalanceWh"],
                trade_amount=v["tradeAmount"],
                imbalance_amount=v["imbalanceAmount"],
                debt=v["debt"],
            )
            for name, v in events
            if name == "Settled"
        ]

    def settle_signed(
        self,
        interval: int,
        readings: Sequence[SignedReading],
        *,
        sender: int | None = None,
        chunk_trades: int | None = None,
        chunk_devices: int | None = None,
        estimated_wh: Mapping[int, int] | None = None,
    ) -> list[SettlementRow]:
        """``settleSigned`` (or bounded ``settleSignedChunk`` calls, as in :meth:`settle`):
        settle on meter readings each signed by its device's key; ``estimated_wh`` as in
        :meth:`settle`."""
        by_device = sorted(readings, key=lambda r: r.device_id)
        for r in by_device:
            if not 0 <= r.device_id < UINT64:
                raise e.UnknownDevice(r.device_id, purpose=f"settle_signed: interval {interval}")
            if len(r.signature) != 65:
                raise e.BadSignature(r.device_id, purpose=f"settle_signed: interval {interval}")
        if estimated_wh:
            if len({r.device_id for r in by_device}) != len(by_device):
                raise e.BadReadings(len(by_device), purpose=f"settle_signed: interval {interval}")
            return self._settle_provisional(
                interval, {r.device_id: (r.metered_wh, _rsv(r.signature)) for r in by_device},
                estimated_wh, sender=sender, chunk_trades=chunk_trades, chunk_devices=chunk_devices)
        return self._settle_chunked(
            interval,
            [r.device_id for r in by_device],
            [r.metered_wh for r in by_device],
            [(r.signature[:32], r.signature[32:64], r.signature[64]) for r in by_device],
            sender=sender, chunk_trades=chunk_trades, chunk_devices=chunk_devices,
        )  # fmt: skip

    def settlement_rows(self, interval: int) -> list[SettlementRow]:
        """An interval's settlement rows (device id order), from the logs."""
        return self._settlement_rows(self._logs(["Settled"], topic1=interval))

    # --- provisional settlements and true-ups (library ProvisionalSettlement) ----------
    @property
    def _provisional_market(self) -> Any:
        """The market's address under ProvisionalSettlement's ABI (its fallback runs it)."""
        c = getattr(self, "_provisional_contract", None)
        if c is None:
            c = self.w3.eth.contract(address=self.market.address, abi=[
                *self.compiled["ProvisionalSettlement"].abi, *_PROVISIONAL_FUNCTIONS])
            self._provisional_contract = c
        return c

    def true_up(self, interval: int, device_id: int, metered_wh: int, *,
                sender: int | None = None) -> TrueUp:
        """Settle the difference between a provisional estimate and the real reading (stated
        by the operator), once: ``trueUp`` (the rules of :mod:`twin.market.provisional`)."""
        return self._true_up(interval, device_id, metered_wh, (b"", b"", 1), sender=sender)

    def true_up_signed(self, reading: SignedReading, *, sender: int | None = None) -> TrueUp:
        """:meth:`true_up` on the device-signed real reading."""
        if len(reading.signature) != 65:
            raise e.BadSignature(reading.device_id,
                                 purpose=f"true_up_signed: interval {reading.interval}")
        return self._true_up(reading.interval, reading.device_id, reading.metered_wh,
                             _rsv(reading.signature), sender=sender)

    def _true_up(self, interval: int, device_id: int, metered_wh: int,
                 sig: tuple[bytes, bytes, int], *, sender: int | None) -> TrueUp:
        what = f"true_up: interval {interval} device {device_id}"
        if not (0 <= interval < UINT64 and 0 <= device_id < UINT64):
            raise e.NotProvisional(device_id, interval, purpose=what)
        r, s, v = sig
        events = self._transact(
            self._provisional_market, "trueUp",
            [interval, device_id, int(metered_wh), r.rjust(32, b"\0"), s.rjust(32, b"\0"), v],
            sender=OPERATOR_ACCOUNT if sender is None else sender, interval=interval, purpose=what,
        )  # fmt: skip
        t = next(v for name, v in events if name == "TruedUp")
        return TrueUp(interval=t["interval"], device_id=t["device"], owner=cast(int, t["owner"]),
                      estimated_wh=t["estimatedWh"], metered_wh=t["meteredWh"],
                      delta_wh=t["meteredWh"] - t["estimatedWh"], amount=t["amount"],
                      paid=t["paid"], debt=t["debt"])

    def provisional(self, also: Iterable[tuple[int, int]] = ()) -> dict[tuple[int, int], int]:
        """``(interval, device) -> estimate_wh`` settled provisionally, not yet trued up.

        The ProvisionalSettled/TruedUp logs name the candidates; each candidate, and each of
        ``also`` (e.g. the estimates a resumed run's meter desk holds open), is then read from
        the contract's storage (``provisionalState``), so an estimate whose log fell out of
        the node's receipt window (``--transaction-block-keeper``) is still found."""
        keys = {(int(v["interval"]), int(v["device"]))
                for _, v in self._logs(["ProvisionalSettled", "TruedUp"])}
        keys.update((int(i), int(d)) for i, d in also)
        order = sorted(keys)
        # one JSON-RPC batch of eth_calls (tx_batch), not a round trip per key
        raw = self.tx.call_many(self._provisional_market, "provisionalState",
                                [list(k) for k in order])
        out: dict[tuple[int, int], int] = {}
        for key, answer in zip(order, raw, strict=True):
            state, estimate_wh = decode_static(("uint8", "int256"), answer)
            if state == 1:  # settled on the estimate, not trued up
                out[key] = int(estimate_wh)
        return out


#: Slots one pruneInterval call frees at most before the run's first receipt of one (about
#: 5 k gas each: a cold read and a reset), so a call stays near 10 M gas, a third of a block;
#: from then on sized by gas (twin.chain.gas_size: 80 % of the block).
PRUNE_SLOTS = 2_000


def _prune_plan(n_orders: int, n_devices: int, n_trades: int, *, slots: int = PRUNE_SLOTS
                ) -> list[tuple[slice, slice, range]]:
    """Cut an interval's pruning into calls of at most ``slots`` slots (an order one, a
    device four: usage, two position slots, injection; a trade two: itself and its island
    price): orders, devices and trades each in consecutive pieces."""
    parts = max(1, -(-(n_orders + 4 * n_devices + 2 * n_trades) // max(1, slots)))

    def cut(n: int, k: int) -> tuple[int, int]:
        return n * k // parts, n * (k + 1) // parts

    out = []
    for k in range(parts):
        o, d, t = cut(n_orders, k), cut(n_devices, k), cut(n_trades, k)
        out.append((slice(*o), slice(*d), range(*t)))
    return out


def _fn(name: str, *types: str) -> dict[str, Any]:
    return {"type": "function", "name": name, "stateMutability": "nonpayable", "outputs": [],
            "inputs": [{"name": f"a{k}", "type": t} for k, t in enumerate(types)]}


#: solc leaves a library's state-changing functions out of its ABI (plain ABI types here, so
#: their selectors are the usual ones)
_PROVISIONAL_FUNCTIONS = (
    _fn("settleProvisionalChunk", "uint64", "uint256", "uint256", "uint64[]", "int256[]", "bytes32[]",
        "bytes32[]", "uint8[]", "bool"),
    _fn("trueUp", "uint64", "uint64", "int256", "bytes32", "bytes32", "uint8"),
    _fn("clearBooks", "uint64", "uint32[]", "uint32[]", "uint64[]", "uint64[]"),
    _fn("releaseBond", "uint64"),
    _fn("finalizeEstimate", "uint64", "uint64"),
    _fn("advanceFinal", "uint256"),
    _fn("pruneInterval", "uint64", "uint64[]", "uint64[]", "uint256", "uint256"),
)


def _rsv(signature: bytes) -> tuple[bytes, bytes, int]:
    return signature[:32], signature[32:64], signature[64]
