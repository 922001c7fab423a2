"""The DSO's check runs at the grid simulator's taps (mosaik attribute ``taps``): for the same
injections its voltages are the grid's, and a moved tap changes what it curtails."""

from __future__ import annotations

from typing import Any

import mesa
import numpy as np
import pytest
from _helpers import dyn_lv_net
from _lvnets import lv_feeder

from twin.agents.dso import DSOAgent, Effect
from twin.cosim.grid_sim import GridSim
from twin.grid.der_spec import OltcSpec
from twin.market.types import Trade
from twin.scenario import GridSpec

MW_PER_WH = 4 / 1e6  # 15-min interval
N = 6


class _Rows:
    def __init__(self) -> None:
        self.tables: dict[str, list[dict[str, Any]]] = {}

    def add(self, name: str, rows: list[dict[str, Any]]) -> None:
        self.tables.setdefault(name, []).extend(rows)

    def add_columns(self, name: str, columns: dict[str, Any], *, n: int | None = None) -> None:
        self.tables.setdefault(name, []).append(dict(columns))


def _check(dso: DSOAgent, net: Any, power: dict[str, np.ndarray]) -> Any:
    """Every PV sells its 35 kW (8,750 Wh) to the first house's load (inflexible)."""
    trades = [Trade(trade_id=i + 1, interval=1, buy_order_id=i + 1, sell_order_id=i + 1, buyer_device=100,
                    seller_device=i, cleared_wh=8750, energy_wh=8750, price_per_mwh=100) for i in range(N)]

    def seller(device: int) -> list[Effect]:
        return [("sgen", device, -MW_PER_WH)] if 0 <= device < N else []

    return dso.check(
        trades=trades, element_p_mw={"load": power["load_p_mw"], "sgen": power["sgen_p_mw"],
                                     "storage": power["storage_p_mw"]},
        element_q_mvar={"load": power["load_q_mvar"], "sgen": power["sgen_q_mvar"], "storage": np.zeros(0)},
        seller_effects=seller, buyer_effects=lambda device: [], limit_price=lambda device, side: 0)


def test_dso_check_runs_at_the_grid_simulators_oltc_tap() -> None:
    net = lv_feeder(N, pv_kw=35.0)
    net.trafo["tap_pos"] = 0.0
    oltc = OltcSpec(v_set_pu=1.0, band_pu=0.04, delay_s=0.0)
    # a band edge between the feeder's peak voltage at tap 0 (1.104 pu) and at tap 1 (1.081 pu)
    grid = GridSpec(kind="cigre_lv", oltc=oltc, vm_max_pu=1.09, max_loading_percent=300)
    model = mesa.Model(rng=np.random.default_rng(0))
    following, ignoring = DSOAgent(model, net=net, grid=grid), DSOAgent(model, net=net, grid=grid)
    sim, rec = GridSim(), _Rows()
    sim.init("Grid-0", net=net, recorder=rec, interval_s=900, oltc=oltc)
    power = {"load_p_mw": net.load.p_mw.to_numpy(), "load_q_mvar": net.load.q_mvar.to_numpy(),
             "sgen_p_mw": net.sgen.p_mw.to_numpy(), "sgen_q_mvar": np.zeros(N), "storage_p_mw": np.zeros(0)}
    taps = []
    for k in range(2):
        msg = sim.get_data({"grid": ["taps"]})["grid"]["taps"]  # what the agents receive at k
        taps.append(msg["trafo_tap_pos"])
        following.follow_taps(trafo_tap_pos={int(r): int(t) for r, t in msg["trafo_tap_pos"].items()},
                              regulator_taps=msg["regulator_taps"])
        sim.step(900 * k, {"grid": {"element_power": {"agents": power}}}, 1800)
    assert taps[0] == {} and taps[1] == {"0": 1}  # the OLTC moved after the first solve
    vm_grid = np.asarray(rec.tables["bus"][1]["vm_pu"])  # the grid's solve of interval 1 (tap 1)
    assert rec.tables["grid"][1]["oltc_tap"] == 1
    got, old = _check(following, net, power), _check(ignoring, net, power)
    # the check's first solve is the cleared schedule; nothing violated, so it is its final state
    assert got.found.any is False and got.curtailed_wh == 0 and got.checks == 1
    np.testing.assert_allclose(got.state.vm_pu, vm_grid, rtol=0, atol=1e-9)
    # at tap 0 (what the check saw before it followed the grid) the same schedule is curtailed
    assert old.found.overvoltage > 0 and old.curtailed_wh > 0
    assert float(vm_grid.max()) < grid.vm_max_pu < rec.tables["grid"][0]["vm_max_pu"]
    assert old.state.vm_max_pu <= grid.vm_max_pu + 1e-12
    assert float(np.max(np.abs(old.state.vm_pu - vm_grid))) > 0.01


