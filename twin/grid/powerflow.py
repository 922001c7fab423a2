"""Thin pandapower snapshot adapter: injections in, :class:`GridState` out.

Arrays in, arrays out (tables stay inside): :func:`apply_injections` writes element
set-points in table *row order* (load convention for loads and storage: consumption /
charging positive; sgen generation positive, as pandapower), :func:`run_snapshot` solves
one snapshot with the batch power flow (:class:`twin.grid.pf.BatchPowerFlow`, B = 1) and
returns plain numpy arrays, the same as pandapower ``runpp`` would give (pandapower stays
the referee in the tests). A non-converged power flow gives a :class:`GridState` with
``converged=False`` and NaN results, never a stale one.

The net is compiled to arrays once and the compiled solver cached per net object (weakly:
it goes when the net goes). Every call checks a fingerprint of everything the compile
reads except the injection set-points (table sizes and indices, in-service flags,
switches, impedances, ratings, taps, element buses, scaling, ZIP shares, ext_grid set
points), so a topology or parameter change recompiles rather than reusing stale arrays.
Buses without supply have NaN voltages and zero power, as in pandapower.
"""

from __future__ import annotations

import hashlib
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from twin.grid.pf import BatchPowerFlow

__all__ = ["GridState", "apply_injections", "run_snapshot", "solver_for"]

_INJ_TABLES = ("load", "sgen", "storage")
# tables compile_net reads (or rejects when in service)
_FP_TABLES = (
    "bus", "line", "trafo", "switch", "ext_grid", "shunt", "load", "sgen", "storage",
    "gen", "trafo3w", "impedance", "ward", "xward", "dcline", "motor", "asymmetric_load",
    "asymmetric_sgen", "svc", "tcsc", "ssc", "vsc",
)
_MAX_CACHED_NETS = 32
# id(net) -> (weak reference to the net, fingerprint, solver); entries die with their net
_SOLVERS: dict[int, _Compiled] = {}


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
    #: power drawn from the upstream grid (sum over ext_grids; negative = export upstream)
    ext_grid_p_mw: float = float("nan")
    # three-phase runs (twin.grid.snapshot3ph); None for the balanced engine. There the
    # balanced fields hold the worst phase (vm_pu farthest from 1 p.u., highest loading)
    vm_abc_pu: np.ndarray | None = None  # (n_bus, 3) phase-to-neutral, NaN where absent
    vuf_percent: np.ndarray | None = None  # (n_bus,) negative / positive sequence, %
    line_loading_abc_percent: np.ndarray | None = None  # (n_line, 3)
    trafo_loading_abc_percent: np.ndarray | None = None  # (n_trafo, 3)
    line_p_abc_from_mw: np.ndarray | None = None  # (n_line, 3) per phase at the from bus

    @property
    def vm_min_pu(self) -> float:
        return _nan_extreme(self.vm_pu if self.vm_abc_pu is None else self.vm_abc_pu, np.nanmin)

    @property
    def vm_max_pu(self) -> float:
        return _nan_extreme(self.vm_pu if self.vm_abc_pu is None else self.vm_abc_pu, np.nanmax)

    @property
    def vuf_max_percent(self) -> float:
        """Highest voltage-unbalance factor (NaN for a balanced state)."""
        return float("nan") if self.vuf_percent is None else _nan_extreme(self.vuf_percent, np.nanmax)

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


_INJ_COLS = ("bus", "scaling", "in_service", "const_z_p_percent", "const_i_p_percent",
             "const_z_q_percent", "const_i_q_percent", "const_z_percent", "const_i_percent")
# the columns compile_net reads (trafo: also every tap* and leakage* column); other tables
# only their size, index and in_service (compile_net rejects them when in service)
_FP_COLUMNS: dict[str, tuple[str, ...]] = {
    "bus": ("vn_kv", "in_service"),
    "line": ("from_bus", "to_bus", "length_km", "r_ohm_per_km", "x_ohm_per_km", "c_nf_per_km",
             "g_us_per_km", "max_i_ka", "parallel", "df", "in_service"),
    "trafo": ("hv_bus", "lv_bus", "sn_mva", "vn_hv_kv", "vn_lv_kv", "vk_percent", "vkr_percent",
              "pfe_kw", "i0_percent", "shift_degree", "parallel", "df", "in_service"),
    "switch": ("bus", "element", "et", "closed", "z_ohm", "in_ka"),
    "ext_grid": ("bus", "vm_pu", "va_degree", "in_service"),
    "shunt": ("bus", "p_mw", "q_mvar", "step", "vn_kv", "in_service"),
    "load": _INJ_COLS,
    "sgen": _INJ_COLS,
    "storage": _INJ_COLS,
}


