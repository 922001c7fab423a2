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
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from twin.market import errors as e
from twin.market.ledger import IntervalStatus
from twin.market.limits import Limit, first_failed, order_limits
from twin.market.reference_daily import ReferenceDaily
from twin.market.reference_state import Account, purpose, require_role
from twin.market.signing import (
    ZERO_ADDRESS,
    Rejection,
    SignedCancel,
    SignedOrder,
    cancel_signer,
)
from twin.market.signing_batch import recover_orders
from twin.market.types import (
    DSO_ACCOUNT,
    Balance,
    Device,
    Order,
    OrderIntent,
    Side,
    Trade,
)
from twin.market.units import DEVICE_LIMIT, MAX_ORDERS, NONCE_LIMIT, payment
from twin.market.validation import check_intents, reject_malformed

_SIDES = (Side.BUY, Side.SELL)
#: most intervals one release_bond moves the mark over (MarketSettlement.MARK_STEPS)
MARK_STEPS = 1024

__all__ = ["ReferenceLedger"]


class ReferenceLedger(ReferenceDaily):
    """The market in plain Python (see :mod:`twin.market` for the rules): the state and clock
    (:mod:`twin.market.reference_state`), clearing and settlement
    (:mod:`twin.market.reference_settlement`), and here the operator role, the registry,
    money, orders and the read-outs."""

    # --- operator role ------------------------------------------------------------------
    def transfer_operator(self, next_operator: int, *, sender: int) -> None:
        """Step one of handing over the operator role: the operator names its successor
        (naming another replaces it); the role moves only when that account accepts."""
        require_role(sender, self.operator, e.NotOperator)
        self.pending_operator = next_operator

    def accept_operator(self, *, sender: int) -> None:
        """Step two: the named successor takes the role."""
        if sender != self.pending_operator:
            raise e.NotOperator(sender)
        self.operator, self.pending_operator = sender, None

    # --- devices ----------------------------------------------------------------------
    def register_device(self, device: Device, *, sender: int | None = None) -> None:
        require_role(sender, DSO_ACCOUNT, e.NotDSO)
        if device.device_id in self._devices:
            raise e.DeviceExists(device.device_id)
        if device.device_id >= DEVICE_LIMIT:
            raise e.DeviceIdRange(device.device_id, DEVICE_LIMIT)
        self._devices[device.device_id] = device

    def revoke_device(self, device_id: int, *, sender: int | None = None) -> None:
        require_role(sender, DSO_ACCOUNT, e.NotDSO)
        if device_id not in self._devices:
            raise e.UnknownDevice(device_id)
        if device_id in self._revoked:
            raise e.DeviceRevoked(device_id)
        self._revoked.add(device_id)

    def set_device_signer(
        self, device_id: int, signer: str, *, sender: int | None = None
    ) -> None:
        """DSO binds the device's signing key (its address); ZERO_ADDRESS unbinds."""
        require_role(sender, DSO_ACCOUNT, e.NotDSO)
        if device_id not in self._devices:
            raise e.UnknownDevice(device_id)
        self._signers[device_id] = signer

    def device_signer(self, device_id: int) -> str:
        self.device(device_id)
        return self._signers.get(device_id, ZERO_ADDRESS)

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
        with purpose(f"cancel_orders: device {cancel.device_id} interval {cancel.interval}"):
            signer = self._signers.get(cancel.device_id, ZERO_ADDRESS)
            if signer == ZERO_ADDRESS or cancel_signer(cancel, self._domain) != signer:
                raise e.BadSignature(cancel.device_id)
            key = (cancel.device_id, cancel.interval)
            if cancel.nonce <= self._nonces[key] or cancel.nonce >= NONCE_LIMIT:
                raise e.ReplayedNonce(cancel.device_id, cancel.interval, cancel.nonce)
            self._nonces[key] = cancel.nonce

    def reclaim(self, account: int, order_ids: Sequence[int]) -> None:
        """The owner takes back the escrow of its buy orders of intervals whose clearing did
        not start by :meth:`reclaim_after_s` (the first reclaim voids the interval)."""
        with purpose(f"reclaim: account {account}"):
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

    def release_bond(self, account: int, device_id: int) -> None:
        """The owner takes back ``device_id``'s imbalance bond (bond_of(device) less what the
        account's bonds lack) once every interval up to the last one the device ordered in is
        final, whatever order they settled in, and none of its provisional settlements waits
        for a true-up; the device posts a new bond with its next order
        (MarketSettlement.releaseBond, its ``finalBelow`` mark: an interval is final when
        settled or void, or when it has no order and its gate has passed; one call moves it
        over at most MARK_STEPS intervals, advance_final any number)."""
        with purpose(f"releaseBond: account {account}, device {device_id}"):
            info = self._device_info.get(device_id)
            if info is None or self._devices[device_id].owner != account:
                raise e.NotDeviceOwner(device_id, account)
            last, bonded = info
            mark = self._final_below
            w = self._advance_final(last + 1, MARK_STEPS)
            if (not bonded or w <= last or any(d == device_id for _, d in self._provisional)
                    or self.daily_waits(device_id)):
                self._final_below = mark  # the contract's revert keeps nothing
                raise e.BondLocked(device_id, w if w <= last else last)
            self._device_info[device_id] = (last, False)
            acc = self._accounts[account]
            posted = self.bond_of(self._devices[device_id])  # its rating is fixed at registration
            amount = min(acc.bond, posted)
            acc.bond -= amount
            self._bond_short[account] -= posted - amount  # drawn part of its bond
            self._credit(account, amount)

    def advance_final(self, steps: int, *, sender: int | None = None) -> int:
        """Anyone moves release_bond's mark over at most ``steps`` final intervals (settled,
        void, or empty with the gate passed); the new mark (MarketSettlement.advanceFinal).
        ``sender``: any account (no role needed)."""
        if steps < 0:
            raise ValueError(f"advance_final: steps must be >= 0, got {steps}")
        return self._advance_final(2**64 - 1, steps)

    def final_mark(self) -> int:
        """The first interval not known final (every one below it is)."""
        return self._final_below

    def _advance_final(self, up_to: int, steps: int) -> int:
        w = self._final_below
        end = min(up_to, w + steps) if w < up_to else w
        while w < end and (self._status.get(w, "open") in ("settled", "void") or (
                not self._orders_by_interval.get(w) and self._now_s > self.gate_s(w))):
            w += 1
        self._final_below = w
        return w

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
        recovered: Sequence[Any] | None = None,
    ) -> list[Order]:
        """``recovered``: each signed order's signer already checked elsewhere (an address),
        or the error it fails with (daily schedules, :mod:`twin.market.reference_daily`)."""
        free_delta: dict[int, int] = defaultdict(int)
        used_delta: dict[tuple[int, int, Side], int] = defaultdict(int)
        nonces: dict[tuple[int, int], int] = {}
        self._batch_orders.clear()
        self._batch_info.clear()
        self._batch_bond.clear()
        self._batch_fill.clear()
        placed: list[Order] = []
        action = "place_orders" if signed is None else "place_signed_orders"
        #: every signed order's signer, recovered for the whole batch at once (signing_batch)
        signers: Sequence[Any] = (recovered if recovered is not None else
                                  recover_orders(signed, self._domain) if signed is not None else [])
        # every order's range limits at once (twin.market.limits, as the column-wise path):
        # the first that fails, raised where the contract checks it
        failed = first_failed(intents, None if signed is None else [s.nonce for s in signed],
                              order_limits(self._min_order_wh))
        for k, it in enumerate(intents):  # purpose() inlined: the text only on an error
            if signed is None:
                try:
                    placed.append(self._check_order(it, sender, free_delta, used_delta,
                                                    self._next_order + len(placed), failed[k]))
                except e.MarketError as exc:
                    if exc.purpose is None:
                        exc.purpose = f"{action}: order for device {it.device_id} interval {it.interval}"
                    raise
                continue
            try:  # a failing signed order is skipped and reported, not fatal to the batch
                if isinstance(signers[k], e.MarketError):
                    raise signers[k]
                nkey = self._check_signature(signed[k], nonces, signers[k], failed[k])
                placed.append(self._check_order(it, sender, free_delta, used_delta,
                                                self._next_order + len(placed), failed[k]))
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
        self._device_info.update(self._batch_info)
        for owner, bond in self._batch_bond.items():
            self._accounts[owner].free -= bond
            self._accounts[owner].bond += bond
        for owner, fill in self._batch_fill.items():
            self._accounts[owner].free -= fill
            self._accounts[owner].bond += fill
            self._bond_short[owner] -= fill
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
        self, so: SignedOrder, nonces: dict[tuple[int, int], int], recovered: str,
        failed: Limit | None = None,
    ) -> tuple[int, int]:
        """``failed``: the order's first failing range limit (twin.market.limits), if any."""
        it = so.intent
        if it.device_id not in self._devices:
            raise e.UnknownDevice(it.device_id)
        if it.device_id in self._revoked:
            raise e.DeviceRevoked(it.device_id)
        signer = self._signers.get(it.device_id, ZERO_ADDRESS)
        if signer == ZERO_ADDRESS or recovered != signer:
            raise e.BadSignature(it.device_id)
        if failed is not None and failed.stage == "signature":  # the nonce's range
            raise failed.error_for(device=it.device_id, interval=it.interval,
                                   value=getattr(so, failed.field))
        key = (it.device_id, it.interval)
        if so.nonce <= nonces.get(key, self._nonces[key]):
            raise e.ReplayedNonce(it.device_id, it.interval, so.nonce)
        return key

    def _check_order(
        self,
        it: OrderIntent,
        sender: int | None,
        free_delta: dict[int, int],
        used_delta: dict[tuple[int, int, Side], int],
        order_id: int,
        failed: Limit | None = None,
    ) -> Order:
        """Validate one intent against state + the batch so far; record its tentative effects.
        ``failed``: its first failing range limit (:mod:`twin.market.limits`, checked for the
        batch at once), raised after the device checks.
        (Attribute and dict look-ups hoisted into locals: ~1 M calls in a town day.)"""
        d, k, wh, price = it.device_id, it.interval, it.energy_wh, it.price_per_mwh
        dev = self._devices.get(d)
        if dev is None:
            raise e.UnknownDevice(d)
        if d in self._revoked:
            raise e.DeviceRevoked(d)
        owner = dev.owner
        if sender is not None and sender != owner:
            raise e.NotDeviceOwner(d, sender)
        if failed is not None:  # energy, minimum, price, interval range
            raise failed.error_for(device=d, interval=k, value=getattr(it, failed.field))
        if self._status.get(k, "open") != "open":
            raise e.IntervalClosed(k)
        gate = self.gate_s(k)
        if self._now_s > gate:
            raise e.GateClosed(k, gate, self._now_s)
        side = it.side if type(it.side) is Side else Side(it.side)
        # .get: a lookup must not add an entry per order to the ledger's state
        used, n_orders, batch_orders = self._used, self._n_orders, self._batch_orders
        other = (d, k, _SIDES[1 - side])
        if used.get(other, 0) + used_delta.get(other, 0) > 0:
            raise e.OppositeSide(d, k)
        dkey = (d, k)
        n_before = n_orders.get(dkey, 0) + batch_orders.get(dkey, 0)
        if n_before >= MAX_ORDERS:
            raise e.TooManyOrders(d, k, MAX_ORDERS)
        key = (d, k, side)
        cap = dev.capacity_w * self._interval_s // 3600  # cap_wh(dev)
        requested = used.get(key, 0) + used_delta.get(key, 0) + wh
        if requested > cap:
            raise e.CapacityExceeded(d, cap, requested)
        env = self._envelope.get(key)
        if env is not None and requested > env:
            raise e.EnvelopeExceeded(d, env, requested)
        # the device's first order of the interval: its bond, unless posted
        first = n_before == 0
        last, bonded = self._batch_info.get(d, self._device_info.get(d, (0, False)))
        bond = self.bond_of(dev) if first and not bonded else 0
        acc = self._accounts[owner]
        available = acc.free + free_delta[owner]
        if available < bond:
            raise e.InsufficientBalance(owner, bond, available)
        if side == Side.BUY:
            need = payment(wh, price)
            if acc.debt > 0:
                raise e.InDebt(owner, acc.debt)
            if available - bond < need:
                raise e.InsufficientBalance(owner, need, available - bond)
            free_delta[owner] -= need
        if first and (not bonded or (self._bond_terms.any_bond and last < k)):
            self._batch_info[d] = (max(last, k), True)
            if bond:
                free_delta[owner] -= bond
                self._batch_bond[owner] += bond
        used_delta[key] += wh
        batch_orders[dkey] += 1
        if first:  # a drawn bond refills from the free balance left (MarketSettlement.topUpAtOrder)
            short = self._bond_short.get(owner, 0) - self._batch_fill[owner]
            fill = min(short, acc.free + free_delta[owner])
            if fill > 0:
                free_delta[owner] -= fill
                self._batch_fill[owner] += fill
        return Order(order_id=order_id, device_id=d, owner=owner, interval=k, side=side,
                     energy_wh=wh, price_per_mwh=price)

    # --- read-outs --------------------------------------------------------------------
    def balance(self, account: int) -> Balance:
        acc = self._accounts.get(account, Account())
        return Balance(free=acc.free, locked=acc.locked, debt=acc.debt, bond=acc.bond)

    def wallet(self, account: int) -> int:
        return self._accounts.get(account, Account()).wallet

    def orders(self, interval: int) -> list[Order]:
        return [self._orders[i] for i in self._orders_by_interval.get(interval, [])]

    def trades(self, interval: int) -> list[Trade]:
        return [self._trades[i] for i in self._trades_by_interval.get(interval, [])]

    def interval_status(self, interval: int) -> IntervalStatus:
        return self._status.get(interval, "open")

    def market_holdings(self) -> int:
        return sum(a.free + a.locked + a.bond for a in self._accounts.values())

    def total_supply(self) -> int:
        return sum(a.wallet for a in self._accounts.values()) + self.market_holdings()
