"""The feeder's power flow under a fault state: branches out, ties closed, no upstream grid.

:class:`FaultedSnapshot` solves one snapshot like :func:`twin.grid.powerflow.run_snapshot`
(same :class:`~twin.grid.powerflow.GridState`, same conventions) on the topology of a
:class:`twin.faults.plan.FaultState`: the batch power flow with the faulted branches out of
service, closed ties in service, the ext_grid's branches out while the upstream grid is lost,
and the grid-forming batteries as the voltage reference of every island without the
upstream grid (:class:`twin.grid.pf.GridFormingUnit`). Buses nobody supplies are
de-energized (NaN voltage, zero power), as in pandapower. It solves at the net's present
transformer taps: the DSO's copy follows the grid simulator's OLTC, so the DSO's checks of a
faulted topology do too.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from twin.grid.pf import BatchPowerFlow, GridFormingUnit
from twin.grid.powerflow import GridState, _bus_pos, _Compiled, _state

__all__ = ["FaultedSnapshot"]

_INJ = ("load", "sgen", "storage")


class FaultedSnapshot:
    """One net, its grid-forming storages (index labels), solved per fault state."""

    def __init__(self, net: Any, *, grid_forming: Sequence[int] = ()) -> None:
        self.net = net
        self._units = [GridFormingUnit("storage", int(i)) for i in grid_forming]
        self._build()
        self._line_on = net.line.in_service.to_numpy(dtype=bool)
        self._trafo_on = net.trafo.in_service.to_numpy(dtype=bool)
        eg = set(net.ext_grid.bus[net.ext_grid.in_service.astype(bool)].astype(int))
        self._up_lines = np.array([i for i, (f, t) in enumerate(zip(net.line.from_bus, net.line.to_bus, strict=True))
                                   if (int(f) in eg) != (int(t) in eg)], dtype=np.int64)
        self._up_trafos = np.array([i for i, (h, lv) in enumerate(zip(net.trafo.hv_bus, net.trafo.lv_bus,
                                                                      strict=True))
                                    if (int(h) in eg) != (int(lv) in eg)], dtype=np.int64)
        self.last_grid_forming_p_mw = np.zeros(len(self._units))

    def _taps(self) -> np.ndarray:
        return self.net.trafo["tap_pos"].to_numpy(dtype=float) if "tap_pos" in self.net.trafo else np.zeros(0)

    def _build(self) -> None:
        """Compile the net at its present taps (the DSO's copy follows the grid's OLTC)."""
        import weakref

        net = self.net
        self._tap_pos = self._taps()
        self.solver = BatchPowerFlow(net, grid_forming=self._units)
        ga = self.solver.arrays
        pos = {el: _bus_pos(net, el, ga) for el in (*_INJ, "ext_grid", "shunt")}
        for name, ends in (("line", ("from_bus", "to_bus")), ("trafo", ("hv_bus", "lv_bus"))):
            for end in ends:
                pos[f"{name}.{end}"] = _bus_pos(net, name, ga, end)
        self._entry = _Compiled(weakref.ref(net), b"", self.solver, pos)

    def masks(self, state: Any) -> tuple[np.ndarray, np.ndarray]:
        """In-service masks of lines and trafos (row order) under ``state``."""
        lines = self._line_on.copy()
        trafos = self._trafo_on.copy()
        lines[list(state.lines_out)] = False
        lines[list(state.ties_closed)] = True
        trafos[list(state.trafos_out)] = False
        if state.upstream_lost:
            lines[self._up_lines] = False
            trafos[self._up_trafos] = False
        return lines, trafos

    def solve(self, state: Any, *, load_p_mw: Any, load_q_mvar: Any, sgen_p_mw: Any, sgen_q_mvar: Any,
              storage_p_mw: Any, storage_q_mvar: Any = None, tol_pu: float = 1e-10) -> GridState:
        """One AC power flow of the given set-points (row order) under ``state``, at the
        net's present transformer taps (recompiled when one moved)."""
        if not np.array_equal(self._taps(), self._tap_pos, equal_nan=True):
            self._build()
        lines, trafos = self.masks(state)
        sto_q = np.zeros(len(self.net.storage)) if storage_q_mvar is None else storage_q_mvar
        sp = {"load": (np.asarray(load_p_mw, float), np.asarray(load_q_mvar, float)),
              "sgen": (np.asarray(sgen_p_mw, float), np.asarray(sgen_q_mvar, float)),
              "storage": (np.asarray(storage_p_mw, float), np.asarray(sto_q, float))}
        res = self.solver.solve(load_p_mw=sp["load"][0], load_q_mvar=sp["load"][1],
                                sgen_p_mw=sp["sgen"][0], sgen_q_mvar=sp["sgen"][1],
                                storage_p_mw=sp["storage"][0], storage_q_mvar=sp["storage"][1],
                                line_in_service=lines, trafo_in_service=trafos, tol=tol_pu)
        if not res.converged[0]:
            from twin.grid.powerflow import _nan_state

            return _nan_state(self.net)
        self.last_grid_forming_p_mw = np.nan_to_num(res.grid_forming_p_mw[0]).copy()
        return _state(self._entry, res, sp)
