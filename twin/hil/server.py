"""One Modbus TCP server for all HIL devices (one unit id per device), asyncio, own thread.

The server runs its own asyncio event loop in a background thread (mosaik runs its own
loop in the main thread). The transport and the framing policy are ours; request function
codes, response PDUs and the MBAP encoding are pymodbus's (``pymodbus.pdu``,
``pymodbus.framer.FramerSocket``). pymodbus's own ``ModbusTcpServer`` is not used because it
offers no hook for validating a write as a whole with a chosen exception code, no
connection limit and no idle timeout, and its datastore API is being replaced (3.x -> 4).

Policy (each point is a test in ``tests/hil``):

* function codes 3 (read holding registers), 6 and 16 (write); other Modbus function
  codes -> exception 0x01; a byte that is no Modbus function code -> connection dropped;
* reads or writes outside a device's map -> 0x02; writes refused by the device
  (read-only point, NaN, out of range, above nameplate, split point) -> 0x03 and nothing
  is applied; more than 125 registers read (123 written) -> 0x03; unknown unit -> 0x0B;
* strict framing, one request at a time per connection: a protocol id other than 0, a
  length field outside 2..254 or not matching the PDU, two frames or trailing bytes in one
  read -> the connection is dropped; other connections are not affected;
* ``max_connections`` concurrent connections (further ones are closed at once);
  a connection idle for ``idle_timeout_s`` or holding an incomplete frame for
  ``frame_timeout_s`` (half-open, slowloris) is closed.
"""

from __future__ import annotations

import asyncio
import struct
import threading
from dataclasses import dataclass
from typing import Any

from pymodbus.framer import FramerSocket
from pymodbus.pdu import DecodePDU, ExceptionResponse, ModbusPDU
from pymodbus.pdu.register_message import (
    ReadHoldingRegistersResponse,
    WriteMultipleRegistersResponse,
    WriteSingleRegisterResponse,
)

from twin.hil.core import HILBank
from twin.hil.device import WriteRejected

__all__ = ["ModbusServer", "ServerStats"]

ILLEGAL_FUNCTION = 0x01
ILLEGAL_VALUE = 0x03
DEVICE_FAILURE = 0x04
GATEWAY_NO_RESPONSE = 0x0B
MAX_READ = 125
MAX_WRITE = 123
_MBAP = struct.Struct(">HHHB")


@dataclass
class ServerStats:
    accepted: int = 0
    refused: int = 0  # over the connection limit
    dropped: int = 0  # framing violations
    timed_out: int = 0
    requests: int = 0
    exceptions: int = 0


