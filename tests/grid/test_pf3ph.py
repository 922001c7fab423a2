"""Phase-frame power flow against its referees: OpenDSS (IEEE 13) and pandapower's runpp_3ph."""

from __future__ import annotations

import warnings

import numpy as np
import pandapower as pp
import pandapower.networks as pn
import pytest
from _pf3ph_nets import (
    IEEE13,
    IEEE13_FIXED_TAPS,
    add_phase_loads,
    runpp_3ph_voltages,
    small_lv_net,
)

from twin.grid import BatchPowerFlow3ph, Feeder3ph
from twin.grid.feeder3ph import FeederImportError
from twin.grid.pf import BatchPowerFlow

dss = pytest.importorskip("dss")
from _helpers import bus_voltages_pu, opendss_solved  # noqa: E402


def _complex(res: object, b: int = 0) -> np.ndarray:
    return res.vm_pu[b] * np.exp(1j * np.radians(res.va_degree[b]))  # type: ignore[attr-defined]


def _opendss_voltages(deck: str, commands: tuple[str, ...], bus_names: tuple[str, ...]) -> np.ndarray:
    return bus_voltages_pu(opendss_solved(commands, deck=deck, static=False), bus_names)


def _node_mismatch(pf: BatchPowerFlow3ph, res: object, b: int = 0, s_bus: np.ndarray | None = None) -> float:
    """Largest power mismatch (per unit) at a non-source node of scenario ``b`` (extra loads ``s_bus``, MVA)."""
    f = pf.feeder
    topo = next(iter(pf._cache.values()))
    v = res.v_node[b]  # type: ignore[attr-defined]
    v0 = np.where(np.isnan(v), 0, v)
    s_node = np.zeros((1, v.size), complex)
    if s_bus is not None:
        s_node[0, f.node_of[f.node_of >= 0]] = s_bus[f.node_of >= 0] / f.sn_mva
    inj = pf._currents(v0[None], s_node, pf._ld_k)[0]
    mis = np.abs(v0 * np.conj(topo.y @ v0 - inj))
    return float(mis[topo.energized & ~topo.source_node].max())


def test_ieee13_matches_opendss() -> None:
    feeder = Feeder3ph.from_opendss(IEEE13, commands=IEEE13_FIXED_TAPS)
    assert feeder.bus_names[:3] == ("sourcebus", "650", "rg60")
    assert set(feeder.ignored) == {"RegControl.reg1", "RegControl.reg2", "RegControl.reg3"}
    pf = BatchPowerFlow3ph(feeder)
    res = pf.solve(tol=1e-10)
    assert res.converged.all()
    ref = _opendss_voltages(str(IEEE13), IEEE13_FIXED_TAPS, feeder.bus_names)
    assert np.array_equal(np.isnan(ref), np.isnan(res.vm_pu[0]))
    assert np.nanmax(np.abs(_complex(res) - ref)) < 1e-6
    # the phase spread the balanced model cannot see; VUF only on three-phase buses
    k671 = feeder.bus_index("671")
    assert np.ptp(res.vm_pu[0, k671]) > 0.07
    assert res.vuf_percent[0, k671] > 1.0 and np.isnan(res.vuf_percent[0, feeder.bus_index("611")])
    # power balance per node, recomputed from Y: the switch 671-692 (5.8e7 pu admittance) puts the
    # floating-point floor of Y @ V near 1e-8 pu
    assert _node_mismatch(pf, res) < 1e-7
    assert res.pl_mw[0] > 0.0 and np.isfinite(res.branch_i_ka[0, feeder.elem_names.index("Line.650632")]).all()


def test_ieee13_batch_of_phase_loads_is_row_by_row() -> None:
    feeder = Feeder3ph.from_opendss(IEEE13, commands=IEEE13_FIXED_TAPS)
    rng = np.random.default_rng(1)
    p = rng.uniform(0.0, 0.1, (3, feeder.n_bus, 3)) * feeder.bus_phases
    q = 0.3 * p
    pf = BatchPowerFlow3ph(feeder)
    batch = pf.solve(p_mw=p, q_mvar=q, tol=1e-10)
    for b in range(3):
        one = pf.solve(p_mw=p[b:b + 1], q_mvar=q[b:b + 1], tol=1e-10)
        assert np.nanmax(np.abs(_complex(batch, b) - _complex(one))) < 1e-8
    with pytest.raises(ValueError, match="has no phase"):
        pf.solve(p_mw=np.ones((1, feeder.n_bus, 3)))


def test_small_lv_net_random_phase_loads_match_runpp_3ph() -> None:
    net = small_lv_net()
    feeder = Feeder3ph.from_pandapower(net)
    rng = np.random.default_rng(7)
    n_b = 2
    p = rng.uniform(-0.004, 0.01, (n_b, feeder.n_bus, 3))
    q = rng.uniform(-0.002, 0.003, (n_b, feeder.n_bus, 3))
    p[:, 0] = q[:, 0] = 0.0  # nothing on the MV bus
    pf = BatchPowerFlow3ph(feeder)
    res = pf.solve(p_mw=p, q_mvar=q, tol=1e-12)
    assert res.converged.all()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for b in range(n_b):
            ref = runpp_3ph_voltages(add_phase_loads(net, p[b], q[b]))
            assert np.abs(_complex(res, b) - ref).max() < 1e-6
            assert _node_mismatch(pf, res, b, p[b] + 1j * q[b]) < 1e-10
            # power balance: the source delivers the (constant-power) loads plus the losses
            load_mw = feeder.load_s_mva.real.sum() + p[b].sum()
            assert abs(res.source_p_mw[b] - load_mw - res.pl_mw[b]) < 1e-9


