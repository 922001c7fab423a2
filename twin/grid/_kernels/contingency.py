"""A batch where (almost) every scenario has its own topology (an N-1 sweep) runs in one
parallel call: per scenario, connected components by union-find, the admittance matrix
assembled into the shared fill pattern of the full branch graph (in the net's global
elimination order; nodes that are not PQ get an identity row), a numeric LU on that
pattern, the Z-bus fixed point and the post-processing. No per-topology Python work.
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np

from twin.grid._kernels.fixed_point import node_current, step_v
from twin.grid._kernels.injections import add_element
from twin.grid._kernels.opts import OPTS
from twin.grid._kernels.post import branch_arrays, post_one, post_scratch


@nb.njit(**OPTS)
def _find(parent: Any, x: int) -> int:  # pragma: no cover
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@nb.njit(**OPTS)
def _at(el: Any, loc_of_node: Any) -> Any:  # pragma: no cover
    """Element table ``el`` with its nodes (``el[4]``) mapped to this topology's locations."""
    node = el[4]
    loc = np.empty(node.shape[0], dtype=np.int64)
    for e in range(node.shape[0]):
        loc[e] = loc_of_node[node[e]] if node[e] >= 0 else -1
    return el[0], el[1], el[2], el[3], loc, el[5]


@nb.njit(**OPTS)
def _contingency_one(
    b: int, br_on: Any, net_br: Any, pattern: Any, slack: Any, slack_vm: Any, elements: Any,
    stop: Any, outs: Any,
) -> None:  # pragma: no cover
    """One contingency: components, factorisation, fixed point; full position-order voltages
    (arguments as for ``contingencies_par``)."""
    br_f, br_t, br_y, shunt_node, shunt_y = net_br
    (pos, _, idx4, ent_r, ent_c, d_idx, lk_ptr, lk_idx, tr_ptr, tr_tgt, tr_l, tr_u, l_ptr, l_idx,
     l_col, u_ptr, u_idx, u_col) = pattern
    slack_of_node, _, slack_v, _, eg_node, _ = slack
    load, sgen, storage, use_zip, inv_sn = elements
    tol, max_iter = stop
    v_full, en_node, sched_s, conv, iters, _ = outs
    n = pos.shape[0]
    n_br = br_f.shape[0]
    on = br_on[b]
    parent = np.arange(n)
    for k in range(n_br):
        if on[k] and br_f[k] >= 0 and br_t[k] >= 0:
            ra = _find(parent, br_f[k])
            rb = _find(parent, br_t[k])
            if ra != rb:
                parent[ra] = rb
    has_ref = np.zeros(n, dtype=np.bool_)
    for e in range(eg_node.shape[0]):
        if eg_node[e] >= 0:
            has_ref[_find(parent, eg_node[e])] = True
    is_pq = np.zeros(n, dtype=np.bool_)  # position space
    loc_of_node = np.empty(n, dtype=np.int64)
    en = en_node[b]
    for nd in range(n):
        e_ = has_ref[_find(parent, nd)]
        en[nd] = e_
        if slack_of_node[nd] >= 0:
            loc_of_node[nd] = -slack_of_node[nd] - 2
        elif e_:
            loc_of_node[nd] = pos[nd]
            is_pq[pos[nd]] = True
        else:
            loc_of_node[nd] = -1
    # assemble Y into the pattern; slack voltages drive i_s into the PQ nodes
    vals = np.zeros(ent_r.shape[0], dtype=np.complex128)
    i_s = np.zeros(n, dtype=np.complex128)
    for k in range(n_br):
        if not on[k]:
            continue
        f = br_f[k]
        t = br_t[k]
        if f >= 0:
            vals[idx4[k, 0]] += br_y[k, 0]
        if t >= 0:
            vals[idx4[k, 3]] += br_y[k, 3]
        if f >= 0 and t >= 0:
            vals[idx4[k, 1]] += br_y[k, 1]
            vals[idx4[k, 2]] += br_y[k, 2]
            sf = slack_of_node[f]
            st = slack_of_node[t]
            if sf >= 0 and st < 0:
                i_s[pos[t]] += br_y[k, 2] * slack_v[sf]
            if st >= 0 and sf < 0:
                i_s[pos[f]] += br_y[k, 1] * slack_v[st]
    for k in range(shunt_node.shape[0]):
        if shunt_node[k] >= 0:
            vals[d_idx[pos[shunt_node[k]]]] += shunt_y[k]
    for q in range(ent_r.shape[0]):
        if not (is_pq[ent_r[q]] and is_pq[ent_c[q]]):
            vals[q] = 1.0 if ent_r[q] == ent_c[q] else 0.0
    # numeric LU on the shared pattern (right-looking, no pivoting)
    ok = True
    dinv = np.empty(n, dtype=np.complex128)
    for k in range(n):
        piv = vals[d_idx[k]]
        if not abs(piv) >= 1e-14:
            ok = False
            break
        inv = 1.0 / piv
        dinv[k] = inv
        for q in range(lk_ptr[k], lk_ptr[k + 1]):
            vals[lk_idx[q]] *= inv
        for q in range(tr_ptr[k], tr_ptr[k + 1]):
            vals[tr_tgt[q]] -= vals[tr_l[q]] * vals[tr_u[q]]
    n_s = slack_v.shape[0]
    ss = np.zeros(n_s, dtype=np.complex128)
    s = np.zeros(n, dtype=np.complex128)
    si = np.zeros(n if use_zip else 0, dtype=np.complex128)
    sz = np.zeros(n if use_zip else 0, dtype=np.complex128)
    add_element(b, _at(load, loc_of_node), use_zip, -inv_sn, slack_vm, s, si, sz, ss)
    add_element(b, _at(sgen, loc_of_node), np.bool_(False), inv_sn, slack_vm, s, si, sz, ss)
    add_element(b, _at(storage, loc_of_node), np.bool_(False), -inv_sn, slack_vm, s, si, sz, ss)
    for k in range(n_s):
        sched_s[b, k] = ss[k]
    v = v_full[b]
    if not ok:
        conv[b] = False
        iters[b] = 0
        return
    # v0 = -Y_LL^-1 i_s
    w = np.empty(n, dtype=np.complex128)
    for i in range(n):
        w[i] = -i_s[i] if is_pq[i] else 0j
    _lu_solve(w, l_ptr, l_idx, l_col, u_ptr, u_idx, u_col, dinv, vals)
    v0 = w.copy()
    for i in range(n):
        v[i] = v0[i]
    sc = np.conj(s)
    it = 0
    n_pq = 0
    for k in range(n):
        n_pq += is_pq[k]
    good = n_pq == 0
    while it < max_iter and n_pq > 0:
        it += 1
        for k in range(n):
            if is_pq[k]:
                w[k] = node_current(v[k], sc, si, sz, k, use_zip)
            else:
                w[k] = 0j
        _lu_solve(w, l_ptr, l_idx, l_col, u_ptr, u_idx, u_col, dinv, vals)
        err, done = step_v(v, v0, w, n, sc, si, sz, use_zip, tol)
        if done and err < 1e3:
            good = True
            break
        if not err < 1e3:
            break
    for nd in range(n):
        if slack_of_node[nd] >= 0:
            v[pos[nd]] = slack_v[slack_of_node[nd]]
    conv[b] = good
    iters[b] = it