class _Conn(asyncio.Protocol):
    def __init__(self, server: ModbusServer) -> None:
        self.server = server
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self._timer: asyncio.TimerHandle | None = None
        self.counted = False

    # -- lifecycle -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        srv = self.server
        if len(srv.conns) >= srv.max_connections:
            srv.stats.refused += 1
            transport.abort()
            return
        self.counted = True
        srv.conns.add(self)
        srv.stats.accepted += 1
        self._arm(srv.idle_timeout_s)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.server.conns.discard(self)

    def _arm(self, seconds: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self.server.loop.call_later(seconds, self._timeout)

    def _timeout(self) -> None:
        self.server.stats.timed_out += 1
        self._close()

    def _drop(self) -> None:
        self.server.stats.dropped += 1
        self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- framing -------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if not self.counted:
            return
        self.buf += data
        if len(self.buf) < 7:
            self._arm(self.server.frame_timeout_s)
            return
        tid, pid, length, unit = _MBAP.unpack_from(self.buf)
        if pid != 0 or not 2 <= length <= 254:
            self._drop()
            return
        size = 6 + length
        if len(self.buf) < size:
            self._arm(self.server.frame_timeout_s)
            return
        if len(self.buf) > size:  # a second frame or trailing garbage in one read
            self._drop()
            return
        pdu, self.buf = self.buf[7:size], b""
        self._arm(self.server.idle_timeout_s)
        response = self._handle(unit, pdu)
        if response is None:
            self._drop()
            return
        response.transaction_id = tid
        response.dev_id = unit
        assert self.transport is not None
        self.transport.write(self.server.framer.buildFrame(response))

    # -- requests ------------------------------------------------------------------
    def _handle(self, unit: int, pdu: bytes) -> ModbusPDU | None:
        """The response PDU, or None to drop the connection."""
        srv = self.server
        fc = pdu[0]
        if fc not in srv.known_function_codes:
            return None
        srv.stats.requests += 1
        if fc not in (3, 6, 16):
            return self._exc(fc, ILLEGAL_FUNCTION)
        body = pdu[1:]
        if fc in (3, 6) and len(body) != 4:
            return None
        if fc == 16 and (len(body) < 5 or len(body) != 5 + body[4]):
            return None
        if unit not in srv.bank.devices:
            return self._exc(fc, GATEWAY_NO_RESPONSE)
        try:
            if fc == 3:
                address, count = struct.unpack(">HH", body)
                if not 1 <= count <= MAX_READ:
                    return self._exc(fc, ILLEGAL_VALUE)
                regs = srv.bank.read(unit, address, count)
                return ReadHoldingRegistersResponse(registers=regs)
            if fc == 6:
                address, value = struct.unpack(">HH", body)
                code = srv.bank.write(unit, address, [value], client=self.peer)
                if code:
                    return self._exc(fc, code)
                return WriteSingleRegisterResponse(address=address, registers=[value])
            address, count, nbytes = struct.unpack(">HHB", body[:5])
            if not 1 <= count <= MAX_WRITE or nbytes != 2 * count:
                return self._exc(fc, ILLEGAL_VALUE)
            values = list(struct.unpack(f">{count}H", body[5:]))
            code = srv.bank.write(unit, address, values, client=self.peer)
            if code:
                return self._exc(fc, code)
            return WriteMultipleRegistersResponse(address=address, count=count)
        except WriteRejected as exc:
            return self._exc(fc, exc.code)
        except Exception:  # a bug in the bank must not take the server down
            return self._exc(fc, DEVICE_FAILURE)

    def _exc(self, fc: int, code: int) -> ModbusPDU:
        self.server.stats.exceptions += 1
        return ExceptionResponse(fc, code)


class ModbusServer:
    """Modbus TCP server over a :class:`HILBank`; ``start()`` returns once it listens.

    ``port=0`` picks a free port (see :attr:`port` after ``start()``).
    """

    def __init__(self, bank: HILBank, *, host: str = "127.0.0.1", port: int = 5020,
                 max_connections: int = 16, idle_timeout_s: float = 60.0,
                 frame_timeout_s: float = 2.0) -> None:
        self.bank = bank
        self.host = host
        self.port = port
        self.max_connections = max_connections
        self.idle_timeout_s = idle_timeout_s
        self.frame_timeout_s = frame_timeout_s
        self.stats = ServerStats()
        self.conns: set[_Conn] = set()
        self.framer = FramerSocket(DecodePDU(True))
        self.known_function_codes = frozenset(DecodePDU(True).pdu_table)
        self.loop: asyncio.AbstractEventLoop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

    def start(self, timeout_s: float = 10.0) -> ModbusServer:
        self._thread = threading.Thread(target=self._run, name="hil-modbus", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout_s):
            raise TimeoutError("Modbus server did not start")
        if self._error is not None:
            raise OSError(f"Modbus server cannot listen on {self.host}:{self.port}: {self._error}")
        return self

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self._server = self.loop.run_until_complete(
                self.loop.create_server(lambda: _Conn(self), self.host, self.port, reuse_address=True)
            )
            self.port = self._server.sockets[0].getsockname()[1]
        except BaseException as exc:  # reported by start()
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            self.loop.run_forever()
        finally:
            self.loop.close()

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._thread is None or not self._thread.is_alive():
            return

        async def _shutdown() -> None:
            if self._server is not None:
                self._server.close()
            for c in list(self.conns):
                c._close()
            await asyncio.sleep(0)
            self.loop.stop()

        asyncio.run_coroutine_threadsafe(_shutdown(), self.loop)
        self._thread.join(timeout_s)

    def __enter__(self) -> ModbusServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