def test_european_lv_feeder_matches_runpp_3ph() -> None:
    net = pn.ieee_european_lv_asymmetric()
    net.sn_mva = 0.01  # runpp_3ph's fixed 3e-8 pu stopping rule: a small base makes it tight
    rng = np.random.default_rng(3)
    net.asymmetric_load[["p_a_mw", "p_b_mw", "p_c_mw"]] = rng.uniform(0.0, 0.004, (len(net.asymmetric_load), 3))
    feeder = Feeder3ph.from_pandapower(net)
    res = BatchPowerFlow3ph(feeder).solve(tol=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = runpp_3ph_voltages(net)
    assert np.abs(_complex(res) - ref).max() < 1e-6
    lines = [k for k, n in enumerate(feeder.elem_names) if n.startswith("line.")]
    assert np.nanmax(np.abs(res.branch_i_ka[0, lines, 0] - net.res_line_3ph.i_a_from_ka.to_numpy())) < 1e-6
    assert abs(res.source_p_mw[0] - net.res_ext_grid_3ph[["p_a_mw", "p_b_mw", "p_c_mw"]].to_numpy().sum()) < 1e-8
    # per-phase line flows at the from bus, numba and numpy paths (MW / Mvar; loads of a few kW)
    res_np = BatchPowerFlow3ph(feeder, use_numba=False).solve(tol=1e-12)
    for r in (res, res_np):
        for p, ph in enumerate("abc"):
            for ours, col in ((r.branch_p_from_mw, "p"), (r.branch_q_from_mvar, "q")):
                want = net.res_line_3ph[f"{col}_{ph}_from_{'mw' if col == 'p' else 'mvar'}"].to_numpy()
                assert np.abs(ours[0, lines, p] - want).max() < 1e-8, (col, ph)  # 0.01 W


def test_balanced_load_on_transposed_feeder_is_the_balanced_answer() -> None:
    net = small_lv_net(sn_mva=1.0)
    net.asymmetric_load.drop(net.asymmetric_load.index, inplace=True)
    net.asymmetric_sgen.drop(net.asymmetric_sgen.index, inplace=True)
    res3 = BatchPowerFlow3ph(Feeder3ph.from_pandapower(net)).solve(tol=1e-12)
    res1 = BatchPowerFlow(net).solve(tol=1e-12)
    for ph in range(3):
        assert np.abs(res3.vm_pu[0, :, ph] - res1.vm_pu[0]).max() < 1e-8
    assert np.nanmax(res3.vuf_percent) < 1e-6


def test_outage_islands_match_runpp_3ph() -> None:
    net = small_lv_net()
    feeder = Feeder3ph.from_pandapower(net)
    on = np.array([name != "line.3" for name in feeder.elem_names])  # line 1-4 out: buses 4, 5 dark
    res = BatchPowerFlow3ph(feeder).solve(elem_in_service=on, tol=1e-12)
    net.line.loc[3, "in_service"] = False
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = runpp_3ph_voltages(net)
    dark = np.isnan(ref).all(axis=1)
    assert dark.sum() == 2 and np.isnan(res.vm_pu[0, dark]).all()
    assert np.abs(_complex(res)[~dark] - ref[~dark]).max() < 1e-6
    assert np.isnan(res.vuf_percent[0, dark]).all() and res.converged.all()


def test_rejected_elements_are_named(tmp_path) -> None:
    bad = tmp_path / "bad.dss"
    bad.write_text("clear\nnew circuit.x basekv=12.47\nnew line.l1 bus1=sourcebus bus2=b linecode=nosuch\n")
    with pytest.raises(FeederImportError, match=r"(?s)nosuch.*bad\.dss.*line: 3"):
        Feeder3ph.from_opendss(bad)
    deck = tmp_path / "pv.dss"
    deck.write_text(
        "clear\nnew circuit.x basekv=12.47\nnew line.l1 bus1=sourcebus bus2=b r1=0.1 x1=0.1\n"
        "new generator.g1 bus1=b kv=12.47 kw=100 conn=delta\nnew load.ld bus1=b kv=12.47 kw=10 model=3\n"
        "new isource.i1 bus1=b amps=1\n"
        "set voltagebases=[12.47]\ncalcv\n"
    )
    with pytest.raises(FeederImportError) as err:
        Feeder3ph.from_opendss(deck)
    assert "Generator.g1: a delta" in str(err.value) and "Load.ld: load model 3" in str(err.value)
    assert "Isource.i1: OpenDSS class Isource cannot be modelled" in str(err.value)
    net = small_lv_net()
    pp.create_gen(net, 3, p_mw=0.01)
    with pytest.raises(FeederImportError, match=r"net\.gen\[0\]"):
        Feeder3ph.from_pandapower(net)


def test_numpy_and_numba_paths_agree_with_outage() -> None:
    feeder = Feeder3ph.from_opendss(IEEE13, commands=IEEE13_FIXED_TAPS)
    p = np.random.default_rng(2).uniform(0.0, 0.05, (4, feeder.n_bus, 3)) * feeder.bus_phases
    on = np.array([name != "Line.684652" for name in feeder.elem_names])  # bus 652 dark
    kw = {"p_mw": p, "q_mvar": 0.3 * p, "elem_in_service": on, "tol": 1e-10}
    a = BatchPowerFlow3ph(feeder, use_numba=False).solve(**kw)
    b = BatchPowerFlow3ph(feeder, use_numba=True).solve(**kw)
    assert np.isnan(a.vm_pu[:, feeder.bus_index("652")]).all() and a.converged.all() and b.converged.all()
    for name in ("vm_pu", "va_degree", "vuf_percent", "branch_i_ka", "branch_pl_mw", "pl_mw", "source_p_mw",
                 "branch_p_from_mw", "branch_q_from_mvar"):
        x, y = getattr(a, name), getattr(b, name)
        assert np.array_equal(np.isnan(x), np.isnan(y)), name
        assert np.nanmax(np.abs(x - y)) < 1e-6, name


def test_two_sources_match_their_referees() -> None:
    """A second Vsource at a far bus of IEEE 13 (OpenDSS) and a second ext_grid on an LV bus (runpp_3ph)."""
    cmds = (*IEEE13_FIXED_TAPS, "new vsource.src2 bus1=675 basekv=4.16 pu=1.01 angle=-5 mvasc3=20 mvasc1=18")
    feeder = Feeder3ph.from_opendss(IEEE13, commands=cmds)
    assert feeder.fixed_node.size == 6  # two three-phase EMFs
    res = BatchPowerFlow3ph(feeder).solve(tol=1e-12)
    ref = _opendss_voltages(str(IEEE13), cmds, feeder.bus_names)
    assert res.converged.all() and np.nanmax(np.abs(_complex(res) - ref)) < 1e-6
    net = small_lv_net()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        v_one = runpp_3ph_voltages(net)
        va = float(np.degrees(np.angle(v_one[6, 0]))) + 1.0  # behind the Dyn5 shift, a degree ahead
        pp.create_ext_grid(net, 6, vm_pu=1.0, va_degree=va, s_sc_max_mva=2.0, rx_max=0.2, x0x_max=1.0,
                           r0x0_max=0.2)
        ref = runpp_3ph_voltages(net)
    feeder = Feeder3ph.from_pandapower(net)
    assert feeder.seq_slack_nodes.shape == (2, 3)
    pf = BatchPowerFlow3ph(feeder)
    res = pf.solve(tol=1e-12)
    assert res.converged.all() and np.abs(_complex(res) - ref).max() < 1e-6
    # the sources deliver the loads plus the losses (pandapower's res_ext_grid_3ph leaves out the
    # loads at an ext_grid's own bus: 0.011 MW at bus 6 here)
    assert abs(res.source_p_mw[0] - feeder.load_s_mva.real.sum() - res.pl_mw[0]) < 1e-9
    eg = net.res_ext_grid_3ph[["p_a_mw", "p_b_mw", "p_c_mw"]].to_numpy().sum()
    at6 = feeder.load_s_mva.real[np.isin(feeder.load_i, feeder.node_of[6])].sum()
    assert abs(res.source_p_mw[0] - (eg + at6)) < 1e-8


def test_generator_pv_and_storage_are_constant_phase_powers() -> None:
    """Generator (model 1), PVSystem and Storage in the IEEE 13 deck, against OpenDSS."""
    cmds = (*IEEE13_FIXED_TAPS,
            "new generator.g1 bus1=675 phases=3 kv=4.16 kw=300 kvar=50 model=1",
            "new pvsystem.pv1 bus1=611.3 phases=1 kv=2.4 kva=100 pmpp=80 irradiance=1 pf=1",
            "new storage.s1 bus1=692 phases=3 kv=4.16 kwrated=100 kwhrated=400 %stored=50 state=discharging "
            "%discharge=50")
    feeder = Feeder3ph.from_opendss(IEEE13, commands=cmds)
    gen = {n: feeder.load_s_mva[[m == n for m in feeder.load_names]] for n in ("Generator.g1", "PVSystem.pv1",
                                                                             "Storage.s1")}
    assert abs(gen["Generator.g1"].sum() - (-0.3 - 0.05j)) < 1e-6 and gen["PVSystem.pv1"].size == 1
    assert abs(gen["PVSystem.pv1"].sum().real + 0.08) < 1e-4 and abs(gen["Storage.s1"].sum().real + 0.05) < 1e-4
    res = BatchPowerFlow3ph(feeder).solve(tol=1e-12)
    ref = _opendss_voltages(str(IEEE13), cmds, feeder.bus_names)
    assert np.nanmax(np.abs(_complex(res) - ref)) < 1e-6
