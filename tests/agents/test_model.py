"""Agent physics, orders and determinism on a full quickstart day."""

from __future__ import annotations

import numpy as np
import pytest

from twin.agents.model import AGENT_ROW_COLUMNS, DSO_ROW_COLUMNS, FeederModel, IntervalOutput
from twin.grid.feeders import Feeder, build_feeder
from twin.market.types import DeviceKind, Side, Trade
from twin.market.units import price_from_per_mwh
from twin.scenario import Scenario

from ._market import run_day

Day = tuple[FeederModel, list[IntervalOutput], float]


def _rows(outs: list[IntervalOutput], kind: str) -> dict[str, np.ndarray]:
    rows = [r for o in outs for r in o.agent_rows if r["kind"] == kind]
    return {c: np.array([r[c] for r in rows]) for c in AGENT_ROW_COLUMNS}


def test_devices_and_accounts(quickstart_day: Day) -> None:
    model, _, _ = quickstart_day
    s, f = model.scenario, model.feeder
    devs = model.devices
    assert [d.device_id for d in devs] == list(range(1, len(devs) + 1))
    assert len(devs) == f.n_households + f.n_evs + f.n_storage
    assert all(d.owner >= 2 for d in devs)
    assert model.accounts == sorted({d.owner for d in devs})
    hh = devs[: f.n_households]
    assert [d.kind for d in hh] == [DeviceKind.PV if k > 0 else DeviceKind.LOAD for k in f.household_pv_kwp]
    evs = [d for d in devs if d.kind == DeviceKind.EV]
    assert [d.owner for d in evs] == [hh[h].owner for h in f.ev_household]
    assert all(d.capacity_w == s.agents.evs.charger_kw * 1000 for d in evs)
    assert sum(d.kind == DeviceKind.STORAGE for d in devs) == f.n_storage
    assert len(model.agents) == len(devs) + 2  # + the DSO and the TSO


def test_day_runs_fast_and_rows_are_complete(quickstart_day: Day) -> None:
    model, outs, seconds = quickstart_day
    print(f"quickstart day (96 intervals, incl. DSO power flows): {seconds:.2f} s")
    assert seconds < 60
    assert len(outs) == model.n_intervals
    for o in outs:
        assert all(tuple(r) == AGENT_ROW_COLUMNS for r in o.agent_rows)
        assert [tuple(r) == DSO_ROW_COLUMNS for r in o.dso_rows] == [True]
        assert o.time_s == o.interval * model.interval_s
    assert outs[-1].orders == []
    assert sum(len(o.trades) for o in outs) > 100  # the market actually trades


def test_household_physics(quickstart_day: Day) -> None:
    model, outs, _ = quickstart_day
    r = _rows(outs, "household")
    hh = model.households
    kwp = np.tile(hh.pv_kwp, len(outs))
    dt_h = model.interval_s / 3600
    assert (r["pv_wh"] >= -1e-9).all() and (r["pv_wh"] <= r["pv_available_wh"] + 1e-9).all()
    assert (r["pv_available_wh"] <= kwp * 1000 * dt_h + 1e-9).all()
    balance = r["load_wh"] + r["battery_charge_wh"] - r["battery_discharge_wh"] - r["pv_wh"]
    assert np.abs(r["metered_wh"] - balance).max() <= 0.5
    spec = model.scenario.agents.households.battery
    has_bat = np.tile(hh.has_battery, len(outs))
    soc = r["soc"][has_bat]
    assert (soc >= spec.soc_min - 1e-9).all() and (soc <= spec.soc_max + 1e-9).all()
    assert np.isnan(r["soc"][~has_bat]).all()
    assert r["battery_charge_wh"][has_bat].max() > 0  # self-consumption happens
    # stored energy changes by charge*eta - discharge/eta (per battery, interval to interval)
    n = hh.n
    soc_m = r["soc"].reshape(len(outs), n)[:, hh.has_battery]
    ch = r["battery_charge_wh"].reshape(len(outs), n)[:, hh.has_battery]
    dis = r["battery_discharge_wh"].reshape(len(outs), n)[:, hh.has_battery]
    cap = spec.capacity_kwh * 1000
    eta = np.sqrt(spec.efficiency)
    d_energy = np.diff(soc_m, axis=0) * cap
    assert np.allclose(d_energy, ch[1:] * eta - dis[1:] / eta, atol=1e-6)
    assert (np.minimum(ch, dis) == 0).all()


