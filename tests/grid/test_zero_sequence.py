"""grid.zero_sequence: a SimBench feeder (no zero-sequence data) solved per phase with stated
assumptions, against pandapower's runpp_3ph on the same assumed data; the scenario rules."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import numpy as np
import pytest
from _pf3ph_nets import add_phase_loads, runpp_3ph_voltages

from twin.grid import BatchPowerFlow3ph, Feeder3ph
from twin.grid.feeders import _simbench_net
from twin.grid.zero_sequence import ZeroSequenceSpec, fill_zero_sequence
from twin.scenario import ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parents[2]


CODE = "1-LV-semiurb4--0-sw"  # the quickstart's feeder: cached in the process (reading SimBench is slow)


def test_assumed_data_is_filled_only_where_missing() -> None:
    net = copy.deepcopy(_simbench_net(CODE))
    net.line.loc[net.line.index[0], "r0_ohm_per_km"] = 9.0  # data the net carries is kept
    fill_zero_sequence(net, ZeroSequenceSpec(r0_per_r1=3.0))
    r0 = net.line.r0_ohm_per_km.to_numpy()
    assert r0[0] == 9.0
    np.testing.assert_allclose(r0[1:], 3.0 * net.line.r_ohm_per_km.to_numpy()[1:])
    assert net.trafo.vector_group.tolist() == ["Dyn"]  # from "0.4 MVA 20/0.4 kV Dyn5 ASEA"
    assert (net.ext_grid.s_sc_max_mva == 100.0).all()


def test_simbench_feeder_per_phase_matches_runpp_3ph() -> None:
    net = copy.deepcopy(_simbench_net(CODE))
    for table in ("load", "sgen", "storage"):
        net[table] = net[table].iloc[0:0]
    net.sn_mva = 0.01  # runpp_3ph's fixed stopping rule: a small base makes it tight
    fill_zero_sequence(net, ZeroSequenceSpec())
    feeder = Feeder3ph.from_pandapower(net)
    rng = np.random.default_rng(1)
    p, q = np.zeros((1, feeder.n_bus, 3)), np.zeros((1, feeder.n_bus, 3))
    lv = np.flatnonzero(net.bus.vn_kv.to_numpy() < 1.0)
    p[0, lv] = rng.uniform(-0.003, 0.006, (lv.size, 3))  # unbalanced PV and load on every LV bus
    res = BatchPowerFlow3ph(feeder).solve(p_mw=p, q_mvar=q, tol=1e-12)
    assert res.converged.all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = runpp_3ph_voltages(add_phase_loads(net, p[0], q[0]))
    got = res.vm_pu[0] * np.exp(1j * np.radians(res.va_degree[0]))
    assert np.nanmax(np.abs(got - ref)) < 1e-6
    assert np.nanmax(np.ptp(res.vm_pu[0][lv], axis=1)) > 0.002  # phases do differ


def test_scenario_rules(tmp_path: Path) -> None:
    base = (ROOT / "scenarios/quickstart.yaml").read_text()
    three = base.replace("  max_loading_percent: 100\n",
                         "  max_loading_percent: 100\n  phases: 3\n"
                         "  phase_connection: {pv: abc, evs: abc, battery: abc}\n")
    (tmp_path / "a.yaml").write_text(three)
    with pytest.raises(ScenarioError) as exc:
        load_scenario(tmp_path / "a.yaml")
    assert "grid.zero_sequence" in dict(exc.value.errors)["grid.phases"]
    (tmp_path / "b.yaml").write_text(three.replace("  phases: 3\n", "  phases: 3\n  zero_sequence: {r0_per_r1: 4}\n"))
    sc = load_scenario(tmp_path / "b.yaml")
    assert sc.grid.zero_sequence is not None and sc.grid.zero_sequence.r0_per_r1 == 4
    (tmp_path / "c.yaml").write_text(base.replace("  max_loading_percent: 100\n",
                                                  "  max_loading_percent: 100\n  zero_sequence: {}\n"))
    with pytest.raises(ScenarioError) as exc:
        load_scenario(tmp_path / "c.yaml")
    assert [p for p, _ in exc.value.errors] == ["grid.zero_sequence"]
    (tmp_path / "d.yaml").write_text(three.replace("  phases: 3\n", "  phases: 3\n  zero_sequence: {x0_per_x1: -1}\n"))
    with pytest.raises(ScenarioError) as exc:
        load_scenario(tmp_path / "d.yaml")
    assert "grid.zero_sequence.x0_per_x1" in dict(exc.value.errors)
