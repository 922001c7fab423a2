"""run_snapshot (batch power flow behind the twin) against pandapower runpp, the referee."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest

from twin.grid.feeders import build_feeder
from twin.grid.powerflow import GridState, run_snapshot, solver_for
from twin.scenario import load_scenario

QUICKSTART = Path(__file__).resolve().parents[2] / "scenarios" / "quickstart.yaml"


def _referee(net: Any) -> GridState:
    """The GridState pandapower runpp gives (tolerance 1e-10 MVA)."""
    ref = copy.deepcopy(net)
    pp.runpp(ref, lightsim2grid=False, numba=False, tolerance_mva=1e-10, max_iteration=50)
    col = lambda t, c, idx: ref[t][c].reindex(idx).to_numpy(dtype=float)  # noqa: E731
    bi = net.bus.index
    # pandapower gives 0 for the power of unsupplied buses, but NaN when ZIP loads sit there
    dead = np.isnan(col("res_bus", "vm_pu", bi))
    ref.res_bus.loc[bi[dead], ["p_mw", "q_mvar"]] = 0.0
    return GridState(
        converged=True, bus=bi.to_numpy(),
        vm_pu=col("res_bus", "vm_pu", bi), va_degree=col("res_bus", "va_degree", bi),
        bus_p_mw=col("res_bus", "p_mw", bi), bus_q_mvar=col("res_bus", "q_mvar", bi),
        line_loading_percent=col("res_line", "loading_percent", net.line.index),
        line_p_from_mw=col("res_line", "p_from_mw", net.line.index),
        line_q_from_mvar=col("res_line", "q_from_mvar", net.line.index),
        line_pl_mw=col("res_line", "pl_mw", net.line.index),
        trafo_loading_percent=col("res_trafo", "loading_percent", net.trafo.index),
    )


TOL = {"vm_pu": 1e-8, "va_degree": 1e-6, "bus_p_mw": 1e-8, "bus_q_mvar": 1e-8,
       "line_loading_percent": 1e-6, "line_p_from_mw": 1e-8, "line_q_from_mvar": 1e-8,
       "line_pl_mw": 1e-9, "trafo_loading_percent": 1e-6}


def assert_same_state(ours: GridState, ref: GridState, *, pp_nan_bus_power: bool = False) -> None:
    """Field by field; ``pp_nan_bus_power``: skip bus powers pandapower reports as NaN.

    (pandapower 3.x gives NaN ``res_bus.p_mw`` at some *supplied* buses with ZIP loads when
    the net has unsupplied buses; its ``res_load`` there is finite.)
    """
    assert ours.converged
    np.testing.assert_array_equal(ours.bus, ref.bus)
    for name, tol in TOL.items():
        a, b = getattr(ours, name), getattr(ref, name)
        assert a.shape == b.shape, name
        if pp_nan_bus_power and name.startswith("bus_"):
            a, b = a[np.isfinite(b)], b[np.isfinite(b)]
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=name)
        np.testing.assert_allclose(a, b, rtol=0, atol=tol, equal_nan=True, err_msg=name)


def test_quickstart_feeder_matches_runpp() -> None:
    feeder = build_feeder(load_scenario(QUICKSTART))
    net = feeder.net
    rng = np.random.default_rng(0)
    base = {el: net[el].p_mw.to_numpy(copy=True) for el in ("load", "sgen", "storage")}
    for _ in range(4):
        ours = run_snapshot(
            net,
            load_p_mw=base["load"] * rng.uniform(0.2, 2.0, len(base["load"])) + 0.002,
            load_q_mvar=rng.uniform(-0.001, 0.003, len(base["load"])),
            sgen_p_mw=rng.uniform(0.0, 0.015, len(base["sgen"])),
            storage_p_mw=rng.uniform(-0.01, 0.01, len(base["storage"])),
        )
        assert_same_state(ours, _referee(net))  # the injections were written into net


def test_topology_change_recompiles_and_islands_are_nan() -> None:
    net = pn.create_cigre_network_lv()
    pp.create_shunt(net, int(net.bus.index[5]), q_mvar=-0.01, p_mw=0.001)
    net.load["const_z_p_percent"] = 40.0
    net.load["const_i_q_percent"] = 30.0
    first = run_snapshot(net)
    assert_same_state(first, _referee(net))
    solver = solver_for(net)
    assert solver_for(net) is solver  # cached while nothing structural changes
    run_snapshot(net, load_p_mw=net.load.p_mw.to_numpy() * 1.1)
    assert solver_for(net) is solver
    net.line.loc[net.line.index[3], "in_service"] = False  # islands part of the feeder
    cut = run_snapshot(net)
    assert solver_for(net) is not solver
    assert np.isnan(cut.vm_pu).any()
    assert_same_state(cut, _referee(net), pp_nan_bus_power=True)
    net.switch.loc[net.switch.index[0], "closed"] = False
    assert_same_state(run_snapshot(net), _referee(net), pp_nan_bus_power=True)


def test_non_convergence_is_nan_never_stale() -> None:
    net = pn.case33bw()
    ok = run_snapshot(net)
    assert ok.converged
    bad = run_snapshot(net, load_p_mw=net.load.p_mw.to_numpy() * 60)
    assert not bad.converged and np.isnan(bad.vm_pu).all() and np.isnan(bad.line_loading_percent).all()
    with pytest.raises(ValueError, match="load_p_mw"):
        run_snapshot(net, load_p_mw=np.ones(3))
