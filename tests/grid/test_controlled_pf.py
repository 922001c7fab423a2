"""Controlled power flow: the fixed point agrees with pandapower at the same set-points."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandapower as pp
import pytest
from _lvnets import lv_feeder

from twin.grid.controlled_pf import ControlledPowerFlow, DerDevice
from twin.grid.der_functions import ConstantPowerFactor, DerFunctions, VoltVar, VoltWatt
from twin.grid.pf import BatchPowerFlow


def _controlled(net: Any, functions: DerFunctions) -> ControlledPowerFlow:
    return ControlledPowerFlow(BatchPowerFlow(net), devices=[DerDevice("sgen", i, functions) for i in range(len(net.sgen))])


@pytest.mark.parametrize("kind", ["volt_var", "volt_var_watt"])
def test_fixed_point_matches_pandapower_and_the_curves(kind: str) -> None:
    net = lv_feeder()
    f = DerFunctions(s_rated_mva=0.033, p_rated_mw=0.03, reactive=VoltVar.category("B"),
                     volt_watt=VoltWatt.category("B") if kind == "volt_var_watt" else None)
    cpf = _controlled(net, f)
    rng = np.random.default_rng(1)
    avail = rng.uniform(0.02, 0.03, (4, len(net.sgen)))
    res = cpf.solve(der_p_avail_mw=avail, tol_pu=1e-5)
    assert res.converged.all() and res.outer_iterations.max() <= 6
    plain = cpf.solver.solve(sgen_p_mw=avail)
    assert res.pf.vm_pu.max() < plain.vm_pu.max() - 0.005  # the controls pull the voltage down
    for b in range(avail.shape[0]):
        net.sgen["p_mw"] = res.sgen_p_mw[b]
        net.sgen["q_mvar"] = res.sgen_q_mvar[b]
        pp.runpp(net, tolerance_mva=1e-10, lightsim2grid=False, numba=False)
        np.testing.assert_allclose(res.pf.vm_pu[b], net.res_bus.vm_pu.to_numpy(), atol=1e-8)
        vm = net.res_bus.vm_pu.to_numpy()[net.sgen.bus.to_numpy()]
        p, q = cpf.fleet.targets(vm[None, :], avail[b:b + 1])
        np.testing.assert_allclose(res.der_q_mvar[b], q[0], atol=1e-5 * 0.033)
        np.testing.assert_allclose(res.der_p_mw[b], p[0], atol=1e-5 * 0.033)
    if kind == "volt_var_watt":
        assert res.curtailed_mw(avail).sum() > 0


def test_non_convergence_reported_and_storage_sign() -> None:
    net = lv_feeder(4)
    pp.create_storage(net, 4, p_mw=0.0, max_e_mwh=0.02)
    f = DerFunctions(s_rated_mva=0.033, p_rated_mw=0.03, reactive=VoltVar.category("B"))
    bat = DerFunctions(s_rated_mva=0.01, reactive=ConstantPowerFactor(pf=0.9, excitation="absorbing"),
                       p_min_pu=-1.0, q_max_pu=1.0)
    devices = [DerDevice("sgen", i, f) for i in range(4)] + [DerDevice("storage", 0, bat)]
    cpf = ControlledPowerFlow(BatchPowerFlow(net), devices=devices)
    avail = np.array([0.03, 0.03, 0.03, 0.03, -0.008])  # the battery charges 8 kW
    one = cpf.solve(der_p_avail_mw=avail, max_outer=1)
    assert not one.controls_converged[0] and one.pf.converged[0]
    res = cpf.solve(der_p_avail_mw=avail)
    assert res.converged[0]
    # storage rows are consumption-positive: charging 8 kW, absorbing Q at PF 0.9
    assert res.storage_p_mw[0, 0] == pytest.approx(0.008)
    assert res.storage_q_mvar[0, 0] == pytest.approx(0.008 * np.tan(np.arccos(0.9)))


def test_response_time_lag() -> None:
    net = lv_feeder(4)
    f = DerFunctions(s_rated_mva=0.033, p_rated_mw=0.03, reactive=VoltVar.category("A"))  # 10 s
    cpf = _controlled(net, f)
    avail = np.full(4, 0.03)
    steady = cpf.solve(der_p_avail_mw=avail)
    lag = cpf.solve(der_p_avail_mw=avail, previous=(avail, np.zeros(4)), dt_s=10.0)
    assert lag.converged[0]
    # after one response time Q has covered 90 % of the way to its value at the new voltage
    vm = lag.der_vm_pu
    _, q_target = cpf.fleet.targets(vm, avail[None, :])
    np.testing.assert_allclose(lag.der_q_mvar, 0.9 * q_target, atol=1e-6)
    assert np.all(np.abs(lag.der_q_mvar) < np.abs(steady.der_q_mvar) + 1e-9)


def test_numba_device_kernels_match_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    import twin.grid.controlled_pf as cmod

    net = lv_feeder(6)
    f = DerFunctions(s_rated_mva=1.1, p_rated_mw=1.0, reactive=VoltVar.category("B"), volt_watt=VoltWatt.category("B"))
    cpf = _controlled(net, f)
    rng = np.random.default_rng(3)
    on = rng.random((64, 6)) < 0.7
    size = rng.uniform(0.02, 0.04, (64, 6))
    avail = size * rng.uniform(0.5, 1.0, (64, 6))
    runs = []
    monkeypatch.setattr(cmod, "_FUSED_LANES", 0)  # the batch path's device work
    for work in (10**9, 1):  # numpy, then numba
        monkeypatch.setattr(cmod, "_NUMBA_DEVICE_WORK", work)
        runs.append(cpf.solve(der_p_avail_mw=avail, der_in_service=on, der_scale=size, tol_pu=1e-5))
    assert all(r.converged.all() for r in runs)
    np.testing.assert_allclose(runs[1].der_q_mvar, runs[0].der_q_mvar, atol=1e-5 * 0.044)
    np.testing.assert_allclose(runs[1].pf.vm_pu, runs[0].pf.vm_pu, atol=1e-6)
    assert np.all(runs[1].der_q_mvar[~on] == 0.0)


def test_fused_lanes_equal_the_batch_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """A few lanes in one numba call (power flows warm-started inside the outer loop) give the
    batch path's set-points and flows within the tolerances; sgen, storage and V2G load rows."""
    import twin.grid.controlled_pf as cmod

    net = lv_feeder(5)
    pp.create_storage(net, 3, p_mw=0.0, max_e_mwh=0.02)
    f = DerFunctions(s_rated_mva=1.1, p_rated_mw=1.0, reactive=VoltVar.category("B"), volt_watt=VoltWatt.category("B"))
    bat = DerFunctions(s_rated_mva=0.01, reactive=VoltVar.category("B"), p_min_pu=-1.0, q_max_pu=1.0)
    devices = ([DerDevice("sgen", i, f) for i in range(5)] + [DerDevice("storage", 0, bat)]
               + [DerDevice("load", 2, bat)])
    cpf = ControlledPowerFlow(BatchPowerFlow(net, kernel="numba"), devices=devices)
    rng = np.random.default_rng(5)
    size = np.concatenate([rng.uniform(0.02, 0.04, (3, 5)), np.ones((3, 2))], axis=1)
    avail = size * np.concatenate([rng.uniform(0.6, 1.0, (3, 5)), np.zeros((3, 2))], axis=1)
    avail[:, 5:] = [-0.008, 0.005]  # the battery charges, the V2G charger discharges
    on = rng.random((3, 7)) < 0.8
    runs = {}
    pooled: list[int] = []
    pool = cmod._block_pool
    monkeypatch.setattr(cmod, "_block_pool", lambda: pooled.append(1) or pool())
    for lanes, b, block in ((0, 3, 128), (128, 3, 128), (128, 1, 128), (129, 3, 2)):  # 129: blocks of 2 on threads
        monkeypatch.setattr(cmod, "_FUSED_LANES", lanes)
        monkeypatch.setattr(cmod, "_FUSED_BLOCK", block)
        runs[lanes, b] = cpf.solve(der_p_avail_mw=avail[:b], der_in_service=on[:b], der_scale=size[:b], tol_pu=1e-5,
                                   branch_flows=b == 3)
    ref = runs[0, 3]
    assert ref.pf_solves > 1 and ref.converged.all()
    assert pooled == [1]  # only the last run's blocks ran on threads
    for (_lanes, b), r in runs.items():
        assert r.converged.all()
        np.testing.assert_array_equal(r.outer_iterations, ref.outer_iterations[:b])
        for name in ("der_p_mw", "der_q_mvar", "sgen_q_mvar", "storage_p_mw", "storage_q_mvar", "load_p_mw",
                     "load_q_mvar"):
            np.testing.assert_allclose(getattr(r, name), getattr(ref, name)[:b], atol=1e-8, err_msg=name)
        np.testing.assert_allclose(r.pf.vm_pu, ref.pf.vm_pu[:b], atol=1e-8)
        np.testing.assert_allclose(r.pf.ext_grid_p_mw, ref.pf.ext_grid_p_mw[:b], atol=1e-7)
    for lanes in (128, 129):
        np.testing.assert_allclose(runs[lanes, 3].pf.line_p_from_mw, ref.pf.line_p_from_mw, atol=1e-7)
    assert np.isnan(runs[128, 1].pf.line_p_from_mw).all()  # branch_flows=False
    assert runs[128, 3].storage_p_mw[0, 0] == pytest.approx(0.008 if on[0, 5] else 0.0)
    # warm start from the solution of a nearby case, and max_outer=1 reported as not converged
    start = (ref.der_p_mw, ref.der_q_mvar, ref.der_vm_pu)
    warm = cpf.solve(der_p_avail_mw=avail * 0.98, der_in_service=on, der_scale=size, tol_pu=1e-5, start=start)
    monkeypatch.setattr(cmod, "_FUSED_LANES", 0)
    warm0 = cpf.solve(der_p_avail_mw=avail * 0.98, der_in_service=on, der_scale=size, tol_pu=1e-5, start=start)
    np.testing.assert_allclose(warm.der_q_mvar, warm0.der_q_mvar, atol=1e-8)
    np.testing.assert_array_equal(warm.outer_iterations, warm0.outer_iterations)
    monkeypatch.setattr(cmod, "_FUSED_LANES", 128)
    one = cpf.solve(der_p_avail_mw=avail, der_in_service=on, der_scale=size, max_outer=1)
    assert not one.controls_converged.any() and one.pf.converged.all() and (one.outer_iterations == 1).all()
