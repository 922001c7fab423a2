"""Vectorized batch AC power flow with per-scenario topology.

``BatchPowerFlow(net)`` compiles the net once (:func:`twin.grid.arrays.compile_net`);
``.solve(...)`` then runs B power flows at once, one per row of the injection arrays.

Method
------
For each distinct topology in the batch (line/trafo in-service pattern) the nodes are split
into connected components. A component with an in-service ``ext_grid`` is solved with the
ext_grid bus(es) as slack (voltage magnitude and angle fixed). A component without one but
with a grid-forming unit (see :class:`GridFormingUnit`) uses that unit as slack; a
component with neither is de-energized (``vm_pu`` 0, ``energized`` False). With the slack
voltages ``V_S`` fixed, the PQ voltages solve ``Y_LL V_L + Y_LS V_S = conj(S(V_L) / V_L)``.
The kernel iterates the Z-bus fixed point

    V_L <- V_0 + Y_LL^-1 conj(S(V_L) / V_L),       V_0 = -Y_LL^-1 Y_LS V_S

with a sparse LU factorisation of ``Y_LL`` (SuperLU, computed once per topology and cached)
and numba-compiled triangular solves, in parallel over scenarios. The fill-reducing node
order is computed once per net on the graph of all branches and reused by every topology
(an outage only removes edges, so the induced order stays fill-reducing): a new topology
costs one numeric factorisation, which matters for N-1 sweeps with one topology per row.
A batch with many distinct topologies (``_CONTINGENCY_GROUPS`` or more; N-1/N-k sweeps) and
no grid-forming unit skips the per-topology Python work altogether: one parallel numba call
(``_kernels.contingencies_par``) finds each scenario's components by union-find, assembles
its ``Y_LL`` into the fill pattern of the full branch graph in that global order (computed
once, :class:`_Pattern`; non-PQ nodes get an identity row), factorizes it numerically on
that shared pattern and runs the same fixed point and post-processing. Scenarios it leaves
unconverged are re-solved on the per-topology path (Newton fallback).
For radial and weakly meshed distribution feeders this converges in a handful of
iterations; a scenario that has not converged after ``max_iter`` iterations (or diverges)
is retried with Newton-Raphson.
Convergence and iteration counts are reported per scenario and nothing is ever raised for
a non-converged scenario: its voltages and flows are NaN.

Conventions
-----------
Units in names, pandapower style. ``load`` and ``storage`` powers are consumption-positive,
``sgen`` generation-positive; ``ext_grid_p_mw`` and ``grid_forming_p_mw`` are the power the
reference unit supplies (generation-positive). Angles in degrees, referred to the ext_grid
``va_degree`` (or the grid-forming unit's set point in an island).
"""

from __future__ import annotations

import math
import sys
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp
from numpy.typing import ArrayLike, NDArray
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import splu, spsolve

from twin.grid.arrays import GridArrays, compile_net

__all__ = ["BatchPowerFlow", "GridFormingUnit", "PowerFlowResult"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
ComplexArray = NDArray[np.complex128]

_SQRT3 = math.sqrt(3.0)
_TOPOLOGY_CACHE_SIZE = 256
_NR_MAX_ITER = 30
# batches with at least this much work (scenarios x (nodes + branches)) run the numba
# kernels (parallel over scenarios); smaller ones the numpy/SuperLU path, which needs no
# numba import or compile (a cold start of the twin or of a test process stays short)
_NUMBA_WORK = 20_000
# batches with at least this many distinct topologies (and no grid-forming unit) run the
# contingency kernel: one parallel call, no per-topology Python work
_CONTINGENCY_GROUPS = 8
# ... and at most this many scenarios per topology on average: a topology costs ~1-2 ms on
# the per-topology path, a scenario ~30 us in the contingency kernel vs a few us in the
# chunked one, so big groups (time series with a few outage states) stay per topology
_CONTINGENCY_ROWS = 32
# "auto" solves a single scenario with numpy/SuperLU (no numba import or compile: a short
# run never pays for it) until the solver has been called this often; from then on in one
# serial numba call (about 20x faster: the kernels' load, ~0.3 s from the cache, is repaid
# within the next ~1000 solves of a long run or a controller loop)
_AUTO_NUMBA_CALLS = 200
_ZERO_ROW = np.zeros(1, dtype=np.int64)
# branch arguments of the chunked kernel without branches (its post-processing then skips them)
_NO_BRANCHES = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64),
                np.zeros((0, 4), dtype=np.complex128), np.zeros(0, dtype=bool), np.zeros(0), np.zeros(0))
_BRANCH_FIELDS = ("line_loading_percent", "line_p_from_mw", "line_q_from_mvar", "line_pl_mw",
                  "trafo_loading_percent", "trafo_p_hv_mw", "trafo_q_hv_mvar", "trafo_pl_mw", "pl_mw")


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class GridFormingUnit:
    """A storage or sgen that can form an island (voltage and angle reference).

    It is the slack of any island that has no in-service ext_grid; in an island with an
    ext_grid it behaves as an ordinary PQ injection. As slack it balances the island within
    ``p_min_mw <= p <= p_max_mw`` (generation-positive) and ``|s| <= s_max_mva``; beyond
    these limits the island collapses and is reported de-energized.
    """

    element: Literal["storage", "sgen"]
    index: int
    vm_pu: float = 1.0
    va_degree: float = 0.0
    p_min_mw: float = -math.inf
    p_max_mw: float = math.inf
    s_max_mva: float = math.inf


@dataclass(frozen=True, eq=False)
class PowerFlowResult:
    """Results of one batch; every array has the batch size B as first dimension.

    Bus arrays follow ``net.bus.index`` order, branch arrays the row order of ``net.line``
    and ``net.trafo`` (``p_from``/``q_from`` at the line's from bus, the trafo's hv bus).
    De-energized buses have ``vm_pu`` 0 and ``energized`` False; branches out of service or
    de-energized carry zero flow. Scenarios with ``converged`` False have NaN voltages,
    flows and reference-unit powers.
    """

    vm_pu: FloatArray  # (B, n_bus)
    va_degree: FloatArray  # (B, n_bus)
    energized: BoolArray  # (B, n_bus)
    line_loading_percent: FloatArray  # (B, n_line)
    line_p_from_mw: FloatArray
    line_q_from_mvar: FloatArray
    line_pl_mw: FloatArray
    trafo_loading_percent: FloatArray  # (B, n_trafo)
    trafo_p_hv_mw: FloatArray
    trafo_q_hv_mvar: FloatArray
    trafo_pl_mw: FloatArray
    pl_mw: FloatArray  # (B,) active losses of all lines and trafos
    ext_grid_p_mw: FloatArray  # (B, n_ext_grid), supplied power
    ext_grid_q_mvar: FloatArray
    grid_forming_p_mw: FloatArray  # (B, n_grid_forming), supplied power when acting as slack
    grid_forming_q_mvar: FloatArray
    converged: BoolArray  # (B,)
    iterations: IntArray  # (B,)

    @property
    def batch_size(self) -> int:
        """Number of scenarios B."""
        return int(self.converged.shape[0])


# --------------------------------------------------------------------------- topology


@dataclass(frozen=True, eq=False)
class _Topology:
    """Everything that depends only on which branches are in service."""

    br_on: BoolArray  # (n_br,) branch carries power in this topology
    node_comp: IntArray  # (n_node,) component id
    n_comp: int
    energized: BoolArray  # (n_node,) node belongs to a component with a reference
    slack_nodes: IntArray  # (n_s,)
    slack_v: ComplexArray  # (n_s,)
    pq_nodes: IntArray  # (n_pq,) in the LU order of y_ll
    eg_slack_pos: IntArray  # (n_ext_grid,) position in slack_nodes, -1 if not acting
    gf_slack_pos: IntArray  # (n_gf,) position in slack_nodes, -1 if not acting as slack
    units_at_slack: FloatArray  # (n_s,) number of reference units sharing each slack node
    gf_comp: IntArray  # (n_gf,) component of each grid-forming unit (-1 if none)
    load_loc: IntArray  # element locations, see the kernel comment
    sgen_loc: IntArray
    storage_loc: IntArray
    y_ll: Any  # csc, LU order
    i_s: ComplexArray  # (n_pq,) Y_LS V_S: current the slack voltages drive into the PQ nodes
    y_s_cols: IntArray  # nodes touched by the slack rows of Y
    y_s: Any  # dense (n_s, len(y_s_cols)) slack rows of Y
    v0: ComplexArray  # no-load PQ voltages (LU order)
    lu_obj: Any  # SuperLU of y_ll (LU order) for the numpy path, None without PQ nodes

    @cached_property
    def slack_vm(self) -> FloatArray:
        """Voltage magnitudes of the slack nodes."""
        return np.abs(self.slack_v)

    @cached_property
    def y_s_loc(self) -> IntArray:
        """Where each column of ``y_s`` lives: its PQ position (LU order), or ``-k - 2`` for
        slack k."""
        pos = {int(nd): k for k, nd in enumerate(self.pq_nodes)}
        sl = {int(nd): k for k, nd in enumerate(self.slack_nodes)}
        return np.array([pos[int(c)] if int(c) in pos else -sl[int(c)] - 2 for c in self.y_s_cols],
                        dtype=np.int64)

    @cached_property
    def lu(self) -> tuple[Any, ...]:
        """CSR arrays of L and U for the numba triangular solves (built on first use only:
        the numpy path, e.g. an N-1 sweep of one scenario per topology, never needs them)."""
        return _lu_arrays(self.lu_obj)


