"""mosaik adapter over a run's fault plan (:mod:`twin.faults.plan`, SimPy processes).

Each step is one market interval ``k``: the fault events of ``k`` go to the ``faults`` table,
the interval's fault state (branches out, ties closed, upstream lost, devices failed) is the
``fault_state`` attribute (to the agents and the grid) and the market books of the orders
made at ``k`` (device -> island while the feeder is split, else none) the ``books``
attribute (to the market).
"""

from __future__ import annotations

from typing import Any

import mosaik_api_v3
from mosaik_api_v3.types import CreateResult, InputData, Meta, OutputData, OutputRequest, Time

from twin.cosim.codec import timed

META: Meta = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {"Faults": {"public": True, "params": [], "attrs": ["fault_state", "books"]}},
}


class FaultsSim(mosaik_api_v3.Simulator):
    def __init__(self) -> None:
        super().__init__(META)
        self._out: dict[str, Any] = {}

    def init(self, sid: str, time_resolution: float = 1.0, **sim_params: Any) -> Meta:
        self.plan = sim_params["plan"]
        self.books = sim_params["books"]  # FaultState -> device books or None
        self.recorder = sim_params["recorder"]
        self.interval_s: int = sim_params["interval_s"]
        self.timings: dict[str, float] = sim_params.get("timings", {})
        return self.meta

    def create(self, num: int, model: str, **model_params: Any) -> list[CreateResult]:
        if num != 1:
            raise ValueError("FaultsSim holds exactly one Faults entity")
        return [{"eid": "faults", "type": model}]

    def step(self, time: Time, inputs: InputData, max_advance: Time) -> Time | None:
        with timed(self.timings, "faults_s"):
            k = time // self.interval_s
            t0, t1 = k * self.interval_s, (k + 1) * self.interval_s
            self.recorder.add("faults", [
                {"time_s": e.time_s, "interval": k, "kind": e.kind, "element_kind": e.element_kind,
                 "element": e.element, "fault_id": e.fault_id, "fault_kind": e.fault_kind}
                for e in self.plan.events if t0 <= e.time_s < t1])
            self.recorder.add("interruptions", [r for r in self.plan.interruptions if t0 <= r["time_s"] < t1])
            state = self.plan.states[k]
            books = self.books(state)
            self._out = {
                "fault_state": {"interval": k, **state.to_msg()},
                "books": {"interval": k + 1,
                          "books": {str(d): b for d, b in books.items()} if books is not None else None},
            }
            return time + self.interval_s

    def get_data(self, outputs: OutputRequest) -> OutputData:
        return {eid: {a: self._out.get(a) for a in attrs} for eid, attrs in outputs.items()}
