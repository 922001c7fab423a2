"""mosaik adapter over the HIL coupling (:class:`twin.hil.twin_side.HILCoupling`).

Sits between the agents and the grid: every ``step_s`` it takes the agents' latest element
powers and the grid's last bus voltages (time-shifted), lets the HIL devices deliver what
their controllers allow (:class:`twin.hil.core.HILBank`), refreshes the registers the
Modbus server serves, and passes the controlled element powers on to the grid. A control
written by a client between two steps is therefore in the power flow of the next step.

Real time: this adapter paces the run. mosaik 3.6's own real-time mode polls with a
timeout of one ``rt_factor`` and releases steps up to a whole step early (and warns after
every step that takes any time at all), which gives hundreds of ms of jitter; so mosaik runs
as fast as possible and each HIL step sleeps until its own wall-clock deadline
(``wall0 + time * rt_factor``, ``wall0`` the first step) with ``time.perf_counter``. Every
other simulator depends on the HIL (the grid on its output, the agents on its controls,
time-shifted; the market on the agents), so none runs more than a step ahead. A step that
starts more than ``deadline_tolerance_s`` after its deadline is a deadline miss (table
``hil_deadlines``); with ``rt_strict`` the first one ends the run.
"""

from __future__ import annotations

import time as _time
from typing import Any

import mosaik_api_v3
from mosaik_api_v3.types import CreateResult, InputData, Meta, OutputData, OutputRequest, Time

from twin.cosim.codec import encode_der_controls, single, timed
from twin.hil.timing import StepTiming, TwinClock, freeze_gc

META: Meta = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {"HIL": {"public": True, "params": [],
                       "attrs": ["element_power", "vm_pu", "der_controls", "hil_books"]}},
}


class DeadlineMiss(RuntimeError):
    """A real-time step deadline missed under ``--rt-strict``."""


class HILSim(mosaik_api_v3.Simulator):
    def __init__(self) -> None:
        super().__init__(META)
        self._power: dict[str, Any] | None = None
        self._vm_pu: list[float] | None = None
        self._out: dict[str, Any] | None = None
        self._last_t: int | None = None
        self._wall0: float | None = None

    def init(self, sid: str, time_resolution: float = 1.0, **sim_params: Any) -> Meta:
        self.coupling = sim_params["coupling"]
        self.recorder = sim_params["recorder"]
        self.step_s: int = sim_params["step_s"]
        self.rt_factor: float | None = sim_params.get("rt_factor")
        self.rt_strict: bool = sim_params.get("rt_strict", False)
        self.tolerance_s: float = sim_params.get("deadline_tolerance_s", 0.1)
        self.timings: dict[str, float] = sim_params.get("timings", {})
        self.step_timing: StepTiming = sim_params.get("step_timing") or StepTiming(self.tolerance_s)
        self.interval_s: int = sim_params.get("interval_s", self.step_s)
        self.bank = self.coupling.bank
        #: unit id -> market device id, for the controls the agents apply to their books
        self.device_ids: dict[int, int] = sim_params.get("device_ids", {})
        self._controls: list[dict[str, Any]] = []
        #: per-interval books of the delivered energy (twin.hil.books.IntervalBooks) and the
        #: last closed interval's message to the agents; ``end_s``: no step at or after it
        self.books = sim_params.get("books")
        self._books_msg: dict[str, Any] = {}  # none closed yet
        self.end_s: int | None = sim_params.get("end_s")
        self.clock = TwinClock(rt_factor=self.rt_factor)
        self.bank.clock = self.clock
        return self.meta

    def create(self, num: int, model: str, **model_params: Any) -> list[CreateResult]:
        if num != 1:
            raise ValueError("HILSim holds exactly one HIL entity")
        return [{"eid": "hil", "type": model}]

    def _clock(self) -> float:
        """Twin time now, for client writes between steps (reversion timers)."""
        return self.clock()

    def step(self, time: Time, inputs: InputData, max_advance: Time) -> Time | None:
        if self._wall0 is None and self.rt_factor:
            freeze_gc()  # set-up's heap out of the collector's way before the clock starts
        now = _time.perf_counter()
        if self._wall0 is None:
            self._wall0 = now - (time * self.rt_factor if self.rt_factor else 0.0)
            self.clock.wall0 = self._wall0
        if self.rt_factor:
            deadline = self._wall0 + time * self.rt_factor
            if deadline > now:  # early: wait for the wall clock (the whole twin waits)
                _time.sleep(deadline - now)
                now = _time.perf_counter()
            late = now - deadline
            if self.step_timing.record(late, boundary=time % self.interval_s == 0):
                self.recorder.add("hil_deadlines", [{
                    "time_s": int(time), "lateness_s": late,
                    "deadline_wall": self._wall0 + time * self.rt_factor,
                }])
                if self.rt_strict:
                    raise DeadlineMiss(
                        f"HIL step at t={time}s started {late * 1e3:.1f} ms after its real-time "
                        f"deadline (tolerance {self.tolerance_s * 1e3:.0f} ms, --rt-strict)")
        else:
            self.step_timing.count()
        with timed(self.timings, "hil_s"):
            return self._step(time, inputs)

    def _step(self, time: Time, inputs: InputData) -> Time:
        data = inputs.get("hil", {})
        power = single(data.get("element_power"))
        if power is not None:
            self._power = power
        vm = single(data.get("vm_pu"))
        if vm:
            self._vm_pu = list(vm)
        dt = 0 if self._last_t is None else time - self._last_t
        self._last_t = time
        self.clock.last_t = float(time)
        if self._power is None:
            raise ValueError(f"hil: no element_power from the agents at t={time}s")
        self._out, rows = self.coupling.step(now_s=float(time), dt_s=float(dt), power=self._power,
                                             vm_pu=self._vm_pu)
        self.recorder.add("hil", [
            {"time_s": int(time), "unit_id": u, "available_w": i.available_w, "w": o.w,
             "var": o.var, "v": i.v, "hz": i.hz, "w_max_w": o.control.w_max_w,
             "w_set_w": o.control.w_set_w, "q_mode": o.mode, "in_service": o.in_service,
             "state": o.state,
             "reverted": ",".join(o.reverted)}
            for u, (i, o) in sorted(rows.items())
        ])
        self._controls = encode_der_controls({
            self.device_ids[u]: o.control for u, (_, o) in rows.items()
            if u in self.device_ids and not o.control.is_default})
        if self.books is not None:  # this step's powers hold until the next HIL step
            book = self.books.add(now_s=float(time), hold_s=float(self.step_s),
                                  dispatched=self._power, delivered=self._out)
            if book is not None:
                self._books_msg = book.encode()
        self._drain_writes()
        if self.end_s is not None and time + self.step_s >= self.end_s:
            return self.end_s + 1  # past the world's end: no step at end_s (settlement only)
        return time + self.step_s

    def get_data(self, outputs: OutputRequest) -> OutputData:
        data = {"element_power": self._out, "der_controls": self._controls,
                "hil_books": self._books_msg}
        return {eid: {a: data[a] for a in attrs if a in data} for eid, attrs in outputs.items()}

    def finalize(self) -> None:
        self._drain_writes()  # writes after the last step still belong in the table

    def _drain_writes(self) -> None:
        self.recorder.add("hil_writes", [
            {"time_s": w.time_s, "wall_time": w.wall_time, "client": w.client, "unit_id": w.unit_id,
             "address": w.address, "count": w.count, "exception_code": w.exception_code,
             "points": w.points}
            for w in self.bank.drain_writes()
        ])
