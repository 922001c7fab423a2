"""mosaik adapter over the meter-data path (:class:`twin.faults.meter_data.MeterDataFaults`):
the agents' true meter readings in, what the head-end delivers to the market out (on-time
readings, late and duplicated ones of earlier intervals, the expected devices). It sits
between the agents and the market only when the scenario has ``faults.data``."""

from __future__ import annotations

from typing import Any

import mosaik_api_v3
from mosaik_api_v3.types import CreateResult, InputData, Meta, OutputData, OutputRequest, Time

from twin.cosim.codec import single, timed
from twin.faults.meter_data import MeterDataFaults

__all__ = ["META", "MetersSim"]

META: Meta = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {"Meters": {"public": True, "params": [], "attrs": ["metered_wh"]}},
}


class MetersSim(mosaik_api_v3.Simulator):
    def __init__(self) -> None:
        super().__init__(META)
        self._msg: dict[str, Any] | None = None

    def init(self, sid: str, time_resolution: float = 1.0, **sim_params: Any) -> Meta:
        self.recorder = sim_params["recorder"]
        self.interval_s: int = sim_params["interval_s"]
        self.timings: dict[str, float] = sim_params.get("timings", {})
        self.core = MeterDataFaults(sim_params["spec"], seed=sim_params["seed"],
                                    interval_s=self.interval_s,
                                    n_intervals=sim_params.get("n_intervals"))
        # twin/faults/data_state.py: the resume checkpoint and its replay check see the core
        self.state = sim_params.get("state")
        if self.state is not None:
            self.state.meters = self.core
        return self.meta

    def create(self, num: int, model: str, **model_params: Any) -> list[CreateResult]:
        if num != 1:
            raise ValueError("MetersSim holds exactly one Meters entity")
        return [{"eid": "meters", "type": model}]

    def step(self, time: Time, inputs: InputData, max_advance: Time) -> Time | None:
        with timed(self.timings, "meters_s"):
            k = time // self.interval_s
            if self.state is not None:
                self.state.before_step(k)
            msg = single(inputs.get("meters", {}).get("metered_wh"))
            true_wh = {int(d): int(w) for d, w in msg["metered_wh"].items()} if msg else {}
            self._msg, rows = self.core.deliver(k, true_wh)
            self.recorder.add("meter_data", rows)
        return time + self.interval_s

    def get_data(self, outputs: OutputRequest) -> OutputData:
        return {eid: {a: self._msg for a in attrs} for eid, attrs in outputs.items()}
