"""IEEE 1547.1-style conformance of the HIL devices, over Modbus TCP with pysunspec2.

In the manner of Sandia's svp_1547.1 procedures: the test configures a function through the
device's SunSpec models (write curve 2, adopt it, enable), the "grid simulator" (here the
twin's step inputs: voltage, frequency, available power) visits test points, and the
device's 701 measurements, read back with pysunspec2, must be within the function's
curve +- a tolerance (1547.1's accuracy requirement, here 1 % of the rating). Expected
values are computed here from the curve's definition, not from the twin's code.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator

import pytest
import sunspec2.modbus.client as ss
from pymodbus.client import ModbusTcpClient

from twin.hil.controller import run_controller
from twin.hil.core import DeviceInput, HILBank
from twin.hil.device import DeviceSpec
from twin.hil.server import ModbusServer

PV, BAT = 1, 2
PV_W, BAT_W = 10_000.0, 30_000.0
V_NOM = 230.0
Q_MAX_PV = PV_W * math.tan(math.acos(0.8))  # 702 VarMaxInj/VarMaxAbs (PF 0.8 capability)


class Lab:
    """The twin's devices on a Modbus server, and a grid simulator driving their terminals."""

    def __init__(self) -> None:
        self.bank = HILBank([
            DeviceSpec(unit_id=PV, name="pv", kind="pv_inverter", nameplate_w=PV_W),
            DeviceSpec(unit_id=BAT, name="bat", kind="battery", nameplate_w=BAT_W, capacity_wh=100_000,
                       soc_min=0.1, soc_max=0.95, soc_init=0.5, heartbeat_timeout_s=20),
        ], clock=lambda: self.t)
        self.t = 0.0
        self.server = ModbusServer(self.bank, port=0, max_requests_per_s=10_000).start()
        self._dev: dict[int, ss.SunSpecModbusClientDeviceTCP] = {}

    def dev(self, unit: int) -> ss.SunSpecModbusClientDeviceTCP:
        if unit not in self._dev:
            d = ss.SunSpecModbusClientDeviceTCP(slave_id=unit, ipaddr="127.0.0.1", ipport=self.server.port,
                                                timeout=2)
            d.scan()
            self._dev[unit] = d
        return self._dev[unit]

    def step(self, unit: int, *, v_pu: float = 1.0, hz: float = 50.0, avail_w: float = 0.0,
             dt_s: float = 1.0, soc: float | None = None) -> dict[str, float]:
        """Advance the twin by ``dt_s`` and return the device's 701 (read with pysunspec2)."""
        self.t += dt_s
        self.bank.step(now_s=self.t, dt_s=dt_s, inputs={
            unit: DeviceInput(available_w=avail_w, v=v_pu * V_NOM, hz=hz, soc=soc)})
        m = self.dev(unit).DERMeasureAC[0]
        m.read()
        return {p: m.points[p].cvalue for p in ("W", "Var", "VA", "PF", "Hz", "InvSt", "ConnSt",
                                                "ThrotPct", "A")}

    def write(self, unit: int, model: int, name: str, regs: list[int]) -> int:
        """Raw write of one point (or several from it); the Modbus exception code or 0."""
        c = ModbusTcpClient("127.0.0.1", port=self.server.port, timeout=2, retries=0)
        c.connect()
        try:
            r = c.write_registers(self.bank.devices[unit].map.point(model, name).addr, regs, device_id=unit)
            return int(r.exception_code) if r.isError() else 0
        finally:
            c.close()

    def close(self) -> None:
        for d in self._dev.values():
            d.close()
        self.server.stop()


@pytest.fixture
def lab() -> Iterator[Lab]:
    lab = Lab()
    try:
        yield lab
    finally:
        lab.close()


def _adopt(model: object, points: list[tuple[float, float]], x: str, y: str) -> None:
    """svp_1547.1 style: write curve 2 (index 1 in pysunspec2), adopt it, enable."""
    crv = model.Crv[1]  # type: ignore[attr-defined]
    crv.ActPt.cvalue = len(points)
    for i, (a, b) in enumerate(points):
        setattr_cvalue(crv.Pt[i], x, a)
        setattr_cvalue(crv.Pt[i], y, b)
    crv.write()
    model.AdptCrvReq.cvalue = 2  # type: ignore[attr-defined]
    model.AdptCrvReq.write()  # type: ignore[attr-defined]
    model.Ena.cvalue = 1  # type: ignore[attr-defined]
    model.Ena.write()  # type: ignore[attr-defined]
    model.read()  # type: ignore[attr-defined]
    assert model.AdptCrvRslt.cvalue == 1  # type: ignore[attr-defined]


def setattr_cvalue(group: object, name: str, value: float) -> None:
    getattr(group, name).cvalue = value


