"""BatchPowerFlow against pandapower runpp (the referee) and physics checks."""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest
from _pfnets import synthetic_feeder

from twin.grid.pf import BatchPowerFlow, GridFormingUnit, PowerFlowResult

# agreement required by issue 3
TOL_VM = 1e-6
TOL_VA = 1e-4
TOL_LOADING = 1e-3
SOLVE_TOL = 1e-11


def _simbench(code: str) -> Any:
    simbench = pytest.importorskip("simbench")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return simbench.get_simbench_net(code)


def _sb_lv_with_storage() -> Any:
    net = _simbench("1-LV-semiurb4--0-sw")
    buses = net.load.bus.to_numpy()[::10]
    for i, b in enumerate(buses):
        pp.create_storage(net, int(b), p_mw=0.0, max_e_mwh=0.02, name=f"bat{i}")
        pp.create_sgen(net, int(b), p_mw=0.005, name=f"pv{i}")
    return net


NETS: dict[str, Callable[[], Any]] = {
    "case33bw": pn.case33bw,
    "cigre_lv": pn.create_cigre_network_lv,
    "cigre_mv_der": lambda: pn.create_cigre_network_mv(with_der="all"),
    "kerber": pn.create_kerber_landnetz_kabel_1,
    "mv_oberrhein": pn.mv_oberrhein,
    "simbench_lv": _sb_lv_with_storage,
    "simbench_mv": lambda: _simbench("1-MV-rural--0-sw"),
    "synthetic_meshed": lambda: synthetic_feeder(150, n_ties=4, seed=1),
}

_cache: dict[str, Any] = {}


def get_net(name: str) -> Any:
    if name not in _cache:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _cache[name] = NETS[name]()
    return copy.deepcopy(_cache[name])


