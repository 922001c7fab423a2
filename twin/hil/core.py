"""The HIL core: all devices of a run, shared by the Modbus server and the twin.

Pure (no sockets, no mosaik). Two sides use one :class:`HILBank`:

* the Modbus server (its own thread) calls :meth:`HILBank.read` and :meth:`HILBank.write`;
* the twin (the mosaik adapter, or a test) calls :meth:`HILBank.step` once per step with
  each device's available power and measurements, and gets back the powers the devices
  actually deliver under the controls written by clients.

Reads never wait on the twin: each device publishes an immutable snapshot of its register
image (:attr:`HILDevice.published`, swapped by reference) after every step and every
accepted write; a read slices the snapshot without taking a lock, so a client never sees a
torn 32- or 64-bit value or a half-updated device, and never waits for a step. One lock
serializes what changes an image (client writes and twin steps). The clock (``now_s``, seconds of twin time) is
passed in explicitly; the server uses :attr:`HILBank.clock`, a callable the adapter sets to
twin time (a test sets it to a fake clock).

Typical use (a test, no mosaik)::

    bank = HILBank([DeviceSpec(unit_id=1, name="pv", kind="pv_inverter", nameplate_w=10e3)])
    bank.write(1, addr, regs, client="127.0.0.1:50000")      # what a client does
    out = bank.step(now_s=60.0, dt_s=60.0, inputs={1: DeviceInput(available_w=8e3, v=236.0)})
    out[1].w   # 8e3 capped by WMaxLimPct, etc.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twin.hil.device import (
    ILLEGAL_ADDRESS,
    DERControl,
    DeviceSpec,
    HILDevice,
    Measurement,
    WriteRejected,
)

__all__ = ["DeviceInput", "DeviceOutput", "HILBank", "WriteRecord"]

_log = logging.getLogger("twin.hil")


@dataclass(frozen=True, slots=True)
class DeviceInput:
    """The twin's view of one device before HIL controls (generator convention for DER).

    ``available_w``: what the device would do on its own (PV available power, the
    agents' battery / EV dispatch; for a meter the measured import, load convention);
    ``v``: line-to-neutral volts at its bus; ``soc``: state of charge when the twin knows it.
    """

    available_w: float
    var: float = 0.0
    v: float = 230.0
    hz: float = 50.0
    soc: float | None = None


@dataclass(frozen=True, slots=True)
class DeviceOutput:
    """What the device delivers this step under the controls in force."""

    unit_id: int
    w: float
    var: float
    control: DERControl
    reverted: tuple[str, ...] = ()
    mode: str = ""  # reactive-power mode in force
    in_service: bool = True
    state: str = ""  # why it is not energizing (StepResult.state): "tripped:708", "ceased:707", ...


@dataclass(frozen=True, slots=True)
class WriteRecord:
    """One client write (accepted or refused), for the ``hil_writes`` table."""

    time_s: float
    wall_time: float
    client: str
    unit_id: int
    address: int
    count: int
    exception_code: int  # 0: accepted
    points: str  # accepted point names, or the reason of the refusal


class HILBank:
    """All HIL devices of a run, by Modbus unit id."""

    def __init__(self, specs: Iterable[DeviceSpec], *, clock: Callable[[], float] | None = None) -> None:
        self.devices: dict[int, HILDevice] = {}
        for spec in specs:
            if not 1 <= spec.unit_id <= 247:
                raise ValueError(f"{spec.name}: unit id {spec.unit_id} outside 1..247")
            if spec.unit_id in self.devices:
                raise ValueError(f"unit id {spec.unit_id} used twice")
            self.devices[spec.unit_id] = HILDevice(spec)
        self.lock = threading.Lock()
        self.clock: Callable[[], float] = clock or (lambda: 0.0)
        self._writes: list[WriteRecord] = []
        #: the Modbus server in its own process (twin.hil.server_process.ServerProcess):
        #: its validated writes are applied at the start of each step and the register
        #: images sent to it at the end; None: a server thread reads and writes this bank
        self.link: Any = None
        self.remote_seq = 0  # the last write of the server process applied here

    # ------------------------------------------------------------------ server side
    def read(self, unit_id: int, address: int, count: int) -> list[int]:
        """Registers ``address .. address+count-1`` of a unit; :class:`WriteRejected` (0x02)."""
        dev = self.devices.get(unit_id)
        if dev is None:
            raise KeyError(unit_id)
        if not dev.map.contains(address, count):
            raise WriteRejected(ILLEGAL_ADDRESS, f"registers {address}..{address + count - 1} outside the map")
        o = address - dev.map.start
        return list(dev.published[o:o + count])  # immutable snapshot: no lock, never torn

    def read_wire(self, unit_id: int, address: int, count: int) -> bytes:
        """As :meth:`read`, the registers as Modbus sends them (big-endian bytes): a slice
        of the published wire image, no per-register work (the server's read path)."""
        dev = self.devices.get(unit_id)
        if dev is None:
            raise KeyError(unit_id)
        if not dev.map.contains(address, count):
            raise WriteRejected(ILLEGAL_ADDRESS, f"registers {address}..{address + count - 1} outside the map")
        o = 2 * (address - dev.map.start)
        return dev.published_be[o:o + 2 * count]

    def write(self, unit_id: int, address: int, values: Sequence[int], *, client: str) -> int:
        """Validate and apply a write as a whole; returns 0 or the Modbus exception code."""
        dev = self.devices.get(unit_id)
        if dev is None:
            raise KeyError(unit_id)
        now = self.clock()
        with self.lock:
            try:
                points = dev.validate_write(address, values)
            except WriteRejected as exc:
                self._writes.append(WriteRecord(now, time.time(), client, unit_id, address,
                                                len(values), exc.code, exc.reason))
                _log.warning("hil: write from %s to unit %d at %d (%d registers) refused with "
                             "0x%02x: %s", client, unit_id, address, len(values), exc.code, exc.reason)
                failed = dev.adoption_failed(address, len(values))
                if failed:
                    dev.publish()
                self._changed(unit_id, ("f", address, len(values)) if failed else None)
                return exc.code
            names = dev.apply_write(points, now_s=now)
            dev.publish()
            self._writes.append(WriteRecord(now, time.time(), client, unit_id, address,
                                            len(values), 0, ",".join(names)))
            self._changed(unit_id, ("w", now, [(p.addr, regs) for p, regs in points]))
        return 0

    def _changed(self, unit_id: int, op: tuple[Any, ...] | None) -> None:
        """A write was decided (``op`` None: refused, nothing changed); the server process's
        mirror bank forwards it to the twin (see twin.hil.server_process)."""

    def apply_remote(self, msgs: Iterable[tuple[Any, ...]]) -> None:
        """Apply what the server process decided, in order: ``(seq, unit, op, record)``.

        ``op`` ``("w", now_s, [(addr, regs), ...])``: a validated write (applied as it was
        validated, at the twin time it arrived); ``("f", addr, n)``: a refused adoption
        request (``AdptCrvRslt`` FAILED); None: a refused write (only its record).
        """
        with self.lock:
            for seq, unit_id, op, record in msgs:
                dev = self.devices[unit_id]
                if op is not None and op[0] == "w":
                    pts = []
                    for addr, regs in op[2]:
                        p = dev.map.point_at(addr)
                        assert p is not None and p.addr == addr, (unit_id, addr)
                        pts.append((p, list(regs)))
                    dev.apply_write(pts, now_s=op[1])
                elif op is not None and op[0] == "f":
                    dev.adoption_failed(op[1], op[2])
                dev.publish()
                self._writes.append(WriteRecord(*record))
                self.remote_seq = max(self.remote_seq, seq)

    def drain_writes(self) -> list[WriteRecord]:
        if self.link is not None:
            self.apply_remote(self.link.take())
        with self.lock:
            out, self._writes = self._writes, []
        return out

    # ------------------------------------------------------------------ twin side
    def step(self, *, now_s: float, dt_s: float,
             inputs: Mapping[int, DeviceInput]) -> dict[int, DeviceOutput]:
        """One twin step: expire timers, apply controls to ``inputs``, refresh registers."""
        out: dict[int, DeviceOutput] = {}
        if self.link is not None:  # the writes the server process answered before this step
            self.apply_remote(self.link.take())
        with self.lock:
            for uid, dev in self.devices.items():
                inp = inputs.get(uid)
                reverted = tuple(dev.tick(now_s))
                ctl = dev.control()
                if inp is None:
                    dev.publish()  # timers ticked
                    out[uid] = DeviceOutput(uid, dev.last_w, 0.0, ctl, reverted)
                    continue
                if dev.spec.kind == "meter":
                    dev.measure(Measurement(w=inp.available_w, var=inp.var, v=inp.v, hz=inp.hz),
                                dt_s=dt_s)
                    dev.publish()
                    out[uid] = DeviceOutput(uid, inp.available_w, inp.var, ctl, reverted)
                    continue
                res = dev.step_der(available_w=inp.available_w, v=inp.v, hz=inp.hz, soc=inp.soc,
                                   now_s=now_s, dt_s=dt_s)
                dev.measure(Measurement(w=res.w, var=res.var, v=inp.v, hz=inp.hz, soc=inp.soc,
                                        available_w=inp.available_w, in_service=res.in_service,
                                        state=res.state),
                            dt_s=dt_s)
                dev.put_point(703, "ESDlyRemTms", round(res.es_delay_rem_s))
                dev.publish()
                out[uid] = DeviceOutput(uid, res.w, res.var, ctl, reverted, res.mode, res.in_service,
                                        res.state)
        if self.link is not None:  # before a client can read this step's state
            self.link.push(self)
        return out

    def controls(self) -> dict[int, DERControl]:
        with self.lock:
            return {uid: dev.control() for uid, dev in self.devices.items()}

    def describe(self) -> list[dict[str, Any]]:
        return [dev.describe() for dev in self.devices.values()]
