"""mosaik adapter over the grid core: element powers in, one power flow, bus/line rows out."""

from __future__ import annotations

from typing import Any

import mosaik_api_v3
import numpy as np
from mosaik_api_v3.types import CreateResult, InputData, Meta, OutputData, OutputRequest, Time

from twin.cosim.codec import single, timed
from twin.grid.powerflow import run_snapshot

META: Meta = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {"Grid": {"public": True, "params": [], "attrs": ["element_power", "vm_pu"]}},
}


class GridSim(mosaik_api_v3.Simulator):
    def __init__(self) -> None:
        super().__init__(META)
        self._vm_pu: list[float] = []

    def init(self, sid: str, time_resolution: float = 1.0, **sim_params: Any) -> Meta:
        self.net = sim_params["net"]
        self.recorder = sim_params["recorder"]
        self.interval_s: int = sim_params["interval_s"]
        # solve cadence (twin hil serve: the HIL step, so controllers see fresh voltages);
        # the bus and line tables keep one row set per market interval either way
        self.step_s: int = sim_params.get("step_s") or self.interval_s
        self.timings: dict[str, float] = sim_params.get("timings", {})
        self.bus_ids = np.asarray(self.net.bus.index, dtype=np.int64)
        self.line_ids = np.asarray(self.net.line.index, dtype=np.int64)
        return self.meta

    def create(self, num: int, model: str, **model_params: Any) -> list[CreateResult]:
        if num != 1:
            raise ValueError("GridSim holds exactly one Grid entity")
        return [{"eid": "grid", "type": model}]

    def step(self, time: Time, inputs: InputData, max_advance: Time) -> Time | None:
        with timed(self.timings, "grid_s"):
            return self._step(time, inputs)

    def _step(self, time: Time, inputs: InputData) -> Time:
        power = single(inputs.get("grid", {}).get("element_power"))
        if power is None:
            raise ValueError(f"grid: no element_power input at t={time}s")
        state = run_snapshot(
            self.net,
            load_p_mw=power["load_p_mw"], load_q_mvar=power["load_q_mvar"],
            sgen_p_mw=power["sgen_p_mw"], sgen_q_mvar=power["sgen_q_mvar"],
            storage_p_mw=power["storage_p_mw"],
        )
        if not state.converged:
            raise RuntimeError(f"grid: power flow did not converge at t={time}s")
        self._vm_pu = [float(v) for v in state.vm_pu]
        if time % self.interval_s == 0:
            self.recorder.add("bus", _bus_rows(time, self.bus_ids, state))
            self.recorder.add("line", _line_rows(time, self.line_ids, state))
            self.recorder.add("grid", [{
                "time_s": time, "ext_grid_p_mw": state.ext_grid_p_mw,
                "load_p_mw": float(np.sum(power["load_p_mw"]) + np.sum(power["storage_p_mw"])),
                "sgen_p_mw": float(np.sum(power["sgen_p_mw"])),
                "line_pl_mw": float(np.nansum(state.line_pl_mw)),
                "vm_min_pu": state.vm_min_pu, "vm_max_pu": state.vm_max_pu,
                "max_loading_percent": state.max_loading_percent,
            }])
        return time + self.step_s

    def get_data(self, outputs: OutputRequest) -> OutputData:
        return {eid: {a: self._vm_pu for a in attrs} for eid, attrs in outputs.items()}


def _bus_rows(time_s: int, bus_ids: np.ndarray, state: Any) -> list[dict[str, Any]]:
    cols = zip(bus_ids.tolist(), state.vm_pu.tolist(), state.va_degree.tolist(),
               state.bus_p_mw.tolist(), state.bus_q_mvar.tolist(), strict=True)
    return [{"time_s": time_s, "bus": b, "vm_pu": v, "va_degree": a, "p_mw": p, "q_mvar": q}
            for b, v, a, p, q in cols]


def _line_rows(time_s: int, line_ids: np.ndarray, state: Any) -> list[dict[str, Any]]:
    cols = zip(line_ids.tolist(), state.line_loading_percent.tolist(),
               state.line_p_from_mw.tolist(), state.line_q_from_mvar.tolist(),
               state.line_pl_mw.tolist(), strict=True)
    return [{"time_s": time_s, "line": i, "loading_percent": ld, "p_from_mw": p,
             "q_from_mvar": q, "pl_mw": pl} for i, ld, p, q, pl in cols]
