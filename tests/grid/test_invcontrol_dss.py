"""IEEE 1547 volt-var on the three-phase engine against OpenDSS's own InvControl (IEEE 13-bus).

OpenDSS: the deck at its published regulator taps (RegControls disabled, so only the
inverters act), three PVSystems (two three-phase, one single-phase) at unity irradiance with
an InvControl in VOLTVAR mode: the curve in pu of ``kvarMax`` (``RefReactivePower=VARMAX``),
the voltage in pu of the PVSystem's rated voltage (``voltage_curvex_ref=rated``) averaged over
its phases (``monVoltageCalc=AVG``), solved in static control mode with
``deltaQ_factor=0.2``, ``VarChangeTolerance=1e-7`` and ``VoltageChangeTolerance=1e-8`` (OpenDSS
stops when successive control iterations move Q and V less than these).

The twin: the deck imported without the PVSystems, one :class:`Der3phDevice` per PVSystem
with the same curve in pu of S rated (``q = y * kvarMax / kVA``) and ``sensing="mean"`` for a
three-phase inverter (OpenDSS's AVG: one set-point split equally over the phases), the
fixed point to ``tol_pu = 1e-9``.

With volt-watt too (``CombiMode=VV_VW``, ``VoltwattYAxis=PMPPPU``, ``deltaP_factor=0.2``,
``ActivePChangeTolerance=1e-7``): the twin's :class:`VoltWatt` with the same curve.

Tolerance: Q and P per PV within 1e-5 of kvarMax / kVA, every node voltage within 1e-7 pu.
Measured: Q within 1.2e-7 of kvarMax, P within 1e-7 of kVA, voltages within 3e-9 pu (the
rest is OpenDSS's stopping rule, about VarChangeTolerance / deltaQ_factor).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _pf3ph_nets import IEEE13, IEEE13_FIXED_TAPS

from twin.grid.controlled_pf3ph import ControlledPowerFlow3ph, Der3phDevice
from twin.grid.der_functions import DerFunctions, VoltVar, VoltWatt
from twin.grid.feeder3ph import Feeder3ph

dss = pytest.importorskip("dss")

# name, OpenDSS bus, phases, kVA, Pmpp (kW)
PVS = [("pv675", "675", (0, 1, 2), 500.0, 400.0), ("pv680", "680", (0, 1, 2), 400.0, 300.0),
       ("pv652", "652.1", (0,), 150.0, 120.0)]
VV_V, VV_Y = (0.95, 1.0, 1.0, 1.05), (1.0, 0.0, 0.0, -1.0)  # y in pu of kvarMax
Q_MAX = 0.44  # kvarMax / kVA
VW_V, VW_Y = (1.0, 1.03), (1.0, 0.2)  # volt-watt: P in pu of Pmpp


def _opendss(mode: str) -> tuple[dict[str, tuple[float, float]], dict[str, np.ndarray]]:
    ctx = dss.DSS.NewContext()
    ctx.AllowChangeDir = False
    text = ctx.Text
    text.Command = f'redirect "{IEEE13}"'
    for cmd in IEEE13_FIXED_TAPS[:3]:
        text.Command = cmd
    for r in ("reg1", "reg2", "reg3"):
        text.Command = f"RegControl.{r}.enabled=false"
    text.Command = f"new XYcurve.vv npts=4 Xarray={list(VV_V)} Yarray={list(VV_Y)}".replace(",", "")
    text.Command = f"new XYcurve.vw npts=2 Xarray={list(VW_V)} Yarray={list(VW_Y)}".replace(",", "")
    for name, bus, ph, kva, pmpp in PVS:
        kv = 4.16 if len(ph) == 3 else 4.16 / math.sqrt(3)
        text.Command = (f"new PVSystem.{name} phases={len(ph)} bus1={bus} kV={kv} kVA={kva} Pmpp={pmpp} "
                        f"irradiance=1 %cutin=0 %cutout=0 vminpu=0.5 vmaxpu=1.5 kvarMax={Q_MAX * kva} "
                        f"kvarMaxAbs={Q_MAX * kva}")
    extra = "voltwatt_curve=vw VoltwattYAxis=PMPPPU" if mode != "VOLTVAR" else ""
    text.Command = (f"new InvControl.ic {'CombiMode=VV_VW' if mode != 'VOLTVAR' else 'mode=VOLTVAR'} "
                    f"vvc_curve1=vv {extra} voltage_curvex_ref=rated RefReactivePower=VARMAX "
                    "deltaQ_factor=0.2 deltaP_factor=0.2 VarChangeTolerance=1e-7 VoltageChangeTolerance=1e-8 "
                    "ActivePChangeTolerance=1e-7 monVoltageCalc=AVG EventLog=no")
    for cmd in ("set controlmode=static", "set maxcontroliter=3000", "set tolerance=1e-12",
                "set maxiterations=1000", "solve"):
        text.Command = cmd
    ckt = ctx.ActiveCircuit
    assert ckt.Solution.Converged
    pq = {}
    for name, _, ph, _, _ in PVS:
        ckt.SetActiveElement(f"PVSystem.{name}")
        s = -np.asarray(ckt.ActiveCktElement.Powers)[: 2 * len(ph)]
        pq[name] = (float(s[0::2].sum()) / 1e3, float(s[1::2].sum()) / 1e3)  # MW, Mvar generated
    v = {}
    for b in ckt.AllBusNames:
        ckt.SetActiveBus(b)
        raw = np.asarray(ckt.ActiveBus.puVoltages)
        v[b.lower()] = np.array([(nd, c) for nd, c in zip(ckt.ActiveBus.Nodes, raw[0::2] + 1j * raw[1::2],
                                                            strict=False)], dtype=object)
    return pq, v


@pytest.fixture(scope="module")
def feeder() -> Feeder3ph:
    return Feeder3ph.from_opendss(IEEE13, commands=IEEE13_FIXED_TAPS)


@pytest.mark.parametrize("mode", ["VOLTVAR", "VV_VW"])
def test_volt_var_steady_state_matches_opendss_invcontrol(feeder: Feeder3ph, mode: str) -> None:
    ref_pq, ref_v = _opendss(mode)
    devices = []
    for _, bus, ph, kva, pmpp in PVS:
        fn = DerFunctions(s_rated_mva=kva / 1e3, p_rated_mw=pmpp / 1e3, q_max_pu=Q_MAX,
                          reactive=VoltVar(v_pu=VV_V, q_pu=tuple(Q_MAX * y for y in VV_Y), response_time_s=0.0),
                          volt_watt=VoltWatt(v_pu=VW_V, p_pu=VW_Y, response_time_s=0.0) if mode != "VOLTVAR" else None)
        devices.append(Der3phDevice(feeder.bus_index(bus.split(".")[0]), ph, fn, sensing="mean"))
    cpf = ControlledPowerFlow3ph(feeder, devices=devices)
    res = cpf.solve(der_p_avail_mw=[[pmpp / 1e3 for *_, pmpp in PVS]], tol=1e-12, tol_pu=1e-9, max_outer=60)
    assert res.converged.all()
    for i, (name, _, _, kva, _) in enumerate(PVS):
        p_ref, q_ref = ref_pq[name]
        assert abs(res.der_q_mvar[0, i] - q_ref) < 1e-5 * Q_MAX * kva / 1e3, name
        assert abs(res.der_p_mw[0, i] - p_ref) < 1e-5 * kva / 1e3, name
        assert abs(q_ref) > 1e-3 * kva / 1e3  # the curve is active (outside its dead band)
    ours = res.pf.vm_pu[0] * np.exp(1j * np.radians(res.pf.va_degree[0]))
    worst = 0.0
    for k, b in enumerate(feeder.bus_names):
        for nd, c in ref_v[b.lower()]:
            if 1 <= nd <= 3:
                worst = max(worst, abs(ours[k, nd - 1] - c))
    assert worst < 1e-7
    if mode != "VOLTVAR":  # volt-watt curtails at least one PV (the high-voltage end of the feeder)
        assert min(ref_pq[n][0] - p / 1e3 for n, *_, p in PVS) < -1e-3
