"""SunSpec conformance, measurements, controls and reversion timers (pymodbus + pysunspec2)."""

from __future__ import annotations

import math

import pytest
import sunspec2.modbus.client as ss
from pymodbus.client import ModbusTcpClient

from twin.hil.core import DeviceInput, HILBank
from twin.hil.device import DeviceSpec
from twin.hil.server import ModbusServer
from twin.hil.sunspec_map import (
    BASE_ADDR,
    DEVICE_MODELS,
    build_register_map,
    decode_raw,
    encode_raw,
)

PV, BAT, METER = 1, 2, 3  # unit ids of the conftest bank


def _ss_device(server: ModbusServer, unit: int) -> ss.SunSpecModbusClientDeviceTCP:
    d = ss.SunSpecModbusClientDeviceTCP(slave_id=unit, ipaddr="127.0.0.1", ipport=server.port, timeout=2)
    d.scan()
    return d


@pytest.mark.parametrize("kind", sorted(DEVICE_MODELS))
def test_map_layout_from_pysunspec2(kind: str) -> None:
    m = build_register_map(kind)
    assert m.model_ids == (1, *DEVICE_MODELS[kind])
    img = m.initial_image()
    assert img[0:2] == [0x5375, 0x6E53]  # "SunS"
    addr = BASE_ADDR + 2
    for b in m.blocks:  # ID/L chain is contiguous and matches the definitions
        assert b.addr == addr and img[addr - BASE_ADDR] == b.model_id
        assert img[addr + 1 - BASE_ADDR] == b.length == sum(p.size for p in b.points) - 2
        addr = b.end
    assert img[addr - BASE_ADDR:addr + 2 - BASE_ADDR] == [0xFFFF, 0]


def test_scaled_encoding_roundtrip_and_sentinels() -> None:
    m = build_register_map("battery")
    wset = m.point(704, "WSet")
    assert decode_raw(wset, encode_raw(wset, -12_345)) == -12_345
    assert encode_raw(wset, None) == [0x8000, 0]
    assert decode_raw(wset, [0x8000, 0]) is None
    soc = m.point(802, "SoC")
    assert encode_raw(soc, None) == [0xFFFF]
    with pytest.raises(OverflowError):
        encode_raw(soc, 70_000)


def test_pysunspec2_scans_and_reads_every_model(server: ModbusServer, bank: HILBank) -> None:
    for unit, kind in ((PV, "pv_inverter"), (BAT, "battery"), (METER, "meter")):
        d = _ss_device(server, unit)
        try:
            ids = [m.model_id for m in d.model_list]
            assert ids == [1, *DEVICE_MODELS[kind]]
            for model in d.model_list:
                model.read()
                assert model.len == bank.devices[unit].map.blocks[ids.index(model.model_id)].length
            assert d.common[0].Mn.cvalue == "gridtwin"
        finally:
            d.close()


def test_measurements_match_the_twin(server: ModbusServer) -> None:
    pv, bat, meter = (_ss_device(server, u) for u in (PV, BAT, METER))
    try:
        m701 = pv.DERMeasureAC[0]
        m701.read()
        assert m701.W.cvalue == pytest.approx(8_000, abs=1)
        assert m701.LNV.cvalue == pytest.approx(236.0, abs=0.1)
        assert m701.Hz.cvalue == pytest.approx(50.0)
        b = bat.models[802][0]
        b.read()
        assert b.SoC.cvalue == pytest.approx(50.0, abs=0.1)
        assert bat.DERMeasureAC[0].W.cvalue == pytest.approx(-5_000, abs=10)
        mm = meter.models[213][0]
        mm.read()
        assert mm.W.cvalue == pytest.approx(42_000) and mm.VAR.cvalue == pytest.approx(3_000)
    finally:
        for d in (pv, bat, meter):
            d.close()


def _client(server: ModbusServer) -> ModbusTcpClient:
    c = ModbusTcpClient("127.0.0.1", port=server.port, timeout=2, retries=0)
    assert c.connect()
    return c


def test_control_write_changes_the_twin_at_the_next_step(server: ModbusServer, bank: HILBank) -> None:
    m = bank.devices[PV].map
    c = _client(server)
    try:
        ena = m.point(704, "WMaxLimPctEna").addr
        assert not c.write_registers(ena, [1, 500], device_id=PV).isError()  # 50.0 %
        bat_map = bank.devices[BAT].map
        ws = bat_map.point(704, "WSet").addr
        raw = round(12_000 / 10 ** bank.devices[BAT].w_sf)  # WSet_SF = 1 for a 30 kW battery
        assert not c.write_registers(ws, [0, raw], device_id=BAT).isError()
        assert not c.write_register(bat_map.point(704, "WSetEna").addr, 1, device_id=BAT).isError()
    finally:
        c.close()
    out = bank.step(now_s=60, dt_s=60, inputs={PV: DeviceInput(available_w=8_000),
                                               BAT: DeviceInput(available_w=-5_000)})
    assert out[PV].w == pytest.approx(5_000)  # 50 % of 10 kW nameplate
    assert out[BAT].w == pytest.approx(12_000)  # discharge set-point replaces the agents' dispatch
    assert bank.devices[PV].get(701, "W") == pytest.approx(5_000)
    assert bank.devices[PV].get(701, "ThrotPct") == 38
    writes = bank.drain_writes()
    assert [w.exception_code for w in writes] == [0, 0, 0]
    assert all(w.client.startswith("127.0.0.1:") for w in writes)


