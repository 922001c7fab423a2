"""TSO demand response, VPP Shapley split, SimPy EV trips, scenario errors."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import numpy as np
import pytest

from twin.agents.model import FeederModel
from twin.agents.tso import TSOAgent
from twin.events import ev_trips
from twin.grid.feeders import build_feeder
from twin.market.units import MICRO
from twin.scenario import EVSpec, ScenarioError, TSOSpec, scenario_from_dict

from ._market import run_day
from .test_dso import _Model
from .test_strategies import small


def test_tso_fires_only_beyond_threshold() -> None:
    tso = TSOAgent(_Model().model, spec=TSOSpec(gap_threshold_kw=100, imbalance_gain=0.5),
                   interval_s=900, retail=300 * MICRO, dr_price=400 * MICRO)
    below = tso.assess(3, forecast_gap_wh=100_000 * 0.25 - 1)  # 99.99 kW average
    assert below.event is None and below.imbalance_price_per_mwh == 300 * MICRO
    above = tso.assess(3, forecast_gap_wh=150_000 * 0.25)  # 150 kW
    assert above.event is not None and above.event.requested_wh == 50_000 * 0.25
    assert above.imbalance_price_per_mwh == round(300 * MICRO * 1.25)
    off = TSOAgent(_Model().model, spec=TSOSpec(), interval_s=900, retail=1, dr_price=1)
    assert off.assess(0, forecast_gap_wh=1e12).event is None


def test_upstream_loss_signal() -> None:
    tso = TSOAgent(_Model().model, spec=TSOSpec(upstream_loss_s=1800, upstream_restore_s=3600),
                   interval_s=900, retail=1, dr_price=1)
    assert [tso.upstream_available(k) for k in range(6)] == [True, True, False, False, True, True]


def test_demand_response_in_the_model() -> None:
    s = small(tso={"gap_threshold_kw": 5})
    model = FeederModel(scenario=s, feeder=build_feeder(s), rng=np.random.default_rng(s.seed))
    outs = run_day(model, s.n_intervals)
    calls = [c for o in outs for c in o.dr_calls]  # sent to the market as mosaik attributes
    ev_rows = [r for o in outs for r in o.event_rows]
    dr = [r for r in ev_rows if r["kind"] == "dr_call"]
    assert dr and len(dr) == len(calls)
    assert {r["interval"] for r in dr} == {c.interval for c in calls}
    assert all(sum(c.offers.values()) <= c.requested_wh for c in calls)
    responses = [r for r in ev_rows if r["kind"] == "dr_response"]
    assert len(responses) == len(dr) and all(r["value"] >= 0 for r in responses)
    assert any(r["kind"] == "ev_arrival" for r in ev_rows)
    # EVs still leave with their need met (DR only trims what the departure does not force)
    ev = model.evs
    for o in outs[:-1]:
        k = o.interval
        for r in o.agent_rows:
            if r["kind"] == "ev" and r["plugged"] and ev.departure_k[int(r["agent"][3:]), k] == k + 1:
                assert r["remaining_need_wh"] <= 1.0
    # no DR when the threshold is never crossed
    s2 = small(tso={"gap_threshold_kw": 1e6})
    m2 = FeederModel(scenario=s2, feeder=build_feeder(s2), rng=np.random.default_rng(s2.seed))
    assert not [r for o in run_day(m2, 8) for r in o.event_rows if r["kind"] == "dr_call"]


def test_vpp_bids_as_one_and_splits_by_shapley() -> None:
    s = small(vpp={"members": 6})
    model = FeederModel(scenario=s, feeder=build_feeder(s), rng=np.random.default_rng(s.seed))
    vpp = model.vpp
    assert vpp is not None and vpp.members.size == 6
    members = {int(model.households.device_id[i]) for i in vpp.members}
    assert {d.owner for d in model.devices if d.device_id in members} == {vpp.account}
    outs = run_day(model, s.n_intervals)
    for o in outs:  # one price per side for all members
        for side in (0, 1):
            ps = {x.price_per_mwh for x in o.orders if x.device_id in members and x.side == side}
            assert len(ps) <= 1
    rows = outs[-1].vpp_rows
    assert len(rows) == 6 and all(r["device_id"] in members for r in rows)
    grand = vpp.value(np.arange(6))
    assert sum(r["shapley_value"] for r in rows) == pytest.approx(grand)
    assert sum(r["payout"] for r in rows) == round(grand * MICRO)
    assert grand >= sum(r["standalone_value"] for r in rows) - 1e-9  # netting never hurts
    assert all(r["half_width"] == 0 for r in rows)  # exact up to exact_max


def test_vpp_sampled_beyond_exact_max() -> None:
    s = small(vpp={"members": 8, "exact_max": 4, "n_permutations": 50})
    model = FeederModel(scenario=s, feeder=build_feeder(s), rng=np.random.default_rng(s.seed))
    outs = run_day(model, s.n_intervals)
    rows = outs[-1].vpp_rows
    assert len(rows) == 8 and all(r["half_width"] > 0 for r in rows)
    assert sum(r["payout"] for r in rows) == round(model.vpp.value(np.arange(8)) * MICRO)  # type: ignore[union-attr]


def test_ev_trips_are_seeded_and_consistent() -> None:
    spec = EVSpec()
    start = datetime(2016, 6, 15, tzinfo=UTC)
    a = ev_trips(np.random.default_rng(4), spec=spec, n_evs=20, start=start, duration_s=2 * 86_400)
    b = ev_trips(np.random.default_rng(4), spec=spec, n_evs=20, start=start, duration_s=2 * 86_400)
    assert a == b
    sessions, events = a
    assert events == sorted(events, key=lambda e: e.time_s)
    for e in range(20):
        mine = [x for x in sessions if x.ev == e]
        assert mine
        for x in mine:
            assert 3600 - 1e-6 <= x.departure_s - x.arrival_s <= 23 * 3600 + 1e-6
            assert 1000 <= x.energy_need_wh <= 0.85 * spec.battery_kwh * 1000
        for x, y in itertools.pairwise(mine):
            assert y.arrival_s >= x.departure_s + 3600 - 1e-6  # away at least an hour


@pytest.mark.parametrize(("change", "path"), [
    ({"agents": {"community_storage": {"capacity_kwh": -5}}}, "agents.community_storage.capacity_kwh"),
    ({"agents": {"households": {"battery": {"soc_min": 0.9, "soc_max": 0.2}}}}, "agents.households.battery"),
    ({"agents": {"community_storage": {"efficiency": 1.2}}}, "agents.community_storage.efficiency"),
    ({"agents": {"strategy": "genius"}}, "agents.strategy"),
    ({"agents": {"evs": {"strategy": "clever"}}}, "agents.evs.strategy"),
    ({"agents": {"households": {"profiles": "my_csv"}}}, "agents.households.profiles"),
    ({"agents": {"tso": {"gap_threshold_kw": -1}}}, "agents.tso.gap_threshold_kw"),
    ({"agents": {"vpp": {"members": -1}}}, "agents.vpp.members"),
    ({"game": {"demand_mwh": 10, "units": [{"name": "A", "a": 0.1, "b": 1, "p_min_mw": 5, "p_max_mw": 1},
                                           {"name": "A", "a": -1, "b": 1, "p_min_mw": 0, "p_max_mw": 1}]}},
     "game.units.0"),
])
def test_bad_agent_parameters_are_scenario_errors(change: dict[str, object], path: str) -> None:
    with pytest.raises(ScenarioError) as exc:
        scenario_from_dict({"name": "bad", **change})
    assert any(p.startswith(path) for p, _ in exc.value.errors), exc.value.errors


def test_all_errors_at_once() -> None:
    with pytest.raises(ScenarioError) as exc:
        scenario_from_dict({"name": "bad", "agents": {"strategy": "x", "evs": {"charger_kw": 0},
                                                      "community_storage": {"soc_min": 0.9, "soc_max": 0.1}}})
    paths = [p for p, _ in exc.value.errors]
    assert len(paths) == 3, paths
