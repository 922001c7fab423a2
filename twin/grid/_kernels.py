"""Numba kernels of the batch power flow (private; see :mod:`twin.grid.pf`).

Imported lazily by :mod:`twin.grid.pf` only for batches big enough to pay for numba
(its import and, on a fresh clone, its compile); small batches run the numpy path there.
Every kernel is ``cache=True``: compiled once per machine into ``__pycache__``.
"""

from __future__ import annotations

import math
from typing import Any

import numba as nb
import numpy as np

__all__ = ["K", "fixed_point_chunked", "fixed_point_par", "injections_rows", "post_par"]

# --------------------------------------------------------------------------- numba kernels
#
# Element "locations" per topology: loc >= 0 is a PQ position (in LU order), loc <= -2 the
# slack position -loc - 2, loc == -1 means the element injects nothing (out of service,
# de-energized, or a grid-forming unit acting as slack).


@nb.njit(cache=True)
def _add_element(
    b: int, rows_p: Any, rows_q: Any, p: Any, q: Any, loc: Any, zip_: Any, use_zip: bool,
    factor: float, slack_vm: Any, s: Any, si: Any, sz: Any, ss: Any,
) -> None:  # pragma: no cover
    rp = rows_p[b]
    rq = rows_q[b]
    for e in range(loc.shape[0]):
        k = loc[e]
        if k == -1:
            continue
        pe = factor * p[rp, e]
        qe = factor * q[rq, e]
        if use_zip:
            zp, ip, zq, iq = zip_[e, 0], zip_[e, 1], zip_[e, 2], zip_[e, 3]
            if k >= 0:
                s[k] += complex(pe * (1.0 - zp - ip), qe * (1.0 - zq - iq))
                si[k] += complex(pe * ip, qe * iq)
                sz[k] += complex(pe * zp, qe * zq)
            else:
                vm = slack_vm[-k - 2]
                ss[-k - 2] += complex(
                    pe * (1.0 - zp - ip + ip * vm + zp * vm * vm),
                    qe * (1.0 - zq - iq + iq * vm + zq * vm * vm),
                )
        elif k >= 0:
            s[k] += complex(pe, qe)
        else:
            ss[-k - 2] += complex(pe, qe)


@nb.njit(cache=True)
def _injections(
    b: int, load: Any, sgen: Any, storage: Any, use_zip: bool, inv_sn: float, slack_vm: Any,
    s: Any, si: Any, sz: Any, ss: Any,
) -> None:  # pragma: no cover
    """Per-unit injections (generation-positive) of scenario b at PQ and slack nodes."""
    s[:] = 0.0
    si[:] = 0.0
    sz[:] = 0.0
    ss[:] = 0.0
    _add_element(b, load[0], load[1], load[2], load[3], load[4], load[5], use_zip, -inv_sn,
                 slack_vm, s, si, sz, ss)
    _add_element(b, sgen[0], sgen[1], sgen[2], sgen[3], sgen[4], sgen[5], False, inv_sn,
                 slack_vm, s, si, sz, ss)
    _add_element(b, storage[0], storage[1], storage[2], storage[3], storage[4], storage[5],
                 False, -inv_sn, slack_vm, s, si, sz, ss)


