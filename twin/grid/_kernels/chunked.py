"""The chunked fixed point: ``K`` scenarios (lanes) at once, with fused post-processing."""

from __future__ import annotations

import math
from typing import Any

import numba as nb
import numpy as np

from twin.grid._kernels.fixed_point import mismatch
from twin.grid._kernels.opts import OPTS, K
from twin.grid._kernels.post import branch_arrays, post_nodes, post_scratch


@nb.njit(**OPTS)
def add_element_lanes(
    c: int, n_b: int, el: Any, use_zip: bool, factor: float, slack_vm: Any, pr: Any, pi: Any,
    ir_: Any, ii_: Any, zr: Any, zi: Any, sched_out: Any, bad: Any,
) -> None:  # pragma: no cover
    """``add_element`` for the ``K`` lanes of chunk c, into (node, lane) planes of conj(S)
    (``el`` = (rows_p, rows_q, p, q, loc, zip)).

    ``bad[j]`` turns NaN when a value of lane j's rows (any element, in service or not) is
    not finite: the caller's input check, fused into the one pass over the inputs.

    Lane by lane: each scenario's row of ``p`` and ``q`` is read front to back and scattered
    into the lane's column of the planes (in cache). Element by element, each value was a
    gather from ``K`` rows of the (B, n) inputs, which the hardware prefetcher cannot
    follow: on a 1000-bus feeder that cost three times as much (about 13 against 4.5 µs
    per scenario).
    """
    rows_p, rows_q, p, q, loc, zip_ = el
    for j in range(K):
        b = min(c * K + j, n_b - 1)
        prow = p[rows_p[b]]
        qrow = q[rows_q[b]]
        chk = 0.0
        for e in range(loc.shape[0]):
            chk += (prow[e] - prow[e]) + (qrow[e] - qrow[e])  # 0, or NaN for NaN/inf
            k = loc[e]
            if k < 0:
                continue
            pe = factor * prow[e]
            qe = factor * qrow[e]
            if use_zip:
                zp, ip, zq, iq = zip_[e, 0], zip_[e, 1], zip_[e, 2], zip_[e, 3]
                pr[k, j] += pe * (1.0 - zp - ip)
                pi[k, j] -= qe * (1.0 - zq - iq)
                ir_[k, j] += pe * ip
                ii_[k, j] -= qe * iq
                zr[k, j] += pe * zp
                zi[k, j] -= qe * zq
            else:
                pr[k, j] += pe
                pi[k, j] -= qe
        bad[j] += chk
    for e in range(loc.shape[0]):
        k = loc[e]
        if k > -2:
            continue
        sk = -k - 2
        vm = slack_vm[sk]
        for j in range(min(K, n_b - c * K)):
            b = c * K + j
            pe = factor * p[rows_p[b], e]
            qe = factor * q[rows_q[b], e]
            if use_zip:
                zp, ip, zq, iq = zip_[e, 0], zip_[e, 1], zip_[e, 2], zip_[e, 3]
                pe *= 1.0 - zp - ip + ip * vm + zp * vm * vm
                qe *= 1.0 - zq - iq + iq * vm + zq * vm * vm
            sched_out[b, sk] += complex(pe, qe)


@nb.njit(**OPTS)
def _staggered(size: int, count: int) -> Any:  # pragma: no cover
    """One buffer holding ``count`` planes of ``size`` doubles, and each plane's offset.

    Separately allocated planes of a power-of-two size start at the same offset modulo
    4 KiB, and the CPU then takes a load from one plane for a store to another at the same
    offset ("4K aliasing"): the chunked fixed point ran at half speed in some processes and
    not in others. Plane p starts 576 * p bytes (9 cache lines) apart modulo 4 KiB.
    """
    offs = np.empty(count, dtype=np.int64)
    at = 0
    for p in range(count):
        want = (p * 72) % 512  # in doubles: 72 doubles = 576 bytes; 512 doubles = 4 KiB
        at += (want - at % 512) % 512
        offs[p] = at
        at += size
    return np.empty(at + 8), offs


