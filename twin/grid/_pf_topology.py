"""Topology of one batch power flow: components, slack and PQ nodes, ``Y_LL`` and its sparse LU
(per distinct in-service pattern), the fill pattern shared by the contingency kernel, and
the grouping of scenarios by topology. Pure numpy/scipy; see :mod:`twin.grid.pf`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components
from scipy.sparse.linalg import splu

from twin.grid._pf_types import BoolArray, ComplexArray, FloatArray, IntArray
from twin.grid.arrays import GridArrays

__all__ = [
    "FillPattern", "FormingUnit", "Topology", "build_topology", "distinct_rows", "fill_pattern", "group_rows",
    "node_rank", "slack_power",
]


# --------------------------------------------------------------------------- topology


@dataclass(frozen=True, eq=False)
class Topology:
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


def node_rank(ga: GridArrays) -> IntArray:
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


def slack_power(topo: Topology, v_pq: ComplexArray, sched: ComplexArray, sn_mva: float) -> ComplexArray:
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


def build_topology(
    ga: GridArrays, gf: Sequence[FormingUnit], br_on_in: BoolArray, rank: IntArray
) -> Topology:
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
    return Topology(
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
class FormingUnit:
    element: str
    pos: int  # row in the element table
    node: int
    v: complex
    p_min: float
    p_max: float
    s_max: float


@dataclass(frozen=True, eq=False)
class FillPattern:
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


def fill_pattern(ga: GridArrays, rank: IntArray) -> FillPattern:
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
    return FillPattern(
        pos=pos, node_of=node_of, idx4=idx4, ent_r=arr(ent_r), ent_c=arr(ent_c),
        d_idx=np.arange(n, dtype=np.int64), lk_ptr=arr(lk_ptr), lk_idx=arr(lk_idx),
        tr_ptr=arr(tr_ptr), tr_tgt=arr(tr_tgt), tr_l=arr(tr_l), tr_u=arr(tr_u),
        l_ptr=arr(l_ptr), l_idx=arr(l_idx), l_col=arr(l_col), u_ptr=arr(u_ptr),
        u_idx=arr(u_idx), u_col=arr(u_col),
    )


def distinct_rows(br_mask: BoolArray) -> int:
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


def group_rows(br_mask: BoolArray, rows: IntArray) -> list[tuple[BoolArray, IntArray]]:
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
