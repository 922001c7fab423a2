"""Phase-frame batch power flow for unbalanced feeders (:class:`BatchPowerFlow3ph`).

Method
------
The feeder (:class:`twin.grid.feeder3ph.Feeder3ph`) gives the per-unit node admittance
matrix ``Y`` of its elements. The node voltages are written ``V = V_fix + T z``: ``V_fix``
holds the sources (fixed nodes, and the positive-sequence voltage of sequence slacks) and
``z`` the unknowns (one per energized non-source node, plus the zero- and negative-sequence
voltage of each sequence slack bus). Kirchhoff's current law on the rows ``R`` that are not
a source's (every non-source node; the zero- and negative-sequence rows of a slack bus)
gives ``M z = c + R I(V)`` with ``M = R Y T`` and ``c = -R Y V_fix``; ``I(V)`` are the loads'
current injections (constant power, current or impedance; wye or delta, so delta loads
and any transformer vector group are exact). The fixed point

    z <- M^-1 (c + R I(V)),        V = V_fix + T z

uses one sparse LU of ``M`` per topology (cached) and numba-compiled triangular solves,
parallel over scenarios (:mod:`twin.grid._kernels3ph`). It stops when the power mismatch
``|V_k| |I_k(V) - I_k(V_prev)|`` of every node is at most ``tol`` (per unit of the feeder's
per-phase base power): with ``M z = c + R I(V_prev)`` that is exactly the mismatch left.
Nodes in no source's island are de-energized (NaN voltages).

Conventions: loads and the per-phase injections given to :meth:`BatchPowerFlow3ph.solve`
are consumption-positive; phases a, b, c are the last axis; angles in degrees.
"""

from __future__ import annotations

import sys
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import splu

from twin.grid.feeder3ph import Feeder3ph