def random_scenarios(net: Any, n: int, seed: int) -> dict[str, np.ndarray]:
    """Random load/generation scenarios around the net's values (scaling applied)."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for el, lo, hi in (("load", 0.2, 1.4), ("sgen", 0.0, 1.3)):
        tab = net[el]
        base_p = (tab.p_mw * tab.scaling).to_numpy()
        base_q = (tab.q_mvar * tab.scaling).to_numpy()
        f = rng.uniform(lo, hi, size=(n, len(tab)))
        out[f"{el}_p_mw"] = base_p * f
        out[f"{el}_q_mvar"] = base_q * f
    sto = net.storage
    cap = np.maximum(np.abs(sto.p_mw.to_numpy()), 0.01)
    out["storage_p_mw"] = rng.uniform(-1.0, 1.0, size=(n, len(sto))) * cap
    out["storage_q_mvar"] = rng.uniform(-0.2, 0.2, size=(n, len(sto))) * cap
    return out


def run_referee(net: Any, scen: dict[str, np.ndarray], b: int, **masks: np.ndarray) -> Any:
    """pandapower runpp on scenario b (a copy of net with the scenario's values)."""
    ref = copy.deepcopy(net)
    for el in ("load", "sgen", "storage"):
        if f"{el}_p_mw" in scen:
            ref[el]["p_mw"] = scen[f"{el}_p_mw"][b]
            ref[el]["q_mvar"] = scen[f"{el}_q_mvar"][b]
            ref[el]["scaling"] = 1.0
    if "line_in_service" in masks:
        ref.line["in_service"] = masks["line_in_service"][b]
    if "trafo_in_service" in masks:
        ref.trafo["in_service"] = masks["trafo_in_service"][b]
    pp.runpp(ref, lightsim2grid=False, numba=False, tolerance_mva=1e-10, max_iteration=50)
    return ref


def assert_matches(res: PowerFlowResult, b: int, ref: Any) -> None:
    vm_ref = ref.res_bus.vm_pu.to_numpy()
    va_ref = ref.res_bus.va_degree.to_numpy()
    dead = np.isnan(vm_ref)
    assert res.converged[b]
    np.testing.assert_array_equal(res.energized[b], ~dead)
    assert np.all(res.vm_pu[b][dead] == 0.0)
    np.testing.assert_allclose(res.vm_pu[b][~dead], vm_ref[~dead], rtol=0, atol=TOL_VM)
    np.testing.assert_allclose(res.va_degree[b][~dead], va_ref[~dead], rtol=0, atol=TOL_VA)
    ll_ref = np.nan_to_num(ref.res_line.loading_percent.to_numpy())
    np.testing.assert_allclose(res.line_loading_percent[b], ll_ref, rtol=0, atol=TOL_LOADING)
    np.testing.assert_allclose(
        res.line_p_from_mw[b], np.nan_to_num(ref.res_line.p_from_mw.to_numpy()), rtol=0, atol=1e-6
    )
    np.testing.assert_allclose(
        res.line_pl_mw[b], np.nan_to_num(ref.res_line.pl_mw.to_numpy()), rtol=0, atol=1e-7
    )
    if len(ref.trafo):
        tl_ref = np.nan_to_num(ref.res_trafo.loading_percent.to_numpy())
        np.testing.assert_allclose(res.trafo_loading_percent[b], tl_ref, rtol=0, atol=TOL_LOADING)
    eg_ref = np.nan_to_num(ref.res_ext_grid.p_mw.to_numpy())
    np.testing.assert_allclose(res.ext_grid_p_mw[b], eg_ref, rtol=0, atol=1e-6)


def assert_power_balance(net: Any, res: PowerFlowResult, scen: dict[str, np.ndarray]) -> None:
    """Reference-unit supply + generation - consumption = branch losses, per scenario."""
    bus_pos = {int(ix): i for i, ix in enumerate(net.bus.index)}
    for b in range(res.batch_size):
        en = res.energized[b]
        total = res.ext_grid_p_mw[b].sum() + res.grid_forming_p_mw[b].sum()
        for el, sign in (("load", -1.0), ("sgen", 1.0), ("storage", -1.0)):
            tab = net[el]
            if not len(tab):
                continue
            p = scen[f"{el}_p_mw"][min(b, len(scen[f"{el}_p_mw"]) - 1)]
            on = en[[bus_pos[int(x)] for x in tab.bus]] & tab.in_service.to_numpy()
            total += sign * float(np.sum(p * on))
        if len(net.shunt):
            pos = [bus_pos[int(x)] for x in net.shunt.bus]
            total -= float(np.sum(net.shunt.p_mw.to_numpy() * net.shunt.step.to_numpy() * res.vm_pu[b][pos] ** 2))
        assert total == pytest.approx(res.pl_mw[b], abs=1e-7)


@pytest.mark.parametrize("name", list(NETS))
def test_random_scenarios_match_pandapower(name: str) -> None:
    net = get_net(name)
    scen = random_scenarios(net, 3, seed=hash(name) % 1000)
    res = BatchPowerFlow(net).solve(**scen, tol=SOLVE_TOL)
    assert res.vm_pu.shape == (3, len(net.bus))
    assert res.converged.all()
    for b in range(3):
        assert_matches(res, b, run_referee(net, scen, b))
    assert_power_balance(net, res, scen)


@pytest.mark.parametrize("name", ["mv_oberrhein", "cigre_mv_der"])
def test_defaults_are_the_net_values(name: str) -> None:
    net = get_net(name)
    res = BatchPowerFlow(net).solve(tol=SOLVE_TOL)
    ref = copy.deepcopy(net)
    pp.runpp(ref, lightsim2grid=False, numba=False, tolerance_mva=1e-10)
    assert res.batch_size == 1
    assert_matches(res, 0, ref)


def test_one_dimensional_inputs_broadcast() -> None:
    net = get_net("case33bw")
    pf = BatchPowerFlow(net)
    p = net.load.p_mw.to_numpy()
    r1 = pf.solve(load_p_mw=p)
    r2 = pf.solve(load_p_mw=np.stack([p, 0.5 * p]), line_in_service=net.line.in_service.to_numpy())
    assert r1.vm_pu.shape == (1, 33) and r2.vm_pu.shape == (2, 33)
    np.testing.assert_allclose(r1.vm_pu[0], r2.vm_pu[0], atol=1e-12)
    assert r2.vm_pu[1].min() > r2.vm_pu[0].min()


def test_outages_islands_and_mixed_topologies() -> None:
    """Several topologies in one batch, with de-energized islands and a closed tie line."""
    net = get_net("case33bw")
    n_line = len(net.line)
    base = net.line.in_service.to_numpy()
    masks = np.tile(base, (5, 1))
    masks[1, 7] = False  # cuts off the downstream part of the feeder
    masks[2, [7, 20]] = False
    masks[3, 32] = True  # close a tie line: meshed
    masks[4, :] = False  # everything out: only the slack bus is energized
    scen = random_scenarios(net, 5, seed=3)
    res = BatchPowerFlow(net).solve(**scen, line_in_service=masks, tol=SOLVE_TOL)
    assert res.line_loading_percent.shape == (5, n_line)
    for b in range(5):
        ref = run_referee(net, scen, b, line_in_service=masks)
        assert_matches(res, b, ref)
    assert (~res.energized[1]).sum() > 0
    assert res.energized[4].sum() == 1
    assert np.all(res.line_p_from_mw[4] == 0)
    assert_power_balance(net, res, scen)


def test_n_minus_1_on_meshed_feeder() -> None:
    net = get_net("synthetic_meshed")
    n_line, n_trafo = len(net.line), len(net.trafo)
    rng = np.random.default_rng(7)
    outaged = rng.choice(n_line, size=6, replace=False)
    lmask = np.ones((7, n_line), dtype=bool)
    lmask[np.arange(6), outaged] = False
    tmask = np.ones((7, n_trafo), dtype=bool)
    tmask[6] = False  # loss of the substation trafo: everything below is de-energized
    scen = random_scenarios(net, 7, seed=4)
    res = BatchPowerFlow(net).solve(**scen, line_in_service=lmask, trafo_in_service=tmask, tol=SOLVE_TOL)
    for b in (0, 3, 6):
        assert_matches(res, b, run_referee(net, scen, b, line_in_service=lmask, trafo_in_service=tmask))
    assert res.energized[6].sum() == 1
    assert_power_balance(net, res, scen)


def test_open_bus_bus_switch_separates() -> None:
    net = get_net("cigre_lv")
    net.switch.loc[net.switch.index[1], "closed"] = False
    res = BatchPowerFlow(net).solve(tol=SOLVE_TOL)
    ref = copy.deepcopy(net)
    pp.runpp(ref, lightsim2grid=False, numba=False, tolerance_mva=1e-10)
    assert_matches(res, 0, ref)
    assert (~res.energized[0]).any()


def test_open_line_switch_keeps_charging_of_the_other_end() -> None:
    net = get_net("synthetic_meshed")
    line = int(net.line.index[5])
    pp.create_switch(net, int(net.line.to_bus.at[line]), line, et="l", closed=False)
    res = BatchPowerFlow(net).solve(tol=SOLVE_TOL)
    ref = copy.deepcopy(net)
    pp.runpp(ref, lightsim2grid=False, numba=False, tolerance_mva=1e-10)
    assert_matches(res, 0, ref)
    assert res.line_q_from_mvar[0, 5] < 0  # the open-ended cable still produces reactive power


def test_taps_phase_shift_and_shunt() -> None:
    net = get_net("cigre_mv_der")
    t0, t1 = net.trafo.index[:2]
    net.trafo.loc[t0, ["tap_changer_type", "tap_side", "tap_neutral", "tap_pos", "tap_step_percent"]] = [
        "Ratio", "lv", 0, 3, 1.25,
    ]
    net.trafo.loc[t1, ["tap_changer_type", "tap_side", "tap_neutral", "tap_pos", "tap_step_degree"]] = [
        "Ideal", "hv", 0, -2, 2.0,
    ]
    net.trafo.loc[t1, "tap_step_percent"] = np.nan
    pp.create_shunt(net, int(net.bus.index[5]), q_mvar=-0.3, p_mw=0.01)
    res = BatchPowerFlow(net).solve(tol=SOLVE_TOL)
    ref = copy.deepcopy(net)
    pp.runpp(ref, lightsim2grid=False, numba=False, tolerance_mva=1e-10)
    assert_matches(res, 0, ref)


def test_zip_loads() -> None:
    """Voltage-dependent loads. pandapower applies the ZIP shares per bus to the bus's net
    injection; on a net with one load per bus and no generation both models coincide."""
    net = get_net("case33bw")
    rng = np.random.default_rng(11)
    n = len(net.load)
    z = rng.uniform(0, 60, n)
    net.load["const_z_p_percent"] = z
    net.load["const_i_p_percent"] = rng.uniform(0, 100 - z)
    net.load["const_z_q_percent"] = rng.uniform(0, 50, n)
    net.load["const_i_q_percent"] = rng.uniform(0, 50, n)
    res = BatchPowerFlow(net).solve(tol=SOLVE_TOL)
    ref = copy.deepcopy(net)
    pp.runpp(ref, lightsim2grid=False, numba=False, tolerance_mva=1e-10)
    assert_matches(res, 0, ref)
    res_nr = BatchPowerFlow(net).solve(tol=SOLVE_TOL, max_iter=1)  # Newton path with ZIP
    assert_matches(res_nr, 0, ref)


def test_newton_fallback_matches() -> None:
    net = get_net("simbench_lv")
    scen = random_scenarios(net, 2, seed=9)
    res = BatchPowerFlow(net).solve(**scen, tol=SOLVE_TOL, max_iter=2)
    assert res.converged.all()
    assert_matches(res, 1, run_referee(net, scen, 1))


def test_non_convergence_is_reported_not_raised() -> None:
    net = get_net("case33bw")
    p = net.load.p_mw.to_numpy()
    q = net.load.q_mvar.to_numpy()
    res = BatchPowerFlow(net).solve(load_p_mw=np.stack([p, 40 * p]), load_q_mvar=np.stack([q, 40 * q]))
    assert res.converged.tolist() == [True, False]
    assert np.isnan(res.vm_pu[1][1:]).all()
    assert np.isnan(res.line_loading_percent[1][net.line.in_service.to_numpy()]).all()
    assert np.isnan(res.ext_grid_p_mw[1]).all()
    assert np.isfinite(res.vm_pu[0]).all()


def _islanded_mv() -> tuple[Any, int]:
    """CIGRE MV with DER at a tenth of its load: islands a storage can carry."""
    net = get_net("cigre_mv_der")
    net.load["scaling"] = 0.1
    sto = int(net.storage.index[0])
    return net, sto


def test_grid_forming_storage_forms_island() -> None:
    net, sto = _islanded_mv()
    gf = [GridFormingUnit("storage", sto, vm_pu=1.0)]
    pf = BatchPowerFlow(net, grid_forming=gf)
    scen = random_scenarios(net, 2, seed=5)
    tmask = np.array([[True, True], [False, False]])
    res = pf.solve(**scen, trafo_in_service=tmask, tol=SOLVE_TOL)
    # connected: storage is an ordinary injection, no grid-forming power
    assert res.grid_forming_p_mw[0, 0] == 0.0
    # islanded: referee = pandapower with an ext_grid at the storage bus instead of the storage
    ref = copy.deepcopy(net)
    ref.ext_grid["in_service"] = False
    pp.create_ext_grid(ref, int(net.storage.bus.at[sto]), vm_pu=1.0)
    ref.storage.loc[sto, "in_service"] = False
    for el in ("load", "sgen", "storage"):
        ref[el]["p_mw"] = scen[f"{el}_p_mw"][1]
        ref[el]["q_mvar"] = scen[f"{el}_q_mvar"][1]
        ref[el]["scaling"] = 1.0
    ref.trafo["in_service"] = False
    pp.runpp(ref, lightsim2grid=False, numba=False, tolerance_mva=1e-10)
    vm_ref = ref.res_bus.vm_pu.to_numpy()
    live = ~np.isnan(vm_ref)
    hv = net.bus.index.get_indexer(net.ext_grid.bus)  # still fed by the upstream grid
    np.testing.assert_array_equal(res.energized[1], live | np.isin(np.arange(len(live)), hv))
    np.testing.assert_allclose(res.vm_pu[1][live], vm_ref[live], atol=TOL_VM)
    np.testing.assert_allclose(res.va_degree[1][live], ref.res_bus.va_degree.to_numpy()[live], atol=TOL_VA)
    np.testing.assert_allclose(res.grid_forming_p_mw[1, 0], ref.res_ext_grid.p_mw.iat[-1], atol=1e-6)
    bal = {k: v.copy() for k, v in scen.items()}
    bal["storage_p_mw"][1, int(net.storage.index.get_loc(sto))] = 0.0  # slack: no schedule
    assert_power_balance(net, res, bal)


def test_grid_forming_beyond_limits_collapses() -> None:
    net, sto = _islanded_mv()
    gf_ok = [GridFormingUnit("storage", sto, p_max_mw=50.0)]
    ok = BatchPowerFlow(net, grid_forming=gf_ok).solve(trafo_in_service=[False, False])
    assert ok.energized[0].sum() > 5 and 0.1 < ok.grid_forming_p_mw[0, 0] < 50.0
    gf = [GridFormingUnit("storage", sto, p_max_mw=0.1, p_min_mw=-0.1)]
    res = BatchPowerFlow(net, grid_forming=gf).solve(trafo_in_service=[False, False])
    assert res.converged.all()
    hv = net.bus.index.get_indexer(net.ext_grid.bus)
    assert np.flatnonzero(res.energized[0]).tolist() == hv.tolist()  # only the ext_grid bus
    assert np.all(res.line_p_from_mw[0] == 0)
    assert res.grid_forming_p_mw[0, 0] == 0.0


# --------------------------------------------------------------------------- bad input


def test_bad_inputs_name_the_argument() -> None:
    net = get_net("case33bw")
    pf = BatchPowerFlow(net)
    p = np.tile(net.load.p_mw.to_numpy(), (2, 1))
    p[1, 4] = np.nan
    with pytest.raises(ValueError, match=r"load_p_mw: non-finite value in scenario 1 for load row 4"):
        pf.solve(load_p_mw=p)
    with pytest.raises(ValueError, match=r"sgen_p_mw: expected shape"):
        pf.solve(sgen_p_mw=np.zeros((2, 3)))
    # a batch through the chunked kernel checks its inputs in the kernel's own pass
    big = BatchPowerFlow(net, kernel="numba")
    p64 = np.tile(net.load.p_mw.to_numpy(), (64, 1))
    net.load.loc[net.load.index[7], "in_service"] = False
    off = BatchPowerFlow(net, kernel="numba")
    for solver, row, col in ((big, 40, 4), (big, 63, 0), (off, 33, 7)):  # col 7: out of service
        bad = p64.copy()
        bad[row, col] = np.inf if row % 2 else -np.inf
        with pytest.raises(ValueError, match=rf"load_p_mw: non-finite value in scenario {row} for load row {col}"):
            solver.solve(load_p_mw=bad)
    assert big.solve(load_p_mw=p64).converged.all()
    with pytest.raises(ValueError, match=r"load_q_mvar: expected shape"):
        pf.solve(load_q_mvar=np.zeros(5))
    with pytest.raises(ValueError, match="inconsistent batch sizes"):
        pf.solve(load_p_mw=np.zeros((2, 32)), load_q_mvar=np.zeros((3, 32)))
    with pytest.raises(ValueError, match="line_in_service: must be boolean"):
        pf.solve(line_in_service=np.full(37, 0.5))
    with pytest.raises(ValueError, match="tol"):
        pf.solve(tol=-1.0)


def test_bad_nets_are_rejected() -> None:
    net = get_net("case33bw")
    net.ext_grid["in_service"] = False
    with pytest.raises(ValueError, match="no in-service ext_grid"):
        BatchPowerFlow(net)
    net = get_net("case33bw")
    net.line.loc[3, "length_km"] = -1.0
    with pytest.raises(ValueError, match=r"line 3: non-positive or missing length_km"):
        BatchPowerFlow(net)
    net = get_net("case33bw")
    net.line.loc[3, ["r_ohm_per_km", "x_ohm_per_km"]] = 0.0
    with pytest.raises(ValueError, match=r"line 3"):
        BatchPowerFlow(net)
    net = get_net("kerber")
    net.trafo.loc[net.trafo.index[0], "vk_percent"] = 0.0
    with pytest.raises(ValueError, match=r"trafo 0: non-positive or missing vk_percent"):
        BatchPowerFlow(net)
    net = get_net("case33bw")
    pp.create_gen(net, 5, p_mw=0.1)
    with pytest.raises(NotImplementedError, match=r"net\.gen"):
        BatchPowerFlow(net)
    with pytest.raises(ValueError, match="storage 99 not found"):
        BatchPowerFlow(get_net("case33bw"), grid_forming=[GridFormingUnit("storage", 99)])


def test_large_batch_kernel_equals_scalar_kernel() -> None:
    """The chunked parallel kernel (large B) gives the same answer as one-by-one solves."""
    net = get_net("synthetic_meshed")
    scen = random_scenarios(net, 75, seed=12)  # two full chunks of 32 lanes and a partial one
    pf = BatchPowerFlow(net)
    big = pf.solve(**scen, tol=SOLVE_TOL)
    assert big.converged.all()
    for b in (0, 17, 36, 74):
        one = pf.solve(**{k: v[b] for k, v in scen.items()}, tol=SOLVE_TOL)
        np.testing.assert_allclose(big.vm_pu[b], one.vm_pu[0], atol=1e-10)
        np.testing.assert_allclose(big.line_loading_percent[b], one.line_loading_percent[0], atol=1e-8)
        # the chunked kernel starts from the solution at the batch's mean injections
        assert int(big.iterations[b]) <= int(one.iterations[0])
    assert_matches(big, 74, run_referee(net, scen, 74))


def test_chunked_kernel_with_zip_slack_loads_and_divergence() -> None:
    """Chunked kernel (ZIP loads, a load at the slack bus, a diverging row) = numpy path."""
    net = get_net("case33bw")
    net.load["const_z_p_percent"] = 30.0
    net.load["const_i_q_percent"] = 20.0
    pp.create_load(net, int(net.ext_grid.bus.iloc[0]), p_mw=0.5, q_mvar=0.1, const_z_p_percent=50.0)
    scen = random_scenarios(net, 70, seed=31)
    scen["load_p_mw"][5] *= 40  # no solution: reported, not raised
    scen["load_q_mvar"][5] *= 40
    res = {k: _fields(BatchPowerFlow(net, kernel=k).solve(**scen, tol=SOLVE_TOL)) for k in ("numpy", "numba")}
    for name, a in res["numpy"].items():
        b = res["numba"][name]
        if name == "iterations":
            continue
        if a.dtype == bool:
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-8, err_msg=name)
    assert not res["numba"]["converged"][5] and res["numba"]["converged"].sum() == 69


