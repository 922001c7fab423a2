"""Households: one meter each (a market device), load + optional PV + optional home battery.

State lives in numpy arrays on :class:`Households` (one entry per household); each
:class:`HouseholdAgent` is the Mesa view of one entry.

Physics per interval ``k`` (energies in Wh, AC side):
``metered = load + battery_charge - battery_discharge - pv``, with
``0 <= pv <= pv_available <= kWp * interval`` and the home battery inside its SOC band.
The battery charges from surplus and discharges into deficit (self-consumption). When a
sell trade of the household was curtailed by the DSO, its export is capped at the
post-curtailment sold energy (PV is spilled, after the battery took what it could).

Orders for ``k+1``: the forecast net meter energy (forecast = base profile times a seeded
relative error ``1 + N(0, forecast_error)``, drawn once per household and interval;
actual = base profile, so imbalances are real), with the battery's planned action, is
bought (deficit) or sold (surplus), capped at the meter's registered capacity. Limit
prices are each household's own willingness to pay (buy, drawn once in the upper half of
the feed-in..retail spread) or reservation price (sell, lower half).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mesa
import numpy as np

from twin.agents._common import Tariffs, energy_cap_wh, limit_prices, self_consumption
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
        peak_kw = self.load_wh_base.max(axis=1, initial=0.0) / self.dt_h / 1000.0
        bat_kw = np.where(self.has_battery, bat.power_kw, 0.0)
        cap_kw = np.maximum(HOUSE_CONNECTION_KW, np.maximum(peak_kw, self.pv_kwp) + bat_kw)
        self.capacity_w = np.ceil(cap_kw * 1000.0).astype(np.int64)
        self.cap_wh = energy_cap_wh(self.capacity_w, self.interval_s)
        shape = self.load_wh_base.shape
        err = spec.forecast_error
        self.load_forecast_wh = self.load_wh_base * np.clip(1 + rng.normal(0, err, shape), 0, None)
        self.pv_forecast_wh = np.minimum(
            self.pv_wh_base * np.clip(1 + rng.normal(0, err, shape), 0, None),
            self.pv_kwp[:, None] * 1000.0 * self.dt_h,
        )
        tariffs = Tariffs(
            feed_in_price_per_mwh=scenario.market.feed_in_price_per_mwh,
            retail_price_per_mwh=scenario.market.retail_price_per_mwh,
        )
        self.buy_price = limit_prices(rng, tariffs, n=n, low=0.5, high=1.0)
        self.sell_price = limit_prices(rng, tariffs, n=n, low=0.0, high=0.5)

    @property
    def soc(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.has_battery, self.energy_wh / self.battery_capacity_wh, np.nan)

    def _battery(self, net_wh: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self_consumption(
            net_wh, self.energy_wh, capacity_wh=self.battery_capacity_wh,
            max_wh=self.battery_max_wh, soc_min=self.soc_min, soc_max=self.soc_max,
            eta_charge=self.eta, eta_discharge=self.eta,
        )

    def _dispatch(self, load_wh: np.ndarray, pv_wh: np.ndarray,
                  export_cap_wh: np.ndarray) -> HouseholdDispatch:
        charge, discharge = self._battery(load_wh - pv_wh)
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
        )

    def plan(self, k: int, *, export_cap_wh: np.ndarray) -> HouseholdDispatch:
        """Forecast dispatch of interval ``k`` from the current state (state unchanged)."""
        return self._dispatch(self.load_forecast_wh[:, k], self.pv_forecast_wh[:, k], export_cap_wh)

    def dispatch(self, k: int, *, export_cap_wh: np.ndarray) -> HouseholdDispatch:
        """Actual dispatch of interval ``k``; advances the battery state."""
        out = self._dispatch(self.load_wh_base[:, k], self.pv_wh_base[:, k], export_cap_wh)
        self.energy_wh = self.energy_wh + out.battery_charge_wh * self.eta - out.battery_discharge_wh / self.eta
        self.energy_wh = np.clip(
            self.energy_wh, self.soc_min * self.battery_capacity_wh, self.soc_max * self.battery_capacity_wh
        )
        return out

    def orders(self, k: int) -> list[OrderIntent]:
        """Orders for interval ``k`` from the forecast and the current battery state."""
        plan = self.plan(k, export_cap_wh=np.full(self.n, np.inf))
        meter = np.rint(plan.metered_wh).astype(np.int64)
        energy = np.minimum(np.abs(meter), self.cap_wh)
        out: list[OrderIntent] = []
        for i in np.flatnonzero(energy >= 1):
            buy = meter[i] > 0
            out.append(
                OrderIntent(
                    device_id=int(self.device_id[i]),
                    interval=k,
                    side=Side.BUY if buy else Side.SELL,
                    energy_wh=int(energy[i]),
                    price_per_mwh=int(self.buy_price[i] if buy else self.sell_price[i]),
                )
            )
        return out


class HouseholdAgent(mesa.Agent):
    """Mesa view of one household (its state lives in :class:`Households`)."""

    def __init__(self, model: Any, *, fleet: Households, index: int) -> None:
        super().__init__(model)
        self.fleet = fleet
        self.index = index

    @property
    def device_id(self) -> int:
        return int(self.fleet.device_id[self.index])

    @property
    def bus(self) -> int:
        return int(self.fleet.bus[self.index])

    @property
    def soc(self) -> float:
        return float(self.fleet.soc[self.index])