def test_bad_taps_message_names_the_field() -> None:
    net = lv_feeder(2)
    dso = DSOAgent(mesa.Model(rng=np.random.default_rng(0)), net=net, grid=GridSpec(kind="cigre_lv"))
    with pytest.raises(ValueError, match=r"taps\.trafo_tap_pos: trafo row 3"):
        dso.follow_taps(trafo_tap_pos={3: 1})
    with pytest.raises(ValueError, match=r"taps\.regulator_taps: 2 taps for the DSO's 0 regulators"):
        dso.follow_taps(regulator_taps=[1, 2])


def test_envelopes_on_the_dsos_net_follow_the_tap() -> None:
    from twin.agents.envelope_policy import EnvelopePublisher
    from twin.grid.der_spec import EnvelopeSpec
    from twin.grid.envelopes import Connection

    net = lv_feeder(N, pv_kw=35.0)
    net.trafo["tap_pos"] = 0.0
    grid = GridSpec(kind="cigre_lv", oltc=OltcSpec(v_set_pu=1.0, band_pu=0.04, delay_s=0.0), vm_max_pu=1.09,
                    max_loading_percent=300)
    dso = DSOAgent(mesa.Model(rng=np.random.default_rng(0)), net=net, grid=grid)
    pub = EnvelopePublisher(net=dso.net, spec=EnvelopeSpec(), vm_min_pu=0.9, vm_max_pu=1.09,
                            max_loading_percent=300, interval_s=900)
    p = {"load": net.load.p_mw.to_numpy(), "sgen": np.zeros(N), "storage": np.zeros(0)}
    q = {"load": net.load.q_mvar.to_numpy(), "sgen": np.zeros(N), "storage": np.zeros(0)}
    pv = [Connection(device_id=i, table="sgen", row=i, coef=1.0, capacity_mw=0.035, potential_mw=0.035)
          for i in range(N)]
    at0 = pub.publish(1, p_mw=p, q_mvar=q, exports=pv, imports=[])
    dso.follow_taps(trafo_tap_pos={0: 1})  # the grid's tap: the HV tap up lowers the feeder voltage
    at1 = pub.publish(2, p_mw=p, q_mvar=q, exports=pv, imports=[])
    assert sum(at1.export_wh.values()) > sum(at0.export_wh.values())  # more headroom to export


def test_faulted_topology_check_follows_the_tap() -> None:
    import copy

    import pandapower as pp

    from twin.faults.grid import FaultedSnapshot
    from twin.faults.plan import FaultState

    net = lv_feeder(N, pv_kw=35.0)
    net.trafo["tap_pos"] = 0.0
    grid = GridSpec(kind="cigre_lv", oltc=OltcSpec(v_set_pu=1.0, band_pu=0.04, delay_s=0.0), vm_max_pu=1.07,
                    max_loading_percent=300)
    dso = DSOAgent(mesa.Model(rng=np.random.default_rng(0)), net=net, grid=grid)
    state = FaultState(lines_out=(N - 1,))  # the last house cut off: peak 1.082 pu at tap 0, 1.059 at tap 1
    faulted = FaultedSnapshot(dso.net)
    dso.fault_solver = lambda p, q: faulted.solve(state, load_p_mw=p["load"], load_q_mvar=q["load"],
                                                  sgen_p_mw=p["sgen"], sgen_q_mvar=q["sgen"],
                                                  storage_p_mw=p["storage"])
    power = {"load_p_mw": net.load.p_mw.to_numpy(), "load_q_mvar": net.load.q_mvar.to_numpy(),
             "sgen_p_mw": net.sgen.p_mw.to_numpy(), "sgen_q_mvar": np.zeros(N), "storage_p_mw": np.zeros(0)}

    def runpp(tap: int) -> np.ndarray:
        ref = copy.deepcopy(net)
        ref.trafo["tap_pos"] = float(tap)
        ref.line.loc[ref.line.index[N - 1], "in_service"] = False
        pp.runpp(ref, lightsim2grid=False, numba=False, tolerance_mva=1e-10)
        return ref.res_bus.vm_pu.to_numpy()

    at0 = _check(dso, net, power)
    dso.follow_taps(trafo_tap_pos={0: 1})  # the grid's OLTC moved: the faulted check solves at tap 1
    at1 = _check(dso, net, power)
    assert at0.curtailed_wh > 0 and at0.found.overvoltage > 0  # at tap 0 the PV overvoltage is curtailed
    assert at1.curtailed_wh == 0 and not at1.found.any and at1.checks == 1
    want = runpp(1)  # pandapower on the faulted topology at tap 1: the schedule as planned
    assert np.isnan(at1.state.vm_pu[-1]) and np.isnan(want[-1])  # the cut-off bus is de-energized
    np.testing.assert_allclose(at1.state.vm_pu, want, rtol=0, atol=1e-8)
    assert float(np.nanmax(np.abs(runpp(0) - want))) > 0.01


