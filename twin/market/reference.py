"""Pure-Python, integer-exact reference ledger: the market rules the contracts mirror.

State is a handful of dicts; every operation either raises a
:class:`~twin.market.errors.MarketError` before changing anything, or applies all of its
effects (``place_orders`` is atomic over the whole batch, like the one transaction the
chain ledger sends).

Time and gate closure: the ledger has a clock, ``now_s`` seconds since the market's start
(the start of interval 0's delivery; delivery of interval ``k`` spans
``[k * interval_s, (k + 1) * interval_s)``). Orders for interval ``k`` are accepted while
``now_s <= gate_s(k) = k * interval_s - gate_lead_s`` (default lead: one interval, the twin's
"gate closure is one interval before delivery": the twin places and clears interval
``k + 1`` at ``now_s = k * interval_s``, exactly at its gate), else
:class:`~twin.market.errors.GateClosed`. ``set_time`` moves the clock forward only (a chain's
clock cannot go back); before the first call it stands one interval before interval 0's
gate, so every interval ``>= 0`` is open. The chain ledger has the same clock (block time).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace

from twin.market import errors as e
from twin.market.ledger import IntervalStatus, MarketParameters
from twin.market.mechanisms import Mechanism, check_mechanism, match
from twin.market.provisional import AlreadyTruedUp, NotProvisional, TrueUp, imbalance_value
from twin.market.signing import (
    ZERO_ADDRESS,
    Domain,
    Rejection,
    SignedCancel,
    SignedOrder,
    SignedReading,
    cancel_signer,
    order_signer,
    reading_signer,
)
from twin.market.types import (
    DSO_ACCOUNT,
    OPERATOR_ACCOUNT,
    Balance,
    Clearing,
    Device,
    Order,
    OrderIntent,
    SettlementRow,
    Side,
    Trade,
)
from twin.market.units import MAX_ORDERS, NONCE_LIMIT, PRICE_MAX, payment
from twin.market.validation import check_intents, reject_malformed

__all__ = ["ReferenceLedger"]


@dataclass(slots=True)
class _Account:
    wallet: int = 0
    free: int = 0
    locked: int = 0
    debt: int = 0


class ReferenceLedger(MarketParameters):
    """The market in plain Python (see :mod:`twin.market` for the rules)."""

    def __init__(
        self,
        *,
        interval_s: int,
        retail_price_per_mwh: int,
        feed_in_price_per_mwh: int,
        domain: Domain | None = None,
        gate_lead_s: int | None = None,
        mechanism: Mechanism = "uniform",
    ) -> None:
        if interval_s <= 0 or retail_price_per_mwh < 0 or feed_in_price_per_mwh < 0:
            raise ValueError("interval_s must be > 0 and tariffs >= 0")
        self._mechanism = check_mechanism(mechanism)  # twin.market.mechanisms
        lead = interval_s if gate_lead_s is None else gate_lead_s
        if lead < 0:
            raise ValueError(f"gate_lead_s must be >= 0, got {gate_lead_s}")
        self._gate_lead_s = lead
        self._now_s = -(interval_s + lead)
        self._interval_s = interval_s
        self._retail = retail_price_per_mwh
        self._feed_in = feed_in_price_per_mwh
        self._accounts: dict[int, _Account] = defaultdict(_Account)
        self._devices: dict[int, Device] = {}
        self.operator = OPERATOR_ACCOUNT  # moves in two steps: transfer_operator, accept_operator
        self.pending_operator: int | None = None
        self._revoked: set[int] = set()
        self._orders: dict[int, Order] = {}
        self._orders_by_interval: dict[int, list[int]] = defaultdict(list)
        self._escrow: dict[int, int] = {}  # buy order id -> escrow at placement
        self._used: dict[tuple[int, int, Side], int] = defaultdict(
            int
        )  # (device, interval, side) -> Wh
        self._trades: dict[int, Trade] = {}
        self._trades_by_interval: dict[int, list[int]] = defaultdict(list)
        self._status: dict[int, IntervalStatus] = {}
        self._next_order = 1
        self._next_trade = 1
        self._domain = domain or Domain(chain_id=0, verifying_contract=ZERO_ADDRESS)
        self._signers: dict[int, str] = {}
        self._nonces: dict[tuple[int, int], int] = defaultdict(int)  # (device, interval)
        self._n_orders: dict[tuple[int, int], int] = defaultdict(int)  # (device, interval)
        self._batch_orders: dict[tuple[int, int], int] = defaultdict(int)
        #: (device, interval, side) -> the DSO's operating envelope, Wh (dso.policy envelopes)
        self._envelope: dict[tuple[int, int, Side], int] = {}
        #: interval -> device -> book (electrical island) while the feeder is split
        self._books: dict[int, dict[int, int]] = {}
        #: (interval, device) -> (estimate_wh, traded_wh) settled provisionally (true_up)
        self._provisional: dict[tuple[int, int], tuple[int, int]] = {}
        self._trued_up: set[tuple[int, int]] = set()
        #: the signed orders the last place_signed_orders call skipped, with their errors
        self.rejected: list[Rejection] = []

    # --- parameters -------------------------------------------------------------------
    @property
    def mechanism(self) -> Mechanism:
        """The market mechanism (:mod:`twin.market.mechanisms`)."""
        return self._mechanism

    @property
    def domain(self) -> Domain:
        """EIP-712 domain that device keys sign orders and readings under."""
        return self._domain

    # --- operator role ------------------------------------------------------------------
    def transfer_operator(self, next_operator: int, *, sender: int) -> None:
        """Step one of handing over the operator role: the operator names its successor
        (naming another replaces it); the role moves only when that account accepts."""
        _require_role(sender, self.operator, e.NotOperator)
        self.pending_operator = next_operator

    def accept_operator(self, *, sender: int) -> None:
        """Step two: the named successor takes the role."""
        if sender != self.pending_operator:
            raise e.NotOperator(sender)
        self.operator, self.pending_operator = sender, None

    # --- clock ------------------------------------------------------------------------
    @property
    def now_s(self) -> int:
        """The market clock: seconds since the start of interval 0's delivery."""
        return self._now_s

    def set_time(self, now_s: int) -> None:
        """Move the clock forward to ``now_s`` (simulation seconds since the market's start)."""
        if now_s < self._now_s:
            raise ValueError(
                f"set_time: now_s={now_s} is before the market clock ({self._now_s} s); "
                "time only moves forward"
            )
        self._now_s = now_s

    def gate_s(self, interval: int) -> int:
        """Last clock time at which orders for ``interval`` are accepted."""
        return interval * self._interval_s - self._gate_lead_s

    def cap_wh(self, device: Device) -> int:
        """Per-interval energy cap of a device."""
        return device.capacity_w * self._interval_s // 3600

    # --- devices ----------------------------------------------------------------------
    def register_device(self, device: Device, *, sender: int | None = None) -> None:
        _require_role(sender, DSO_ACCOUNT, e.NotDSO)
        if device.device_id in self._devices:
            raise e.DeviceExists(device.device_id)
        self._devices[device.device_id] = device

    def revoke_device(self, device_id: int, *, sender: int | None = None) -> None:
        _require_role(sender, DSO_ACCOUNT, e.NotDSO)
        if device_id not in self._devices:
            raise e.UnknownDevice(device_id)
        if device_id in self._revoked:
            raise e.DeviceRevoked(device_id)
        self._revoked.add(device_id)

    def set_device_signer(
        self, device_id: int, signer: str, *, sender: int | None = None
    ) -> None:
        """DSO binds the device's signing key (its address); ZERO_ADDRESS unbinds."""
        _require_role(sender, DSO_ACCOUNT, e.NotDSO)
        if device_id not in self._devices:
            raise e.UnknownDevice(device_id)
        self._signers[device_id] = signer

    def device_signer(self, device_id: int) -> str:
        self.device(device_id)
        return self._signers.get(device_id, ZERO_ADDRESS)

    def device(self, device_id: int) -> Device:
        if device_id not in self._devices:
            raise e.UnknownDevice(device_id)
        return self._devices[device_id]

    def is_revoked(self, device_id: int) -> bool:
        self.device(device_id)
        return device_id in self._revoked

    # --- money ------------------------------------------------------------------------
    def deposit(self, account: int, amount: int) -> None:
        """Mint ``amount`` to the account's wallet and move it into its free balance."""
        if amount <= 0:
            raise e.BadAmount(amount)
        acc = self._accounts[account]
        pay = 0 if account == DSO_ACCOUNT else min(acc.debt, amount)
        acc.debt -= pay  # an indebted account's deposit pays its debt to the DSO first
        self._accounts[DSO_ACCOUNT].free += pay
        acc.free += amount - pay

    def _credit(self, account: int, amount: int) -> None:
        """Credit ``amount`` to the free balance; an indebted account (not the DSO) pays its
        debt to the DSO from it first (the contract's DebtPaid)."""
        acc = self._accounts[account]
        pay = 0 if account == DSO_ACCOUNT else min(acc.debt, amount)
        acc.debt -= pay
        acc.free += amount - pay
        self._accounts[DSO_ACCOUNT].free += pay

    def withdraw(self, account: int, amount: int) -> None:
        """Move ``amount`` from the account's free balance to its wallet."""
        if amount <= 0:
            raise e.BadAmount(amount)
        acc = self._accounts[account]
        if acc.debt > 0:
            raise e.InDebt(account, acc.debt)
        if acc.free < amount:
            raise e.InsufficientBalance(account, amount, acc.free)
        acc.free -= amount
        acc.wallet += amount

    # --- orders -----------------------------------------------------------------------
    def place_orders(
        self, intents: Sequence[OrderIntent], *, sender: int | None = None
    ) -> list[Order]:
        """Place a batch atomically; ``sender=None`` places each order as its device's owner."""
        self._reject_malformed(intents, "place_orders")
        return self._place(intents, sender, None)

    def place_signed_orders(
        self, signed: Sequence[SignedOrder], *, sender: int | None = None, strict: bool = True
    ) -> list[Order]:
        """Place a batch of device-signed orders (any ``sender`` may relay them); return the
        placed ones.

        An order that fails its checks is skipped and reported in :attr:`rejected` (with the
        error it alone would raise), so no order can void the rest of the batch (as the
        contract's ``OrderRejected``). ``strict`` (default): a malformed batch is refused
        before anything is placed, and the first rejection is raised after the others were
        placed; ``strict=False`` (a relayer's mode) never raises for an order."""
        intents = [s.intent for s in signed]
        self.rejected = []
        if strict:
            self._reject_malformed(intents, "place_signed_orders")
        else:
            bad = {p.index: p.error for p in check_intents(
                intents, is_registered=self._devices.__contains__,
                is_closed=lambda i: self._status.get(i, "open") != "open")}
            kept = [k for k in range(len(signed)) if k not in bad]
            malformed = [Rejection(k, signed[k], err) for k, err in sorted(bad.items())]
            signed = [signed[k] for k in kept]
            intents = [s.intent for s in signed]
        placed = self._place(intents, None, signed)
        if not strict:  # positions in the caller's batch
            self.rejected = sorted(malformed + [replace(r, index=kept[r.index]) for r in self.rejected],
                                   key=lambda r: r.index)
        if strict and self.rejected:
            raise self.rejected[0].error
        return placed

    def cancel_orders(self, cancel: SignedCancel) -> None:
        """The device key voids its orders of an interval with nonces up to ``cancel.nonce``
        (any relayer may send it)."""
        with _purpose(f"cancel_orders: device {cancel.device_id} interval {cancel.interval}"):
            signer = self._signers.get(cancel.device_id, ZERO_ADDRESS)
            if signer == ZERO_ADDRESS or cancel_signer(cancel, self._domain) != signer:
                raise e.BadSignature(cancel.device_id)
            key = (cancel.device_id, cancel.interval)
            if cancel.nonce <= self._nonces[key] or cancel.nonce >= NONCE_LIMIT:
                raise e.ReplayedNonce(cancel.device_id, cancel.interval, cancel.nonce)
            self._nonces[key] = cancel.nonce

    def reclaim_after_s(self, interval: int) -> int:
        """Deadline after which an uncleared interval's escrow is reclaimable."""
        return self.gate_s(interval) + self._interval_s

    def reclaim(self, account: int, order_ids: Sequence[int]) -> None:
        """The owner takes back the escrow of its buy orders of intervals whose clearing did
        not start by :meth:`reclaim_after_s` (the first reclaim voids the interval)."""
        with _purpose(f"reclaim: account {account}"):
            status = dict(self._status)
            for oid in order_ids:
                o = self._orders.get(oid)
                if o is None or o.owner != account or o.side != Side.BUY:
                    raise e.NotDeviceOwner(0 if o is None else o.device_id, account)
                st = status.get(o.interval, "open")
                deadline = self.reclaim_after_s(o.interval)
                if st == "open":
                    if self._now_s <= deadline:
                        raise e.NotReclaimable(o.interval, deadline, self._now_s)
                    status[o.interval] = "void"
                elif st != "void":
                    raise e.NotReclaimable(o.interval, deadline, self._now_s)
            self._status = status
            acc = self._accounts[account]
            for oid in order_ids:
                esc, self._escrow[oid] = self._escrow[oid], 0
                acc.locked -= esc
                acc.free += esc

    def _reject_malformed(self, intents: Sequence[OrderIntent], action: str) -> None:
        reject_malformed(
            intents,
            is_registered=self._devices.__contains__,
            is_closed=lambda i: self._status.get(i, "open") != "open",
            action=action,
        )

    def _place(
        self,
        intents: Sequence[OrderIntent],
        sender: int | None,
        signed: Sequence[SignedOrder] | None,
    ) -> list[Order]:
        free_delta: dict[int, int] = defaultdict(int)
        used_delta: dict[tuple[int, int, Side], int] = defaultdict(int)
        nonces: dict[tuple[int, int], int] = {}
        self._batch_orders.clear()
        placed: list[Order] = []
        action = "place_orders" if signed is None else "place_signed_orders"
        for k, it in enumerate(intents):
            with _purpose(f"{action}: order for device {it.device_id} interval {it.interval}"):
                if signed is None:
                    placed.append(self._check_order(it, sender, free_delta, used_delta,
                                                    self._next_order + len(placed)))
                    continue
                try:  # a failing signed order is skipped and reported, not fatal to the batch
                    nkey = self._check_signature(signed[k], nonces)
                    placed.append(self._check_order(it, sender, free_delta, used_delta,
                                                    self._next_order + len(placed)))
                    nonces[nkey] = signed[k].nonce
                except e.MarketError as exc:
                    exc.purpose = (f"{action}: order for device {it.device_id} interval "
                                   f"{it.interval} nonce {signed[k].nonce}")
                    exc.args = (str(exc),)
                    self.rejected.append(Rejection(k, signed[k], exc))
        # commit
        self._nonces.update(nonces)
        for dkey, n in self._batch_orders.items():
            self._n_orders[dkey] += n
        self._batch_orders.clear()
        for key, wh in used_delta.items():
            self._used[key] += wh
        for order in placed:
            self._orders[order.order_id] = order
            self._orders_by_interval[order.interval].append(order.order_id)
            if order.side == Side.BUY:
                esc = payment(order.energy_wh, order.price_per_mwh)
                self._escrow[order.order_id] = esc
                acc = self._accounts[order.owner]
                acc.free -= esc
                acc.locked += esc
        self._next_order += len(placed)
        return placed

    def _check_signature(
        self, so: SignedOrder, nonces: dict[tuple[int, int], int]
    ) -> tuple[int, int]:
        it = so.intent
        if it.device_id not in self._devices:
            raise e.UnknownDevice(it.device_id)
        if it.device_id in self._revoked:
            raise e.DeviceRevoked(it.device_id)
        signer = self._signers.get(it.device_id, ZERO_ADDRESS)
        if signer == ZERO_ADDRESS or order_signer(so, self._domain) != signer:
            raise e.BadSignature(it.device_id)
        key = (it.device_id, it.interval)
        if so.nonce <= nonces.get(key, self._nonces[key]) or so.nonce >= NONCE_LIMIT:
            raise e.ReplayedNonce(it.device_id, it.interval, so.nonce)
        return key

    def _check_order(
        self,
        it: OrderIntent,
        sender: int | None,
        free_delta: dict[int, int],
        used_delta: dict[tuple[int, int, Side], int],
        order_id: int,
    ) -> Order:
        """Validate one intent against state + the batch so far; record its tentative effects."""
        dev = self._devices.get(it.device_id)
        if dev is None:
            raise e.UnknownDevice(it.device_id)
        if it.device_id in self._revoked:
            raise e.DeviceRevoked(it.device_id)
        if sender is not None and sender != dev.owner:
            raise e.NotDeviceOwner(it.device_id, sender)
        if it.energy_wh <= 0:
            raise e.BadEnergy(it.device_id, it.energy_wh)
        if it.price_per_mwh <= 0 or it.price_per_mwh > PRICE_MAX:
            raise e.BadPrice(it.device_id, it.price_per_mwh)
        if self._status.get(it.interval, "open") != "open":
            raise e.IntervalClosed(it.interval)
        if self._now_s > self.gate_s(it.interval):
            raise e.GateClosed(it.interval, self.gate_s(it.interval), self._now_s)
        side = Side(it.side)
        other = (it.device_id, it.interval, Side(1 - side))
        if self._used[other] + used_delta[other] > 0:
            raise e.OppositeSide(it.device_id, it.interval)
        dkey = (it.device_id, it.interval)
        if self._n_orders[dkey] + self._batch_orders[dkey] >= MAX_ORDERS:
            raise e.TooManyOrders(it.device_id, it.interval, MAX_ORDERS)
        key = (it.device_id, it.interval, side)
        cap = self.cap_wh(dev)
        requested = self._used[key] + used_delta[key] + it.energy_wh
        if requested > cap:
            raise e.CapacityExceeded(it.device_id, cap, requested)
        env = self._envelope.get(key)
        if env is not None and requested > env:
            raise e.EnvelopeExceeded(it.device_id, env, requested)
        if side == Side.BUY:
            need = payment(it.energy_wh, it.price_per_mwh)
            if self._accounts[dev.owner].debt > 0:
                raise e.InDebt(dev.owner, self._accounts[dev.owner].debt)
            available = self._accounts[dev.owner].free + free_delta[dev.owner]
            if available < need:
                raise e.InsufficientBalance(dev.owner, need, available)
            free_delta[dev.owner] -= need
        used_delta[key] += it.energy_wh
        self._batch_orders[dkey] += 1
        return Order(
            order_id=order_id,
            device_id=it.device_id,
            owner=dev.owner,
            interval=it.interval,
            side=side,
            energy_wh=it.energy_wh,
            price_per_mwh=it.price_per_mwh,
        )

    # --- clearing ---------------------------------------------------------------------
    def set_envelopes(self, interval: int, *, export_wh: Mapping[int, int], import_wh: Mapping[int, int],
                      sender: int | None = None) -> None:
        """The DSO publishes the operating envelopes of an open interval (Wh per device and
        side; both maps name the same devices); orders beyond them raise EnvelopeExceeded."""
        _require_role(sender, DSO_ACCOUNT, e.NotDSO)
        if set(export_wh) != set(import_wh):
            raise e.BadAmount(len(export_wh))
        if self._status.get(interval, "open") != "open":
            raise e.IntervalClosed(interval)
        for dev in sorted(export_wh):
            ex, im = int(export_wh[dev]), int(import_wh[dev])
            if not (0 <= ex < 2**32 - 1 and 0 <= im < 2**32 - 1):
                raise e.BadAmount(ex if not 0 <= ex < 2**32 - 1 else im)
            if self._used[(dev, interval, Side.SELL)] > ex or self._used[(dev, interval, Side.BUY)] > im:
                raise e.BadAmount(dev)
        for dev in export_wh:
            self._envelope[(dev, interval, Side.SELL)] = int(export_wh[dev])
            self._envelope[(dev, interval, Side.BUY)] = int(import_wh[dev])

    def set_books(self, interval: int, books: Mapping[int, int], *, sender: int | None = None) -> None:
        """While the feeder is split into electrical islands, the operator clears one book
        per island: ``books`` maps each device to its island (book). Orders of devices
        without a book are not matched (their escrow comes back at clearing); each book
        clears on its own, with its own price."""
        _require_role(sender, self.operator, e.NotOperator)
        if self._status.get(interval, "open") != "open":
            raise e.IntervalClosed(interval)
        self._books[interval] = {int(d): int(b) for d, b in books.items()}

    def clear(self, interval: int, *, sender: int | None = None, wait: bool = True) -> Clearing:
        """Clear an interval; it clears only after its gate closed, so with ``wait`` the
        operator first waits for the gate (the clock moves to one second after it)."""
        with _purpose(f"clear: interval {interval}"):
            if wait and self._now_s <= self.gate_s(interval):
                self.set_time(self.gate_s(interval) + 1)
            return self._clear(interval, sender)

    def _clear(self, interval: int, sender: int | None) -> Clearing:
        _require_role(sender, self.operator, e.NotOperator)
        if self._status.get(interval, "open") != "open":
            raise e.AlreadyCleared(interval)
        if self._now_s <= self.gate_s(interval):
            raise e.GateOpen(interval, self.gate_s(interval), self._now_s)
        book = [self._orders[i] for i in self._orders_by_interval.get(interval, [])]
        books = self._books.pop(interval, None)
        if books is None:
            result = match(book, mechanism=self._mechanism)
            fills, price, volume = list(result.fills), result.price_per_mwh, result.volume_wh
        else:  # one clearing per island book, books in order; the price of the largest
            fills, price, volume, best = [], 0, 0, -1
            for b in sorted({books[o.device_id] for o in book if o.device_id in books}):
                r = match([o for o in book if books.get(o.device_id) == b], mechanism=self._mechanism)
                fills += list(r.fills)
                volume += r.volume_wh
                if r.volume_wh > best:
                    best, price = r.volume_wh, r.price_per_mwh
        kept: dict[int, int] = defaultdict(int)
        trades: list[Trade] = []
        for f in fills:
            trade = Trade(
                trade_id=self._next_trade,
                interval=interval,
                buy_order_id=f.buy_order_id,
                sell_order_id=f.sell_order_id,
                buyer_device=self._orders[f.buy_order_id].device_id,
                seller_device=self._orders[f.sell_order_id].device_id,
                cleared_wh=f.energy_wh,
                energy_wh=f.energy_wh,
                price_per_mwh=f.price_per_mwh,
                creator=self._orders[max(f.buy_order_id, f.sell_order_id)].owner,
                created_s=self._now_s,
            )
            self._next_trade += 1
            self._trades[trade.trade_id] = trade
            self._trades_by_interval[interval].append(trade.trade_id)
            kept[f.buy_order_id] += payment(f.energy_wh, f.price_per_mwh)
            trades.append(trade)
        for oid in (o.order_id for o in book if o.side == Side.BUY):
            release = self._escrow[oid] - kept[oid]
            acc = self._accounts[self._orders[oid].owner]
            acc.locked -= release
            acc.free += release
        self._status[interval] = "cleared"
        return Clearing(
            interval=interval,
            price_per_mwh=price,
            volume_wh=volume,
            trades=tuple(trades),
        )

    # --- DSO curtailment --------------------------------------------------------------
    def curtail(self, trade_id: int, energy_wh: int, *, sender: int | None = None) -> Trade:
        with _purpose(f"curtail: trade {trade_id} to {energy_wh} Wh"):
            return self._curtail(trade_id, energy_wh, sender)

    def _curtail(self, trade_id: int, energy_wh: int, sender: int | None) -> Trade:
        _require_role(sender, DSO_ACCOUNT, e.NotDSO)
        trade = self._trades.get(trade_id)
        if trade is None:
            raise e.UnknownTrade(trade_id)
        if self._status[trade.interval] == "settled":
            raise e.AlreadySettled(trade.interval)
        if energy_wh < 0:
            raise e.BadEnergy(trade.buyer_device, energy_wh)
        if energy_wh > trade.energy_wh:
            raise e.CurtailIncrease(trade_id, trade.energy_wh, energy_wh)
        release = payment(trade.energy_wh, trade.price_per_mwh) - payment(
            energy_wh, trade.price_per_mwh
        )
        acc = self._accounts[self._orders[trade.buy_order_id].owner]
        acc.locked -= release
        acc.free += release
        new = replace(trade, energy_wh=energy_wh)
        self._trades[trade_id] = new
        return new

    # --- settlement -------------------------------------------------------------------
    def settle(
        self, interval: int, metered_wh: Mapping[int, int], *, sender: int | None = None,
        estimated_wh: Mapping[int, int] | None = None,
    ) -> list[SettlementRow]:
        """Settle on meter readings; ``estimated_wh``: devices without a reading settled
        provisionally on the operator's estimate (:mod:`twin.market.provisional`)."""
        with _purpose(f"settle: interval {interval}"):
            return self._settle(interval, self._with_estimates(interval, metered_wh, estimated_wh),
                                sender, estimated=estimated_wh or {})

    def settle_signed(
        self, interval: int, readings: Sequence[SignedReading], *, sender: int | None = None,
        estimated_wh: Mapping[int, int] | None = None,
    ) -> list[SettlementRow]:
        """Settle on meter readings signed by each device's key (any order of readings);
        ``estimated_wh`` as in :meth:`settle`."""
        with _purpose(f"settle_signed: interval {interval}"):
            _require_role(sender, self.operator, e.NotOperator)
            status = self._status.get(interval, "open")
            if status in ("open", "void"):
                raise e.NotCleared(interval)
            if status == "settled":
                raise e.AlreadySettled(interval)
            by_device = sorted(readings, key=lambda r: r.device_id)
            for k, r in enumerate(by_device):
                if k > 0 and r.device_id == by_device[k - 1].device_id:
                    raise e.BadReadings(k)
                dev = self._devices.get(r.device_id)
                if dev is None:
                    raise e.UnknownDevice(r.device_id)
                signer = self._signers.get(r.device_id, ZERO_ADDRESS)
                if (
                    r.interval != interval
                    or signer == ZERO_ADDRESS
                    or reading_signer(r, self._domain) != signer
                ):
                    raise e.BadSignature(r.device_id)
                cap = self.cap_wh(dev)
                if abs(r.metered_wh) > cap:
                    raise e.MeterOutOfRange(r.device_id, cap, r.metered_wh)
            metered = {r.device_id: r.metered_wh for r in by_device}
            return self._settle(interval, self._with_estimates(interval, metered, estimated_wh),
                                sender, estimated=estimated_wh or {})

    def _with_estimates(self, interval: int, metered_wh: Mapping[int, int],
                        estimated_wh: Mapping[int, int] | None) -> dict[int, int]:
        out = dict(metered_wh)
        for d, wh in sorted((estimated_wh or {}).items()):
            dev = self._devices.get(d)
            if dev is None:
                raise e.UnknownDevice(d)
            if d in out:
                raise e.BadReadings(d)
            if abs(wh) > self.cap_wh(dev):
                raise e.MeterOutOfRange(d, self.cap_wh(dev), wh)
            out[d] = int(wh)
        return out

    def _settle(
        self, interval: int, metered_wh: Mapping[int, int], sender: int | None,
        estimated: Mapping[int, int] | None = None,
    ) -> list[SettlementRow]:
        _require_role(sender, self.operator, e.NotOperator)
        status = self._status.get(interval, "open")
        if status in ("open", "void"):
            raise e.NotCleared(interval)
        if status == "settled":
            raise e.AlreadySettled(interval)
        devices = sorted(metered_wh)
        for d in devices:
            if d not in self._devices:
                raise e.UnknownDevice(d)
        trades = [self._trades[t] for t in self._trades_by_interval.get(interval, [])]
        traded_devices = {t.buyer_device for t in trades} | {t.seller_device for t in trades}
        missing = sorted(traded_devices - set(metered_wh))
        if missing:
            raise e.MissingMeterReading(missing[0], interval)
        net_wh: dict[int, int] = defaultdict(int)
        money: dict[int, int] = defaultdict(int)
        for t in trades:  # trade_id order
            amount = payment(t.energy_wh, t.price_per_mwh)
            buyer = self._accounts[self._orders[t.buy_order_id].owner]
            buyer.locked -= amount
            self._credit(self._orders[t.sell_order_id].owner, amount)
            net_wh[t.buyer_device] += t.energy_wh
            net_wh[t.seller_device] -= t.energy_wh
            money[t.buyer_device] -= amount
            money[t.seller_device] += amount
        rows: list[SettlementRow] = []
        dso = self._accounts[DSO_ACCOUNT]
        for d in devices:
            owner = self._devices[d].owner
            acc = self._accounts[owner]
            imbalance = metered_wh[d] - net_wh[d]
            moved = debt = 0
            if imbalance > 0:
                due = payment(imbalance, self._retail)
                paid = min(due, acc.free)
                acc.free -= paid
                dso.free += paid
                acc.debt += due - paid
                moved, debt = -paid, due - paid
            elif imbalance < 0:
                due = payment(-imbalance, self._feed_in)
                paid = min(due, dso.free)
                dso.free -= paid
                dso.debt += due - paid
                self._credit(owner, paid)
                moved, debt = paid, due - paid
            rows.append(
                SettlementRow(
                    interval=interval,
                    device_id=d,
                    owner=owner,
                    traded_wh=net_wh[d],
                    metered_wh=metered_wh[d],
                    imbalance_wh=imbalance,
                    trade_amount=money[d],
                    imbalance_amount=moved,
                    debt=debt,
                )
            )
        for d in estimated or {}:  # provisional until the real reading is trued up
            self._provisional[(interval, d)] = (int(metered_wh[d]), net_wh[d])
        self._status[interval] = "settled"
        return rows

    # --- true-up of provisional settlements (twin.market.provisional) -------------------
    def true_up(self, interval: int, device_id: int, metered_wh: int, *,
                sender: int | None = None) -> TrueUp:
        """Settle the difference between a provisional estimate and the real reading, once."""
        with _purpose(f"true_up: interval {interval} device {device_id}"):
            _require_role(sender, self.operator, e.NotOperator)
            key = (interval, device_id)
            if key in self._trued_up:
                raise AlreadyTruedUp(device_id, interval)
            if key not in self._provisional:
                raise NotProvisional(device_id, interval)
            dev = self.device(device_id)
            if abs(metered_wh) > self.cap_wh(dev):
                raise e.MeterOutOfRange(device_id, self.cap_wh(dev), metered_wh)
            estimate, traded = self._provisional.pop(key)
            prices = {"retail_price_per_mwh": self._retail, "feed_in_price_per_mwh": self._feed_in}
            amount = (imbalance_value(metered_wh - traded, **prices)
                      - imbalance_value(estimate - traded, **prices))
            payer, payee = ((DSO_ACCOUNT, dev.owner) if amount > 0 else (dev.owner, DSO_ACCOUNT))
            src, dst = self._accounts[payer], self._accounts[payee]
            paid = min(abs(amount), src.free)
            src.free -= paid
            dst.free += paid
            src.debt += abs(amount) - paid
            self._trued_up.add(key)
            return TrueUp(interval=interval, device_id=device_id, owner=dev.owner,
                          estimated_wh=estimate, metered_wh=int(metered_wh),
                          delta_wh=int(metered_wh) - estimate, amount=amount,
                          paid=paid if amount > 0 else -paid, debt=abs(amount) - paid)

    def true_up_signed(self, reading: SignedReading, *, sender: int | None = None) -> TrueUp:
        """:meth:`true_up` on the device-signed real reading."""
        with _purpose(f"true_up_signed: interval {reading.interval} device {reading.device_id}"):
            signer = self._signers.get(reading.device_id, ZERO_ADDRESS)
            if signer == ZERO_ADDRESS or reading_signer(reading, self._domain) != signer:
                raise e.BadSignature(reading.device_id)
        return self.true_up(reading.interval, reading.device_id, reading.metered_wh, sender=sender)

    def provisional(self) -> dict[tuple[int, int], int]:
        """``(interval, device) -> estimate_wh`` settled provisionally, not yet trued up."""
        return {k: v[0] for k, v in self._provisional.items()}

    # --- read-outs --------------------------------------------------------------------
    def balance(self, account: int) -> Balance:
        acc = self._accounts.get(account, _Account())
        return Balance(free=acc.free, locked=acc.locked, debt=acc.debt)

    def wallet(self, account: int) -> int:
        return self._accounts.get(account, _Account()).wallet

    def orders(self, interval: int) -> list[Order]:
        return [self._orders[i] for i in self._orders_by_interval.get(interval, [])]

    def trades(self, interval: int) -> list[Trade]:
        return [self._trades[i] for i in self._trades_by_interval.get(interval, [])]

    def interval_status(self, interval: int) -> IntervalStatus:
        return self._status.get(interval, "open")

    def market_holdings(self) -> int:
        return sum(a.free + a.locked for a in self._accounts.values())

    def total_supply(self) -> int:
        return sum(a.wallet for a in self._accounts.values()) + self.market_holdings()


@contextmanager
def _purpose(text: str) -> Iterator[None]:
    """Attach what was being done to a market error raised inside."""
    try:
        yield
    except e.MarketError as exc:
        if exc.purpose is None:
            exc.purpose = text
        raise


def _require_role(sender: int | None, role: int, error: type[e.MarketError]) -> None:
    if sender is not None and sender != role:
        raise error(sender)
