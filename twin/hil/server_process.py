"""The Modbus server in its own process: reads never wait on the twin's step, nor it on them.

``twin hil serve`` runs :class:`twin.hil.server.ModbusServer` (framing, policy, exception
codes unchanged) in a child process over a *mirror* :class:`twin.hil.core.HILBank` of the
same devices, so the twin's step and the clients' requests no longer share one GIL:

* after every :meth:`HILBank.step` the twin sends each device's register image (one
  message on a pipe); the mirror takes it as its own and re-applies the writes the twin
  has not applied yet, so a client reads the twin's state of the latest step plus its own
  accepted writes, as with the in-process server;
* a client write is validated and applied on the mirror exactly as before (same
  exception codes, nothing applied when refused) and, *before the client gets its
  answer*, sent to the twin as ``(seq, unit, op, record)``; the twin applies the validated
  points at the start of its next step with the twin time the write arrived (reversion
  timers as before), and records it in ``hil_writes``;
* ordering: a write answered before a step starts is in that step (its message is in the
  pipe before the answer leaves); a read sent after a step returned sees that step (the
  server process applies every snapshot already in its pipe before it answers).

Typical use (what ``twin hil serve`` does)::

    server = ServerProcess(bank, host="127.0.0.1", port=0).start()   # bank.link = server
    ...  # bank.step(...) as before
    server.stop()
"""

from __future__ import annotations

import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
from array import array
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from twin.hil.core import HILBank
from twin.hil.device import DeviceSpec
from twin.hil.server import ModbusServer, ServerOptions, ServerStats

__all__ = ["ServerProcess"]

_log = logging.getLogger("twin.hil")
_STATS_EVERY_S = 0.25


class _MirrorBank(HILBank):
    """The server process's copy of the devices (see the module docstring)."""

    def __init__(self, specs: Sequence[DeviceSpec], ops: Connection, snaps: Connection) -> None:
        super().__init__(specs)
        self._ops = ops
        self._snaps = snaps
        self._seq = 0
        self._pending: list[tuple[int, int, tuple[Any, ...]]] = []  # not yet in the twin
        self._clock_state: tuple[float | None, float, float | None] = (None, 0.0, None)
        self.clock = self._twin_clock
        self.stopped = threading.Event()
        # one poll object for the per-request check (Connection.poll builds a selector per call)
        self._ready = select.poll()
        self._ready.register(snaps.fileno(), select.POLLIN)

    def _twin_clock(self) -> float:
        rt, t, wall0 = self._clock_state
        if rt and wall0 is not None:
            return max(t, (time.perf_counter() - wall0) / rt)
        return t

    def _changed(self, unit_id: int, op: tuple[Any, ...] | None) -> None:
        self._seq += 1
        rec = self._writes.pop()
        self._ops.send(("w", self._seq, unit_id, op,
                        (rec.time_s, rec.wall_time, rec.client, rec.unit_id, rec.address,
                         rec.count, rec.exception_code, rec.points)))
        if op is not None:
            self._pending.append((self._seq, unit_id, op))

    def sync(self) -> None:
        """Take the newest register images already sent (the asyncio thread only)."""
        last = None
        try:
            while self._ready.poll(0):
                last = self._snaps.recv()
                if last[0] == "stop":
                    self.stopped.set()
                    return
        except (EOFError, OSError):  # the twin went away
            self.stopped.set()
            return
        if last is None:
            return
        _, acked, clock_state, images = last
        with self.lock:
            self._clock_state = clock_state
            for uid, image in images.items():
                self.devices[uid].regs = array("H", image).tolist()
            self._pending = [x for x in self._pending if x[0] > acked]
            for _, uid, op in self._pending:  # accepted here, not yet applied there
                dev = self.devices[uid]
                if op[0] == "w":
                    pts = [(dev.map.point_at(a), list(r)) for a, r in op[2]]
                    dev.apply_write([(p, r) for p, r in pts if p is not None], now_s=op[1])
                else:
                    dev.adoption_failed(op[1], op[2])
            for dev in self.devices.values():
                dev.publish()

    def read(self, unit_id: int, address: int, count: int) -> list[int]:
        self.sync()
        return super().read(unit_id, address, count)

    def read_wire(self, unit_id: int, address: int, count: int) -> bytes:
        self.sync()
        return super().read_wire(unit_id, address, count)

    def write(self, unit_id: int, address: int, values: Sequence[int], *, client: str) -> int:
        self.sync()
        return super().write(unit_id, address, values, client=client)


def _child(ops: Connection, snaps: Connection) -> None:
    """The server process: a mirror bank behind the Modbus server, until "stop" (or the
    twin's end of the pipe closes). Ctrl-C reaches the whole process group: the twin's
    process decides when this one stops, so SIGINT is ignored here."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _, specs, opts = snaps.recv()  # ("init", [DeviceSpec], ServerOptions)
    bank = _MirrorBank(specs, ops, snaps)
    try:
        server = ModbusServer(bank, opts).start()
    except BaseException as exc:
        ops.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    ops.send(("ready", server.port))
    loop = server.loop
    last: dict[str, int] = {}

    def stats() -> None:  # in the asyncio thread, the only sender while serving
        now = dict(vars(server.stats))
        if now != last:
            last.clear()
            last.update(now)
            ops.send(("stats", now))
        if not bank.stopped.is_set():
            loop.call_later(_STATS_EVERY_S, stats)

    def start_reading() -> None:
        loop.add_reader(snaps.fileno(), bank.sync)
        stats()

    loop.call_soon_threadsafe(start_reading)
    bank.stopped.wait()
    loop.call_soon_threadsafe(loop.remove_reader, snaps.fileno())
    server.stop()
    ops.send(("final", dict(vars(server.stats))))


def _child_env() -> dict[str, str]:
    """This environment with the folder holding ``twin`` first on the child's path."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
    return env


