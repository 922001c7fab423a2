"""Numba kernel of the phase-frame fixed point (see :mod:`twin.grid.pf3ph`): arrays in, arrays out.

Each scenario iterates ``z <- M^-1 (c + R I(V))``, ``V = V_fix + T z`` with the sparse LU
factors of ``M`` (``Pr M Pc = L U``), in parallel over scenarios. Imported only when a batch
is large enough to pay for numba (compiled functions are cached on disk).
"""

from __future__ import annotations

import weakref
from typing import Any

import numpy as np
import scipy.sparse as sp
from numba import njit, prange

# batches below this much work (scenarios x nodes) run serially: waking threads costs more
_PARALLEL_WORK = 20_000


@njit(cache=True)
def load_factor(a: float, model: int, vlow: float, vmin: float, vmax: float) -> float:  # pragma: no cover - numba
    """Admittance of a load over its nominal ``Yeq`` at voltage ``a`` (per unit of its own base).

    OpenDSS's Load: constant PQ (model 0) / I (1) inside ``[vmin, vmax]``; an impedance above
    ``vmax`` and below ``vlow``; between ``vlow`` and ``vmin`` the current is interpolated
    linearly between its values at the two ends. Constant Z (2) is 1.
    """
    if model == 2 or a <= vlow:
        return 1.0
    if a > vmax:
        return 1.0 / (vmax * vmax) if model == 0 else 1.0 / vmax
    if a >= vmin:
        return 1.0 / (a * a) if model == 0 else 1.0 / a
    i_top = 1.0 / vmin if model == 0 else 1.0
    return (vlow + (i_top - vlow) * (a - vlow) / (vmin - vlow)) / a


@njit(cache=True)
def _injections(v: Any, s_node: Any, ld_i: Any, ld_j: Any, ld_k: Any, ld_u: Any, ld_model: Any, ld_vlow: Any,
                ld_vmin: Any, ld_vmax: Any, inj: Any) -> None:  # pragma: no cover - numba
    n = inj.shape[0]
    for k in range(n):
        s = s_node[k]
        if s.real != 0.0 or s.imag != 0.0:
            vk = v[k]
            inj[k] = -(s.conjugate() * vk) / (vk.real * vk.real + vk.imag * vk.imag)
        else:
            inj[k] = 0.0
    for e in range(ld_i.shape[0]):
        i = ld_i[e]
        j = ld_j[e]
        u = v[i] - v[j]
        a = np.sqrt(u.real * u.real + u.imag * u.imag) / ld_u[e]
        cur = ld_k[e] * load_factor(a, ld_model[e], ld_vlow[e], ld_vmin[e], ld_vmax[e]) * u
        inj[i] -= cur
        if j < n:
            inj[j] += cur


@njit(cache=True)
def _inj_active(v: Any, s_b: Any, act: Any, n_act: int, loads: Any, inj: Any) -> None:  # pragma: no cover - numba
    """Current injections of the active nodes ``act[:n_act]`` (wye powers and every load terminal)."""
    ld_i, ld_j, ld_k, ld_u, ld_model, ld_vlow, ld_vmin, ld_vmax = loads
    n = inj.shape[0]
    for a in range(n_act):
        k = act[a]
        s = s_b[k]
        if s.real != 0.0 or s.imag != 0.0:
            vk = v[k]
            inj[k] = -(s.conjugate() * vk) / (vk.real * vk.real + vk.imag * vk.imag)
        else:
            inj[k] = 0.0
    for e in range(ld_i.shape[0]):
        i = ld_i[e]
        j = ld_j[e]
        u = v[i] - v[j]
        a_ = np.sqrt(u.real * u.real + u.imag * u.imag) / ld_u[e]
        cur = ld_k[e] * load_factor(a_, ld_model[e], ld_vlow[e], ld_vmin[e], ld_vmax[e]) * u
        inj[i] -= cur
        if j < n:
            inj[j] += cur


