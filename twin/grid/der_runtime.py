"""DER functions of a built feeder, and controlled snapshots for the run (grid simulator, DSO).

:func:`feeder_der_devices` turns the scenario's ``der_functions:`` blocks into one
:class:`twin.grid.controlled_pf.DerDevice` per inverter of the feeder (household PV sgen
rows, home and community battery storage rows, V2G charger load rows).
:class:`ControlledSnapshot` solves one snapshot of a net with those devices (the controlled
power flow on the net's cached batch solver), returning the :class:`GridState` of the final
set-points as :func:`twin.grid.powerflow.run_snapshot` gives it, plus the device outputs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from twin.grid.controlled_pf import ControlledPowerFlow, ControlledResult, DerDevice
from twin.grid.powerflow import GridState, snapshot_state, solver_for

__all__ = ["ControlledSnapshot", "SnapshotControls", "feeder_der_devices"]


def feeder_der_devices(scenario: Any, feeder: Any) -> list[DerDevice]:
    """The inverters with grid-support functions, in a fixed order (PV, home batteries,
    community batteries, V2G chargers)."""
    devices: list[DerDevice] = []
    hh = scenario.agents.households
    base = "agents.households"
    if hh.pv.der_functions is not None:
        spec = hh.pv.der_functions
        for i in np.flatnonzero(feeder.household_sgen_row >= 0):
            devices.append(DerDevice("sgen", int(feeder.household_sgen_row[i]), spec.functions(
                p_rated_mw=float(feeder.household_pv_kwp[i]) / 1000.0, can_absorb=False,
                path=f"{base}.pv.der_functions")))
    if hh.battery.der_functions is not None:
        spec = hh.battery.der_functions
        for i in np.flatnonzero(feeder.household_storage_row >= 0):
            devices.append(DerDevice("storage", int(feeder.household_storage_row[i]), spec.functions(
                p_rated_mw=hh.battery.power_kw / 1000.0, can_absorb=True, path=f"{base}.battery.der_functions")))
    cs = scenario.agents.community_storage
    if cs.der_functions is not None:
        for row in feeder.storage_row:
            devices.append(DerDevice("storage", int(row), cs.der_functions.functions(
                p_rated_mw=cs.power_kw / 1000.0, can_absorb=True, path="agents.community_storage.der_functions")))
    ev = scenario.agents.evs
    if ev.der_functions is not None:
        for row in feeder.ev_load_row:
            devices.append(DerDevice("load", int(row), ev.der_functions.functions(
                p_rated_mw=ev.charger_kw / 1000.0, can_absorb=True, path="agents.evs.der_functions")))
    return devices


@dataclass(frozen=True, slots=True, eq=False)
class SnapshotControls:
    """What the devices did in one controlled snapshot (MW / Mvar, generator convention)."""

    converged: bool
    outer_iterations: int
    p_avail_mw: np.ndarray
    p_mw: np.ndarray
    q_mvar: np.ndarray

    @property
    def curtailed_mw(self) -> float:
        """Active power the functions withheld (volt-watt, frequency-watt, kVA limit)."""
        return float(np.maximum(self.p_avail_mw - self.p_mw, 0.0).sum())


_SNAPSHOT_TOL = 1e-10  # run_snapshot's power mismatch (pu)


class ControlledSnapshot:
    """Controlled snapshots of one net with fixed devices (see the module docstring)."""

    def __init__(self, net: Any, devices: list[DerDevice], *, tol_pu: float = 1e-4) -> None:
        self.net = net
        self.devices = devices
        self.tol_pu = tol_pu
        self._cpf: ControlledPowerFlow | None = None
        self._solver: Any = None
        self._el = np.array([d.element for d in devices], dtype=object)
        self._rows = np.array([d.row for d in devices], dtype=np.int64)

    def _controlled(self) -> ControlledPowerFlow:
        solver = solver_for(self.net)  # recompiled when the net changed (e.g. a tap moved)
        if self._cpf is None or solver is not self._solver:
            self._cpf = ControlledPowerFlow(solver, devices=self.devices)
            self._solver = solver
        return self._cpf

    def solve(self, *, load_p_mw: np.ndarray, load_q_mvar: np.ndarray, sgen_p_mw: np.ndarray,
              sgen_q_mvar: np.ndarray, storage_p_mw: np.ndarray, storage_q_mvar: np.ndarray | None = None,
              freq_hz: float | None = None) -> tuple[GridState, SnapshotControls]:
        """Solve with the devices' functions; their rows of the given arrays are what they
        would do unconstrained (PV available power, battery / charger schedule)."""
        sq = np.zeros_like(storage_p_mw) if storage_q_mvar is None else storage_q_mvar
        arrays = {"sgen": (sgen_p_mw, 1.0), "storage": (storage_p_mw, -1.0), "load": (load_p_mw, -1.0)}
        avail = np.array([arrays[str(e)][1] * float(arrays[str(e)][0][r]) for e, r in zip(self._el, self._rows, strict=True)])
        res: ControlledResult = self._controlled().solve(
            der_p_avail_mw=avail, load_p_mw=load_p_mw, load_q_mvar=load_q_mvar, sgen_p_mw=sgen_p_mw,
            sgen_q_mvar=sgen_q_mvar, storage_p_mw=storage_p_mw, storage_q_mvar=sq,
            freq_hz=None if freq_hz is None else np.array([freq_hz]), tol_pu=self.tol_pu, tol=_SNAPSHOT_TOL)
        # the controlled power flow's own last flow, at run_snapshot's tolerance: no second solve
        state = snapshot_state(
            self.net, res.pf, load_p_mw=res.load_p_mw[0], load_q_mvar=res.load_q_mvar[0], sgen_p_mw=res.sgen_p_mw[0],
            sgen_q_mvar=res.sgen_q_mvar[0], storage_p_mw=res.storage_p_mw[0], storage_q_mvar=res.storage_q_mvar[0])
        ctl = SnapshotControls(converged=bool(res.controls_converged[0]), outer_iterations=int(res.outer_iterations[0]),
                               p_avail_mw=avail, p_mw=res.der_p_mw[0], q_mvar=res.der_q_mvar[0])
        return state, ctl
