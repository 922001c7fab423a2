"""Resilience studies: case sets, N-1 energy not served, islanded operation, the CLI."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pyarrow.parquet as pq
import pytest

from twin.cli import main
from twin.grid.pf import BatchPowerFlow
from twin.grid.resilience import Case, GridFormingStorage, Profiles, contingency_cases, run_study

QUICKSTART = Path(__file__).resolve().parents[2] / "scenarios" / "quickstart.yaml"


def _profiles(net: object, T: int, step_s: int = 900, scale: np.ndarray | None = None) -> Profiles:
    load, sgen, sto = net.load, net.sgen, net.storage  # type: ignore[attr-defined]
    f = np.ones(T) if scale is None else scale
    return Profiles(
        step_s=step_s,
        load_p_mw=np.outer(f, load.p_mw.to_numpy()), load_q_mvar=np.outer(f, load.q_mvar.to_numpy()),
        sgen_p_mw=np.tile(sgen.p_mw.to_numpy(), (T, 1)), storage_p_mw=np.zeros((T, len(sto))),
    )


def test_case_sets() -> None:
    net = pn.case33bw()
    n_on = int(net.line.in_service.sum())
    cases = contingency_cases(net)
    assert [c.kind for c in cases].count("n-1") == n_on and cases[0].kind == "base"
    a = contingency_cases(net, n_minus_1=False, k=2, n_k_samples=15, rng=np.random.default_rng(1))
    b = contingency_cases(net, n_minus_1=False, k=2, n_k_samples=15, rng=np.random.default_rng(1))
    assert [c.name for c in a] == [c.name for c in b]  # seeded
    nk = [c for c in a if c.kind == "n-k"]
    assert len(nk) == 15 and len({c.lines_out for c in nk}) == 15 and all(len(c.lines_out) == 2 for c in nk)
    up = contingency_cases(net, n_minus_1=False, upstream_windows=[(2, 5)])[-1]
    assert up.kind == "upstream_loss" and up.lines_out == (0,) and (up.start_step, up.end_step) == (2, 5)
    with pytest.raises(ValueError, match="rng"):
        contingency_cases(net, n_k_samples=3)


def test_n_minus_1_energy_not_served_and_voltages() -> None:
    net = pn.case33bw()
    T = 3
    prof = _profiles(net, T, scale=np.array([0.5, 1.0, 1.2]))
    cases = [Case("base", "base"), Case("line_7", "n-1", lines_out=(7,)),
             Case("line_20_window", "n-1", lines_out=(20,), start_step=1, end_step=2)]
    res = run_study(net, cases, prof, customers=np.arange(len(net.load)) % 3 + 1)
    tab = res.cases.to_pandas().set_index("case")
    assert tab.loc["base", "ens_kwh"] == 0.0 and tab.loc["base", "customers_interrupted"] == 0
    # line 7 out: the loads on de-energized buses are not served at any step
    mask = net.line.in_service.to_numpy().copy()
    mask[7] = False
    dead = ~BatchPowerFlow(net).solve(line_in_service=mask).energized[0]
    off = dead[net.bus.index.get_indexer(net.load.bus)]
    want = float((prof.load_p_mw[:, off]).sum() * 0.25 * 1000)
    assert tab.loc["line_7", "ens_kwh"] == pytest.approx(want, rel=1e-12)
    cust = (np.arange(len(net.load)) % 3 + 1)[off].sum()
    assert tab.loc["line_7", "customers_interrupted"] == cust
    assert tab.loc["line_7", "customer_minutes"] == pytest.approx(cust * 3 * 15)
    assert tab.loc["line_7", "saifi"] == pytest.approx(cust / (np.arange(len(net.load)) % 3 + 1).sum())
    # a windowed outage only counts inside its window
    assert 0 < tab.loc["line_20_window", "ens_kwh"] < tab.loc["line_7", "ens_kwh"]
    # base-case voltages match pandapower at the heaviest step
    ref = copy.deepcopy(net)
    ref.load["p_mw"] = prof.load_p_mw[2]
    ref.load["q_mvar"] = prof.load_q_mvar[2]
    pp.runpp(ref, lightsim2grid=False, numba=False, tolerance_mva=1e-10)
    assert tab.loc["base", "vm_min_pu"] == pytest.approx(ref.res_bus.vm_pu.min(), abs=1e-7)
    steps = res.steps.to_pandas()
    assert len(steps) == 3 * T and steps.converged.all()


def _island_net() -> tuple[object, int]:
    """ext_grid - trafo - feeder bus with a grid-forming battery, two load classes and PV."""
    net = pp.create_empty_network()
    hv, lv, b1 = (pp.create_bus(net, vn_kv=v) for v in (20.0, 0.4, 0.4))
    pp.create_ext_grid(net, hv)
    pp.create_transformer(net, hv, lv, std_type="0.4 MVA 20/0.4 kV")
    pp.create_line(net, lv, b1, length_km=0.1, std_type="NAYY 4x150 SE")
    pp.create_load(net, b1, p_mw=0.010, q_mvar=0.002)  # priority 0 (EV-like): shed first
    pp.create_load(net, b1, p_mw=0.020, q_mvar=0.004)  # priority 1
    pp.create_sgen(net, lv, p_mw=0.0)
    sto = pp.create_storage(net, lv, p_mw=0.0, max_e_mwh=0.05)
    return net, sto


def test_islanded_operation_soc_shedding_collapse_and_reconnection() -> None:
    net, sto = _island_net()
    T = 8
    prof = _profiles(net, T, step_s=3600)
    gf = [GridFormingStorage(index=sto, energy_mwh=0.05, power_mw=0.025, soc_initial=1.0, soc_min=0.0,
                             efficiency=1.0)]
    cases = [Case("base", "base"), Case("blackout", "upstream_loss", trafos_out=(0,), start_step=1, end_step=6)]
    res = run_study(net, cases, prof, grid_forming=gf, priority=[0, 1], customers=[1, 1])
    st = res.steps.to_pandas()
    bo = st[st.case == "blackout"].reset_index(drop=True)
    assert not bo.islanded[0] and bo.unserved_mw[0] == 0.0
    # 30 kW of load > 25 kW inverter: the priority-0 load is shed, the battery carries 20 kW
    assert bo.shed_class[1] == 1 and bo.unserved_mw[1] == pytest.approx(0.010)
    assert 0.020 < bo.gf_p_mw[1] < 0.0202  # the load plus line losses
    # state of charge falls by the energy delivered each hour (50 kWh battery, 1 h steps)
    assert bo.soc[1] == pytest.approx(1.0 - bo.gf_p_mw[1] / 0.05)
    assert bo.soc[2] == pytest.approx(bo.soc[1] - bo.gf_p_mw[2] / 0.05)
    # after ~2.5 h the energy is gone: the island collapses, every load is unserved
    collapsed = bo.index[bo.island_collapsed].tolist()
    assert collapsed and collapsed[0] == 3 and bo.unserved_mw[3] == pytest.approx(0.030)
    # the grid returns at step 6: everything is served again
    assert bo.unserved_mw[6] == 0.0 and not bo.islanded[6]
    cs = res.cases.to_pandas().set_index("case")
    assert cs.loc["blackout", "island_survival_min"] == pytest.approx(2 * 60)
    assert not cs.loc["blackout", "island_survived"]
    assert cs.loc["blackout", "ens_kwh"] == pytest.approx(st[st.case == "blackout"].unserved_mw.sum() * 1000)
    assert cs.loc["base", "ens_kwh"] == 0.0 and np.isnan(cs.loc["base", "island_survival_min"])


def test_pv_surplus_in_island_is_curtailed() -> None:
    net, sto = _island_net()
    net.sgen["p_mw"] = 0.2  # far more PV than the battery can absorb
    prof = _profiles(net, 2, step_s=900)
    gf = [GridFormingStorage(index=sto, energy_mwh=0.05, power_mw=0.025, soc_initial=0.5, soc_min=0.0)]
    res = run_study(net, [Case("bo", "upstream_loss", trafos_out=(0,))], prof, grid_forming=gf, priority=[0, 1])
    st = res.steps.to_pandas()
    assert st.islanded.all() and not st.island_collapsed.any()
    # PV off, then the 25 kW battery carries the 20 kW priority-1 load; the other is shed
    assert (st.gf_p_mw > 0.020).all() and np.allclose(st.unserved_mw, 0.010)


def test_cli_writes_tables_and_kpis(tmp_path: Path) -> None:
    import yaml

    data = yaml.safe_load(QUICKSTART.read_text())
    data.update(name="res_test", duration_s=4 * 3600)
    data["grid"] = {"kind": "case33bw"}
    data["agents"]["households"].update(count=10, profiles="synthetic")
    data["agents"]["evs"]["count"] = 3
    data["market"]["ledger"] = "reference"
    data["resilience"] = {"n_minus_k_samples": 4,
                          "upstream_outages": [{"start_s": 3600, "duration_s": 3600}]}
    scen = tmp_path / "res.yaml"
    scen.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    assert main(["resilience", str(scen), "--out", str(out), "--no-progress"]) == 0
    kpis = json.loads((out / "kpis.json").read_text())
    cases = pq.read_table(out / "cases.parquet").to_pandas()
    steps = pq.read_table(out / "steps.parquet")
    assert kpis["n1_cases"] == 32 and kpis["nk_cases"] == 4 and kpis["upstream_cases"] == 1
    assert len(cases) == 1 + 32 + 4 + 1 and steps.num_rows == len(cases) * 16
    assert kpis["upstream_ens_kwh_max"] > 0
    data["resilience"]["upstream_outages"] = [{"start_s": 99999, "duration_s": 60}]
    scen.write_text(yaml.safe_dump(data))
    assert main(["resilience", str(scen), "--out", str(out)]) == 2
