"""Switched capacitors (OpenDSS CapControl) on the three-phase engine: IEEE 13 with CapControls
added to the deck's two capacitors, against OpenDSS's own static control loop (regulators on)."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from _helpers import bus_voltages_pu, opendss_solved, regcontrol_taps
from _pf3ph_nets import IEEE13

from twin.grid import Feeder3ph
from twin.grid.capcontrol3ph import CapControlError, capcontrols_from_opendss
from twin.grid.controlled_pf3ph import ControlledPowerFlow3ph
from twin.grid.regcontrol3ph import regulators_from_opendss, scaled_elem_y

dss = pytest.importorskip("dss")

CASES = {
    "kvar_voltage": ("New CapControl.cc1 Capacitor=Cap1 element=Line.692675 terminal=1 type=kvar ptratio=1 ctratio=1 "
                     "ONsetting=300 OFFsetting=-200",
                     "New CapControl.cc2 Capacitor=Cap2 element=Line.684611 terminal=2 type=voltage ptratio=20 "
                     "ONsetting=115 OFFsetting=117 ptphase=1"),
    "current_pf": ("New CapControl.cc1 Capacitor=Cap1 element=Line.692675 terminal=1 type=current ctratio=1 "
                   "ONsetting=200 OFFsetting=140 ctphase=AVG",
                   "New CapControl.cc2 Capacitor=Cap2 element=Line.684611 terminal=1 type=PF ONsetting=0.85 "
                   "OFFsetting=-0.999"),
    # a three-step bank; a voltage control with its own on/off delays; an override on the mean phase voltage
    "steps_delays_override": ("Capacitor.Cap1.numsteps=3", "Capacitor.Cap1.kvar=[200 200 200]",
                              "New CapControl.cc1 Capacitor=Cap1 element=Line.692675 terminal=1 type=kvar ptratio=20 "
                              "ctratio=1 ONsetting=100 OFFsetting=-150 VoltOverride=yes Vmin=110 Vmax=121.5 "
                              "ptphase=AVG",
                              "New CapControl.cc2 Capacitor=Cap2 element=Line.684611 terminal=2 type=voltage "
                              "ptratio=20 ONsetting=116 OFFsetting=119 ptphase=MAX delay=5 delayoff=40"),
}
# start states: regulator taps (reg1..3), then cap1's and cap2's steps in service
STARTS = ((9, 6, 9, -1, 1), (0, 0, 0, 0, 0), (14, 2, 14, 0, 1), (9, 6, 9, 1, 0), (16, 16, 16, -1, 0))


def _opendss(cmds: tuple[str, ...], start: tuple[int, ...], n1: int, bus_names: tuple[str, ...]
             ) -> tuple[list[int], np.ndarray]:
    """OpenDSS's static control loop from ``start``: taps and capacitor steps, voltages."""
    set_state = [f"Transformer.Reg{r + 1}.Taps=[1.0 {1.0 + start[r] * 0.00625:.6f}]" for r in range(3)]
    set_state += ["Capacitor.Cap1.states=[" + " ".join(["1"] * start[3] + ["0"] * (n1 - start[3])) + "]",
                  f"Capacitor.Cap2.states=[{start[4]}]"]
    controls = [c for c in cmds if c.startswith("New CapControl")]
    ckt = opendss_solved((*(c for c in cmds if c not in controls), *set_state, *controls))
    state = regcontrol_taps(ckt)
    for name in ("cap1", "cap2"):
        ckt.Capacitors.Name = name
        state.append(int(sum(ckt.Capacitors.States)))
    return state, bus_voltages_pu(ckt, bus_names)


@pytest.mark.parametrize("case", sorted(CASES))
def test_capcontrols_land_on_opendss_states_and_voltages(case: str) -> None:
    cmds = CASES[case]
    feeder = Feeder3ph.from_opendss(IEEE13, commands=cmds)
    regs = regulators_from_opendss(feeder, IEEE13, commands=cmds)
    caps = capcontrols_from_opendss(feeder, IEEE13, commands=cmds, controlled_elems=[r.elem for r in regs])
    assert [c.name for c in caps] == ["cc1", "cc2"] and caps[0].step0 == caps[0].n_steps
    n1 = caps[0].n_steps
    starts = np.array([[*s[:3], n1 if s[3] < 0 else s[3], s[4]] for s in STARTS])
    # a capacitor's admittance at k steps is OpenDSS's own Yprim (checked: all steps in = the import's)
    assert np.allclose(scaled_elem_y(feeder, caps, [n1, 1])[caps[0].elem], feeder.elem_y[caps[0].elem], atol=1e-14)
    res = ControlledPowerFlow3ph(feeder, regulators=(*regs, *caps)).solve(taps=starts, tol=1e-10)
    assert res.converged.all()
    moved = 0
    for b, start in enumerate(starts):
        ref_state, ref_v = _opendss(cmds, tuple(int(x) for x in start), n1, feeder.bus_names)
        assert res.taps[b].tolist() == ref_state, (case, start.tolist())
        moved += int((res.taps[b, 3:] != start[3:]).any())
        ours = res.pf.vm_pu[b] * np.exp(1j * np.radians(res.pf.va_degree[b]))
        assert np.array_equal(np.isnan(ref_v), np.isnan(ours))
        assert np.nanmax(np.abs(ours - ref_v)) < 1e-6
    assert moved >= 2  # the capacitors do switch in these cases
    # held (regulate=False): the states stay
    held = ControlledPowerFlow3ph(feeder, regulators=(*regs, *caps)).solve(taps=starts[1], regulate=False)
    assert held.taps[0].tolist() == starts[1].tolist()


