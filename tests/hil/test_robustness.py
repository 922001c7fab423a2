"""Framing, limits, timeouts and atomic updates of the Modbus TCP server (raw sockets)."""

from __future__ import annotations

import socket
import struct
import threading
import time

import pytest
from pymodbus.client import ModbusTcpClient

from twin.hil.core import DeviceInput, HILBank
from twin.hil.server import ModbusServer
from twin.hil.sunspec_map import BASE_ADDR

PV = 1


def _sock(server: ModbusServer) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", server.port), timeout=2)
    s.settimeout(2)
    return s


def _read_req(tid: int, unit: int, addr: int, count: int) -> bytes:
    return struct.pack(">HHHBBHH", tid, 0, 6, unit, 3, addr, count)


def _recv_frame(s: socket.socket) -> bytes:
    head = b""
    while len(head) < 7:
        chunk = s.recv(7 - len(head))
        if not chunk:
            raise ConnectionError("closed")
        head += chunk
    n = struct.unpack(">H", head[4:6])[0] - 1
    body = b""
    while len(body) < n:
        chunk = s.recv(n - len(body))
        if not chunk:
            raise ConnectionError("closed")
        body += chunk
    return head + body


def _closed(s: socket.socket, timeout: float = 2.0) -> bool:
    s.settimeout(timeout)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def _still_serves(server: ModbusServer) -> None:
    s = _sock(server)
    try:
        s.sendall(_read_req(9, PV, BASE_ADDR, 2))
        assert _recv_frame(s)[-4:] == b"SunS"
    finally:
        s.close()


def test_more_than_125_registers_is_an_exception(server: ModbusServer) -> None:
    s = _sock(server)
    try:
        s.sendall(_read_req(1, PV, BASE_ADDR, 126))
        frame = _recv_frame(s)
        assert frame[7] == 0x83 and frame[8] == 0x03
        s.sendall(_read_req(2, PV, BASE_ADDR, 0))
        assert _recv_frame(s)[7:] == b"\x83\x03"
    finally:
        s.close()


@pytest.mark.parametrize("payload", [
    struct.pack(">HHHBBHH", 1, 7, 6, PV, 3, BASE_ADDR, 2),  # protocol id not 0
    struct.pack(">HHHBB", 1, 0, 300, PV, 3) + b"\0" * 4,  # length field above 254
    struct.pack(">HHHBB", 1, 0, 1, PV, 3),  # length field below 2 (no function code)
])
def test_unframeable_headers_drop_the_connection_only(server: ModbusServer, payload: bytes) -> None:
    other = _sock(server)
    bad = _sock(server)
    try:
        bad.sendall(payload)
        assert _closed(bad)
        other.sendall(_read_req(5, PV, BASE_ADDR, 2))  # an established client is unaffected
        assert _recv_frame(other)[-4:] == b"SunS"
        _still_serves(server)
    finally:
        bad.close()
        other.close()


def test_outstanding_requests_are_answered_in_order(server: ModbusServer) -> None:
    s = _sock(server)
    try:
        # three requests in one segment, then one split over three segments
        s.sendall(_read_req(1, PV, BASE_ADDR, 2) + _read_req(2, PV, BASE_ADDR + 2, 1)
                  + struct.pack(">HHHBB", 3, 0, 2, PV, 0x64))
        frames = [_recv_frame(s) for _ in range(3)]
        assert [struct.unpack(">H", f[:2])[0] for f in frames] == [1, 2, 3]
        assert frames[0][-4:] == b"SunS" and frames[1][-2:] == b"\x00\x01"  # model 1's ID
        assert frames[2][7:] == b"\xe4\x01"  # 0x64 is no Modbus function: exception 0x01
        req = _read_req(4, PV, BASE_ADDR, 2)
        for part in (req[:3], req[3:9], req[9:]):
            s.sendall(part)
            time.sleep(0.02)
        assert _recv_frame(s)[-4:] == b"SunS"
        # a PDU that does not fit its function code: 0x03, the stream stays in sync
        s.sendall(struct.pack(">HHHBBHHB", 5, 0, 7, PV, 3, BASE_ADDR, 2, 0) + _read_req(6, PV, BASE_ADDR, 2))
        assert _recv_frame(s)[7:] == b"\x83\x03"
        assert _recv_frame(s)[-4:] == b"SunS"
    finally:
        s.close()


def test_every_unknown_function_code_is_exception_0x01(bank: HILBank) -> None:
    with ModbusServer(bank, port=0, max_requests_per_s=1000) as srv:
        s = _sock(srv)
        try:
            codes = [fc for fc in range(256) if fc not in (3, 6, 16)]
            s.sendall(b"".join(struct.pack(">HHHBB", fc, 0, 2, PV, fc) for fc in codes))
            for fc in codes:
                f = _recv_frame(s)
                assert struct.unpack(">H", f[:2])[0] == fc
                assert f[7:] == bytes((fc | 0x80, 0x01))
            _still_serves(srv)
        finally:
            s.close()


def test_slow_drip_cannot_extend_the_frame_deadline(server: ModbusServer) -> None:
    s = _sock(server)
    t0 = time.monotonic()
    try:
        req = _read_req(1, PV, BASE_ADDR, 2)
        closed = False
        for b in req[:-1]:  # one byte every 0.1 s: the 0.5-s frame deadline passes mid-frame
            try:
                s.sendall(bytes([b]))
            except OSError:
                closed = True
                break
            time.sleep(0.1)
        assert closed or _closed(s)
        assert time.monotonic() - t0 < 1.3
    finally:
        s.close()
    _still_serves(server)


