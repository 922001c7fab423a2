"""Numba kernel of the phase-frame fixed point (see :mod:`twin.grid.pf3ph`): arrays in, arrays out.

Each scenario iterates ``z <- M^-1 (c + R I(V))``, ``V = V_fix + T z`` with the sparse LU
factors of ``M`` (``Pr M Pc = L U``), in parallel over scenarios. Imported only when a batch
is large enough to pay for numba (compiled functions are cached on disk).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

# batches below this much work (scenarios x nodes) run serially: waking threads costs more
_PARALLEL_WORK = 20_000



@njit(cache=True)
def _lu_solve(b: Any, lp: Any, li: Any, lx: Any, up: Any, ui: Any, ux: Any, dinv: Any, perm_r: Any, perm_c: Any,
              w: Any, out: Any) -> None:  # pragma: no cover - numba
    n = b.shape[0]
    for i in range(n):
        w[perm_r[i]] = b[i]
    for i in range(n):
        acc = w[i]
        for k in range(lp[i], lp[i + 1]):
            acc -= lx[k] * w[li[k]]
        w[i] = acc
    for i in range(n - 1, -1, -1):
        acc = w[i]
        for k in range(up[i], up[i + 1]):
            acc -= ux[k] * w[ui[k]]
        w[i] = acc * dinv[i]
    for i in range(n):
        out[i] = w[perm_c[i]]


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
def _fp_one(s_b: Any, c: Any, v_fix: Any, t_ptr: Any, t_idx: Any, t_val: Any, r_ptr: Any, r_idx: Any, r_val: Any,
            lp: Any, li: Any, lx: Any, up: Any, ui: Any, ux: Any, dinv: Any, perm_r: Any, perm_c: Any,
            ld_i: Any, ld_j: Any, ld_k: Any, ld_u: Any, ld_model: Any, ld_vlow: Any, ld_vmin: Any, ld_vmax: Any,
            tol: float, max_iter: int, warm: bool, v: Any, inj: Any, inj_new: Any, rhs: Any, w: Any, z: Any,
            v_out: Any) -> tuple[int, bool]:  # pragma: no cover - numba
    """One scenario's fixed point; scratch arrays given; returns (iterations, converged).

    Cold: from the no-load solution (iteration 0). ``warm``: from the voltages left in ``v``
    by the previous scenario of the chunk (neighbouring scenarios are alike: fewer iterations).
    """
    n = v_fix.shape[0]
    n_z = c.shape[0]
    conv = False
    it = 0
    start = 0
    if warm:
        _injections(v, s_b, ld_i, ld_j, ld_k, ld_u, ld_model, ld_vlow, ld_vmin, ld_vmax, inj)
        start = 1
    for it in range(start, max_iter + 1):
        for r in range(n_z):
            acc = c[r]
            if it > 0:
                for k in range(r_ptr[r], r_ptr[r + 1]):
                    acc += r_val[k] * inj[r_idx[k]]
            rhs[r] = acc
        _lu_solve(rhs, lp, li, lx, up, ui, ux, dinv, perm_r, perm_c, w, z)
        for k in range(n):
            acc = v_fix[k]
            for q in range(t_ptr[k], t_ptr[k + 1]):
                acc += t_val[q] * z[t_idx[q]]
            v[k] = acc
        _injections(v, s_b, ld_i, ld_j, ld_k, ld_u, ld_model, ld_vlow, ld_vmin, ld_vmax, inj_new)
        mis = 0.0
        for k in range(n):
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
        v_out[k] = v[k]
    return it, conv


@njit(parallel=True, cache=True)
def fixed_point_par(c: Any, v_fix: Any, t_ptr: Any, t_idx: Any, t_val: Any, r_ptr: Any, r_idx: Any, r_val: Any,
                    lp: Any, li: Any, lx: Any, up: Any, ui: Any, ux: Any, dinv: Any, perm_r: Any, perm_c: Any,
                    ld_i: Any, ld_j: Any, ld_k: Any, ld_u: Any, ld_model: Any, ld_vlow: Any, ld_vmin: Any,
                    ld_vmax: Any, s_node: Any, tol: float, max_iter: int, n_chunks: int, v_out: Any, iters: Any,
                    conv: Any) -> None:  # pragma: no cover - numba
    """All scenarios, ``n_chunks`` strided chunks in parallel (scratch allocated once per chunk)."""
    n_b = s_node.shape[0]
    n = v_fix.shape[0]
    n_z = c.shape[0]
    per = (n_b + n_chunks - 1) // n_chunks  # contiguous chunks: neighbours warm-start each other
    for ch in prange(n_chunks):
        v = np.zeros(n + 1, dtype=np.complex128)  # v[n] is ground
        inj = np.zeros(n, dtype=np.complex128)
        inj_new = np.zeros(n, dtype=np.complex128)
        rhs = np.empty(n_z, dtype=np.complex128)
        w = np.empty(n_z, dtype=np.complex128)
        z = np.empty(n_z, dtype=np.complex128)
        warm = False
        for b in range(ch * per, min(n_b, (ch + 1) * per)):
            inj[:] = 0.0
            it, ok = _fp_one(s_node[b], c, v_fix, t_ptr, t_idx, t_val, r_ptr, r_idx, r_val, lp, li, lx, up, ui, ux,
                             dinv, perm_r, perm_c, ld_i, ld_j, ld_k, ld_u, ld_model, ld_vlow, ld_vmin, ld_vmax, tol,
                             max_iter, warm, v, inj, inj_new, rhs, w, z, v_out[b])
            iters[b] = it
            conv[b] = ok
            warm = ok


@njit(cache=True)
def fixed_point_ser(c: Any, v_fix: Any, t_ptr: Any, t_idx: Any, t_val: Any, r_ptr: Any, r_idx: Any, r_val: Any,
                    lp: Any, li: Any, lx: Any, up: Any, ui: Any, ux: Any, dinv: Any, perm_r: Any, perm_c: Any,
                    ld_i: Any, ld_j: Any, ld_k: Any, ld_u: Any, ld_model: Any, ld_vlow: Any, ld_vmin: Any,
                    ld_vmax: Any, s_node: Any, tol: float, max_iter: int, n_chunks: int, v_out: Any, iters: Any,
                    conv: Any) -> None:  # pragma: no cover - numba
    """Serial twin of :func:`fixed_point_par` for small batches (no thread wake-up)."""
    n = v_fix.shape[0]
    n_z = c.shape[0]
    v = np.zeros(n + 1, dtype=np.complex128)
    inj = np.zeros(n, dtype=np.complex128)
    inj_new = np.zeros(n, dtype=np.complex128)
    rhs = np.empty(n_z, dtype=np.complex128)
    w = np.empty(n_z, dtype=np.complex128)
    z = np.empty(n_z, dtype=np.complex128)
    warm = False
    for b in range(s_node.shape[0]):
        inj[:] = 0.0
        it, ok = _fp_one(s_node[b], c, v_fix, t_ptr, t_idx, t_val, r_ptr, r_idx, r_val, lp, li, lx, up, ui, ux,
                         dinv, perm_r, perm_c, ld_i, ld_j, ld_k, ld_u, ld_model, ld_vlow, ld_vmin, ld_vmax, tol,
                         max_iter, warm, v, inj, inj_new, rhs, w, z, v_out[b])
        iters[b] = it
        conv[b] = ok
        warm = ok


def solve_batch(topo: Any, pf: Any, s_node: Any, ld_k: Any, tol: float, max_iter: int) -> tuple[Any, Any, Any]:
    """Run the kernel for one topology; returns (v (B, n_node), iterations (B,), converged (B,))."""
    n_b, n = s_node.shape
    v = np.zeros((n_b, n), dtype=np.complex128)
    iters = np.zeros(n_b, dtype=np.int64)
    conv = np.zeros(n_b, dtype=np.bool_)
    t, r = topo.t_mat, topo.r_mat
    kernel = fixed_point_par if n_b * n >= _PARALLEL_WORK else fixed_point_ser
    kernel(  # type: ignore[call-arg]
        topo.c, topo.v_fix, t.indptr.astype(np.int64), t.indices.astype(np.int64), t.data.astype(np.complex128),
        r.indptr.astype(np.int64), r.indices.astype(np.int64), r.data.astype(np.complex128), *topo.lu_arrays,
        pf._ld_i, pf._ld_j, np.ascontiguousarray(ld_k, dtype=np.complex128), *pf._ld_params,
        np.ascontiguousarray(s_node), float(tol), int(max_iter), min(n_b, 8), v, iters, conv,
    )
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
            _post_one(b, v, net, loads, s_node, sn, out)


@njit(cache=True)
def post_ser(v: Any, ok: Any, net: Any, loads: Any, s_node: Any, sn: float, out: Any) -> None:  # pragma: no cover
    """Serial twin of :func:`post_par` (no thread wake-up for small batches)."""
    for b in range(v.shape[0]):
        if ok[b]:
            _post_one(b, v, net, loads, s_node, sn, out)