@njit(cache=True)
def _fp_one(s_b: Any, system: Any, loads: Any, tol: float, max_iter: int, warm: bool, v: Any, inj: Any,
            inj_new: Any, y: Any, act: Any, v_out: Any) -> tuple[int, bool]:  # pragma: no cover - numba
    """One scenario's fixed point; scratch arrays given; returns (iterations, converged).

    ``system`` (see :func:`_system`) holds the LU factors with their permutations folded into
    ``c``, ``R`` (by node) and ``T``, so an iteration is: the right-hand side from the active
    nodes' injections, two triangular solves in place, the voltages of the active nodes only
    (nodes with a wye power or a load terminal; only they can have a mismatch), their
    injections and mismatch. All node voltages are formed once, at the end.
    Cold: from the no-load solution (iteration 0). ``warm``: from the voltages left in ``v``
    by the previous scenario of the chunk (neighbouring scenarios are alike: fewer iterations).
    """
    c, v_fix, t_ptr, t_idx, t_val, rc_ptr, rc_idx, rc_val, lp, li, lx, up, ui, ux, dinv, load_node = system
    n = v_fix.shape[0]
    n_z = c.shape[0]
    n_act: Any = np.int64(0)  # not a literal 0: one build of _inj_active
    for k in range(n):
        s = s_b[k]
        if s.real != 0.0 or s.imag != 0.0 or load_node[k]:
            act[n_act] = k
            n_act += 1
    conv = False
    it = 0
    start = 0
    if warm:
        _inj_active(v, s_b, act, n_act, loads, inj)
        start = 1
    else:
        for a in range(n_act):
            inj[act[a]] = 0.0
    for it in range(start, max_iter + 1):
        for r in range(n_z):
            y[r] = c[r]
        if it > 0:
            for a in range(n_act):
                k = act[a]
                ik = inj[k]
                for q in range(rc_ptr[k], rc_ptr[k + 1]):
                    y[rc_idx[q]] += rc_val[q] * ik
        for i in range(n_z):  # L (unit diagonal)
            acc = y[i]
            for q in range(lp[i], lp[i + 1]):
                acc -= lx[q] * y[li[q]]
            y[i] = acc
        for i in range(n_z - 1, -1, -1):  # U
            acc = y[i]
            for q in range(up[i], up[i + 1]):
                acc -= ux[q] * y[ui[q]]
            y[i] = acc * dinv[i]
        for a in range(n_act):
            k = act[a]
            acc = v_fix[k]
            for q in range(t_ptr[k], t_ptr[k + 1]):
                acc += t_val[q] * y[t_idx[q]]
            v[k] = acc
        _inj_active(v, s_b, act, n_act, loads, inj_new)
        mis = 0.0
        for a in range(n_act):
            k = act[a]
            d = inj_new[k] - inj[k]
            m2 = (d.real * d.real + d.imag * d.imag) * (v[k].real * v[k].real + v[k].imag * v[k].imag)
            if m2 > mis or m2 != m2:
                mis = m2
            inj[k] = inj_new[k]
        if it > 0 and mis <= tol * tol:
            conv = True
            break
        if mis != mis:
            break
    for k in range(n):
        acc = v_fix[k]
        for q in range(t_ptr[k], t_ptr[k + 1]):
            acc += t_val[q] * y[t_idx[q]]
        v[k] = acc
        v_out[k] = acc
    return it, conv


@njit(cache=True)
def _fp_range(lo: int, hi: int, s_node: Any, system: Any, loads: Any, tol: float, max_iter: int, v_out: Any,
              iters: Any, conv: Any) -> None:  # pragma: no cover - numba
    """Scenarios ``lo .. hi-1`` in order, each warm-started from the previous one."""
    n = system[1].shape[0]
    n_z = system[0].shape[0]
    v = np.zeros(n + 1, dtype=np.complex128)  # v[n] is ground
    inj = np.zeros(n, dtype=np.complex128)
    inj_new = np.zeros(n, dtype=np.complex128)
    y = np.empty(n_z, dtype=np.complex128)
    act = np.empty(n, dtype=np.int64)
    warm: Any = np.bool_(False)  # not a literal False: one build of _fp_one
    for b in range(lo, hi):
        it, ok = _fp_one(s_node[b], system, loads, tol, max_iter, warm, v, inj, inj_new, y, act, v_out[b])
        iters[b] = it
        conv[b] = ok
        warm = ok