def test_rate_limit_answers_0x06(bank: HILBank) -> None:
    with ModbusServer(bank, port=0, max_requests_per_s=20) as srv:
        s = _sock(srv)
        try:
            s.sendall(b"".join(_read_req(i, PV, BASE_ADDR, 2) for i in range(40)))
            codes = [_recv_frame(s)[7] for _ in range(40)]
            assert codes.count(3) >= 20 and codes.count(0x83) >= 15
            assert srv.stats.rate_limited == codes.count(0x83)
            time.sleep(0.3)  # the budget refills
            s.sendall(_read_req(99, PV, BASE_ADDR, 2))
            assert _recv_frame(s)[-4:] == b"SunS"
        finally:
            s.close()
        c = ModbusTcpClient("127.0.0.1", port=srv.port, timeout=2, retries=0)
        c.connect()
        try:
            assert c.read_holding_registers(BASE_ADDR, count=2, device_id=PV).registers == [0x5375, 0x6E53]
        finally:
            c.close()


def test_controller_keeps_its_reserved_slot(bank: HILBank) -> None:
    with ModbusServer(bank, port=0, max_connections=4, controller_host="127.0.0.2") as srv:
        others = [_sock(srv) for _ in range(3)]
        try:
            for s in others:
                s.sendall(_read_req(1, PV, BASE_ADDR, 2))
                assert _recv_frame(s)[-4:] == b"SunS"
            extra = _sock(srv)  # a fourth general client: the last slot is the controller's
            assert _closed(extra)
            extra.close()
            ctl = socket.create_connection(("127.0.0.1", srv.port), timeout=2,
                                           source_address=("127.0.0.2", 0))
            try:
                ctl.sendall(_read_req(7, PV, BASE_ADDR, 2))
                assert _recv_frame(ctl)[-4:] == b"SunS"
            finally:
                ctl.close()
        finally:
            for s in others:
                s.close()


def test_truncated_mbap_and_half_open_connections_time_out(server: ModbusServer) -> None:
    s = _sock(server)
    t0 = time.monotonic()
    try:
        s.sendall(b"\x00\x01\x00")  # truncated MBAP header, then silence
        assert _closed(s, timeout=3.0)
        assert time.monotonic() - t0 < 2.5  # frame_timeout_s = 0.5
    finally:
        s.close()
    idle = _sock(server)
    try:
        assert _closed(idle, timeout=3.0)  # idle_timeout_s = 1.0
    finally:
        idle.close()
    assert server.stats.timed_out >= 2
    _still_serves(server)


def test_connection_limit_holds(server: ModbusServer) -> None:
    socks = [_sock(server) for _ in range(server.max_connections)]
    try:
        for s in socks:  # all are being served
            s.sendall(_read_req(1, PV, BASE_ADDR, 2))
            assert _recv_frame(s)[-4:] == b"SunS"
        extra = _sock(server)
        assert _closed(extra)
        extra.close()
        assert server.stats.refused >= 1
    finally:
        for s in socks:
            s.close()
    deadline = time.monotonic() + 2
    while server.conns and time.monotonic() < deadline:
        time.sleep(0.02)
    _still_serves(server)


def test_ten_clients_at_10hz_see_no_torn_values(server: ModbusServer, bank: HILBank) -> None:
    """The twin steps as fast as it can while 10 clients poll: 32/64-bit points never tear."""
    dev = bank.devices[PV]
    hz, tot = dev.map.point(701, "Hz"), dev.map.point(701, "TotWhInj")
    stop = threading.Event()
    errors: list[str] = []
    reads = [0]

    def twin() -> None:
        t = 0
        while not stop.is_set():
            t += 1
            # Hz alternates across a 16-bit boundary (raw 4999 / 0x00010001)
            hz_val = 49.99 if t % 2 else 655.37
            bank.step(now_s=t, dt_s=3600.0, inputs={PV: DeviceInput(available_w=9_000.0, hz=hz_val)})
            time.sleep(0.0005)

    def client() -> None:
        c = ModbusTcpClient("127.0.0.1", port=server.port, timeout=2, retries=0)
        c.connect()
        try:
            for _ in range(15):  # 1.5 s at 10 Hz
                r = c.read_holding_registers(dev.map.blocks[1].addr, count=125, device_id=PV)
                regs = r.registers
                base = dev.map.blocks[1].addr
                hz_raw = (regs[hz.addr - base] << 16) | regs[hz.addr - base + 1]
                if hz_raw not in (4999, 65537):
                    errors.append(f"torn Hz {hz_raw}")
                e = regs[tot.addr - base:tot.addr - base + 4]
                if e[0] or e[1]:
                    errors.append(f"energy high words {e}")
                reads[0] += 1
                time.sleep(0.1)
        finally:
            c.close()

    tw = threading.Thread(target=twin)
    tw.start()
    clients = [threading.Thread(target=client) for _ in range(10)]
    for th in clients:
        th.start()
    for th in clients:
        th.join(10)
    stop.set()
    tw.join(5)
    assert not errors
    assert reads[0] == 150