def test_ev_physics_and_departure_needs(quickstart_day: Day) -> None:
    model, outs, _ = quickstart_day
    ev = model.evs
    r = _rows(outs, "ev")
    T, n = len(outs), ev.n
    charge = r["metered_wh"].reshape(T, n)
    plugged = r["plugged"].reshape(T, n)
    need = r["remaining_need_wh"].reshape(T, n)
    assert (charge >= 0).all() and (charge <= ev.cap_wh[None, :] + 1).all()
    assert (charge[~plugged] == 0).all()
    assert ((r["soc"] >= 0) & (r["soc"] <= 1)).all()
    assert charge.sum() > 0
    # every session departing within the day left with its need met (no curtailment here)
    for e in range(n):
        for k in range(T - 1):
            if plugged[k, e] and not plugged[k + 1, e] and ev.departure_k[e, k] == k + 1:
                assert need[k, e] <= 1.0, (e, k, need[k, e])


def test_community_storage_physics(quickstart_day: Day) -> None:
    model, outs, _ = quickstart_day
    cs = model.storage
    spec = model.scenario.agents.community_storage
    r = _rows(outs, "storage")
    assert ((r["soc"] >= spec.soc_min - 1e-9) & (r["soc"] <= spec.soc_max + 1e-9)).all()
    assert (r["battery_charge_wh"] <= cs.cap_wh[0] + 1e-9).all()
    assert (r["battery_discharge_wh"] <= cs.cap_wh[0] + 1e-9).all()
    assert np.abs(r["metered_wh"] - (r["battery_charge_wh"] - r["battery_discharge_wh"])).max() <= 0.5
    # follows its trades (within SOC limits it planned for)
    assert np.allclose(r["battery_charge_wh"] - r["battery_discharge_wh"], r["bought_wh"] - r["sold_wh"])
    assert r["bought_wh"].sum() > 0 and r["sold_wh"].sum() > 0


