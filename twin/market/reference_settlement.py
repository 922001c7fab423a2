"""The reference ledger's clearing, DSO curtailment, settlement on meter readings and
true-up of provisional settlements (:class:`ReferenceSettlement`, a base of
:class:`~twin.market.reference.ReferenceLedger`)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from itertools import repeat

import numpy as np

from twin.market import errors as e
from twin.market.clearing import COLUMNS_MIN, book_columns, match_columns
from twin.market.limits import METER_LIMIT, column, range_codes
from twin.market.mechanisms import match
from twin.market.provisional import AlreadyTruedUp, NotProvisional, TrueUp, imbalance_value
from twin.market.reference_state import ReferenceState, purpose, require_role
from twin.market.settle_bulk import settle_bulk, trade_sums
from twin.market.signing import ZERO_ADDRESS, SignedReading, reading_signer
from twin.market.signing_batch import recover_readings
from twin.market.types import DSO_ACCOUNT, Clearing, SettlementRow, Side, Trade
from twin.market.units import payment

__all__ = ["ReferenceSettlement"]


class ReferenceSettlement(ReferenceState):
    """Clearing, curtailment, settlement and true-up on the reference ledger's state."""

    # --- clearing ---------------------------------------------------------------------
    def set_envelopes(self, interval: int, *, export_wh: Mapping[int, int], import_wh: Mapping[int, int],
                      sender: int | None = None) -> None:
        """The DSO publishes the operating envelopes of an open interval (Wh per device and
        side; both maps name the same devices); orders beyond them raise EnvelopeExceeded."""
        require_role(sender, DSO_ACCOUNT, e.NotDSO)
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
        require_role(sender, self.operator, e.NotOperator)
        if self._status.get(interval, "open") != "open":
            raise e.IntervalClosed(interval)
        self._books[interval] = {int(d): int(b) for d, b in books.items()}

    def clear(self, interval: int, *, sender: int | None = None, wait: bool = True) -> Clearing:
        """Clear an interval; it clears only after its gate closed, so with ``wait`` the
        operator first waits for the gate (the clock moves to one second after it)."""
        with purpose(f"clear: interval {interval}"):
            if wait and self._now_s <= self.gate_s(interval):
                self.set_time(self.gate_s(interval) + 1)
            return self._clear(interval, sender)

    def _clear(self, interval: int, sender: int | None) -> Clearing:
        if self._now_s <= self.reclaim_after_s(interval):  # past it anyone may clear
            require_role(sender, self.operator, e.NotOperator)
        if self._status.get(interval, "open") != "open":
            raise e.AlreadyCleared(interval)
        if self._now_s <= self.gate_s(interval):
            raise e.GateOpen(interval, self.gate_s(interval), self._now_s)
        book = [self._orders[i] for i in self._orders_by_interval.get(interval, [])]
        books = self._books.pop(interval, None)
        cols = (book_columns(book) if books is None and self._mechanism == "uniform"
                and len(book) >= COLUMNS_MIN else None)
        fills: Iterable[tuple[int, int, int, int]]
        if cols is not None:  # the uniform walk column-wise (twin.market.clearing)
            m = match_columns(*cols)
            price, volume = m.price_per_mwh, int(m.energy_wh.sum())
            fills = zip(m.buy_ids.tolist(), m.sell_ids.tolist(), m.energy_wh.tolist(),
                        repeat(price, m.energy_wh.size), strict=True)
        elif books is None:
            result = match(book, mechanism=self._mechanism)
            price, volume = result.price_per_mwh, result.volume_wh
            fills = [(f.buy_order_id, f.sell_order_id, f.energy_wh, f.price_per_mwh)
                     for f in result.fills]
        else:  # one clearing per island book, books in order; the price of the largest
            fills, price, volume, best = [], 0, 0, -1
            for b in sorted({books[o.device_id] for o in book if o.device_id in books}):
                r = match([o for o in book if books.get(o.device_id) == b], mechanism=self._mechanism)
                fills += [(f.buy_order_id, f.sell_order_id, f.energy_wh, f.price_per_mwh)
                          for f in r.fills]
                volume += r.volume_wh
                if r.volume_wh > best:
                    best, price = r.volume_wh, r.price_per_mwh
        kept: dict[int, int] = defaultdict(int)
        trades: list[Trade] = []
        # locals: a town interval has ~7,500 fills
        orders, now = self._orders, self._now_s
        all_trades, first = self._trades, self._next_trade
        for b_id, s_id, wh, p in fills:  # Trade's fields in order (positional: quicker)
            buy, sell = orders[b_id], orders[s_id]
            trades.append(Trade(first + len(trades), interval, b_id, s_id, buy.device_id,
                                sell.device_id, wh, wh, p, (buy if b_id >= s_id else sell).owner,
                                now))
            kept[b_id] += payment(wh, p)
        if trades:
            ids = range(first, first + len(trades))
            all_trades.update(zip(ids, trades, strict=True))
            self._trades_by_interval[interval].extend(ids)
        self._next_trade = first + len(trades)
        accounts, escrow = self._accounts, self._escrow
        for o in book:
            if o.side == Side.BUY:
                release = escrow[o.order_id] - kept.get(o.order_id, 0)
                acc = accounts[o.owner]
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
        with purpose(f"curtail: trade {trade_id} to {energy_wh} Wh"):
            return self._curtail(trade_id, energy_wh, sender)

    def curtail_batch(self, curtailments: Sequence[tuple[int, int]], *,
                      sender: int | None = None) -> list[Trade]:
        """``(trade_id, energy_wh)`` curtailments in order, all or none (the contract's
        ``curtailBatch``): a failing entry raises before anything changes."""
        with purpose(f"curtail_batch: {len(curtailments)} trades"):
            require_role(sender, DSO_ACCOUNT, e.NotDSO)
            current: dict[int, int] = {}
            for trade_id, energy_wh in curtailments:
                current[trade_id] = self._check_curtail(trade_id, energy_wh, current.get(trade_id))
            return [self._curtail(t, wh, sender) for t, wh in curtailments]

    def _check_curtail(self, trade_id: int, energy_wh: int, current: int | None) -> int:
        trade = self._trades.get(trade_id)
        if trade is None:
            raise e.UnknownTrade(trade_id)
        if self._status[trade.interval] == "settled":
            raise e.AlreadySettled(trade.interval)
        if energy_wh < 0:
            raise e.BadEnergy(trade.buyer_device, energy_wh)
        old = trade.energy_wh if current is None else current
        if energy_wh > old:
            raise e.CurtailIncrease(trade_id, old, energy_wh)
        return energy_wh

    def _curtail(self, trade_id: int, energy_wh: int, sender: int | None) -> Trade:
        require_role(sender, DSO_ACCOUNT, e.NotDSO)
        self._check_curtail(trade_id, energy_wh, None)
        trade = self._trades[trade_id]
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
        with purpose(f"settle: interval {interval}"):
            return self._settle(interval, self._with_estimates(interval, metered_wh, estimated_wh),
                                sender, estimated=estimated_wh or {})

    def settle_signed(
        self, interval: int, readings: Sequence[SignedReading], *, sender: int | None = None,
        estimated_wh: Mapping[int, int] | None = None,
    ) -> list[SettlementRow]:
        """Settle on meter readings signed by each device's key (any order of readings);
        ``estimated_wh`` as in :meth:`settle`."""
        with purpose(f"settle_signed: interval {interval}"):
            require_role(sender, self.operator, e.NotOperator)
            status = self._status.get(interval, "open")
            if status in ("open", "void"):
                raise e.NotCleared(interval)
            if status == "settled":
                raise e.AlreadySettled(interval)
            by_device = sorted(readings, key=lambda r: r.device_id)
            #: every reading's signer, recovered for the whole batch at once (signing_batch)
            recovered = recover_readings(by_device, self._domain)
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
                    or recovered[k] != signer
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
        if not estimated_wh:
            return out
        ds = sorted(estimated_wh)  # a town interval: ~11,000 readings, checked at once
        devs = [self._devices.get(d) for d in ds]
        wh = column([estimated_wh[d] for d in ds])
        cap = np.fromiter((0 if dev is None else self.cap_wh(dev) for dev in devs), np.int64, len(ds))
        bad = range_codes({METER_LIMIT.field: wh}, (METER_LIMIT,),
                          bounds={METER_LIMIT.field: (-cap, cap)}) != 0
        if out or not all(devs) or bad.any():  # the first device in order with a problem
            for j, (d, dev) in enumerate(zip(ds, devs, strict=True)):
                if dev is None:
                    raise e.UnknownDevice(d)
                if d in out:
                    raise e.BadReadings(d)
                if bad[j]:
                    raise METER_LIMIT.error_for(device=d, interval=interval, value=estimated_wh[d],
                                                hi=int(cap[j]))
        out.update(zip(ds, map(int, wh.tolist()), strict=True))
        return out

    def _settle(
        self, interval: int, metered_wh: Mapping[int, int], sender: int | None,
        estimated: Mapping[int, int] | None = None,
    ) -> list[SettlementRow]:
        require_role(sender, self.operator, e.NotOperator)
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
        # DSO curtailment (curtail): Wh taken off each device's trades, and for a buyer the
        # trade-price value of that energy (the escrow released by curtail)
        cut_buy: dict[int, int] = defaultdict(int)
        cut_buy_money: dict[int, int] = defaultdict(int)
        cut_sell: dict[int, int] = defaultdict(int)
        sums = trade_sums(self, trades)
        if sums is not None:  # no trade curtailed, no seller in debt: paid column-wise
            net_wh, money = sums  # type: ignore[assignment]
        for t in trades if sums is None else ():  # trade_id order
            amount = payment(t.energy_wh, t.price_per_mwh)
            buyer = self._accounts[self._orders[t.buy_order_id].owner]
            buyer.locked -= amount
            seller = self._orders[t.sell_order_id].owner
            self._credit(seller, amount)
            comp = payment(t.cleared_wh, t.price_per_mwh) - amount  # the DSO pays curtailed energy
            self._pay(seller, owner_pays=False, due=comp)
            cut_buy[t.buyer_device] += t.cleared_wh - t.energy_wh
            cut_buy_money[t.buyer_device] += comp
            cut_sell[t.seller_device] += t.cleared_wh - t.energy_wh
            net_wh[t.buyer_device] += t.energy_wh
            net_wh[t.seller_device] -= t.energy_wh
            money[t.buyer_device] -= amount
            money[t.seller_device] += amount + comp
        curtailed = any(cut_buy.values()) or any(cut_sell.values())
        rows = None if curtailed else settle_bulk(self, interval, devices, metered_wh, net_wh, money)
        if rows is not None:  # no payment can fall short: booked column-wise
            for d in estimated or {}:
                self._provisional[(interval, d)] = (int(metered_wh[d]), net_wh.get(d, 0))
            self._status[interval] = "settled"
            return rows
        rows = []
        # locals and .get: ~11,000 devices an interval in a town
        devs, short, retail, feed_in = self._devices, self._bond_short, self._retail, self._feed_in
        pay, top_up = self._pay, self._top_up
        for d in devices:
            owner = devs[d].owner
            net, m_wh = net_wh.get(d, 0), metered_wh[d]
            imbalance = m_wh - net
            due = 0
            if imbalance > 0:
                due = payment(imbalance, retail)
                cut = cut_buy.get(d, 0)
                if cut > 0:  # curtailed energy consumed anyway: at most its trade price
                    k = min(imbalance, cut)
                    due = cut_buy_money[d] * k // cut + payment(imbalance - k, retail)
            elif imbalance < 0:  # curtailed energy injected anyway earns nothing
                due = payment(max(-imbalance - cut_sell.get(d, 0), 0), feed_in)
            # the owner pays the DSO for an import, the DSO pays the owner for an export
            moved, debt = pay(owner, owner_pays=imbalance > 0, due=due) if due else (0, 0)
            if short.get(owner, 0):
                top_up(owner)  # a drawn bond refills from what the owner has left
            rows.append(
                SettlementRow(
                    interval=interval,
                    device_id=d,
                    owner=owner,
                    traded_wh=net,
                    metered_wh=m_wh,
                    imbalance_wh=imbalance,
                    trade_amount=money.get(d, 0),
                    imbalance_amount=moved,
                    debt=debt,
                )
            )
        for d in estimated or {}:  # provisional until the real reading is trued up
            self._provisional[(interval, d)] = (int(metered_wh[d]), net_wh.get(d, 0))
        self._status[interval] = "settled"
        return rows

    # --- true-up of provisional settlements (twin.market.provisional) -------------------
    def true_up(self, interval: int, device_id: int, metered_wh: int, *,
                sender: int | None = None) -> TrueUp:
        """Settle the difference between a provisional estimate and the real reading, once."""
        with purpose(f"true_up: interval {interval} device {device_id}"):
            require_role(sender, self.operator, e.NotOperator)
            key = (interval, device_id)
            if key in self._trued_up:
                raise AlreadyTruedUp(device_id, interval)
            deadline = self._bond_terms.deadline_s(interval=interval, interval_s=self._interval_s)
            if key in self._final_estimates:
                raise e.TrueUpExpired(device_id, interval, deadline or 0)
            if key not in self._provisional:
                raise NotProvisional(device_id, interval)
            if deadline is not None and self._now_s > deadline:
                raise e.TrueUpExpired(device_id, interval, deadline)
            dev = self.device(device_id)
            if abs(metered_wh) > self.cap_wh(dev):
                raise e.MeterOutOfRange(device_id, self.cap_wh(dev), metered_wh)
            estimate, traded = self._provisional.pop(key)
            out = self._pay_true_up(interval, device_id, dev.owner, estimate_wh=estimate,
                                    traded_wh=traded, metered_wh=int(metered_wh))
            self._trued_up.add(key)
            return out

    def _pay_true_up(self, interval: int, device_id: int, owner: int, *, estimate_wh: int,
                     traded_wh: int, metered_wh: int) -> TrueUp:
        """Pay the imbalance money of ``metered_wh`` less that of the estimate it was settled
        on (free, then the bond, then debt; the payee credited like any credit)."""
        prices = {"retail_price_per_mwh": self._retail, "feed_in_price_per_mwh": self._feed_in}
        amount = (imbalance_value(metered_wh - traded_wh, **prices)
                  - imbalance_value(estimate_wh - traded_wh, **prices))
        paid, debt = self._pay(owner, owner_pays=amount < 0, due=abs(amount))
        return TrueUp(interval=interval, device_id=device_id, owner=owner,
                      estimated_wh=estimate_wh, metered_wh=metered_wh,
                      delta_wh=metered_wh - estimate_wh, amount=amount, paid=paid, debt=debt)

    def true_up_signed(self, reading: SignedReading, *, sender: int | None = None) -> TrueUp:
        """:meth:`true_up` on the device-signed real reading."""
        with purpose(f"true_up_signed: interval {reading.interval} device {reading.device_id}"):
            signer = self._signers.get(reading.device_id, ZERO_ADDRESS)
            if signer == ZERO_ADDRESS or reading_signer(reading, self._domain) != signer:
                raise e.BadSignature(reading.device_id)
        return self.true_up(reading.interval, reading.device_id, reading.metered_wh, sender=sender)

    def finalize_estimate(self, interval: int, device_id: int, *, sender: int | None = None) -> int:
        """Anyone makes an estimate not trued up by its deadline (the interval's end plus
        the true-up expiry) final: the estimate is the settlement, no true-up can follow, and
        the device's bond no longer waits for it (ProvisionalSettlement.finalizeEstimate,
        event EstimateFinal). Returns the estimate (Wh). ``sender``: any account."""
        with purpose(f"finalizeEstimate: interval {interval} device {device_id}"):
            key = (interval, device_id)
            if key in self._trued_up:
                raise AlreadyTruedUp(device_id, interval)
            if key not in self._provisional:
                raise NotProvisional(device_id, interval)
            deadline = self._bond_terms.deadline_s(interval=interval, interval_s=self._interval_s)
            if deadline is None or self._now_s <= deadline:
                raise e.TrueUpOpen(device_id, interval, deadline or 0, self._now_s)
            estimate, _ = self._provisional.pop(key)
            self._final_estimates.add(key)
            return estimate

    def provisional(self) -> dict[tuple[int, int], int]:
        """``(interval, device) -> estimate_wh`` settled provisionally, not yet trued up."""
        return {k: v[0] for k, v in self._provisional.items()}
