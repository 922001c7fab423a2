"""The pilot mechanisms in a scenario run (services of :mod:`twin.market.services`), each on
the reference class or its on-chain client (:mod:`twin.chain.services_chain`), with the same
results on both ledgers.

**Green-token exchange** (``market.mechanism: green_exchange``, EU Scanergy). The P2P auction
takes no orders (``takes_orders = False``): every interval's empty book clears and every
meter settles against the DSO at the retail / feed-in tariffs, as without trades. After the
settlement of ``k`` the DSO records every meter reading of ``k`` on the exchange: PV surplus
mints tokens to its owner (1 per kWh, Wh carried), consumption becomes redeemable. With a
market rate (``rate_adjustment`` > 0) the DSO then moves both prices by
``rate_adjustment x (demand - supply) / (demand + supply)`` (demand: whole kWh of uncovered
consumption; supply: the tokens offered plus its stock), within the rate bounds, and posts
them (``set_prices``); fixed prices are the special case 0. Policy
(deterministic): every prosumer sells all its tokens to the DSO at once (as many as the
DSO's free balance pays); then every device with at least 1 kWh of uncovered consumption
— in device-id order, starting at a rotating offset ``k mod n`` so no meter always comes
first — buys as many tokens as it can redeem, the DSO's stock holds and its owner's free
market balance pays, and redeems them (green-supplied kWh). Payers withdraw exactly the
money they need from their market balance to their wallet first.

**Charger tariffs** (``market.services.charger_tariffs``, Share&Charge). The first
``round(shared_share * n)`` EV chargers by device id are shared. Their owners (the hosts,
whose meters pay the energy in the market) post a tariff for every interval: the retail
price plus the DSO's time-of-use network fee of that interval (``grid.tariff``), clamped to
the bounds — posted only when it changes. The car charging at a shared charger belongs to a
visiting driver: the ``j``-th shared charger's driver is the ``j``-th (cyclically)
household account that owns no EV charger (if every household has one: the next host). A
session is a run of consecutive intervals in which the charger's meter consumes; it starts
at the tariff in force for its first interval with an energy cap of the EV battery
(``agents.evs.battery_kwh``), locking ``payment(cap, tariff)`` of the driver's escrow (the
driver tops its escrow up from its market balance; a driver who cannot is recorded as
``unfunded`` and that interval is not paid); it ends at the first interval without
consumption (or when the cap would be exceeded, or at the end of the run) and the meter
operator pays the host on the session's metered energy. At the end every driver withdraws
its free escrow. Owners' own prices (``host_markup``): host ``j`` posts the common tariff
times ``1 + host_markup x frac(j x golden ratio)``. Drivers' choice (``driver_choice``): the
chargers whose sessions start in ``k`` are matched to the free visiting drivers, each (from a
rotating offset) taking the one with the lowest ``payment(battery, tariff) + 2 x distance x
km_cost`` (distance: straight line from its home bus to the charger's bus, feeder geodata); a
charger no free driver took keeps its fixed driver. The car's load stays at the charger's
meter (the agents model ties each EV to its charger): the choice decides who pays whom.

**Green currency** (``market.services.green_currency``, Shanghai VPP). After each settled
interval the operator mints to the owner of each buying device its renewable consumption:
the Wh it bought from PV sellers, delivered on metered injection in trade-id order
(``min(traded, injection left)``) — under the green exchange, the green kWh it redeemed —
at ``tokens_per_kwh_renewable``; and for each demand-response event the TSO called, the
metered reduction of each offering flexible device (the DR service's set,
``ServiceContext.dr_devices``: households with a flexible load, EV chargers, community
batteries) below its baseline (floor mean of its
last ``market.services.demand_response.baseline_intervals`` readings, capped at the offer)
at ``tokens_per_kwh_dr`` — whether or not the DR compensation service runs.
"""

from __future__ import annotations

import math
from collections import defaultdict, deque
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twin.market.charger_tariffs import CONTRACT_WALLET, ChargerTariffs
from twin.market.green_currency import GreenCurrency
from twin.market.green_exchange import GREEN_KINDS, WH_PER_TOKEN, GreenExchange
from twin.market.services import MarketService, ServiceBuilder, ServiceContext
from twin.market.types import DSO_ACCOUNT, DeviceKind, SettlementRow, Trade
from twin.market.units import MICRO, payment, price_from_per_mwh
from twin.scenario import Scenario

