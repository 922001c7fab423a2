"""The order book on chain: placing batches (operator-agent or device-signed orders,
submitted and confirmed separately) and reading the book from the logs; a layer of
:class:`~twin.chain.ledger.ChainLedger`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twin.chain.abi import encode_signed_orders
from twin.chain.ledger_base import UINT64, _memo
from twin.chain.ledger_setup import SetupLedger
from twin.chain.tx import ChainRevert, Pending
from twin.market import errors as e
from twin.market.signing import Rejection, SignedCancel, SignedOrder
from twin.market.types import OPERATOR_ACCOUNT, Order, OrderIntent, Side
from twin.market.units import DEVICE_LIMIT, ENERGY_MAX_WH, INTERVAL_LIMIT
from twin.market.validation import check_intents

__all__ = ["SIGNED_ORDER_CHUNK", "OrderLedger", "PendingOrders"]


#: Signed orders of a placeSignedOrders transaction before the run's first receipt of one:
#: ~41,000 gas each on warm storage (two orders a storage slot), up to ~90,000 when many devices
#: order for the first time, so 200 keep a batch under ~20 M. From the first receipt on, a batch
#: is sized by the gas an order took (twin.chain.gas_size: 80 % of the block).
SIGNED_ORDER_CHUNK = 200
#: fields of an order's 128-bit word (OrderWords.sol; OrdersPlaced logs carry these words)
ORDER_DEVICE_MASK, ORDER_INTERVAL_MASK, ORDER_ENERGY_MASK = DEVICE_LIMIT - 1, INTERVAL_LIMIT - 1, ENERGY_MAX_WH


@dataclass(frozen=True, slots=True)
class PendingOrders:
    """Signed orders sent in one transaction, not yet confirmed (``ChainLedger.confirm``)."""

    tx: Pending
    n: int
    orders: tuple[SignedOrder, ...] = ()
    sender: int | None = None
    new_devices: int = 0  # orders that are their device's first of the interval here


class OrderLedger(SetupLedger):
    """Orders: placement and the book (see :class:`~twin.chain.ledger.ChainLedger`)."""

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
        placed = [o for name, v in events if name == "OrdersPlaced" for o in self._placed(v)]
        if len(placed) != n:
            raise ChainRevert(
                "MissingEvents", {"expected": n, "got": len(placed)}, purpose="placing orders"
            )
        for o in placed:
            book, _ = self._book.get(o.interval, ([], self._last_block))
            book.append(o)
            self._book[o.interval] = (book, self._last_block)
            self._ordering.setdefault(o.interval, set()).add(o.device_id)
        return placed

    def place_signed_orders(
        self,
        signed: Sequence[SignedOrder],
        *,
        sender: int | None = None,
        chunk_size: int | None = None,
        strict: bool = True,
    ) -> list[Order]:
        """Relay device-signed orders (``placeSignedOrders``), by default as the operator;
        return the placed ones.

        One transaction per ``chunk_size`` orders (default :data:`SIGNED_ORDER_CHUNK`, so each
        fits a standard 30 M gas block at ~70,000 gas an order). An order that fails its
        checks is skipped by the contract and reported (``OrderRejected``, in
        :attr:`rejected` with its decoded error): no order can void the rest of a batch.
        ``strict`` (default): a malformed batch is refused before anything is sent, and the
        first rejection is raised once the batch went through (as the reference ledger).
        Every order's owner and escrow payer is its device's owner, authorised by the device
        key's EIP-712 signature."""
        self.rejected = []
        if not signed:
            return []
        intents = [so.intent for so in signed]
        index = list(range(len(signed)))
        if strict:
            self._reject_malformed(intents, "place_signed_orders")
        else:  # what cannot even be encoded or is refused anyway: reported, not sent
            bad = {p.index: p.error for p in check_intents(
                intents, is_registered=self._is_registered, is_closed=_memo(self._is_closed))}
            self.rejected = [Rejection(k, signed[k], err) for k, err in sorted(bad.items())]
            index = [k for k in index if k not in bad]
        # One chunk after the other, each sized by the gas an order took so far (or
        # ``chunk_size`` orders): a chunk is confirmed before the next is sent, so one that runs
        # out of gas is split and sent again before any later order of its devices (whose
        # higher nonce would otherwise void it) is placed.
        placed: list[Order] = []
        pos = 0
        while pos < len(index):
            size = chunk_size or self.signed_order_chunk([intents[j] for j in index[pos:]])
            where = index[pos : pos + size]
            pos += len(where)
            got, rejected = self._confirm(self.submit_signed_orders(
                [signed[j] for j in where], sender=sender, checked=True))
            placed += got
            self.rejected += [Rejection(where[r.index], signed[where[r.index]], r.error)
                              for r in rejected]
        self.rejected.sort(key=lambda r: r.index)
        if strict and self.rejected:
            raise self.rejected[0].error
        return placed

    def signed_order_chunk(self, intents: Sequence[OrderIntent] = ()) -> int:
        """How many of ``intents`` (the orders still to relay, in order) the next
        ``placeSignedOrders`` transaction carries: as many as fill 80 % of a block by the
        gas the run's recent receipts show an order and a device's first order of the
        interval cost (:data:`SIGNED_ORDER_CHUNK` before the first; without ``intents``, the
        count if every order were a device's first)."""
        self._chunk_size("order", SIGNED_ORDER_CHUNK)  # the node's current limits
        if not intents:
            return self.gas_sizes.size("order", SIGNED_ORDER_CHUNK)
        return self.gas_sizes.take("order", self._first_orders(intents), SIGNED_ORDER_CHUNK)

    def _first_orders(self, intents: Sequence[OrderIntent]) -> Iterator[int]:
        """1 for each order that is its device's first of its interval (none placed here
        yet, none earlier in ``intents``), else 0."""
        seen: set[tuple[int, int]] = set()
        for it in intents:
            key = (it.interval, it.device_id)
            if key in seen or it.device_id in self._ordering.get(it.interval, ()):
                yield 0
            else:
                seen.add(key)
                yield 1

    def check_signed_group(self, intents: Sequence[OrderIntent]) -> None:
        """``place_signed_orders``' pre-send checks of a group relayed in several
        ``submit_signed_orders(..., checked=True)`` calls: one read of each interval's status
        for the whole group instead of one per transaction (a read that waits for the node to
        finish the previous transaction's block)."""
        self._reject_malformed(intents, "place_signed_orders")

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

        new_devices = sum(self._first_orders([so.intent for so in chunk]))
        tx = self._send(
            self.market, "placeSignedOrders", [],
            calldata=encode_signed_orders(selector, chunk),
            sender=OPERATOR_ACCOUNT if sender is None else sender,
            interval=next(iter(intervals)) if len(intervals) == 1 else None,
            purpose=f"place_signed_orders: batch of {len(chunk)} orders", error_context=context,
        )  # fmt: skip
        # on a node mining on demand its block is mined now, on a thread: the caller's next
        # work (signing, encoding the next batch) overlaps the node's execution of this one
        self.tx.mine_ahead()
        return PendingOrders(tx=tx, n=len(signed), orders=tuple(signed), sender=sender,
                             new_devices=new_devices)

    def confirm(self, pending: PendingOrders) -> list[Order]:
        """Wait for a submitted batch: its placed orders (the rejected ones, with their
        decoded errors, in :attr:`last_rejected`), or its decoded revert raised. A batch that
        ran out of gas is split in halves and sent again (recursively), so confirm each batch
        before submitting the next one of the same devices: a later nonce placed first
        would void the earlier order."""
        placed, self.last_rejected = self._confirm(pending)
        return placed

    def _confirm(self, pending: PendingOrders) -> tuple[list[Order], list[Rejection]]:
        try:
            receipt = self.tx.receipt(pending.tx)
        except ChainRevert as exc:
            if exc.name != "OutOfGas" or pending.n < 2:
                raise
            self.gas_sizes.out_of_gas("order", items=pending.n,
                                      gas_limit=int(exc.values["gas_limit"]))
            placed: list[Order] = []
            rejections: list[Rejection] = []
            half = pending.n // 2
            for lo, hi in ((0, half), (half, pending.n)):
                got, rej = self._confirm(self.submit_signed_orders(
                    pending.orders[lo:hi], sender=pending.sender, checked=True))
                placed += got
                rejections += [Rejection(lo + r.index, r.order, r.error) for r in rej]
            return placed, rejections
        self.gas_sizes.learn("order", items=pending.n, extras=pending.new_devices,
                             gas_used=int(receipt["gasUsed"], 16))
        events = self._decode_logs(receipt["logs"])
        rejected = []
        for name, v in events:
            if name == "OrderRejected":
                err = self.tx.revert_error(
                    {"data": "0x" + bytes(v["reason"]).hex()}, tx_hash=pending.tx.tx_hash,
                    purpose=(f"place_signed_orders: order for device {v['device']} interval "
                             f"{v['interval']} nonce {v['nonce']}"), error_context=None)
                if not isinstance(err, e.MarketError):
                    raise err
                rejected.append(Rejection(v["position"], pending.orders[v["position"]], err))
        return self._booked(events, pending.n - len(rejected)), rejected

    def cancel_orders(self, cancel: SignedCancel, *, sender: int | None = None) -> None:
        """Relay a device key's ``cancelOrders`` (its orders of the interval with nonces up
        to ``cancel.nonce`` are void), by default as the operator."""
        if not (0 <= cancel.device_id < UINT64 and 0 <= cancel.interval < UINT64
                and 0 <= cancel.nonce < UINT64) or len(cancel.signature) != 65:
            raise e.BadSignature(cancel.device_id, purpose="cancel_orders: malformed")
        sig = cancel.signature
        self._transact(
            self.market, "cancelOrders",
            [cancel.device_id, cancel.interval, cancel.nonce, (sig[:32], sig[32:64], sig[64])],
            sender=OPERATOR_ACCOUNT if sender is None else sender, interval=cancel.interval,
            purpose=f"cancel_orders: device {cancel.device_id} interval {cancel.interval}",
        )  # fmt: skip

    def reclaim_after_s(self, interval: int) -> int:
        """Deadline after which an uncleared interval's escrow is reclaimable."""
        return self.gate_s(interval) + self._interval_s

    def reclaim(self, account: int, order_ids: Sequence[int]) -> None:
        """``reclaim``: the owner takes back the escrow of its buy orders of intervals whose
        clearing did not start by their deadline (the first reclaim voids the interval)."""
        events = self._transact(
            self.market, "reclaim", [list(order_ids)], sender=account,
            purpose=f"reclaim: account {account}, {len(order_ids)} orders",
        )  # fmt: skip
        if self.prune_settled:  # freed once all its escrow is back (SettlingLedger._send_prunes)
            self._void_unpruned += [(int(v["interval"]), self._last_block)
                                    for name, v in events if name == "IntervalVoided"]

    def release_bond(self, account: int, device_id: int) -> None:
        """``releaseBond``: the owner takes back ``device_id``'s imbalance bond once the last
        interval the device ordered in and every one before it is final and its estimates are
        trued up (else BondLocked)."""
        self._transact(
            self._provisional_market, "releaseBond", [device_id], sender=account,  # type: ignore[attr-defined]
            purpose=f"releaseBond: account {account}, device {device_id}",
        )  # fmt: skip

    def finalize_estimate(self, interval: int, device_id: int, *, sender: int | None = None) -> int:
        """``finalizeEstimate``: anyone makes an estimate not trued up by its deadline final
        (the estimate is the settlement; the bond no longer waits for it); the estimate, Wh."""
        what = f"finalizeEstimate: interval {interval} device {device_id}"
        if not (0 <= interval < UINT64 and 0 <= device_id < UINT64):
            raise e.NotProvisional(device_id, interval, purpose=what)
        events = self._transact(
            self._provisional_market, "finalizeEstimate", [interval, device_id],  # type: ignore[attr-defined]
            sender=OPERATOR_ACCOUNT if sender is None else sender, purpose=what,
        )  # fmt: skip
        return int(next(v for name, v in events if name == "EstimateFinal")["estimatedWh"])

    def advance_final(self, steps: int, *, sender: int | None = None) -> int:
        """``advanceFinal``: anyone moves releaseBond's mark over at most ``steps`` final
        intervals (for a mark more than MARK_STEPS behind); the new mark."""
        if steps < 0:
            raise ValueError(f"advance_final: steps must be >= 0, got {steps}")
        self._transact(
            self._provisional_market, "advanceFinal", [steps],  # type: ignore[attr-defined]
            sender=OPERATOR_ACCOUNT if sender is None else sender,
            purpose=f"advanceFinal: {steps} steps",
        )  # fmt: skip
        return self.final_mark()

    def final_mark(self) -> int:
        """The first interval releaseBond does not know final (every one below it is)."""
        return int(self._provisional_market.functions.finalMark().call())  # type: ignore[attr-defined]

    def _placed(self, v: Mapping[str, Any]) -> list[Order]:
        """The orders of one ``OrdersPlaced`` log (one a transaction): ids consecutive from
        ``firstOrderId``, 16 bytes an order (its 128-bit word, big-endian: device bits 0-29,
        interval 30-57, side 58, energy 59-90, price 91-127; OrderWords.sol)."""
        first, words = int(v["firstOrderId"]), bytes(v["words"])
        out = []
        for k in range(len(words) // 16):
            w = int.from_bytes(words[16 * k:16 * k + 16], "big")
            device = w & ORDER_DEVICE_MASK
            out.append(Order(
                order_id=first + k, device_id=device,
                owner=self.device(device).owner,  # the event names no owner: its device's
                interval=(w >> 30) & ORDER_INTERVAL_MASK, side=Side((w >> 58) & 1),
                energy_wh=(w >> 59) & ORDER_ENERGY_MASK, price_per_mwh=w >> 91))
        return out

    def orders(self, interval: int) -> list[Order]:
        return [o for _, v in self._logs(["OrdersPlaced"]) for o in self._placed(v)
                if o.interval == interval]
