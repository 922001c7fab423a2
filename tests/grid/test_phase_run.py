"""grid.phases: 3 -- element rows on their phases (runpp_3ph as referee), the per-phase DSO
check (curtails the violated phase's trades), phase-connection errors, a 3ph run end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandapower as pp
import pyarrow.parquet as pq
import pytest
from _helpers import dyn_lv_net

from twin.agents.dso import DSOAgent, Effect
from twin.grid.phase_spec import PHASE_ABC
from twin.grid.snapshot3ph import PhaseSnapshot
from twin.market.types import Trade
from twin.scenario import GridSpec, ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parents[2]
MW_PER_WH = 4 / 1e6  # 15-min interval


def _lv_net() -> object:
    """ext grid -- Dyn trafo -- 300 m of cable -- bus 2 with two PV systems and a house (zero-sequence data)."""
    net = dyn_lv_net()
    b2 = 2
    pp.create_load(net, bus=b2, p_mw=0.0, name="house")
    pp.create_sgen(net, bus=b2, p_mw=0.0, name="pv a")
    pp.create_sgen(net, bus=b2, p_mw=0.0, name="pv b")
    return net


PHASES = {"load": np.array([PHASE_ABC]), "sgen": np.array([0, 1]), "storage": np.zeros(0, np.int64)}


def test_rows_on_their_phases_match_runpp_3ph() -> None:
    net = _lv_net()
    snap = PhaseSnapshot(net, phase=PHASES)
    st = snap.solve(load_p_mw=np.array([0.009]), load_q_mvar=np.array([0.003]), sgen_p_mw=np.array([0.02, 0.005]),
                    sgen_q_mvar=np.zeros(2), storage_p_mw=np.zeros(0))
    ref = _lv_net()  # the same injections as pandapower's asymmetric elements
    pp.create_asymmetric_load(ref, bus=2, p_a_mw=0.003, p_b_mw=0.003, p_c_mw=0.003,
                              q_a_mvar=0.001, q_b_mvar=0.001, q_c_mvar=0.001)
    pp.create_asymmetric_sgen(ref, bus=2, p_a_mw=0.02, p_b_mw=0.005, p_c_mw=0.0)
    pp.runpp_3ph(ref, lightsim2grid=False, tolerance_mva=1e-10)
    want = ref.res_bus_3ph[["vm_a_pu", "vm_b_pu", "vm_c_pu"]].to_numpy()
    assert st.vm_abc_pu is not None and st.vuf_percent is not None
    np.testing.assert_allclose(st.vm_abc_pu, want, atol=1e-6)
    assert st.vm_abc_pu[2, 0] > st.vm_abc_pu[2, 1]  # phase a carries the big PV
    assert st.vuf_percent[2] > 0.5
    assert st.vm_max_pu == pytest.approx(float(np.nanmax(want)))
    p3 = ref.res_line_3ph[["p_a_from_mw", "p_b_from_mw", "p_c_from_mw"]].to_numpy()
    assert st.line_p_abc_from_mw is not None
    np.testing.assert_allclose(st.line_p_abc_from_mw, p3, atol=1e-9)
    np.testing.assert_allclose(st.line_p_from_mw, p3.sum(axis=1), atol=1e-9)
    np.testing.assert_allclose(st.line_q_from_mvar, ref.res_line_3ph[["q_a_from_mvar", "q_b_from_mvar",
                                                                      "q_c_from_mvar"]].to_numpy().sum(axis=1), atol=1e-9)


def _trade(tid: int, seller: int, wh: int) -> Trade:
    return Trade(trade_id=tid, interval=3, buy_order_id=tid, sell_order_id=tid, buyer_device=99,
                 seller_device=seller, cleared_wh=wh, energy_wh=wh, price_per_mwh=100)


def test_dso_curtails_the_violated_phase_first() -> None:
    import mesa

    net = _lv_net()
    grid = GridSpec(kind="ieee_eu_lv", phases=3, vm_max_pu=1.10, vuf_max_percent=2.0)
    dso = DSOAgent(mesa.Model(rng=np.random.default_rng(0)), net=net, grid=grid, element_phase=PHASES)

    def seller(device: int) -> list[Effect]:
        return [("sgen", device, -MW_PER_WH)] if device in (0, 1) else []

    # 40 kW on phase a, 10 kW on phase b; the phase-b seller asks the lower price
    trades = [_trade(1, 0, 10_000), _trade(2, 1, 2500)]
    res = dso.check(trades=trades,
                    element_p_mw={"load": np.array([0.002]), "sgen": np.array([0.04, 0.01]), "storage": np.zeros(0)},
                    element_q_mvar={"load": np.zeros(1), "sgen": np.zeros(2), "storage": np.zeros(0)},
                    seller_effects=seller, buyer_effects=lambda d: [],
                    limit_price=lambda device, side: 50 if device == 1 else 70)
    assert res.found.overvoltage > 0 or res.found.unbalance > 0
    assert res.found.hot_phase == 0
    assert not res.remaining.any
    cut = {c.trade_id: c for c in res.curtailments}
    assert 1 in cut and 2 not in cut  # the phase-a trade, although the phase-b one is cheaper
    assert cut[1].energy_wh < 10_000
    # the balanced engine sees the 50 kW spread over three phases: no violation at all
    flat = DSOAgent(mesa.Model(rng=np.random.default_rng(0)), net=_lv_net(),
                    grid=GridSpec(kind="ieee_eu_lv", vm_max_pu=1.10))
    res1 = flat.check(trades=trades,
                      element_p_mw={"load": np.array([0.002]), "sgen": np.array([0.04, 0.01]), "storage": np.zeros(0)},
                      element_q_mvar={"load": np.zeros(1), "sgen": np.zeros(2), "storage": np.zeros(0)},
                      seller_effects=seller, buyer_effects=lambda d: [], limit_price=lambda d, s: 0)
    assert not res1.found.any and res1.curtailed_wh == 0


def _errors(tmp_path: Path, text: str) -> list[tuple[str, str]]:
    base = (ROOT / "scenarios/regression/lv_unbalanced/scenario.yaml").read_text()
    p = tmp_path / "s.yaml"
    p.write_text(base + text)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(p)
    return exc.value.errors


def test_phase_connection_errors_name_their_field(tmp_path: Path) -> None:
    base = (ROOT / "scenarios/regression/lv_unbalanced/scenario.yaml").read_text()
    (tmp_path / "a.yaml").write_text(base.replace("kwp_max: 4.6", "kwp_max: 7.0")
                                     .replace("charger_kw: 3.7", "charger_kw: 11"))
    with pytest.raises(ScenarioError) as exc:
        load_scenario(tmp_path / "a.yaml")
    paths = [p for p, _ in exc.value.errors]
    assert "agents.households.pv.kwp_max" in paths and "agents.evs.charger_kw" in paths
    assert "single_phase_max_kva" in dict(exc.value.errors)["agents.evs.charger_kw"]
    (tmp_path / "b.yaml").write_text(base.replace("phases: 3", "phases: 1"))  # connections on a balanced grid
    with pytest.raises(ScenarioError) as exc:
        load_scenario(tmp_path / "b.yaml")
    assert [p for p, _ in exc.value.errors] == ["grid.phase_connection"]
    (tmp_path / "c.yaml").write_text(base.replace("kind: ieee_eu_lv", "kind: cigre_lv")
                                     .replace("pv: a", "pv: d"))
    with pytest.raises(ScenarioError) as exc:
        load_scenario(tmp_path / "c.yaml")
    paths = [p for p, _ in exc.value.errors]
    assert "grid.phase_connection.pv" in paths


def test_three_phase_run_curtails_and_records_phases(tmp_path: Path) -> None:
    from twin.run import run_scenario

    sc = load_scenario(ROOT / "scenarios/regression/lv_unbalanced/scenario.yaml")
    sc = sc.model_copy(update={"duration_s": 3 * 900})
    out = run_scenario(sc, out_dir=tmp_path / "run", progress=False)
    bus = pq.read_table(tmp_path / "run" / "bus.parquet").to_pandas()
    line = pq.read_table(tmp_path / "run" / "line.parquet").to_pandas()
    dso = pq.read_table(tmp_path / "run" / "dso.parquet").to_pandas()
    assert bus[["vm_a_pu", "vm_b_pu", "vm_c_pu", "vuf_percent"]].notna().any().all()
    assert line[["loading_a_percent", "loading_b_percent", "loading_c_percent"]].notna().any().all()
    assert (bus.vm_a_pu - bus.vm_b_pu).abs().max() > 0.01  # unbalanced
    assert dso.curtailed_wh.sum() > 0 and dso.vuf_max_percent.max() > 0
    assert out.kpis["max_vuf_percent"] > 1.0 and out.kpis["curtailed_kwh"] > 0
    assert dso.violations_found.sum() > 0  # found per phase (the balanced model sees none here)
    assert out.kpis["vm_phase_max_pu"] > out.kpis["vm_phase_min_pu"] + 0.03


def test_der_functions_per_phase_in_the_phase_snapshot() -> None:
    from twin.grid.controlled_pf import DerDevice
    from twin.grid.der_functions import DerFleet, DerFunctions

    funcs = [DerFunctions.category("B", s_rated_mva=0.025, p_rated_mw=0.025, path="pv a"),
             DerFunctions.category("B", s_rated_mva=0.01, p_rated_mw=0.01, path="pv b")]
    devices = [DerDevice("sgen", 0, funcs[0]), DerDevice("sgen", 1, funcs[1])]
    snap = PhaseSnapshot(_lv_net(), phase=PHASES, der_devices=devices)
    kw = {"load_p_mw": np.array([0.003]), "load_q_mvar": np.zeros(1), "sgen_p_mw": np.array([0.025, 0.004]),
          "sgen_q_mvar": np.zeros(2), "storage_p_mw": np.zeros(0)}
    st, ctl = snap.solve_controlled(**kw, tol_pu=1e-6)
    plain = PhaseSnapshot(_lv_net(), phase=PHASES).solve(**kw)
    assert ctl.converged and st.vm_abc_pu is not None and plain.vm_abc_pu is not None
    # the same flow as the plain snapshot at the solved set-points; each inverter answers its own phase
    again = PhaseSnapshot(_lv_net(), phase=PHASES).solve(**{**kw, "sgen_p_mw": ctl.p_mw, "sgen_q_mvar": ctl.q_mvar})
    assert again.vm_abc_pu is not None
    np.testing.assert_allclose(st.vm_abc_pu, again.vm_abc_pu, atol=1e-9)
    g_p, g_q = DerFleet.from_functions(funcs).targets(st.vm_abc_pu[2, :2][None], np.array([[0.025, 0.004]]))
    np.testing.assert_allclose(ctl.q_mvar, g_q[0], atol=1e-6 * 0.025)
    np.testing.assert_allclose(ctl.p_mw, g_p[0], atol=1e-6 * 0.025)
    assert ctl.q_mvar[0] < 0 and st.vm_abc_pu[2, 0] < plain.vm_abc_pu[2, 0]  # phase a absorbs and drops
    assert ctl.curtailed_mw > 0  # reactive priority (and volt-watt) hold P back on phase a


def test_der_functions_with_frequency_watt_load_on_three_phases(tmp_path: Path) -> None:
    base = (ROOT / "scenarios/regression/lv_unbalanced_voltvar/scenario.yaml").read_text()
    (tmp_path / "f.yaml").write_text(base.replace("volt_watt: {}}", "volt_watt: {}, freq_watt: {}}"))
    sc = load_scenario(tmp_path / "f.yaml")
    assert sc.grid.phases == 3 and sc.agents.households.pv.der_functions.freq_watt is not None


def test_per_phase_envelopes_bind_in_a_three_phase_run(tmp_path: Path) -> None:
    """dso.policy: envelopes on lv_unbalanced at noon: the per-phase envelopes hold PV back on
    phase a (nothing is curtailed afterwards) and every phase stays in band."""
    from twin.run import run_scenario
    from twin.scenario import scenario_from_dict

    data = load_scenario(ROOT / "scenarios/regression/lv_unbalanced/scenario.yaml").model_dump(mode="json")
    data.update(start="2016-06-15T12:00:00Z", duration_s=2 * 900, dso={"policy": "envelopes"})
    data["agents"]["households"]["forecast_error"] = 0.0  # the DSO's forecast is what the homes do
    sc = scenario_from_dict(data)
    out = run_scenario(sc, out_dir=tmp_path / "run", progress=False)
    bus = pq.read_table(tmp_path / "run" / "bus.parquet").to_pandas()
    assert out.kpis["limited_pv_kwh"] > 0 and out.kpis["curtailed_kwh"] == 0
    # kpis.json read back only the KPI columns (phases, PV held back): the same as from all
    from twin.kpis import KPI_READS, RunInputs, compute_kpis, read_tables

    every = compute_kpis(read_tables(tmp_path / "run"), inputs=RunInputs.of(sc), tokens=None)
    assert every == compute_kpis(read_tables(tmp_path / "run", columns=KPI_READS),
                                 inputs=RunInputs.of(sc), tokens=None)
    assert every["vm_phase_max_pu"] > every["vm_phase_min_pu"] and every["limited_pv_kwh"] > 0
    assert bus[["vm_a_pu", "vm_b_pu", "vm_c_pu"]].max().max() <= sc.grid.vm_max_pu
    assert bus.vuf_percent.max() <= sc.grid.vuf_max_percent