__all__ = [
    "PILOT_BUILDERS",
    "ChargerTariffService",
    "GreenCurrencyService",
    "GreenExchangeService",
    "RailMoney",
    "pilot_kpis",
]


def _tx(backend: Any) -> str:
    """Hash of the backend's latest transaction ('' for a reference)."""
    return str(getattr(backend, "last_tx_hash", ""))


def _wallet(ctx: ServiceContext, account: int) -> int:
    """The account's wallet: the ledger's plus the money rail's bookings (reference)."""
    return int(ctx.ledger.wallet(account)) + ctx.rail.wallet_adjustment(account)


def _cash(ctx: ServiceContext, account: int, amount: int) -> int:
    """Bring the account's wallet up to ``amount`` from its free market balance as far as it
    goes; returns what the wallet then holds, capped at ``amount``."""
    have = _wallet(ctx, account)
    if have >= amount:
        return amount
    take = min(amount - have, int(ctx.ledger.balance(account).free))
    if take > 0:
        ctx.rail.withdraw(account, take)
    return have + max(take, 0)


def _affordable(cash: int, price_per_mwh: int) -> int:
    """Most whole kWh tokens ``cash`` pays for at ``price_per_mwh``."""
    n = cash * 10**6 // (WH_PER_TOKEN * price_per_mwh)
    while n > 0 and payment(n * WH_PER_TOKEN, price_per_mwh) > cash:
        n -= 1
    return n


class RailMoney:
    """:class:`~twin.market.wallets.Money` of a reference mechanism over the run's money
    rail: wallet-to-wallet payments and the contract's escrow (``CONTRACT_WALLET``) are
    booked as the contract pulling in and paying out."""

    def __init__(self, ctx: ServiceContext, contract: str) -> None:
        self.ctx = ctx
        self.contract = contract

    def balance_of(self, account: int) -> int:
        return _wallet(self.ctx, account)

    def transfer(self, sender: int, to: int, amount: int) -> None:
        if amount <= 0:
            return
        if sender != CONTRACT_WALLET:
            self.ctx.rail.pay_in(self.contract, sender, amount)
        if to != CONTRACT_WALLET:
            self.ctx.rail.pay_out(self.contract, to, amount)