def _fields(res: PowerFlowResult) -> dict[str, np.ndarray]:
    return {k: np.asarray(getattr(res, k)) for k in res.__dataclass_fields__}


@pytest.mark.parametrize("case", ["mixed_topologies", "grid_forming", "zip_and_divergence"])
def test_numpy_path_equals_numba_kernels(case: str) -> None:
    """The numpy/SuperLU path (small batches, no compile) and the numba kernels agree."""
    gf: list[GridFormingUnit] = []
    kw: dict[str, Any] = {}
    if case == "mixed_topologies":
        net = get_net("case33bw")
        scen = random_scenarios(net, 20, seed=21)
        masks = np.tile(net.line.in_service.to_numpy(), (20, 1))
        masks[1::3, 7] = False
        masks[2::3, 32] = True
        kw["line_in_service"] = masks
    elif case == "grid_forming":
        net, sto = _islanded_mv()
        gf = [GridFormingUnit("storage", sto, p_max_mw=2.0, p_min_mw=-2.0)]
        scen = random_scenarios(net, 20, seed=22)
        kw["trafo_in_service"] = np.tile([[True, True], [False, False]], (10, 1))
    else:
        net = get_net("case33bw")
        net.load["const_z_p_percent"] = 30.0
        net.load["const_i_q_percent"] = 20.0
        scen = random_scenarios(net, 20, seed=23)
        scen["load_p_mw"][3] *= 40  # no solution: reported, not raised
        scen["load_q_mvar"][3] *= 40
    res = {
        k: _fields(BatchPowerFlow(net, grid_forming=gf, kernel=k).solve(**scen, **kw, tol=SOLVE_TOL))
        for k in ("numpy", "numba")
    }
    for name, a in res["numpy"].items():
        b = res["numba"][name]
        if name == "iterations":
            assert np.all(np.abs(a - b) <= 1), name
        elif a.dtype == bool:
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-8, err_msg=name)
    if case == "zip_and_divergence":
        assert not res["numpy"]["converged"][3] and res["numpy"]["converged"].sum() == 19