@nb.njit(cache=True)
def _fixed_point_one(
    b: int,
    load: Any, sgen: Any, storage: Any, use_zip: bool, inv_sn: float, slack_vm: Any,
    v0: Any, l_ptr: Any, l_idx: Any, l_val: Any, u_ptr: Any, u_idx: Any, u_val: Any,
    u_dinv: Any, tol: float, max_iter: int, v_out: Any, sched_out: Any, iters: Any, conv: Any,
) -> None:  # pragma: no cover
    """Z-bus fixed point ``V <- V0 + Y_LL^-1 conj(S(V)/V)`` for scenario (row) b.

    Vectors are in the LU order of ``Y_LL``, so the triangular solves need no permutation.
    """
    n = v_out.shape[1]
    n_s = sched_out.shape[1]
    if True:
        s = np.empty(n, dtype=np.complex128)
        si = np.empty(n if use_zip else 0, dtype=np.complex128)
        sz = np.empty(n if use_zip else 0, dtype=np.complex128)
        ss = np.empty(n_s, dtype=np.complex128)
        _injections(b, load, sgen, storage, use_zip, inv_sn, slack_vm, s, si, sz, ss)
        for k in range(n_s):
            sched_out[b, k] = ss[k]
        sc = np.conj(s)
        v = v0.copy()
        w = np.empty(n, dtype=np.complex128)
        ok = False
        it = 0
        while it < max_iter:
            it += 1
            for k in range(n):  # I = conj(S) / conj(V) = conj(S) V / |V|^2
                vk = v[k]
                m2 = vk.real * vk.real + vk.imag * vk.imag
                sk = sc[k]
                if use_zip:
                    vm = math.sqrt(m2)
                    sk = sk + np.conj(si[k]) * vm + np.conj(sz[k]) * m2
                w[k] = sk * vk / m2
            for i in range(n):  # L: unit diagonal, strictly lower part in CSR
                acc = w[i]
                for jj in range(l_ptr[i], l_ptr[i + 1]):
                    acc -= l_val[jj] * w[l_idx[jj]]
                w[i] = acc
            for i in range(n - 1, -1, -1):  # U: strictly upper part in CSR, inverse diagonal
                acc = w[i]
                for jj in range(u_ptr[i], u_ptr[i + 1]):
                    acc -= u_val[jj] * w[u_idx[jj]]
                w[i] = acc * u_dinv[i]
            err = 0.0
            for k in range(n):
                vn = v0[k] + w[k]
                d = vn - v[k]
                e = max(abs(d.real), abs(d.imag))
                if not e <= err:  # also catches NaN
                    err = e
                v[k] = vn
            if err < tol:
                ok = True
                break
            if not err < 1e3:
                break
        for k in range(n):
            v_out[b, k] = v[k]
        iters[b] = it
        conv[b] = ok


@nb.njit(cache=True, parallel=True)
def _fixed_point_par(
    load: Any, sgen: Any, storage: Any, use_zip: bool, inv_sn: float, slack_vm: Any,
    v0: Any, l_ptr: Any, l_idx: Any, l_val: Any, u_ptr: Any, u_idx: Any, u_val: Any,
    u_dinv: Any, tol: float, max_iter: int, v_out: Any, sched_out: Any, iters: Any, conv: Any,
) -> None:  # pragma: no cover
    """Fixed point for all scenarios, parallel over scenarios."""
    for b in nb.prange(v_out.shape[0]):
        _fixed_point_one(
            b, load, sgen, storage, use_zip, inv_sn, slack_vm, v0, l_ptr, l_idx, l_val, u_ptr,
            u_idx, u_val, u_dinv, tol, max_iter, v_out, sched_out, iters, conv,
        )


@nb.njit(cache=True)
def _add_element_lanes(
    c: int, n_b: int, rows_p: Any, rows_q: Any, p: Any, q: Any, loc: Any, zip_: Any,
    use_zip: bool, factor: float, slack_vm: Any, pr: Any, pi: Any, ir_: Any, ii_: Any, zr: Any,
    zi: Any, sched_out: Any,
) -> None:  # pragma: no cover
    """``_add_element`` for the ``_K`` lanes of chunk c, into (node, lane) planes of conj(S)."""
    rp = np.empty(_K, dtype=np.int64)
    rq = np.empty(_K, dtype=np.int64)
    for j in range(_K):
        b = min(c * _K + j, n_b - 1)
        rp[j] = rows_p[b]
        rq[j] = rows_q[b]
    for e in range(loc.shape[0]):
        k = loc[e]
        if k == -1:
            continue
        if k >= 0:
            if use_zip:
                zp, ip, zq, iq = zip_[e, 0], zip_[e, 1], zip_[e, 2], zip_[e, 3]
                for j in range(_K):
                    pe = factor * p[rp[j], e]
                    qe = factor * q[rq[j], e]
                    pr[k, j] += pe * (1.0 - zp - ip)
                    pi[k, j] -= qe * (1.0 - zq - iq)
                    ir_[k, j] += pe * ip
                    ii_[k, j] -= qe * iq
                    zr[k, j] += pe * zp
                    zi[k, j] -= qe * zq
            else:
                for j in range(_K):
                    pr[k, j] += factor * p[rp[j], e]
                    pi[k, j] -= factor * q[rq[j], e]
        else:
            sk = -k - 2
            vm = slack_vm[sk]
            for j in range(_K):
                b = c * _K + j
                if b >= n_b:
                    break
                pe = factor * p[rp[j], e]
                qe = factor * q[rq[j], e]
                if use_zip:
                    zp, ip, zq, iq = zip_[e, 0], zip_[e, 1], zip_[e, 2], zip_[e, 3]
                    pe *= 1.0 - zp - ip + ip * vm + zp * vm * vm
                    qe *= 1.0 - zq - iq + iq * vm + zq * vm * vm
                sched_out[b, sk] += complex(pe, qe)