def test_orders_within_limits(quickstart_day: Day) -> None:
    model, outs, _ = quickstart_day
    s = model.scenario
    caps = {d.device_id: d.capacity_w * s.market.interval_s // 3600 for d in model.devices}
    lo, hi = price_from_per_mwh(s.market.feed_in_price_per_mwh), price_from_per_mwh(s.market.retail_price_per_mwh)
    n = 0
    for o in outs:
        seen = set()
        for order in o.orders:
            n += 1
            assert order.interval == o.interval + 1
            assert order.device_id in caps
            assert isinstance(order.energy_wh, int) and 1 <= order.energy_wh <= caps[order.device_id]
            assert isinstance(order.price_per_mwh, int) and lo <= order.price_per_mwh <= hi
            assert (order.device_id, order.side) not in seen
            seen.add((order.device_id, order.side))
    assert n > 1000
    kinds = {d.device_id: d.kind for d in model.devices}
    ev_orders = [order for o in outs for order in o.orders if kinds[order.device_id] == DeviceKind.EV]
    assert ev_orders and all(order.side == Side.BUY for order in ev_orders)


def test_element_arrays_match_meters(quickstart_day: Day) -> None:
    model, outs, _ = quickstart_day
    f = model.feeder
    wh = 1e6 * model.interval_s / 3600
    for o in outs[::7]:
        p = o.element_p_mw
        assert p["load"].shape == (f.n_load,) and p["sgen"].shape == (f.n_sgen,)
        assert p["storage"].shape == (f.n_storage_rows,)
        assert (p["sgen"] >= 0).all() and (p["load"][f.ev_load_row] >= 0).all()
        hh_meter = p["load"][f.household_load_row].copy()
        has_pv, has_bat = f.household_sgen_row >= 0, f.household_storage_row >= 0
        hh_meter[has_pv] -= p["sgen"][f.household_sgen_row[has_pv]]
        hh_meter[has_bat] += p["storage"][f.household_storage_row[has_bat]]
        ids = [d.device_id for d in model.devices[: f.n_households]]
        assert np.abs(hh_meter * wh - np.array([o.metered_wh[i] for i in ids])).max() <= 0.5
        assert o.load_p_mw is p["load"] and o.storage_q_mvar is o.element_q_mvar["storage"]
        inj = o.injections()
        assert set(inj) == {"load_p_mw", "load_q_mvar", "sgen_p_mw", "sgen_q_mvar",
                            "storage_p_mw", "storage_q_mvar"}


def test_same_seed_identical_outputs(quickstart_feeder: tuple[Scenario, Feeder]) -> None:
    s, f = quickstart_feeder
    runs = []
    for _ in range(2):
        model = FeederModel(scenario=s, feeder=build_feeder(s), rng=np.random.default_rng(s.seed))
        runs.append(run_day(model, 40))
    for a, b in zip(*runs, strict=True):
        assert a.orders == b.orders and a.metered_wh == b.metered_wh and a.trades == b.trades
        for t in ("load", "sgen", "storage"):
            assert np.array_equal(a.element_p_mw[t], b.element_p_mw[t])
    other = FeederModel(scenario=s, feeder=f, rng=np.random.default_rng(s.seed + 1))
    assert run_day(other, 40)[-1].orders != runs[0][-1].orders


def test_intervals_must_be_stepped_in_order(quickstart_feeder: tuple[Scenario, Feeder]) -> None:
    s, f = quickstart_feeder
    model = FeederModel(scenario=s, feeder=f, rng=np.random.default_rng(0))
    with pytest.raises(ValueError, match="expected interval 0"):
        model.step_interval(interval=1, trades=[], price_history=[])


def test_curtailed_trades_drive_dispatch(quickstart_feeder: tuple[Scenario, Feeder]) -> None:
    """A curtailed PV sale caps the export; a curtailed EV purchase caps charging."""
    s, f = quickstart_feeder
    model = FeederModel(scenario=s, feeder=f, rng=np.random.default_rng(1))
    k_ev = 4  # 01:00, cars are home
    run_day(model, k_ev)
    ev_i = int(np.flatnonzero(model.evs.plugged[:, k_ev])[0])
    ev_dev = int(model.evs.device_id[ev_i])
    cut_ev = Trade(trade_id=1, interval=k_ev, buy_order_id=1, sell_order_id=2, buyer_device=ev_dev,
                   seller_device=999, cleared_wh=2000, energy_wh=50, price_per_mwh=1)
    out = model.step_interval(interval=k_ev, trades=[cut_ev], price_history=[])
    assert 0 <= out.metered_wh[ev_dev] <= 50
    assert out.trades == [cut_ev]
    # PV at noon
    model = FeederModel(scenario=s, feeder=f, rng=np.random.default_rng(1))
    k = 48
    run_day(model, k)
    pv_dev = next(d for d in model.devices if d.kind == DeviceKind.PV
                  and model.households.pv_wh_base[d.device_id - 1, k] > 800
                  and not model.households.has_battery[d.device_id - 1])
    cut_pv = Trade(trade_id=2, interval=k, buy_order_id=3, sell_order_id=4, buyer_device=999,
                   seller_device=pv_dev.device_id, cleared_wh=400, energy_wh=100, price_per_mwh=1)
    out = model.step_interval(interval=k, trades=[cut_pv], price_history=[])
    assert out.metered_wh[pv_dev.device_id] >= -100  # export capped at the sold 100 Wh
    row = next(r for r in out.agent_rows if r["device_id"] == pv_dev.device_id)
    assert row["pv_wh"] < row["pv_available_wh"]  # PV was spilled
    # without curtailment the same household would export more
    assert row["pv_available_wh"] - row["load_wh"] > 100


def test_agent_columns_record_the_same_table_as_agent_rows(quickstart_day: Day, tmp_path) -> None:
    from twin.results import RunRecorder

    _, outs, _ = quickstart_day
    by_rows, by_cols = RunRecorder(tmp_path / "rows"), RunRecorder(tmp_path / "cols")
    for o in outs[:6]:
        by_rows.add("agents", o.agent_rows)
        by_cols.add_columns("agents", o.agent_columns)
    a, b = by_cols.to_table("agents"), by_rows.to_table("agents")
    assert a.schema.equals(b.schema) and a.num_rows == b.num_rows > 0
    assert a.to_pandas().equals(b.to_pandas())  # NaN where NaN