def test_contingency_kernel_equals_per_topology_path() -> None:
    """An N-1 sweep (one topology per scenario) runs in the contingency kernel; it equals the
    per-topology path and pandapower, with ZIP loads, a load at the slack, tie lines closed
    (meshed), de-energized subtrees and a diverging scenario (re-solved, reported)."""
    net = get_net("case33bw")
    net.load["const_z_p_percent"] = 30.0
    net.load["const_i_q_percent"] = 20.0
    pp.create_load(net, int(net.ext_grid.bus.iloc[0]), p_mw=0.5, q_mvar=0.1, const_z_p_percent=50.0)
    n_line = len(net.line)
    base = net.line.in_service.to_numpy().copy()
    base[[32, 34]] = True  # two tie lines closed
    masks = np.tile(base, (n_line, 1))
    masks[np.arange(n_line), np.arange(n_line)] = False
    scen = random_scenarios(net, n_line, seed=41)
    scen["load_p_mw"][5] *= 40  # no solution: reported, not raised
    scen["load_q_mvar"][5] *= 40
    pf = BatchPowerFlow(net)
    fast = _fields(pf.solve(**scen, line_in_service=masks, tol=SOLVE_TOL))
    assert pf._pattern is not None  # the contingency kernel ran
    slow = _fields(BatchPowerFlow(net, kernel="numpy").solve(**scen, line_in_service=masks, tol=SOLVE_TOL))
    for name, a in slow.items():
        b = fast[name]
        if name == "iterations":
            assert np.all(np.abs(a - b) <= 1), name
        elif a.dtype == bool:
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-8, err_msg=name)
    assert not fast["converged"][5] and fast["converged"].sum() == n_line - 1
    cut = np.flatnonzero((~fast["energized"]).any(axis=1))
    assert cut.size > 0  # some radial outages cut off a subtree
    res = pf.solve(**scen, line_in_service=masks, tol=SOLVE_TOL)
    for b in (int(cut[0]), 20):
        assert_matches(res, b, run_referee(net, scen, b, line_in_service=masks))


