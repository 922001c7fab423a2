"""The Modbus server in its own process (what ``twin hil serve`` runs): same answers as the
in-process server, writes reach the twin's bank at its next step, reads see the last step."""

from __future__ import annotations

import pytest
from pymodbus.client import ModbusTcpClient

from tests.hil.conftest import BAT, METER, PV, make_bank
from twin.hil.core import DeviceInput
from twin.hil.server_process import ServerProcess


def test_writes_reach_the_next_step_and_reads_see_the_last_one() -> None:
    bank = make_bank()
    m, bm = bank.devices[PV].map, bank.devices[BAT].map
    with ServerProcess(bank, port=0, max_requests_per_s=10_000) as srv:
        assert bank.link is srv
        c = ModbusTcpClient("127.0.0.1", port=srv.port, timeout=5, retries=0)
        assert c.connect()
        try:
            w = m.point(701, "W").addr
            assert c.read_holding_registers(w, count=1, device_id=PV).registers == [
                bank.devices[PV].published[w - m.start]]  # the twin's image
            ena = m.point(704, "WMaxLimPctEna").addr
            assert not c.write_registers(ena, [1, 500], device_id=PV).isError()  # 50.0 %
            # the server's mirror holds the write at once; the twin's bank at its next step
            assert c.read_holding_registers(ena, count=2, device_id=PV).registers == [1, 500]
            assert bank.devices[PV].get(704, "WMaxLimPctEna") == 0
            # refused as in-process: 120 % -> 0x03, a read-only point -> 0x03, outside -> 0x02
            assert c.write_registers(ena, [1, 1200], device_id=PV).exception_code == 3
            assert c.write_register(w, 100, device_id=PV).exception_code == 3
            assert c.write_register(m.end + 5, 1, device_id=PV).exception_code == 2
            assert c.read_holding_registers(40000, count=2, device_id=9).exception_code == 0x0B
            # a refused curve adoption marks AdptCrvRslt FAILED, on the twin too
            act = bm.point(705, "Crv[2].ActPt").addr
            assert not c.write_register(act, 3, device_id=BAT).isError()  # in range alone
            req = bm.point(705, "AdptCrvReq").addr
            assert c.write_register(req, 2, device_id=BAT).exception_code == 3  # 1547: 4 points
            rslt = bm.point(705, "AdptCrvRslt").addr
            assert c.read_holding_registers(rslt, count=1, device_id=BAT).registers == [2]

            out = bank.step(now_s=60, dt_s=60, inputs={PV: DeviceInput(available_w=8_000),
                                                       BAT: DeviceInput(available_w=-5_000),
                                                       METER: DeviceInput(available_w=1_000)})
            assert out[PV].w == pytest.approx(5_000)  # 50 % of 10 kW
            assert bank.devices[BAT].get(705, "AdptCrvRslt") == 2
            # the step's state is what the next read returns (no wait, no retry)
            got = c.read_holding_registers(w, count=1, device_id=PV).registers
            assert got == [bank.devices[PV].published[w - m.start]]
            assert bank.devices[PV].get(701, "W") == pytest.approx(5_000)
            # a write after the step is in the next one, with the records of all of them
            assert not c.write_register(ena, 0, device_id=PV).isError()  # lifted
            out = bank.step(now_s=120, dt_s=60, inputs={PV: DeviceInput(available_w=8_000)})
            assert out[PV].w == pytest.approx(8_000)
        finally:
            c.close()
    assert bank.link is None
    assert srv.stats.requests == 12 and srv.stats.exceptions == 5  # final, from the process
    writes = bank.drain_writes()
    assert [x.exception_code for x in writes] == [0, 3, 3, 2, 0, 3, 0]
    assert all(x.client.startswith("127.0.0.1:") for x in writes)
    assert writes[0].points == "704.WMaxLimPctEna,704.WMaxLimPct"


def test_a_port_in_use_is_a_clear_error() -> None:
    bank = make_bank()
    with ServerProcess(bank, port=0) as srv, pytest.raises(OSError, match="cannot listen"):
        ServerProcess(make_bank(), port=srv.port).start()


def test_both_servers_check_one_set_of_options() -> None:
    from twin.hil.server import ModbusServer, ServerOptions

    for cls in (ModbusServer, ServerProcess):  # checked before anything listens or starts
        with pytest.raises(ValueError, match=r"max_connections=1 must leave a slot .*127\.0\.0\.2"):
            cls(make_bank(), max_connections=1, controller_host="127.0.0.2")
        with pytest.raises(ValueError, match="frame_timeout_s must be > 0"):
            cls(make_bank(), frame_timeout_s=0)
        with pytest.raises(TypeError, match="not both"):
            cls(make_bank(), ServerOptions(), port=0)
        with pytest.raises(TypeError, match="max_conections"):
            cls(make_bank(), max_conections=3)
    opts = ServerOptions(port=0, max_connections=3)
    assert ModbusServer(make_bank(), opts).max_connections == ServerProcess(make_bank(), opts).options.max_connections == 3