_K = 32  # scenarios per chunk (lanes) of the parallel kernel


@nb.njit(cache=True, parallel=True)
def _fixed_point_chunked(
    load: Any, sgen: Any, storage: Any, use_zip: bool, inv_sn: float, slack_vm: Any,
    v0: Any, l_ptr: Any, l_idx: Any, l_val: Any, u_ptr: Any, u_idx: Any, u_val: Any,
    u_dinv: Any, tol: float, max_iter: int, v_out: Any, sched_out: Any, iters: Any, conv: Any,
    v_init: Any,
) -> None:  # pragma: no cover
    """Same fixed point as ``_fixed_point_one``, on chunks of ``_K`` scenarios (lanes) at once.

    State is stored as (node, lane) real/imaginary planes, so every inner loop runs over the
    ``_K`` lanes of a chunk: vectorized, and the latency of the triangular solves' dependency
    chains (one long chain on a radial feeder) is spread over ``_K`` independent lanes. An
    iteration is two passes over the nodes: forward (currents ``conj(S/V)`` and the L solve)
    and backward (U solve, voltage update and convergence check). Lanes past the end of the
    batch repeat the last scenario. Every lane starts from ``v_init`` (a warm start, e.g.
    the solution of the batch's mean injections; ``v0`` for a cold start).
    """
    n_b, n = v_out.shape
    n_s = sched_out.shape[1]
    n_chunk = (n_b + _K - 1) // _K
    lr = l_val.real.copy()
    li = l_val.imag.copy()
    ur = u_val.real.copy()
    ui = u_val.imag.copy()
    dr = u_dinv.real.copy()
    di = u_dinv.imag.copy()
    for c in nb.prange(n_chunk):
        pr = np.zeros((n, _K))
        pi = np.zeros((n, _K))
        ir_ = np.zeros((n if use_zip else 0, _K))
        ii_ = np.zeros((n if use_zip else 0, _K))
        zr = np.zeros((n if use_zip else 0, _K))
        zi = np.zeros((n if use_zip else 0, _K))
        for j in range(_K):
            if c * _K + j < n_b:
                for k in range(n_s):
                    sched_out[c * _K + j, k] = 0.0
        _add_element_lanes(c, n_b, load[0], load[1], load[2], load[3], load[4], load[5], use_zip,
                           -inv_sn, slack_vm, pr, pi, ir_, ii_, zr, zi, sched_out)
        _add_element_lanes(c, n_b, sgen[0], sgen[1], sgen[2], sgen[3], sgen[4], sgen[5], False,
                           inv_sn, slack_vm, pr, pi, ir_, ii_, zr, zi, sched_out)
        _add_element_lanes(c, n_b, storage[0], storage[1], storage[2], storage[3], storage[4],
                           storage[5], False, -inv_sn, slack_vm, pr, pi, ir_, ii_, zr, zi, sched_out)
        vr = np.empty((n, _K))
        vi = np.empty((n, _K))
        for k in range(n):
            for j in range(_K):
                vr[k, j] = v_init[k].real
                vi[k, j] = v_init[k].imag
        wr = np.empty((n, _K))
        wi = np.empty((n, _K))
        err = np.empty(_K)
        done = np.zeros(_K, dtype=np.bool_)
        ok = np.zeros(_K, dtype=np.bool_)
        its = np.full(_K, max_iter, dtype=np.int64)
        it = 0
        while it < max_iter:
            it += 1
            # forward: w = conj(S(V)) / conj(V), then w <- L^-1 w (unit diagonal, CSR rows)
            for i in range(n):
                for j in range(_K):
                    a = vr[i, j]
                    bb = vi[i, j]
                    m2 = a * a + bb * bb
                    sr_ = pr[i, j]
                    si_ = pi[i, j]
                    if use_zip:
                        vm = math.sqrt(m2)
                        sr_ += ir_[i, j] * vm + zr[i, j] * m2
                        si_ += ii_[i, j] * vm + zi[i, j] * m2
                    inv = 1.0 / m2
                    wr[i, j] = (sr_ * a - si_ * bb) * inv
                    wi[i, j] = (sr_ * bb + si_ * a) * inv
                for jj in range(l_ptr[i], l_ptr[i + 1]):
                    q = l_idx[jj]
                    cr = lr[jj]
                    ci = li[jj]
                    for j in range(_K):
                        xr = wr[q, j]
                        xi = wi[q, j]
                        wr[i, j] -= cr * xr - ci * xi
                        wi[i, j] -= cr * xi + ci * xr
            # backward: w <- U^-1 w, V <- V0 + w, largest change per lane
            err[:] = 0.0
            for i in range(n - 1, -1, -1):
                for jj in range(u_ptr[i], u_ptr[i + 1]):
                    q = u_idx[jj]
                    cr = ur[jj]
                    ci = ui[jj]
                    for j in range(_K):
                        xr = wr[q, j]
                        xi = wi[q, j]
                        wr[i, j] -= cr * xr - ci * xi
                        wi[i, j] -= cr * xi + ci * xr
                gr = dr[i]
                gi = di[i]
                a0 = v0[i].real
                b0 = v0[i].imag
                for j in range(_K):
                    xr = wr[i, j]
                    xi = wi[i, j]
                    yr = gr * xr - gi * xi
                    yi = gr * xi + gi * xr
                    wr[i, j] = yr
                    wi[i, j] = yi
                    nr = a0 + yr
                    ni = b0 + yi
                    e = max(abs(nr - vr[i, j]), abs(ni - vi[i, j]))
                    err[j] = e if not e <= err[j] else err[j]  # NaN propagates
                    vr[i, j] = nr
                    vi[i, j] = ni
            all_done = True
            for j in range(_K):
                if not done[j]:
                    if err[j] < tol:
                        done[j] = True
                        ok[j] = True
                        its[j] = it
                    elif not err[j] < 1e3:
                        done[j] = True
                        its[j] = it
                    else:
                        all_done = False
            if all_done:
                break
        for j in range(min(_K, n_b - c * _K)):  # row by row: contiguous writes
            b = c * _K + j
            for k in range(n):
                v_out[b, k] = complex(vr[k, j], vi[k, j])
            iters[b] = its[j]
            conv[b] = ok[j]