@pytest.mark.parametrize("name", ["case33bw", "cigre_mv_der", "mv_oberrhein", "simbench_lv"])
def test_single_scenario_path_equals_batch_path_and_pandapower(name: str) -> None:
    """One scenario with 1-D inputs runs in one serial numba call (kernel="numba", or "auto"
    after many solves); it equals the batch path and pandapower, outages included."""
    net = get_net(name)
    scen = random_scenarios(net, 2, seed=31)
    one = {k: v[0].copy() for k, v in scen.items()}
    pf = BatchPowerFlow(net, kernel="numba")
    batch = _fields(pf.solve(**scen, tol=SOLVE_TOL))
    single = _fields(pf.solve(**one, tol=SOLVE_TOL))
    assert pf._single is not None  # the fast path ran (and cached the default topology)
    rows = _fields(pf.solve(**{k: v[:1] for k, v in scen.items()}, tol=SOLVE_TOL))  # (1, n) too
    for field, r in rows.items():
        np.testing.assert_array_equal(r, single[field], err_msg=field)
    for field, b in batch.items():
        s = single[field]
        assert s.shape == (1, *b.shape[1:]), field
        if b.dtype == bool or field == "iterations":
            np.testing.assert_array_equal(s[0], b[0], err_msg=field)
        else:
            np.testing.assert_allclose(s[0], b[0], rtol=0, atol=1e-9, err_msg=field)
    assert_matches(pf.solve(**one, tol=SOLVE_TOL), 0, run_referee(net, scen, 0))
    # an outage (1-D mask) goes through the same path with its own topology
    lines = net.line.in_service.to_numpy().copy()
    lines[np.flatnonzero(lines)[-1]] = False
    out1 = _fields(pf.solve(**one, line_in_service=lines, tol=SOLVE_TOL))
    outb = _fields(pf.solve(**{k: v[:1] for k, v in scen.items()}, line_in_service=lines[None, :],
                            tol=SOLVE_TOL))
    for field, b in outb.items():
        np.testing.assert_allclose(out1[field], b, rtol=0, atol=1e-9, err_msg=field)


