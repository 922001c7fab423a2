"""``ChainLedger``: the :class:`~twin.market.ledger.Ledger` protocol over the Solidity
contracts, through web3.py.

Same method semantics and return types as :class:`~twin.market.reference.ReferenceLedger`;
results are read back from the transactions' event logs. Account index ``i`` is the node's
``i``-th unlocked account (Anvil's). Each participant, when its first device is registered
or it first deposits, approves the market for its tokens and the operator as its order
agent (``EnergyMarket.setAgent``), so one ``placeOrders`` transaction carries a whole
interval's orders while every order keeps its device owner as owner and escrow payer.

A revert raises the same :class:`~twin.market.errors.MarketError` subclass the reference
raises, decoded from the custom error, with the transaction's purpose in the message; other
reverts (token errors, panics, out of gas) raise :class:`ChainRevert`. Every transaction is
recorded in :attr:`ChainLedger.transactions` (hash, block, gas, function, interval).

Clock and gate closure: the market's clock is block time. ``EnergyMarket.marketStart`` is the
chain time at which interval 0's delivery starts; ``now_s`` = block time - marketStart, the
same clock as :class:`~twin.market.reference.ReferenceLedger` (gate rule there). ``deploy``
freezes the node's block clock (``anvil_setBlockTimestampInterval 0``: blocks no longer
follow the wall clock) and puts marketStart one interval plus the gate lead after the
latest block, so the clock starts where the reference's does; from then on only
:meth:`ChainLedger.set_time` moves it (``evm_setNextBlockTimestamp``), e.g. once per
simulated interval, so a run of simulated days needs no wall-clock waiting and every block
of a step carries that step's time. A ``GateClosed`` revert's block times are converted to
seconds since the market's start.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

from eth_utils import to_checksum_address
from web3 import Web3
from web3.contract import Contract

from twin.chain.abi import encode_signed_orders, link
from twin.chain.cda_chunks import CDA_CHUNK, plan_cda
from twin.chain.chunks import ClearingChunk, plan_clearing, plan_settlement
from twin.chain.compile import CompiledContracts, compile_contracts
from twin.chain.keys import TxKey
from twin.chain.ledger_base import (
    CLEAR_CHUNK_ORDERS,
    CLEAR_CHUNK_TRADES,
    CLEARING_PROGRESS,
    INTERVAL_STATE,
    SETTLE_CHUNK_DEVICES,
    SETTLE_CHUNK_TRADES,
    STATUS,
    UINT64,
    LedgerBase,
    freeze_clock,
)
from twin.chain.tx import ChainRevert, ChainUnavailable, Pending, TxClient, TxRecord
from twin.market import errors as e
from twin.market.cda import continuous_double_auction
from twin.market.clearing import match_orders
from twin.market.mechanisms import CHAIN_CODE, Mechanism, check_mechanism
from twin.market.signing import SignedOrder, SignedReading
from twin.market.types import (
    DSO_ACCOUNT,
    OPERATOR_ACCOUNT,
    Clearing,
    Order,
    OrderIntent,
    SettlementRow,
    Side,
    Trade,
)

__all__ = [
    "CLEAR_CHUNK_ORDERS",
    "CLEAR_CHUNK_TRADES",
    "SETTLE_CHUNK_DEVICES",
    "SETTLE_CHUNK_TRADES",
    "ChainLedger",
    "ChainRevert",
    "ChainUnavailable",
    "PendingOrders",
    "TxRecord",
]


#: Signed orders per placeSignedOrders transaction: ~70,000 gas each on warm storage, up to
#: ~100,000 when many devices order for the first time (1,000 households: a batch of 300
#: ran out of gas in a 30 M block), so 200 keep a batch under ~20 M.
SIGNED_ORDER_CHUNK = 200


@dataclass(frozen=True, slots=True)
class PendingOrders:
    """Signed orders sent in one transaction, not yet confirmed (``ChainLedger.confirm``)."""

    tx: Pending
    n: int

class ChainLedger(LedgerBase):
    """The market on chain (see the module docstring)."""

    @classmethod
    def deploy(
        cls,
        w3: Web3,
        *,
        interval_s: int,
        retail_price_per_mwh: int,
        feed_in_price_per_mwh: int,
        compiled: CompiledContracts | None = None,
        accounts: Sequence[str] | None = None,
        tx_gas: int = 30_000_000,
        gas_price: int = 0,
        keys: Sequence[TxKey] | None = None,
        funder: TxKey | None = None,
        fund_wei: int = 10 * 10**18,
        gate_lead_s: int | None = None,
        market_start_s: int | None = None,
        mechanism: Mechanism = "uniform",
    ) -> ChainLedger:
        """Deploy SettlementToken, DeviceRegistry and EnergyMarket (operator = account 0,
        DSO = account 1) and return a ledger over them.

        ``gate_lead_s`` (default: one interval) and ``market_start_s`` (chain time of interval
        0's delivery start; default: latest block time + one interval + the lead) set the gate
        rule (module docstring). The node's block clock is frozen (only ``set_time`` moves it).
        ``mechanism`` (:mod:`twin.market.mechanisms`) is set by the operator right after
        deployment (``setMechanism``); ``keys``: the run's own account keys (every
        transaction is signed with them), ``funder``: the key that pays each ``fund_wei``; the CDA's matching runs in the linked library
        ``CdaMatching`` (deployed first), which keeps EnergyMarket under the EIP-170 limit."""
        check_mechanism(mechanism)
        if interval_s <= 0 or retail_price_per_mwh < 0 or feed_in_price_per_mwh < 0:
            raise ValueError("interval_s must be > 0 and tariffs >= 0")
        lead = interval_s if gate_lead_s is None else gate_lead_s
        if lead < 0:
            raise ValueError(f"gate_lead_s must be >= 0, got {gate_lead_s}")
        freeze_clock(w3)
        latest = int(w3.eth.get_block("latest")["timestamp"])
        start = latest + interval_s + lead if market_start_s is None else market_start_s
        if start < 0:
            raise ValueError(f"market_start_s must be >= 0, got {market_start_s}")
        compiled = compiled or compile_contracts()
        if keys:
            accts = [k.address for k in keys]
        else:
            accts = [to_checksum_address(a) for a in (accounts or w3.eth.accounts)]
        if len(accts) < 2:
            raise ValueError("the chain needs at least 2 accounts (operator, DSO)")
        operator, dso = accts[OPERATOR_ACCOUNT], accts[DSO_ACCOUNT]

        tx = TxClient(w3, compiled=compiled, accounts=accts, tx_gas=tx_gas, gas_price=gas_price,
                      keys=keys)
        if funder is not None:  # gas money for the run's own keys, from one funded key
            tx.fund(funder, accts, value_wei=fund_wei)

        def _deploy(name: str, *args: Any, bytecode: str | None = None) -> Contract:
            art = compiled[name]
            return tx.deploy(name, art.abi, bytecode or art.bytecode, list(args),
                             sender=OPERATOR_ACCOUNT)

        token = _deploy("SettlementToken", operator)
        first_block = tx.transactions[-1].block
        registry = _deploy("DeviceRegistry", dso)
        library = _deploy("CdaMatching")
        market = _deploy(
            "EnergyMarket",
            token.address,
            registry.address,
            operator,
            interval_s,
            retail_price_per_mwh,
            feed_in_price_per_mwh,
            start,
            lead,
            bytecode=link(compiled["EnergyMarket"].bytecode, "CdaMatching", library.address),
        )
        if mechanism != "uniform":
            tx.receipt(tx.send(market, "setMechanism", [CHAIN_CODE[mechanism]],
                               sender=OPERATOR_ACCOUNT, purpose="deploy EnergyMarket: set mechanism"))
        ledger = cls(
            w3,
            addresses={
                "SettlementToken": token.address,
                "DeviceRegistry": registry.address,
                "EnergyMarket": market.address,
            },
            compiled=compiled,
            accounts=accts,
            deploy_block=first_block,
            tx=tx,
        )
        ledger.cda_library = to_checksum_address(library.address)
        return ledger

    # --- orders -----------------------------------------------------------------------
    def place_orders(
        self, intents: Sequence[OrderIntent], *, sender: int | None = None
    ) -> list[Order]:
        """Place a batch atomically in one transaction (see the module docstring)."""
        if not intents:
            return []
        self._reject_malformed(intents, "place_orders")
        if sender is None:
            owners = set()
            for it in intents:
                try:
                    owners.add(self.device(it.device_id).owner)
                except e.UnknownDevice:
                    owners.add(-1)
            sender = owners.pop() if len(owners) == 1 and -1 not in owners else OPERATOR_ACCOUNT
        intervals = {it.interval for it in intents}
        interval = next(iter(intervals)) if len(intervals) == 1 else None
        args = [
            [
                (it.device_id, it.interval, int(it.side), it.energy_wh, it.price_per_mwh)
                for it in intents
            ]
        ]

        def context(exc: e.MarketError) -> str:
            dev = exc.values.get("device")
            ivl = exc.values.get("interval")
            for it in intents:
                if (dev is None or it.device_id == dev) and (ivl is None or it.interval == ivl):
                    return f"place_orders: order for device {it.device_id} interval {it.interval}"
            return f"place_orders: batch of {len(intents)} orders"

        events = self._transact(
            self.market, "placeOrders", args, sender=sender, interval=interval,
            purpose=f"place_orders: batch of {len(intents)} orders", error_context=context,
        )  # fmt: skip
        return self._booked(events, len(intents))

    def _booked(self, events: Sequence[tuple[str, dict[str, Any]]], n: int) -> list[Order]:
        placed = [self._order(v) for name, v in events if name == "OrderPlaced"]
        if len(placed) != n:
            raise ChainRevert(
                "MissingEvents", {"expected": n, "got": len(placed)}, purpose="placing orders"
            )
        for o in placed:
            book, _ = self._book.get(o.interval, ([], self._last_block))
            book.append(o)
            self._book[o.interval] = (book, self._last_block)
        return placed

    def place_signed_orders(
        self,
        signed: Sequence[SignedOrder],
        *,
        sender: int | None = None,
        chunk_size: int | None = None,
    ) -> list[Order]:
        """Relay device-signed orders (``placeSignedOrders``), by default as the operator.

        One transaction per ``chunk_size`` orders (default :data:`SIGNED_ORDER_CHUNK`, so each
        fits a standard 30 M gas block at up to ~100,000 gas an order), each atomic; a
        malformed order is rejected before anything is sent. Every order's owner and escrow
        payer is its device's owner, authorised by the device key's EIP-712 signature."""
        if not signed:
            return []
        self._reject_malformed([so.intent for so in signed], "place_signed_orders")
        size = chunk_size or SIGNED_ORDER_CHUNK
        pending = [
            self.submit_signed_orders(signed[k : k + size], sender=sender, checked=True)
            for k in range(0, len(signed), size)
        ]  # all sent first: the node executes chunk k while chunk k+1 is on its way
        placed: list[Order] = []
        for p in pending:
            placed += self.confirm(p)
        return placed

    def submit_signed_orders(
        self, signed: Sequence[SignedOrder], *, sender: int | None = None, checked: bool = False
    ) -> PendingOrders:
        """Send one ``placeSignedOrders`` transaction and return at once; ``confirm`` waits
        for it (lets a caller sign the next batch while the node executes this one)."""
        if not checked:
            self._reject_malformed([so.intent for so in signed], "place_signed_orders")
        selector = self.tx.spec(self.market, "placeSignedOrders")[0]
        chunk = signed
        intervals = {so.intent.interval for so in chunk}

        def context(exc: e.MarketError, chunk: Sequence[SignedOrder] = chunk) -> str:
            dev, ivl = exc.values.get("device"), exc.values.get("interval")
            for so in chunk:
                it = so.intent
                if (dev is None or it.device_id == dev) and (ivl is None or it.interval == ivl):
                    return (
                        f"place_signed_orders: order for device {it.device_id} "
                        f"interval {it.interval} nonce {so.nonce}"
                    )
            return f"place_signed_orders: batch of {len(chunk)} orders"

        tx = self._send(
            self.market, "placeSignedOrders", [],
            calldata=encode_signed_orders(selector, chunk),
            sender=OPERATOR_ACCOUNT if sender is None else sender,
            interval=next(iter(intervals)) if len(intervals) == 1 else None,
            purpose=f"place_signed_orders: batch of {len(chunk)} orders", error_context=context,
        )  # fmt: skip
        return PendingOrders(tx=tx, n=len(signed))

    def confirm(self, pending: PendingOrders) -> list[Order]:
        """Wait for a submitted batch: its orders, or its decoded revert raised."""
        return self._booked(self._finish(pending.tx), pending.n)

    def _order(self, v: Mapping[str, Any]) -> Order:
        return Order(
            order_id=v["orderId"],
            device_id=v["device"],
            owner=cast(int, v["owner"]),
            interval=v["interval"],
            side=Side(v["side"]),
            energy_wh=v["energyWh"],
            price_per_mwh=v["price"],
        )

    # --- clearing ---------------------------------------------------------------------
    def clear(
        self,
        interval: int,
        *,
        sender: int | None = None,
        chunk_orders: int | None = None,
        chunk_trades: int | None = None,
    ) -> Clearing:
        """Sort the interval's book off-chain, let the contract verify and match it.

        A book of at most ``chunk_orders`` orders with at most ``chunk_trades`` trades
        (defaults: the ledger's ``clear_chunk_orders`` / ``clear_chunk_trades``) clears in one
        ``clear`` transaction; a bigger one in bounded ``clearChunk`` transactions
        (:mod:`twin.chain.chunks`), all sent at once and confirmed in order.

        An interval left "clearing" by an interrupted chunk sequence is resumed from the
        contract's cursor: only the remaining chunks are sent (any chunk sizes)."""
        book: list[Order] | None = None
        cached = self._book.get(interval)
        state = self._view(self.market, "intervals", [interval], INTERVAL_STATE)
        if cached is not None and self._canonical(cached[1]):
            if state[3] + state[4] == len(cached[0]):  # nobody else placed orders
                book = cached[0]
        orders = self.orders(interval) if book is None else book
        if STATUS[state[0]] == "clearing" and self.mechanism != "cda":
            return self._resume_clearing(
                interval, orders, sender=sender, chunk_orders=chunk_orders or self.clear_chunk_orders,
                chunk_trades=chunk_trades or self.clear_chunk_trades,
            )  # fmt: skip
        if self.mechanism == "cda":
            return self._clear_cda(interval, orders, sender=sender, chunk=chunk_orders or CDA_CHUNK)
        result = match_orders(orders)
        size = chunk_orders or self.clear_chunk_orders
        per_call = chunk_trades or self.clear_chunk_trades
        if len(orders) <= size and len(result.fills) <= per_call:
            return self.submit_clearing(
                interval, bid_ids=result.bid_ids, ask_ids=result.ask_ids, sender=sender
            )
        by_id = {o.order_id: o for o in orders}
        plan = plan_clearing(
            [by_id[i] for i in result.bid_ids], [by_id[i] for i in result.ask_ids],
            n_trades=len(result.fills), chunk_orders=size, chunk_trades=per_call,
        )  # fmt: skip
        return self._cleared(interval, self._send_clearing(interval, plan, len(orders), sender))

    def _send_clearing(
        self, interval: int, plan: Sequence[ClearingChunk], n_orders: int, sender: int | None,
        what: str = "chunk",
    ) -> list[tuple[str, dict[str, Any]]]:
        """Send a clearing plan's ``clearChunk`` calls at once, confirm them in order."""
        pending = [
            self._send(
                self.market, "clearChunk",
                [interval, n_orders, list(c.bid_ids), list(c.ask_ids), c.max_trades],
                sender=OPERATOR_ACCOUNT if sender is None else sender, interval=interval,
                purpose=(
                    f"clear: interval {interval} {what} {k + 1}/{len(plan)} "
                    f"({len(c.bid_ids)} bids, {len(c.ask_ids)} asks, {c.max_trades} trades)"
                ),
            )
            for k, c in enumerate(plan)
        ]  # fmt: skip
        events: list[tuple[str, dict[str, Any]]] = []
        for p in pending:
            events += self._finish(p)
        return events

    def _resume_clearing(
        self, interval: int, orders: Sequence[Order], *, sender: int | None,
        chunk_orders: int, chunk_trades: int,
    ) -> Clearing:
        """Finish an interrupted chunked clearing from the contract's cursor."""
        bids_seen, asks_seen, _done, _fills, finalized = (
            self._view(self.market, "clearingProgress", [interval], CLEARING_PROGRESS)
        )
        result = match_orders(orders)
        by_id = {o.order_id: o for o in orders}
        plan = plan_clearing(
            [by_id[i] for i in result.bid_ids], [by_id[i] for i in result.ask_ids],
            n_trades=len(result.fills), chunk_orders=chunk_orders, chunk_trades=chunk_trades,
            bids_seen=bids_seen, asks_seen=asks_seen, finalized=finalized,
        )  # fmt: skip
        events = self._send_clearing(interval, plan, len(orders), sender, what="resumed chunk")
        cleared = [ev for ev in events if ev[0] == "Cleared"]  # trades: from every chunk
        return self._cleared(interval, self._logs(["TradeMatched"], topic2=interval) + cleared)

    def _clear_cda(
        self, interval: int, orders: Sequence[Order], *, sender: int | None, chunk: int
    ) -> Clearing:
        """Replay the CDA off-chain for the insertion hints, send bounded ``clearCda`` calls
        (:mod:`twin.chain.cda_chunks`), all at once, confirmed in order."""
        plan = plan_cda(continuous_double_auction(orders), chunk=chunk)
        pending = [
            self._send(
                self.market, "clearCda",
                [interval, len(orders), list(c.ids), list(c.hints), c.max_steps],
                sender=OPERATOR_ACCOUNT if sender is None else sender, interval=interval,
                purpose=f"clear: interval {interval} (cda) chunk {k + 1}/{len(plan)} "
                f"({len(c.ids)} orders, {c.max_steps} steps)",
            )
            for k, c in enumerate(plan)
        ]  # fmt: skip
        events: list[tuple[str, dict[str, Any]]] = []
        for p in pending:
            events += self._finish(p)
        return self._cleared(interval, events)

    def submit_clearing(
        self,
        interval: int,
        *,
        bid_ids: Sequence[int],
        ask_ids: Sequence[int],
        sender: int | None = None,
    ) -> Clearing:
        """Send ``clear`` with explicit sorted id lists (the contract verifies them)."""
        events = self._transact(
            self.market, "clear", [interval, list(bid_ids), list(ask_ids)],
            sender=OPERATOR_ACCOUNT if sender is None else sender, interval=interval,
            purpose=f"clear: interval {interval} ({len(bid_ids)} bids, {len(ask_ids)} asks)",
        )  # fmt: skip
        return self._cleared(interval, events)

    def _cleared(self, interval: int, events: Sequence[tuple[str, dict[str, Any]]]) -> Clearing:
        trades = tuple(self._trade(v) for name, v in events if name == "TradeMatched")
        cleared = next(v for name, v in events if name == "Cleared")
        self._book.pop(interval, None)
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
            created_s=self.now_s if block is None else self._block_time_s(int(block)),
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

    def _block_time_s(self, block: int) -> int:
        """A block's timestamp on the market clock (cached: blocks never change once final)."""
        if block not in self._block_times:
            head = self._rpc("eth_getBlockByNumber", [hex(block), False])["result"]
            self._block_times[block] = int(head["timestamp"], 16) - self._market_start
        return self._block_times[block]

    # --- DSO curtailment --------------------------------------------------------------
    def curtail(self, trade_id: int, energy_wh: int, *, sender: int | None = None) -> Trade:
        if not 0 <= trade_id < UINT64:
            raise e.UnknownTrade(trade_id, purpose=f"curtail: trade {trade_id}")
        events = self._transact(
            self.market, "curtail", [trade_id, energy_wh],
            sender=DSO_ACCOUNT if sender is None else sender,
            purpose=f"curtail: trade {trade_id} to {energy_wh} Wh",
        )  # fmt: skip
        curtailed = next(v for name, v in events if name == "Curtailed")
        trade = None
        cached = self._cleared_trades.get(curtailed["interval"])
        if cached is not None and self._canonical(cached[1]):
            trade = cached[0].get(trade_id)
        if trade is None:
            trade = self._trade(self._logs(["TradeMatched"], topic1=trade_id)[0][1])
        self.tx.relabel_last(interval=curtailed["interval"])
        return Trade(**{**asdict(trade), "energy_wh": curtailed["newWh"]})

    # --- settlement -------------------------------------------------------------------
    def settle(
        self,
        interval: int,
        metered_wh: Mapping[int, int],
        *,
        sender: int | None = None,
        chunk_trades: int | None = None,
        chunk_devices: int | None = None,
    ) -> list[SettlementRow]:
        """Settle on meter readings: one ``settle`` transaction when the interval has at most
        ``chunk_trades`` trades and ``chunk_devices`` readings (defaults: the ledger's
        ``settle_chunk_trades`` / ``settle_chunk_devices``), else bounded ``settleChunk``
        transactions (:func:`twin.chain.chunks.plan_settlement`) after a dry run of the
        whole settlement's checks (``checkSettlement``).

        An interval left "settling" by an interrupted chunk sequence is resumed from the
        contract's cursor (pass the same readings: those already settled are skipped); the
        rows returned are those of every chunk."""
        devices = sorted(metered_wh)
        for d in devices:
            if not 0 <= d < UINT64:
                raise e.UnknownDevice(d, purpose=f"settle: interval {interval}")
        return self._settle_chunked(
            interval, devices, [metered_wh[d] for d in devices], None, sender=sender,
            chunk_trades=chunk_trades, chunk_devices=chunk_devices,
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
    ) -> list[SettlementRow]:
        signed = sigs is not None
        what = "settle_signed" if signed else "settle"
        kind = "signed readings" if signed else "meter readings"
        who = OPERATOR_ACCOUNT if sender is None else sender
        per_trades = chunk_trades or self.settle_chunk_trades
        per_devices = chunk_devices or self.settle_chunk_devices
        state = self._view(self.market, "intervals", [interval], INTERVAL_STATE)
        n_trades = int(state[6])
        resume = STATUS[state[0]] == "settling"  # an interrupted chunk sequence
        if not resume and n_trades <= per_trades and len(devices) <= per_devices:
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
                            [interval, devices, metered, sigs or [], signed],
                            sender=who, purpose=purpose)
            paid = start = 0
            if resume:  # continue from the cursor: readings up to its last device are settled
                paid, n_read, last = self._view(
                    self.market, "settlementProgress", [interval], ("uint256",) * 3
                )
                start = bisect.bisect_right(devices, last) if n_read else 0
            plan = plan_settlement(
                n_trades=n_trades - paid, n_readings=len(devices) - start,
                chunk_trades=per_trades, chunk_devices=per_devices,
            )  # fmt: skip
            pending = []
            for k, c in enumerate(plan):
                cut = slice(start + c.start, start + c.stop)
                part: list[Any] = [interval, c.max_trades, devices[cut], metered[cut]]
                if sigs is not None:
                    part.append(sigs[cut])
                pending.append(
                    self._send(
                        self.market, "settleSignedChunk" if signed else "settleChunk",
                        [*part, c.last], sender=who, interval=interval,
                        purpose=(
                            f"{what}: interval {interval} chunk {k + 1}/{len(plan)} "
                            f"({c.max_trades} trades, {c.stop - c.start} {kind})"
                        ),
                    )
                )  # fmt: skip  # all sent first, confirmed in order
            events = []
            for p in pending:
                events += self._finish(p)
            if resume:  # the rows of every chunk, the earlier ones included
                events = self._logs(["Settled"], topic1=interval)
        self._cleared_trades.pop(interval, None)
        return self._settlement_rows(events)

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
    ) -> list[SettlementRow]:
        """``settleSigned`` (or bounded ``settleSignedChunk`` calls, as in :meth:`settle`):
        settle on meter readings each signed by its device's key."""
        by_device = sorted(readings, key=lambda r: r.device_id)
        for r in by_device:
            if not 0 <= r.device_id < UINT64:
                raise e.UnknownDevice(r.device_id, purpose=f"settle_signed: interval {interval}")
            if len(r.signature) != 65:
                raise e.BadSignature(r.device_id, purpose=f"settle_signed: interval {interval}")
        return self._settle_chunked(
            interval,
            [r.device_id for r in by_device],
            [r.metered_wh for r in by_device],
            [(r.signature[:32], r.signature[32:64], r.signature[64]) for r in by_device],
            sender=sender, chunk_trades=chunk_trades, chunk_devices=chunk_devices,
        )  # fmt: skip

    def orders(self, interval: int) -> list[Order]:
        return [self._order(v) for _, v in self._logs(["OrderPlaced"], topic2=interval)]

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

    def settlement_rows(self, interval: int) -> list[SettlementRow]:
        """An interval's settlement rows (device id order), from the logs."""
        return self._settlement_rows(self._logs(["Settled"], topic1=interval))
