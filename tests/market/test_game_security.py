"""DSO security check of the consortium generator game on a SimBench feeder (real pandapower,
real SimBench profiles; the pilot scenarios/pilots/wuhan_consortium.yaml)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandapower as pp
import pyarrow.parquet as pq
import pytest
import yaml

from twin.grid.pf import BatchPowerFlow
from twin.market import game_security as gs
from twin.market.game import GeneratorUnit, consortium_game, secure_game, shapley_values
from twin.run import run_scenario
from twin.scenario import ScenarioError, load_scenario, scenario_from_dict

PILOT = Path(__file__).resolve().parents[2] / "scenarios" / "pilots" / "wuhan_consortium.yaml"


@pytest.fixture(scope="module")
def pilot() -> dict[str, Any]:
    s = load_scenario(PILOT)
    g = s.game
    assert g is not None and g.grid is not None and g.buyer_bus is not None
    units = [GeneratorUnit(**u.model_dump(exclude={"bus"})) for u in g.units]
    res = consortium_game(units, demand_mwh=g.demand_mwh, period_h=g.period_h, valuation=g.valuation)
    feeder = gs.game_feeder(simbench_code=g.grid.simbench_code, start=s.start, period_h=g.period_h,
                            unit_bus=[(u.name, int(u.bus or 0)) for u in g.units], buyer_bus=g.buyer_bus)
    limits = gs.SecurityLimits(vm_min_pu=g.grid.vm_min_pu, vm_max_pu=g.grid.vm_max_pu,
                               max_loading_percent=g.grid.max_loading_percent)
    return {"scenario": s, "game": g, "result": res, "feeder": feeder, "limits": limits,
            "demand_mw": g.demand_mwh / g.period_h}


def _pandapower(feeder: gs.GameFeeder, load_p: np.ndarray, sgen_p: np.ndarray) -> Any:
    net = copy.deepcopy(feeder.net)
    net.load["p_mw"] = load_p
    net.sgen["p_mw"] = sgen_p
    pp.runpp(net, lightsim2grid=False, numba=False)
    return net


def test_background_is_the_simbench_hour(pilot: dict[str, Any]) -> None:
    f, s = pilot["feeder"], pilot["scenario"]
    # the buyer and the units are new rows that inject nothing in the background
    assert f.load_p_mw[f.buyer_load_row] == 0
    assert all(f.sgen_p_mw[r] == 0 for r in f.unit_sgen_row.values())
    assert f.net.load.type.iloc[f.buyer_load_row] == "game_buyer"
    # SimBench's own absolute profiles (simbench.get_absolute_values, cached): the mean of
    # the hour's four quarter-hours
    _, prof = gs._simbench(pilot["game"].grid.simbench_code)
    start = s.start
    step = ((start.timetuple().tm_yday - 1) * 24 + start.hour) * 4
    for element, got in (("load", f.load_p_mw), ("sgen", f.sgen_p_mw)):
        want = prof[(element, "p_mw")].iloc[step:step + 4].mean(axis=0).to_numpy()
        np.testing.assert_allclose(got[:want.size], want, rtol=1e-9, atol=1e-9)
    assert f.load_p_mw.sum() > 0 and f.sgen_p_mw.sum() > 0


def test_batch_agrees_with_pandapower_on_the_grand_coalition(pilot: dict[str, Any]) -> None:
    f, res = pilot["feeder"], pilot["result"]
    load_p, sgen_p = gs.coalition_injections(f, [res.grand], demand_mw=pilot["demand_mw"])
    batch = BatchPowerFlow(f.net).solve(load_p_mw=load_p, load_q_mvar=f.load_q_mvar, sgen_p_mw=sgen_p)
    net = _pandapower(f, load_p[0], sgen_p[0])
    assert batch.converged[0]
    np.testing.assert_allclose(batch.vm_pu[0], net.res_bus.vm_pu.to_numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(batch.line_loading_percent[0], net.res_line.loading_percent.to_numpy(),
                               rtol=0, atol=1e-4)
    # the check's summary of the grand coalition is that flow
    chk = gs.check_coalitions(f, res.coalitions, demand_mw=pilot["demand_mw"], period_h=1.0,
                              limits=pilot["limits"])[frozenset(res.grand.members)]
    assert chk.secure and chk.feasible_dispatch and chk.converged
    assert chk.vm_max_pu == pytest.approx(net.res_bus.vm_pu.max(), abs=1e-6)
    assert chk.max_line_loading_percent == pytest.approx(net.res_line.loading_percent.max(), abs=1e-4)
    assert chk.ext_grid_p_mw == pytest.approx(net.res_ext_grid.p_mw.sum(), abs=1e-4)


def test_overloaded_coalition_is_rejected_and_changes_the_split(pilot: dict[str, Any]) -> None:
    f, res, limits = pilot["feeder"], pilot["result"], pilot["limits"]
    checks = gs.check_coalitions(f, res.coalitions, demand_mw=pilot["demand_mw"], period_h=1.0,
                                 limits=limits)
    gu12 = frozenset({"GU1", "GU2"})
    # without GU3 at the buyer's bus, all 160 MW come through the buyer's single line
    bad = checks[gu12]
    assert bad.feasible_dispatch and not bad.secure and bad.overloaded_branches >= 1
    assert bad.max_line_loading_percent > limits.max_loading_percent
    load_p, sgen_p = gs.coalition_injections(f, [res.coalitions[gu12]], demand_mw=pilot["demand_mw"])
    net = _pandapower(f, load_p[0], sgen_p[0])  # pandapower sees the same overload
    worst = int(net.res_line.loading_percent.idxmax())
    assert net.res_line.loading_percent.max() > 100 and f"line {worst} loaded" in bad.reason
    rejected = [c for c, k in checks.items() if c and k.feasible_dispatch and not k.secure]
    assert rejected == [gu12]
    secured = secure_game(res, rejected=rejected)
    names = [u.name for u in res.units]
    values = {c: (0.0 if c == gu12 else o.value) for c, o in res.coalitions.items()}
    expected = shapley_values(values, names)
    assert secured.shapley == pytest.approx(expected)
    assert secured.value(gu12) == 0 and secured.market_value(gu12) == res.value(gu12) > 0
    assert sum(secured.shapley.values()) == pytest.approx(res.grand.value)
    # GU1 and GU2 lose the threat of leaving together; GU3 gains what they lose
    assert secured.shapley["GU3"] > res.shapley["GU3"]
    assert secured.shapley["GU1"] < res.shapley["GU1"] and secured.shapley["GU2"] < res.shapley["GU2"]
    # a tighter loading limit also rejects GU1+GU3 (its line loading is above it)
    gu13 = frozenset({"GU1", "GU3"})
    tight = gs.SecurityLimits(vm_min_pu=limits.vm_min_pu, vm_max_pu=limits.vm_max_pu,
                              max_loading_percent=checks[gu13].max_line_loading_percent - 1)
    tighter = gs.check_coalitions(f, res.coalitions, demand_mw=pilot["demand_mw"], period_h=1.0,
                                  limits=tight)
    assert not tighter[gu13].secure and tighter[frozenset({"GU2", "GU3"})].secure


def test_voltage_band_rejects(pilot: dict[str, Any]) -> None:
    f, res = pilot["feeder"], pilot["result"]
    checks = gs.check_coalitions(f, res.coalitions, demand_mw=pilot["demand_mw"], period_h=1.0,
                                 limits=gs.SecurityLimits())  # 0.95-1.05: the HV grid runs above
    ref = checks[frozenset()]
    assert not ref.feasible_dispatch and ref.vm_max_pu > 1.05 and "overvoltage" in ref.reason
    assert all(not k.secure for c, k in checks.items() if c and k.feasible_dispatch)


def _data() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(PILOT.read_text())
    return data


def test_bad_grid_fields_name_the_path(pilot: dict[str, Any]) -> None:
    d = _data()
    del d["game"]["units"][1]["bus"]
    del d["game"]["buyer_bus"]
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict(d)
    assert "game.units.1.bus" in str(err.value) and "game.buyer_bus" in str(err.value)
    d = _data()
    del d["game"]["grid"]
    with pytest.raises(ScenarioError, match=r"game\.units\.0\.bus: only used with game\.grid"):
        scenario_from_dict(d)
    d = _data()
    d["game"]["grid"]["vm_min_pu"] = 1.2
    with pytest.raises(ScenarioError, match=r"game\.grid: vm_min_pu"):
        scenario_from_dict(d)
    d = _data()
    d["game"]["units"][2]["bus"] = -1
    with pytest.raises(ScenarioError, match=r"game\.units\.2\.bus"):
        scenario_from_dict(d)
    # buses and grid codes are checked against the grid when it is loaded
    s = load_scenario(PILOT)
    with pytest.raises(ScenarioError) as err:
        gs.game_feeder(simbench_code=pilot["game"].grid.simbench_code, start=s.start, period_h=1.0,
                       unit_bus=[("GU1", 112), ("GU2", 99_999)], buyer_bus=88_888, source="x.yaml")
    assert [p for p, _ in err.value.errors] == ["game.units.1.bus", "game.buyer_bus"]
    assert "bus 99999 is not a bus of the grid" in str(err.value)
    with pytest.raises(ScenarioError, match=r"game\.grid\.simbench_code: cannot load"):
        gs.game_feeder(simbench_code="no-such-grid", start=s.start, period_h=1.0,
                       unit_bus=[("GU1", 1)], buyer_bus=1)


def test_pilot_runs_end_to_end(pilot: dict[str, Any], tmp_path: Path) -> None:
    out = run_scenario(pilot["scenario"], out_dir=tmp_path / "run", scenario_path=str(PILOT))
    sec = pq.read_table(tmp_path / "run" / "game_security.parquet").to_pylist()
    assert len(sec) == 2 ** 3  # 7 coalitions and the reference ""
    by = {r["coalition"]: r for r in sec}
    assert by["GU1+GU2"]["secure"] is False and by["GU1+GU2"]["value"] == 0
    assert by["GU1+GU2"]["market_value"] == pytest.approx(out.kpis["game_market_value_GU1+GU2"])
    assert by["GU1+GU2"]["market_value"] > 0
    k = out.kpis
    assert k["game_secure_coalitions"] == 3 and k["game_rejected_coalitions"] == 1
    assert k["game_value_GU1+GU2"] == 0
    assert sum(k[f"game_shapley_{n}"] for n in ("GU1", "GU2", "GU3")) == pytest.approx(k["game_grand_value"])
    assert k["tokens_conserved"] == 1.0
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    assert "game_security" in manifest["tables"]
    from twin.kpis.metrics import game_kpis

    tables = {n: pq.read_table(tmp_path / "run" / f"{n}.parquet")
              for n in ("game_units", "settlements", "trades", "market", "game_security")}
    c = game_kpis(tables)
    assert c["peak_import_kw"] == pytest.approx(k["game_grand_import_mw"] * 1000)
    assert c["voltage_violations"] == 0 and c["curtailed_kwh"] == 0
    assert c["energy_not_served_kwh"] == 0 and math.isnan(c["self_sufficiency"])


def test_rejected_grand_coalition_stops_the_run(pilot: dict[str, Any], tmp_path: Path) -> None:
    # a windy winter evening: the background alone lifts a bus above 1.10 pu, so the DSO
    # rejects every dispatch, the grand coalition's included
    d = _data()
    d["start"] = "2016-01-14T18:00:00Z"
    s = scenario_from_dict(d)
    with pytest.raises(gs.SecurityRejected, match=r"rejects the grand coalition's dispatch \(overvoltage"):
        run_scenario(s, out_dir=tmp_path / "run", scenario_path=None)
    sec = pq.read_table(tmp_path / "run" / "game_security.parquet").to_pylist()
    assert len(sec) == 8 and not any(r["secure"] for r in sec)
    assert all(r["value"] == 0 for r in sec)
    # an unknown bus found when the grid is loaded: a scenario error naming the field
    d = _data()
    d["game"]["units"][0]["bus"] = 123_456
    with pytest.raises(ScenarioError, match=r"game\.units\.0\.bus: bus 123456 is not a bus"):
        run_scenario(scenario_from_dict(d), out_dir=tmp_path / "bad", scenario_path=None)
