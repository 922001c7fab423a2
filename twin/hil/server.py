"""One Modbus TCP server for all HIL devices (one unit id per device), asyncio, own thread.

The server runs its own asyncio event loop in a background thread (mosaik runs its own
loop in the main thread). Framing, policy and the PDU encoding are ours (a few ``struct``
calls, checked against pymodbus, pysunspec2, pyModbusTCP-style raw clients in
``tests/hil``). pymodbus's own ``ModbusTcpServer`` is not used because it offers no hook
for validating a write as a whole with a chosen exception code, no connection limit, no
idle timeout and no rate limit, and its datastore API is being replaced (3.x -> 4).

Policy (each point is a test in ``tests/hil``), after the Modbus application protocol
v1.1b3 and the Modbus messaging on TCP/IP implementation guide v1.0b:

* the TCP stream is parsed as a byte stream: a segment may carry several requests or
  part of one; several outstanding requests are answered in order;
* function codes 3 (read holding registers), 6 and 16 (write); any other function code
  (1..255) -> exception 0x01; a request whose PDU length does not fit its function code
  -> 0x03; reads or writes outside a device's map -> 0x02; writes refused by the device
  (read-only point, NaN, out of range, above a rating, a split multi-register point,
  a curve breaking its rules) -> 0x03 and nothing is applied; more than 125 registers read
  (123 written) -> 0x03; unknown unit -> 0x0B;
* a per-connection request budget (token bucket, ``max_requests_per_s`` with a burst of
  the same size): a request over it is answered with 0x06 (server device busy) and not
  executed;
* an MBAP header that cannot start a frame (protocol id other than 0, length field outside
  2..254) -> the connection is dropped (the stream cannot be resynchronized); other
  connections are not affected; a client that does not read its responses (more than
  ``MAX_WRITE_BUFFER`` bytes queued) is dropped;
* timeouts: each frame must be complete ``frame_timeout_s`` after its first byte arrived
  (a slow drip does not extend it), and a connection without a complete request for
  ``idle_timeout_s`` is closed;
* ``max_connections`` concurrent connections; with ``controller_host`` set, one of them is
  kept for connections from that address (further connections are closed at once).
"""

from __future__ import annotations

import asyncio
import logging
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

from twin.hil.core import HILBank
from twin.hil.device import WriteRejected

__all__ = ["ModbusServer", "ServerOptions", "ServerStats"]