__all__ = ["BatchPowerFlow3ph", "PowerFlow3phResult"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
ComplexArray = NDArray[np.complex128]

_A = np.exp(2j * np.pi / 3)
# V_abc = SEQ @ V_012 ;  V_012 = SEQ_INV @ V_abc
SEQ = np.array([[1, 1, 1], [1, _A**2, _A], [1, _A, _A**2]], dtype=complex)
SEQ_INV = np.linalg.inv(SEQ)
_CACHE_SIZE = 32
# batches with at least this much work (scenarios x nodes) run the numba kernel
_NUMBA_WORK = 2_000


@dataclass(frozen=True, eq=False)
class PowerFlow3phResult:
    """Results of one batch of B unbalanced power flows.

    ``vm_pu`` / ``va_degree`` (B, n_bus, 3): phase-to-ground voltage per phase a, b, c (NaN
    for a phase the bus lacks or a de-energized bus); ``vuf_percent`` (B, n_bus): negative-
    over positive-sequence voltage of three-phase buses (NaN otherwise);
    ``branch_i_ka`` / ``branch_loading_percent`` (B, n_elem, 3): current per phase at each
    element's first terminal and its ratio to the rated current (NaN without a rating);
    ``branch_p_from_mw`` / ``branch_q_from_mvar`` (B, n_elem, 3): power per phase flowing into
    each element at its first terminal (a line's from bus, a transformer's first winding);
    ``branch_pl_mw`` (B, n_elem) losses per element; ``pl_mw`` (B,) total losses of the
    network (source impedances excluded); ``source_p_mw`` / ``source_q_mvar`` (B,) the power
    the sources deliver into the network; ``converged`` (B,), ``iterations`` (B,);
    ``v_node`` (B, n_node) the complex per-unit node voltages.
    """

    vm_pu: FloatArray
    va_degree: FloatArray
    vuf_percent: FloatArray
    branch_i_ka: FloatArray
    branch_loading_percent: FloatArray
    branch_pl_mw: FloatArray
    pl_mw: FloatArray
    branch_p_from_mw: FloatArray
    branch_q_from_mvar: FloatArray
    source_p_mw: FloatArray
    source_q_mvar: FloatArray
    converged: BoolArray
    iterations: IntArray
    v_node: ComplexArray
    bus_names: tuple[str, ...]
    branch_names: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class _Topology:
    y: Any  # CSR (n_node, n_node)
    energized: BoolArray  # (n_node,)
    source_node: BoolArray  # (n_node,) fixed nodes and slack-bus nodes
    v_fix: ComplexArray  # (n_node,)
    r_mat: Any  # CSR (n_z, n_node)
    t_mat: Any  # CSR (n_node, n_z)
    c: ComplexArray  # (n_z,)
    lu: Any
    lu_arrays: tuple[Any, ...]


def _lu_arrays(lu: Any, n: int) -> tuple[Any, ...]:
    """CSR arrays of L (strictly lower, unit diagonal), U (strictly upper), 1/diag(U) and the permutations."""
    low = sp.tril(lu.L, k=-1, format="csr")
    up = lu.U.tocsr()
    diag = up.diagonal()
    up = sp.triu(up, k=1, format="csr")
    low.sort_indices()
    up.sort_indices()
    # Pr A Pc = L U:  A x = b  <=>  L U y = Pr b,  x = Pc y
    perm_r = np.asarray(lu.perm_r, dtype=np.int64)  # b[i] goes to row perm_r[i]
    perm_c = np.asarray(lu.perm_c, dtype=np.int64)  # x[perm_c[j]] = y[j]
    return (low.indptr.astype(np.int64), low.indices.astype(np.int64), low.data.astype(np.complex128),
            up.indptr.astype(np.int64), up.indices.astype(np.int64), up.data.astype(np.complex128),
            (1.0 / diag).astype(np.complex128), perm_r, perm_c)


def _build_topology(feeder: Feeder3ph, elem_on: BoolArray) -> _Topology:
    n = feeder.n_node
    y = feeder.y_matrix(elem_on)
    coo = y.tocoo()
    off = (coo.row != coo.col) & (np.abs(coo.data) > 0)
    graph = sp.csr_matrix((np.ones(int(off.sum())), (coo.row[off], coo.col[off])), shape=(n, n))
    _, comp = connected_components(graph, directed=False)
    slack = feeder.seq_slack_nodes
    src = np.concatenate([feeder.fixed_node, slack.ravel()]).astype(np.int64)
    energized = np.isin(comp, np.unique(comp[src]))
    source_node = np.zeros(n, dtype=bool)
    source_node[src] = True
    pq = np.flatnonzero(energized & ~source_node)
    n_pq = pq.size
    n_z = n_pq + 2 * slack.shape[0]
    v_fix = np.zeros(n, dtype=complex)
    v_fix[feeder.fixed_node] = feeder.fixed_v_pu
    t_r, t_c, t_v = [pq], [np.arange(n_pq)], [np.ones(n_pq, dtype=complex)]
    r_r, r_c, r_v = [np.arange(n_pq)], [pq], [np.ones(n_pq, dtype=complex)]
    for k in range(slack.shape[0]):
        nodes = slack[k]
        v_fix[nodes] = SEQ[:, 1] * feeder.seq_slack_v1_pu[k]
        for j, seq in enumerate((0, 2)):
            col = n_pq + 2 * k + j
            t_r.append(nodes)
            t_c.append(np.full(3, col))
            t_v.append(SEQ[:, seq])
            r_r.append(np.full(3, col))
            r_c.append(nodes)
            r_v.append(SEQ_INV[seq, :])
    t_mat = sp.csr_matrix((np.concatenate(t_v), (np.concatenate(t_r), np.concatenate(t_c))), shape=(n, n_z))
    r_mat = sp.csr_matrix((np.concatenate(r_v), (np.concatenate(r_r), np.concatenate(r_c))), shape=(n_z, n))
    m = (r_mat @ y @ t_mat).tocsc()
    c = -(r_mat @ (y @ v_fix))
    if n_z == 0:
        lu = None
        arrays: tuple[Any, ...] = ()
    else:
        lu = splu(m, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.1)
        arrays = _lu_arrays(lu, n_z)
    return _Topology(y=y, energized=energized, source_node=source_node, v_fix=v_fix, r_mat=r_mat, t_mat=t_mat,
                     c=np.asarray(c, dtype=complex), lu=lu, lu_arrays=arrays)


def _as_batch(name: str, value: ArrayLike | None, n_bus: int) -> FloatArray | None:
    if value is None:
        return None
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[1:] != (n_bus, 3):
        raise ValueError(f"{name}: expected shape (B, {n_bus}, 3), got {np.shape(value)}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return arr


class BatchPowerFlow3ph:
    """B unbalanced power flows of one :class:`Feeder3ph` at once.

    ``BatchPowerFlow3ph(feeder).solve()`` solves the feeder's own loads (B = 1);
    ``solve(p_mw=P, q_mvar=Q)`` adds per-phase wye constant-power loads (B, n_bus, 3),
    consumption-positive (generation negative), in the feeder's bus order.
    """

    def __init__(self, feeder: Feeder3ph, *, use_numba: bool | None = None) -> None:
        self.feeder = feeder
        self._use_numba = use_numba
        self._cache: OrderedDict[bytes, _Topology] = OrderedDict()
        self._ysrc_cache: dict[int, Any] = {}
        self._calls = 0
        f = feeder
        self._n_elem = len(f.elem_names)
        node_phase = np.full(f.n_node, -1, dtype=np.int64)
        for p in range(3):
            ok = f.node_of[:, p] >= 0
            node_phase[f.node_of[ok, p]] = p
        self._node_bus = np.full(f.n_node, -1, dtype=np.int64)
        for p in range(3):
            ok = f.node_of[:, p] >= 0
            self._node_bus[f.node_of[ok, p]] = np.flatnonzero(ok)
        # element conductor currents: I_cond = G V (ground conductors read a zero voltage)
        rows, cols, vals = [], [], []
        n_cond = f.elem_nodes.shape[0]
        cond_vb = np.ones(n_cond)
        for k, y in enumerate(f.elem_y):
            a, b = int(f.elem_ptr[k]), int(f.elem_ptr[k + 1])
            nodes = f.elem_nodes[a:b]
            r, c = np.meshgrid(np.arange(a, b), nodes, indexing="ij")
            keep = c >= 0
            rows.append(r[keep])
            cols.append(c[keep])
            vals.append(y[keep])
            term = f.elem_terminal[a:b]
            for t in np.unique(term):
                sel = (term == t) & (nodes >= 0)
                vb = f.node_vbase_kv[nodes[sel]].max() if sel.any() else 1.0
                cond_vb[a:b][term == t] = np.where(nodes[term == t] >= 0, f.node_vbase_kv[np.maximum(nodes[term == t], 0)], vb)
        self._g = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                                shape=(n_cond, f.n_node)) if n_cond else sp.csr_matrix((0, f.n_node), dtype=complex)
        self._cond_ibase_ka = f.sn_mva / cond_vb
        self._cond_elem = np.repeat(np.arange(self._n_elem), np.diff(f.elem_ptr))
        self._cond_to_elem = sp.csr_matrix((np.ones(n_cond), (np.arange(n_cond), self._cond_elem)),
                                           shape=(n_cond, self._n_elem))
        ph = np.where(f.elem_nodes >= 0, node_phase[np.maximum(f.elem_nodes, 0)], -1)
        self._cond_first = (f.elem_terminal == 0) & (ph >= 0)
        self._cond_phase = ph
        self._not_source_elem = np.array([not n.lower().startswith("vsource.") for n in f.elem_names], dtype=bool)
        # loads: I = Yeq f(|U| / u) U, U = V_i - V_j, injected -I at i and +I at j (f: _kernels3ph.load_factor)
        u = f.load_u_nom_pu
        self._ld_k: ComplexArray = np.asarray(np.conj(f.load_s_mva / f.sn_mva) / u**2, dtype=np.complex128)
        self._ld_params = (np.asarray(u, dtype=float), f.load_model.astype(np.int64),
                           np.asarray(f.load_vlow_pu, dtype=float), np.asarray(f.load_vmin_pu, dtype=float),
                           np.asarray(f.load_vmax_pu, dtype=float))
        self._ld_i = f.load_i
        self._ld_j = np.where(f.load_j >= 0, f.load_j, f.n_node)  # ground -> a zero column
        n1 = f.n_node + 1
        nl = f.load_i.shape[0]
        self._ld_inc = sp.csr_matrix(
            (np.concatenate([-np.ones(nl), np.ones(nl)]), (np.concatenate([self._ld_i, self._ld_j]),
                                                          np.concatenate([np.arange(nl), np.arange(nl)]))),
            shape=(n1, nl)).T.tocsr()  # (nl, n1): I_node = I_load @ inc

    # ------------------------------------------------------------------ topology

    def _topology(self, elem_on: BoolArray) -> _Topology:
        key = np.packbits(elem_on).tobytes()
        topo = self._cache.get(key)
        if topo is None:
            topo = _build_topology(self.feeder, elem_on)
            self._cache[key] = topo
            if len(self._cache) > _CACHE_SIZE:
                self._cache.popitem(last=False)
        return topo

    # ------------------------------------------------------------------ solve

    def solve(
        self,
        p_mw: ArrayLike | None = None,
        q_mvar: ArrayLike | None = None,
        *,
        base_loads: bool = True,
        elem_in_service: ArrayLike | None = None,
        tol: float = 1e-8,
        max_iter: int = 100,
    ) -> PowerFlow3phResult:
        """Solve B power flows; B is the first dimension of ``p_mw`` / ``q_mvar`` (1 if none).

        ``p_mw`` / ``q_mvar`` (B, n_bus, 3): per-phase wye constant-power loads added to the
        feeder's own loads (``base_loads=False`` leaves those out). A phase a bus lacks must
        be 0. ``elem_in_service`` (n_elem,) bool takes elements out of the network (one
        topology per call; islands without a source are de-energized). ``tol`` bounds the
        power mismatch of every node in per unit of ``feeder.sn_mva``.
        """
        f = self.feeder
        p = _as_batch("p_mw", p_mw, f.n_bus)
        q = _as_batch("q_mvar", q_mvar, f.n_bus)
        if p is None and q is None:
            s_bus = np.zeros((1, f.n_bus, 3), dtype=complex)
        else:
            pz = p if p is not None else np.zeros_like(q)
            qz = q if q is not None else np.zeros_like(p)
            if pz.shape != qz.shape:
                raise ValueError(f"p_mw {pz.shape} and q_mvar {qz.shape} differ in shape")
            s_bus = pz + 1j * qz
            missing = (f.node_of < 0)[None] & (s_bus != 0)
            if missing.any():
                b, k, ph = np.argwhere(missing)[0]
                raise ValueError(f"p_mw/q_mvar[{b}, {k}, {ph}]: bus {f.bus_names[k]!r} has no phase {'abc'[ph]}")
        n_b = s_bus.shape[0]
        if elem_in_service is None:
            elem_on = np.ones(self._n_elem, dtype=bool)
        else:
            elem_on = np.asarray(elem_in_service, dtype=bool)
            if elem_on.shape != (self._n_elem,):
                raise ValueError(f"elem_in_service: expected shape ({self._n_elem},), got {elem_on.shape}")
        topo = self._topology(elem_on)
        s_node = np.zeros((n_b, f.n_node), dtype=complex)
        has = f.node_of >= 0
        s_node[:, f.node_of[has]] = s_bus[:, has] / f.sn_mva
        ld_k: ComplexArray = self._ld_k if base_loads else np.zeros_like(self._ld_k)
        s_node[:, ~topo.energized] = 0.0
        use_numba = self._use_numba
        if use_numba is None:  # numba for big batches, or from the solver's third call on
            self._calls += 1
            use_numba = (n_b * f.n_node >= _NUMBA_WORK or self._calls > 2
                         or "twin.grid._kernels3ph" in sys.modules)
        if topo.lu is None:
            v = np.tile(topo.v_fix, (n_b, 1))
            iters = np.zeros(n_b, dtype=np.int64)
            conv = np.ones(n_b, dtype=bool)
        elif use_numba:
            from twin.grid import _kernels3ph

            v, iters, conv = _kernels3ph.solve_batch(topo, self, s_node, ld_k, tol, max_iter)
        else:
            v, iters, conv = self._np_fixed_point(topo, s_node, ld_k, tol, max_iter)
        if use_numba:
            return self._post_numba(topo, v, iters, conv, s_node, ld_k)
        return self._post(topo, v, iters, conv, s_node, ld_k)

    def _currents(self, v: ComplexArray, s_node: ComplexArray, ld_k: ComplexArray) -> ComplexArray:
        """Node current injections (B, n_node) of the loads at voltages ``v``."""
        n_b = v.shape[0]
        vg = np.concatenate([v, np.zeros((n_b, 1), dtype=complex)], axis=1)
        u = vg[:, self._ld_i] - vg[:, self._ld_j]
        i_ld = self._ld_k if ld_k is None else ld_k
        i_ld = i_ld * _load_factor(np.abs(u) / self._ld_params[0], *self._ld_params[1:]) * u
        inj = (self._ld_inc.T @ i_ld.T).T[:, :-1] if i_ld.shape[1] else np.zeros((n_b, v.shape[1]), dtype=complex)
        with np.errstate(divide="ignore", invalid="ignore"):
            wye = np.where(s_node != 0, np.conj(s_node / np.where(v != 0, v, 1.0)), 0.0)
        return np.asarray(inj - wye)

    def _np_fixed_point(self, topo: _Topology, s_node: ComplexArray, ld_k: ComplexArray, tol: float,
                        max_iter: int) -> tuple[ComplexArray, IntArray, BoolArray]:
        n_b = s_node.shape[0]
        z = topo.lu.solve(np.tile(topo.c, (n_b, 1)).T).T
        v = topo.v_fix + (topo.t_mat @ z.T).T
        i_old = self._currents(v, s_node, ld_k)
        iters = np.zeros(n_b, dtype=np.int64)
        conv = np.zeros(n_b, dtype=bool)
        active = np.arange(n_b)
        for it in range(1, max_iter + 1):
            rhs = topo.c + (topo.r_mat @ i_old[active].T).T
            z = topo.lu.solve(rhs.T).T
            v_new = topo.v_fix + (topo.t_mat @ z.T).T
            i_new = self._currents(v_new, s_node[active], ld_k)
            mis = np.max(np.abs(v_new) * np.abs(i_new - i_old[active]), axis=1)
            v[active] = v_new
            i_old[active] = i_new
            iters[active] = it
            done = mis <= tol
            conv[active[done]] = True
            active = active[~done & np.isfinite(mis)]
            if active.size == 0:
                break
        return v, iters, conv

    # ------------------------------------------------------------------ results

    def _y_src(self, topo: _Topology) -> Any:
        ys = self._ysrc_cache.get(id(topo))
        if ys is None:
            src = np.flatnonzero(topo.source_node)
            ys = (topo.y - sp.csr_matrix(self.feeder.shunt_y))[src].tocsr()
            ys.sort_indices()
            self._ysrc_cache[id(topo)] = ys
        return ys

    def _post_numba(self, topo: _Topology, v: ComplexArray, iters: IntArray, conv: BoolArray,
                    s_node: ComplexArray, ld_k: ComplexArray) -> PowerFlow3phResult:
        from twin.grid import _kernels3ph

        f = self.feeder
        n_b = v.shape[0]
        v = np.where(conv[:, None] & topo.energized[None], v, np.nan + 0j)
        nan = np.nan
        vm = np.full((n_b, f.n_bus, 3), nan)
        va = np.full((n_b, f.n_bus, 3), nan)
        vuf = np.full((n_b, f.n_bus), nan)
        i_ka = np.full((n_b, self._n_elem, 3), nan)
        load_pc = np.full((n_b, self._n_elem, 3), nan)
        pl = np.where(conv[:, None], 0.0, nan) * np.ones((1, self._n_elem))
        pl_tot = np.full(n_b, nan)
        s_src = np.full(n_b, nan + 0j)
        ys = self._y_src(topo)
        g = self._g
        cond_node = np.where(f.elem_nodes >= 0, f.elem_nodes, f.n_node)
        p_from = np.full((n_b, self._n_elem, 3), nan)
        q_from = np.full((n_b, self._n_elem, 3), nan)
        post = _kernels3ph.post_par if n_b * f.n_node >= _kernels3ph._PARALLEL_WORK else _kernels3ph.post_ser
        net = (f.node_of, g.indptr.astype(np.int64), g.indices.astype(np.int64), g.data, cond_node,
               self._cond_elem, np.maximum(self._cond_phase, 0), self._cond_first, self._cond_ibase_ka,
               f.elem_i_max_ka, self._not_source_elem, ys.indptr.astype(np.int64), ys.indices.astype(np.int64),
               ys.data.astype(np.complex128), np.flatnonzero(topo.source_node))
        loads = (self._ld_i, self._ld_j, np.ascontiguousarray(ld_k, dtype=np.complex128), *self._ld_params)
        post(v, conv, net, loads, s_node, float(f.sn_mva), (vm, va, vuf, i_ka, load_pc, pl, pl_tot, s_src, p_from, q_from))
        return PowerFlow3phResult(
            vm_pu=vm, va_degree=va, vuf_percent=vuf, branch_i_ka=i_ka, branch_loading_percent=load_pc,
            branch_pl_mw=pl, pl_mw=pl_tot, source_p_mw=s_src.real, source_q_mvar=s_src.imag,
            branch_p_from_mw=p_from, branch_q_from_mvar=q_from,
            converged=conv, iterations=iters, v_node=v, bus_names=f.bus_names, branch_names=f.elem_names,
        )

    def _post(self, topo: _Topology, v: ComplexArray, iters: IntArray, conv: BoolArray, s_node: ComplexArray,
              ld_k: ComplexArray) -> PowerFlow3phResult:
        f = self.feeder
        n_b = v.shape[0]
        v = np.where(conv[:, None] & topo.energized[None], v, np.nan + 0j)
        has = f.node_of >= 0
        v_bus = np.full((n_b, f.n_bus, 3), np.nan + 0j)
        v_bus[:, has] = v[:, f.node_of[has]]
        vm = np.abs(v_bus)
        va = np.degrees(np.angle(v_bus))
        v012 = np.einsum("ij,bnj->bni", SEQ_INV, v_bus)
        with np.errstate(divide="ignore", invalid="ignore"):
            vuf = np.abs(v012[..., 2]) / np.abs(v012[..., 1]) * 100.0
        vuf[:, ~has.all(axis=1)] = np.nan
        v0 = np.where(np.isnan(v), 0.0, v)
        i_cond = (self._g @ v0.T).T  # (B, n_cond)
        vg = np.concatenate([v0, np.zeros((n_b, 1))], axis=1)
        s_cond = vg[:, np.where(f.elem_nodes >= 0, f.elem_nodes, f.n_node)] * np.conj(i_cond)
        pl = np.asarray(s_cond.real @ self._cond_to_elem) * f.sn_mva
        i_ka = np.full((n_b, self._n_elem, 3), np.nan)
        load_pc = np.full((n_b, self._n_elem, 3), np.nan)
        sel = self._cond_first
        i_abs = np.abs(i_cond[:, sel]) * self._cond_ibase_ka[sel]
        i_ka[:, self._cond_elem[sel], self._cond_phase[sel]] = i_abs
        with np.errstate(divide="ignore", invalid="ignore"):
            load_pc[:, self._cond_elem[sel], self._cond_phase[sel]] = i_abs / f.elem_i_max_ka[sel] * 100.0
        p_from = np.full((n_b, self._n_elem, 3), np.nan)
        q_from = np.full((n_b, self._n_elem, 3), np.nan)
        p_from[:, self._cond_elem[sel], self._cond_phase[sel]] = s_cond[:, sel].real * f.sn_mva
        q_from[:, self._cond_elem[sel], self._cond_phase[sel]] = s_cond[:, sel].imag * f.sn_mva
        off = ~np.isfinite(v).any(axis=1)
        for a in (i_ka, load_pc, p_from, q_from):
            a[off] = np.nan
        # source power: the KCL residual at the source nodes, without shunts there (a
        # sequence slack's short-circuit admittance is the source's own, as in pandapower)
        src = np.flatnonzero(topo.source_node)
        inj = self._currents(v0, s_node, ld_k)[:, src]
        res = (self._y_src(topo) @ v0.T).T - inj
        s_src = (v0[:, src] * np.conj(res)).sum(axis=1) * f.sn_mva
        pl_tot = np.where(self._not_source_elem[None], pl, 0.0).sum(axis=1)
        nan_rows = ~conv
        pl[nan_rows] = np.nan
        pl_tot[nan_rows] = np.nan
        s_src[nan_rows] = np.nan
        return PowerFlow3phResult(
            vm_pu=vm, va_degree=va, vuf_percent=vuf, branch_i_ka=i_ka, branch_loading_percent=load_pc,
            branch_pl_mw=pl, pl_mw=pl_tot, source_p_mw=s_src.real, source_q_mvar=s_src.imag,
            branch_p_from_mw=p_from, branch_q_from_mvar=q_from,
            converged=conv, iterations=iters, v_node=v, bus_names=f.bus_names, branch_names=f.elem_names,
        )


def _load_factor(a: FloatArray, model: IntArray, vlow: FloatArray, vmin: FloatArray, vmax: FloatArray) -> FloatArray:
    """numpy twin of :func:`twin.grid._kernels3ph.load_factor` (loads in the columns)."""
    pq = model == 0
    with np.errstate(divide="ignore", invalid="ignore"):
        band = np.where(pq, 1.0 / a**2, 1.0 / a)
        high = np.where(pq, 1.0 / vmax**2, 1.0 / vmax)
        i_top = np.where(pq, 1.0 / vmin, 1.0)
        mid = (vlow + (i_top - vlow) * (a - vlow) / (vmin - vlow)) / a
        out = np.where(a > vmax, high, np.where(a >= vmin, band, mid))
    return np.asarray(np.where((model == 2) | (a <= vlow), 1.0, out))


def sequence_components(v_abc: ComplexArray) -> ComplexArray:
    """Zero, positive and negative sequence of phase quantities on the last axis."""
    return np.asarray(np.einsum("ij,...j->...i", SEQ_INV, v_abc))


