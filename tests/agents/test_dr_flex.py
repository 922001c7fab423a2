"""Household flexible loads answer demand-response calls: they commit their deferrable
flexible energy through the DR service, really defer it (the meter and the orders drop),
are paid on the metered reduction against their baseline, and still meet their window."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from tests._quickstart import quickstart_with
from twin.agents.model import FeederModel
from twin.grid.feeders import build_feeder
from twin.market.types import Side
from twin.market.units import payment
from twin.run import run_scenario
from twin.scenario import Scenario, scenario_from_dict

from ._market import clear

FLEX = {"share": 0.5, "energy_kwh": 2.0, "power_kw": 2.0, "earliest_hour": 10, "latest_hour": 13}
POWER_WH = 500.0  # 2 kW for 15 minutes
BASELINE_N = 4


def _model(sc: Scenario) -> FeederModel:
    """The model exactly as ``twin run`` builds it (one generator for feeder and agents)."""
    rng = np.random.default_rng(sc.seed)
    return FeederModel(scenario=sc, feeder=build_feeder(scenario=sc, rng=rng), rng=rng)


def _scenario() -> Scenario:
    # 10:00-13:00 (the whole comfort window): PV surplus, so PV owners plan to run their
    # flexible load early; a 1 kW gap threshold makes the TSO call an event every interval
    return quickstart_with(start="2016-06-15T10:00:00Z", duration_s=3 * 3600, market__ledger="reference",
                           agents__tso__gap_threshold_kw=1.0, agents__households__flex=FLEX,
                           market__services={"demand_response": {"enabled": True,
                                                                 "baseline_intervals": BASELINE_N},
                                             "green_currency": {"enabled": True, "tokens_per_kwh_dr": 2.0}})


@pytest.fixture(scope="module")
def dr_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Scenario, Path]:
    sc = _scenario()
    out = tmp_path_factory.mktemp("dr_flex") / "run"
    run_scenario(sc, out_dir=out, progress=False)
    return sc, out


def _t(out: Path, name: str) -> pd.DataFrame:
    return pq.read_table(out / f"{name}.parquet").to_pandas()


def test_flex_households_commit_are_paid_on_their_meter_and_meet_the_window(
        dr_run: tuple[Scenario, Path]) -> None:
    sc, out = dr_run
    model = _model(sc)
    hh = model.households
    flex_ids = set(hh.device_id[hh.has_flex].tolist())
    agents = _t(out, "agents")
    agents["k"] = agents["time_s"] // sc.market.interval_s
    meter = agents.pivot(index="device_id", columns="k", values="metered_wh")
    load = agents[agents["kind"] == "household"].pivot(index="device_id", columns="k", values="load_wh")
    payouts, events = _t(out, "dr_payouts"), _t(out, "dr_events")
    price = dict(zip(events["event_id"], events["price_per_mwh"], strict=True))

    hh_rows = payouts[payouts["device_id"].isin(flex_ids)]
    assert len(hh_rows) >= 5 and hh_rows["device_id"].nunique() >= 3
    assert (hh_rows["reduction_wh"] > 0).sum() >= 3 and (hh_rows["amount"] > 0).sum() >= 3
    assert not payouts["device_id"].isin(set(hh.device_id[~hh.has_flex].tolist())).any()
    for r in hh_rows.itertuples():
        d, k = int(r.device_id), int(r.interval)
        past = [int(meter.at[d, j]) for j in range(k - BASELINE_N, k) if j in meter.columns]
        assert r.baseline_wh == (sum(past) // len(past) if past else 0)
        assert r.metered_wh == meter.at[d, k]
        want = min(max(r.baseline_wh - r.metered_wh, 0), r.committed_wh)
        assert r.reduction_wh == want
        assert r.amount == payment(want, int(price[r.event_id]))
        # the flexible load of the event interval dropped by what was committed
        i = int(np.flatnonzero(hh.device_id == d)[0])
        flex_k = load.at[d, k] - hh.load_wh_base[i, k]
        assert -1e-6 <= flex_k <= POWER_WH - r.committed_wh + 1e-6
    # the deferred energy is still delivered inside the window (it ends with the run)
    idx = np.flatnonzero(hh.has_flex)
    flex = load.loc[hh.device_id[idx]].to_numpy() - hh.load_wh_base[idx]
    assert flex.sum(axis=1) == pytest.approx(np.full(idx.size, FLEX["energy_kwh"] * 1000.0))
    ev = events.set_index("event_id")
    paid = hh_rows.groupby("event_id")["amount"].sum()
    assert (paid <= ev.loc[paid.index, "paid"]).all()


def test_green_currency_rewards_household_dr_like_the_dr_service(dr_run: tuple[Scenario, Path]) -> None:
    """Green-currency DR awards cover the DR service's device set (flexible households
    included): each paid reduction earns tokens on exactly the same Wh."""
    sc, out = dr_run
    hh = _model(sc).households
    flex_ids = set(hh.device_id[hh.has_flex].tolist())
    payouts = _t(out, "dr_payouts")
    gc = _t(out, "green_currency")
    dr = gc[gc["reason"] == "dr"].set_index(["interval", "device_id"])["energy_wh"]
    paid = payouts[payouts["reduction_wh"] > 0].set_index(["interval", "device_id"])["reduction_wh"]
    assert paid.index.get_level_values("device_id").isin(flex_ids).sum() >= 3
    assert dr.index.get_level_values("device_id").isin(flex_ids).sum() >= 3
    assert dr.sort_index().to_dict() == paid.sort_index().to_dict()


def test_dr_response_row_counts_household_deferral() -> None:
    """The ``dr_response`` event row = EV charging deferred + community battery export +
    the flexible load households deferred (their commitments)."""
    sc = _scenario()
    model = _model(sc)
    ev, cs = model.evs, model.storage
    trades: list = []
    prices: list[int] = []
    pending: tuple[float, int] | None = None  # (EV baseline, household commits) of the next interval
    checked = 0
    for k in range(sc.n_intervals):
        out = model.step_interval(interval=k, trades=trades, price_history=list(prices))
        rows = [r for r in out.event_rows if r["kind"] == "dr_response"]
        if pending is None:
            assert not rows
        else:
            base, hh_wh = pending
            ev_wh = sum(out.metered_wh[int(d)] for d in ev.device_id)
            cs_out = sum(max(0, -out.metered_wh[int(d)]) for d in cs.device_id)
            (row,) = rows
            assert row["value"] == pytest.approx(max(0.0, base - ev_wh) + cs_out + hh_wh, abs=1.0)
            checked += hh_wh > 0
        pending = None
        if k + 1 < sc.n_intervals:
            trades, p = clear(out.orders, interval=k + 1, first_trade_id=1 + 1000 * k)
            prices.append(p)
            if out.tso is not None and out.tso.event is not None:
                commits = model.dr_offers(k + 1)
                hh_wh = sum(w for d, w in commits.items() if d in model._hh_index)
                pending = (model._dr_baseline[k + 1], hh_wh)
    assert checked >= 3


def test_committed_households_defer_in_plan_meter_and_orders() -> None:
    sc = _scenario()
    model = _model(sc)
    hh = model.households
    inf = np.full(hh.n, np.inf)
    trades: list = []
    prices: list[int] = []
    checked = 0
    for k in range(sc.n_intervals - 1):
        out = model.step_interval(interval=k, trades=trades, price_history=list(prices))
        trades, p = clear(out.orders, interval=k + 1, first_trade_id=1 + 1000 * k)
        prices.append(p)
        if out.tso is None or out.tso.event is None:
            continue
        commits = model.dr_offers(k + 1)
        before = hh._flex_plan(k + 1)[0]  # the flexible load of k+1 without the call
        orders = {o.device_id: o for o in out.orders if o.interval == k + 1}
        for device, wh in commits.items():
            if (i := model._hh_index.get(device)) is None:
                continue
            checked += 1
            assert 1 <= wh <= before[i]
            plan = hh.plan(k + 1, export_cap_wh=inf)
            assert plan.flex_wh[i] == pytest.approx(before[i] - wh)
            undeferred = hh._dispatch(hh.load_forecast_wh[:, k + 1], hh.pv_forecast_wh[:, k + 1], inf, before)
            drop = undeferred.metered_wh[i] - plan.metered_wh[i]
            assert -1e-6 <= drop <= wh + 1e-6
            if not hh.has_battery[i]:
                assert drop == pytest.approx(wh)
            # its order for k+1 is the deferred plan (buys less or sells more)
            net = int(np.rint(plan.metered_wh[i]))
            o = orders.get(device)
            if o is None:
                assert abs(net) < 1
            else:
                assert (o.side == Side.BUY) == (net > 0)
                assert o.energy_wh == min(abs(net), int(hh.cap_wh[i]))
    assert checked >= 5


def _flex_fleet() -> FeederModel:
    s = scenario_from_dict({
        "name": "flex-dr", "seed": 3, "start": "2016-06-15T10:00:00Z", "duration_s": 3 * 3600,
        "grid": {"kind": "cigre_lv"},
        "agents": {"households": {"count": 6, "profiles": "synthetic", "pv": {"share": 1.0},
                                  "flex": {**FLEX, "share": 1.0}},
                   "evs": {"count": 0}, "community_storage": {"count": 0}},
        "market": {"ledger": "reference"}})
    return FeederModel(scenario=s, feeder=build_feeder(s), rng=np.random.default_rng(s.seed))


def test_a_load_its_deadline_forces_does_not_commit() -> None:
    hh = _flex_fleet().households
    last = hh.flex_left.size - 1  # the window's last interval (it ends with the run)
    assert hh.flex_left[last] == 1
    # 12 intervals for 4 intervals of energy: with the full energy left, the last 4 are forced
    hh.flex_remaining_wh = np.full(hh.n, 2000.0)
    for k, forced in ((last - 3, 500.0), (last - 4, 0.0)):
        flex, must = hh._flex_plan(k)
        assert must == pytest.approx(np.full(hh.n, forced))
        offer = hh.dr_offer_wh(k)
        if forced:
            assert (offer == 0).all() and (flex == POWER_WH).all()
            hh.defer(k, np.full(hh.n, 400.0))  # nothing to commit: the plan is unchanged
            assert hh._flex(k) == pytest.approx(flex)
        else:
            assert (offer == np.floor(flex)).all()
    # a deferrable load commits at most its offer; the rest of the window still fits it
    k = last - 4
    hh.flex_remaining_wh = np.full(hh.n, 1500.0)
    flex = hh._flex_plan(k)[0]
    hh.defer(k, np.full(hh.n, 10_000.0))
    assert hh._flex(k) == pytest.approx(flex - hh.dr_offer_wh(k))
    assert (1500.0 - hh._flex(k) <= 4 * POWER_WH + 1e-9).all()
    with_energy = hh._flex_plan(k)[0] > 0
    assert with_energy.any()


def test_v2g_trigger_is_the_price_forecast_when_one_is_given() -> None:
    sc = quickstart_with(start="2016-06-15T18:00:00Z", duration_s=6 * 3600, market__ledger="reference",
                         agents__evs__v2g=True, agents__evs__count=8, agents__evs__v2g_wear_per_mwh=0.0)
    ev = _model(sc).evs
    k = next(k for k in range(sc.n_intervals) if (ev.sellable_wh(k) >= 1).any())
    can = ev.sellable_wh(k) >= 1
    high, low = int(ev.sell_price[can].max()), int(ev.sell_price[can].min()) - 1

    def sellers(**kw: object) -> set[int]:
        return {o.device_id for o in ev.orders(k, **kw) if o.side == Side.SELL}  # type: ignore[arg-type]

    # no forecast ("noise"): the latest clearing price triggers the sale, as before
    assert sellers(last_price=high) and not sellers(last_price=low)
    # a forecast of k replaces it: a low forecast keeps the EVs buying despite a high last price
    assert not sellers(last_price=high, estimate=float(low))
    assert sellers(last_price=low, estimate=float(high)) == sellers(last_price=high)