ILLEGAL_FUNCTION = 0x01
ILLEGAL_VALUE = 0x03
DEVICE_FAILURE = 0x04
DEVICE_BUSY = 0x06
GATEWAY_NO_RESPONSE = 0x0B
MAX_READ = 125
MAX_WRITE = 123
MAX_WRITE_BUFFER = 256 * 1024  # bytes of responses a client may leave unread
_MBAP = struct.Struct(">HHHB")
_HH = struct.Struct(">HH")
_log = logging.getLogger("twin.hil")


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Where and under which limits a Modbus server listens (see the module doc).

    One set for :class:`ModbusServer` and :class:`twin.hil.server_process.ServerProcess`
    (which hands it to the server in its child process). ``port=0`` picks a free port.
    """

    host: str = "127.0.0.1"
    port: int = 5020
    max_connections: int = 16
    idle_timeout_s: float = 60.0
    frame_timeout_s: float = 2.0
    max_requests_per_s: int = 100
    controller_host: str | None = None

    def __post_init__(self) -> None:
        if self.max_connections < (2 if self.controller_host is not None else 1):
            raise ValueError(f"max_connections={self.max_connections} must leave a slot besides "
                             f"the controller's (controller_host={self.controller_host!r})")
        for name in ("idle_timeout_s", "frame_timeout_s", "max_requests_per_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be in 0..65535, got {self.port}")

    @staticmethod
    def of(options: ServerOptions | None, overrides: dict[str, Any]) -> ServerOptions:
        """``options`` or, when None, the options built from keyword ``overrides``."""
        if options is not None and overrides:
            raise TypeError(f"give options or keyword options, not both ({sorted(overrides)})")
        return options if options is not None else ServerOptions(**overrides)


@dataclass
class ServerStats:
    accepted: int = 0
    refused: int = 0  # over the connection limit
    dropped: int = 0  # framing violations, clients not reading
    timed_out: int = 0
    requests: int = 0
    exceptions: int = 0
    rate_limited: int = 0


class _Conn(asyncio.Protocol):
    def __init__(self, server: ModbusServer) -> None:
        self.server = server
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.host = "?"
        self.controller = False
        self._timer: asyncio.TimerHandle | None = None
        self._frame_deadline = 0.0  # loop time by which the incomplete frame must be complete
        self.counted = False
        self.tokens = float(server.max_requests_per_s)
        self._t_tokens = time.monotonic()

    # -- lifecycle -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.host = str(peer[0]) if peer else "?"
        self.peer = f"{peer[0]}:{peer[1]}" if peer else "?"
        srv = self.server
        self.controller = srv.controller_host is not None and self.host == srv.controller_host
        general = sum(1 for c in srv.conns if not c.controller)
        reserve = 1 if srv.controller_host is not None else 0
        if (len(srv.conns) >= srv.max_connections
                or (not self.controller and general >= srv.max_connections - reserve)):
            srv.stats.refused += 1
            _log.warning("hil: connection from %s refused (%d connections open)", self.peer, len(srv.conns))
            transport.abort()
            return
        self.counted = True
        srv.conns.add(self)
        srv.stats.accepted += 1
        self._rearm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self.server.conns.discard(self)

    def _rearm(self) -> None:
        """Timer: the incomplete frame's deadline, or the idle timeout when nothing is pending."""
        if self._timer is not None:
            self._timer.cancel()
        loop = self.server.loop
        when = self._frame_deadline if self.buf else loop.time() + self.server.idle_timeout_s
        self._timer = loop.call_at(when, self._timeout)

    def _timeout(self) -> None:
        self.server.stats.timed_out += 1
        self._close()

    def _drop(self, why: str) -> None:
        self.server.stats.dropped += 1
        _log.warning("hil: connection from %s dropped: %s", self.peer, why)
        self._close()

    def _close(self) -> None:
        if self.transport is not None:
            self.transport.abort()
        self.counted = False

    # -- framing -------------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if not self.counted:
            return
        loop = self.server.loop
        started = not self.buf
        if started:  # the first byte of a frame: its deadline is fixed now
            self._frame_deadline = loop.time() + self.server.frame_timeout_s
        self.buf += data
        out = bytearray()
        consumed = 0
        buf = self.buf
        while len(buf) - consumed >= 7:
            tid, pid, length, unit = _MBAP.unpack_from(buf, consumed)
            if pid != 0 or not 2 <= length <= 254:
                self._drop(f"bad MBAP header (protocol id {pid}, length {length})")
                return
            size = 6 + length
            if len(buf) - consumed < size:
                break
            pdu = bytes(buf[consumed + 7:consumed + size])
            consumed += size
            resp = self._handle(unit, pdu)
            out += _MBAP.pack(tid, 0, len(resp) + 1, unit)
            out += resp
            # a frame was completed: the next one (if any bytes are already here) starts now
            self._frame_deadline = loop.time() + self.server.frame_timeout_s
        if consumed:
            del buf[:consumed]
        if out:
            assert self.transport is not None
            self.transport.write(bytes(out))
            if self.transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
                self._drop("client does not read its responses")
                return
        if consumed or started:  # a drip into an incomplete frame keeps its deadline
            self._rearm()

    # -- requests ------------------------------------------------------------------
    def _take_token(self) -> bool:
        rate = self.server.max_requests_per_s
        now = time.monotonic()
        self.tokens = min(float(rate), self.tokens + (now - self._t_tokens) * rate)
        self._t_tokens = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def _handle(self, unit: int, pdu: bytes) -> bytes:
        """The response PDU of one request PDU."""
        srv = self.server
        srv.stats.requests += 1
        fc = pdu[0]
        if fc not in (3, 6, 16):
            return self._exc(fc, ILLEGAL_FUNCTION)
        if not self._take_token():
            srv.stats.rate_limited += 1
            if srv.stats.rate_limited % 1000 == 1:
                _log.warning("hil: %s over %d requests/s: answered 0x06", self.peer, srv.max_requests_per_s)
            return self._exc(fc, DEVICE_BUSY)
        body = pdu[1:]
        if fc in (3, 6) and len(body) != 4:
            return self._exc(fc, ILLEGAL_VALUE)
        if fc == 16 and (len(body) < 5 or len(body) != 5 + body[4]):
            return self._exc(fc, ILLEGAL_VALUE)
        if unit not in srv.bank.devices:
            return self._exc(fc, GATEWAY_NO_RESPONSE)
        try:
            if fc == 3:
                address, count = _HH.unpack_from(body)
                if not 1 <= count <= MAX_READ:
                    return self._exc(fc, ILLEGAL_VALUE)
                return bytes((3, 2 * count)) + srv.bank.read_wire(unit, address, count)
            if fc == 6:
                address, value = _HH.unpack_from(body)
                code = srv.bank.write(unit, address, [value], client=self.peer)
                return self._exc(fc, code) if code else pdu
            address, count = _HH.unpack_from(body)
            if not 1 <= count <= MAX_WRITE or body[4] != 2 * count:
                return self._exc(fc, ILLEGAL_VALUE)
            values = list(struct.unpack_from(f">{count}H", body, 5))
            code = srv.bank.write(unit, address, values, client=self.peer)
            return self._exc(fc, code) if code else pdu[:5]
        except WriteRejected as exc:
            return self._exc(fc, exc.code)
        except Exception:  # a bug in the bank must not take the server down
            _log.exception("hil: request from %s failed", self.peer)
            return self._exc(fc, DEVICE_FAILURE)

    def _exc(self, fc: int, code: int) -> bytes:
        self.server.stats.exceptions += 1
        return bytes((fc | 0x80, code))


class ModbusServer:
    """Modbus TCP server over a :class:`HILBank`; ``start()`` returns once it listens.

    Options: a :class:`ServerOptions` or its fields as keywords
    (``ModbusServer(bank, port=0, max_connections=4)``). ``port=0`` picks a free port (see
    :attr:`port` after ``start()``).
    """

    def __init__(self, bank: HILBank, options: ServerOptions | None = None, **opts: Any) -> None:
        o = self.options = ServerOptions.of(options, opts)
        self.bank = bank
        self.host = o.host
        self.port = o.port
        self.max_connections = o.max_connections
        self.idle_timeout_s = o.idle_timeout_s
        self.frame_timeout_s = o.frame_timeout_s
        self.max_requests_per_s = o.max_requests_per_s
        self.controller_host = o.controller_host
        self.stats = ServerStats()
        self.conns: set[_Conn] = set()
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