class ServerProcess:
    """Twin-side handle of the Modbus server process over ``bank`` (sets ``bank.link``).

    Same options as :class:`ModbusServer` (a :class:`ServerOptions` or its fields as
    keywords, checked here, before the child starts); :attr:`port` and :attr:`stats` as there.
    """

    def __init__(self, bank: HILBank, options: ServerOptions | None = None, **opts: Any) -> None:
        self.options = ServerOptions.of(options, opts)
        self.bank = bank
        self.host = self.options.host
        self.port = self.options.port
        self._stats = ServerStats()
        self._lock = threading.Lock()
        self._writes: list[tuple[Any, ...]] = []
        self._proc: Any = None
        self._ops: Connection | None = None
        self._snaps: Connection | None = None
        self._drainer: threading.Thread | None = None
        self._closed = threading.Event()
        self.pid: int | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout_s: float = 60.0) -> ServerProcess:
        # a plain child interpreter (not multiprocessing's spawn, which would import the
        # caller's __main__ again, nor a fork of a process with threads and a big heap)
        ops_r, ops_w = os.pipe()
        snaps_r, snaps_w = os.pipe()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "twin.hil.server_process", str(ops_w), str(snaps_r)],
            pass_fds=(ops_w, snaps_r), close_fds=True, stdin=subprocess.DEVNULL, env=_child_env())
        os.close(ops_w)
        os.close(snaps_r)
        self._ops = Connection(ops_r, writable=False)
        self._snaps = Connection(snaps_w, readable=False)
        self.pid = self._proc.pid
        specs = [d.spec for d in self.bank.devices.values()]
        self._snaps.send(("init", specs, self.options))
        try:
            ready = self._ops.poll(timeout_s)
            msg = self._ops.recv() if ready else None
        except EOFError:
            msg = ("error", f"it ended with exit code {self._proc.wait()}")
        if msg is None:
            self._proc.kill()
            raise TimeoutError("the Modbus server process did not start")
        if msg[0] == "error":
            self._proc.wait(5)
            raise OSError(f"Modbus server cannot listen on {self.host}:{self.options.port}: {msg[1]}")
        self.port = int(msg[1])
        self.bank.link = self
        self.push(self.bank)  # the images as they are now
        # keeps the pipe drained while the twin is busy elsewhere (set-up, the run's end)
        self._drainer = threading.Thread(target=self._drain_loop, name="hil-modbus-pipe", daemon=True)
        self._drainer.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        if self._proc is None or self._snaps is None:
            return
        try:
            self._snaps.send(("stop",))
        except OSError:
            pass
        self._closed.wait(timeout_s)  # the "final" stats (or the pipe's end)
        try:
            self._proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait(timeout_s)
        if self.bank.link is self:
            self.bank.apply_remote(self.take())  # the last writes still reach the records
            self.bank.link = None
        self._snaps.close()
        self._proc = None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ twin side
    @property
    def stats(self) -> ServerStats:
        self._pump()
        return self._stats

    def take(self) -> list[tuple[Any, ...]]:
        """The writes the server answered since the last call, in order (see the module)."""
        self._pump()
        with self._lock:
            out, self._writes = self._writes, []
        return out

    def push(self, bank: HILBank) -> None:
        """Send every device's register image (after a step)."""
        if self._snaps is None:
            return
        images = {uid: array("H", dev.published).tobytes() for uid, dev in bank.devices.items()}
        state = getattr(bank.clock, "state", (None, 0.0, None))
        try:
            self._snaps.send(("snap", bank.remote_seq, state, images))
        except OSError:  # the server process is gone: the twin runs on without it
            _log.error("hil: the Modbus server process has gone (images not sent)")
            self._snaps = None

    def _pump(self) -> None:
        ops = self._ops
        if ops is None:
            return
        with self._lock:
            try:
                while ops.poll(0):
                    self._handle(ops.recv())
            except (EOFError, OSError):
                self._ops = None
                self._closed.set()

    def _handle(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "w":
            self._writes.append(msg[1:])
        elif kind in ("stats", "final"):
            self._stats = ServerStats(**msg[1])
            if kind == "final":
                self._closed.set()

    def _drain_loop(self) -> None:
        while not self._closed.is_set():
            ops = self._ops
            if ops is None:
                return
            try:
                ready = ops.poll(0.5)
            except (EOFError, OSError):
                return
            if ready:
                self._pump()


if __name__ == "__main__":  # the server process (ServerProcess.start)
    _child(Connection(int(sys.argv[1]), readable=False), Connection(int(sys.argv[2]), writable=False))