@nb.njit(inline="always", **OPTS)
def sweep_lanes(
    kw: int, vr: Any, vi: Any, planes: Any, work: Any, v0: Any, lu_ri: Any, use_zip: bool, tol: float,
    max_iter: int, sp2max: Any, done: Any, ok: Any, its: Any,
) -> None:  # pragma: no cover
    """The fixed point's iterations on the first ``kw`` lanes of (node, lane) planes, from
    the voltages ``vr``, ``vi`` (rows 0..n-1: the PQ nodes, updated in place); ``planes`` =
    (pr, pi, ir, ii, zr, zi) conj(S) of the constant-power, -current and -impedance parts,
    ``work`` = (wr, wi) the currents, ``lu_ri`` = (l_ptr, l_idx, l_re, l_im, u_ptr, u_idx,
    u_re, u_im, dinv_re, dinv_im). A lane has converged when the power mismatch of every node
    (``mismatch``) is below ``tol``; for constant-power injections the test uses ``sp2max``,
    the lanes' largest |S|^2 at the node (no plane to load in the backward pass), which can
    only make it stricter. Lanes ``done`` on entry are not tracked; on exit ``ok[j]`` says
    whether lane j converged and ``its[j]`` after how many iterations (``max_iter``
    otherwise)."""
    pr, pi, ir_, ii_, zr, zi = planes
    wr, wi = work
    l_ptr, l_idx, lr, li, u_ptr, u_idx, ur, ui, dr, di = lu_ri
    n = v0.shape[0]
    tol2 = tol * tol
    for j in range(kw):
        ok[j] = False
        its[j] = max_iter
    err = np.empty(kw)
    mq = np.empty(kw)  # largest mismatch test value per lane (<= 0: converged)
    it = 0
    while it < max_iter:
        it += 1
        # forward: w = conj(S(V)) / conj(V), then w <- L^-1 w (unit diagonal, CSR rows)
        for i in range(n):
            for j in range(kw):
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
                for j in range(kw):
                    xr = wr[q, j]
                    xi = wi[q, j]
                    wr[i, j] -= cr * xr - ci * xi
                    wi[i, j] -= cr * xi + ci * xr
        # backward: w <- U^-1 w, V <- V0 + w, largest squared change and mismatch test per lane
        err[:] = 0.0
        mq[:] = -np.inf
        for i in range(n - 1, -1, -1):
            for jj in range(u_ptr[i], u_ptr[i + 1]):
                q = u_idx[jj]
                cr = ur[jj]
                ci = ui[jj]
                for j in range(kw):
                    xr = wr[q, j]
                    xi = wi[q, j]
                    wr[i, j] -= cr * xr - ci * xi
                    wi[i, j] -= cr * xi + ci * xr
            gr = dr[i]
            gi = di[i]
            a0 = v0[i].real
            b0 = v0[i].imag
            s2max = sp2max[i]
            for j in range(kw):
                xr = wr[i, j]
                xi = wi[i, j]
                yr = gr * xr - gi * xi
                yi = gr * xi + gi * xr
                wr[i, j] = yr
                wi[i, j] = yi
                nr = a0 + yr
                ni = b0 + yi
                ar = vr[i, j]
                ai = vi[i, j]
                dr_ = nr - ar
                di_ = ni - ai
                d2 = dr_ * dr_ + di_ * di_
                err[j] = d2 if not d2 <= err[j] else err[j]  # squared; NaN propagates
                m2 = ar * ar + ai * ai
                if use_zip:
                    sp2 = pr[i, j] * pr[i, j] + pi[i, j] * pi[i, j]
                    q = mismatch(sp2, ir_[i, j] * ir_[i, j] + ii_[i, j] * ii_[i, j],
                                  zr[i, j] * zr[i, j] + zi[i, j] * zi[i, j], m2,
                                  nr * nr + ni * ni, d2, True) - tol
                else:  # mismatch^2 - tol^2, times |V_old|^2 (no division, no root),
                    # with the chunk's largest |S_p| at the node: no plane to load
                    q = s2max * d2 - tol2 * m2
                mq[j] = q if not q <= mq[j] else mq[j]
                vr[i, j] = nr
                vi[i, j] = ni
        all_done = True
        for j in range(kw):
            if not done[j]:
                if mq[j] <= 0.0 and err[j] < 1e6:
                    done[j] = True
                    ok[j] = True
                    its[j] = it
                elif not err[j] < 1e6:  # a step of 1e3 pu: diverged
                    done[j] = True
                    its[j] = it
                else:
                    all_done = False
        if all_done:
            break


