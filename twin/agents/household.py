"""Households: one meter each (a market device), load + optional PV + optional home battery.

State lives in numpy arrays on :class:`Households` (one entry per household); each
:class:`HouseholdAgent` is the Mesa view of one entry.

Flexible load (``households.flex``, a share of the households): a daily energy inside a
comfort window, run at full power while the household's own forecast shows PV surplus and
otherwise only as much as the window's end forces, so the energy is always met by the end
of the window (the spec rejects windows too short for it). It is part of ``load``.

Demand response (the TSO calls an event for ``k+1`` at step ``k``): a household whose
flexible load can wait offers its planned flexible energy of ``k+1``
(:meth:`Households.dr_offer_wh`) — "can wait" means energy is left and the window's end
does not force any of it into ``k+1`` (``remaining <= (intervals left - 1) * power``); a
load that must run to finish on time offers nothing. What it commits
(:meth:`Households.defer`, at most the offer) is taken off its flexible load of ``k+1``
before its orders for ``k+1`` are made (it buys less) and stays in the remaining energy,
so the window's end forces it into later intervals: the energy is still met in time.
Home batteries with ``households.battery.dr`` offer too: the charge they planned for ``k+1``
(they stop charging) plus the discharge they can still add (power limit, energy down to
``soc_min``); a commitment discharges them by it in ``k+1`` (the meter imports less or exports).
With ``dr_reserve_soc`` their self-consumption stops at that state of charge outside a call,
keeping the rest for the calls.

Physics per interval ``k`` (energies in Wh, AC side):
``metered = load + battery_charge - battery_discharge - pv``, with
``0 <= pv <= pv_available <= kWp * interval`` and the home battery inside its SOC band.
The battery charges from surplus and discharges into deficit (self-consumption). When a
sell trade of the household was curtailed by the DSO, its export is capped at the
post-curtailment sold energy (PV is spilled, after the battery took what it could).

Orders for ``k+1``: the forecast net meter energy (``agents.forecast.method``: ``noise``,
the base profile times a seeded relative error ``1 + N(0, forecast_error)``, drawn once per
household and interval; ``persistence`` / ``gbm``, the household's load and PV forecast
day-ahead from SimBench history by :mod:`twin.agents.forecast`; actual = base profile, so
imbalances are real), with the battery's planned action, is
bought (deficit) or sold (surplus), capped at the meter's registered capacity. Limit
prices follow the household group's strategy (:mod:`twin.agents.strategies`) from each
household's own valuation: willingness to pay (buy, drawn once in the upper half of the
feed-in..retail spread) or reservation price (sell, lower half).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from twin.agents._common import FleetAgent, Tariffs, energy_cap_wh, limit_prices, self_consumption
from twin.agents.forecast import feeder_household_forecasts
from twin.agents.strategies import make_strategy
from twin.grid.feeders import Feeder
from twin.market.types import DeviceKind, OrderIntent, Side
from twin.scenario import Scenario

__all__ = ["HOUSE_CONNECTION_KW", "HouseholdAgent", "HouseholdDispatch", "Households"]

#: Registered meter capacity floor: a typical house connection.
HOUSE_CONNECTION_KW = 30.0


@dataclass(frozen=True, slots=True, eq=False)
class HouseholdDispatch:
    """One interval of every household (Wh, one entry per household)."""

    load_wh: np.ndarray
    pv_available_wh: np.ndarray
    pv_wh: np.ndarray
    battery_charge_wh: np.ndarray
    battery_discharge_wh: np.ndarray
    metered_wh: np.ndarray  # consumption positive
    flex_wh: np.ndarray  # flexible load (part of load_wh)
    #: flexible load a DR commitment moved out of this interval (planned - run; 0 otherwise)
    deferred_wh: np.ndarray | None = None


class Households:
    """Vectorized state and behaviour of all households of a feeder."""

    def __init__(self, *, scenario: Scenario, feeder: Feeder, rng: np.random.Generator,
                 first_device_id: int, first_account: int) -> None:
        spec = scenario.agents.households
        n = feeder.n_households
        self.n = n
        self.interval_s = scenario.market.interval_s
        self.dt_h = self.interval_s / 3600.0
        self.device_id = first_device_id + np.arange(n, dtype=np.int64)
        self.account = first_account + np.arange(n, dtype=np.int64)
        self.bus = feeder.household_bus
        self.pv_kwp = feeder.household_pv_kwp
        self.kind = np.where(self.pv_kwp > 0, int(DeviceKind.PV), int(DeviceKind.LOAD))
        wh_per_mw = self.dt_h * 1e6
        self.load_wh_base = feeder.household_load_p_mw * wh_per_mw  # (n, T)
        self.pv_wh_base = feeder.household_pv_pu * (self.pv_kwp[:, None] * 1000.0 * self.dt_h)
        bat = spec.battery
        self.has_battery = feeder.household_storage_row >= 0
        self.battery_capacity_wh = np.where(self.has_battery, bat.capacity_kwh * 1000.0, 0.0)
        self.battery_max_wh = np.where(self.has_battery, bat.power_kw * 1000.0 * self.dt_h, 0.0)
        self.soc_min, self.soc_max = bat.soc_min, bat.soc_max
        self.eta = float(np.sqrt(bat.efficiency))  # one way
        self.energy_wh = self.battery_capacity_wh * np.clip(bat.soc_init, bat.soc_min, bat.soc_max)
        self.battery_dr = bool(bat.dr)
        #: self-consumption's floor outside DR calls (the DR reserve when there is one)
        self.soc_floor = max(bat.soc_min, bat.dr_reserve_soc) if bat.dr else bat.soc_min
        self.battery_dr_wh: dict[int, np.ndarray] = {}  # DR commitments of home batteries by interval
        shape = self.load_wh_base.shape
        err = spec.forecast_error
        self.load_forecast_wh = self.load_wh_base * np.clip(1 + rng.normal(0, err, shape), 0, None)
        self.pv_forecast_wh = np.minimum(
            self.pv_wh_base * np.clip(1 + rng.normal(0, err, shape), 0, None),
            self.pv_kwp[:, None] * 1000.0 * self.dt_h,
        )
        #: "noise" (above), "persistence" or "gbm" (twin.agents.forecast; the noise draws
        #: above are made anyway so every method sees the same random stream)
        self.forecast_method = scenario.agents.forecast.method
        if self.forecast_method != "noise":
            fc = feeder_household_forecasts(scenario=scenario, feeder=feeder, load_wh=self.load_wh_base,
                                            pv_scale_wh=self.pv_kwp * 1000.0 * self.dt_h)
            self.load_forecast_wh, self.pv_forecast_wh = fc.load_wh, fc.pv_wh
        tariffs = Tariffs(
            feed_in_price_per_mwh=scenario.market.feed_in_price_per_mwh,
            retail_price_per_mwh=scenario.market.retail_price_per_mwh,
        )
        self.buy_price = limit_prices(rng, tariffs, n=n, low=0.5, high=1.0)
        self.sell_price = limit_prices(rng, tariffs, n=n, low=0.0, high=0.5)
        self.strategy = make_strategy(
            spec.strategy or scenario.agents.strategy, n=n, feed_in=tariffs.feed_in,
            retail=tariffs.retail, rng=rng, learning=scenario.agents.learning,
        )
        #: False for VPP members: their aggregator places their orders
        self.trades_own = np.ones(n, dtype=bool)
        self._init_flex(spec.flex, scenario, rng)
        # The meter's registered capacity: the larger of import (peak base load + flexible
        # load + battery charging) and export (PV + battery discharging), at least a house
        # connection. Settlement rejects a reading beyond it (MeterOutOfRange).
        peak_kw = self.load_wh_base.max(axis=1, initial=0.0) / self.dt_h / 1000.0
        flex_kw = self.flex_power_wh / self.dt_h / 1000.0
        bat_kw = np.where(self.has_battery, bat.power_kw, 0.0)
        cap_kw = np.maximum(HOUSE_CONNECTION_KW, np.maximum(peak_kw + flex_kw, self.pv_kwp) + bat_kw)
        # + 2 Wh per interval: the registered cap is floored to whole Wh, the meter rounded
        # (a base-load peak of 9140.54 Wh read 9141 against a cap of 9140 in rwa_vpp)
        self.capacity_w = np.ceil(cap_kw * 1000.0 + 2 * 3600 / self.interval_s).astype(np.int64)
        self.cap_wh = energy_cap_wh(self.capacity_w, self.interval_s)

    def _init_flex(self, fx: Any, scenario: Scenario, rng: np.random.Generator) -> None:
        """Flexible loads: who has one, the comfort window per interval, the daily energy."""
        n, T = self.n, scenario.n_intervals
        n_flex = round(fx.share * n)
        self.has_flex = np.zeros(n, dtype=bool)
        if n_flex:  # no draw without flexible loads (keeps other scenarios' streams)
            self.has_flex[rng.choice(n, size=n_flex, replace=False)] = True
        self.flex_energy_wh = np.where(self.has_flex, fx.energy_kwh * 1000.0, 0.0)
        self.flex_power_wh = np.where(self.has_flex, fx.power_kw * 1000.0 * self.dt_h, 0.0)
        s0 = scenario.start
        hour = ((s0.hour * 3600 + s0.minute * 60 + s0.second + self.interval_s * np.arange(T)) / 3600.0) % 24
        lo, hi = fx.earliest_hour, fx.latest_hour
        inside = (hour >= lo) & (hour < hi) if lo < hi else (hour >= lo) | (hour < hi)
        left = np.zeros(T, dtype=np.int64)  # in-window intervals from k to the window's end
        run = 0
        for k in range(T - 1, -1, -1):
            run = run + 1 if inside[k] else 0
            left[k] = run
        self.flex_inside, self.flex_left = inside, left
        self.flex_reset = inside & np.concatenate([[True], ~inside[:-1]])
        window_len = max(round(((hi - lo) % 24 or 24) * 3600 / self.interval_s), 1)
        first = min(1.0, left[0] / window_len) if T and inside[0] else 1.0
        self._flex_first = first  # a window already running at the start: its remaining share
        self.flex_remaining_wh = np.zeros(n)
        self.flex_deferred_wh: dict[int, np.ndarray] = {}  # DR commitments by interval

    def _flex_at(self, k: int) -> np.ndarray:
        """Flexible energy still to consume at the start of ``k`` (state unchanged)."""
        if self.flex_reset[k]:
            return self.flex_energy_wh * (self._flex_first if k == 0 else 1.0)
        return self.flex_remaining_wh

    def _flex_plan(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Flexible load of ``k`` without a DR call and the part the window's end forces (Wh)."""
        if not self.flex_inside[k]:
            return np.zeros(self.n), np.zeros(self.n)
        rem = self._flex_at(k)
        power = self.flex_power_wh
        forced = np.clip(rem - (self.flex_left[k] - 1) * power, 0.0, None)
        surplus = self.pv_forecast_wh[:, k] > self.load_forecast_wh[:, k]
        want = np.where(surplus, power, 0.0)
        out: np.ndarray = np.minimum(np.maximum(forced, want), np.minimum(rem, power))
        return out, forced

    def _flex(self, k: int) -> np.ndarray:
        """Flexible load of ``k``: at full power while the own forecast shows PV surplus,
        otherwise only what the comfort window's end forces, less what a DR call deferred (Wh)."""
        flex, forced = self._flex_plan(k)
        cut = self.flex_deferred_wh.get(k)
        if cut is None:
            return flex
        out: np.ndarray = np.maximum(flex - cut, np.minimum(forced, flex))
        return out

    def flex_offer_wh(self, k: int) -> np.ndarray:
        """Planned flexible energy of ``k`` (Wh, whole) unless the window's end forces it."""
        flex, forced = self._flex_plan(k)
        return np.where(forced > 0, 0.0, np.floor(flex))

    def battery_offer_wh(self, k: int) -> np.ndarray:
        """What each home battery can take off its meter in ``k`` (Wh, whole; 0 without
        ``battery.dr``): its planned charge plus the discharge it can add down to soc_min."""
        if not self.battery_dr or not self.has_battery.any():
            return np.zeros(self.n)
        plan = self.plan(k, export_cap_wh=np.full(self.n, np.inf))
        avail = np.clip(self.energy_wh - self.soc_min * self.battery_capacity_wh, 0.0, None) * self.eta
        extra = np.clip(np.minimum(self.battery_max_wh, avail) - plan.battery_discharge_wh, 0.0, None)
        return np.where(self.has_battery, np.floor(plan.battery_charge_wh + extra), 0.0)

    def dr_offer_wh(self, k: int) -> np.ndarray:
        """Reduction (Wh, whole) each household offers for a DR call in ``k``: its planned
        flexible energy of ``k`` when the window's end forces none of it into ``k``, plus what
        its home battery can deliver (:meth:`battery_offer_wh`)."""
        return self.flex_offer_wh(k) + self.battery_offer_wh(k)

    def defer(self, k: int, reduction_wh: np.ndarray) -> None:
        """Commit DR reductions for ``k`` (Wh per household, capped at the offer): the
        flexible load of ``k`` drops first (the window's end forces it later), the home
        battery delivers the rest."""
        want = np.clip(np.asarray(reduction_wh, dtype=np.float64), 0.0, None)
        bat_offer = self.battery_offer_wh(k)  # before the flexible cut changes the plan
        cut = np.minimum(want, self.flex_offer_wh(k))
        if cut.any():
            self.flex_deferred_wh[k] = cut
        bat = np.minimum(want - cut, bat_offer)
        if bat.any():
            self.battery_dr_wh[k] = bat

    @property
    def soc(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.has_battery, self.energy_wh / self.battery_capacity_wh, np.nan)

    def _battery(self, net_wh: np.ndarray, dr_wh: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        charge, discharge = self_consumption(
            net_wh, self.energy_wh, capacity_wh=self.battery_capacity_wh,
            max_wh=self.battery_max_wh, soc_min=self.soc_floor, soc_max=self.soc_max,
            eta_charge=self.eta, eta_discharge=self.eta,
        )
        if dr_wh is None:
            return charge, discharge
        # a DR commitment: stop charging first, then discharge more, down to soc_min
        stop = np.minimum(charge, dr_wh)
        charge = charge - stop
        avail = np.clip(self.energy_wh - self.soc_min * self.battery_capacity_wh, 0.0, None) * self.eta
        room = np.clip(np.minimum(self.battery_max_wh, avail) - discharge, 0.0, None)
        discharge = discharge + np.minimum(dr_wh - stop, room)
        return charge, discharge

    def _dispatch(self, load_wh: np.ndarray, pv_wh: np.ndarray,
                  export_cap_wh: np.ndarray, flex_wh: np.ndarray,
                  dr_wh: np.ndarray | None = None) -> HouseholdDispatch:
        load_wh = load_wh + flex_wh
        charge, discharge = self._battery(load_wh - pv_wh, dr_wh)
        export = pv_wh + discharge - load_wh - charge
        spill = np.clip(np.minimum(export - export_cap_wh, pv_wh), 0.0, None)
        pv_out = pv_wh - spill
        return HouseholdDispatch(
            load_wh=load_wh,
            pv_available_wh=pv_wh,
            pv_wh=pv_out,
            battery_charge_wh=charge,
            battery_discharge_wh=discharge,
            metered_wh=load_wh + charge - discharge - pv_out,
            flex_wh=flex_wh,
        )

    def plan(self, k: int, *, export_cap_wh: np.ndarray) -> HouseholdDispatch:
        """Forecast dispatch of interval ``k`` from the current state (state unchanged)."""
        return self._dispatch(self.load_forecast_wh[:, k], self.pv_forecast_wh[:, k], export_cap_wh,
                              self._flex(k), self.battery_dr_wh.get(k))

    def dispatch(self, k: int, *, export_cap_wh: np.ndarray,
                 pv_cap_wh: np.ndarray | None = None) -> HouseholdDispatch:
        """Actual dispatch of interval ``k``; advances the battery state.

        ``pv_cap_wh``: an external cap on each PV inverter's output (HIL controls, see
        :meth:`twin.agents.model.FeederModel.step_interval`); the battery sees the capped PV.
        """
        pv_wh = self.pv_wh_base[:, k]
        flex = self._flex(k)  # scheduled on the forecast, as planned
        deferred = self._flex_plan(k)[0] - flex  # what a DR commitment took out of k
        self.flex_remaining_wh = self._flex_at(k) - flex
        self.flex_deferred_wh.pop(k, None)
        dr_wh = self.battery_dr_wh.pop(k, None)
        if pv_cap_wh is None:
            out = self._dispatch(self.load_wh_base[:, k], pv_wh, export_cap_wh, flex, dr_wh)
        else:  # HIL: PV inverters capped by their controllers; "available" stays the resource
            out = self._dispatch(self.load_wh_base[:, k], np.minimum(pv_wh, pv_cap_wh), export_cap_wh, flex,
                                 dr_wh)
            out = dataclasses.replace(out, pv_available_wh=pv_wh)
        out = dataclasses.replace(out, deferred_wh=deferred)
        self.energy_wh = self.energy_wh + out.battery_charge_wh * self.eta - out.battery_discharge_wh / self.eta
        self.energy_wh = np.clip(
            self.energy_wh, self.soc_min * self.battery_capacity_wh, self.soc_max * self.battery_capacity_wh
        )
        return out

    def orders(self, k: int, *, fee: int = 0) -> list[OrderIntent]:
        """Orders for interval ``k`` from the forecast and the current battery state;
        bids at the willingness to pay net of the DSO's network fee ``fee`` of ``k``."""
        ids, buy, e, p = self.order_arrays(k, fee=fee)
        ids_, e_, p_ = ids.tolist(), e.tolist(), p.tolist()
        return [
            OrderIntent(device_id=ids_[j], interval=k, side=Side.BUY if buy[j] else Side.SELL,
                        energy_wh=e_[j], price_per_mwh=p_[j])
            for j in range(len(ids_))
        ]

    def order_arrays(self, k: int, *, fee: int = 0) -> tuple[np.ndarray, ...]:
        """:meth:`orders` as arrays: device ids, buy (bool), energy Wh, price."""
        plan = self.plan(k, export_cap_wh=np.full(self.n, np.inf))
        meter = np.rint(plan.metered_wh).astype(np.int64)
        energy = np.minimum(np.abs(meter), self.cap_wh)
        idx = np.flatnonzero((energy >= 1) & self.trades_own)
        buy = meter[idx] > 0
        price = np.zeros(self.n, dtype=np.int64)
        b, s = idx[buy], idx[~buy]
        price[b] = self.strategy.prices("buy", interval=k, index=b, valuation=self.buy_price[b] - fee)
        price[s] = self.strategy.prices("sell", interval=k, index=s, valuation=self.sell_price[s])
        return self.device_id[idx], buy, energy[idx], price[idx]


class HouseholdAgent(FleetAgent):
    """Mesa view of one household (its state lives in :class:`Households`)."""

    fleet: Households

    @property
    def bus(self) -> int:
        return int(self.fleet.bus[self.index])