def test_three_phase_oltc_tap_reaches_the_envelopes() -> None:
    import copy

    import pandapower as pp

    from twin.agents.envelope_policy import EnvelopePublisher
    from twin.grid.der_spec import EnvelopeSpec
    from twin.grid.envelopes import Connection
    from twin.grid.phase_spec import PHASE_ABC

    net = dyn_lv_net(tap_side="hv", tap_neutral=0, tap_min=-4, tap_max=4, tap_step_percent=1.5, tap_pos=0,
                     tap_changer_type="Ratio")
    b2 = 2
    pp.create_load(net, bus=b2, p_mw=0.002)
    pp.create_sgen(net, bus=b2, p_mw=0.0)
    pp.create_sgen(net, bus=b2, p_mw=0.0)
    grid = GridSpec(kind="ieee_eu_lv", phases=3, oltc=OltcSpec(v_set_pu=1.0, band_pu=0.04, delay_s=0.0),
                    vm_max_pu=1.06, max_loading_percent=300)
    phases = {"load": np.array([PHASE_ABC]), "sgen": np.array([0, 1]), "storage": np.zeros(0, dtype=np.int64)}
    dso = DSOAgent(mesa.Model(rng=np.random.default_rng(0)), net=net, grid=grid, element_phase=phases)

    def publisher(on: Any) -> EnvelopePublisher:
        return EnvelopePublisher(net=on, spec=EnvelopeSpec(), vm_min_pu=0.9, vm_max_pu=1.06,
                                 max_loading_percent=300, interval_s=900)

    pub = publisher(dso.net)
    p = {"load": np.array([0.002]), "sgen": np.zeros(2), "storage": np.zeros(0)}
    q = {"load": np.zeros(1), "sgen": np.zeros(2), "storage": np.zeros(0)}
    pv = [Connection(device_id=i, table="sgen", row=i, coef=1.0, capacity_mw=0.15, potential_mw=0.15)
          for i in range(2)]
    at0 = pub.publish(1, p_mw=p, q_mvar=q, exports=pv, imports=[])
    assert dso._phases is not None and dso._phases.oltc is not None
    dso.follow_taps(regulator_taps=[2 - dso._phases._oltc_offset])  # the grid's three-phase OLTC at position 2 (HV up: LV down)
    assert dso.net.trafo.tap_pos.iat[0] == 2.0
    at2 = pub.publish(2, p_mw=p, q_mvar=q, exports=pv, imports=[])
    assert sum(at2.export_wh.values()) > sum(at0.export_wh.values())
    # the per-phase envelopes (the DSO's three-phase snapshot) start from the grid's taps too
    per_phase = EnvelopePublisher(net=dso.net, spec=EnvelopeSpec(), vm_min_pu=0.9, vm_max_pu=1.06,
                                  max_loading_percent=300, interval_s=900, phases=dso.phase_snapshot,
                                  taps=dso.regulator_taps)
    at2_3ph = per_phase.publish(2, p_mw=p, q_mvar=q, exports=pv, imports=[])
    dso.follow_taps(regulator_taps=[0 - dso._phases._oltc_offset])
    at0_3ph = per_phase.publish(3, p_mw=p, q_mvar=q, exports=pv, imports=[])
    assert sum(at2_3ph.export_wh.values()) > sum(at0_3ph.export_wh.values())
    dso.follow_taps(regulator_taps=[2 - dso._phases._oltc_offset])
    # the envelope batch at that tap is the own engine's on a net at tap 2, which is pandapower's
    ref = copy.deepcopy(net)
    ref.trafo["tap_pos"] = 2.0
    assert publisher(ref).publish(2, p_mw=p, q_mvar=q, exports=pv, imports=[]).export_wh == at2.export_wh
    pp.runpp(ref, lightsim2grid=False, numba=False, tolerance_mva=1e-10)
    mine = pub.solver.solve(load_p_mw=ref.load.p_mw.to_numpy(), load_q_mvar=ref.load.q_mvar.to_numpy(),
                            sgen_p_mw=np.zeros(2), sgen_q_mvar=np.zeros(2), storage_p_mw=np.zeros(0),
                            storage_q_mvar=np.zeros(0), tol=1e-10)
    np.testing.assert_allclose(mine.vm_pu[0], ref.res_bus.vm_pu.to_numpy(), atol=1e-8)