def test_bad_capcontrol_settings_name_the_control_and_field() -> None:
    base = ("New CapControl.cc2 Capacitor=Cap2 element=Line.684611 terminal=2 type=voltage ptratio=20 "
            "ONsetting=115 OFFsetting=117",)
    feeder = Feeder3ph.from_opendss(IEEE13, commands=base)
    (cc2,) = capcontrols_from_opendss(feeder, IEEE13, commands=base)
    with pytest.raises(CapControlError, match=r"capcontrols\['cc2'\]\.on_value.*would hunt"):
        dataclasses.replace(cc2, on_value=118.0)
    with pytest.raises(CapControlError, match=r"capcontrols\['cc2'\]\.on_value: a time control's setting is an hour"):
        capcontrols_from_opendss(feeder, IEEE13, commands=(*base, "CapControl.cc2.type=time",
                                                           "CapControl.cc2.ONsetting=25"))
    kvar_on_reg = ("New CapControl.cc1 Capacitor=Cap1 element=Transformer.Reg1 terminal=2 type=kvar "
                   "ONsetting=300 OFFsetting=-200",)
    f2 = Feeder3ph.from_opendss(IEEE13, commands=kvar_on_reg)
    regs = regulators_from_opendss(f2, IEEE13, commands=kvar_on_reg)
    with pytest.raises(CapControlError, match=r"CapControl\.cc1\.element: a kvar control monitoring"):
        capcontrols_from_opendss(f2, IEEE13, commands=kvar_on_reg, controlled_elems=[r.elem for r in regs])


# time-of-day switching: Cap1 on 08:00-18:00, Cap2 on 20:30 until 06:00 the next day (it starts closed)
TIME_CMDS = ("New CapControl.cc1 Capacitor=Cap1 element=Line.692675 terminal=1 type=time ONsetting=8 OFFsetting=18",
             "New CapControl.cc2 Capacitor=Cap2 element=Line.684611 terminal=1 type=time ONsetting=20.5 "
             "OFFsetting=6")


def _daily_context(step: str) -> Any:
    """IEEE 13 with the time-of-day CapControls in OpenDSS's daily mode, one ``step`` a solve."""
    ctx = dss.DSS.NewContext()
    ctx.AllowChangeDir = False
    for cmd in (f'redirect "{IEEE13}"', *TIME_CMDS, "set controlmode=static", f"set mode=daily stepsize={step} number=1",
                "set tolerance=1e-12", "set maxiterations=1000"):
        ctx.Text.Command = cmd
    return ctx


def test_time_capcontrols_follow_opendss_daily_series() -> None:
    """Two days at 90-minute steps (06:00, 18:00 and 24:00 hit exactly) in OpenDSS's daily mode (static control loop per step, the
    regulators on) against the twin's time series from the previous step's taps and states."""
    feeder = Feeder3ph.from_opendss(IEEE13, commands=TIME_CMDS)
    regs = regulators_from_opendss(feeder, IEEE13, commands=TIME_CMDS)
    caps = capcontrols_from_opendss(feeder, IEEE13, commands=TIME_CMDS, controlled_elems=[r.elem for r in regs])
    assert [c.ctype for c in caps] == ["time", "time"] and (caps[1].on_value, caps[1].off_value) == (20.5, 6.0)
    cpf = ControlledPowerFlow3ph(feeder, regulators=(*regs, *caps))
    ctx = _daily_context("90m")
    ckt = ctx.ActiveCircuit
    taps = cpf.tap0()
    seen = set()
    for k in range(1, 33):  # OpenDSS moves its clock before each step's solve: 01:30 .. 48:00
        ctx.Text.Command = "solve"
        assert ckt.Solution.Converged
        assert ckt.Solution.Hour * 3600 + ckt.Solution.Seconds == pytest.approx(k * 5400)
        ref_state = regcontrol_taps(ckt)
        for name in ("cap1", "cap2"):
            ckt.Capacitors.Name = name
            ref_state.append(int(sum(ckt.Capacitors.States)))
        res = cpf.solve(taps=taps, time_s=k * 5400, tol=1e-10)
        taps = res.taps[0]
        assert taps.tolist() == ref_state, k
        seen.add(tuple(ref_state[3:]))
        ours = res.pf.vm_pu[0] * np.exp(1j * np.radians(res.pf.va_degree[0]))
        assert np.nanmax(np.abs(ours - bus_voltages_pu(ckt, feeder.bus_names))) < 1e-6, k
    assert seen == {(0, 1), (0, 0), (1, 0)}  # both banks switch, both ways, on both days
    with pytest.raises(ValueError, match=r"time_s: a time-of-day CapControl \(cc1\) needs the solution time"):
        cpf.solve(taps=taps)