def test_revert_timer_reverts_without_renewal() -> None:
    clock = [0.0]
    bank = HILBank([DeviceSpec(unit_id=1, name="pv", kind="pv_inverter", nameplate_w=10_000)],
                   clock=lambda: clock[0])
    m = bank.devices[1].map
    a = m.point(704, "WMaxLimPctEnaRvrt").addr
    assert bank.write(1, a, [1, 0, 30], client="t") == 0  # reversion on, 30 s
    assert bank.write(1, m.point(704, "WMaxLimPctRvrt").addr, [800], client="t") == 0  # revert to 80 %
    assert bank.write(1, m.point(704, "WMaxLimPctEna").addr, [1, 200], client="t") == 0  # 20 %
    inp = {1: DeviceInput(available_w=9_000)}
    assert bank.step(now_s=10, dt_s=10, inputs=inp)[1].w == pytest.approx(2_000)
    assert bank.devices[1].get(704, "WMaxLimPctRvrtRem") == 20
    clock[0] = 20.0  # renewal restarts the timer
    assert bank.write(1, m.point(704, "WMaxLimPct").addr, [200], client="t") == 0
    assert bank.step(now_s=45, dt_s=35, inputs=inp)[1].w == pytest.approx(2_000)
    out = bank.step(now_s=50, dt_s=5, inputs=inp)[1]  # 30 s after the last renewal
    assert out.reverted == ("WMaxLimPct",)
    assert out.w == pytest.approx(8_000)
    assert bank.devices[1].get(704, "WMaxLimPctRvrtRem") == 0


@pytest.mark.parametrize(("unit", "model", "name", "regs", "code"), [
    (PV, 701, "W", [100], 3),  # read-only point
    (PV, 704, "WMaxLimPct", [0xFFFF], 3),  # NaN (not-implemented sentinel)
    (PV, 704, "WMaxLimPct", [1001], 3),  # 100.1 % out of range
    (BAT, 704, "WSet", [0, 3_001], 3),  # 30.01 kW (WSet_SF 1): above the 30 kW nameplate
    (PV, 704, "WSet", [0xFFFF, 0xFC18], 3),  # PV cannot absorb (-1000 W)
    (PV, 704, "WSetMod", [7], 3),  # not one of the enum's symbols
    (PV, 704, "WSet", [0], 3),  # splits a 32-bit point
    (METER, 213, "W", [0, 0], 3),  # meter is read-only
    (PV, 1, "DA", [5], 3),  # writable in the model, not implemented here
])
def test_invalid_writes_are_refused_and_nothing_applied(server: ModbusServer, bank: HILBank, unit: int,
                                                        model: int, name: str, regs: list[int],
                                                        code: int) -> None:
    m = bank.devices[unit].map
    addr = m.point(model, name).addr
    before = list(bank.devices[unit].regs)
    c = _client(server)
    try:
        r = c.write_registers(addr, regs, device_id=unit)
        assert r.isError() and r.exception_code == code
        # a refused multi-point write applies none of its points
        ena = m.point(704, "WMaxLimPctEna").addr if unit != METER else addr
        if unit != METER:
            r = c.write_registers(ena, [1, 1200], device_id=unit)  # 120 %: whole write refused
            assert r.exception_code == 3
    finally:
        c.close()
    assert bank.devices[unit].regs == before


def test_outside_the_map_is_0x02_and_unknown_unit_0x0b(server: ModbusServer) -> None:
    c = _client(server)
    try:
        assert c.read_holding_registers(39_990, count=5, device_id=PV).exception_code == 2
        end = build_register_map("pv_inverter").end
        assert c.read_holding_registers(end - 1, count=2, device_id=PV).exception_code == 2
        assert c.write_register(end, 1, device_id=PV).exception_code == 2
        assert c.read_holding_registers(BASE_ADDR, count=2, device_id=99).exception_code == 0x0B
        assert c.read_input_registers(BASE_ADDR, count=2, device_id=PV).exception_code == 1
        assert c.read_holding_registers(BASE_ADDR, count=125, device_id=PV).registers[:2] == [0x5375, 0x6E53]
    finally:
        c.close()


def test_nan_meter_before_first_step() -> None:
    bank = HILBank([DeviceSpec(unit_id=1, name="m", kind="meter", nameplate_w=1e5)])
    p = bank.devices[1].map.point(213, "W")
    assert math.isnan(float(decode_raw(p, bank.read(1, p.addr, 2)) or math.nan))