def test_single_scenario_fallbacks_and_auto_switch(monkeypatch: pytest.MonkeyPatch) -> None:
    import twin.grid.pf as pfm

    net = get_net("case33bw")
    p = net.load.p_mw.to_numpy()
    q = net.load.q_mvar.to_numpy()
    pf = BatchPowerFlow(net, kernel="numba")
    bad = pf.solve(load_p_mw=40 * p, load_q_mvar=40 * q)  # no solution: general path reports it
    assert not bad.converged[0] and np.isnan(bad.vm_pu[0, 1:]).all()
    with pytest.raises(ValueError, match="load_p_mw: non-finite value in scenario 0 for load row 3"):
        pf.solve(load_p_mw=np.where(np.arange(p.size) == 3, np.nan, p))
    monkeypatch.setattr(pfm, "_AUTO_NUMBA_CALLS", 2)
    auto = BatchPowerFlow(net)
    first = auto.solve(load_p_mw=p)  # numpy path
    assert auto._single is None
    for _ in range(2):
        last = auto.solve(load_p_mw=p)
    assert auto._single is not None  # moved to the serial numba call
    np.testing.assert_allclose(last.vm_pu, first.vm_pu, rtol=0, atol=1e-9)


@pytest.mark.parametrize("kernel,n", [("numba", 64), ("numpy", 3), ("numba", 1)])
def test_branch_flows_false_keeps_voltages(kernel: str, n: int) -> None:
    net = get_net("cigre_mv_der")
    scen = random_scenarios(net, n, seed=41)
    if n == 1:
        scen = {k: v[0] for k, v in scen.items()}
    pf = BatchPowerFlow(net, kernel=kernel)  # type: ignore[arg-type]
    full = _fields(pf.solve(**scen))
    volt = _fields(pf.solve(**scen, branch_flows=False))
    for name, a in full.items():
        if name.startswith(("line_", "trafo_")) or name == "pl_mw":
            assert np.isnan(volt[name]).all(), name
        else:
            np.testing.assert_array_equal(volt[name], a, err_msg=name)