# ------------------------------------------------------------------ green-token exchange
class GreenExchangeService(MarketService):
    name = "green_exchange"
    tables = ("green_exchange",)
    takes_orders = False

    def __init__(self, ctx: ServiceContext, *, buy_price_per_mwh: int,
                 sell_price_per_mwh: int, rate_adjustment: float = 0.0,
                 rate_bounds: tuple[float, float] = (0.25, 4.0)) -> None:
        super().__init__()
        self.ctx = ctx
        self.buy_price = buy_price_per_mwh
        self.sell_price = sell_price_per_mwh
        self._base = (buy_price_per_mwh, sell_price_per_mwh)
        self.rate = 1.0  # the token's market rate, a multiple of the initial prices
        self.rate_adjustment, self.rate_bounds = rate_adjustment, rate_bounds
        if ctx.chain:
            from twin.chain.services_chain import ChainGreenExchange

            chain = ChainGreenExchange.deploy(ctx.ledger, buy_price_per_mwh=buy_price_per_mwh,
                                              sell_price_per_mwh=sell_price_per_mwh)
            ctx.rail.register("GreenTokenExchange", chain.contract.address)
            self.backend: Any = chain
        else:
            self.backend = GreenExchange(
                devices=ctx.devices, money=RailMoney(ctx, "GreenTokenExchange"),
                buy_price_per_mwh=buy_price_per_mwh, sell_price_per_mwh=sell_price_per_mwh)
            ctx.rail.register("GreenTokenExchange")
        ctx.shared[self.name] = self
        self._unsold: set[int] = set()  # holders the DSO could not pay in full
        self._uncovered: dict[int, int] = defaultdict(int)  # mirror of the exchange's
        #: interval -> device -> green-supplied Wh redeemed in that interval's step
        self.redeemed_wh: dict[int, dict[int, int]] = {}

    def _row(self, k: int, action: str, device: int | None, account: int, tokens: int,
             energy_wh: int, amount: int, price: int | None = None) -> None:
        self.record("green_exchange", {
            "time_s": k * self.ctx.interval_s, "interval": k, "action": action,
            "device_id": device, "account": account, "tokens": tokens, "energy_wh": energy_wh,
            "amount": amount, "tx_hash": _tx(self.backend),
            "price_per_mwh": self.buy_price if price is None and action == "sold"
            else self.sell_price if price is None and action == "bought" else price})

    def _reprice(self, k: int, *, supply: int, demand: int) -> None:
        """Move the token's rate by the interval's imbalance and post the new prices."""
        if self.rate_adjustment == 0 or supply + demand == 0:
            return
        lo, hi = self.rate_bounds
        self.rate = min(max(self.rate * (1 + self.rate_adjustment * (demand - supply) / (demand + supply)),
                            lo), hi)
        # whole thousandths of a currency unit per MWh: a token's (kWh's) price stays whole
        buy, sell = (max(1000, round(p * self.rate / 1000) * 1000) for p in self._base)
        if (buy, sell) == (self.buy_price, self.sell_price):
            return
        self.backend.set_prices(buy, sell, sender=DSO_ACCOUNT)
        self.buy_price, self.sell_price = buy, sell
        self._row(k, "priced_buy", None, DSO_ACCOUNT, supply, 0, 0, price=buy)
        self._row(k, "priced_sell", None, DSO_ACCOUNT, demand, 0, 0, price=sell)

    def on_settled(self, *, interval: int, trades: Sequence[Trade],
                   rows: Sequence[SettlementRow], metered_wh: Mapping[int, int]) -> None:
        k, ex, devices = interval, self.backend, self.ctx.devices
        readings = sorted((int(d), int(w)) for d, w in metered_wh.items() if d in devices)
        deliveries = ex.record_meters(k, readings)
        for d in deliveries:
            self._row(k, "minted", d.device_id, d.owner, d.tokens, d.injected_wh, 0)
        for d, w in readings:
            if w > 0:
                self._uncovered[d] += w
        sellers = sorted(({d.owner for d in deliveries} | self._unsold) - {DSO_ACCOUNT})
        if self.rate_adjustment:
            self._reprice(k, supply=ex.balance_of(DSO_ACCOUNT) + sum(ex.balance_of(o) for o in sellers),
                          demand=sum(w // WH_PER_TOKEN for w in self._uncovered.values()))
        self._unsold = set()
        for owner in sellers:
            held = n = ex.balance_of(owner)
            if n > 0:
                cash = _cash(self.ctx, DSO_ACCOUNT, payment(n * WH_PER_TOKEN, self.buy_price))
                n = min(n, _affordable(cash, self.buy_price))
            if n > 0:
                amount = ex.sell(owner, n)
                self._row(k, "sold", None, owner, n, n * WH_PER_TOKEN, amount)
            if held > n:  # the DSO could not pay for all: offered again next interval
                self._unsold.add(owner)
        stock = ex.balance_of(DSO_ACCOUNT)
        wanting = sorted(d for d, wh in self._uncovered.items() if wh >= WH_PER_TOKEN)
        if not wanting or stock == 0:
            return
        start = k % len(wanting)
        for d in wanting[start:] + wanting[:start]:
            n = min(self._uncovered[d] // WH_PER_TOKEN, stock)
            owner = devices[d].owner
            if n > 0 and owner != DSO_ACCOUNT:
                cash = _cash(self.ctx, owner, payment(n * WH_PER_TOKEN, self.sell_price))
                n = min(n, _affordable(cash, self.sell_price))
            if n <= 0 or owner == DSO_ACCOUNT:
                continue
            amount = ex.buy(owner, n)
            self._row(k, "bought", d, owner, n, n * WH_PER_TOKEN, amount)
            ex.redeem(d, n, sender=owner)
            self._row(k, "redeemed", d, owner, n, n * WH_PER_TOKEN, 0)
            self._uncovered[d] -= n * WH_PER_TOKEN
            self.redeemed_wh.setdefault(k, {})[d] = n * WH_PER_TOKEN
            stock -= n
            if stock == 0:
                break


# ------------------------------------------------------------------ shared-charger tariffs
@dataclass
class _Session:
    session_id: int
    start: int  # interval
    price_per_mwh: int
    locked: int
    energy_wh: int
    driver: int = -1


class ChargerTariffService(MarketService):
    name = "charger_tariffs"
    tables = ("charger_tariffs", "charging_sessions")

    def __init__(self, ctx: ServiceContext, *, scenario: Scenario) -> None:
        super().__init__()
        self.ctx = ctx
        spec = scenario.market.services.charger_tariffs
        lo = price_from_per_mwh(spec.tariff_min_per_mwh)
        hi = price_from_per_mwh(spec.tariff_max_per_mwh)
        if ctx.chain:
            from twin.chain.services_chain import ChainChargerTariffs

            chain = ChainChargerTariffs.deploy(ctx.ledger, tariff_min_per_mwh=lo,
                                               tariff_max_per_mwh=hi)
            ctx.rail.register("ChargerTariffs", chain.contract.address)
            self.backend: Any = chain
        else:
            self.backend = ChargerTariffs(devices=ctx.devices, money=RailMoney(ctx, "ChargerTariffs"),
                                          tariff_min_per_mwh=lo, tariff_max_per_mwh=hi)
            ctx.rail.register("ChargerTariffs")
        self.bounds = (lo, hi)
        evs = sorted(d for d, dev in ctx.devices.items() if dev.kind == DeviceKind.EV)
        self.chargers = evs[: int(spec.shared_share * len(evs) + 0.5)]
        self.host = {c: ctx.devices[c].owner for c in self.chargers}
        hosts = {ctx.devices[d].owner for d in evs}
        households = sorted({ctx.devices[d].owner for name, d in ctx.agent_devices.items()
                             if name.startswith("household_")} - hosts - {DSO_ACCOUNT})
        pool = households or sorted(set(self.host.values()))
        self.driver = {c: pool[(j + (0 if households else 1)) % len(pool)]
                       for j, c in enumerate(self.chargers)}
        # hosts' own prices: a fixed spread of markups (golden-ratio sequence, no randomness)
        self.markup = {c: spec.host_markup * ((j * 0.6180339887498949) % 1.0)
                       for j, c in enumerate(self.chargers)}
        # drivers choosing by price and distance: the visiting drivers and their home buses
        self.choice = spec.driver_choice
        self.km_cost = price_from_per_mwh(spec.km_cost)  # micro-units per km
        home = {ctx.devices[d].owner: ctx.devices[d].bus for name, d in sorted(ctx.agent_devices.items())
                if name.startswith("household_")}
        self.drivers = sorted(set(self.driver.values()))
        self.home_bus = {a: home[a] for a in self.drivers if a in home}
        self.busy: set[int] = set()  # drivers with an open session
        self.cap_wh = round(scenario.agents.evs.battery_kwh * 1000)
        self.retail = price_from_per_mwh(scenario.market.retail_price_per_mwh)
        tariff = scenario.grid.tariff
        self._fees = (price_from_per_mwh(tariff.offpeak_fee_per_mwh),
                      price_from_per_mwh(tariff.peak_fee_per_mwh))
        self._peak = (tariff.peak_start_hour, tariff.peak_end_hour)
        start = scenario.start
        self._start_s_of_day = start.hour * 3600 + start.minute * 60 + start.second
        self._posted: dict[int, int] = {}
        self._open: dict[int, _Session] = {}
        self._post(0)

    def tariff(self, k: int) -> int:
        """The hosts' tariff for interval ``k``: retail + the DSO's network fee, clamped
        (the fee rule of :meth:`twin.agents.dso.DSOAgent.network_fee`)."""
        off, peak = self._fees
        fee = off
        if off != peak:
            hour = ((self._start_s_of_day + k * self.ctx.interval_s) % 86_400) / 3600.0
            a, b = self._peak
            fee = peak if ((a <= hour < b) if a < b else (hour >= a or hour < b)) else off
        return min(max(self.retail + fee, self.bounds[0]), self.bounds[1])

    def host_tariff(self, c: int, k: int) -> int:
        """Charger ``c``'s own tariff for ``k``: the common tariff with its host's markup."""
        return min(max(round(self.tariff(k) * (1.0 + self.markup[c])), self.bounds[0]), self.bounds[1])

    def distance_km(self, driver: int, c: int) -> float:
        """Straight-line distance from the driver's home to the charger (0 without geodata)."""
        a = self.ctx.bus_xy_km.get(self.home_bus.get(driver, -1))
        b = self.ctx.bus_xy_km.get(self.ctx.devices[c].bus)
        return 0.0 if a is None or b is None else math.hypot(a[0] - b[0], a[1] - b[1])

    def _choose(self, k: int, starting: list[int]) -> dict[int, int]:
        """Drivers choose among the chargers starting a session in ``k``: each free driver,
        from a rotating offset, takes the open charger with the lowest expected cost
        ``payment(battery, tariff) + 2 x distance x km_cost``; a charger nobody chose keeps
        its fixed driver."""
        free = [d for d in self.drivers if d not in self.busy]
        if free:
            start = k % len(free)
            free = free[start:] + free[:start]
        left, out = list(starting), {}
        for d in free:
            if not left:
                break
            c = min(left, key=lambda c: (payment(self.cap_wh, self._posted[c])
                                         + 2 * self.distance_km(d, c) * self.km_cost, c))
            out[c] = d
            left.remove(c)
        return out | {c: self.driver[c] for c in left}

    def _post(self, k: int) -> None:
        for c in self.chargers:
            price = self.host_tariff(c, k)
            if self._posted.get(c) != price:
                self.backend.set_tariff(c, price, sender=self.host[c])
                self._posted[c] = price
                self.record("charger_tariffs", {
                    "time_s": k * self.ctx.interval_s, "interval": k, "charger": c,
                    "owner": self.host[c], "price_per_mwh": price, "tx_hash": _tx(self.backend)})

    def on_settled(self, *, interval: int, trades: Sequence[Trade],
                   rows: Sequence[SettlementRow], metered_wh: Mapping[int, int]) -> None:
        k = interval
        starting: list[int] = []
        for c in self.chargers:
            wh = max(int(metered_wh.get(c, 0)), 0)
            s = self._open.get(c)
            if s is not None and (wh == 0 or s.energy_wh + wh > self.cap_wh):
                self._end(c, end=k - 1)
                s = None
            if wh > 0 and s is None:
                starting.append(c)
        chosen = self._choose(k, starting) if self.choice else {c: self.driver[c] for c in starting}
        for c in self.chargers:
            wh = max(int(metered_wh.get(c, 0)), 0)
            if wh == 0:
                continue
            s = self._open.get(c)
            if s is None:
                s = self._start(c, k, wh, driver=chosen[c])
                if s is None:
                    continue
            s.energy_wh += wh
        self._post(k + 1)

    def _start(self, c: int, k: int, wh: int, *, driver: int) -> _Session | None:
        price = self._posted[c]
        lock = payment(self.cap_wh, price)
        free = self.backend.escrow(driver)[0]
        if free < lock:
            need = lock - free
            got = _cash(self.ctx, driver, need)
            if got < need:
                self.record("charging_sessions", {
                    "time_s": k * self.ctx.interval_s, "interval": k, "end_interval": k,
                    "session_id": None, "charger": c, "owner": self.host[c], "driver": driver,
                    "price_per_mwh": price, "max_wh": self.cap_wh, "locked": 0,
                    "metered_wh": wh, "amount": 0, "status": "unfunded", "tx_hash": ""})
                return None
            self.backend.deposit(driver, need)
        started = self.backend.start_session(c, self.cap_wh, driver=driver)
        s = _Session(started.session_id, k, started.price_per_mwh, started.locked, 0, driver)
        self._open[c] = s
        self.busy.add(driver)
        return s

    def _end(self, c: int, *, end: int) -> None:
        s = self._open.pop(c)
        if all(o.driver != s.driver for o in self._open.values()):
            self.busy.discard(s.driver)
        done = self.backend.end_session(s.session_id, s.energy_wh)
        self.record("charging_sessions", {
            "time_s": s.start * self.ctx.interval_s, "interval": s.start, "end_interval": end,
            "session_id": s.session_id, "charger": c, "owner": done.owner, "driver": done.driver,
            "price_per_mwh": done.price_per_mwh, "max_wh": done.max_wh, "locked": done.locked,
            "metered_wh": done.metered_wh, "amount": done.amount, "status": "paid",
            "tx_hash": _tx(self.backend)})

    def finish(self, *, interval: int) -> None:
        for c in sorted(self._open):
            self._end(c, end=interval)
        for driver in sorted(set(self.driver.values())):
            free = self.backend.escrow(driver)[0]
            if free > 0:
                self.backend.withdraw(driver, free)


# ------------------------------------------------------------------------ green currency
class GreenCurrencyService(MarketService):
    name = "green_currency"
    tables = ("green_currency",)

    def __init__(self, ctx: ServiceContext, *, scenario: Scenario) -> None:
        super().__init__()
        self.ctx = ctx
        spec = scenario.market.services.green_currency
        self.rates = (round(spec.tokens_per_kwh_renewable * MICRO),
                      round(spec.tokens_per_kwh_dr * MICRO))
        if ctx.chain:
            from twin.chain.services_chain import ChainGreenCurrency

            chain = ChainGreenCurrency.deploy(ctx.ledger, tokens_per_kwh_renewable=self.rates[0],
                                              tokens_per_kwh_dr=self.rates[1])
            ctx.rail.register("GreenCurrency", chain.contract.address)
            self.backend: Any = chain
        else:
            self.backend = GreenCurrency(devices=ctx.devices, tokens_per_kwh_renewable=self.rates[0],
                                         tokens_per_kwh_dr=self.rates[1])
            ctx.rail.register("GreenCurrency")
        self.exchange_mode = scenario.market.mechanism == "green_exchange"
        n = scenario.market.services.demand_response.baseline_intervals
        # the DR service's device set (flexible households + EVs + batteries)
        self.flexible = sorted(ctx.dr_devices or (d for d, dev in ctx.devices.items()
                                                  if dev.kind in (DeviceKind.EV, DeviceKind.STORAGE)))
        self._history: dict[int, deque[int]] = {d: deque(maxlen=n) for d in self.flexible}
        self._events: dict[int, tuple[int, dict[int, int]]] = {}  # interval -> (id, offers)
        self._next_event = 1

    def on_dr_call(self, event: Any) -> None:
        k = int(event.interval)
        self._events[k] = (self._next_event, dict(self.ctx.dr_offers(k)))
        self._next_event += 1

    def _renewable(self, k: int, trades: Sequence[Trade],
                   metered_wh: Mapping[int, int]) -> dict[int, int]:
        if self.exchange_mode:
            ex = self.ctx.shared.get("green_exchange")
            return dict(ex.redeemed_wh.get(k, {})) if ex is not None else {}
        devices = self.ctx.devices
        left = {d: max(0, -int(w)) for d, w in metered_wh.items()}
        out: dict[int, int] = defaultdict(int)
        for t in sorted(trades, key=lambda t: t.trade_id):
            if devices[t.seller_device].kind not in GREEN_KINDS or t.energy_wh <= 0:
                continue
            got = min(t.energy_wh, left.get(t.seller_device, 0))
            left[t.seller_device] = left.get(t.seller_device, 0) - got
            if got > 0:
                out[t.buyer_device] += got
        return dict(out)

    def on_settled(self, *, interval: int, trades: Sequence[Trade],
                   rows: Sequence[SettlementRow], metered_wh: Mapping[int, int]) -> None:
        k = interval
        if self.rates[0] > 0:
            awards = sorted(self._renewable(k, trades, metered_wh).items())
            if awards:
                self._award_rows(k, "renewable", k, self.backend.reward_renewable(k, awards))
        called = self._events.pop(k, None)
        if called is not None and self.rates[1] > 0:
            event_id, offers = called
            dr = []
            for d, offered in sorted(offers.items()):
                past = self._history.get(d)
                if not past or d not in metered_wh:
                    continue
                base = sum(past) // len(past)
                cut = min(max(base - int(metered_wh[d]), 0), int(offered))
                if cut > 0:
                    dr.append((d, cut))
            if dr:
                self._award_rows(k, "dr", event_id, self.backend.reward_dr(event_id, dr))
        for d in self.flexible:
            if d in metered_wh:
                self._history[d].append(int(metered_wh[d]))

    def _award_rows(self, k: int, reason: str, ref: int, awards: Sequence[Any]) -> None:
        tx = _tx(self.backend)
        for a in awards:
            self.record("green_currency", {
                "time_s": k * self.ctx.interval_s, "interval": k, "reason": reason, "ref": ref,
                "device_id": a.device_id, "owner": a.owner, "energy_wh": a.energy_wh,
                "amount": a.amount, "tx_hash": tx})


# ---------------------------------------------------------------------------- building
def _build_exchange(scenario: Scenario, ctx: ServiceContext,
                    accounts: list[int]) -> list[MarketService]:
    spec = scenario.market.services.green_exchange
    return [GreenExchangeService(ctx, buy_price_per_mwh=price_from_per_mwh(spec.buy_price_per_mwh),
                                 sell_price_per_mwh=price_from_per_mwh(spec.sell_price_per_mwh),
                                 rate_adjustment=spec.rate_adjustment,
                                 rate_bounds=(spec.rate_min, spec.rate_max))]


PILOT_BUILDERS = (
    ServiceBuilder("green_exchange", enabled=lambda s: s.market.mechanism == "green_exchange",
                   accounts=lambda s: 0, build=_build_exchange),
    ServiceBuilder("charger_tariffs", enabled=lambda s: s.market.services.charger_tariffs.enabled,
                   accounts=lambda s: 0,
                   build=lambda s, ctx, a: [ChargerTariffService(ctx, scenario=s)]),
    ServiceBuilder("green_currency", enabled=lambda s: s.market.services.green_currency.enabled,
                   accounts=lambda s: 0,
                   build=lambda s, ctx, a: [GreenCurrencyService(ctx, scenario=s)]),
)


def pilot_kpis(rows: Callable[[str], Sequence[Mapping[str, Any]]],
               services: Collection[str]) -> dict[str, float]:
    """KPIs of the pilot mechanisms from their result rows (money in currency units)."""
    out: dict[str, float] = {}
    if "green_exchange" in services:
        ge = rows("green_exchange")

        def total(action: str, col: str) -> int:
            return sum(r[col] for r in ge if r["action"] == action)

        out["green_tokens_minted"] = float(total("minted", "tokens"))
        out["green_tokens_redeemed"] = float(total("redeemed", "tokens"))
        out["green_delivered_kwh"] = total("minted", "energy_wh") / 1000
        out["green_supplied_kwh"] = total("redeemed", "energy_wh") / 1000
        out["green_exchange_dso_paid"] = total("sold", "amount") / MICRO
        out["green_exchange_dso_received"] = total("bought", "amount") / MICRO
    if "charger_tariffs" in services:
        cs = rows("charging_sessions")
        paid = [r for r in cs if r["status"] == "paid"]
        wh = sum(r["metered_wh"] for r in paid)
        out["charging_sessions"] = float(len(paid))
        out["charging_sessions_unfunded"] = float(len(cs) - len(paid))
        out["charging_energy_kwh"] = wh / 1000
        out["charging_paid"] = sum(r["amount"] for r in paid) / MICRO
        out["charging_mean_tariff_per_mwh"] = (
            sum(r["metered_wh"] * r["price_per_mwh"] for r in paid) / wh / MICRO if wh else 0.0)
    if "green_currency" in services:
        gc = rows("green_currency")
        out["green_currency_minted"] = sum(r["amount"] for r in gc) / MICRO
        out["green_currency_renewable_kwh"] = sum(
            r["energy_wh"] for r in gc if r["reason"] == "renewable") / 1000
        out["green_currency_dr_kwh"] = sum(r["energy_wh"] for r in gc if r["reason"] == "dr") / 1000
        out["green_currency_recipients"] = float(len({r["owner"] for r in gc if r["amount"] > 0}))
    return out