@nb.njit(cache=True)
def _injections_rows(
    sel: Any, load: Any, sgen: Any, storage: Any, use_zip: bool, inv_sn: float, slack_vm: Any,
    n: int,
) -> Any:  # pragma: no cover
    """Injections (s, si, sz) of selected scenarios, for the Newton fallback."""
    out = np.zeros((3, sel.shape[0], n), dtype=np.complex128)
    ss = np.empty(slack_vm.shape[0], dtype=np.complex128)
    si = np.empty(n, dtype=np.complex128)
    sz = np.empty(n, dtype=np.complex128)
    s = np.empty(n, dtype=np.complex128)
    for j in range(sel.shape[0]):
        _injections(sel[j], load, sgen, storage, use_zip, inv_sn, slack_vm, s, si, sz, ss)
        out[0, j] = s
        if use_zip:
            out[1, j] = si
            out[2, j] = sz
    return out


_ATAN_P = (-8.750608600031904122785e-1, -1.615753718733365076637e1, -7.500855792314704667340e1,
           -1.228866684490136173410e2, -6.485021904942025371773e1)
_ATAN_Q = (2.485846490142306297962e1, 1.650270098316988542046e2, 4.328810604912902668951e2,
           4.853903996359136964868e2, 1.945506571482613964425e2)
_MOREBITS = 6.123233995736765886130e-17


@nb.njit(cache=True, inline="always")
def _atan2(y: float, x: float) -> float:  # pragma: no cover
    """``math.atan2`` without a libm call (Cephes ``atan``, within a few ulp), branch-free.

    Inlined in the post-processing loops, where the library call cost more than the flows.
    """
    ax = abs(x)
    ay = abs(y)
    hi = max(ax, ay)
    lo = min(ax, ay)
    t = lo / hi if hi > 0.0 else 0.0
    big = t > 0.66
    z = (t - 1.0) / (t + 1.0) if big else t
    zz = z * z
    p_ = (((_ATAN_P[0] * zz + _ATAN_P[1]) * zz + _ATAN_P[2]) * zz + _ATAN_P[3]) * zz + _ATAN_P[4]
    q_ = ((((zz + _ATAN_Q[0]) * zz + _ATAN_Q[1]) * zz + _ATAN_Q[2]) * zz + _ATAN_Q[3]) * zz + _ATAN_Q[4]
    r = z + z * (zz * p_ / q_)
    a = (0.25 * math.pi + (r + 0.5 * _MOREBITS)) if big else r
    if ay > ax:
        a = 0.5 * math.pi - a
    if x < 0.0 or (x == 0.0 and math.copysign(1.0, x) < 0.0):
        a = math.pi - a
    if y < 0.0 or (y == 0.0 and math.copysign(1.0, y) < 0.0):
        a = -a
    if x != x or y != y:
        a = np.nan
    return a


