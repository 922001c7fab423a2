"""The agents under a fault state: outages, device failures, islands held by batteries.

:class:`OutageOverlay` wraps one market interval of :class:`twin.agents.model.FeederModel`
when the interval's :class:`~twin.faults.plan.FaultState` is not the normal one:

1. Before the model's step: every device on a de-energized bus, every tripped inverter and
   failed charger gets an external control ``connected=False`` (the model's own path for
   external controls, :func:`twin.agents.external_controls.controlled_dispatch`), so its
   dispatch, state of charge and meter follow; trades of devices without supply, or whose two sides are now in different
   islands, are curtailed to 0 (reason ``outage``);
   the DSO's security check of the interval solves the faulted topology (islands with their
   grid-forming battery as reference, :class:`twin.faults.grid.FaultedSnapshot`).
2. After it: households on de-energized buses are disconnected (load, PV and home battery
   off, the battery's state kept), background loads and generators there are off; each
   island without the upstream grid is balanced by its grid-forming batteries
   (:func:`twin.faults.island.balance_island`: shedding by priority, curtailing PV,
   collapse), whose power, state of charge and meter reading become the balance.
3. Orders for the next interval come only from devices in a market book: the book of a
   device is its island (0: the grid-connected part; 1..: islands, only with
   ``faults.islands.market: per_island``); devices without supply do not bid.

Customers: one per household and per background load row. Energy not served: the demand
of disconnected households and background loads (an EV's missed charging is deferred, not
lost: its need stays and is charged after the outage).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from twin.agents.controls import DERControl
from twin.agents.dso import Curtailment
from twin.faults.grid import FaultedSnapshot
from twin.faults.island import balance_island
from twin.faults.plan import FaultState, Islands, _Graph, books_of, islands
from twin.faults.spec import grid_forming_rows

__all__ = ["OutageOverlay", "attach"]

_OFF = DERControl(connected=False)


class OutageOverlay:
    """One run's outages and islands, applied around the model's interval step."""

    def __init__(self, *, model: Any, scenario: Any) -> None:
        self.model = model
        f = model.feeder
        net = f.net
        spec = scenario.faults.islands
        self.market = spec.market
        self.graph = _Graph.of(net)
        bpos = {int(b): i for i, b in enumerate(net.bus.index)}
        self.hh_bus = np.array([bpos[int(b)] for b in f.household_bus], dtype=np.int64)
        self.ev_bus = np.array([bpos[int(b)] for b in f.ev_bus], dtype=np.int64)
        self.cs_bus = np.array([bpos[int(b)] for b in f.storage_bus], dtype=np.int64)
        self.bg_bus = np.array([bpos[int(net.load.bus.iat[r])] for r in f.background_load_row], dtype=np.int64)
        self.bgs_bus = np.array([bpos[int(net.sgen.bus.iat[r])] for r in f.background_sgen_row], dtype=np.int64)
        m = model
        self.device_bus = {int(d): int(p) for ids, pos in ((m.households.device_id, self.hh_bus),
                                                           (m.evs.device_id, self.ev_bus),
                                                           (m.storage.device_id, self.cs_bus))
                           for d, p in zip(ids.tolist(), pos.tolist(), strict=True)}
        self.gf = np.array(grid_forming_rows(scenario), dtype=np.int64)
        self.gf_bus = self.cs_bus[self.gf]
        self.soc_min = max(spec.soc_min, scenario.agents.community_storage.soc_min)
        self.prio = (spec.priority_ev, spec.priority_household, spec.priority_other)
        classes = sorted(set(self.prio))
        self.rank = tuple(classes.index(p) for p in self.prio)
        self.n_classes = len(classes)
        self.dso_snapshot = FaultedSnapshot(model.dso.net, grid_forming=[
            int(model.dso.net.storage.index[f.storage_row[j]]) for j in self.gf])
        self._islands: dict[FaultState, Islands] = {}
        n_hh, n_bg = f.n_households, len(f.background_load_row)
        self.n_customers = n_hh + n_bg
        self._was_off = np.zeros(self.n_customers, dtype=bool)
        self.books: dict[int, int] | None = None  # device -> book of the last faulted interval

    # ------------------------------------------------------------------ topology
    def islands(self, state: FaultState) -> Islands:
        hit = self._islands.get(state)
        if hit is None:
            hit = self._islands[state] = islands(self.graph, state, self.gf_bus)
        return hit

    def device_books(self, state: FaultState) -> dict[int, int] | None:
        """Device id -> market book (island) under ``state``; None when the feeder is whole."""
        if state.topology_normal:
            return None
        return books_of(self.islands(state), self.device_bus, market=self.market)

    # ------------------------------------------------------------------ the step
    def step(self, *, interval: int, trades: Sequence[Any], price_history: Sequence[int],
             der_controls: Mapping[int, DERControl] | None, state: FaultState | None) -> Any:
        """The model's step of ``interval`` under ``state``; ``out.fault_rows`` holds the
        ``outages`` and ``islands`` rows."""
        m = self.model
        if state is None or state.normal:
            self._was_off[:] = False
            out = m.step_interval(interval=interval, trades=trades, price_history=price_history,
                                  der_controls=der_controls)
            return out, {}
        k = interval
        isl = self.islands(state)
        b = isl.bus_island
        hh, ev, cs = m.households, m.evs, m.storage
        hh_off = b[self.hh_bus] < 0
        ev_dead = b[self.ev_bus] < 0
        cs_off = b[self.cs_bus] < 0
        controls = dict(der_controls or {})
        inv = np.zeros(hh.n, bool)
        inv[list(state.inverters_out)] = True
        chg = np.zeros(ev.n, bool)
        chg[list(state.chargers_out)] = True
        for i in np.flatnonzero(hh_off | inv):
            if m.feeder.household_sgen_row[i] >= 0:
                controls[int(hh.device_id[i])] = _OFF
        for e in np.flatnonzero(ev_dead | chg):
            controls[int(ev.device_id[e])] = _OFF
        for j in np.flatnonzero(cs_off):
            controls[int(cs.device_id[j])] = _OFF
        dead = set(hh.device_id[hh_off].tolist()) | set(ev.device_id[ev_dead].tolist()) \
            | set(cs.device_id[cs_off].tolist())
        cuts: list[Curtailment] = []
        kept: list[Any] = []
        where = books_of(isl, self.device_bus, market="per_island")  # each live device's island

        def split(t: Any) -> bool:  # no supply, or the two sides in different islands now
            return (t.buyer_device in dead or t.seller_device in dead
                    or where.get(t.buyer_device) != where.get(t.seller_device))

        for t in trades:
            if t.interval == k and t.energy_wh > 0 and split(t):
                cuts.append(Curtailment(trade_id=t.trade_id, energy_wh=0, reason="outage"))
                t = dataclasses.replace(t, energy_wh=0)
            kept.append(t)
        hh_e0, cs_e0 = hh.energy_wh.copy(), cs.energy_wh.copy()
        if not state.topology_normal:
            m.dso.fault_solver = lambda p, q: self.dso_snapshot.solve(
                state, load_p_mw=p["load"], load_q_mvar=q["load"], sgen_p_mw=p["sgen"],
                sgen_q_mvar=q["sgen"], storage_p_mw=p["storage"], storage_q_mvar=q["storage"])
        try:
            out = m.step_interval(interval=k, trades=kept, price_history=price_history,
                                  der_controls=controls or None)
        finally:
            m.dso.fault_solver = None
        cut_ids = {c.trade_id for c in cuts}
        out.curtailments[:] = cuts + [c for c in out.curtailments if c.trade_id not in cut_ids]
        rows = self._physics(k, out, isl, hh_off, cs_off, hh_e0, cs_e0, pv_off=hh_off | inv)
        books = self.device_books(state)
        if books is not None:
            out.orders[:] = [o for o in out.orders if o.device_id in books]
        return out, rows

    def _physics(self, k: int, out: Any, isl: Islands, hh_off: np.ndarray, cs_off: np.ndarray,
                 hh_e0: np.ndarray, cs_e0: np.ndarray, *, pv_off: np.ndarray) -> dict[str, list[dict[str, Any]]]:
        m = self.model
        f, hh, ev, cs = m.feeder, m.households, m.evs, m.storage
        it = m.interval_s
        dt_h = it / 3600.0
        wh = 1e6 * dt_h  # MW over the interval -> Wh
        p, q, met = out.element_p_mw, out.element_q_mvar, out.metered_wh
        b = isl.bus_island
        bg_off = b[self.bg_bus] < 0
        ens_wh = 0.0  # shed in islands
        off_hh = np.zeros(hh.n, dtype=bool)  # shed in islands (or their island collapsed)
        off_bg = np.zeros(bg_off.size, dtype=bool)
        shed_dev: set[int] = set()

        def drop_household(i: int) -> float:
            """Disconnect household i; its demand not served, Wh."""
            for table, row in (("load", f.household_load_row[i]), ("sgen", f.household_sgen_row[i]),
                               ("storage", f.household_storage_row[i])):
                if row >= 0:
                    p[table][row] = q[table][row] = 0.0
            hh.energy_wh[i] = hh_e0[i]
            met[int(hh.device_id[i])] = 0
            return max(float(hh.load_wh_base[i, k]), 0.0)

        # without supply: off (their energy not served is counted in exact times from the
        # fault events, table interruptions)
        cols = out.agent_columns
        ev_charge = cols["battery_charge_wh"][hh.n:hh.n + ev.n].copy()
        ev_dis = cols["battery_discharge_wh"][hh.n:hh.n + ev.n].copy()

        def undo_ev(e: int) -> None:
            """A shed charger did not charge (or discharge): the EV keeps its energy and need."""
            p["load"][f.ev_load_row[e]] = 0.0
            met[int(ev.device_id[e])] = 0
            ev.energy_wh[e] += -ev_charge[e] + ev_dis[e] / ev.v2g_eta
            ev_charge[e] = ev_dis[e] = 0.0

        for i in np.flatnonzero(hh_off):
            drop_household(int(i))
        for r in f.background_load_row[bg_off]:
            p["load"][r] = q["load"][r] = 0.0
        for r in f.background_sgen_row[b[self.bgs_bus] < 0]:
            p["sgen"][r] = q["sgen"][r] = 0.0
        island_rows: list[dict[str, Any]] = []
        pv_cut_wh = 0.0
        for n in range(1, isl.n_islands + 1):
            units = np.flatnonzero(isl.gf_island == n)
            gf = self.gf[units]
            hi = np.flatnonzero(b[self.hh_bus] == n)
            ei = np.flatnonzero(b[self.ev_bus] == n)
            gi = np.flatnonzero(b[self.bg_bus] == n)
            si = np.flatnonzero(b[self.bgs_bus] == n)
            ci = np.setdiff1d(np.flatnonzero(b[self.cs_bus] == n), gf)
            hrow = f.household_sgen_row[hi]
            srow = f.household_storage_row[hi]
            h_dem = p["load"][f.household_load_row[hi]] + np.where(srow >= 0, p["storage"][np.maximum(srow, 0)], 0.0)
            h_gen = np.where(hrow >= 0, p["sgen"][np.maximum(hrow, 0)], 0.0)
            dem = np.concatenate([p["load"][f.ev_load_row[ei]], h_dem, p["load"][f.background_load_row[gi]],
                                  np.zeros(si.size)])
            gen = np.concatenate([np.zeros(ei.size), h_gen, np.zeros(gi.size), p["sgen"][f.background_sgen_row[si]]])
            rank = np.concatenate([np.full(ei.size, self.rank[0]), np.full(hi.size, self.rank[1]),
                                   np.full(gi.size, self.rank[2]), np.full(si.size, self.n_classes)])
            other = float(p["storage"][f.storage_row[ci]].sum())
            bal = balance_island(
                demand_mw=dem, gen_mw=gen, rank=rank, n_classes=self.n_classes, other_mw=other,
                energy_wh=cs_e0[gf], capacity_wh=np.full(gf.size, cs.capacity_wh),
                power_mw=cs.capacity_w[gf] / 1e6, soc_min=np.full(gf.size, self.soc_min),
                soc_max=np.full(gf.size, cs.soc_max), eta=np.full(gf.size, cs.eta), dt_h=dt_h)
            shed = bal.shed
            n_e, n_h, n_g = ei.size, hi.size, gi.size
            for e in ei[shed[:n_e]]:
                undo_ev(int(e))
                shed_dev.add(int(ev.device_id[e]))
            for j, i in enumerate(hi):
                if shed[n_e + j]:
                    ens_wh += drop_household(int(i))
                    off_hh[i] = True
                    shed_dev.add(int(hh.device_id[i]))
                elif bal.gen_scale < 1.0 and hrow[j] >= 0:
                    cut = p["sgen"][hrow[j]] * (1.0 - bal.gen_scale)
                    p["sgen"][hrow[j]] -= cut
                    met[int(hh.device_id[i])] += round(cut * wh)
                    pv_cut_wh += cut * wh
            for j, g in enumerate(gi):
                if shed[n_e + n_h + j]:
                    r = f.background_load_row[g]
                    ens_wh += max(float(p["load"][r]), 0.0) * wh
                    p["load"][r] = q["load"][r] = 0.0
                    off_bg[g] = True
            for s in si:
                pv_cut_wh += p["sgen"][f.background_sgen_row[s]] * (1.0 - bal.gen_scale) * wh
                p["sgen"][f.background_sgen_row[s]] *= bal.gen_scale
            if bal.collapsed:
                for e in ei:
                    undo_ev(int(e))
                for j in ci:
                    p["storage"][f.storage_row[j]] = 0.0
                    cs.energy_wh[j] = cs_e0[j]
                    met[int(cs.device_id[j])] = 0
                    shed_dev.add(int(cs.device_id[j]))
                shed_dev |= {int(ev.device_id[e]) for e in ei}
            # the grid-forming batteries deliver the balance: power, state of charge, meter
            for u, j in enumerate(gf):
                g_mw = float(bal.gf_p_mw[u])
                p["storage"][f.storage_row[j]] = -g_mw
                e_out = g_mw / cs.eta if g_mw > 0 else g_mw * cs.eta
                cs.energy_wh[j] = cs_e0[j] - e_out * wh
                met[int(cs.device_id[j])] = round(-g_mw * wh)
            island_rows.append({
                "time_s": k * it, "interval": k, "island": n,
                "buses": int((b == n).sum()), "customers": int(n_h + n_g),
                "demand_mw": float(dem.sum()), "generation_mw": float(gen.sum() * bal.gen_scale),
                "gf_p_mw": float(bal.gf_p_mw.sum()),
                "gf_soc": float(cs.energy_wh[gf].sum() / (cs.capacity_wh * max(gf.size, 1))),
                "shed_classes": int(bal.shed_class), "collapsed": bool(bal.collapsed),
                "pv_curtailed_mw": float(gen.sum() * (1.0 - bal.gen_scale)),
            })
        cols["battery_charge_wh"][hh.n:hh.n + ev.n] = ev_charge
        cols["battery_discharge_wh"][hh.n:hh.n + ev.n] = ev_dis
        self._fix_agent_rows(out, pv_off=pv_off | off_hh)
        # trades of shed devices: nothing was delivered, the DSO curtails them to 0
        if shed_dev:
            by_id = {c.trade_id: c for c in out.curtailments}
            for t in out.trades:
                if (t.buyer_device in shed_dev or t.seller_device in shed_dev) and t.energy_wh > 0:
                    by_id[t.trade_id] = Curtailment(trade_id=t.trade_id, energy_wh=0, reason="shed")
            out.curtailments[:] = list(by_id.values())
        off = np.concatenate([off_hh, off_bg])
        new = int((off & ~self._was_off).sum())
        self._was_off = off
        outage = {
            "time_s": k * it, "interval": k, "customers_shed": int(off.sum()),
            "customers_total": self.n_customers, "new_interruptions": new, "ens_wh": ens_wh,
            "pv_curtailed_wh": pv_cut_wh, "dead_buses": int((b < 0).sum()),
            "island_buses": int((b > 0).sum()), "islands": isl.n_islands,
        }
        return {"outages": [outage], "islands": island_rows}

    def _fix_agent_rows(self, out: Any, *, pv_off: np.ndarray) -> None:
        """The agents rows follow the meters and batteries the overlay changed; a PV inverter
        off by a fault had nothing available (it is no PV the DSO held back)."""
        m = self.model
        cols = out.agent_columns
        it = m.interval_s
        ids = cols["device_id"]
        met = np.array([out.metered_wh.get(int(d), 0) for d in ids], dtype=np.int64)
        cols["metered_wh"] = met
        cols["p_mw"] = met * 3600.0 / it / 1e6
        n_h, n_e = m.households.n, m.evs.n
        soc = cols["soc"].copy()
        soc[:n_h] = m.households.soc
        soc[n_h:n_h + n_e] = m.evs.soc
        soc[n_h + n_e:] = m.storage.soc
        cols["soc"] = soc
        n_h = m.households.n
        avail = cols["pv_available_wh"].copy()
        avail[:n_h] = np.where(pv_off, cols["pv_wh"][:n_h], avail[:n_h])
        cols["pv_available_wh"] = avail


def attach(setup: Any, *, model: Any, scenario: Any) -> Any:
    """The overlay on ``model`` and the grid's faulted solver, into ``setup``
    (:class:`twin.faults.setup.FaultSetup`)."""
    setup.overlay = OutageOverlay(model=model, scenario=scenario)
    f = model.feeder
    setup.grid_snapshot = FaultedSnapshot(f.net, grid_forming=[
        int(f.net.storage.index[f.storage_row[j]]) for j in grid_forming_rows(scenario)])
    return setup
