"""grid.oltc on the three-phase engine: a gang-operated tap changer on the feeder transformer.

Referees: OpenDSS (DSS-Python) with a RegControl on the Transformer of a small unbalanced LV
feeder -- same tap and voltages within 1e-6 pu from several starting taps, monitored phases
and loads; pandapower's runpp_3ph at the tap the twin settles on (pandapower feeders, tap on
the HV or LV side)."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pandapower as pp
import pytest

from twin.grid.controlled_pf3ph import ControlledPowerFlow3ph
from twin.grid.feeder3ph import Feeder3ph
from twin.grid.oltc3ph import control_voltage_pu, gang_regulator, oltc_from_pandapower
from twin.grid.regcontrol3ph import regulators_from_opendss, scaled_elem_y
from twin.grid.tap_control import TapChangerError

dss = pytest.importorskip("dss")
from _helpers import bus_voltages_pu, dyn_lv_net, opendss_solved, regcontrol_taps  # noqa: E402

V_LN = 416 / math.sqrt(3)
DECK = """clear
new circuit.oltc basekv=11 pu={pu} phases=3 bus1=src MVAsc3=200 MVAsc1=180
new transformer.t1 phases=3 windings=2 buses=[src lv] conns=[delta wye] kvs=[11 0.416] kvas=[800 800]
~ %rs=[0.2 0.2] xhl=4 wdg=1 numtaps=4 mintap=0.95 maxtap=1.05 wdg=2 numtaps=4 mintap=0.95 maxtap=1.05
new linecode.cab nphases=3 r1=0.2 x1=0.08 r0=0.8 x0=0.3 c1=0 c0=0 units=km
new line.l1 bus1=lv bus2=b1 linecode=cab length=0.25 units=km
new line.l2 bus1=b1 bus2=b2 linecode=cab length=0.25 units=km
new load.a bus1=b2.1 phases=1 kv=0.2402 kw={kw_a} kvar=6 model=1 vminpu=0.6 vmaxpu=1.4
new load.b bus1=b2.2 phases=1 kv=0.2402 kw=10 kvar=3 model=1 vminpu=0.6 vmaxpu=1.4
new load.c bus1=b1.3 phases=1 kv=0.2402 kw=15 kvar=3 model=1 vminpu=0.6 vmaxpu=1.4
set voltagebases=[11 0.416]
calcvoltagebases
"""
REG = ("new regcontrol.oltc transformer=t1 winding=2 tapwinding={tw} vreg={vreg} band={band} "
       "ptratio={ptr} ptphase={ph} delay=30")
PT = {"a": "1", "b": "2", "c": "3", "max": "max", "min": "min"}


def _deck(tmp: Path, *, pu: float, kw_a: float) -> Path:
    p = tmp / f"oltc_{pu}_{kw_a}.dss"
    p.write_text(DECK.format(pu=pu, kw_a=kw_a))
    return p


def _opendss(deck: Path, commands: tuple[str, ...], bus_names: tuple[str, ...]) -> tuple[int, np.ndarray]:
    ckt = opendss_solved(commands, deck=deck)
    (tap,) = regcontrol_taps(ckt)
    return tap, bus_voltages_pu(ckt, bus_names)


@pytest.mark.parametrize(("pu", "kw_a", "phase", "start", "tap_winding"), [
    (0.98, 30.0, "a", 0, 1),  # heavy phase a, low source: the HV tap goes down (LV up)
    (1.06, 2.0, "max", -2, 1),  # light, high source, from the bottom tap: up
    (1.00, 30.0, "min", 2, 2),  # tap on the LV winding (the monitored one), from the top
    (1.00, 20.0, "c", 0, 1),  # phase c in band already: no move
])
def test_gang_oltc_lands_on_opendss_tap_and_voltages(tmp_path: Path, pu: float, kw_a: float, phase: str,
                                                      start: int, tap_winding: int) -> None:
    deck = _deck(tmp_path, pu=pu, kw_a=kw_a)
    v_set, band = 1.0, 0.0375  # 1.5 steps of 2.5 %
    t0 = 1 + 0.025 * start
    step_cmd = (f"Transformer.t1.Taps=[{t0} 1.0]" if tap_winding == 1 else f"Transformer.t1.Taps=[1.0 {t0}]",)
    feeder = Feeder3ph.from_opendss(deck, commands=step_cmd)
    elem = [n.lower() for n in feeder.elem_names].index("transformer.t1")
    reg = gang_regulator(feeder, elem=elem, tap_terminal=tap_winding - 1, monitored_terminal=1, v_set_pu=v_set,
                         band_pu=band, delay_s=30.0, control_phase=phase, min_tap_pu=0.95, max_tap_pu=1.05,
                         n_taps=4, tap0_pu=1 + 0.025 * start)
    rc = REG.format(tw=tap_winding, vreg=v_set * 120, band=band * 120, ptr=V_LN / 120, ph=PT[phase])
    # the same regulator as OpenDSS's own RegControl, read from the deck
    (dss_reg,) = regulators_from_opendss(feeder, deck, commands=(*step_cmd, rc))
    for f in ("elem", "pt_phase", "reverse_sign", "n_taps", "delay_s", "max_tap_change"):
        assert getattr(reg, f) == getattr(dss_reg, f), f
    for f in ("vreg_v", "band_v", "pt_ratio", "winding_v_base_v", "min_tap_pu", "max_tap_pu", "tap0_pu"):
        assert getattr(reg, f) == pytest.approx(getattr(dss_reg, f), rel=1e-12), f
    np.testing.assert_array_equal(reg.tap_conds, dss_reg.tap_conds)
    np.testing.assert_array_equal(reg.pt_node, dss_reg.pt_node)
    assert reg.tap_number(reg.tap0_pu) == start

    res = ControlledPowerFlow3ph(feeder, regulators=[reg]).solve(tol=1e-11)
    ref_tap, ref_v = _opendss(deck, (*step_cmd, rc), feeder.bus_names)
    assert res.converged.all()
    assert int(res.taps[0, 0]) == ref_tap
    ours = res.pf.vm_pu[0] * np.exp(1j * np.radians(res.pf.va_degree[0]))
    assert np.nanmax(np.abs(ours - ref_v)) < 1e-6
    vc = control_voltage_pu(reg, res.pf.v_node)[0]
    at_limit = ref_tap in reg.tap_range
    assert abs(vc - v_set) <= band / 2 or at_limit
    if phase == "c":
        assert ref_tap == start


def _pp_net(tap_side: str) -> object:
    net = dyn_lv_net(sn_mva=0.01, vm_pu=0.97, max_i_ka=0.3, tap_side=tap_side, tap_neutral=0, tap_min=-4,
                     tap_max=4, tap_step_percent=1.5, tap_pos=1, tap_changer_type="Ratio")
    pp.create_asymmetric_load(net, 2, p_a_mw=0.06, p_b_mw=0.02, p_c_mw=0.03, q_a_mvar=0.01)
    return net


@pytest.mark.parametrize("tap_side", ["hv", "lv"])
def test_pandapower_trafo_oltc_settles_where_runpp_3ph_agrees(tap_side: str) -> None:
    net = _pp_net(tap_side)
    feeder = Feeder3ph.from_pandapower(net)
    reg, ch, offset = oltc_from_pandapower(feeder, net, 0, v_set_pu=1.0, control_phase="a")
    assert reg.tap_number(reg.tap0_pu) + offset == 1 and ch.v_per_tap_pu == (-0.015 if tap_side == "hv" else 0.015)
    # any tap is the feeder pandapower builds at that tap position
    other = copy.deepcopy(net)
    other.trafo.tap_pos = 3.0
    ys = scaled_elem_y(feeder, [reg], [3 - offset])
    np.testing.assert_allclose(ys[reg.elem], Feeder3ph.from_pandapower(other).elem_y[reg.elem], atol=1e-14)
    res = ControlledPowerFlow3ph(feeder, regulators=[reg]).solve(tol=1e-11)
    pos = int(res.taps[0, 0]) + offset
    assert res.converged.all() and pos != 1  # phase a sagged below the band: the changer moved
    vc = control_voltage_pu(reg, res.pf.v_node)[0]
    assert abs(vc - 1.0) <= ch.band_pu / 2
    ref = copy.deepcopy(net)
    ref.trafo.tap_pos = float(pos)
    pp.runpp_3ph(ref, lightsim2grid=False, tolerance_mva=1e-10)
    want = ref.res_bus_3ph[["vm_a_pu", "vm_b_pu", "vm_c_pu"]].to_numpy()
    np.testing.assert_allclose(res.pf.vm_pu[0], want, atol=1e-6)
    assert vc == pytest.approx(want[1, 0], abs=1e-6)  # phase a of the LV terminal's bus


def test_bad_oltc_settings_name_the_field() -> None:
    net = _pp_net("hv")
    feeder = Feeder3ph.from_pandapower(net)
    with pytest.raises(TapChangerError, match=r"grid\.oltc\.band_pu.*narrower than one tap step"):
        oltc_from_pandapower(feeder, net, 0, band_pu=0.01)
    with pytest.raises(TapChangerError, match=r"grid\.oltc\.control_phase"):
        oltc_from_pandapower(feeder, net, 0, control_phase="d")  # type: ignore[arg-type]
    odd = copy.deepcopy(net)
    odd.trafo.tap_max = 3
    with pytest.raises(TapChangerError, match=r"grid\.oltc: trafo 0 has 7 tap steps"):
        oltc_from_pandapower(feeder, odd, 0)
    reg, _, _ = oltc_from_pandapower(feeder, net, 0)
    with pytest.raises(ValueError, match=r"taps\[:, 0\]: regulator 'grid.oltc' has taps -4..4"):
        ControlledPowerFlow3ph(feeder, regulators=[reg]).solve(taps=[9])


def test_time_series_steps_after_the_delay_then_holds() -> None:
    """PhaseSnapshot (the grid simulator's solve): the changer is held in each solve and
    stepped after it -- out of band for ``delay_s`` (accumulated) before it acts."""
    from twin.grid.der_spec import OltcSpec
    from twin.grid.phase_spec import PHASE_ABC
    from twin.grid.snapshot3ph import PhaseSnapshot

    net = _pp_net("hv")
    net.asymmetric_load.drop(net.asymmetric_load.index, inplace=True)
    pp.create_load(net, bus=2, p_mw=0.0)
    pp.create_load(net, bus=2, p_mw=0.0)
    phase = {"load": np.array([0, PHASE_ABC]), "sgen": np.zeros(0, np.int64), "storage": np.zeros(0, np.int64)}
    snap = PhaseSnapshot(net, phase=phase, oltc=OltcSpec(delay_s=60.0, control_phase="a"))
    assert snap.oltc_tap == 1
    kw = {"load_p_mw": np.array([0.05, 0.03]), "load_q_mvar": np.array([0.01, 0.0]), "sgen_p_mw": np.zeros(0),
          "sgen_q_mvar": np.zeros(0), "storage_p_mw": np.zeros(0)}
    seen = []
    for _ in range(4):
        st = snap.solve(**kw)
        assert st.vm_abc_pu is not None
        seen.append((snap.oltc_tap, snap.oltc_vm_pu(), float(st.vm_abc_pu[1, 0])))
        snap.step_oltc(dt_s=30.0)
    (t0, v0, a0), (t1, v1, _), (t2, v2, _), (t3, _, _) = seen
    assert v0 == pytest.approx(a0, abs=1e-12) and v0 < 1.0 - 0.0225 / 2  # phase a of the LV bus sags
    assert t0 == t1 == 1 and v1 == pytest.approx(v0)  # 30 s out of band: waits
    assert t2 < t1 and abs(v2 - 1.0) <= 0.0225 / 2  # 60 s: lowers the HV tap into band, from the next solve
    assert t3 == t2  # in band: holds
    assert snap.regulators_converged and snap.tap_rows()[0]["regulator"] == "grid.oltc"