@njit(parallel=True, cache=True)
def fixed_point_par(s_node: Any, system: Any, loads: Any, tol: float, max_iter: int, n_chunks: int, v_out: Any,
                    iters: Any, conv: Any) -> None:  # pragma: no cover - numba
    """All scenarios in ``n_chunks`` contiguous chunks in parallel (neighbours warm-start each other)."""
    n_b = s_node.shape[0]
    per = (n_b + n_chunks - 1) // n_chunks
    for ch in prange(n_chunks):
        _fp_range(ch * per, min(n_b, (ch + 1) * per), s_node, system, loads, tol, max_iter, v_out, iters, conv)


@njit(cache=True)
def fixed_point_ser(s_node: Any, system: Any, loads: Any, tol: float, max_iter: int, n_chunks: int, v_out: Any,
                    iters: Any, conv: Any) -> None:  # pragma: no cover - numba
    """Serial twin of :func:`fixed_point_par` for small batches (no thread wake-up)."""
    lo: Any = np.int64(0)  # int64, not a literal 0: one build of _fp_range
    _fp_range(lo, s_node.shape[0], s_node, system, loads, tol, max_iter, v_out, iters, conv)


_SYSTEMS: weakref.WeakKeyDictionary[Any, tuple[Any, ...]] = weakref.WeakKeyDictionary()


def _system(topo: Any, pf: Any) -> tuple[Any, ...]:
    """The kernel's view of one topology (cached): permutations folded into c, R and T.

    ``Pr M Pc = L U``: the right-hand side ``c + R I`` enters the solves at rows ``perm_r`` and
    the unknowns are ``z[i] = y[perm_c[i]]``, so ``R`` (kept by node, CSC) gets its rows and
    ``T`` its columns renumbered once instead of two permutation passes per iteration.
    """
    hit = _SYSTEMS.get(topo)
    if hit is not None:
        return hit
    lp, li, lx, up, ui, ux, dinv, perm_r, perm_c = topo.lu_arrays
    n = topo.v_fix.shape[0]
    n_z = topo.c.shape[0]
    c = np.empty(n_z, dtype=np.complex128)
    c[perm_r] = topo.c
    r = topo.r_mat.tocoo()
    rc = sp.csc_matrix((r.data.astype(np.complex128), (perm_r[r.row], r.col)), shape=(n_z, n))
    rc.sort_indices()
    t = sp.csr_matrix(topo.t_mat)
    t.sort_indices()
    load_node = np.zeros(n + 1, dtype=np.bool_)
    load_node[pf._ld_i] = True
    load_node[pf._ld_j] = True
    hit = (c, np.ascontiguousarray(topo.v_fix, dtype=np.complex128), t.indptr.astype(np.int64),
           perm_c[t.indices].astype(np.int64), t.data.astype(np.complex128), rc.indptr.astype(np.int64),
           rc.indices.astype(np.int64), rc.data.astype(np.complex128), lp, li, lx, up, ui, ux, dinv, load_node[:n])
    _SYSTEMS[topo] = hit
    return hit


def solve_batch(topo: Any, pf: Any, s_node: Any, ld_k: Any, tol: float, max_iter: int) -> tuple[Any, Any, Any]:
    """Run the kernel for one topology; returns (v (B, n_node), iterations (B,), converged (B,))."""
    n_b, n = s_node.shape
    v = np.zeros((n_b, n), dtype=np.complex128)
    iters = np.zeros(n_b, dtype=np.int64)
    conv = np.zeros(n_b, dtype=np.bool_)
    loads = (pf._ld_i, pf._ld_j, np.ascontiguousarray(ld_k, dtype=np.complex128), *pf._ld_params)
    kernel = fixed_point_par if n_b * n >= _PARALLEL_WORK else fixed_point_ser
    kernel(np.ascontiguousarray(s_node), _system(topo, pf), loads, float(tol), int(max_iter), min(n_b, 8), v, iters,
           conv)
    return v, iters, conv


