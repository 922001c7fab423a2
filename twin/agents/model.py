"""The feeder's Mesa model: households, EVs, community batteries, the DSO, the TSO and an
optional VPP aggregator.

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
community battery ``j`` is ``2 + n_households + j`` (0 operator, 1 DSO); a VPP's account is
``2 + n_households + n_batteries`` and owns its members' meters.

Each step also: the groups' bidding strategies learn from the interval's trades
(:mod:`twin.agents.strategies`), the TSO assesses the forecast gap of ``k+1`` and may call
demand response (:mod:`twin.agents.tso`; EVs and batteries answer in ``k+1``), the VPP books
its members (:mod:`twin.agents.vpp`; its Shapley split comes with the last interval), and
the output carries ``event_rows`` / ``vpp_rows`` for the ``events`` / ``vpp`` tables.

The DSO publishes the network fee of ``k+1`` (``grid.tariff``) before the orders for ``k+1``
are made; every buyer (households, VPP, EVs, community batteries) bids its willingness to
pay net of it. The fee is recorded, not settled: each ``dso`` row carries the fee of its
interval (``network_fee_per_mwh``, currency/MWh) and what it would collect on the final
trades (``network_fee_amount``, currency units); the market does not charge it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import mesa
import numpy as np

from twin.agents._common import TradeArrays, energy_cap_wh, net_trades, wh_to_mw
from twin.agents.controls import DERControl
from twin.agents.dso import DSOAgent, Effect
from twin.agents.envelope_policy import EnvelopePublisher, PublishedEnvelope
from twin.agents.ev import EVAgent, EVFleet
from twin.agents.external_controls import controlled_dispatch
from twin.agents.forecast import PriceForecaster
from twin.agents.household import HouseholdAgent, Households
from twin.agents.output import AGENT_ROW_COLUMNS, DSO_ROW_COLUMNS, IntervalOutput, agent_columns
from twin.agents.regulation import regulation_desk
from twin.agents.storage import CommunityStorage, StorageAgent
from twin.agents.strategies import make_strategy
from twin.agents.tso import DemandResponseEvent, TSOAgent, TSOSignal
from twin.agents.vpp import VPPAggregator
from twin.grid.der_runtime import feeder_der_devices
from twin.grid.envelopes import Connection
from twin.grid.feeders import Feeder
from twin.market.types import Device, DeviceKind, DRCall, OrderIntent, Side, Trade
from twin.market.units import MICRO, WH_PER_MWH, price_from_per_mwh
from twin.scenario import Scenario

__all__ = ["AGENT_ROW_COLUMNS", "DSO_ROW_COLUMNS", "FeederModel", "IntervalOutput"]


_TABLES = ("load", "sgen", "storage")


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
        start = scenario.start
        der_devices = feeder_der_devices(scenario, feeder)
        #: inverters with 1547 functions read the TSO's frequency in the DSO's check
        self._reads_frequency = bool(der_devices)
        self.dso = DSOAgent(self, net=feeder.net, grid=scenario.grid, interval_s=self.interval_s,
                            start_s_of_day=start.hour * 3600 + start.minute * 60 + start.second,
                            der_devices=der_devices, element_phase=feeder.element_phase,
                            phase_network=feeder.phase_network, phase_regulators=feeder.phase_regulators)
        spec = scenario.agents
        mk = scenario.market
        feed_in = price_from_per_mwh(mk.feed_in_price_per_mwh)
        retail = price_from_per_mwh(mk.retail_price_per_mwh)
        self.tso = TSOAgent(self, spec=spec.tso, interval_s=self.interval_s, retail=retail,
                            dr_price=price_from_per_mwh(spec.tso.dr_price_per_mwh))
        #: clearing-price forecasts from the run's own history (agents.forecast.method);
        #: the community batteries trade on them unless the method is "noise"
        self.price_forecaster = PriceForecaster(spec.forecast.method, interval_s=self.interval_s,
                                                start_s=int(start.timestamp()),
                                                default=0.5 * (feed_in + retail))
        self._price_forecast: dict[int, float] = {}
        #: the DR calls of the current step (sent to the market as the ``dr_calls`` attribute)
        self._dr_calls: list[DRCall] = []
        self._dr: dict[int, DemandResponseEvent] = {}
        self._dr_offers: dict[int, dict[int, int]] = {}
        self._dr_baseline: dict[int, float] = {}
        self._ev_events: dict[int, list[Any]] = {}  # the SimPy trip events by interval
        for e in self.evs.events:
            self._ev_events.setdefault(int(e.time_s // self.interval_s), []).append(e)
        self.regulation = regulation_desk(scenario, households=self.households, storage=self.storage,
                                          evs=self.evs)
        self.vpp: VPPAggregator | None = None
        owner = self.households.account.copy()
        pv_hh = np.flatnonzero(self.households.pv_kwp > 0)
        if spec.vpp.members and pv_hh.size:
            members = np.sort(gen.choice(pv_hh, size=min(spec.vpp.members, pv_hh.size), replace=False))
            account = 2 + n_hh + self.storage.n
            self.vpp = VPPAggregator(
                self, spec=spec.vpp, members=members, account=account,
                strategy=make_strategy(spec.vpp.strategy or spec.strategy, n=1, feed_in=feed_in,
                                       retail=retail, rng=gen, learning=spec.learning),
                feed_in=feed_in, retail=retail, n_intervals=self.n_intervals)
            self.households.trades_own[members] = False
            owner[members] = account

        hh, ev, cs = self.households, self.evs, self.storage
        devices = [
            Device(device_id=int(hh.device_id[i]), owner=int(owner[i]),
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
        self._cap_wh = {d.device_id: int(energy_cap_wh(d.capacity_w, self.interval_s)) for d in devices}
        self._agent_names = ([f"household_{i}" for i in range(hh.n)] + [f"ev_{i}" for i in range(ev.n)]
                             + [f"storage_{i}" for i in range(cs.n)])
        self._hh_index = {int(d): i for i, d in enumerate(hh.device_id)}
        self._ev_index = {int(d): i for i, d in enumerate(ev.device_id)}
        self._cs_index = {int(d): i for i, d in enumerate(cs.device_id)}
        self._limit: dict[tuple[int, int, Side], int] = {}
        self._next_interval = 0
        n_load, n_sgen, n_sto = feeder.n_load, feeder.n_sgen, feeder.n_storage_rows
        self._zeros = {"load": np.zeros(n_load), "sgen": np.zeros(n_sgen), "storage": np.zeros(n_sto)}
        self._mw_per_wh = 3600.0 / self.interval_s / 1e6
        #: dso.policy: curtail cleared trades (curtail, both), publish envelopes (envelopes, both)
        self._curtail = scenario.dso.policy != "envelopes"
        g = scenario.grid
        self.envelopes = None if scenario.dso.policy == "curtail" else EnvelopePublisher(
            net=self.dso.net, spec=scenario.dso.envelopes, vm_min_pu=g.vm_min_pu, vm_max_pu=g.vm_max_pu,
            max_loading_percent=g.max_loading_percent, interval_s=self.interval_s,
            phases=self.dso.phase_snapshot, vuf_max_percent=g.vuf_max_percent, taps=self.dso.regulator_taps)

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
        e = self._ev_index.get(device)
        if e is not None:  # a V2G sale: curtailing it raises the EV's (negative) load
            return [("load", int(f.ev_load_row[e]), c)]
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

    def _publish_envelopes(self, k: int) -> PublishedEnvelope:
        """Envelopes of interval ``k`` from its forecast without trades (envelope_policy)."""
        assert self.envelopes is not None
        f, hh, ev, cs = self.feeder, self.households, self.evs, self.storage
        hp = hh.plan(k, export_cap_wh=np.full(hh.n, np.inf))
        p, q = self._elements(k, hp.load_wh, hp.pv_wh, hp.battery_charge_wh - hp.battery_discharge_wh,
                              np.zeros(ev.n), np.zeros(cs.n))
        surplus = np.clip(-wh_to_mw(hp.metered_wh, self.interval_s), 0.0, None)
        exports = [Connection(device_id=int(hh.device_id[i]), table="sgen", row=int(f.household_sgen_row[i]),
                              coef=1.0, capacity_mw=hh.capacity_w[i] / 1e6, potential_mw=float(surplus[i]),
                              base_mw=float(surplus[i]))
                   for i in range(hh.n) if f.household_sgen_row[i] >= 0]
        exports += [Connection(device_id=int(cs.device_id[j]), table="storage", row=int(f.storage_row[j]),
                               coef=-1.0, capacity_mw=cs.capacity_w[j] / 1e6, potential_mw=cs.capacity_w[j] / 1e6)
                    for j in range(cs.n)]
        imports = [Connection(device_id=int(ev.device_id[e]), table="load", row=int(f.ev_load_row[e]),
                              coef=1.0, capacity_mw=ev.capacity_w[e] / 1e6, potential_mw=ev.capacity_w[e] / 1e6)
                   for e in range(ev.n)]
        imports += [Connection(device_id=int(cs.device_id[j]), table="storage", row=int(f.storage_row[j]),
                               coef=1.0, capacity_mw=cs.capacity_w[j] / 1e6, potential_mw=cs.capacity_w[j] / 1e6)
                    for j in range(cs.n)]
        return self.envelopes.publish(k, p_mw=p, q_mvar=q, exports=exports, imports=imports,
                                      time_s=self.dso.start_s_of_day + k * self.interval_s)

    def _frequency_hz(self, time_s: int) -> float | None:
        """The TSO's system frequency for the DSO's check (None: no inverter reads it)."""
        return self.tso.system_frequency_hz(time_s) if self._reads_frequency else None

    def _limit_price(self, k: int) -> Any:
        def lookup(device: int, side: Side) -> int:
            return self._limit.get((k, device, side), 0)
        return lookup

    # ------------------------------------------------------------------ protocol
    def day_ahead_orders(self, intervals: range) -> tuple[np.ndarray, ...]:
        """The households' orders of ``intervals`` planned now from their forecasts (state
        unchanged): the standing orders each signs once a day under ``market.signing:
        daily``, as arrays (device id, interval, buy, energy Wh, price). Only stateless
        (truthful) prices are planned; EVs, batteries and any other change revise the
        schedule when they order."""
        hh = self.households
        parts = []
        if hh.strategy.name == "truthful":
            for j in intervals:
                if 0 <= j < self.n_intervals:
                    ids, buy, e, p = hh.order_arrays(j, fee=self.dso.network_fee(j))
                    parts.append((ids, np.full(ids.size, j), buy, e, p))
        if not parts:
            return tuple(np.zeros(0, np.int64) for _ in range(5))
        return tuple(np.concatenate([p[c] for p in parts]) for c in range(5))

    def step_interval(self, *, interval: int, trades: Sequence[Trade],
                      price_history: Sequence[int],
                      der_controls: Mapping[int, DERControl] | None = None) -> IntervalOutput:
        """Check, dispatch and meter interval ``interval``; return orders for the next one.

        ``der_controls``: external controls in force for this interval (HIL controllers),
        by device id; see :func:`~twin.agents.external_controls.controlled_dispatch`. The DSO check plans without them.
        """
        k = interval
        if k != self._next_interval:
            raise ValueError(f"step_interval: expected interval {self._next_interval}, got {k}")
        if k >= self.n_intervals:
            raise ValueError(f"step_interval: interval {k} is past the scenario's {self.n_intervals}")
        trades = [t for t in trades if t.interval == k]
        hh, ev, cs = self.households, self.evs, self.storage
        time_s = k * self.interval_s

        # --- DSO security check on the planned schedule (forecasts + cleared trades)
        planned = TradeArrays(trades)
        ev_b, ev_s, _, _ = net_trades(planned, self._ev_index, ev.n)
        cs_b, cs_s, _, _ = net_trades(planned, self._cs_index, cs.n)
        hh_plan = hh.plan(k, export_cap_wh=np.full(hh.n, np.inf))
        dr = k in self._dr
        ev_plan = ev.plan(k, bought_wh=ev_b, curtailed=np.zeros(ev.n, dtype=bool), dr=dr, sold_wh=ev_s)
        cs_plan = cs.plan(bought_wh=cs_b, sold_wh=cs_s)
        p_plan, q_plan = self._elements(
            k, hh_plan.load_wh, hh_plan.pv_wh,
            hh_plan.battery_charge_wh - hh_plan.battery_discharge_wh, ev_plan, cs_plan.metered_wh,
        )
        check = self.dso.check(
            trades=trades if self._curtail else [], element_p_mw=p_plan, element_q_mvar=q_plan,
            seller_effects=self._seller_effects, buyer_effects=self._buyer_effects,
            limit_price=self._limit_price(k), freq_hz=self._frequency_hz(time_s), time_s=time_s,
        )
        new_energy = {c.trade_id: c.energy_wh for c in check.curtailments}
        final = [dataclasses.replace(t, energy_wh=new_energy[t.trade_id]) if t.trade_id in new_energy
                 else t for t in trades]

        # --- physical dispatch following the final trades
        dispatched = TradeArrays(final)
        hh_b, hh_s, _, hh_cut = net_trades(dispatched, self._hh_index, hh.n)
        ev_b, ev_s, ev_cut, ev_s_cut = net_trades(dispatched, self._ev_index, ev.n)
        price_k = final[0].price_per_mwh if final else 0
        hh.strategy.observe(interval=k, bought_wh=hh_b, sold_wh=hh_s, price_per_mwh=price_k)
        ev.strategy.observe(interval=k, bought_wh=ev_b, sold_wh=ev_s, price_per_mwh=price_k)
        cs_b, cs_s, _, _ = net_trades(dispatched, self._cs_index, cs.n)
        free: dict[str, dict[int, float]] = {}
        pv_cap, ev_dispatch, cs_dispatch = controlled_dispatch(
            k, der_controls or {}, feeder=self.feeder, households=hh, evs=ev, storage=cs,
            interval_s=self.interval_s, hh_index=self._hh_index, ev_index=self._ev_index,
            cs_index=self._cs_index, ev_b=ev_b, ev_cut=ev_cut, cs_b=cs_b, cs_s=cs_s, dr=dr, ev_s=ev_s,
            free=free)
        export_cap = np.where(hh_cut, hh_s, np.inf)
        if self.envelopes is not None and k not in self.envelopes.published:  # the first interval
            self._publish_envelopes(k)
        if self.envelopes is not None:  # the published export limits hold physically too
            export_cap = np.minimum(export_cap, self.envelopes.export_cap_wh(k, hh.device_id))
        hd = hh.dispatch(k, export_cap_wh=export_cap, pv_cap_wh=pv_cap)
        ed = ev.dispatch(k, bought_wh=ev_dispatch[0], curtailed=ev_dispatch[1], dr=dr,
                         sold_wh=ev_dispatch[2], sell_curtailed=ev_s_cut | (ev_s > 0))
        sd = cs.dispatch(bought_wh=cs_dispatch[0], sold_wh=cs_dispatch[1])
        regulation = None
        if self.regulation is not None:  # the resources follow the TSO's signal (ancillary)
            hd, ed, sd, report = self.regulation.follow(k, hd=hd, ed=ed, sd=sd)
            regulation = report.encode()
        p, q = self._elements(k, hd.load_wh, hd.pv_wh, hd.battery_charge_wh - hd.battery_discharge_wh,
                              ed.metered_wh, sd.metered_wh)

        hh_m = np.rint(hd.metered_wh).astype(np.int64)
        ev_m = np.rint(ed.metered_wh).astype(np.int64)
        cs_m = np.rint(sd.metered_wh).astype(np.int64)
        metered: dict[int, int] = {}
        for ids, vals in ((hh.device_id, hh_m), (ev.device_id, ev_m), (cs.device_id, cs_m)):
            metered.update(zip(ids.tolist(), vals.tolist(), strict=True))

        events = self._event_rows(k, time_s, ed.metered_wh, sd.metered_wh, hh_deferred_wh=hd.deferred_wh)
        forecast_rows = self._forecast_rows(k, time_s, trades)
        if self.vpp is not None:
            mem = self.vpp.members
            self.vpp.record(k, bought_wh=hh_b[mem], sold_wh=hh_s[mem], metered_wh=hh_m[mem],
                            price_per_mwh=price_k)

        # --- TSO signal and orders for k+1
        orders: list[OrderIntent] = []
        envelopes: dict[str, dict[int, int]] | None = None
        signal = None
        if k + 1 < self.n_intervals:
            signal = self._tso_signal(k + 1)
            events += self._signal_rows(signal)
            dr_next = signal.event is not None
            if self.regulation is not None:  # the TSO procures k + 1's regulation capacity
                self.regulation.reserve(k + 1, dr=dr_next)
            fee = self.dso.publish_tariff(k + 1)
            orders = hh.orders(k + 1, fee=fee)
            if self.vpp is not None:
                mem = self.vpp.members
                meter = np.rint(hh.plan(k + 1, export_cap_wh=np.full(hh.n, np.inf)).metered_wh[mem])
                orders += self.vpp.orders(k + 1, device_id=hh.device_id[mem],
                                          meter_wh=meter.astype(np.int64), cap_wh=hh.cap_wh[mem],
                                          buy_price=hh.buy_price[mem] - fee, sell_price=hh.sell_price[mem])
            last = price_history[-1] if price_history else None
            price_next = self._price_forecast[k + 1] = self.price_forecaster.predict(k + 1)
            estimate = None if self.price_forecaster.method == "noise" else price_next
            orders += (ev.orders(k + 1, dr=dr_next, fee=fee, last_price=last, estimate=estimate)
                       + cs.orders(k + 1, price_history=price_history, dr=dr_next, fee=fee,
                                   estimate=estimate))
            if self.envelopes is not None:  # before gate closure: publish, orders within them
                pub = self._publish_envelopes(k + 1)
                # per device both sides (the ledgers' form): an unlimited side is the device's cap
                limited = sorted({*pub.export_wh, *pub.import_wh})
                envelopes = {"export": {d: pub.export_wh.get(d, self._cap_wh[d]) for d in limited},
                             "import": {d: pub.import_wh.get(d, self._cap_wh[d]) for d in limited}}
                orders = self.envelopes.cap_orders(orders)
            for o in orders:
                self._limit[(k + 1, o.device_id, o.side)] = o.price_per_mwh
        for key in [key for key in self._limit if key[0] <= k]:
            del self._limit[key]

        cols = agent_columns(k, time_s, hd, ed, sd, hh_m, ev_m, cs_m,
                             (hh_b, hh_s, ev_b, ev_s, cs_b, cs_s), households=hh, evs=ev,
                             storage=cs, interval_s=self.interval_s, agent_names=self._agent_names)
        fee_k = self.dso.published.pop(k, None)
        if fee_k is None:  # interval 0 (no orders were made for it) or a restarted model
            fee_k = self.dso.network_fee(k)
        fee_amount = fee_k * sum(t.energy_wh for t in final) / WH_PER_MWH / MICRO
        st = check.state
        nan = float("nan")
        feeder_3ph = self.feeder.element_phase is not None
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
            "network_fee_per_mwh": fee_k / MICRO, "network_fee_amount": fee_amount,
            "unbalance": check.remaining.unbalance if feeder_3ph else None,
            "vuf_max_percent": st.vuf_max_percent if feeder_3ph and st is not None else None,
        }
        vpp_rows: list[dict[str, Any]] = []
        if self.vpp is not None and k + 1 == self.n_intervals:
            vpp_rows = self.vpp.split(rng=self.rng)
            for r in vpp_rows:
                r["device_id"] = int(hh.device_id[int(r["agent"].split("_")[1])])
        self._next_interval += 1
        calls, self._dr_calls = self._dr_calls, []
        return IntervalOutput(
            interval=k, time_s=time_s, curtailments=check.curtailments, trades=final,
            element_p_mw=p, element_q_mvar=q, metered_wh=metered, orders=orders,
            agent_columns=cols, dso_rows=[dso_row], event_rows=events, vpp_rows=vpp_rows, tso=signal,
            forecast_rows=forecast_rows, dr_calls=calls, free_p_mw=free, envelopes=envelopes,
            regulation=regulation,
        )

    # ------------------------------------------------------------------ forecasts
    def _forecast_rows(self, k: int, time_s: int, trades: Sequence[Trade]) -> list[dict[str, Any]]:
        """Rows of the ``forecasts`` table for interval ``k`` (feeder totals, kW; the VPP's
        members' net load, kW; the clearing price, currency/MWh, when one was forecast and
        something traded) and the price observation for later forecasts."""
        hh, kw = self.households, 3600.0 / self.interval_s / 1000.0  # Wh per interval -> kW
        traded = sum(t.energy_wh for t in trades)
        price = sum(t.energy_wh * t.price_per_mwh for t in trades) / traded if traded else None
        self.price_forecaster.observe(k, price)
        method = self.price_forecaster.method
        fl, fp = hh.load_forecast_wh[:, k], hh.pv_forecast_wh[:, k]
        al, ap = hh.load_wh_base[:, k], hh.pv_wh_base[:, k]
        pairs = [("load", fl.sum(), al.sum()), ("pv", fp.sum(), ap.sum())]
        if self.vpp is not None:
            m = self.vpp.members
            pairs.append(("vpp_net_load", self.vpp.portfolio_forecast_wh(load_forecast_wh=fl, pv_forecast_wh=fp),
                          (al[m] - ap[m]).sum()))
        rows = [{"time_s": time_s, "interval": k, "target": t, "forecast": float(f) * kw,
                 "actual": float(a) * kw, "method": method} for t, f, a in pairs]
        predicted = self._price_forecast.pop(k, None)
        if predicted is not None and price is not None:
            rows.append({"time_s": time_s, "interval": k, "target": "price", "method": method,
                         "forecast": predicted / MICRO, "actual": price / MICRO})
        return rows

    # ------------------------------------------------------------------ TSO and events
    def _tso_signal(self, k: int) -> TSOSignal:
        """Forecast net import of interval ``k`` (Wh) -> the TSO's signal; DR hooks fire."""
        f, hh, ev = self.feeder, self.households, self.evs
        wh = self.interval_s / 3600.0 * 1e6
        hh_wh = float(hh.plan(k, export_cap_wh=np.full(hh.n, np.inf)).metered_wh.sum())
        ev_plan = ev.plan(k, bought_wh=np.zeros(ev.n), curtailed=np.zeros(ev.n, dtype=bool))
        bg = float(f.background_load_p_mw[:, k].sum() - f.background_sgen_p_mw[:, k].sum()) * wh
        signal = self.tso.assess(k, forecast_gap_wh=hh_wh + float(ev_plan.sum()) + bg)
        if signal.event is not None:
            self._dr[k] = signal.event
            self._dr_baseline[k] = float(ev_plan.sum())
            self._dr_offers[k] = self._flex_offers(k, signal.event.requested_wh, ev_plan)
            ev_ = signal.event
            self._dr_calls.append(DRCall(interval=ev_.interval, requested_wh=ev_.requested_wh,
                                         price_per_mwh=ev_.price_per_mwh,
                                         offers=dict(self._dr_offers[k])))
        return signal

    def agent_devices(self) -> dict[str, int]:
        """Agent name (``household_3``, ``ev_0``, ``storage_0``) -> its market device id."""
        return dict(zip(self._agent_names, (d.device_id for d in self.devices), strict=True))

    def dr_offers(self, interval: int) -> dict[int, int]:
        """Reductions (Wh) the flexible devices offer for the DR event of ``interval``, by
        device id (what they commit on the ledger; empty without an event)."""
        return dict(self._dr_offers.get(interval, {}))

    def dr_devices(self) -> list[int]:
        """Device ids that can answer a DR call: households with a flexible load or a home
        battery answering DR (``battery.dr``), EV chargers, community batteries (the DR
        service records their meters as baselines)."""
        hh = self.households
        can = hh.has_flex | (hh.has_battery & hh.battery_dr)
        return sorted([*hh.device_id[can].tolist(), *self.evs.device_id.tolist(),
                       *self.storage.device_id.tolist()])

    def _flex_offers(self, k: int, requested_wh: int, ev_plan: np.ndarray) -> dict[int, int]:
        """Households with a flexible load offer its planned energy of ``k`` unless the
        window's end forces it, and their home batteries (with ``battery.dr``) what they can
        deliver (:meth:`Households.dr_offer_wh`), EV chargers the charging
        the DR call defers (planned charge without the call minus the charge its departure
        forces), community batteries what they can deliver (power limit, charge above
        ``soc_min``; they stop buying and offer to sell);
        filled in device-id order up to the request; home batteries answering DR take the
        request's share of their offers in the total, and what the others leave.
        The households defer what they commit (their plan and orders for ``k`` drop by it)."""
        hh, ev, cs = self.households, self.evs, self.storage
        ev_dr = ev.plan(k, bought_wh=np.zeros(ev.n), curtailed=np.zeros(ev.n, dtype=bool), dr=True)
        wh = np.floor(np.clip(ev_plan - ev_dr, 0.0, None)).astype(np.int64)
        hh_wh = hh.flex_offer_wh(k).astype(np.int64)
        offers = [(d, w) for d, w in zip(hh.device_id.tolist(), hh_wh.tolist(), strict=True) if w >= 1]
        offers += list(zip(ev.device_id.tolist(), wh.tolist(), strict=True))
        offers += [(d, w) for d, w in zip(cs.device_id.tolist(), cs.dr_offer_wh().tolist(), strict=True)
                   if w >= 1]
        # home batteries (battery.dr) take the request's share of their offers (the rest is
        # filled as without them), then whatever the others leave
        bat = hh.battery_offer_wh(k).astype(np.int64)
        bat_offers = [(d, w) for d, w in zip(hh.device_id.tolist(), bat.tolist(), strict=True) if w >= 1]
        bat_total, other_total = sum(w for _, w in bat_offers), sum(max(w, 0) for _, w in offers)
        bat_share = (int(requested_wh) * bat_total // (bat_total + other_total)) if bat_total else 0
        out: dict[int, int] = {}
        left = int(requested_wh) - bat_share
        for device, offer in sorted(offers):
            take = min(int(offer), left)
            if take >= 1:
                out[int(device)] = take
                left -= take
        left += bat_share
        for device, offer in bat_offers:
            take = min(int(offer), left)
            if take >= 1:
                out[int(device)] = out.get(int(device), 0) + take
                left -= take
        cut = np.zeros(hh.n)
        for device, take in out.items():
            if (i := self._hh_index.get(device)) is not None:
                cut[i] = take
        hh.defer(k, cut)
        return out

    def _signal_rows(self, s: TSOSignal) -> list[dict[str, Any]]:
        t = s.interval * self.interval_s
        rows: list[dict[str, Any]] = [
            {"time_s": t, "interval": s.interval, "kind": "imbalance_price", "agent": "tso",
             "value": float(s.imbalance_price_per_mwh), "detail": f"forecast_gap_wh={s.forecast_gap_wh}"}]
        if s.event is not None:
            rows.append({"time_s": t, "interval": s.interval, "kind": "dr_call", "agent": "tso",
                         "value": float(s.event.requested_wh),
                         "detail": f"price_per_mwh={s.event.price_per_mwh}"})
        if s.upstream_available != self.tso.upstream_available(s.interval - 1):
            rows.append({"time_s": t, "interval": s.interval, "agent": "tso", "value": 0.0,
                         "kind": "upstream_restore" if s.upstream_available else "upstream_loss",
                         "detail": ""})
        return rows

    def _event_rows(self, k: int, time_s: int, ev_charge_wh: np.ndarray, cs_metered_wh: np.ndarray,
                    hh_deferred_wh: np.ndarray | None = None) -> list[dict[str, Any]]:
        """Agent events of ``k`` (EV arrivals/departures) and, for a DR event, the delivered
        reduction: EV charging the call deferred + community battery export + household
        flexible load deferred by its commitment (``hh_deferred_wh``)."""
        end = time_s + self.interval_s
        rows = [{"time_s": int(e.time_s), "interval": k, "kind": e.kind, "agent": e.agent,
                 "value": e.value, "detail": e.detail}
                for e in self._ev_events.get(k, []) if time_s <= e.time_s < end]
        event = self._dr.pop(k, None)
        self._dr_offers.pop(k, None)
        if event is not None:
            base = self._dr_baseline.pop(k, 0.0)
            delivered = (max(0.0, base - float(ev_charge_wh.sum()))
                         + float(np.clip(-cs_metered_wh, 0, None).sum()))
            if hh_deferred_wh is not None:
                delivered += float(np.clip(hh_deferred_wh, 0, None).sum())
            rows.append({"time_s": time_s, "interval": k, "kind": "dr_response", "agent": "flex",
                         "value": delivered, "detail": f"requested_wh={event.requested_wh}"})
        return rows

    def storage_soc_by_row(self) -> dict[str, float]:
        """State of charge of every battery now, by storage element row (HIL's 802 / 713)."""
        f = self.feeder
        out = {str(int(r)): float(x) for r, x in zip(f.storage_row, self.storage.soc, strict=True)}
        has = f.household_storage_row >= 0
        out |= {str(int(r)): float(x) for r, x in zip(f.household_storage_row[has],
                                                       self.households.soc[has], strict=True)}
        return out