@nb.njit(**OPTS)
def _lu_solve(
    w: Any, l_ptr: Any, l_idx: Any, l_col: Any, u_ptr: Any, u_idx: Any, u_col: Any, dinv: Any,
    vals: Any,
) -> None:  # pragma: no cover
    n = w.shape[0]
    for i in range(n):
        acc = w[i]
        for q in range(l_ptr[i], l_ptr[i + 1]):
            acc -= vals[l_idx[q]] * w[l_col[q]]
        w[i] = acc
    for i in range(n - 1, -1, -1):
        acc = w[i]
        for q in range(u_ptr[i], u_ptr[i + 1]):
            acc -= vals[u_idx[q]] * w[u_col[q]]
        w[i] = acc * dinv[i]


@nb.njit(**OPTS)
def _eg_power(
    b: int, br_on: Any, net_br: Any, pos: Any, slack: Any, sn_mva: float, outs: Any,
) -> None:  # pragma: no cover
    """Supplied power of the ext_grids: network injection at the slack minus scheduled."""
    br_f, br_t, br_y, shunt_node, shunt_y = net_br
    slack_of_node, _, slack_v, units_at_slack, _, eg_slack = slack
    v_full, _, sched_s, _, _, eg_out = outs
    n_br = br_f.shape[0]
    n_s = slack_v.shape[0]
    v = v_full[b]
    on = br_on[b]
    cur = np.zeros(n_s, dtype=np.complex128)
    for k in range(n_br):
        if not on[k]:
            continue
        f = br_f[k]
        t = br_t[k]
        vf = v[pos[f]] if f >= 0 else 0j
        vt = v[pos[t]] if t >= 0 else 0j
        if f >= 0 and slack_of_node[f] >= 0:
            cur[slack_of_node[f]] += br_y[k, 0] * vf + br_y[k, 1] * vt
        if t >= 0 and slack_of_node[t] >= 0:
            cur[slack_of_node[t]] += br_y[k, 2] * vf + br_y[k, 3] * vt
    for k in range(shunt_node.shape[0]):
        nd = shunt_node[k]
        if nd >= 0 and slack_of_node[nd] >= 0:
            cur[slack_of_node[nd]] += shunt_y[k] * slack_v[slack_of_node[nd]]
    for e in range(eg_slack.shape[0]):
        sk = eg_slack[e]
        if sk >= 0:
            s_net = slack_v[sk] * np.conj(cur[sk])
            eg_out[b, e] = (s_net - sched_s[b, sk]) * (sn_mva / units_at_slack[sk])