@nb.njit(cache=True)
def _post_one(
    b: int,
    rows: Any, v_pq: Any, conv: Any, kill: Any, node_comp: Any, energized_node: Any,
    pq_nodes: Any, slack_nodes: Any, slack_v: Any, bus_node: Any,
    br_f: Any, br_t: Any, br_y: Any, br_on: Any, k_f: Any, k_t: Any, sn_mva: float,
    vm_out: Any, va_out: Any, en_out: Any, pf_out: Any, qf_out: Any, pl_out: Any, ld_out: Any,
) -> None:  # pragma: no cover
    """Bus voltages, branch flows (MW, Mvar) and loadings for scenario b of a group."""
    n_node = node_comp.shape[0]
    rad2deg = 180.0 / math.pi
    if True:
        r = rows[b]
        v = np.zeros(n_node, dtype=np.complex128)
        for k in range(slack_nodes.shape[0]):
            v[slack_nodes[k]] = slack_v[k]
        for k in range(pq_nodes.shape[0]):
            v[pq_nodes[k]] = v_pq[b, k]
        if kill.shape[1] > 0:
            for k in range(n_node):
                if kill[b, node_comp[k]]:
                    v[k] = 0.0
        if not conv[b]:
            for k in range(n_node):
                if energized_node[k]:
                    v[k] = complex(np.nan, np.nan)
        for i in range(bus_node.shape[0]):
            nd = bus_node[i]
            if nd < 0:
                vm_out[r, i] = 0.0
                va_out[r, i] = 0.0
                en_out[r, i] = False
                continue
            x = v[nd]
            vm = math.sqrt(x.real * x.real + x.imag * x.imag)
            vm_out[r, i] = vm
            if vm > 0.0 or vm != vm:
                va_out[r, i] = _atan2(x.imag, x.real) * rad2deg
                en_out[r, i] = True
            else:
                va_out[r, i] = 0.0
                en_out[r, i] = False
        for k in range(br_f.shape[0]):
            if not br_on[k]:
                pf_out[r, k] = 0.0
                qf_out[r, k] = 0.0
                pl_out[r, k] = 0.0
                ld_out[r, k] = 0.0
                continue
            f = br_f[k]
            t = br_t[k]
            vf = v[f] if f >= 0 else 0.0j
            vt = v[t] if t >= 0 else 0.0j
            i_f = br_y[k, 0] * vf + br_y[k, 1] * vt
            i_t = br_y[k, 2] * vf + br_y[k, 3] * vt
            sf = vf * i_f.conjugate()
            st = vt * i_t.conjugate()
            pf_out[r, k] = sf.real * sn_mva
            qf_out[r, k] = sf.imag * sn_mva
            pl_out[r, k] = (sf.real + st.real) * sn_mva
            a2 = (i_f.real * i_f.real + i_f.imag * i_f.imag) * k_f[k] * k_f[k]
            b2 = (i_t.real * i_t.real + i_t.imag * i_t.imag) * k_t[k] * k_t[k]
            ld_out[r, k] = math.sqrt(max(a2, b2)) if a2 == a2 and b2 == b2 else np.nan


@nb.njit(cache=True, parallel=True)
def _post_par(
    rows: Any, v_pq: Any, conv: Any, kill: Any, node_comp: Any, energized_node: Any,
    pq_nodes: Any, slack_nodes: Any, slack_v: Any, bus_node: Any,
    br_f: Any, br_t: Any, br_y: Any, br_on: Any, k_f: Any, k_t: Any, sn_mva: float,
    vm_out: Any, va_out: Any, en_out: Any, pf_out: Any, qf_out: Any, pl_out: Any, ld_out: Any,
) -> None:  # pragma: no cover
    """Post-processing for all scenarios, parallel over scenarios."""
    for b in nb.prange(v_pq.shape[0]):
        _post_one(
            b, rows, v_pq, conv, kill, node_comp, energized_node, pq_nodes, slack_nodes, slack_v,
            bus_node, br_f, br_t, br_y, br_on, k_f, k_t, sn_mva, vm_out, va_out, en_out, pf_out,
            qf_out, pl_out, ld_out,
        )


K = _K
fixed_point_par = _fixed_point_par
fixed_point_chunked = _fixed_point_chunked
injections_rows = _injections_rows
post_par = _post_par
