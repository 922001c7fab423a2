"""Clearing on chain (uniform price, in one transaction or bounded chunks, resumable; the
continuous double auction), the DSO's envelopes and curtailment, and reading trades and
clearings from the logs; a layer of :class:`~twin.chain.ledger.ChainLedger`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from typing import Any

from twin.chain.cda_chunks import CDA_CHUNK, plan_cda
from twin.chain.chunks import ClearingChunk, plan_clearing
from twin.chain.ledger_base import (
    CLEAR_CHUNK_ORDERS,
    CLEAR_CHUNK_TRADES,
    CLEARING_PROGRESS,
    INTERVAL_STATE,
    STATUS,
    UINT64,
)
from twin.chain.ledger_orders import OrderLedger
from twin.chain.tx import ChainRevert
from twin.market import errors as e
from twin.market.cda import continuous_double_auction
from twin.market.clearing import match_orders
from twin.market.types import DSO_ACCOUNT, OPERATOR_ACCOUNT, Clearing, Order, Trade

__all__ = ["CURTAIL_CHUNK", "OUT_OF_GAS_RETRIES", "RESUMABLE", "ClearingLedger"]

#: times a clearing that ran out of gas is resumed with chunks sized by the raised gas figure
OUT_OF_GAS_RETRIES = 4
#: a chunk sequence stopped by these is resumed from the contract's cursor (nothing after the
#: failed chunk ran: each chunk names the cursor position it follows)
RESUMABLE = ("OutOfGas", "CursorMismatch")

#: Curtailments per curtailBatch transaction: about 75 k gas each with fresh slots
#: (bench/curtail_batch.py), so a chunk (about 11 M gas) stays well inside a 30 M gas block.
CURTAIL_CHUNK = 150


class ClearingLedger(OrderLedger):
    """Clearing, envelopes, curtailment (see :class:`~twin.chain.ledger.ChainLedger`)."""

    # --- clearing ---------------------------------------------------------------------
    def clear(
        self,
        interval: int,
        *,
        sender: int | None = None,
        chunk_orders: int | None = None,
        chunk_trades: int | None = None,
        wait: bool = True,
    ) -> Clearing:
        """Sort the interval's book off-chain, let the contract verify and match it.

        A book of at most ``chunk_orders`` orders with at most ``chunk_trades`` trades
        (defaults: the ledger's ``clear_chunk_orders`` / ``clear_chunk_trades``) clears in one
        ``clear`` transaction; a bigger one in bounded ``clearChunk`` transactions
        (:mod:`twin.chain.chunks`), all sent at once and confirmed in order.

        An interval left "clearing" by an interrupted chunk sequence is resumed from the
        contract's cursor: only the remaining chunks are sent (any chunk sizes).

        By default the sizes are by gas (:attr:`gas_sizes`): a transaction that still runs
        out of gas raises the gas figure and the clearing is resumed from the cursor. Chunks
        sent at once name the cursor position each follows: behind one that reverted they all
        revert ``CursorMismatch``, and the clearing resumes from the cursor the same way.

        An interval clears only after its gate closed (``GateOpen`` otherwise), so its book
        is final when the operator plans the clearing; with ``wait`` (default) the clock is
        first moved to one second after the gate, as an operator would wait for it."""
        for attempt in range(OUT_OF_GAS_RETRIES + 1):
            try:
                return self._clear(interval, sender=sender, chunk_orders=chunk_orders,
                                   chunk_trades=chunk_trades, wait=wait and not attempt)
            except (ChainRevert, e.CursorMismatch) as exc:  # resumed from the cursor
                if exc.name not in RESUMABLE or attempt == OUT_OF_GAS_RETRIES:
                    raise
        raise AssertionError("unreachable")

    def _clear(self, interval: int, *, sender: int | None, chunk_orders: int | None,
               chunk_trades: int | None, wait: bool) -> Clearing:
        if wait:
            self.wait_for_gate(interval)
        books = getattr(self, "_island_books", {}).pop(interval, None)
        if books is not None:
            return self._clear_books(interval, self.orders(interval), books, sender=sender)
        book: list[Order] | None = None
        cached = self._book.get(interval)
        state = self._view(self.market, "intervals", [interval], INTERVAL_STATE)
        if cached is not None and self._canonical(cached[1]):
            if state[3] + state[4] == len(cached[0]):  # nobody else placed orders
                book = cached[0]
        orders = self.orders(interval) if book is None else book
        if STATUS[state[0]] == "clearing" and self.mechanism != "cda":
            return self._resume_clearing(
                interval, orders, sender=sender, chunk_orders=self._clear_ids(chunk_orders),
                chunk_trades=self._clear_trades(chunk_trades),
                fixed=bool(chunk_orders or self.clear_chunk_orders),
            )  # fmt: skip
        if self.mechanism == "cda":
            return self._clear_cda(interval, orders, sender=sender, chunk=chunk_orders or CDA_CHUNK)
        result = match_orders(orders)
        size = self._clear_ids(chunk_orders)
        per_call = self._clear_trades(chunk_trades)
        fixed = bool(chunk_orders or self.clear_chunk_orders)
        n_fills = len(result.fills)
        one = self.gas_sizes.fits({"clear_id": (len(orders), n_fills),
                                   "clear_trade": (n_fills, 0)})
        by_count = len(orders) <= size and n_fills <= per_call
        if (by_count if one is None or fixed else one):
            try:
                return self.submit_clearing(
                    interval, bid_ids=result.bid_ids, ask_ids=result.ask_ids, sender=sender,
                    wait=wait,
                )
            except ChainRevert as exc:
                if exc.name == "OutOfGas":
                    self.gas_sizes.out_of_gas("clear_id", items=len(orders),
                                              gas_limit=int(exc.values["gas_limit"]))
                raise
        by_id = {o.order_id: o for o in orders}
        plan = plan_clearing(
            [by_id[i] for i in result.bid_ids], [by_id[i] for i in result.ask_ids],
            n_trades=len(result.fills), chunk_orders=size, chunk_trades=per_call,
            cut=None if fixed else self._clear_cut,
        )  # fmt: skip
        return self._cleared(interval, self._send_clearing(
            interval, plan, len(orders), sender, n_trades=len(result.fills),
            sequential=not fixed))

    def _clear_ids(self, chunk_orders: int | None) -> int:
        """Order ids per clearChunk: the argument, the ledger's fixed count, else by gas."""
        return chunk_orders or self.clear_chunk_orders or self._chunk_size(
            "clear_id", CLEAR_CHUNK_ORDERS)

    def _clear_cut(self, fills: Sequence[int]) -> int:
        """Ids of the next clearChunk sized by gas: per id, and per fill its id makes."""
        return self.gas_sizes.take("clear_id", fills, CLEAR_CHUNK_ORDERS)

    def _clear_trades(self, chunk_trades: int | None) -> int:
        """Trades priced per clearChunk: the argument, the ledger's fixed count, else by gas."""
        return chunk_trades or self.clear_chunk_trades or self._chunk_size(
            "clear_trade", CLEAR_CHUNK_TRADES)

    def _send_clearing(
        self, interval: int, plan: Sequence[ClearingChunk], n_orders: int, sender: int | None,
        what: str = "chunk", n_trades: int = 0, sequential: bool = False,
        label: tuple[int, int] | None = None,
    ) -> list[tuple[str, dict[str, Any]]]:
        """Send a clearing plan's ``clearChunk`` calls, confirm them in order; each receipt
        teaches the gas sizes (ids per chunk; trades priced, of ``n_trades`` left). A plan
        sized by gas (``sequential``) sends each call after the one before is confirmed: a
        call after one that ran out of gas would verify ids from the wrong place."""
        if sequential:
            out: list[tuple[str, dict[str, Any]]] = []
            for k, c in enumerate(plan):
                out += self._send_clearing(interval, [c], n_orders, sender, what=what,
                                           n_trades=n_trades, label=(k + 1, len(plan)))
                n_trades -= 0 if c.bid_ids or c.ask_ids else min(c.max_trades, n_trades)
            return out
        pending = [
            self._send(
                self.market, "clearChunk",
                [interval, n_orders, c.at, list(c.bid_ids), list(c.ask_ids), c.max_trades],
                sender=OPERATOR_ACCOUNT if sender is None else sender, interval=interval,
                purpose=(
                    f"clear: interval {interval} {what} "
                    f"{label[0] if label else k + 1}/{label[1] if label else len(plan)} "
                    f"({len(c.bid_ids)} bids, {len(c.ask_ids)} asks, {c.max_trades} trades)"
                ),
            )
            for k, c in enumerate(plan)
        ]  # fmt: skip
        events: list[tuple[str, dict[str, Any]]] = []
        left = n_trades
        for k, (c, p) in enumerate(zip(plan, pending, strict=True)):
            ids = len(c.bid_ids) + len(c.ask_ids)
            done = 0 if ids else min(c.max_trades, left)
            left -= done
            kind = "clear_id" if ids else "clear_trade" if c.max_trades else None
            try:
                events += self._finish(p, kind=kind, items=ids or done, extras=c.fills)
            except (ChainRevert, e.MarketError) as exc:
                if exc.name == "OutOfGas" and kind is not None:
                    self.gas_sizes.out_of_gas(kind, items=ids or done,
                                              gas_limit=int(exc.values["gas_limit"]))
                self._drain(pending[k + 1:])
                raise
        return events

    def _resume_clearing(
        self, interval: int, orders: Sequence[Order], *, sender: int | None,
        chunk_orders: int, chunk_trades: int, fixed: bool = True,
    ) -> Clearing:
        """Finish an interrupted chunked clearing from the contract's cursor (id chunks of
        ``chunk_orders``, or sized by gas unless ``fixed``)."""
        bids_seen, asks_seen, _done, _fills, finalized = (
            self._view(self._provisional_market, "clearingProgress", [interval],  # type: ignore[attr-defined]
                       CLEARING_PROGRESS)
        )
        result = match_orders(orders)
        by_id = {o.order_id: o for o in orders}
        plan = plan_clearing(
            [by_id[i] for i in result.bid_ids], [by_id[i] for i in result.ask_ids],
            n_trades=len(result.fills), chunk_orders=chunk_orders, chunk_trades=chunk_trades,
            bids_seen=bids_seen, asks_seen=asks_seen, finalized=finalized,
            cut=None if fixed else self._clear_cut,
        )  # fmt: skip
        events = self._send_clearing(interval, plan, len(orders), sender, what="resumed chunk",
                                     sequential=not fixed)
        cleared = [ev for ev in events if ev[0] == "Cleared"]  # trades: from every chunk
        return self._cleared(interval, self._logs(["TradeMatched"], topic2=interval) + cleared)

    def _clear_cda(
        self, interval: int, orders: Sequence[Order], *, sender: int | None, chunk: int
    ) -> Clearing:
        """Replay the CDA off-chain for the insertion hints, send bounded ``clearCda`` calls
        (:mod:`twin.chain.cda_chunks`), all at once, confirmed in order. Behind a call that
        reverted every later one reverts CursorMismatch; one that reverted first is sent again
        by :meth:`clear` (a CDA clearing stopped midway is not resumed: reclaim voids it)."""
        plan = plan_cda(continuous_double_auction(orders), chunk=chunk)
        pending = [
            self._send(
                self.market, "clearCda",
                [interval, len(orders), c.at, list(c.ids), list(c.hints), c.max_steps],
                sender=OPERATOR_ACCOUNT if sender is None else sender, interval=interval,
                purpose=f"clear: interval {interval} (cda) chunk {k + 1}/{len(plan)} "
                f"({len(c.ids)} orders, {c.max_steps} steps)",
            )
            for k, c in enumerate(plan)
        ]  # fmt: skip
        events: list[tuple[str, dict[str, Any]]] = []
        for k, p in enumerate(pending):
            try:
                events += self._finish(p)
            except (ChainRevert, e.MarketError):
                self._drain(pending[k + 1:])
                raise
        return self._cleared(interval, events)

    def _drain(self, pending: Sequence[Any]) -> None:
        """Confirm the chunks sent behind one that failed: each reverts CursorMismatch (the
        contract's cursor did not move), so nothing of them applied."""
        for q in pending:
            try:
                self._finish(q)
            except (ChainRevert, e.MarketError):
                pass

    def set_books(self, interval: int, books: Mapping[int, int], *, sender: int | None = None) -> None:
        """While the feeder is split into electrical islands the interval clears one book per
        island (``books``: device -> island book; the reference ledger's ``set_books``): the
        next :meth:`clear` of ``interval`` sends ``clearBooks`` (library IslandBooks behind the
        market's fallback), which checks every order is in exactly one sorted book, clears
        each at its own price and stores each trade's price (settlement and curtailment pay
        it). Every order of the interval must be of a device with a book."""
        if sender not in (None, OPERATOR_ACCOUNT):
            raise e.NotOperator(sender)
        if not hasattr(self, "_island_books"):
            self._island_books: dict[int, dict[int, int]] = {}
        self._island_books[interval] = {int(d): int(b) for d, b in books.items()}

    def _clear_books(self, interval: int, orders: Sequence[Order], books: Mapping[int, int], *,
                     sender: int | None) -> Clearing:
        """``clearBooks``: each island's sorted bids and asks, books in order (one transaction)."""
        stray = next((o for o in orders if o.device_id not in books), None)
        if stray is not None:
            raise e.BadAmount(stray.device_id, purpose=(
                f"clear: interval {interval}: order {stray.order_id} of device {stray.device_id} "
                "is in no island book"))
        n_bids: list[int] = []
        n_asks: list[int] = []
        bid_ids: list[int] = []
        ask_ids: list[int] = []
        for b in sorted({books[o.device_id] for o in orders}):
            r = match_orders([o for o in orders if books[o.device_id] == b])
            n_bids.append(len(r.bid_ids))
            n_asks.append(len(r.ask_ids))
            bid_ids += r.bid_ids
            ask_ids += r.ask_ids
        events = self._transact(  # the market's fallback runs ProvisionalSettlement.clearBooks
            self._provisional_market, "clearBooks",  # type: ignore[attr-defined]
            [interval, n_bids, n_asks, bid_ids, ask_ids],
            sender=OPERATOR_ACCOUNT if sender is None else sender, interval=interval,
            purpose=f"clear: interval {interval} ({len(n_bids)} island books, {len(bid_ids)} bids, "
                    f"{len(ask_ids)} asks)",
        )  # fmt: skip
        return self._cleared(interval, events)

    def wait_for_gate(self, interval: int) -> None:
        """Move the clock one second past the interval's gate if it is not past it yet."""
        gate = self.gate_s(interval)
        if self.now_s <= gate:
            self.set_time(gate + 1)
        elif self._block_now_s() <= gate:  # the chain went back (evm_revert) behind our clock
            self.force_time(gate + 1)

    def submit_clearing(
        self,
        interval: int,
        *,
        bid_ids: Sequence[int],
        ask_ids: Sequence[int],
        sender: int | None = None,
        wait: bool = True,
    ) -> Clearing:
        """Send ``clear`` with explicit sorted id lists (the contract verifies them), after
        the gate (``wait``, as in :meth:`clear`)."""
        if wait:
            self.wait_for_gate(interval)
        events = self._transact(
            self.market, "clear", [interval, list(bid_ids), list(ask_ids)],
            sender=OPERATOR_ACCOUNT if sender is None else sender, interval=interval,
            purpose=f"clear: interval {interval} ({len(bid_ids)} bids, {len(ask_ids)} asks)",
        )  # fmt: skip
        return self._cleared(interval, events)

    def _cleared(self, interval: int, events: Sequence[tuple[str, dict[str, Any]]]) -> Clearing:
        trades = tuple(self._trade(v) for name, v in events if name == "TradeMatched")
        cleared = next(v for name, v in events if name == "Cleared")
        book = self._book.pop(interval, None)
        self._ordering.pop(interval, None)
        if book is not None and self.prune_settled:  # its pruning needs the order ids
            self._pruning_book[interval] = book
        self._cleared_trades[interval] = ({t.trade_id: t for t in trades}, self._last_block)
        return Clearing(
            interval=interval,
            price_per_mwh=cleared["price"],
            volume_wh=cleared["volumeWh"],
            trades=trades,
        )

    def _trade(self, v: Mapping[str, Any]) -> Trade:
        """A ``TradeMatched`` event as a trade ticket: its creator is the owner of the later
        order's device, its creation time its block's timestamp on the market clock."""
        later = v["buyerDevice"] if v["buyOrder"] > v["sellOrder"] else v["sellerDevice"]
        block = v.get("_block")
        return Trade(
            trade_id=v["tradeId"],
            interval=v["interval"],
            buy_order_id=v["buyOrder"],
            sell_order_id=v["sellOrder"],
            buyer_device=v["buyerDevice"],
            seller_device=v["sellerDevice"],
            cleared_wh=v["energyWh"],
            energy_wh=v["energyWh"],
            price_per_mwh=v["price"],
            creator=self.device(later).owner,
            created_s=self.now_s if block is None else self._block_time_s(int(block), v.get("_block_hash", "")),
        )

    # --- DSO operating envelopes -------------------------------------------------------
    def set_envelopes(self, interval: int, *, export_wh: Mapping[int, int], import_wh: Mapping[int, int],
                      sender: int | None = None) -> None:
        """``EnergyMarket.setEnvelopes``: one transaction for every device (same rules as the
        reference ledger: orders beyond revert with EnvelopeExceeded)."""
        if set(export_wh) != set(import_wh):
            raise e.BadAmount(len(export_wh), purpose="set_envelopes: export and import name different devices")
        devices = sorted(export_wh)
        self._transact(
            self.market, "setEnvelopes",
            [interval, devices, [int(export_wh[d]) for d in devices], [int(import_wh[d]) for d in devices]],
            sender=DSO_ACCOUNT if sender is None else sender, interval=interval,
            purpose=f"set_envelopes: interval {interval}, {len(devices)} devices",
        )  # fmt: skip

    def _block_time_s(self, block: int, block_hash: str = "") -> int:
        """A block's timestamp on the market clock, cached by block hash (a number alone is
        not final: after ``evm_revert`` or a reorg the same number is another block)."""
        key = block_hash or f"#{block}"
        if key not in self._block_times:
            head = (self._rpc("eth_getBlockByHash", [block_hash, False]) if block_hash
                    else self._rpc("eth_getBlockByNumber", [hex(block), False]))["result"]
            if not block_hash:  # uncacheable: the number's block may change
                return int(head["timestamp"], 16) - self._market_start
            self._block_times[key] = int(head["timestamp"], 16) - self._market_start
        return self._block_times[key]

    # --- DSO curtailment --------------------------------------------------------------
    def curtail(self, trade_id: int, energy_wh: int, *, sender: int | None = None) -> Trade:
        return self.curtail_batch([(trade_id, energy_wh)], sender=sender)[0]

    def curtail_batch(self, curtailments: Sequence[tuple[int, int]], *, sender: int | None = None,
                      chunk: int | None = None) -> list[Trade]:
        """``(trade_id, energy_wh)`` curtailments in ``curtailBatch`` transactions of at most
        ``chunk`` entries (default: sized by gas, :data:`CURTAIL_CHUNK` before the run's first
        receipt of one; one transaction for an interval's usual few; each chunk is all or
        none); the curtailed trades, in order."""
        out: list[Trade] = []
        k = 0
        while k < len(curtailments):
            size = max(int(chunk or self._chunk_size("curtail", CURTAIL_CHUNK)), 1)
            part = [(int(t), int(wh)) for t, wh in curtailments[k:k + size]]
            k += len(part)
            bad = next((t for t, _ in part if not 0 <= t < UINT64), None)
            if bad is not None:
                raise e.UnknownTrade(bad, purpose=f"curtail: trade {bad}")
            what = (f"trade {part[0][0]} to {part[0][1]} Wh" if len(part) == 1
                    else f"{len(part)} trades from {part[0][0]}")
            events = self._finish(self._send(
                self.market, "curtailBatch", [[t for t, _ in part], [wh for _, wh in part]],
                sender=DSO_ACCOUNT if sender is None else sender, purpose=f"curtail: {what}",
            ), kind="curtail", items=len(part))  # fmt: skip
            done = [v for name, v in events if name == "Curtailed"]
            for v in done:
                trade = None
                cached = self._cleared_trades.get(v["interval"])
                if cached is not None and self._canonical(cached[1]):
                    trade = cached[0].get(v["tradeId"])
                if trade is None:
                    trade = self._trade(self._logs(["TradeMatched"], topic1=v["tradeId"])[0][1])
                out.append(Trade(**{**asdict(trade), "energy_wh": v["newWh"]}))
            if done:
                self.tx.relabel_last(interval=done[0]["interval"])
        return out

    def trades(self, interval: int) -> list[Trade]:
        trades: dict[int, Trade] = {}
        for name, v in self._logs(["TradeMatched", "Curtailed"], topic2=interval):
            if name == "TradeMatched":
                trades[v["tradeId"]] = self._trade(v)
            else:
                t = trades[v["tradeId"]]
                trades[t.trade_id] = Trade(**{**asdict(t), "energy_wh": v["newWh"]})
        return [trades[k] for k in sorted(trades)]

    def clearing(self, interval: int) -> Clearing:
        """An interval's clearing as announced (trades before curtailment), from the logs."""
        cleared = self._logs(["Cleared"], topic1=interval)
        if not cleared:
            raise e.NotCleared(interval, purpose=f"reading the clearing of interval {interval}")
        return self._cleared(interval, self._logs(["TradeMatched"], topic2=interval) + cleared)