def _node_rank(ga: GridArrays) -> IntArray:
    """Elimination rank of every node: a fill-reducing order of the graph of all branches.

    Computed once per net. Any topology's PQ nodes are factorized in the order this rank
    induces: its graph is a subgraph of the full one, so the induced order's fill is a
    subset of the full graph's fill; no per-topology ordering (a second SuperLU run) needed.
    """
    n = ga.n_node
    f, t = ga.br_from, ga.br_to
    both = ga.br_connectable & (f >= 0) & (t >= 0)
    m = int(both.sum())
    pattern = sp.coo_matrix(
        (
            np.concatenate([np.full(n, 4.0 * (m + 1)), -np.ones(2 * m)]),
            (np.concatenate([np.arange(n), f[both], t[both]]), np.concatenate([np.arange(n), t[both], f[both]])),
        ),
        shape=(n, n),
    ).tocsc()
    lu = splu(pattern, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    return np.asarray(lu.perm_c, dtype=np.int64)  # node j is eliminated at position perm_c[j]


def _slack_power(topo: _Topology, v_pq: ComplexArray, sched: ComplexArray, sn_mva: float) -> ComplexArray:
    """Power supplied by the reference units at each slack node (MVA, per unit sharing the
    node): the network's injection there minus the scheduled injections at the node."""
    n_g, n_s = sched.shape
    if not n_s:
        return np.zeros((n_g, 0), dtype=np.complex128)
    loc = topo.y_s_loc
    v_cols = np.empty((n_g, loc.shape[0]), dtype=np.complex128)
    v_cols[:, loc >= 0] = v_pq[:, loc[loc >= 0]]
    v_cols[:, loc < 0] = topo.slack_v[-loc[loc < 0] - 2]
    s_net = topo.slack_v * np.conj(v_cols @ topo.y_s.T)
    return np.asarray((s_net - sched) * (sn_mva / topo.units_at_slack))


def _lu_order(pq: IntArray, y_row: IntArray, y_col: IntArray, n: int, rank: IntArray) -> IntArray:
    """The PQ nodes in LU (elimination) order: minimum degree on this topology's own graph.

    The net-wide ``rank`` (all branches, open ties included) would serve every topology,
    but on a radial feeder with open ties it leaves fill a tree does not need (case33bw: 52
    instead of 31 entries in L), and the fixed point does two triangular solves per
    iteration. Minimum degree on a tree eliminates leaves first: no fill at all. One
    symbolic SuperLU run per topology (cached with it); ties are broken by ``rank``.
    """
    if pq.size < 3:
        return pq
    pq = pq[np.argsort(rank[pq], kind="stable")]
    pos = np.full(n, -1, dtype=np.int64)
    pos[pq] = np.arange(pq.size)
    r, c = pos[y_row], pos[y_col]
    off = (r >= 0) & (c >= 0) & (r != c)
    m = int(off.sum())
    k = pq.size
    pattern = sp.csc_matrix(
        (np.concatenate([np.full(k, 2.0 * (m + 1)), -np.ones(m)]),
         (np.concatenate([np.arange(k), r[off]]), np.concatenate([np.arange(k), c[off]]))),
        shape=(k, k),
    )
    lu = splu(pattern, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    return pq[np.argsort(np.asarray(lu.perm_c), kind="stable")]


def _factorize(a: Any) -> Any:
    """SuperLU of ``a`` (already in a fill-reducing order) without pivoting; None if empty."""
    if a.shape[0] == 0:
        return None
    n = a.shape[0]
    lu = splu(a, permc_spec="NATURAL", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    ident = np.arange(n)
    if not (np.array_equal(lu.perm_r, ident) and np.array_equal(lu.perm_c, ident)):
        raise RuntimeError("admittance matrix needed pivoting; it is probably singular")
    if np.any(np.abs(lu.U.diagonal()) < 1e-14):
        raise RuntimeError("singular admittance matrix (branch with zero admittance?)")
    return lu


def _lu_arrays(lu: Any) -> tuple[Any, ...]:
    """CSR arrays (L strictly lower, U strictly upper, 1 / diag U) for the numba kernels."""
    if lu is None:
        z_i = np.zeros(1, dtype=np.int64)
        e_i = np.zeros(0, dtype=np.int64)
        e_c = np.zeros(0, dtype=np.complex128)
        return (z_i, e_i, e_c, z_i, e_i, e_c, e_c)
    low = sp.tril(lu.L, k=-1, format="csr")
    up = lu.U.tocsr()
    diag = up.diagonal()
    up = sp.triu(up, k=1, format="csr")
    low.sort_indices()
    up.sort_indices()
    return (
        low.indptr.astype(np.int64),
        low.indices.astype(np.int64),
        low.data.astype(np.complex128),
        up.indptr.astype(np.int64),
        up.indices.astype(np.int64),
        up.data.astype(np.complex128),
        (1.0 / diag).astype(np.complex128),
    )


def _locations(node: IntArray, pq_pos: IntArray, slack_pos: IntArray) -> IntArray:
    loc = np.full(node.shape[0], -1, dtype=np.int64)
    ok = node >= 0
    nd = node[ok]
    loc_ok = np.where(pq_pos[nd] >= 0, pq_pos[nd], np.where(slack_pos[nd] >= 0, -slack_pos[nd] - 2, -1))
    loc[ok] = loc_ok
    return loc


def _build_topology(
    ga: GridArrays, gf: Sequence[_GF], br_on_in: BoolArray, rank: IntArray
) -> _Topology:
    n = ga.n_node
    br_on = br_on_in & ga.br_connectable
    f, t = ga.br_from, ga.br_to
    both = br_on & (f >= 0) & (t >= 0)
    adj = sp.coo_matrix((np.ones(int(both.sum())), (f[both], t[both])), shape=(n, n))
    n_comp, comp = connected_components(adj, directed=False)
    comp = comp.astype(np.int64)

    eg_ok = ga.ext_grid_node >= 0
    comp_has_eg = np.zeros(n_comp, dtype=bool)
    comp_has_eg[comp[ga.ext_grid_node[eg_ok]]] = True

    slack_nodes: list[int] = []
    slack_v: list[complex] = []
    pos_of: dict[int, int] = {}
    eg_pos = np.full(ga.ext_grid_node.shape[0], -1, dtype=np.int64)
    for e in np.flatnonzero(eg_ok):
        nd = int(ga.ext_grid_node[e])
        if nd not in pos_of:
            pos_of[nd] = len(slack_nodes)
            slack_nodes.append(nd)
            slack_v.append(complex(ga.ext_grid_v[e]))
        eg_pos[e] = pos_of[nd]
    gf_pos = np.full(len(gf), -1, dtype=np.int64)
    gf_comp = np.full(len(gf), -1, dtype=np.int64)
    sgen_node = ga.sgen_node.copy()
    storage_node = ga.storage_node.copy()
    for u, g in enumerate(gf):
        if g.node < 0:
            continue
        gf_comp[u] = comp[g.node]
        if comp_has_eg[comp[g.node]]:
            continue  # grid-following while an ext_grid is in its island
        if g.node not in pos_of:
            pos_of[g.node] = len(slack_nodes)
            slack_nodes.append(g.node)
            slack_v.append(g.v)
        gf_pos[u] = pos_of[g.node]
        (sgen_node if g.element == "sgen" else storage_node)[g.pos] = -1
    s_nodes = np.array(slack_nodes, dtype=np.int64)
    units = np.zeros(len(s_nodes))
    np.add.at(units, eg_pos[eg_pos >= 0], 1.0)
    np.add.at(units, gf_pos[gf_pos >= 0], 1.0)

    comp_ref = np.zeros(n_comp, dtype=bool)
    comp_ref[comp[s_nodes]] = True
    energized = comp_ref[comp]
    is_slack = np.zeros(n, dtype=bool)
    is_slack[s_nodes] = True
    pq = np.flatnonzero(energized & ~is_slack).astype(np.int64)

    # admittance matrix of the energized part, as COO entries in node space; its blocks are
    # built by mapping nodes to positions (no sparse fancy indexing: it dominated N-1 sweeps)
    y = ga.br_y
    on_f = br_on & (f >= 0)
    on_t = br_on & (t >= 0)
    sh = ga.shunt_node >= 0
    y_val = np.concatenate([y[on_f, 0], y[on_t, 3], y[both, 1], y[both, 2], ga.shunt_y[sh]])
    y_row = np.concatenate([f[on_f], t[on_t], f[both], t[both], ga.shunt_node[sh]])
    y_col = np.concatenate([f[on_f], t[on_t], t[both], f[both], ga.shunt_node[sh]])
    pq = _lu_order(pq, y_row, y_col, n, rank)
    pq_pos = np.full(n, -1, dtype=np.int64)
    pq_pos[pq] = np.arange(pq.size)
    slack_pos = np.full(n, -1, dtype=np.int64)
    slack_pos[s_nodes] = np.arange(s_nodes.size)
    r_pq, c_pq, r_s = pq_pos[y_row], pq_pos[y_col], slack_pos[y_row]
    ll = (r_pq >= 0) & (c_pq >= 0)
    y_ll = sp.csc_matrix((y_val[ll], (r_pq[ll], c_pq[ll])), shape=(pq.size, pq.size))
    lu = _factorize(y_ll)
    v_s = np.array(slack_v, dtype=np.complex128)
    ls = (r_pq >= 0) & (slack_pos[y_col] >= 0)
    i_s = np.zeros(pq.size, dtype=np.complex128)
    np.add.at(i_s, r_pq[ls], y_val[ls] * v_s[slack_pos[y_col[ls]]])
    srow = r_s >= 0
    cols, col_pos = np.unique(y_col[srow], return_inverse=True)
    cols = cols.astype(np.int64)
    y_s = np.zeros((s_nodes.size, cols.size), dtype=np.complex128)
    np.add.at(y_s, (r_s[srow], col_pos.reshape(-1)), y_val[srow])
    if pq.size:
        v0 = -lu.solve(i_s)
    else:
        v0 = np.zeros(0, dtype=np.complex128)
    return _Topology(
        br_on=br_on,
        node_comp=comp,
        n_comp=int(n_comp),
        energized=energized,
        slack_nodes=s_nodes,
        slack_v=v_s,
        pq_nodes=pq,
        eg_slack_pos=eg_pos,
        gf_slack_pos=gf_pos,
        units_at_slack=units,
        gf_comp=gf_comp,
        load_loc=_locations(ga.load_node, pq_pos, slack_pos),
        sgen_loc=_locations(sgen_node, pq_pos, slack_pos),
        storage_loc=_locations(storage_node, pq_pos, slack_pos),
        y_ll=y_ll,
        i_s=i_s,
        y_s_cols=cols,
        y_s=y_s,
        v0=np.ascontiguousarray(v0, dtype=np.complex128),
        lu_obj=lu,
    )


@dataclass(frozen=True)
class _GF:
    element: str
    pos: int  # row in the element table
    node: int
    v: complex
    p_min: float
    p_max: float
    s_max: float


@dataclass(frozen=True, eq=False)
class _Pattern:
    """Fill pattern of the LU of the full branch graph in the global elimination order.

    Entries are numbered (diagonal of position k is entry k); every topology's ``Y_LL``
    (non-PQ nodes given an identity row) fits in it, so a contingency needs only the
    numeric factorisation. ``tr_*``: the right-looking update ``a[tgt] -= a[l] * a[u]`` of
    each elimination step; ``l_*``/``u_*``: CSR rows of the strict lower and upper parts.
    """

    pos: IntArray  # (n_node,) elimination position of each node
    node_of: IntArray  # (n_node,) node at each position
    idx4: IntArray  # (n_br, 4) entries of y_ff, y_ft, y_tf, y_tt (-1: open end)
    ent_r: IntArray
    ent_c: IntArray
    d_idx: IntArray
    lk_ptr: IntArray
    lk_idx: IntArray
    tr_ptr: IntArray
    tr_tgt: IntArray
    tr_l: IntArray
    tr_u: IntArray
    l_ptr: IntArray
    l_idx: IntArray
    l_col: IntArray
    u_ptr: IntArray
    u_idx: IntArray
    u_col: IntArray


def _fill_pattern(ga: GridArrays, rank: IntArray) -> _Pattern:
    """Symbolic elimination of the graph of all connectable branches (once per net)."""
    n = ga.n_node
    pos = np.asarray(rank, dtype=np.int64)
    f, t = ga.br_from, ga.br_to
    adj: list[set[int]] = [set() for _ in range(n)]
    for a, b in zip(f.tolist(), t.tolist(), strict=True):
        if a >= 0 and b >= 0 and a != b:
            pa, pb = int(pos[a]), int(pos[b])
            adj[pa].add(pb)
            adj[pb].add(pa)
    ent_r = list(range(n))
    ent_c = list(range(n))
    idx: dict[tuple[int, int], int] = {(k, k): k for k in range(n)}
    higher: list[list[int]] = []
    for k in range(n):
        hi = sorted(j for j in adj[k] if j > k)
        higher.append(hi)
        for i in hi:
            adj[i].update(j for j in hi if j != i)
            for rc in ((i, k), (k, i)):
                idx[rc] = len(ent_r)
                ent_r.append(rc[0])
                ent_c.append(rc[1])
    lk_ptr, lk_idx, tr_ptr, tr_tgt, tr_l, tr_u = [0], [], [0], [], [], []
    l_rows: list[list[tuple[int, int]]] = [[] for _ in range(n)]
    u_ptr, u_idx, u_col = [0], [], []
    for k in range(n):
        for i in higher[k]:
            lk_idx.append(idx[(i, k)])
            l_rows[i].append((k, idx[(i, k)]))
            u_col.append(i)
            u_idx.append(idx[(k, i)])
            for j in higher[k]:
                tr_tgt.append(idx[(i, j)])
                tr_l.append(idx[(i, k)])
                tr_u.append(idx[(k, j)])
        lk_ptr.append(len(lk_idx))
        tr_ptr.append(len(tr_tgt))
        u_ptr.append(len(u_idx))
    l_ptr, l_idx, l_col = [0], [], []
    for i in range(n):
        for k, q in l_rows[i]:
            l_col.append(k)
            l_idx.append(q)
        l_ptr.append(len(l_idx))
    idx4 = np.full((f.shape[0], 4), -1, dtype=np.int64)
    for k, (a, b) in enumerate(zip(f.tolist(), t.tolist(), strict=True)):
        pa = int(pos[a]) if a >= 0 else -1
        pb = int(pos[b]) if b >= 0 else -1
        if pa >= 0:
            idx4[k, 0] = pa
        if pb >= 0:
            idx4[k, 3] = pb
        if pa >= 0 and pb >= 0:
            idx4[k, 1] = idx[(pa, pb)]
            idx4[k, 2] = idx[(pb, pa)]

    def arr(x: list[int]) -> IntArray:
        return np.asarray(x, dtype=np.int64)

    node_of = np.empty(n, dtype=np.int64)
    node_of[pos] = np.arange(n)
    return _Pattern(
        pos=pos, node_of=node_of, idx4=idx4, ent_r=arr(ent_r), ent_c=arr(ent_c),
        d_idx=np.arange(n, dtype=np.int64), lk_ptr=arr(lk_ptr), lk_idx=arr(lk_idx),
        tr_ptr=arr(tr_ptr), tr_tgt=arr(tr_tgt), tr_l=arr(tr_l), tr_u=arr(tr_u),
        l_ptr=arr(l_ptr), l_idx=arr(l_idx), l_col=arr(l_col), u_ptr=arr(u_ptr),
        u_idx=arr(u_idx), u_col=arr(u_col),
    )


def _distinct_rows(br_mask: BoolArray) -> int:
    """Number of distinct rows (topologies), from a 64-bit hash of each row (cheap; a rare
    collision only undercounts, which merely picks the per-topology path)."""
    packed = np.packbits(br_mask, axis=1)
    pad = (-packed.shape[1]) % 8
    if pad:
        packed = np.concatenate([packed, np.zeros((packed.shape[0], pad), dtype=np.uint8)], axis=1)
    words = np.ascontiguousarray(packed).view(np.uint64)
    mult = (np.arange(words.shape[1], dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)) | np.uint64(1)
    with np.errstate(over="ignore"):
        h = (words * mult).sum(axis=1, dtype=np.uint64)
        h ^= h >> np.uint64(29)
    return int(np.unique(h).shape[0])


def _group_rows(br_mask: BoolArray, rows: IntArray) -> list[tuple[BoolArray, IntArray]]:
    """Scenarios (``rows``, one per row of ``br_mask``) grouped by identical topology."""
    packed = np.packbits(br_mask, axis=1)
    uniq, inverse = np.unique(packed, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(uniq.shape[0] + 1))
    return [
        (br_mask[order[bounds[g]]], rows[order[bounds[g] : bounds[g + 1]]])
        for g in range(uniq.shape[0])
    ]


# --------------------------------------------------------------------------- Newton-Raphson


def _newton(
    topo: _Topology,
    s_p: ComplexArray,
    s_i: ComplexArray,
    s_z: ComplexArray,
    v_start: ComplexArray,
    tol: float,
    max_iter: int,
) -> tuple[ComplexArray, bool, int]:
    """Polar Newton-Raphson on the PQ nodes for one scenario (fallback path)."""
    y = topo.y_ll
    i_s = topo.i_s
    v = v_start.copy() if np.all(np.isfinite(v_start)) else topo.v0.copy()
    if np.any(np.abs(v) < 0.3) or np.any(np.abs(v) > 3.0):
        v = topo.v0.copy()
    n = v.size
    for it in range(max_iter + 1):
        vm = np.abs(v)
        s_spec = s_p + s_i * vm + s_z * vm**2
        cur = y @ v + i_s
        mis = v * np.conj(cur) - s_spec
        f = np.concatenate([mis.real, mis.imag])
        if np.max(np.abs(f)) < tol:
            return v, True, it
        if it == max_iter or not np.all(np.isfinite(f)):
            break
        dv = sp.diags(v)
        vnorm = sp.diags(v / vm)
        ds_dvm = dv @ (y @ vnorm).conj() + sp.diags(np.conj(cur) * v / vm)
        ds_dvm = ds_dvm - sp.diags(s_i + 2 * s_z * vm)
        ds_dva = 1j * (sp.diags(v * np.conj(cur)) - dv @ (y @ dv).conj())
        jac = sp.bmat(
            [[ds_dva.real, ds_dvm.real], [ds_dva.imag, ds_dvm.imag]], format="csc"
        )
        dx = spsolve(jac, -f)
        va = np.angle(v) + dx[:n]
        vm = vm + dx[n:]
        v = vm * np.exp(1j * va)
    return v, False, max_iter


# --------------------------------------------------------------------------- numpy path
#
# The same fixed point, injections and post-processing as the numba kernels
# (``twin.grid._kernels``), vectorized over the scenarios of a group with numpy and SuperLU.
# Used for small batches: no numba import or compile (cold start), and for B = 1 on feeders
# of a few hundred buses it is as fast as the compiled kernels.


def _numba_kernels() -> Any:
    """The numba kernels module, imported on first use (numba import + cached compile)."""
    kern = sys.modules.get("twin.grid._kernels")
    if kern is None:
        from twin.grid import _kernels as kern
    return kern


def _np_injections(
    elements: tuple[Any, ...], use_zip: bool, inv_sn: float, slack_vm: FloatArray, n_pq: int,
    sched_out: ComplexArray,
) -> ComplexArray:
    """Per-unit injections (generation-positive) of every scenario of a group.

    Returns ``(3, n_g, n_pq)``: constant-power, constant-current and constant-impedance parts
    at the PQ nodes (the latter two zero without ZIP loads); writes the scheduled injections
    at the slack nodes (ZIP parts evaluated at the slack voltage) into ``sched_out``.
    """
    n_g, n_s = sched_out.shape
    s3 = np.zeros((3, n_g, n_pq), dtype=np.complex128)
    sched_out[:] = 0.0
    for (rows_p, rows_q, p, q, loc, zip_), factor, zipped in zip(
        elements, (-inv_sn, inv_sn, -inv_sn), (use_zip, False, False), strict=True
    ):
        if loc.shape[0] == 0:
            continue
        pe = factor * p[rows_p]
        qe = factor * q[rows_q]
        at_pq = loc >= 0
        at_s = loc <= -2
        parts: tuple[Any, ...]
        if zipped:
            zp, ip, zq, iq = zip_[:, 0], zip_[:, 1], zip_[:, 2], zip_[:, 3]
            parts = (
                pe * (1.0 - zp - ip) + 1j * (qe * (1.0 - zq - iq)),
                pe * ip + 1j * (qe * iq),
                pe * zp + 1j * (qe * zq),
            )
            if at_s.any():
                vm = slack_vm[-loc[at_s] - 2]
                e = at_s
                s_at = (pe[:, e] * (1.0 - zp[e] - ip[e] + ip[e] * vm + zp[e] * vm * vm)
                        + 1j * (qe[:, e] * (1.0 - zq[e] - iq[e] + iq[e] * vm + zq[e] * vm * vm)))
                _scatter_add(sched_out, -loc[at_s] - 2, s_at, n_s)
        else:
            parts = (pe + 1j * qe,)
            if at_s.any():
                _scatter_add(sched_out, -loc[at_s] - 2, parts[0][:, at_s], n_s)
        if at_pq.any():
            for k, part in enumerate(parts):
                _scatter_add(s3[k], loc[at_pq], part[:, at_pq], n_pq)
    return s3


def _scatter_add(target: ComplexArray, cols: IntArray, values: ComplexArray, n: int) -> None:
    """``target[:, cols[e]] += values[:, e]`` summing duplicate columns."""
    if target.shape[0] == 1:
        target[0] += np.bincount(cols, weights=values[0].real, minlength=n) + 1j * np.bincount(
            cols, weights=values[0].imag, minlength=n
        )
    else:
        m = sp.csr_matrix((np.ones(cols.shape[0]), (np.arange(cols.shape[0]), cols)), shape=(cols.shape[0], n))
        target += np.asarray(m.T @ values.T).T


def _np_fixed_point(
    topo: _Topology, s3: ComplexArray, use_zip: bool, tol: float, max_iter: int,
    v_out: ComplexArray, iters: IntArray, conv: BoolArray,
) -> None:
    """Z-bus fixed point for all scenarios of a group (columns), with SuperLU solves.

    Same update and stopping rule as the numba kernels: per scenario, stop when the largest
    power mismatch at a node is below ``tol`` (pu); give up when a voltage change exceeds 1e3
    or is NaN (the Newton fallback then takes over).
    """
    n_g = v_out.shape[0]
    conv[:] = False
    if max_iter == 0 or v_out.shape[1] == 0:
        iters[:] = 0
        return
    sc = np.conj(s3[0]).T.copy()  # (n_pq, n_g)
    sci = np.conj(s3[1]).T.copy() if use_zip else None
    scz = np.conj(s3[2]).T.copy() if use_zip else None
    v0 = topo.v0[:, None]
    v = np.repeat(v0, n_g, axis=1)
    active = np.arange(n_g)
    for it in range(1, max_iter + 1):
        va = v[:, active]
        m2 = va.real * va.real + va.imag * va.imag
        sk = sc[:, active]
        if sci is not None and scz is not None:
            sk = sk + sci[:, active] * np.sqrt(m2) + scz[:, active] * m2
        w = topo.lu_obj.solve(np.asfortranarray(sk * va / m2))
        vn = v0 + w
        d = vn - va
        with np.errstate(invalid="ignore", divide="ignore"):
            err = np.maximum(np.abs(d.real), np.abs(d.imag)).max(axis=0)
            # power mismatch of the new voltages (see the kernels' _mismatch)
            ad = np.abs(d)
            mis = np.abs(sc[:, active]) * ad / np.sqrt(m2)
            if sci is not None and scz is not None:
                vm_new = np.abs(vn)
                mis += 2.0 * np.abs(sci[:, active]) * ad * vm_new / np.sqrt(m2)
                mis += np.abs(scz[:, active]) * vm_new * ad
            mis_max = np.where(np.isnan(mis).any(axis=0), np.nan, mis.max(axis=0))
        v[:, active] = vn
        iters[active] = it
        with np.errstate(invalid="ignore"):
            ok = (mis_max < tol) & (err < 1e3)
            stop = ok | ~(err < 1e3)
        conv[active[ok]] = True
        active = active[~stop]
        if active.size == 0:
            break
    v_out[:] = v.T


def _np_post(
    rows: IntArray, v_pq: ComplexArray, conv: BoolArray, kill: BoolArray, node_comp: IntArray,
    energized_node: BoolArray, pq_nodes: IntArray, slack_nodes: IntArray, slack_v: ComplexArray,
    bus_node: IntArray, br_f: IntArray, br_t: IntArray, br_y: ComplexArray, br_on: BoolArray,
    k_f: FloatArray, k_t: FloatArray, sn_mva: float, vm_out: FloatArray, va_out: FloatArray,
    en_out: BoolArray, pf_out: FloatArray, qf_out: FloatArray, pl_out: FloatArray,
    ld_out: FloatArray,
) -> None:
    """Bus voltages, branch flows (MW, Mvar) and loadings: numpy twin of ``_post_one``."""
    n_g = v_pq.shape[0]
    n_node = node_comp.shape[0]
    v = np.zeros((n_g, n_node + 1), dtype=np.complex128)  # last column: open end / no node
    v[:, slack_nodes] = slack_v
    v[:, pq_nodes] = v_pq
    if kill.shape[1] > 0:
        v[:, :n_node][kill[:, node_comp]] = 0.0
    bad = ~conv
    if bad.any():
        v[np.ix_(bad, np.flatnonzero(energized_node))] = complex(np.nan, np.nan)
    x = v[:, np.where(bus_node >= 0, bus_node, n_node)]
    vm = np.abs(x)
    with np.errstate(invalid="ignore"):
        on = (vm > 0.0) | np.isnan(vm)
    vm_out[rows] = vm
    va_out[rows] = np.where(on, np.angle(x, deg=True), 0.0)
    en_out[rows] = on
    vf = v[:, np.where(br_f >= 0, br_f, n_node)]
    vt = v[:, np.where(br_t >= 0, br_t, n_node)]
    i_f = br_y[:, 0] * vf + br_y[:, 1] * vt
    i_t = br_y[:, 2] * vf + br_y[:, 3] * vt
    sf = vf * np.conj(i_f)
    st = vt * np.conj(i_t)
    off = ~br_on
    a2 = (i_f.real**2 + i_f.imag**2) * (k_f * k_f)
    b2 = (i_t.real**2 + i_t.imag**2) * (k_t * k_t)
    with np.errstate(invalid="ignore"):
        ld = np.sqrt(np.maximum(a2, b2))
    for arr, val in (
        (pf_out, sf.real * sn_mva), (qf_out, sf.imag * sn_mva),
        (pl_out, (sf.real + st.real) * sn_mva), (ld_out, ld),
    ):
        val[:, off] = 0.0
        arr[rows, : val.shape[1]] = val
    if pl_out.shape[1] > br_on.shape[0]:  # the row-sum column (see _Output)
        pl_out[rows, -1] = pl_out[rows, :-1].sum(axis=1)


# --------------------------------------------------------------------------- facade


def _check_finite(specs: Any, inj: dict[str, FloatArray]) -> None:
    """Raise on the first NaN or infinite injection given, naming argument, scenario, row."""
    for name, val, _, table in specs:
        a = inj[name]
        # a finite sum proves every value finite (one pass, no temporary); a non-finite
        # sum can also be an overflow of huge finite values: then nothing is reported
        if val is not None and not math.isfinite(float(a.sum())) and not np.all(np.isfinite(a)):
            b, j = np.argwhere(~np.isfinite(a))[0]
            raise ValueError(f"{name}: non-finite value in scenario {b} for {table} row {j}")


def _as_batch(name: str, value: ArrayLike, n_col: int, dtype: Any) -> NDArray[Any]:
    arr = np.asarray(value, dtype=dtype)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != n_col:
        raise ValueError(f"{name}: expected shape (B, {n_col}) or ({n_col},), got {np.shape(value)}")
    return np.ascontiguousarray(arr)


class BatchPowerFlow:
    """Batch AC power flow over one pandapower net.

    Parameters
    ----------
    net:
        A pandapower net (read once; later changes to it are not seen).
    grid_forming:
        Storage or sgen units that may act as voltage reference of islands without an
        ext_grid.
    kernel:
        ``"numba"``: compiled kernels, parallel over scenarios (first use in a process imports
        numba and loads or compiles the cached kernels: seconds); ``"numpy"``: numpy/SuperLU,
        no compile; ``"auto"`` (default) picks numba for batches with at least
        ``_NUMBA_WORK`` scenario x (node + branch) units of work. Results agree to ``tol``.

    Raises
    ------
    ValueError
        No in-service ext_grid and no grid-forming unit, invalid element data, unknown
        grid-forming element.
    NotImplementedError
        In-service elements the kernel does not model (gen, trafo3w, ...).
    """

    def __init__(
        self,
        net: Any,
        *,
        grid_forming: Sequence[GridFormingUnit] | None = None,
        kernel: Literal["auto", "numpy", "numba"] = "auto",
    ) -> None:
        if kernel not in ("auto", "numpy", "numba"):
            raise ValueError(f"kernel: must be 'auto', 'numpy' or 'numba', got {kernel!r}")
        self._kernel = kernel
        self._arrays = compile_net(net)
        ga = self._arrays
        units: list[_GF] = []
        for g in grid_forming or ():
            if g.element not in ("storage", "sgen"):
                raise ValueError(f"grid_forming: element must be 'storage' or 'sgen', got {g.element!r}")
            table = net[g.element]
            if g.index not in table.index:
                raise ValueError(f"grid_forming: {g.element} {g.index} not found in net.{g.element}")
            pos = int(table.index.get_loc(g.index))
            node = int((ga.sgen_node if g.element == "sgen" else ga.storage_node)[pos])
            if not (g.vm_pu > 0 and math.isfinite(g.vm_pu) and math.isfinite(g.va_degree)):
                raise ValueError(f"grid_forming: {g.element} {g.index}: invalid vm_pu/va_degree")
            if not g.p_min_mw <= g.p_max_mw or not g.s_max_mva > 0:
                raise ValueError(f"grid_forming: {g.element} {g.index}: invalid power limits")
            v = g.vm_pu * complex(math.cos(math.radians(g.va_degree)), math.sin(math.radians(g.va_degree)))
            units.append(_GF(g.element, pos, node, v, g.p_min_mw, g.p_max_mw, g.s_max_mva))
        self._gf = tuple(units)
        if not np.any(ga.ext_grid_node >= 0) and not any(u.node >= 0 for u in units):
            raise ValueError(
                "net has no in-service ext_grid and no grid-forming unit: nothing can be energized"
            )
        self._cache: OrderedDict[bytes, _Topology] = OrderedDict()
        self._rank = _node_rank(ga)
        self._pattern: _Pattern | None = None  # built on the first contingency batch
        self._post_arrays: tuple[Any, ...] | None = None  # branch data of the single path
        self._single: tuple[Any, tuple[Any, ...]] | None = None  # its args, default topology
        self._calls = 0  # solves so far: "auto" moves single scenarios to numba after a while
        # loading% = |I_pu| * k  (I in kA = |I_pu| * sn / (sqrt3 * vn_kv))
        with np.errstate(divide="ignore", invalid="ignore"):
            self._k_from = 100.0 * ga.sn_mva / (_SQRT3 * ga.br_vn_from_kv * ga.br_i_rated_ka_from)
            self._k_to = 100.0 * ga.sn_mva / (_SQRT3 * ga.br_vn_to_kv * ga.br_i_rated_ka_to)

    @property
    def arrays(self) -> GridArrays:
        """The compiled network arrays."""
        return self._arrays

    def _topology(self, br_on: BoolArray) -> _Topology:
        key = np.packbits(br_on).tobytes()
        topo = self._cache.get(key)
        if topo is None:
            topo = _build_topology(self._arrays, self._gf, br_on, self._rank)
            self._cache[key] = topo
            if len(self._cache) > _TOPOLOGY_CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return topo

    def solve(
        self,
        load_p_mw: ArrayLike | None = None,
        load_q_mvar: ArrayLike | None = None,
        sgen_p_mw: ArrayLike | None = None,
        sgen_q_mvar: ArrayLike | None = None,
        storage_p_mw: ArrayLike | None = None,
        storage_q_mvar: ArrayLike | None = None,
        line_in_service: ArrayLike | None = None,
        trafo_in_service: ArrayLike | None = None,
        tol: float = 1e-8,
        max_iter: int = 100,
        branch_flows: bool = True,
    ) -> PowerFlowResult:
        """Solve B power flows.

        Each array is (B, n) in the row order of the net's table; a 1-D array or one with
        B = 1 is used for every scenario. An argument left ``None`` takes the net's value
        (``p_mw * scaling`` of in-service elements, ``in_service`` of branches). Given values
        are used as they are (no ``scaling``); elements out of service in the net inject
        nothing. ``line_in_service`` / ``trafo_in_service`` replace the net's ``in_service``
        columns (open switches still apply).

        ``tol`` bounds the power mismatch at every node, in per unit of ``net.sn_mva`` (what
        pandapower compares its ``tolerance_mva`` with): the fixed point stops when the
        mismatch |dS| of every node is below it (computed exactly from the last update, see
        ``twin.grid._kernels._mismatch``), the Newton fallback when every |dP| and |dQ| is.
        ``max_iter`` bounds the fixed-point iterations before the Newton-Raphson fallback.

        ``branch_flows=False`` is for screening on voltages (e.g. a voltage-band check of
        many scenarios): branch flows, loadings and losses are not computed and are NaN;
        voltages, energized buses, ext_grid and grid-forming powers are as usual (measured
        about 10 % less time on case33bw at B=1000, 2.87 -> 2.58 µs per flow).
        """
        res = self._solve(
            load_p_mw, load_q_mvar, sgen_p_mw, sgen_q_mvar, storage_p_mw, storage_q_mvar,
            line_in_service, trafo_in_service, tol, max_iter, branch_flows,
        )
        if not branch_flows:
            for name in _BRANCH_FIELDS:
                getattr(res, name)[...] = np.nan
        return res

    def _solve(
        self,
        load_p_mw: ArrayLike | None,
        load_q_mvar: ArrayLike | None,
        sgen_p_mw: ArrayLike | None,
        sgen_q_mvar: ArrayLike | None,
        storage_p_mw: ArrayLike | None,
        storage_q_mvar: ArrayLike | None,
        line_in_service: ArrayLike | None,
        trafo_in_service: ArrayLike | None,
        tol: float,
        max_iter: int,
        branch_flows: bool,
    ) -> PowerFlowResult:
        ga = self._arrays
        if not (tol > 0 and math.isfinite(tol)):
            raise ValueError(f"tol: must be a positive number, got {tol}")
        if max_iter < 1:
            raise ValueError(f"max_iter: must be >= 1, got {max_iter}")
        self._calls += 1
        one = self._solve_single(
            (load_p_mw, load_q_mvar, sgen_p_mw, sgen_q_mvar, storage_p_mw, storage_q_mvar),
            line_in_service, trafo_in_service, tol, max_iter,
        )
        if one is not None:
            return one
        specs = (
            ("load_p_mw", load_p_mw, ga.load_p_mw, "load"),
            ("load_q_mvar", load_q_mvar, ga.load_q_mvar, "load"),
            ("sgen_p_mw", sgen_p_mw, ga.sgen_p_mw, "sgen"),
            ("sgen_q_mvar", sgen_q_mvar, ga.sgen_q_mvar, "sgen"),
            ("storage_p_mw", storage_p_mw, ga.storage_p_mw, "storage"),
            ("storage_q_mvar", storage_q_mvar, ga.storage_q_mvar, "storage"),
        )
        inj: dict[str, FloatArray] = {}
        for name, val, default, _ in specs:
            if val is None:
                inj[name] = default[None, :]
            else:
                inj[name] = _as_batch(name, val, default.shape[0], np.float64)
        masks: dict[str, BoolArray] = {}
        for name, val, lo, hi in (
            ("line_in_service", line_in_service, 0, ga.n_line),
            ("trafo_in_service", trafo_in_service, ga.n_line, ga.n_branch),
        ):
            if val is None:
                masks[name] = ga.br_default_in_service[None, lo:hi]
            else:
                raw = np.asarray(val)
                if raw.dtype != np.bool_ and not np.all(np.isin(raw, (0, 1))):
                    raise ValueError(f"{name}: must be boolean")
                masks[name] = _as_batch(name, raw, hi - lo, np.bool_)
        sizes = {a.shape[0] for a in (*inj.values(), *masks.values())} - {1}
        if len(sizes) > 1:
            shapes = {k: v.shape for k, v in (*inj.items(), *masks.items())}
            raise ValueError(f"inconsistent batch sizes: {shapes}")
        n_b = sizes.pop() if sizes else 1
        single = n_b == 1 or masks["line_in_service"].shape[0] == masks["trafo_in_service"].shape[0] == 1
        # one topology through the chunked kernel: it checks the inputs in its own pass over
        # them (out.finite) and the error is raised after it; otherwise check them here
        deferred = single and self._chunked(n_b)
        if not deferred:
            _check_finite(specs, inj)
        # broadcast rows: index arrays instead of copies
        row_of = {k: (np.zeros(n_b, dtype=np.int64) if v.shape[0] == 1 else np.arange(n_b)) for k, v in inj.items()}

        br_mask = np.empty((1 if single else n_b, ga.n_branch), dtype=bool)
        br_mask[:, : ga.n_line] = masks["line_in_service"][:1] if single else masks["line_in_service"]
        br_mask[:, ga.n_line :] = masks["trafo_in_service"][:1] if single else masks["trafo_in_service"]
        batched = False
        if not single and not self._gf and self._kernel != "numpy":
            n_topo = _distinct_rows(br_mask)
            batched = n_topo >= _CONTINGENCY_GROUPS and n_b <= _CONTINGENCY_ROWS * n_topo
        if single:
            groups = [(br_mask[0], np.arange(n_b, dtype=np.int64))]
        elif not batched:
            groups = _group_rows(br_mask, np.arange(n_b, dtype=np.int64))

        out = _Output(n_b, ga, len(self._gf))
        elems = {
            "load": ("load_p_mw", "load_q_mvar", ga.load_zip),
            "sgen": ("sgen_p_mw", "sgen_q_mvar", _NO_ZIP),
            "storage": ("storage_p_mw", "storage_q_mvar", _NO_ZIP),
        }
        if batched:
            # one kernel call for all topologies; the rare non-converged scenario is
            # re-solved below on the per-topology path (Newton fallback)
            self._solve_contingencies(br_mask, inj, row_of, tol, max_iter, out)
            bad = np.flatnonzero(~out.conv)
            groups = _group_rows(br_mask[bad], bad.astype(np.int64)) if bad.size else []
        for br_on, rows in groups:
            topo = self._topology(br_on)
            locs = {"load": topo.load_loc, "sgen": topo.sgen_loc, "storage": topo.storage_loc}
            args = tuple(
                (row_of[kp][rows], row_of[kq][rows], inj[kp], inj[kq], locs[el], zp)
                for el, (kp, kq, zp) in elems.items()
            )
            self._solve_group(topo, rows, args, tol, max_iter, out, branch_flows)
        if deferred and not out.finite.all():
            _check_finite(specs, inj)
        return out.result(ga)

    def _uses_numba(self, n_g: int) -> bool:
        """Whether a group of ``n_g`` scenarios runs the numba kernels."""
        ga = self._arrays
        return self._kernel == "numba" or (
            self._kernel == "auto" and n_g * (ga.n_node + ga.n_branch) >= _NUMBA_WORK
        )

    def _chunked(self, n_g: int) -> bool:
        """Whether a group of ``n_g`` scenarios runs the chunked kernel (lanes of ``K``)."""
        return self._uses_numba(n_g) and n_g >= _numba_kernels().K

    def _branch_data(self, topo: _Topology) -> tuple[Any, ...]:
        ga = self._arrays
        return ga.br_from, ga.br_to, ga.br_y, topo.br_on, self._k_from, self._k_to

    def _solve_single(
        self,
        values: tuple[ArrayLike | None, ...],
        line_in_service: ArrayLike | None,
        trafo_in_service: ArrayLike | None,
        tol: float,
        max_iter: int,
    ) -> PowerFlowResult | None:
        """One scenario in one serial numba call, with as little Python as possible (a
        controller in the loop solves one snapshot per step); None when the general path
        must run: a batch, grid-forming units, the numpy kernel, input to be reported as bad,
        or a scenario the fixed point does not converge (Newton fallback)."""
        ga = self._arrays
        use_numba = self._kernel == "numba" or (self._kernel == "auto" and self._calls > _AUTO_NUMBA_CALLS)
        if self._gf or not use_numba:
            return None
        cols = (ga.load_p_mw, ga.load_q_mvar, ga.sgen_p_mw, ga.sgen_q_mvar, ga.storage_p_mw, ga.storage_q_mvar)
        arrs = []
        for val, default in zip(values, cols, strict=True):
            if val is None:
                arrs.append(default[None, :])
                continue
            a = val if isinstance(val, np.ndarray) else np.asarray(val)
            if a.ndim == 1:
                a = a[None, :]
            if a.shape != (1, default.shape[0]) or a.dtype != np.float64 or not math.isfinite(float(a.sum())):
                return None  # a batch, other dtypes or bad values: the general path checks
            arrs.append(a)
        br_on = ga.br_default_in_service
        for val, lo, hi in ((line_in_service, 0, ga.n_line), (trafo_in_service, ga.n_line, ga.n_branch)):
            if val is None:
                continue
            m = val if isinstance(val, np.ndarray) else np.asarray(val)
            if m.ndim == 2 and m.shape[0] == 1:
                m = m[0]
            if m.shape != (hi - lo,) or m.dtype != np.bool_:
                return None
            if br_on is ga.br_default_in_service:
                br_on = br_on.copy()
            br_on[lo:hi] = m
        is_default = br_on is ga.br_default_in_service
        if is_default and self._single is not None:
            kern, static = self._single
        else:
            kern = _numba_kernels()
            topo = self._topology(br_on)
            if topo.pq_nodes.shape[0] == 0:
                return None
            if self._post_arrays is None:
                self._post_arrays = kern.branch_arrays(
                    ga.br_y, ga.br_from, ga.br_to, ga.bus_node, self._k_from, self._k_to, ga.n_node
                )
            y8, bus_n, f_n, t_n, k_f2, k_t2 = self._post_arrays
            static = (
                ga.has_zip_loads, 1.0 / ga.sn_mva, topo.slack_vm, topo.v0, *topo.lu, tol,
                max_iter, topo.node_comp, topo.energized, topo.pq_nodes, topo.slack_nodes,
                topo.slack_v, bus_n, f_n, t_n, y8, topo.br_on, k_f2, k_t2, ga.sn_mva, topo.y_s,
                topo.y_s_loc, topo.units_at_slack,
            ), topo.load_loc, topo.sgen_loc, topo.storage_loc, topo.eg_slack_pos
            if is_default:
                self._single = (kern, static)
        consts, load_loc, sgen_loc, storage_loc, eg_pos = static
        if consts[11] != tol or consts[12] != max_iter:
            consts = (*consts[:11], tol, max_iter, *consts[13:])
        nb_, nbr, neg = ga.n_bus, ga.n_branch, eg_pos.shape[0]
        buf = np.empty((1, 2 * nb_ + 4 * nbr + 2 * neg + 1))
        c1, c2, c3 = 2 * nb_, 2 * nb_ + 4 * nbr, 2 * nb_ + 4 * nbr + 2 * neg
        vm, va = buf[:, :nb_], buf[:, nb_:c1]
        p_f, q_f = buf[:, c1:c1 + nbr], buf[:, c1 + nbr:c1 + 2 * nbr]
        pl, loading = buf[:, c1 + 2 * nbr:c2 - nbr], buf[:, c2 - nbr:c2]
        eg_p, eg_q, pl_sum = buf[:, c2:c2 + neg], buf[:, c2 + neg:c3], buf[:, c3:]
        energized = np.empty((1, nb_), dtype=bool)
        iters = np.zeros(1, dtype=np.int64)
        conv = np.zeros(1, dtype=bool)
        zero = _ZERO_ROW
        kern.solve_single(
            (zero, zero, arrs[0], arrs[1], load_loc, ga.load_zip),
            (zero, zero, arrs[2], arrs[3], sgen_loc, _NO_ZIP),
            (zero, zero, arrs[4], arrs[5], storage_loc, _NO_ZIP),
            *consts, vm, va, energized, p_f, q_f, pl, loading, eg_pos, eg_p, eg_q, pl_sum[0],
            iters, conv,
        )
        if not conv[0]:
            return None
        nl = ga.n_line
        no_gf = np.zeros((1, 0))
        return PowerFlowResult(
            vm_pu=vm, va_degree=va, energized=energized,
            line_loading_percent=loading[:, :nl], line_p_from_mw=p_f[:, :nl],
            line_q_from_mvar=q_f[:, :nl], line_pl_mw=pl[:, :nl],
            trafo_loading_percent=loading[:, nl:], trafo_p_hv_mw=p_f[:, nl:],
            trafo_q_hv_mvar=q_f[:, nl:], trafo_pl_mw=pl[:, nl:], pl_mw=pl_sum[:, 0],
            ext_grid_p_mw=eg_p, ext_grid_q_mvar=eg_q, grid_forming_p_mw=no_gf,
            grid_forming_q_mvar=no_gf, converged=conv, iterations=iters,
        )

    def _solve_contingencies(
        self,
        br_mask: BoolArray,
        inj: dict[str, FloatArray],
        row_of: dict[str, IntArray],
        tol: float,
        max_iter: int,
        out: _Output,
    ) -> None:
        """All scenarios at once, each with its own topology (see ``_kernels`` contingencies)."""
        ga = self._arrays
        kern = _numba_kernels()
        if self._pattern is None:
            self._pattern = _fill_pattern(ga, self._rank)
        pat = self._pattern
        n_b = br_mask.shape[0]
        br_on = np.ascontiguousarray(br_mask & ga.br_connectable[None, :])
        n_node = ga.n_node
        eg_ok = ga.ext_grid_node >= 0
        slack_nodes = np.unique(ga.ext_grid_node[eg_ok]).astype(np.int64)
        slack_of_node = np.full(n_node, -1, dtype=np.int64)
        slack_of_node[slack_nodes] = np.arange(slack_nodes.size)
        slack_v = np.zeros(slack_nodes.size, dtype=np.complex128)
        eg_slack = np.full(ga.ext_grid_node.shape[0], -1, dtype=np.int64)
        for e in np.flatnonzero(eg_ok)[::-1]:  # the first ext_grid at a node sets its voltage
            slack_v[slack_of_node[ga.ext_grid_node[e]]] = ga.ext_grid_v[e]
            eg_slack[e] = slack_of_node[ga.ext_grid_node[e]]
        units = np.zeros(slack_nodes.size)
        np.add.at(units, eg_slack[eg_slack >= 0], 1.0)
        elements = tuple(
            (row_of[kp], row_of[kq], inj[kp], inj[kq], node, zp)
            for kp, kq, node, zp in (
                ("load_p_mw", "load_q_mvar", ga.load_node, ga.load_zip),
                ("sgen_p_mw", "sgen_q_mvar", ga.sgen_node, _NO_ZIP),
                ("storage_p_mw", "storage_q_mvar", ga.storage_node, _NO_ZIP),
            )
        )
        v_full = np.zeros((n_b, n_node), dtype=np.complex128)
        en_node = np.zeros((n_b, n_node), dtype=bool)
        sched = np.zeros((n_b, slack_nodes.size), dtype=np.complex128)
        kern.contingencies_par(
            br_on, ga.br_from, ga.br_to, ga.br_y, pat.pos, pat.node_of, pat.idx4,
            ga.shunt_node, ga.shunt_y, pat.ent_r, pat.ent_c, pat.d_idx, pat.lk_ptr, pat.lk_idx,
            pat.tr_ptr, pat.tr_tgt, pat.tr_l, pat.tr_u, pat.l_ptr, pat.l_idx, pat.l_col,
            pat.u_ptr, pat.u_idx, pat.u_col, slack_of_node, slack_nodes, slack_v, units,
            ga.ext_grid_node, eg_slack, *elements, ga.has_zip_loads, 1.0 / ga.sn_mva, tol,
            max_iter, ga.bus_node, self._k_from, self._k_to, ga.sn_mva, v_full, en_node, sched,
            out.conv, out.iters, out.eg, out.vm, out.va, out.energized, out.p_f, out.q_f,
            out.pl, out.loading,
        )

    def _solve_group(
        self,
        topo: _Topology,
        rows: IntArray,
        elements: tuple[Any, ...],
        tol: float,
        max_iter: int,
        out: _Output,
        branch_flows: bool = True,
    ) -> None:
        ga = self._arrays
        n_g = rows.shape[0]
        n_pq = topo.pq_nodes.shape[0]
        n_s = topo.slack_nodes.shape[0]
        use_zip = ga.has_zip_loads
        inv_sn = 1.0 / ga.sn_mva
        slack_vm = np.abs(topo.slack_v)
        v_pq = np.empty((n_g, n_pq), dtype=np.complex128)
        sched = np.empty((n_g, n_s), dtype=np.complex128)
        iters = np.zeros(n_g, dtype=np.int64)
        conv = np.ones(n_g, dtype=bool)
        load, sgen, storage = elements
        s_unit: ComplexArray | None = None  # computed by the chunked kernel
        kern: Any = _numba_kernels() if self._uses_numba(n_g) else None
        # post-processed inside the chunked kernel: groups where no island can collapse
        chunked = self._chunked(n_g)
        fused = chunked and not np.any(topo.gf_slack_pos >= 0)
        if chunked:
            if n_pq:
                sample = np.arange(0, n_g, max(1, n_g // _WARM_SAMPLE), dtype=np.int64)
                v_init = kern.mean_start(sample, load, sgen, storage, use_zip, inv_sn, slack_vm,
                                         topo.v0, *topo.lu)
            else:
                v_init = topo.v0
            s_unit = np.empty((n_g, n_s), dtype=np.complex128)
            finite = np.empty(n_g, dtype=bool)
            kern.fixed_point_chunked(
                load, sgen, storage, use_zip, inv_sn, slack_vm, topo.v0, *topo.lu, tol,
                max_iter if n_pq else 0, v_pq, sched, iters, conv, v_init, fused, rows,
                topo.node_comp, topo.pq_nodes, topo.slack_nodes, topo.slack_v,
                ga.bus_node, *(self._branch_data(topo) if branch_flows else _NO_BRANCHES),
                ga.sn_mva, out.vm, out.va, out.energized, out.p_f, out.q_f, out.pl, out.loading,
                topo.y_s, topo.y_s_loc, topo.units_at_slack, s_unit, finite,
            )
            out.finite[rows] = finite
            if not finite.all():  # bad input: the caller raises; no Newton on NaN rows
                return
            s3: Any = None
        elif kern is not None:
            kern.fixed_point_par(
                load, sgen, storage, use_zip, inv_sn, slack_vm, topo.v0, *topo.lu, tol,
                max_iter if n_pq else 0, v_pq, sched, iters, conv,
            )
            s3 = None
        else:
            s3 = _np_injections(elements, use_zip, inv_sn, slack_vm, n_pq, sched)
            _np_fixed_point(topo, s3, use_zip, tol, max_iter if n_pq else 0, v_pq, iters, conv)
        if n_pq == 0:
            conv[:] = True
        bad = np.flatnonzero(~conv)
        done = conv.copy() if fused else None  # post-processed by the kernel
        if bad.size:
            if s3 is None:
                s3b = kern.injections_rows(bad, load, sgen, storage, use_zip, inv_sn, slack_vm, n_pq)
            else:
                s3b = s3[:, bad]
            for j, b in enumerate(bad):
                v_b, ok, it = _newton(topo, s3b[0, j], s3b[1, j], s3b[2, j], v_pq[b], tol, _NR_MAX_ITER)
                v_pq[b] = v_b
                conv[b] = ok
                iters[b] += it
        # reference units: supplied power = network injection - scheduled injections at the node
        if s_unit is None:
            s_unit = _slack_power(topo, v_pq, sched, ga.sn_mva)
        elif bad.size:  # re-solved by Newton after the kernel computed it
            s_unit[bad] = _slack_power(topo, v_pq[bad], sched[bad], ga.sn_mva)
        # grid-forming limits: an island whose reference unit is out of its limits collapses
        gf_s = np.zeros((n_g, len(self._gf)), dtype=np.complex128)
        kill = np.zeros((n_g, 0), dtype=bool)
        for u, g in enumerate(self._gf):
            pos = topo.gf_slack_pos[u]
            if pos < 0:
                continue
            su = s_unit[:, pos]
            gf_s[:, u] = su
            over = (su.real < g.p_min) | (su.real > g.p_max) | (np.abs(su) > g.s_max)
            if over.any():
                if kill.shape[1] == 0:
                    kill = np.zeros((n_g, topo.n_comp), dtype=bool)
                kill[over, topo.gf_comp[u]] = True
        if kill.shape[1]:
            dead_unit = kill[:, np.maximum(topo.gf_comp, 0)] & (topo.gf_comp >= 0)[None, :]
            gf_s[dead_unit] = 0.0
        post: Any = kern.post_par if kern is not None else _np_post
        sel = slice(None) if done is None else np.flatnonzero(~done)
        if done is None or sel.size:  # type: ignore[union-attr]
            post(
                rows[sel], v_pq[sel], conv[sel], kill[sel], topo.node_comp, topo.energized,
                topo.pq_nodes, topo.slack_nodes, topo.slack_v, ga.bus_node, ga.br_from, ga.br_to,
                ga.br_y, topo.br_on, self._k_from, self._k_to, ga.sn_mva, out.vm, out.va,
                out.energized, out.p_f, out.q_f, out.pl, out.loading,
            )
        # the only group of the batch covers every row in order: slices, no scatter
        full = n_g == out.conv.shape[0] and bool(np.all(rows[1:] > rows[:-1]))
        at: Any = slice(None) if full else rows
        eg_pos = topo.eg_slack_pos
        act = eg_pos >= 0
        if act.any():
            eg = np.zeros((n_g, eg_pos.shape[0]), dtype=np.complex128)
            eg[:, act] = s_unit[:, eg_pos[act]]
            eg[~conv] = np.nan
            out.eg[at] = eg
        if gf_s.shape[1]:
            gf_s[~conv] = np.nan
            out.gf[at] = gf_s
        out.conv[at] = conv
        out.iters[at] = iters


_WARM_SAMPLE = 16  # scenarios averaged for the warm start


_NO_ZIP = np.zeros((0, 4))


class _Output:
    """Preallocated result arrays, filled group by group."""

    def __init__(self, n_b: int, ga: GridArrays, n_gf: int) -> None:
        self.vm = np.empty((n_b, ga.n_bus))
        self.va = np.empty((n_b, ga.n_bus))
        self.energized = np.empty((n_b, ga.n_bus), dtype=bool)
        shape = (n_b, ga.n_branch)
        self.p_f = np.empty(shape)
        self.q_f = np.empty(shape)
        # one column more: the post-processing writes each row's total losses there (no
        # second pass over the B x n_branch losses)
        self.pl = np.empty((n_b, ga.n_branch + 1))
        self.loading = np.empty(shape)
        self.eg = np.zeros((n_b, ga.ext_grid_node.shape[0]), dtype=np.complex128)
        self.gf = np.zeros((n_b, n_gf), dtype=np.complex128)
        self.conv = np.zeros(n_b, dtype=bool)
        self.iters = np.zeros(n_b, dtype=np.int64)
        self.finite = np.ones(n_b, dtype=bool)  # inputs checked by the chunked kernel

    def result(self, ga: GridArrays) -> PowerFlowResult:
        nl = ga.n_line
        return PowerFlowResult(
            vm_pu=self.vm,
            va_degree=self.va,
            energized=self.energized,
            line_loading_percent=self.loading[:, :nl],
            line_p_from_mw=self.p_f[:, :nl],
            line_q_from_mvar=self.q_f[:, :nl],
            line_pl_mw=self.pl[:, :nl],
            trafo_loading_percent=self.loading[:, nl:],
            trafo_p_hv_mw=self.p_f[:, nl:],
            trafo_q_hv_mvar=self.q_f[:, nl:],
            trafo_pl_mw=self.pl[:, nl:-1],
            pl_mw=self.pl[:, -1].copy(),
            ext_grid_p_mw=self.eg.real.copy(),
            ext_grid_q_mvar=self.eg.imag.copy(),
            grid_forming_p_mw=self.gf.real.copy(),
            grid_forming_q_mvar=self.gf.imag.copy(),
            converged=self.conv,
            iterations=self.iters,
        )