def test_faulted_topology_keeps_time_capcontrols_and_regulators() -> None:
    """A line out (OpenDSS ``disable Line.632633``: 633 and 634 lose supply) from 06:00 to
    18:00 of a day at 3-hour steps: the phase-frame snapshot solved on that topology (the
    net's line row masked) lands on OpenDSS's taps and time-of-day capacitor states, and its
    voltages, at every step; the regulators answer the outage, the capacitors keep the
    healthy feeder's time-of-day states."""
    from twin.grid.opendss_grid import element_map_net
    from twin.grid.snapshot3ph import PhaseSnapshot

    feeder = Feeder3ph.from_opendss(IEEE13, commands=TIME_CMDS)
    regs = regulators_from_opendss(feeder, IEEE13, commands=TIME_CMDS)
    caps = capcontrols_from_opendss(feeder, IEEE13, commands=TIME_CMDS, controlled_elems=[r.elem for r in regs])
    net = element_map_net(feeder)
    snap = PhaseSnapshot(net, phase={}, network=feeder, regulators=(*regs, *caps))
    healthy = PhaseSnapshot(net, phase={}, network=feeder, regulators=(*regs, *caps))
    line_on = (net.line.name != "Line.632633").to_numpy()
    faulted = snap.elements_on(line_in_service=line_on)
    assert faulted is not None and int((~faulted).sum()) == 1
    zero = {t: np.zeros(len(net[t])) for t in ("load", "sgen", "storage")}
    kw = {"load_p_mw": zero["load"], "load_q_mvar": zero["load"], "sgen_p_mw": zero["sgen"],
          "sgen_q_mvar": zero["sgen"], "storage_p_mw": zero["storage"]}
    ctx = _daily_context("3h")
    ckt = ctx.ActiveCircuit
    dead = [feeder.bus_names.index(b) for b in ("633", "634")]
    states, moved = set(), False
    for k in range(1, 9):  # 03:00 .. 24:00
        out = 2 <= k <= 6
        ctx.Text.Command = {2: "disable Line.632633", 7: "enable Line.632633"}.get(k, "")
        ctx.Text.Command = "solve"
        assert ckt.Solution.Converged
        ref = regcontrol_taps(ckt)
        for name in ("cap1", "cap2"):
            ckt.Capacitors.Name = name
            ref.append(int(sum(ckt.Capacitors.States)))
        state = snap.solve(**kw, time_s=k * 10800, elem_in_service=faulted if out else None)
        healthy.solve(**kw, time_s=k * 10800)
        assert snap.taps.tolist() == ref, k
        states.add((out, *ref[3:]))
        if out:  # the capacitors keep the time of day, the regulators answer the outage
            assert (snap.taps[3:] == healthy.taps[3:]).all() and np.isnan(state.vm_abc_pu[dead]).all()
            moved |= bool((snap.taps[:3] != healthy.taps[:3]).any())
        vm_ref = np.abs(bus_voltages_pu(ckt, feeder.bus_names))
        live = np.isfinite(state.vm_abc_pu)
        assert np.abs(state.vm_abc_pu[live] - vm_ref[live]).max() < 1e-6, k
    assert {(True, 1, 0), (True, 0, 0)} <= states and moved  # Cap1 switches on and off during the outage


MONITORED = ("New CapControl.cc1 Capacitor=Cap1 element=Line.692675 terminal=1 type=kvar ptratio=1 ctratio=1 "
             "ONsetting=300 OFFsetting=-200",
             "New CapControl.cc2 Capacitor=Cap2 element=Line.684611 terminal=1 type=current ctratio=1 "
             "ONsetting=20 OFFsetting=10")


@pytest.mark.parametrize("line", ["Line.684611", "Line.692675"])
def test_monitored_line_out_of_service_carries_no_current(line: str) -> None:
    """A CapControl's monitored line disabled (its far bus de-energized): the control reads no
    current / kvar, as OpenDSS's, and lands on its taps, states and voltages (a current read
    from the live end's voltage would keep Cap2 closed, resp. close Cap1)."""
    feeder = Feeder3ph.from_opendss(IEEE13, commands=MONITORED)
    regs = regulators_from_opendss(feeder, IEEE13, commands=MONITORED)
    caps = capcontrols_from_opendss(feeder, IEEE13, commands=MONITORED, controlled_elems=[r.elem for r in regs])
    on = np.array([n != line for n in feeder.elem_names])
    ref, vm = _opendss((*MONITORED, f"disable {line}"), (10, 8, 11, 0, 1), 1, feeder.bus_names)
    res = ControlledPowerFlow3ph(feeder, regulators=(*regs, *caps)).solve(
        taps=np.array([10, 8, 11, 0, 1]), tol=1e-10, elem_in_service=on)
    assert res.taps[0].tolist() == ref
    ours = res.pf.vm_pu[0] * np.exp(1j * np.radians(res.pf.va_degree[0]))
    live = np.isfinite(ours)
    assert (~live).any() and np.abs(ours[live] - vm[live]).max() < 1e-6