def _fingerprint(net: Any) -> bytes:
    """Digest of everything :func:`twin.grid.arrays.compile_net` reads but set-points."""
    h = hashlib.blake2b(digest_size=16)
    h.update(repr((float(net.sn_mva), float(net.f_hz))).encode())
    for name in _FP_TABLES:
        if name not in net:
            continue
        df = net[name]
        h.update(f"{name}:{len(df)}:".encode())
        if not len(df):
            continue
        h.update(np.ascontiguousarray(df.index.to_numpy()).tobytes())
        cols = [c for c in _FP_COLUMNS.get(name, ("in_service",)) if c in df.columns]
        if name == "trafo":
            cols += [c for c in df.columns if str(c).startswith(("tap", "leakage"))]
        for col in cols:
            arr = df[col].to_numpy()
            h.update(str(col).encode())
            if arr.dtype.kind in "biuf":
                h.update(np.ascontiguousarray(arr).tobytes())
            else:
                h.update(repr(arr.tolist()).encode())
    return h.digest()


@dataclass(frozen=True, slots=True, eq=False)
class _Compiled:
    net: weakref.ref[Any]
    fingerprint: bytes
    solver: BatchPowerFlow
    bus_pos: dict[str, np.ndarray]  # "load", "line.from_bus", ... -> position in net.bus


def _compiled(net: Any) -> _Compiled:
    fp = _fingerprint(net)
    key = id(net)
    hit = _SOLVERS.get(key)
    if hit is not None and hit.net() is net and hit.fingerprint == fp:
        return hit
    solver = BatchPowerFlow(net)
    ga = solver.arrays
    pos = {el: _bus_pos(net, el, ga) for el in (*_INJ_TABLES, "ext_grid", "shunt")}
    for name, ends in (("line", ("from_bus", "to_bus")), ("trafo", ("hv_bus", "lv_bus"))):
        for end in ends:
            pos[f"{name}.{end}"] = _bus_pos(net, name, ga, end)
    for k in [k for k, c in _SOLVERS.items() if c.net() is None]:
        del _SOLVERS[k]
    if len(_SOLVERS) >= _MAX_CACHED_NETS:
        del _SOLVERS[next(iter(_SOLVERS))]
    entry = _Compiled(weakref.ref(net), fp, solver, pos)
    _SOLVERS[key] = entry
    return entry


def solver_for(net: Any) -> BatchPowerFlow:
    """The cached :class:`BatchPowerFlow` of ``net``, recompiled if its topology changed."""
    return _compiled(net).solver


def _setpoints(table: Any) -> tuple[np.ndarray, np.ndarray]:
    """``p_mw * scaling``, ``q_mvar * scaling`` in row order (what runpp injects)."""
    if not len(table):
        return np.zeros(0), np.zeros(0)
    scaling = table["scaling"].to_numpy(dtype=np.float64) if "scaling" in table else 1.0
    p = table["p_mw"].to_numpy(dtype=np.float64) * scaling
    q = table["q_mvar"].to_numpy(dtype=np.float64) * scaling
    return p, q


