"""mosaik adapter over the grid core: element powers in, one power flow, bus/line columns out.

Besides the bus voltages (``vm_pu``) the grid publishes ``taps``: the tap positions its next
solve will use (:func:`taps_message`; the OLTC stepped after this solve, an OpenDSS deck's
regulators where this solve left them), which the DSO's security check follows
(:meth:`twin.agents.dso.DSOAgent.follow_taps`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import mosaik_api_v3
import numpy as np
from mosaik_api_v3.types import CreateResult, InputData, Meta, OutputData, OutputRequest, Time

from twin.cosim.codec import single, timed
from twin.errors import TwinError
from twin.grid.der_runtime import ControlledSnapshot
from twin.grid.powerflow import run_snapshot
from twin.grid.snapshot3ph import PhaseSnapshot
from twin.grid.tap_control import TapController, oltc_from_trafo

#: voltages outside this band (p.u.) are no operating point but a power flow that "solved" a
#: feeder loaded far beyond what it can carry: the run stops instead of recording them
VM_PLAUSIBLE_PU = (0.7, 1.3)
_HINT = ("; the feeder cannot carry this load (fewer households, less PV or EV power, or a "
         "bigger grid: grid.simbench_code)")


class GridDiverged(TwinError):
    """The power flow diverged or gave implausible voltages: the run fails, naming when."""


def check_plausible(vm_pu: Any, *, bus_ids: Any, time_s: int) -> None:
    """Raise :class:`GridDiverged` naming the worst bus when a voltage is NaN or outside
    :data:`VM_PLAUSIBLE_PU`."""
    vm = np.asarray(vm_pu, dtype=float)
    lo, hi = VM_PLAUSIBLE_PU
    bad = ~np.isfinite(vm) | (vm < lo) | (vm > hi)
    if not bad.any():
        return
    dev = np.where(np.isfinite(vm), np.abs(vm - 1.0), np.inf)
    k = int(np.argmax(np.where(bad, dev, -1.0)))
    raise GridDiverged(
        f"grid: implausible voltage {vm[k]:.3f} p.u. at bus {bus_ids[k]} at t={time_s}s "
        f"({int(bad.sum())} buses outside {lo}-{hi} p.u.){_HINT}"
    )

META: Meta = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {"Grid": {"public": True, "params": [], "attrs": ["element_power", "fault_state", "vm_pu", "taps"]}},
}


class GridSim(mosaik_api_v3.Simulator):
    def __init__(self) -> None:
        super().__init__(META)
        self._vm_pu: list[float] = []
        self._taps: dict[str, Any] = {"trafo_tap_pos": {}, "regulator_taps": []}

    def init(self, sid: str, time_resolution: float = 1.0, **sim_params: Any) -> Meta:
        self.net = sim_params["net"]
        self.recorder = sim_params["recorder"]
        self.interval_s: int = sim_params["interval_s"]
        # solve cadence (twin hil serve: the HIL step, so controllers see fresh voltages);
        # the bus and line tables keep one row set per market interval either way
        self.step_s: int = sim_params.get("step_s") or self.interval_s
        self.timings: dict[str, float] = sim_params.get("timings", {})
        #: last solve before this time (HIL: the world runs one settlement step past the end)
        self.end_s: int | None = sim_params.get("end_s")
        #: the run's start as seconds of its day: a deck's time-of-day CapControls switch on it
        self.start_s_of_day: int = int(sim_params.get("start_s_of_day") or 0)
        # grid.phases: 3 -- each element row on its phase, solved in the phase frame
        phase = sim_params.get("element_phase")
        devices = sim_params.get("der_devices") or []
        oltc = sim_params.get("oltc")
        self.phases = (PhaseSnapshot(self.net, phase=phase, der_devices=devices,
                                     network=sim_params.get("phase_network"),
                                     regulators=sim_params.get("phase_regulators") or (),
                                     oltc=oltc if len(self.net.trafo) else None)
                       if phase is not None else None)
        self.bus_ids = np.asarray(self.net.bus.index, dtype=np.int64)
        self.line_ids = np.asarray(self.net.line.index, dtype=np.int64)
        # IEEE 1547 functions of the inverters, solved with the network; the TSO's frequency
        self.controls = ControlledSnapshot(self.net, list(devices)) if devices and phase is None else None
        #: the TSO's system frequency at a time (s since the start); None: nominal
        self.frequency_hz: Callable[[float], float] | None = sim_params.get("frequency_hz")
        # on-load tap changer: acts step by step (band, delay) on the voltage it regulates
        #: faults inside the run: the faulted topology's solver (twin/faults/grid.py)
        self.faulted = sim_params.get("faulted")
        self.taps: TapController | None = None
        if oltc is not None and len(self.net.trafo) and self.phases is None:  # 3 phases: PhaseSnapshot.oltc
            ch = oltc_from_trafo(self.net, 0, v_set_pu=oltc.v_set_pu, band_pu=oltc.band_pu,
                                 delay_s=oltc.delay_s, path="grid.oltc")
            tap0 = self.net.trafo.tap_pos.iat[0]
            self.taps = TapController([ch], taps=[int(tap0) if np.isfinite(tap0) else 0])
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
        der_q = der_cut = 0.0
        fault_msg = single(inputs.get("grid", {}).get("fault_state"))
        faults = None
        if self.faulted is not None and fault_msg is not None:
            from twin.faults.plan import FaultState

            faults = FaultState.from_msg(fault_msg)
            if faults.topology_normal:
                faults = None
        state: Any
        if faults is not None and self.faulted is not None:  # branches out / islands: own solve
            state = self.faulted.solve(
                faults, load_p_mw=power["load_p_mw"], load_q_mvar=power["load_q_mvar"],
                sgen_p_mw=power["sgen_p_mw"], sgen_q_mvar=power["sgen_q_mvar"],
                storage_p_mw=power["storage_p_mw"])
        elif self.phases is not None and self.phases.der_devices:  # per-phase DER functions
            state, ctl = self.phases.solve_controlled(
                load_p_mw=np.asarray(power["load_p_mw"], float), load_q_mvar=np.asarray(power["load_q_mvar"], float),
                sgen_p_mw=np.asarray(power["sgen_p_mw"], float), sgen_q_mvar=np.asarray(power["sgen_q_mvar"], float),
                storage_p_mw=np.asarray(power["storage_p_mw"], float),
                freq_hz=self.frequency_hz(time) if self.frequency_hz is not None else None,
                time_s=self.start_s_of_day + time)
            if not ctl.converged:
                raise RuntimeError(f"grid: DER functions did not converge at t={time}s "
                                   f"({ctl.outer_iterations} outer iterations)")
            der_q, der_cut = float(ctl.q_mvar.sum()), ctl.curtailed_mw
        elif self.phases is not None:
            state = self.phases.solve(
                load_p_mw=np.asarray(power["load_p_mw"], float), load_q_mvar=np.asarray(power["load_q_mvar"], float),
                sgen_p_mw=np.asarray(power["sgen_p_mw"], float), sgen_q_mvar=np.asarray(power["sgen_q_mvar"], float),
                storage_p_mw=np.asarray(power["storage_p_mw"], float), time_s=self.start_s_of_day + time)
        elif self.controls is not None:
            freq = self.frequency_hz(time) if self.frequency_hz is not None else None
            state, ctl = self.controls.solve(
                load_p_mw=np.asarray(power["load_p_mw"], float), load_q_mvar=np.asarray(power["load_q_mvar"], float),
                sgen_p_mw=np.asarray(power["sgen_p_mw"], float), sgen_q_mvar=np.asarray(power["sgen_q_mvar"], float),
                storage_p_mw=np.asarray(power["storage_p_mw"], float), freq_hz=freq)
            if not ctl.converged:
                raise RuntimeError(f"grid: DER functions did not converge at t={time}s "
                                   f"({ctl.outer_iterations} outer iterations)")
            der_q, der_cut = float(ctl.q_mvar.sum()), ctl.curtailed_mw
        else:
            state = run_snapshot(
                self.net,
                load_p_mw=power["load_p_mw"], load_q_mvar=power["load_q_mvar"],
                sgen_p_mw=power["sgen_p_mw"], sgen_q_mvar=power["sgen_q_mvar"],
                storage_p_mw=power["storage_p_mw"],
            )
        if not state.converged:
            raise GridDiverged(f"grid: power flow did not converge at t={time}s{_HINT}")
        if self.phases is not None and not self.phases.regulators_converged:
            raise RuntimeError(f"grid: the regulators did not settle at t={time}s (taps "
                               f"{[r['tap'] for r in self.phases.tap_rows()]} after 15 control rounds)")
        live = np.isfinite(state.vm_pu) if fault_msg is not None else slice(None)
        check_plausible(state.vm_pu[live], bus_ids=self.bus_ids[live], time_s=int(time))
        tap = -1
        reg_rows = self.phases.tap_rows() if self.phases is not None and self.phases.regulators else None
        if self.phases is not None and self.phases.oltc is not None:  # gang-operated, on its control phase
            tap = self.phases.oltc_tap
            self.phases.step_oltc(dt_s=float(self.step_s))
        if self.taps is not None:
            tap = int(self.taps.taps[0])
            moves = self.taps.step(state.vm_pu[self.taps.buses], dt_s=float(self.step_s))
            if moves.any():  # acts from the next step (the solver recompiles on the new tap)
                self.net.trafo.iat[0, self.net.trafo.columns.get_loc("tap_pos")] = float(self.taps.taps[0])
        self._vm_pu = [float(v) for v in state.vm_pu]
        self._taps = taps_message(self, time_s=int(time))
        if time % self.interval_s == 0:
            if faults is not None and self.faulted is not None:  # the islands' slack, dead buses
                self.recorder.add("fault_grid", [{
                    "time_s": time, "energized_buses": int(np.isfinite(state.vm_pu).sum()),
                    "dead_buses": int((~np.isfinite(state.vm_pu)).sum()),
                    "grid_forming_p_mw": float(self.faulted.last_grid_forming_p_mw.sum()),
                    "ext_grid_p_mw": state.ext_grid_p_mw, "line_pl_mw": float(np.nansum(state.line_pl_mw))}])
            self.recorder.add_columns("bus", _bus_columns(time, self.bus_ids, state),
                                      n=len(self.bus_ids))
            self.recorder.add_columns("line", _line_columns(time, self.line_ids, state),
                                      n=len(self.line_ids))
            if reg_rows is not None:  # grid.opendss.regulators: deck, grid.oltc (3 phases)
                self.recorder.add("regulators", [{"time_s": time, **r} for r in reg_rows])
            self.recorder.add("grid", [{
                "time_s": time, "ext_grid_p_mw": state.ext_grid_p_mw,
                "load_p_mw": float(np.sum(power["load_p_mw"]) + np.sum(power["storage_p_mw"])),
                "sgen_p_mw": float(np.sum(power["sgen_p_mw"])),
                "line_pl_mw": float(np.nansum(state.line_pl_mw)),
                "vm_min_pu": state.vm_min_pu, "vm_max_pu": state.vm_max_pu,
                "max_loading_percent": state.max_loading_percent,
                "der_q_mvar": der_q, "der_curtailed_mw": der_cut, "oltc_tap": tap,
                "vuf_max_percent": state.vuf_max_percent if self.phases is not None else None,
            }])
        if self.end_s is not None and time + self.step_s >= self.end_s:
            return self.end_s + 1  # past the world's end: no solve at end_s (settlement only)
        return time + self.step_s

    def get_data(self, outputs: OutputRequest) -> OutputData:
        return {eid: {a: self._taps if a == "taps" else self._vm_pu for a in attrs}
                for eid, attrs in outputs.items()}


def taps_message(sim: GridSim, *, time_s: int) -> dict[str, Any]:
    """The taps the grid's next solve starts from (empty without a tap changer):
    ``trafo_tap_pos`` {trafo row: pandapower tap position} of the balanced OLTC,
    ``regulator_taps`` the three-phase engine's regulator tap numbers (an OpenDSS deck's
    RegControls, then the gang-operated OLTC), ``oltc_tap`` the OLTC's position."""
    reg = sim.phases.taps if sim.phases is not None and sim.phases.regulators else None
    oltc = (int(sim.taps.taps[0]) if sim.taps is not None
            else sim.phases.oltc_tap if sim.phases is not None else -1)
    return {"time_s": time_s, "oltc_tap": oltc,
            "trafo_tap_pos": {"0": int(sim.taps.taps[0])} if sim.taps is not None else {},
            "regulator_taps": [int(t) for t in reg] if reg is not None else []}