@njit(cache=True)
def _post_one(b: int, v: Any, net: Any, loads: Any, s_node: Any, sn: float, out: Any) -> None:  # pragma: no cover
    """Results of scenario ``b`` from its node voltages (see ``BatchPowerFlow3ph._post``).

    ``net`` = (node_of, g_ptr, g_idx, g_val, cond_node, cond_elem, cond_phase, cond_first, cond_ibase,
    cond_imax, not_src_elem, ys_ptr, ys_idx, ys_val, src); ``loads`` = (ld_i, ld_j, ld_k, ld_u,
    ld_model, ld_vlow, ld_vmin, ld_vmax); ``out`` = (vm, va, vuf, i_ka, load_pc, pl, pl_tot, s_src,
    p_from, q_from).
    """
    (node_of, g_ptr, g_idx, g_val, cond_node, cond_elem, cond_phase, cond_first, cond_ibase, cond_imax,
     not_src_elem, ys_ptr, ys_idx, ys_val, src) = net
    ld_i, ld_j, ld_k, ld_u, ld_model, ld_vlow, ld_vmin, ld_vmax = loads
    vm, va, vuf, i_ka, load_pc, pl, pl_tot, s_src, p_from, q_from = out
    n = v.shape[1]
    n_bus = node_of.shape[0]
    a = np.exp(2j * np.pi / 3)
    a2 = a * a
    rad = 180.0 / np.pi
    vb = np.zeros(n + 1, dtype=np.complex128)
    for k in range(n):
        vk = v[b, k]
        if vk == vk:
            vb[k] = vk
    for k in range(n_bus):
        full = True
        for p in range(3):
            nd = node_of[k, p]
            if nd >= 0 and v[b, nd] == v[b, nd]:
                vk = v[b, nd]
                vm[b, k, p] = np.abs(vk)
                va[b, k, p] = np.arctan2(vk.imag, vk.real) * rad
            else:
                full = False
        if full:
            va_ = vb[node_of[k, 0]]
            vb_ = vb[node_of[k, 1]]
            vc_ = vb[node_of[k, 2]]
            v1 = va_ + a * vb_ + a2 * vc_
            v2 = va_ + a2 * vb_ + a * vc_
            if np.abs(v1) > 0:
                vuf[b, k] = np.abs(v2) / np.abs(v1) * 100.0
    tot = 0.0
    for c in range(cond_node.shape[0]):
        cur = 0j
        for q in range(g_ptr[c], g_ptr[c + 1]):
            cur += g_val[q] * vb[g_idx[q]]
        e = cond_elem[c]
        s = vb[cond_node[c]] * cur.conjugate()
        pl[b, e] += s.real * sn
        if not_src_elem[e]:
            tot += s.real * sn
        if cond_first[c]:
            mag = np.abs(cur) * cond_ibase[c]
            ph = cond_phase[c]
            i_ka[b, e, ph] = mag
            load_pc[b, e, ph] = mag / cond_imax[c] * 100.0
            p_from[b, e, ph] = s.real * sn
            q_from[b, e, ph] = s.imag * sn
    pl_tot[b] = tot
    inj = np.zeros(n, dtype=np.complex128)
    _injections(vb, s_node[b], ld_i, ld_j, ld_k, ld_u, ld_model, ld_vlow, ld_vmin, ld_vmax, inj)
    acc = 0j
    for r in range(src.shape[0]):
        yv = 0j
        for q in range(ys_ptr[r], ys_ptr[r + 1]):
            yv += ys_val[q] * vb[ys_idx[q]]
        k = src[r]
        acc += vb[k] * (yv - inj[k]).conjugate()
    s_src[b] = acc * sn


@njit(parallel=True, cache=True)
def post_par(v: Any, ok: Any, net: Any, loads: Any, s_node: Any, sn: float, out: Any) -> None:  # pragma: no cover
    """Per-scenario results in parallel; rows that did not converge stay NaN."""
    for b in prange(v.shape[0]):
        if ok[b]:
            b64: Any = np.int64(b)  # prange counts in uint64: one build of _post_one for both kernels
            _post_one(b64, v, net, loads, s_node, sn, out)


@njit(cache=True)
def post_ser(v: Any, ok: Any, net: Any, loads: Any, s_node: Any, sn: float, out: Any) -> None:  # pragma: no cover
    """Serial twin of :func:`post_par` (no thread wake-up for small batches)."""
    for b in range(v.shape[0]):
        if ok[b]:
            _post_one(b, v, net, loads, s_node, sn, out)