def _interp(x: float, xs: list[float], ys: list[float]) -> float:
    if x <= xs[0]:
        return ys[0]
    for (x0, y0), (x1, y1) in zip(zip(xs, ys, strict=True), zip(xs[1:], ys[1:], strict=True), strict=False):
        if x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 > x0 else y1
    return ys[-1]


def test_volt_var(lab: Lab) -> None:
    vv = lab.dev(PV).DERVoltVar[0]
    pts = [(93.0, 40.0), (97.0, 0.0), (103.0, 0.0), (107.0, -40.0)]  # % VNom, % VarMax
    _adopt(vv, pts, "V", "Var")
    for v_pu in (0.90, 0.94, 0.95, 0.99, 1.01, 1.05, 1.06, 1.10):
        m = lab.step(PV, v_pu=v_pu, avail_w=5_000)
        expected = _interp(100 * v_pu, [p[0] for p in pts], [p[1] for p in pts]) / 100 * Q_MAX_PV
        assert m["Var"] == pytest.approx(expected, abs=0.01 * PV_W), v_pu
        assert m["W"] == pytest.approx(5_000, abs=0.01 * PV_W)
    assert lab.bank.devices[PV].get(705, "Crv[1].Pt[1].V") == pytest.approx(93.0)


def test_volt_watt(lab: Lab) -> None:
    _adopt(lab.dev(PV).DERVoltWatt[0], [(104.0, 100.0), (109.0, 20.0)], "V", "W")
    for v_pu in (1.00, 1.04, 1.06, 1.08, 1.09, 1.12):
        m = lab.step(PV, v_pu=v_pu, avail_w=9_000)
        cap = _interp(100 * v_pu, [104.0, 109.0], [100.0, 20.0]) / 100 * PV_W
        assert m["W"] == pytest.approx(min(9_000, cap), abs=0.01 * PV_W), v_pu
        assert m["InvSt"] == (4 if cap < 9_000 else 3)  # THROTTLED / RUNNING


def test_watt_var(lab: Lab) -> None:
    pts = [(20.0, 0.0), (50.0, 0.0), (100.0, -44.0)]  # % WMax, % VarMax
    _adopt(lab.dev(PV).DERWattVar[0], pts, "W", "Var")
    for p_w in (1_000.0, 5_000.0, 7_500.0, 9_000.0):
        m = lab.step(PV, avail_w=p_w)
        expected = _interp(100 * p_w / PV_W, [p[0] for p in pts], [p[1] for p in pts]) / 100 * Q_MAX_PV
        assert m["Var"] == pytest.approx(expected, abs=0.01 * PV_W), p_w


def test_constant_pf_constant_var_and_the_va_limit(lab: Lab) -> None:
    c = lab.dev(PV).DERCtlAC[0]
    c.PFWInj.PF.cvalue, c.PFWInj.Ext.cvalue, c.PFWInjEna.cvalue = 0.9, 1, 1  # under-excited
    c.write()
    m = lab.step(PV, avail_w=6_000)
    assert m["W"] == pytest.approx(6_000, abs=100)
    assert m["Var"] == pytest.approx(-6_000 * math.tan(math.acos(0.9)), abs=0.01 * PV_W)
    assert m["PF"] == pytest.approx(0.9, abs=0.005)
    c.PFWInj.PF.cvalue = 0.8  # at full power PF 0.8 would need 12.5 kVA: scaled into VAMax
    c.PFWInj.write()
    m = lab.step(PV, avail_w=10_000)
    assert m["VA"] <= PV_W + 1 and m["PF"] == pytest.approx(0.8, abs=0.005)
    assert m["W"] == pytest.approx(8_000, abs=100) and m["Var"] == pytest.approx(-6_000, abs=100)
    assert m["A"] == pytest.approx(m["VA"] / V_NOM, rel=0.02)  # total current of the three phases
    c.PFWInjEna.cvalue = 0
    c.VarSetMod.cvalue, c.VarSet.cvalue, c.VarSetEna.cvalue = 4, 2_500, 1  # constant var
    c.write()
    m = lab.step(PV, avail_w=4_000)
    assert m["Var"] == pytest.approx(2_500, abs=0.01 * PV_W) and m["W"] == pytest.approx(4_000, abs=100)


def test_pf_sign_follows_active_power_while_charging(lab: Lab) -> None:
    m = lab.step(BAT, avail_w=-12_000, soc=0.5)
    assert m["W"] == pytest.approx(-12_000, abs=10)
    assert m["PF"] == pytest.approx(-1.0, abs=0.001)