@nb.njit(parallel=True, **OPTS)
def fixed_point_chunked(
    inj: Any, v0: Any, lu: Any, stop: Any, fp_out: Any, v_init: Any, post: bool, rows: Any,
    nodes: Any, branches: Any, sn_mva: float, res: Any, ref: Any, s_unit_out: Any, finite_out: Any,
) -> None:  # pragma: no cover
    """Same fixed point as ``fixed_point_one``, on chunks of ``K`` scenarios (lanes) at once.

    State is stored as (node, lane) real/imaginary planes, so every inner loop runs over the
    ``K`` lanes of a chunk: vectorized, and the latency of the triangular solves' dependency
    chains (one long chain on a radial feeder) is spread over ``K`` independent lanes. An
    iteration is two passes over the nodes: forward (currents ``conj(S/V)`` and the L solve)
    and backward (U solve, voltage update and convergence check). Lanes past the end of the
    batch repeat the last scenario. Every lane starts from ``v_init`` (a warm start, e.g.
    the solution of the batch's mean injections; ``v0`` for a cold start). A lane has
    converged when the power mismatch of every node (``mismatch``) is below ``tol``; for
    constant-power injections the test uses the chunk's largest |S| at the node (no plane to
    load in the backward pass), which can only make it stricter.

    With ``post`` the converged lanes are post-processed (``post_nodes``) right after their
    chunk, straight from the lane planes while they are still in cache, and their ``v_out``
    rows are not written; the caller post-processes the others (after its Newton fallback).
    Only for groups without grid-forming units (no island can collapse after the solve).
    ``s_unit_out`` gets the power each reference unit supplies (MVA): the network injection
    at its slack node (slack rows ``y_s`` of Y, columns at PQ position ``y_s_loc`` or slack
    ``-loc - 2``) minus the node's scheduled injections.
    ``finite_out[b]`` is False when an input value of scenario b is NaN or infinite (the
    caller then reports where; the kernel reads every input once anyway).
    """
    load, sgen, storage, use_zip, inv_sn, slack_vm = inj
    l_ptr, l_idx, l_val, u_ptr, u_idx, u_val, u_dinv = lu
    tol, max_iter = stop
    v_out, sched_out, iters, conv = fp_out
    node_comp, _, pq_nodes, slack_nodes, slack_v = nodes
    y_s, y_s_loc, units_at_slack = ref
    n_b, n = v_out.shape
    n_node = node_comp.shape[0]
    bus_n, f_n, t_n, y8, br_on, k_f2, k_t2 = branch_arrays(branches, n_node)
    n_s = sched_out.shape[1]
    n_chunk = (n_b + K - 1) // K
    # plane row of every node (and of the ground slot): PQ position, n + slack, or the zero row
    n_s_nodes = slack_nodes.shape[0]
    n_ext = n + n_s_nodes + 1
    row_of = np.full(n_node + 1, n_ext - 1, dtype=np.int64)
    for k in range(n):
        row_of[pq_nodes[k]] = k
    for k in range(n_s_nodes):
        row_of[slack_nodes[k]] = n + k
    bus_p = row_of[bus_n]
    f_p = row_of[f_n]
    t_p = row_of[t_n]
    lu_ri = (l_ptr, l_idx, l_val.real.copy(), l_val.imag.copy(), u_ptr, u_idx, u_val.real.copy(),
             u_val.imag.copy(), u_dinv.real.copy(), u_dinv.imag.copy())
    for c in nb.prange(n_chunk):
        # vr, vi: PQ rows, then the slack voltages and a zero row (post-processing gathers)
        buf, offs = _staggered(n_ext * K, 10)
        pr = buf[offs[0]:offs[0] + n * K].reshape((n, K))
        pi = buf[offs[1]:offs[1] + n * K].reshape((n, K))
        vr = buf[offs[2]:offs[2] + n_ext * K].reshape((n_ext, K))
        vi = buf[offs[3]:offs[3] + n_ext * K].reshape((n_ext, K))
        for k in range(n_s_nodes):
            vr[n + k] = slack_v[k].real
            vi[n + k] = slack_v[k].imag
        vr[n_ext - 1] = 0.0
        vi[n_ext - 1] = 0.0
        wr = buf[offs[4]:offs[4] + n * K].reshape((n, K))
        wi = buf[offs[5]:offs[5] + n * K].reshape((n, K))
        nz = n * K if use_zip else 0
        ir_ = buf[offs[6]:offs[6] + nz].reshape((nz // K, K))
        ii_ = buf[offs[7]:offs[7] + nz].reshape((nz // K, K))
        zr = buf[offs[8]:offs[8] + nz].reshape((nz // K, K))
        zi = buf[offs[9]:offs[9] + nz].reshape((nz // K, K))
        pr[:] = 0.0
        pi[:] = 0.0
        ir_[:] = 0.0
        ii_[:] = 0.0
        zr[:] = 0.0
        zi[:] = 0.0
        for j in range(K):
            if c * K + j < n_b:
                for k in range(n_s):
                    sched_out[c * K + j, k] = 0.0
        bad = np.zeros(K)
        add_element_lanes(np.int64(c), n_b, load, use_zip, -inv_sn, slack_vm, pr, pi, ir_, ii_, zr, zi,
                          sched_out, bad)
        add_element_lanes(np.int64(c), n_b, sgen, np.bool_(False), inv_sn, slack_vm, pr, pi, ir_, ii_, zr, zi,
                          sched_out, bad)
        add_element_lanes(np.int64(c), n_b, storage, np.bool_(False), -inv_sn, slack_vm, pr, pi, ir_, ii_, zr, zi,
                          sched_out, bad)
        for j in range(min(K, n_b - c * K)):
            finite_out[c * K + j] = bad[j] == 0.0
        sp2max = np.empty(n)
        for k in range(n):
            x = 0.0
            for j in range(K):
                vr[k, j] = v_init[k].real
                vi[k, j] = v_init[k].imag
                x = max(x, pr[k, j] * pr[k, j] + pi[k, j] * pi[k, j])
            sp2max[k] = x
        done = np.zeros(K, dtype=np.bool_)
        ok = np.zeros(K, dtype=np.bool_)
        its = np.full(K, max_iter, dtype=np.int64)
        sweep_lanes(K, vr, vi, (pr, pi, ir_, ii_, zr, zi), (wr, wi), v0, lu_ri, use_zip, tol, max_iter, sp2max,
                    done, ok, its)
        for j in range(min(K, n_b - c * K)):  # row by row: contiguous writes
            b = c * K + j
            if not (post and ok[j]):  # for the caller's Newton fallback and post-processing
                for k in range(n):
                    v_out[b, k] = complex(vr[k, j], vi[k, j])
            iters[b] = its[j]
            conv[b] = ok[j]
            for k in range(n_s):
                acc = 0j
                for cc in range(y_s_loc.shape[0]):
                    loc = y_s_loc[cc]
                    vv = complex(vr[loc, j], vi[loc, j]) if loc >= 0 else slack_v[-loc - 2]
                    acc += y_s[k, cc] * vv
                s_net = slack_v[k] * np.conj(acc)
                s_unit_out[b, k] = (s_net - sched_out[b, k]) * (sn_mva / units_at_slack[k])
        if post:  # converged lanes straight from the planes (no kill: no grid-forming units)
            scratch = post_scratch(np.int64(0), bus_n.shape[0], f_n.shape[0])
            for j in range(min(K, n_b - c * K)):
                if ok[j]:
                    post_nodes(rows[c * K + j], vr, vi, j, (bus_p, f_p, t_p, y8, br_on, k_f2, k_t2),
                               sn_mva, res, scratch)
