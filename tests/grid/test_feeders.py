"""Feeder builders, profile slicing and the snapshot power-flow adapter."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandapower as pp
import pytest

from tests._quickstart import QUICKSTART, quickstart_with
from twin.grid.feeders import Feeder, build_feeder
from twin.grid.powerflow import apply_injections, run_snapshot
from twin.grid.profiles import (
    shared_window_average,
    synthetic_household_load_p_mw,
    synthetic_pv_pu,
    window_average,
)
from twin.scenario import Scenario, load_scenario

_scenario = quickstart_with


@pytest.fixture(scope="module")
def quickstart() -> tuple[Scenario, Feeder]:
    s = load_scenario(QUICKSTART)
    return s, build_feeder(s)


def test_quickstart_element_map(quickstart: tuple[Scenario, Feeder]) -> None:
    s, f = quickstart
    net = f.net
    hh = s.agents.households
    assert f.n_households == hh.count and f.n_evs == s.agents.evs.count and f.n_storage == 1
    assert f.profile_source == "simbench"
    assert "profiles" not in net
    # rows are valid, distinct positional rows; buses exist
    rows = np.concatenate([f.household_load_row, f.ev_load_row, f.background_load_row])
    assert sorted(rows.tolist()) == list(range(len(net.load)))
    assert set(f.household_bus.tolist()) <= set(net.bus.index.tolist())
    assert np.array_equal(net.load.bus.to_numpy()[f.household_load_row], f.household_bus)
    # 40 households > 32 residential SimBench loads: every H0 load is a household, 8 extra
    residential = net.load.profile.astype(str).str.startswith("H").to_numpy()
    assert residential[f.household_load_row].all()
    assert (f.household_load_row >= 41).sum() == hh.count - 32
    # PV: share of households, kWp in range, one sgen each at the household bus
    has_pv = f.household_sgen_row >= 0
    assert has_pv.sum() == round(hh.pv.share * hh.count)
    kwp = f.household_pv_kwp[has_pv]
    assert ((kwp >= hh.pv.kwp_min) & (kwp <= hh.pv.kwp_max)).all()
    assert (f.household_pv_kwp[~has_pv] == 0).all()
    sg = net.sgen.iloc[f.household_sgen_row[has_pv]]
    assert (sg.bus.to_numpy() == f.household_bus[has_pv]).all()
    assert np.allclose(sg.sn_mva.to_numpy() * 1000, kwp)
    # home batteries only behind PV meters
    has_bat = f.household_storage_row >= 0
    assert has_bat.sum() == round(hh.battery.share * has_pv.sum())
    assert not (has_bat & ~has_pv).any()
    assert (net.storage.iloc[f.household_storage_row[has_bat]].type == "home_battery").all()
    assert (net.storage.iloc[f.storage_row].type == "community_battery").all()
    # EVs: load rows of type "ev" at the owner's bus
    assert (net.load.iloc[f.ev_load_row].type == "ev").all()
    assert np.array_equal(f.ev_bus, f.household_bus[f.ev_household])
    # profiles: interval averages over the window, physical ranges
    shape = (f.n_households, s.n_intervals)
    assert f.household_load_p_mw.shape == shape and f.household_pv_pu.shape == shape
    assert (f.household_load_p_mw >= 0).all()
    assert (f.household_pv_pu >= 0).all() and (f.household_pv_pu <= 1).all()
    assert f.household_pv_pu[has_pv].max() > 0.2  # a June day
    assert (f.household_pv_pu[~has_pv] == 0).all()
    daily_kwh = f.household_load_p_mw.sum(axis=1) * 1000 * s.market.interval_s / 3600
    assert 1 < daily_kwh.min() and daily_kwh.max() < 30
    assert f.background_load_p_mw.shape == (len(f.background_load_row), s.n_intervals)
    with pytest.raises(ValueError):
        f.household_load_p_mw[0, 0] = 1.0  # read-only


def test_same_seed_same_feeder_other_seed_differs(quickstart: tuple[Scenario, Feeder]) -> None:
    s, f = quickstart
    g = build_feeder(s)
    for name in ("household_load_row", "household_pv_kwp", "household_storage_row", "ev_household",
                 "storage_bus", "household_load_p_mw", "household_pv_pu"):
        assert np.array_equal(getattr(f, name), getattr(g, name)), name
    h = build_feeder(_scenario(seed=7))
    assert not np.array_equal(f.household_pv_kwp, h.household_pv_kwp)


def test_fewer_households_reuse_residential_loads() -> None:
    s = _scenario(agents__households__count=10)
    f = build_feeder(s)
    net = f.net
    assert f.n_households == 10
    assert (f.household_load_row < 41).all()  # existing SimBench rows
    assert net.load.profile.astype(str).iloc[f.household_load_row].str.startswith("H").all()
    assert len(f.background_load_row) == 41 - 10


def test_synthetic_profiles_on_simbench() -> None:
    f = build_feeder(_scenario(agents__households__profiles="synthetic"))
    assert f.profile_source == "synthetic"
    assert (f.household_load_p_mw > 0).all()


@pytest.mark.parametrize("kind", ["cigre_lv", "case33bw"])
def test_builtin_feeders_build_and_solve(kind: str) -> None:
    s = _scenario(grid__kind=kind)
    f = build_feeder(s)
    assert f.profile_source == "synthetic"
    assert f.n_households == s.agents.households.count
    assert len(f.background_load_row) > 0
    state = run_snapshot(
        f.net,
        load_p_mw=np.where(np.isin(np.arange(f.n_load), f.background_load_row), f.net.load.p_mw, 0.001),
        sgen_p_mw=np.zeros(f.n_sgen),
        storage_p_mw=np.zeros(f.n_storage_rows),
    )
    assert state.converged
    assert 0.85 < state.vm_min_pu <= state.vm_max_pu < 1.1


def test_window_average_is_exact() -> None:
    values = np.arange(8, dtype=float)[None, :]  # 8 steps of 900 s, periodic
    hourly = window_average(values, offset_s=0, duration_s=7200, interval_s=3600)
    assert np.allclose(hourly, [[1.5, 5.5]])
    five_min = window_average(values, offset_s=900, duration_s=1800, interval_s=300)
    assert np.allclose(five_min, [[1, 1, 1, 2, 2, 2]])
    wrapped = window_average(values, offset_s=6 * 900, duration_s=4 * 900, interval_s=900)
    assert np.allclose(wrapped, [[6, 7, 0, 1]])
    shifted = window_average(values, offset_s=450, duration_s=900, interval_s=900)
    assert np.allclose(shifted, [[0.5]])


def test_shared_profiles_same_values_as_per_row_copies() -> None:
    """Profiles averaged once per distinct SimBench column and indexed per household give
    bit for bit what a full-year copy per household gave (the old path)."""
    from twin.grid.feeders import _simbench_net

    lp = _simbench_net("1-LV-semiurb4--0-sw").profiles["load"]
    cols = [c for c in lp.columns if str(c).endswith("_pload")][:4]
    rng = np.random.default_rng(3)
    picks = [cols[int(i)] for i in rng.integers(len(cols), size=300)] + [None]
    window = {"offset_s": 3 * 86_400 + 450, "duration_s": 2 * 86_400, "interval_s": 300}
    old = window_average(
        np.stack([lp[c].to_numpy(float) if c else np.full(len(lp), 1.0) for c in picks]), **window
    )
    new = shared_window_average(lp, picks, **window)
    assert new.shape == (301, 576)
    assert np.array_equal(new, old)
    assert np.array_equal(new[-1], np.ones(576))  # a missing column: constant 1
    assert shared_window_average(lp, [], **window).shape == (0, 576)


def test_synthetic_generators_are_seeded_and_physical() -> None:
    start = datetime(2016, 6, 15, tzinfo=UTC)
    kw = {"n": 5, "start": start, "duration_s": 86_400, "interval_s": 900}
    a = synthetic_household_load_p_mw(np.random.default_rng(3), annual_kwh=3500, **kw)
    b = synthetic_household_load_p_mw(np.random.default_rng(3), annual_kwh=3500, **kw)
    assert np.array_equal(a[0], b[0])
    daily_kwh = a[0].sum(axis=1) * 1000 / 4
    assert (daily_kwh > 3).all() and (daily_kwh < 25).all()
    pv = synthetic_pv_pu(np.random.default_rng(3), **kw)
    assert (pv >= 0).all() and (pv <= 1).all()
    assert pv[:, :12].max() == 0 and pv[:, 40:56].min() > 0  # night / midday


def test_run_snapshot_and_non_convergence() -> None:
    net = pp.create_empty_network()
    b0, b1 = pp.create_bus(net, vn_kv=0.4), pp.create_bus(net, vn_kv=0.4)
    pp.create_ext_grid(net, bus=b0, vm_pu=1.0)
    pp.create_line(net, from_bus=b0, to_bus=b1, length_km=0.2, std_type="NAYY 4x50 SE")
    pp.create_load(net, bus=b1, p_mw=0.01)
    state = run_snapshot(net, load_p_mw=np.array([0.02]))
    assert state.converged and state.vm_pu.shape == (2,) and state.line_loading_percent.shape == (1,)
    assert state.vm_pu[1] < state.vm_pu[0] and state.line_pl_mw[0] > 0
    bad = run_snapshot(net, load_p_mw=np.array([50.0]))
    assert not bad.converged and np.isnan(bad.vm_pu).all()
    with pytest.raises(ValueError, match="load_p_mw"):
        apply_injections(net, load_p_mw=np.array([0.01, 0.02]))


def test_simbench_code_list_is_simbench_s():
    import simbench as sb

    from twin.simbench_codes import SIMBENCH_CODES

    assert set(sb.collect_all_simbench_codes()) == SIMBENCH_CODES