@pytest.mark.parametrize(("kernel", "n_b"), [("numpy", 1), ("numba", 1), ("numba", 40)])
def test_power_mismatch_below_tol(kernel: str, n_b: int) -> None:
    """``tol`` bounds the power mismatch at every node (pandapower's criterion), on every
    path: the single-scenario kernel, the chunked batch kernel and the numpy fixed point.

    CIGRE MV has loads of several pu: a step rule (largest voltage change < tol) stopped
    with mismatches near 3e-7 pu there. The referee here is pandapower's own Ybus and Sbus.
    """
    net = get_net("cigre_mv_der")
    pp.runpp(net, lightsim2grid=False, numba=False, tolerance_mva=1e-12)
    ppc = net._ppc
    ybus = ppc["internal"]["Ybus"]
    sbus = ppc["internal"]["Sbus"]
    pq = ppc["internal"]["pq"]
    lookup = net._pd2ppc_lookups["bus"]
    tol = 1e-8
    pf = BatchPowerFlow(net, kernel=kernel)
    res = pf.solve(
        load_p_mw=np.tile((net.load.p_mw * net.load.scaling).to_numpy(), (n_b, 1)),
        load_q_mvar=np.tile((net.load.q_mvar * net.load.scaling).to_numpy(), (n_b, 1)),
        tol=tol,
    )
    assert res.converged.all()
    real = np.unique(lookup[net.bus.index])
    aux = np.setdiff1d(np.arange(ybus.shape[0]), real)  # pandapower's buses at open switches
    y_aa = ybus[aux][:, aux].toarray()
    y_ar = ybus[aux][:, real]
    for b in range(n_b):
        v = np.zeros(ybus.shape[0], dtype=complex)
        v[lookup[net.bus.index]] = res.vm_pu[b] * np.exp(1j * np.deg2rad(res.va_degree[b]))
        v[aux] = np.linalg.solve(y_aa, -(y_ar @ v[real]))  # no injection there
        mis = (v * np.conj(ybus @ v) - sbus)[pq]
        worst = float(np.max(np.maximum(np.abs(mis.real), np.abs(mis.imag))))
        assert worst < tol, f"scenario {b}: mismatch {worst:.2e} pu"


def test_kernel_atan2_matches_libm() -> None:
    """The inlined atan2 of the post-processing kernels: within 2 ulp of libm in every
    quadrant, signed zeros and NaN as libm."""
    import math

    from twin.grid._kernels.post import _atan2

    rng = np.random.default_rng(3)
    pts = rng.normal(size=(5000, 2)) * rng.choice([1e-6, 1.0, 1e6], size=(5000, 1))
    for y, x in pts:
        want = math.atan2(y, x)
        assert abs(_atan2(float(y), float(x)) - want) <= 2 * math.ulp(want)
    for y, x in [(0.0, 0.0), (-0.0, 0.0), (0.0, -0.0), (-0.0, -0.0), (1.0, 0.0), (-1.0, -0.0),
                 (1.0, 0.66), (0.66, 1.0), (1.0, 1.0), (-2.0, -2.0)]:
        assert _atan2(y, x) == pytest.approx(math.atan2(y, x), rel=0, abs=4e-16)
        assert math.copysign(1.0, _atan2(y, x)) == math.copysign(1.0, math.atan2(y, x))
    assert math.isnan(_atan2(math.nan, 1.0)) and math.isnan(_atan2(1.0, math.nan))