@nb.njit(parallel=True, **OPTS)
def contingencies_par(
    br_on: Any, net_br: Any, pattern: Any, slack: Any, elements: Any, stop: Any, taps: Any,
    sn_mva: float, outs: Any, res: Any,
) -> None:  # pragma: no cover
    """Every scenario with its own topology (row b of ``br_on``), parallel over scenarios.

    ``net_br`` = (br_f, br_t, br_y, shunt_node, shunt_y); ``pattern`` = (pos, node_of, idx4,
    ent_r, ent_c, d_idx, lk_ptr, lk_idx, tr_ptr, tr_tgt, tr_l, tr_u, l_ptr, l_idx, l_col,
    u_ptr, u_idx, u_col), the shared fill pattern; ``slack`` = (slack_of_node, slack_nodes,
    slack_v, units_at_slack, eg_node, eg_slack); ``elements`` = (load, sgen, storage,
    use_zip, inv_sn); ``stop`` = (tol, max_iter); ``taps`` = (bus_node, k_f, k_t); ``outs``
    = (v_full, en_node, sched_s, conv, iters, eg_out); ``res`` as for ``post_one``.

    Handles ext_grid slacks only (no grid-forming units). Non-converged scenarios keep
    ``conv`` False; the caller re-solves them on the per-topology path (Newton fallback).
    """
    br_f, br_t, br_y = net_br[0], net_br[1], net_br[2]
    pos, node_of = pattern[0], pattern[1]
    slack_v = slack[2]
    load, sgen, storage, use_zip, inv_sn = elements  # only flat tuples enter a prange body
    bus_node, k_f, k_t = taps
    v_full, en_node, _, conv, _, _ = outs
    n_node = pos.shape[0]
    bus_n, f_n, t_n, y8, _, k_f2, k_t2 = branch_arrays((bus_node, br_f, br_t, br_y, br_on, k_f, k_t),
                                                       n_node)
    n_b = br_on.shape[0]
    rows = np.arange(n_b)
    kill = np.zeros((n_b, 0), dtype=np.bool_)
    no_nodes = np.zeros(0, dtype=np.int64)
    no_v = np.zeros(0, dtype=np.complex128)
    slack_vm = np.abs(slack_v)
    for b_ in nb.prange(n_b):
        b = np.int64(b_)  # one build of the helpers for every caller (prange counts in uint64)
        _contingency_one(b, br_on, net_br, pattern, slack, slack_vm,
                         (load, sgen, storage, use_zip, inv_sn), stop, outs)
        if not conv[b]:
            continue
        post_one(
            b, rows, v_full, conv, kill, (pos, en_node[b], node_of, no_nodes, no_v),
            (bus_n, f_n, t_n, y8, br_on[b], k_f2, k_t2), sn_mva, res,
            post_scratch(n_node, bus_n.shape[0], f_n.shape[0]),
        )
        _eg_power(b, br_on, net_br, pos, slack, sn_mva, outs)
