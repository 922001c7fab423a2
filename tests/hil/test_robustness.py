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
    struct.pack(">HHHBBHH", 1, 0, 5, PV, 3, BASE_ADDR, 2),  # length says 5, PDU has 5 + extra
    struct.pack(">HHHBBHHB", 1, 0, 7, PV, 3, BASE_ADDR, 2, 0),  # FC3 PDU one byte too long
    struct.pack(">HHHBB", 1, 0, 2, PV, 0x64),  # 0x64 is no Modbus function code
    _read_req(1, PV, BASE_ADDR, 2) * 2,  # two frames in one segment
    _read_req(1, PV, BASE_ADDR, 2) + b"\xde\xad",  # trailing garbage
])
def test_bad_frames_drop_the_connection_only(server: ModbusServer, payload: bytes) -> None:
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
