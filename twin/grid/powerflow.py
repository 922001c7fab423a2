"""Thin pandapower snapshot adapter: injections in, :class:`GridState` out.

Arrays in, arrays out (tables stay inside): :func:`apply_injections` writes element
set-points in table *row order* (load convention for loads and storage: consumption /
charging positive; sgen generation positive, as pandapower), :func:`run_snapshot` solves
one snapshot with ``pp.runpp`` and returns plain numpy arrays. A non-converged power flow
gives a :class:`GridState` with ``converged=False`` and NaN results, never a stale one.
The batch power flow (``twin.grid.pf``) will replace the solver behind this same function.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandapower as pp

__all__ = ["GridState", "apply_injections", "run_snapshot"]


@dataclass(frozen=True, slots=True, eq=False)
class GridState:
    """Results of one snapshot; bus arrays in ``net.bus.index`` order, lines/trafos in row order."""

    converged: bool
    bus: np.ndarray  # bus index labels
    vm_pu: np.ndarray
    va_degree: np.ndarray
    bus_p_mw: np.ndarray  # net injection at the bus, load convention (pandapower res_bus)
    bus_q_mvar: np.ndarray
    line_loading_percent: np.ndarray
    line_p_from_mw: np.ndarray
    line_q_from_mvar: np.ndarray
    line_pl_mw: np.ndarray
    trafo_loading_percent: np.ndarray

    @property
    def vm_min_pu(self) -> float:
        return _nan_extreme(self.vm_pu, np.nanmin)

    @property
    def vm_max_pu(self) -> float:
        return _nan_extreme(self.vm_pu, np.nanmax)

    @property
    def max_loading_percent(self) -> float:
        """Highest line or trafo loading (NaN when not converged or no branches)."""
        both = np.concatenate([self.line_loading_percent, self.trafo_loading_percent])
        return _nan_extreme(both, np.nanmax)


def _nan_extreme(values: np.ndarray, fn: Any) -> float:
    """Extreme over the finite entries (out-of-service elements are NaN); NaN if none."""
    finite = values[np.isfinite(values)]
    return float(fn(finite)) if finite.size else float("nan")


def _set(table: Any, column: str, values: np.ndarray | None, what: str) -> None:
    if values is None:
        return
    arr = np.asarray(values, dtype=np.float64)
    if arr.shape != (len(table),):
        raise ValueError(f"{what}: expected {len(table)} values (one per row), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{what}: values must be finite")
    table[column] = arr


def apply_injections(
    net: Any,
    *,
    load_p_mw: np.ndarray | None = None,
    load_q_mvar: np.ndarray | None = None,
    sgen_p_mw: np.ndarray | None = None,
    sgen_q_mvar: np.ndarray | None = None,
    storage_p_mw: np.ndarray | None = None,
    storage_q_mvar: np.ndarray | None = None,
) -> None:
    """Write element set-points (row order of each table); ``None`` leaves a column as is."""
    _set(net.load, "p_mw", load_p_mw, "load_p_mw")
    _set(net.load, "q_mvar", load_q_mvar, "load_q_mvar")
    _set(net.sgen, "p_mw", sgen_p_mw, "sgen_p_mw")
    _set(net.sgen, "q_mvar", sgen_q_mvar, "sgen_q_mvar")
    _set(net.storage, "p_mw", storage_p_mw, "storage_p_mw")
    _set(net.storage, "q_mvar", storage_q_mvar, "storage_q_mvar")


def _nan_state(net: Any) -> GridState:
    nb, nl, nt = len(net.bus), len(net.line), len(net.trafo)
    nan = np.full
    return GridState(
        converged=False,
        bus=net.bus.index.to_numpy(),
        vm_pu=nan(nb, np.nan),
        va_degree=nan(nb, np.nan),
        bus_p_mw=nan(nb, np.nan),
        bus_q_mvar=nan(nb, np.nan),
        line_loading_percent=nan(nl, np.nan),
        line_p_from_mw=nan(nl, np.nan),
        line_q_from_mvar=nan(nl, np.nan),
        line_pl_mw=nan(nl, np.nan),
        trafo_loading_percent=nan(nt, np.nan),
    )


def _col(table: Any, column: str, index: Any) -> np.ndarray:
    return table[column].reindex(index).to_numpy(dtype=np.float64, copy=True)


def run_snapshot(
    net: Any,
    *,
    load_p_mw: np.ndarray | None = None,
    load_q_mvar: np.ndarray | None = None,
    sgen_p_mw: np.ndarray | None = None,
    sgen_q_mvar: np.ndarray | None = None,
    storage_p_mw: np.ndarray | None = None,
    storage_q_mvar: np.ndarray | None = None,
    max_iteration: int = 30,
    numba: bool = False,
) -> GridState:
    """Apply the given injections (if any) and solve one AC power flow.

    ``numba`` is off by default: on feeder-sized nets its JIT compile (several seconds per
    process) costs more than it saves.
    """
    apply_injections(
        net,
        load_p_mw=load_p_mw,
        load_q_mvar=load_q_mvar,
        sgen_p_mw=sgen_p_mw,
        sgen_q_mvar=sgen_q_mvar,
        storage_p_mw=storage_p_mw,
        storage_q_mvar=storage_q_mvar,
    )
    try:
        pp.runpp(net, lightsim2grid=False, max_iteration=max_iteration, numba=numba)
    except pp.LoadflowNotConverged:
        return _nan_state(net)
    if not net.converged:
        return _nan_state(net)
    bus_idx = net.bus.index
    return GridState(
        converged=True,
        bus=bus_idx.to_numpy(),
        vm_pu=_col(net.res_bus, "vm_pu", bus_idx),
        va_degree=_col(net.res_bus, "va_degree", bus_idx),
        bus_p_mw=_col(net.res_bus, "p_mw", bus_idx),
        bus_q_mvar=_col(net.res_bus, "q_mvar", bus_idx),
        line_loading_percent=_col(net.res_line, "loading_percent", net.line.index),
        line_p_from_mw=_col(net.res_line, "p_from_mw", net.line.index),
        line_q_from_mvar=_col(net.res_line, "q_from_mvar", net.line.index),
        line_pl_mw=_col(net.res_line, "pl_mw", net.line.index),
        trafo_loading_percent=_col(net.res_trafo, "loading_percent", net.trafo.index),
    )