def test_frequency_droop_and_the_published_frequency(lab: Lab) -> None:
    m = lab.step(PV, hz=50.02, avail_w=5_000)
    assert m["Hz"] == pytest.approx(50.02) and m["W"] == pytest.approx(5_000, abs=10)  # off: no droop
    fd = lab.dev(PV).DERFreqDroop[0]
    fd.Ena.cvalue = 1
    fd.Ena.write()
    for hz in (50.02, 50.2, 50.5, 49.8):
        m = lab.step(PV, hz=hz, avail_w=5_000)
        over = max(hz - 50.036, 0.0) / (50 * 0.05)  # dead band 36 mHz, droop 5 %
        assert m["W"] == pytest.approx(max(5_000 - over * PV_W, 0.0), abs=0.01 * PV_W), hz
    m = lab.step(BAT, hz=49.7, avail_w=0.0, soc=0.5)  # a battery discharges on under-frequency
    assert m["W"] == pytest.approx(0.0, abs=10)  # its droop is not enabled
    lab.write(BAT, 711, "Ena", [1])
    m = lab.step(BAT, hz=49.7, avail_w=0.0)
    assert m["W"] == pytest.approx((50 - 0.036 - 49.7) / 2.5 * BAT_W, abs=0.01 * BAT_W)


def test_limit_active_power_is_lifted_at_the_next_step(lab: Lab) -> None:
    c = lab.dev(PV).DERCtlAC[0]
    c.WMaxLimPct.cvalue, c.WMaxLimPctEna.cvalue = 30, 1
    c.write()
    m = lab.step(PV, avail_w=8_000)
    assert m["W"] == pytest.approx(3_000, abs=10) and m["InvSt"] == 4 and m["ThrotPct"] == 62
    c.WMaxLimPctEna.cvalue = 0
    c.WMaxLimPctEna.write()
    m = lab.step(PV, avail_w=8_000)  # the next step: own dispatch again
    assert m["W"] == pytest.approx(8_000, abs=10) and m["InvSt"] == 3 and m["ThrotPct"] == 0


def test_trip_and_enter_service(lab: Lab) -> None:
    es = lab.dev(PV).DEREnterService[0]
    es.ESDlyTms.cvalue, es.ESRmpTms.cvalue = 20, 40
    es.write()
    assert lab.step(PV, avail_w=8_000)["W"] == pytest.approx(8_000, abs=10)
    m = lab.step(PV, v_pu=0.60, avail_w=8_000, dt_s=3.0)  # below 70 % for 3 s > 2 s: must trip
    assert m["W"] == 0 and m["ConnSt"] == 0 and m["InvSt"] == 6  # FAULT (tripped)
    m = lab.step(PV, v_pu=1.0, avail_w=8_000, dt_s=10.0)  # back in the window, delay running
    assert m["W"] == 0 and lab.bank.devices[PV].get(703, "ESDlyRemTms") == 10
    m = lab.step(PV, v_pu=1.0, avail_w=8_000, dt_s=10.0)  # 20 s in the window: enter, ramp from 0
    assert m["ConnSt"] == 1 and m["W"] == pytest.approx(0, abs=10)
    m = lab.step(PV, v_pu=1.0, avail_w=8_000, dt_s=10.0)  # 10 s of a 40-s ramp: 25 % of WMax
    assert m["W"] == pytest.approx(2_500, abs=0.01 * PV_W)
    m = lab.step(PV, v_pu=1.0, avail_w=8_000, dt_s=30.0)
    assert m["W"] == pytest.approx(8_000, abs=10)
    lab.write(PV, 703, "ES", [0])  # permit service off: cease to energize
    assert lab.step(PV, avail_w=8_000)["W"] == 0


def test_reversion_hands_the_battery_back_to_its_schedule(lab: Lab) -> None:
    c = lab.dev(BAT).DERCtlAC[0]
    c.WSetMod.cvalue, c.WSet.cvalue, c.WSetEnaRvrt.cvalue, c.WSetRvrtTms.cvalue = 1, 20_000, 0, 30
    c.WSetEna.cvalue = 1
    c.write()
    assert lab.step(BAT, avail_w=-5_000, soc=0.5, dt_s=10)["W"] == pytest.approx(20_000, abs=10)
    assert lab.bank.devices[BAT].get(704, "WSetRvrtRem") == 20
    m = lab.step(BAT, avail_w=-5_000, dt_s=25)  # no renewal: Ena := WSetEnaRvrt = 0
    assert m["W"] == pytest.approx(-5_000, abs=10)
    assert lab.bank.devices[BAT].get(704, "WSetEna") == 0
    soc = lab.dev(BAT).DERStorageCapacity[0]
    soc.read()
    assert soc.SoC.cvalue == pytest.approx(lab.bank.devices[BAT].soc * 100, abs=0.1)


