"""Shared EV chargers with owner-set tariffs in a scenario run: the run hooks (rules:
:mod:`.rules`, chain: :mod:`.chain`).

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
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twin.market.tariffs import NetworkTariff
from twin.market.types import DSO_ACCOUNT, DeviceKind, SettlementRow, Trade
from twin.market.units import payment, price_from_per_mwh
from twin.services.base import MarketService, RailMoney, ServiceContext, cash, last_tx, spec_of
from twin.services.charger_tariffs.rules import ChargerTariffs

if TYPE_CHECKING:
    from twin.scenario import Scenario

__all__ = ["ChargerTariffService"]


def _chain() -> Any:
    from twin.services.charger_tariffs.chain import ChainChargerTariffs

    return ChainChargerTariffs


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
        spec = spec_of(scenario, "charger_tariffs")
        lo = price_from_per_mwh(spec.tariff_min_per_mwh)
        hi = price_from_per_mwh(spec.tariff_max_per_mwh)
        min_lock = payment(round(spec.min_lock_kwh * 1000), lo)
        self.backend: Any = ctx.backend(
            "ChargerTariffs",
            reference=lambda: ChargerTariffs(devices=ctx.devices,
                                             money=RailMoney(ctx, "ChargerTariffs"),
                                             tariff_min_per_mwh=lo, tariff_max_per_mwh=hi,
                                             min_lock=min_lock),
            chain=lambda: _chain().deploy(ctx.ledger, tariff_min_per_mwh=lo,
                                          tariff_max_per_mwh=hi, min_lock=min_lock))
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
        self._fee = NetworkTariff.of(scenario)
        self._posted: dict[int, int] = {}
        self._open: dict[int, _Session] = {}
        self._post(0)

    def tariff(self, k: int) -> int:
        """The hosts' tariff for interval ``k``: retail + the DSO's network fee, clamped
        (the fee rule of :class:`twin.market.tariffs.NetworkTariff`)."""
        fee = self._fee.fee_per_mwh(k)
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
                    "owner": self.host[c], "price_per_mwh": price, "tx_hash": last_tx(self.backend)})

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
            got = cash(self.ctx, driver, need)
            if got < need:
                self.record("charging_sessions", {
                    "time_s": k * self.ctx.interval_s, "interval": k, "end_interval": k,
                    "session_id": None, "charger": c, "owner": self.host[c], "driver": driver,
                    "price_per_mwh": price, "max_wh": self.cap_wh, "locked": 0,
                    "metered_wh": wh, "amount": 0, "status": "unfunded", "tx_hash": ""})
                return None
            self.backend.deposit(driver, need)
        # the driver accepts the tariff it saw posted, no more
        started = self.backend.start_session(c, self.cap_wh, driver=driver,
                                             max_price_per_mwh=price)
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
            "tx_hash": last_tx(self.backend)})

    def finish(self, *, interval: int) -> None:
        for c in sorted(self._open):
            self._end(c, end=interval)
        for driver in sorted(set(self.driver.values())):
            free = self.backend.escrow(driver)[0]
            if free > 0:
                self.backend.withdraw(driver, free)