def _bus_columns(time_s: int, bus_ids: np.ndarray, state: Any) -> dict[str, Any]:
    """The ``bus`` rows of one solve as columns (no Python object per bus)."""
    cols: dict[str, Any] = {"time_s": time_s, "bus": bus_ids, "vm_pu": state.vm_pu,
                            "va_degree": state.va_degree, "p_mw": state.bus_p_mw,
                            "q_mvar": state.bus_q_mvar}
    if state.vm_abc_pu is not None:  # three-phase run: per-phase columns
        abc = np.asarray(state.vm_abc_pu, dtype=float)
        cols.update(vm_a_pu=abc[:, 0], vm_b_pu=abc[:, 1], vm_c_pu=abc[:, 2],
                    vuf_percent=state.vuf_percent)
    return cols


def _line_columns(time_s: int, line_ids: np.ndarray, state: Any) -> dict[str, Any]:
    """The ``line`` rows of one solve as columns."""
    cols: dict[str, Any] = {"time_s": time_s, "line": line_ids,
                            "loading_percent": state.line_loading_percent,
                            "p_from_mw": state.line_p_from_mw, "q_from_mvar": state.line_q_from_mvar,
                            "pl_mw": state.line_pl_mw}
    if state.line_loading_abc_percent is not None:
        abc = np.asarray(state.line_loading_abc_percent, dtype=float)
        cols.update(loading_a_percent=abc[:, 0], loading_b_percent=abc[:, 1],
                    loading_c_percent=abc[:, 2])
    if state.line_p_abc_from_mw is not None:
        pabc = np.asarray(state.line_p_abc_from_mw, dtype=float)
        cols.update(p_a_from_mw=pabc[:, 0], p_b_from_mw=pabc[:, 1], p_c_from_mw=pabc[:, 2])
    return cols