def test_heartbeat_loss_reverts_setop_and_the_timed_controls(lab: Lab) -> None:
    assert lab.write(BAT, 802, "CtrlHb", [1]) == 0
    assert lab.write(BAT, 802, "SetOp", [2]) == 0  # disconnect
    assert lab.step(BAT, avail_w=-5_000, soc=0.5, dt_s=10)["W"] == 0
    assert lab.write(BAT, 715, "ControllerHb", [0, 2]) == 0  # still alive at t = 10
    assert lab.step(BAT, avail_w=-5_000, dt_s=15)["W"] == 0
    m = lab.step(BAT, avail_w=-5_000, dt_s=15)  # 30 s after the last heartbeat (timeout 20 s)
    assert m["W"] == pytest.approx(-5_000, abs=10)
    assert lab.bank.devices[BAT].get(802, "SetOp") == 1


@pytest.mark.parametrize(("model", "points", "x", "y", "why"), [
    (705, [(97.0, 40.0), (93.0, 0.0), (103.0, 0.0), (107.0, -40.0)], "V", "Var", "V1 < V2"),
    (705, [(93.0, -40.0), (97.0, 0.0), (103.0, 0.0), (107.0, 40.0)], "V", "Var", "non-increasing"),
    (705, [(93.0, 40.0), (97.0, 0.0), (107.0, -40.0)], "V", "Var", "IEEE 1547 asks for 4"),
    (706, [(109.0, 100.0), (104.0, 20.0)], "V", "W", "V1 < V2"),
    (712, [(50.0, 0.0), (20.0, 0.0), (100.0, -44.0)], "W", "Var", "P1 < P2 < P3"),
])
def test_bad_curves_are_refused_and_nothing_applied(lab: Lab, model: int, points: list[tuple[float, float]],
                                                    x: str, y: str, why: str) -> None:
    dev = lab.bank.devices[PV]
    before = dev.get(model, f"Crv[1].Pt[1].{x}")
    m = {705: "DERVoltVar", 706: "DERVoltWatt", 712: "DERWattVar"}[model]
    crv = getattr(lab.dev(PV), m)[0].Crv[1]
    crv.ActPt.cvalue = len(points)
    for i, (a, b) in enumerate(points):
        setattr_cvalue(crv.Pt[i], x, a)
        setattr_cvalue(crv.Pt[i], y, b)
    crv.write()  # points in range are accepted one by one; the curve is judged on adoption
    assert lab.write(PV, model, "AdptCrvReq", [2]) == 3
    assert dev.get(model, "AdptCrvRslt") == 2  # FAILED
    assert dev.get(model, f"Crv[1].Pt[1].{x}") == before  # the active curve is unchanged
    refused = [w for w in lab.bank.drain_writes() if w.exception_code]
    assert len(refused) == 1 and why in refused[0].points and refused[0].client.startswith("127.0.0.1:")


@pytest.mark.parametrize(("model", "name", "regs"), [
    (705, "Crv[2].Pt[1].Var", [12_000]),  # 120 % of VarMax: outside the rating
    (705, "Crv[1].Pt[1].V", [9_500]),  # curve 1 is the active curve: adopt instead
    (702, "VAMax", [20_000]),  # above VAMaxRtg (10 kVA)
    (704, "WSet", [0]),  # one register of a 32-bit point
    (703, "ESVLo", [10_600]),  # ESVLo above ESVHi (105 %)
    (711, "Ctl[2].KOf", [500]),  # droop 50 %: outside 1..10 %
    (715, "OpCtl", [2]),  # ENTER_STANDBY: not implemented
])
def test_bad_writes_are_refused_and_nothing_applied(lab: Lab, model: int, name: str, regs: list[int]) -> None:
    dev = lab.bank.devices[PV]
    before = list(dev.regs)
    assert lab.write(PV, model, name, regs) == 3
    assert dev.regs == before


def test_example_controller_volt_var_mode_writes_705(lab: Lab) -> None:
    t = threading.Thread(target=run_controller, kwargs=dict(
        host="127.0.0.1", port=lab.server.port, unit=PV, mode="volt-var", period_s=0.05,
        revert_s=60, duration_s=0.6))
    t.start()
    t.join(10)
    dev = lab.bank.devices[PV]
    assert dev.get(705, "Ena") == 1 and dev.get(705, "RvrtRem") is not None
    assert [dev.get(705, f"Crv[1].Pt[{i}].V") for i in range(1, 5)] == pytest.approx([92, 98, 102, 108])
    assert dev.get(715, "ControllerHb") > 0  # its heartbeat
    m = lab.step(PV, v_pu=1.05, avail_w=5_000)
    assert m["Var"] == pytest.approx(-0.5 * 0.44 * Q_MAX_PV, abs=0.01 * PV_W)