def run_snapshot(
    net: Any,
    *,
    load_p_mw: np.ndarray | None = None,
    load_q_mvar: np.ndarray | None = None,
    sgen_p_mw: np.ndarray | None = None,
    sgen_q_mvar: np.ndarray | None = None,
    storage_p_mw: np.ndarray | None = None,
    storage_q_mvar: np.ndarray | None = None,
    max_iteration: int = 100,
    tol_pu: float = 1e-10,
) -> GridState:
    """Apply the given injections (if any) and solve one AC power flow.

    The injections are written into the net (as before, so the net always holds what was
    solved) and the cached batch solver of the net (:func:`solver_for`) runs on the net's
    set-points. ``max_iteration`` bounds the fixed-point iterations before the
    Newton-Raphson fallback, ``tol_pu`` the power mismatch at every node (pu of ``net.sn_mva``).
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
    entry = _compiled(net)
    solver = entry.solver
    sp = {el: _setpoints(net[el]) for el in _INJ_TABLES}
    res = solver.solve(
        load_p_mw=sp["load"][0], load_q_mvar=sp["load"][1],
        sgen_p_mw=sp["sgen"][0], sgen_q_mvar=sp["sgen"][1],
        storage_p_mw=sp["storage"][0], storage_q_mvar=sp["storage"][1],
        tol=tol_pu, max_iter=max_iteration,
    )
    if not res.converged[0]:
        return _nan_state(net)
    return _state(entry, res, sp)


def snapshot_state(net: Any, res: Any, **injections: np.ndarray) -> GridState:
    """:func:`run_snapshot`'s result from lane 0 of ``res``, a power flow the caller already
    solved on :func:`solver_for` of ``net`` with ``injections`` (keyword arguments of
    :func:`apply_injections`, written into the net as :func:`run_snapshot` does)."""
    apply_injections(net, **injections)
    entry = _compiled(net)
    if not res.converged[0]:
        return _nan_state(net)
    return _state(entry, res, {el: _setpoints(net[el]) for el in _INJ_TABLES})


def _state(entry: _Compiled, res: Any, sp: dict[str, tuple[np.ndarray, np.ndarray]]) -> GridState:
    """GridState of scenario 0 of ``res``, with pandapower's ``res_bus`` conventions."""
    ga = entry.solver.arrays
    pos = entry.bus_pos
    en = res.energized[0]
    vm = np.where(en, res.vm_pu[0], np.nan)
    va = np.where(en, res.va_degree[0], np.nan)
    # bus powers, load convention, summed per element bus as pandapower does (also for
    # buses fused by closed bus-bus switches); ZIP loads and shunts at their voltage
    n_bus = ga.n_bus
    bus_p = np.zeros(n_bus + 1)
    bus_q = np.zeros(n_bus + 1)
    vm0 = res.vm_pu[0]

    def add(name: str, node: np.ndarray, p: np.ndarray, q: np.ndarray) -> None:
        at = np.where(node >= 0, pos[name], n_bus)
        np.add.at(bus_p, at, p)
        np.add.at(bus_q, at, q)

    p_l, q_l = sp["load"]
    if p_l.size:
        z = ga.load_zip
        u = vm0[pos["load"]]
        add("load", ga.load_node, p_l * (1.0 - z[:, 0] - z[:, 1] + z[:, 1] * u + z[:, 0] * u * u),
            q_l * (1.0 - z[:, 2] - z[:, 3] + z[:, 3] * u + z[:, 2] * u * u))
    add("sgen", ga.sgen_node, -sp["sgen"][0], -sp["sgen"][1])
    add("storage", ga.storage_node, sp["storage"][0], sp["storage"][1])
    add("ext_grid", ga.ext_grid_node, -res.ext_grid_p_mw[0], -res.ext_grid_q_mvar[0])
    if ga.shunt_node.size:
        u = vm0[pos["shunt"]]
        s_sh = np.conj(ga.shunt_y) * u * u * ga.sn_mva  # consumption convention
        add("shunt", ga.shunt_node, s_sh.real, s_sh.imag)
    bus_p = np.where(en, bus_p[:n_bus], 0.0)  # unsupplied: nothing flows (pandapower: 0)
    bus_q = np.where(en, bus_q[:n_bus], 0.0)
    return GridState(
        converged=True,
        bus=ga.bus_index.copy(),
        vm_pu=vm,
        va_degree=va,
        bus_p_mw=bus_p,
        bus_q_mvar=bus_q,
        line_loading_percent=_dead_nan(pos, "line", ("from_bus", "to_bus"), en, res.line_loading_percent[0]),
        line_p_from_mw=res.line_p_from_mw[0].copy(),
        line_q_from_mvar=res.line_q_from_mvar[0].copy(),
        line_pl_mw=res.line_pl_mw[0].copy(),
        trafo_loading_percent=_dead_nan(pos, "trafo", ("hv_bus", "lv_bus"), en, res.trafo_loading_percent[0]),
        ext_grid_p_mw=float(np.sum(res.ext_grid_p_mw[0])),
    )


def _dead_nan(
    pos: dict[str, np.ndarray], name: str, ends: tuple[str, str], en: np.ndarray, loading: np.ndarray
) -> np.ndarray:
    """Loading with NaN where an end bus is unsupplied (pandapower's ``res_line`` rule)."""
    out = loading.copy()
    if out.size:
        ok = en[pos[f"{name}.{ends[0]}"]] & en[pos[f"{name}.{ends[1]}"]]
        out[~ok] = np.nan
    return out


def _bus_pos(net: Any, name: str, ga: Any, column: str = "bus") -> np.ndarray:
    """Position in ``net.bus.index`` of each element's bus (row order of ``net[name]``)."""
    labels = net[name][column].to_numpy(dtype=np.int64)
    order = np.argsort(ga.bus_index, kind="stable")
    return np.asarray(order[np.searchsorted(ga.bus_index, labels, sorter=order)], dtype=np.int64)
