"""The feeder's Mesa model: households, EVs, community batteries and the DSO.

Time runs in market intervals ``k = 0 .. n_intervals-1``. The market trades one interval
ahead: at step ``k`` the model receives the cleared trades *for k* (placed at step
``k-1``; none for ``k = 0``), lets the DSO check them, dispatches interval ``k`` physically
and returns the orders *for k+1*::

    model = FeederModel(scenario=scenario, feeder=feeder, rng=np.random.default_rng(seed))
    model.devices, model.accounts
    out = model.step_interval(interval=k, trades=trades_k, price_history=past_prices)

Devices (device ids 1..): one meter per household (``PV`` when it has PV, else ``LOAD``),
then one charger per EV (``EV``, owned by its household's account), then one per
community battery (``STORAGE``, own account). Accounts: household ``i`` is ``2 + i``,
community battery ``j`` is ``2 + n_households + j`` (0 operator, 1 DSO).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import mesa
import numpy as np

from twin.agents._common import net_trades, wh_to_mw
from twin.agents.dso import Curtailment, DSOAgent, Effect
from twin.agents.ev import EVAgent, EVFleet
from twin.agents.household import HouseholdAgent, Households
from twin.agents.storage import CommunityStorage, StorageAgent
from twin.grid.feeders import Feeder
from twin.market.types import Device, DeviceKind, OrderIntent, Side, Trade
from twin.scenario import Scenario

__all__ = ["AGENT_ROW_COLUMNS", "DSO_ROW_COLUMNS", "FeederModel", "IntervalOutput"]

#: Keys of every ``agent_rows`` dict (NaN where a column does not apply to the kind).
AGENT_ROW_COLUMNS = (
    "time_s", "interval", "agent", "kind", "device_id", "bus", "soc", "p_mw",
    "metered_wh", "load_wh", "pv_available_wh", "pv_wh", "battery_charge_wh",
    "battery_discharge_wh", "bought_wh", "sold_wh", "plugged", "remaining_need_wh",
)
#: Keys of every ``dso_rows`` dict.
DSO_ROW_COLUMNS = (
    "time_s", "interval", "checks", "converged", "violations_found", "violations_remaining",
    "overvoltage", "undervoltage", "overload", "curtailed_trades", "curtailed_wh",
    "vm_min_pu", "vm_max_pu", "max_loading_percent",
)
_TABLES = ("load", "sgen", "storage")


@dataclass(frozen=True, slots=True, eq=False)
class IntervalOutput:
    """Everything one ``step_interval`` produces."""

    interval: int
    time_s: int
    #: DSO decisions on this interval's cleared trades
    curtailments: list[Curtailment]
    #: this interval's trades after curtailment (the ones dispatched)
    trades: list[Trade]
    #: "load" / "sgen" / "storage" -> set-points in table row order (pandapower signs)
    element_p_mw: dict[str, np.ndarray]
    element_q_mvar: dict[str, np.ndarray]
    #: device id -> metered energy of this interval, Wh, consumption positive
    metered_wh: dict[int, int]
    #: orders for the next interval (empty after the last one)
    orders: list[OrderIntent]
    agent_rows: list[dict[str, Any]] = field(repr=False)
    dso_rows: list[dict[str, Any]] = field(repr=False)

    # flat accessors (the names of :func:`twin.grid.powerflow.apply_injections`)
    @property
    def load_p_mw(self) -> np.ndarray:
        return self.element_p_mw["load"]

    @property
    def load_q_mvar(self) -> np.ndarray:
        return self.element_q_mvar["load"]

    @property
    def sgen_p_mw(self) -> np.ndarray:
        return self.element_p_mw["sgen"]

    @property
    def sgen_q_mvar(self) -> np.ndarray:
        return self.element_q_mvar["sgen"]

    @property
    def storage_p_mw(self) -> np.ndarray:
        return self.element_p_mw["storage"]

    @property
    def storage_q_mvar(self) -> np.ndarray:
        return self.element_q_mvar["storage"]

    def injections(self) -> dict[str, np.ndarray]:
        """Keyword arguments for :func:`twin.grid.powerflow.apply_injections`."""
        out = {f"{t}_p_mw": self.element_p_mw[t] for t in _TABLES}
        out.update({f"{t}_q_mvar": self.element_q_mvar[t] for t in _TABLES})
        return out


class FeederModel(mesa.Model):
    """Agents of one feeder; see the module docstring for the protocol."""

    def __init__(self, *, scenario: Scenario, feeder: Feeder, rng: np.random.Generator) -> None:
        super().__init__(rng=rng)
        if feeder.interval_s != scenario.market.interval_s or feeder.n_intervals != scenario.n_intervals:
            raise ValueError("feeder was built for a different market interval or duration")
        self.scenario = scenario
        self.feeder = feeder
        self.interval_s = scenario.market.interval_s
        self.n_intervals = scenario.n_intervals
        gen = self.rng
        n_hh = feeder.n_households
        self.households = Households(scenario=scenario, feeder=feeder, rng=gen,
                                     first_device_id=1, first_account=2)
        self.evs = EVFleet(scenario=scenario, feeder=feeder, rng=gen, first_device_id=1 + n_hh,
                           owner_account=self.households.account[feeder.ev_household])
        self.storage = CommunityStorage(scenario=scenario, feeder=feeder,
                                        first_device_id=1 + n_hh + feeder.n_evs,
                                        first_account=2 + n_hh)
        for i in range(n_hh):
            HouseholdAgent(self, fleet=self.households, index=i)
        for i in range(self.evs.n):
            EVAgent(self, fleet=self.evs, index=i)
        for i in range(self.storage.n):
            StorageAgent(self, fleet=self.storage, index=i)
        self.dso = DSOAgent(self, net=feeder.net, grid=scenario.grid)

        hh, ev, cs = self.households, self.evs, self.storage
        devices = [
            Device(device_id=int(hh.device_id[i]), owner=int(hh.account[i]),
                   kind=DeviceKind(int(hh.kind[i])), bus=int(hh.bus[i]),
                   capacity_w=int(hh.capacity_w[i]))
            for i in range(hh.n)
        ]
        devices += [
            Device(device_id=int(ev.device_id[i]), owner=int(ev.account[i]), kind=DeviceKind.EV,
                   bus=int(ev.bus[i]), capacity_w=int(ev.capacity_w[i]))
            for i in range(ev.n)
        ]
        devices += [
            Device(device_id=int(cs.device_id[i]), owner=int(cs.account[i]),
                   kind=DeviceKind.STORAGE, bus=int(cs.bus[i]), capacity_w=int(cs.capacity_w[i]))
            for i in range(cs.n)
        ]
        self.devices: list[Device] = devices
        self.accounts: list[int] = sorted({d.owner for d in devices})
        self._hh_index = {int(d): i for i, d in enumerate(hh.device_id)}
        self._ev_index = {int(d): i for i, d in enumerate(ev.device_id)}
        self._cs_index = {int(d): i for i, d in enumerate(cs.device_id)}
        self._limit: dict[tuple[int, int, Side], int] = {}
        self._next_interval = 0
        n_load, n_sgen, n_sto = feeder.n_load, feeder.n_sgen, feeder.n_storage_rows
        self._zeros = {"load": np.zeros(n_load), "sgen": np.zeros(n_sgen), "storage": np.zeros(n_sto)}
        self._mw_per_wh = 3600.0 / self.interval_s / 1e6

    # ------------------------------------------------------------------ helpers
    def _seller_effects(self, device: int) -> list[Effect]:
        f, c = self.feeder, self._mw_per_wh
        i = self._hh_index.get(device)
        if i is not None:
            row = int(f.household_sgen_row[i])
            return [("sgen", row, -c)] if row >= 0 else []
        j = self._cs_index.get(device)
        if j is not None:
            return [("storage", int(f.storage_row[j]), c)]
        return []

    def _buyer_effects(self, device: int) -> list[Effect]:
        f, c = self.feeder, self._mw_per_wh
        e = self._ev_index.get(device)
        if e is not None:
            return [("load", int(f.ev_load_row[e]), -c)]
        j = self._cs_index.get(device)
        if j is not None:
            return [("storage", int(f.storage_row[j]), -c)]
        return []

    def _elements(self, k: int, hh_load_wh: np.ndarray, pv_wh: np.ndarray, hh_bat_wh: np.ndarray,
                  ev_wh: np.ndarray, cs_wh: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        f, it = self.feeder, self.interval_s
        p = {t: z.copy() for t, z in self._zeros.items()}
        q = {t: z.copy() for t, z in self._zeros.items()}
        p["load"][f.background_load_row] = f.background_load_p_mw[:, k]
        q["load"][f.background_load_row] = f.background_load_q_mvar[:, k]
        p["load"][f.household_load_row] = wh_to_mw(hh_load_wh, it)
        q["load"][f.household_load_row] = f.household_load_q_mvar[:, k]
        p["load"][f.ev_load_row] = wh_to_mw(ev_wh, it)
        p["sgen"][f.background_sgen_row] = f.background_sgen_p_mw[:, k]
        has_pv = f.household_sgen_row >= 0
        p["sgen"][f.household_sgen_row[has_pv]] = wh_to_mw(pv_wh[has_pv], it)
        has_bat = f.household_storage_row >= 0
        p["storage"][f.household_storage_row[has_bat]] = wh_to_mw(hh_bat_wh[has_bat], it)
        p["storage"][f.storage_row] = wh_to_mw(cs_wh, it)
        return p, q

    def _limit_price(self, k: int) -> Any:
        def lookup(device: int, side: Side) -> int:
            return self._limit.get((k, device, side), 0)
        return lookup

    # ------------------------------------------------------------------ protocol
    def step_interval(self, *, interval: int, trades: Sequence[Trade],
                      price_history: Sequence[int]) -> IntervalOutput:
        """Check, dispatch and meter interval ``interval``; return orders for the next one."""
        k = interval
        if k != self._next_interval:
            raise ValueError(f"step_interval: expected interval {self._next_interval}, got {k}")
        if k >= self.n_intervals:
            raise ValueError(f"step_interval: interval {k} is past the scenario's {self.n_intervals}")
        trades = [t for t in trades if t.interval == k]
        hh, ev, cs = self.households, self.evs, self.storage
        time_s = k * self.interval_s

        # --- DSO security check on the planned schedule (forecasts + cleared trades)
        ev_b, _, _, _ = net_trades(trades, self._ev_index, ev.n)
        cs_b, cs_s, _, _ = net_trades(trades, self._cs_index, cs.n)
        hh_plan = hh.plan(k, export_cap_wh=np.full(hh.n, np.inf))
        ev_plan = ev.plan(k, bought_wh=ev_b, curtailed=np.zeros(ev.n, dtype=bool))
        cs_plan = cs.plan(bought_wh=cs_b, sold_wh=cs_s)
        p_plan, q_plan = self._elements(
            k, hh_plan.load_wh, hh_plan.pv_wh,
            hh_plan.battery_charge_wh - hh_plan.battery_discharge_wh, ev_plan, cs_plan.metered_wh,
        )
        check = self.dso.check(
            trades=trades, element_p_mw=p_plan, element_q_mvar=q_plan,
            seller_effects=self._seller_effects, buyer_effects=self._buyer_effects,
            limit_price=self._limit_price(k),
        )
        new_energy = {c.trade_id: c.energy_wh for c in check.curtailments}
        final = [dataclasses.replace(t, energy_wh=new_energy[t.trade_id]) if t.trade_id in new_energy
                 else t for t in trades]

        # --- physical dispatch following the final trades
        hh_b, hh_s, _, hh_cut = net_trades(final, self._hh_index, hh.n)
        ev_b, _, ev_cut, _ = net_trades(final, self._ev_index, ev.n)
        cs_b, cs_s, _, _ = net_trades(final, self._cs_index, cs.n)
        hd = hh.dispatch(k, export_cap_wh=np.where(hh_cut, hh_s, np.inf))
        ed = ev.dispatch(k, bought_wh=ev_b, curtailed=ev_cut)
        sd = cs.dispatch(bought_wh=cs_b, sold_wh=cs_s)
        p, q = self._elements(k, hd.load_wh, hd.pv_wh, hd.battery_charge_wh - hd.battery_discharge_wh,
                              ed.charge_wh, sd.metered_wh)

        hh_m = np.rint(hd.metered_wh).astype(np.int64)
        ev_m = np.rint(ed.charge_wh).astype(np.int64)
        cs_m = np.rint(sd.metered_wh).astype(np.int64)
        metered: dict[int, int] = {}
        for ids, vals in ((hh.device_id, hh_m), (ev.device_id, ev_m), (cs.device_id, cs_m)):
            metered.update(zip(ids.tolist(), vals.tolist(), strict=True))

        # --- orders for k+1
        orders: list[OrderIntent] = []
        if k + 1 < self.n_intervals:
            orders = hh.orders(k + 1) + ev.orders(k + 1) + cs.orders(k + 1, price_history=price_history)
            for o in orders:
                self._limit[(k + 1, o.device_id, o.side)] = o.price_per_mwh
        for key in [key for key in self._limit if key[0] <= k]:
            del self._limit[key]

        rows = self._agent_rows(k, time_s, hd, ed, sd, hh_m, ev_m, cs_m, (hh_b, hh_s, ev_b, cs_b, cs_s))
        st = check.state
        nan = float("nan")
        dso_row = {
            "time_s": time_s, "interval": k, "checks": check.checks,
            "converged": st.converged if st is not None else True, "violations_found": check.found.total,
            "violations_remaining": check.remaining.total,
            "overvoltage": check.remaining.overvoltage, "undervoltage": check.remaining.undervoltage,
            "overload": check.remaining.overload, "curtailed_trades": len(check.curtailments),
            "curtailed_wh": check.curtailed_wh,
            "vm_min_pu": st.vm_min_pu if st is not None else nan,
            "vm_max_pu": st.vm_max_pu if st is not None else nan,
            "max_loading_percent": st.max_loading_percent if st is not None else nan,
        }
        self._next_interval += 1
        return IntervalOutput(
            interval=k, time_s=time_s, curtailments=check.curtailments, trades=final,
            element_p_mw=p, element_q_mvar=q, metered_wh=metered, orders=orders,
            agent_rows=rows, dso_rows=[dso_row],
        )

    def _agent_rows(self, k: int, time_s: int, hd: Any, ed: Any, sd: Any, hh_m: np.ndarray,
                    ev_m: np.ndarray, cs_m: np.ndarray, traded: tuple[np.ndarray, ...]) -> list[dict[str, Any]]:
        hh, ev, cs, it = self.households, self.evs, self.storage, self.interval_s
        hh_b, hh_s, ev_b, cs_b, cs_s = traded
        nan = float("nan")
        rows: list[dict[str, Any]] = []
        hh_soc, hh_p = hh.soc, wh_to_mw(hd.metered_wh, it)
        for i in range(hh.n):
            rows.append({
                "time_s": time_s, "interval": k, "agent": f"household_{i}", "kind": "household",
                "device_id": int(hh.device_id[i]), "bus": int(hh.bus[i]), "soc": float(hh_soc[i]),
                "p_mw": float(hh_p[i]), "metered_wh": int(hh_m[i]), "load_wh": float(hd.load_wh[i]),
                "pv_available_wh": float(hd.pv_available_wh[i]), "pv_wh": float(hd.pv_wh[i]),
                "battery_charge_wh": float(hd.battery_charge_wh[i]),
                "battery_discharge_wh": float(hd.battery_discharge_wh[i]),
                "bought_wh": float(hh_b[i]), "sold_wh": float(hh_s[i]), "plugged": False,
                "remaining_need_wh": nan,
            })
        ev_soc, ev_p = ev.soc, wh_to_mw(ed.charge_wh, it)
        for i in range(ev.n):
            rows.append({
                "time_s": time_s, "interval": k, "agent": f"ev_{i}", "kind": "ev",
                "device_id": int(ev.device_id[i]), "bus": int(ev.bus[i]), "soc": float(ev_soc[i]),
                "p_mw": float(ev_p[i]), "metered_wh": int(ev_m[i]), "load_wh": float(ed.charge_wh[i]),
                "pv_available_wh": nan, "pv_wh": nan, "battery_charge_wh": float(ed.charge_wh[i]),
                "battery_discharge_wh": 0.0, "bought_wh": float(ev_b[i]), "sold_wh": 0.0,
                "plugged": bool(ed.plugged[i]), "remaining_need_wh": float(ed.remaining_need_wh[i]),
            })
        cs_soc, cs_p = cs.soc, wh_to_mw(sd.metered_wh, it)
        for i in range(cs.n):
            rows.append({
                "time_s": time_s, "interval": k, "agent": f"storage_{i}", "kind": "storage",
                "device_id": int(cs.device_id[i]), "bus": int(cs.bus[i]), "soc": float(cs_soc[i]),
                "p_mw": float(cs_p[i]), "metered_wh": int(cs_m[i]), "load_wh": nan,
                "pv_available_wh": nan, "pv_wh": nan, "battery_charge_wh": float(sd.charge_wh[i]),
                "battery_discharge_wh": float(sd.discharge_wh[i]), "bought_wh": float(cs_b[i]),
                "sold_wh": float(cs_s[i]), "plugged": False, "remaining_need_wh": nan,
            })
        return rows
