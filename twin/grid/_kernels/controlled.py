"""The controlled power flow's lanes in one serial call: the outer quasi-Newton loop of
:class:`twin.grid.controlled_pf.ControlledPowerFlow` around the Z-bus fixed point, with the
fixed point's state in (node, slot) planes as in
:func:`twin.grid._kernels.chunked.fixed_point_chunked`, so ``K`` lanes share its vectorized
inner loops.

The lanes stream through the ``K`` slots: every sweep is one fixed-point iteration of every
slot; a slot whose power flow has converged takes its outer step at once (device residual,
then the device Newton and new set-points, or the lane's results straight from the planes)
and a finished lane's slot takes the next lane, while the other slots keep iterating. So no
slot waits for the slowest lane of a chunk, and a lane's power flows cost the iterations
they take. Every power flow is warm-started: a lane's from its previous one, a lane's first
from the voltages of the lane before it in its slot (the lanes of a batch are nearby cases).
The post-processing is the build the plain flow compiles anyway; the device Newton
(:func:`lane_newton`) is the batch path's (``newton_lane_into``) on a lane table of what the
devices' outputs need that does not depend on the voltage (``_lane_table``: volt-var devices
whose P is the same at every voltage evaluate the curve and one clip), with the in-service
devices' sensitivities gathered once; the rest of a lane's work is inline (a call with
dozens of arrays costs a reference-count update per array on each side, on counts the
threads that run blocks share)."""

from __future__ import annotations

import math
from typing import Any

import numba as nb
import numpy as np

from twin.grid._der_kernels import _pw, _target
from twin.grid._kernels.chunked import _staggered, sweep_lanes
from twin.grid._kernels.opts import OPTS, K
from twin.grid._kernels.post import post_nodes, post_scratch


@nb.njit(inline="always", **OPTS)
def _lane_table(i: int, p_av: float, sc: float, f: Any, tb: Any) -> None:  # pragma: no cover
    """Device i's column of a lane's table ``tb`` (6, N): what its output needs that does not
    depend on its voltage. Row 0 is 1 for the common case (volt-var without volt-watt, P
    the same at every voltage: Q the curve clipped to ``lim``), rows 1-3 its P, ``lim`` and
    apparent-power rating then; rows 4-5 the lane's avail and scale (any other device:
    ``_target``). The same arithmetic as ``_target``: clipping to ``qc`` then to ``room``
    (or ``sr``) is clipping to the smaller of the two."""
    par = f[0]
    tb[4, i] = p_av
    tb[5, i] = sc
    tb[0, i] = 0.0
    if par[i, 8] != 0.0 or par[i, 5] != 1.0:
        return
    sr = par[i, 0] * sc
    qc = par[i, 2] * sr
    if par[i, 4] == 0.0:  # active power priority: P clipped to the rating, Q to what is left
        p = min(max(p_av, -sr), sr)
        lim = min(qc, math.sqrt(max(sr * sr - p * p, 0.0)))
    else:  # reactive priority: Q clipped to the rating, then P to what is left, which is
        # never less than the room left by the largest |Q|; when P fits in that, P is fixed
        p = p_av
        lim = min(qc, sr)
        if not abs(p) <= math.sqrt(max(sr * sr - lim * lim, 0.0)):
            return
    tb[0, i] = 1.0
    tb[1, i] = p
    tb[2, i] = lim
    tb[3, i] = sr


@nb.njit(inline="always", **OPTS)
def _out(i: int, v: float, tb: Any, f: Any) -> tuple[float, float]:  # pragma: no cover
    """Device i's output (p, q) at voltage v from its lane table column (``_lane_table``)."""
    if tb[0, i] != 0.0:
        lim = tb[2, i]
        return tb[1, i], min(max(_pw(v, f[1], i, 0) * tb[3, i], -lim), lim)
    return _target(i, v, tb[4, i], tb[5, i], f)


@nb.njit(**OPTS)
def newton_work(n: int) -> Any:  # pragma: no cover
    """Work arrays of :func:`lane_newton` for ``n`` devices (reused across lanes)."""
    return np.empty((2, n), dtype=np.int64), np.empty((10, n)), np.empty((n, n)), np.empty((2 * n, n))


@nb.njit(**OPTS)
def lane_newton(v_k: Any, x_p: Any, x_q: Any, on: Any, tb: Any, sens: Any, f: Any, inner_max: int, tol: float,
                fd_h: float, out_p: Any, out_q: Any, ws: Any, g_known: bool) -> None:  # pragma: no cover
    """``twin.grid._der_kernels.newton_lane_into`` (the batch path's device Newton: solve
    ``v = v_k + S (G(v) - x)`` on the in-service devices, then write ``G(v)``), with the
    devices evaluated from the lane's table ``tb`` (``_lane_table``), their sensitivities
    gathered once into a dense transposed block, and no data-dependent branch in the set-up.
    With ``g_known`` ``out_p``, ``out_q`` hold ``G(v_k)`` on entry."""
    n = v_k.shape[0]
    ix, work, a, st = ws
    idx = ix[0]
    off = ix[1]
    m = 0
    m_off = 0
    for i in range(n):
        o = on[i]
        idx[m] = i
        off[m_off] = i
        m += 1 if o else 0
        m_off += 0 if o else 1
    c, v, gp, gq, dp, dq, hv = work[0], work[1], work[2], work[3], work[4], work[5], work[6]
    for ii in range(m):  # st[ii, jj] = dv_jj / dp_ii, st[m + ii, jj] = dv_jj / dq_ii
        i = idx[ii]
        for jj in range(m):
            j = idx[jj]
            st[ii, jj] = sens[j, i]
            st[m + ii, jj] = sens[j, n + i]
    for jj in range(m):  # the off devices' constant term -S x_off
        j = idx[jj]
        acc = 0.0
        for kk in range(m_off):
            i = off[kk]
            acc -= sens[j, i] * x_p[i] + sens[j, n + i] * x_q[i]
        c[jj] = acc
        v[jj] = v_k[j]
    fresh = g_known
    if g_known:
        for ii in range(m):
            gp[ii] = out_p[idx[ii]]
            gq[ii] = out_q[idx[ii]]
    for _ in range(inner_max):
        if not fresh:
            for ii in range(m):
                gp[ii], gq[ii] = _out(idx[ii], v[ii], tb, f)
        fresh = True
        for jj in range(m):
            hv[jj] = c[jj]
        for ii in range(m):
            i = idx[ii]
            ep = gp[ii] - x_p[i]
            eq = gq[ii] - x_q[i]
            for jj in range(m):
                hv[jj] += st[ii, jj] * ep + st[m + ii, jj] * eq
        err = 0.0
        for jj in range(m):
            hv[jj] = v[jj] - v_k[idx[jj]] - hv[jj]
            err = max(err, abs(hv[jj]))
        if err < tol:
            break
        for ii in range(m):
            pp, qq = _out(idx[ii], v[ii] + fd_h, tb, f)
            dp[ii] = (pp - gp[ii]) / fd_h
            dq[ii] = (qq - gq[ii]) / fd_h
        for jj in range(m):
            for ii in range(m):
                a[jj, ii] = (1.0 if ii == jj else 0.0) - st[ii, jj] * dp[ii] - st[m + ii, jj] * dq[ii]
        # Gaussian elimination with partial pivoting, solving a dv = hv in place
        # (the entries below the diagonal are not read again once their column is done)
        for cc in range(m):
            piv = cc
            best = abs(a[cc, cc])
            for j in range(cc + 1, m):
                t = abs(a[j, cc])
                if t > best:
                    best = t
                    piv = j
            if piv != cc:
                for k in range(cc, m):
                    t = a[cc, k]
                    a[cc, k] = a[piv, k]
                    a[piv, k] = t
                t = hv[cc]
                hv[cc] = hv[piv]
                hv[piv] = t
            d = a[cc, cc]
            if d == 0.0:
                continue
            inv = 1.0 / d
            for j in range(cc + 1, m):
                mult = a[j, cc] * inv
                for k in range(cc + 1, m):
                    a[j, k] -= mult * a[cc, k]
                hv[j] -= mult * hv[cc]
        for cc in range(m - 1, -1, -1):
            s = hv[cc]
            for k in range(cc + 1, m):
                s -= a[cc, k] * hv[k]
            hv[cc] = s / a[cc, cc] if a[cc, cc] != 0.0 else 0.0
        for jj in range(m):
            v[jj] -= hv[jj]
        fresh = False
    for i in range(n):
        out_p[i] = 0.0
        out_q[i] = 0.0
    for ii in range(m):
        i = idx[ii]
        if fresh:
            out_p[i] = gp[ii]
            out_q[i] = gq[ii]
        else:
            out_p[i], out_q[i] = _out(i, v[ii], tb, f)


@nb.njit(nogil=True, **OPTS)
def controlled_lanes(
    inj: Any, v0: Any, lu: Any, stop: Any, nodes: Any, post_br: Any, sn_mva: float, ref: Any,
    res: Any, eg: Any, status: Any, dev: Any, fleet: Any, ctl: Any, x: Any, ctl_out: Any,
) -> None:  # pragma: no cover
    """Controlled power flow of every lane (row) of ``inj``, ``K`` slots at a time (fewer
    when the batch has fewer lanes), serially.

    ``inj`` as :func:`solve_single` with element rows ``0..B-1`` and writable (B, n) power
    arrays (the device rows are overwritten by the set-points); ``dev`` = (kind (N,) 0 sgen /
    1 storage / 2 load, row (N,) in its table, loc (N,) PQ position of its node or ``-k - 2``
    for slack k, avail (B, N), on (B, N), scale (B, N), sens (N, 2N), tol_mva (B, N));
    ``fleet`` the DER kernels' function arrays; ``ctl`` = (max_outer, inner_max, inner_tol,
    fd_h, warm); ``x`` = (p, q, vm) (B, N): on entry the warm start (a nearby solution) when
    ``warm``, on exit the set-points and device voltages; ``ctl_out`` = (controls converged,
    power flows per lane). ``status`` = (fixed-point iterations, power flow converged): a
    lane whose power flow did not converge is left for the caller (Newton fallback)."""
    max_outer, inner_max, inner_tol, fd_h, warm = ctl
    kind, row, loc, avail, on, scale, sens, tol_mva = dev
    xp, xq, vm_dev = x
    ctl_conv, outer = ctl_out
    iters, conv = status
    tol, max_iter = stop
    tabs = (inj[0], inj[1], inj[2])
    use_zip, inv_sn, slack_vm = inj[3], inj[4], inj[5]
    node_comp, _, pq_nodes, slack_nodes, slack_v = nodes
    y_s, y_s_loc, units_at_slack = ref
    eg_pos, eg_p_out, eg_q_out, pl_sum_out = eg
    bus_n, f_n, t_n, y8, br_on, k_f2, k_t2 = post_br
    n_b, n = xp.shape
    n_pq = v0.shape[0]
    n_s = slack_v.shape[0]
    kw = min(K, n_b)  # slots
    # plane row of every node (and of the ground slot): PQ position, n_pq + slack, or the zero row
    n_node = node_comp.shape[0]
    n_ext = n_pq + n_s + 1
    row_of = np.full(n_node + 1, n_ext - 1, dtype=np.int64)
    for k in range(n_pq):
        row_of[pq_nodes[k]] = k
    for k in range(n_s):
        row_of[slack_nodes[k]] = n_pq + k
    post_rows = (row_of[bus_n], row_of[f_n], row_of[t_n], y8, br_on, k_f2, k_t2)
    scratch = post_scratch(np.int64(0), bus_n.shape[0], f_n.shape[0])
    n_br = f_n.shape[0]
    nz = n_pq if use_zip else 0
    buf, offs = _staggered(n_ext * kw, 10)  # ten planes, staggered against 4K aliasing
    buf[:] = 0.0
    pl = [buf[offs[p]:offs[p] + (n_pq if p < 6 else nz) * kw].reshape((n_pq if p < 6 else nz, kw))
          for p in range(2, 10)]
    vr = buf[offs[0]:offs[0] + n_ext * kw].reshape((n_ext, kw))
    vi = buf[offs[1]:offs[1] + n_ext * kw].reshape((n_ext, kw))
    work = (pl[0], pl[1])
    planes = (pl[2], pl[3], pl[4], pl[5], pl[6], pl[7])
    pr, pi, ir_, ii_, zr, zi = planes
    for k in range(n_pq):
        for j in range(kw):
            vr[k, j] = v0[k].real
            vi[k, j] = v0[k].imag
    for k in range(n_s):
        for j in range(kw):
            vr[n_pq + k, j] = slack_v[k].real
            vi[n_pq + k, j] = slack_v[k].imag
    lu_ri = (lu[0], lu[1], lu[2].real.copy(), lu[2].imag.copy(), lu[3], lu[4], lu[5].real.copy(),
             lu[5].imag.copy(), lu[6].real.copy(), lu[6].imag.copy())
    # slots: the lane in each (-1: none left), its fixed-point iterations in this power flow
    # and in all before, its damping and last residual
    lane = np.full(kw, -1, dtype=np.int64)
    pf_it = np.zeros(kw, dtype=np.int64)
    n_it = np.zeros(kw, dtype=np.int64)
    w = np.ones(kw)
    last = np.full(kw, math.inf)
    idle = np.zeros(kw, dtype=np.bool_)
    fp_ok = np.zeros(kw, dtype=np.bool_)
    fp_its = np.zeros(kw, dtype=np.int64)
    sp2max = np.zeros(n_pq)
    # the device Newton's work arrays; outputs G of every device
    nws = newton_work(n)
    tabs_dev = np.zeros((kw, 6, n))  # each slot's lane table (_lane_table)
    g_all_p = np.empty(n)
    g_all_q = np.empty(n)
    ss = np.empty(n_s, dtype=np.complex128)
    nxt = 0  # next lane to start
    first = True
    while True:
        changed = False
        for j in range(kw):
            release = first  # slot j takes the next lane
            newton = False  # the device Newton gives lane b's next set-points
            g_known = False  # ... with g_all_* the outputs at vm_dev[b] (just evaluated)
            b = lane[j]
            if not first:
                if b < 0:
                    continue
                pf_it[j] += 1
                if fp_ok[j]:  # the power flow converged: the outer step
                    n_it[j] += pf_it[j]
                    pf_it[j] = 0
                    outer[b] += 1
                    resid = 0.0
                    for i in range(n):
                        li = loc[i]
                        vm = math.sqrt(vr[li, j] ** 2 + vi[li, j] ** 2) if li >= 0 else abs(slack_v[-li - 2])
                        vm_dev[b, i] = vm
                        g_p, g_q = 0.0, 0.0
                        if on[b, i]:
                            g_p, g_q = _out(i, vm, tabs_dev[j], fleet)
                        g_all_p[i] = g_p  # G(v_k) for the device Newton
                        g_all_q[i] = g_q
                        r = max(abs(g_p - xp[b, i]), abs(g_q - xq[b, i])) / tol_mva[b, i]
                        if not r <= resid:
                            resid = r
                    finish = False
                    if resid <= 1.0:
                        ctl_conv[b] = True
                        finish = True
                    else:
                        if resid > last[j]:
                            w[j] *= 0.5
                        last[j] = resid
                        if outer[b] >= max_outer:
                            finish = True  # the set-points stay those of the last power flow
                        else:
                            newton = True
                            g_known = True
                    if finish:  # lane b's results straight from slot j's planes
                        conv[b] = True
                        iters[b] = n_it[j]
                        ss[:] = 0.0
                        for t in range(3):
                            rows_p, rows_q, p_t, q_t, loc_t, zip_t = tabs[t]
                            f_t = inv_sn if t == 1 else -inv_sn
                            rp = rows_p[b]
                            rq = rows_q[b]
                            for e in range(loc_t.shape[0]):
                                k = loc_t[e]
                                if k > -2:
                                    continue
                                pe = f_t * p_t[rp, e]
                                qe = f_t * q_t[rq, e]
                                if use_zip and t == 0:
                                    vm = slack_vm[-k - 2]
                                    zp, ip, zq, iq = zip_t[e, 0], zip_t[e, 1], zip_t[e, 2], zip_t[e, 3]
                                    pe *= 1.0 - zp - ip + ip * vm + zp * vm * vm
                                    qe *= 1.0 - zq - iq + iq * vm + zq * vm * vm
                                ss[-k - 2] += complex(pe, qe)
                        for e in range(eg_pos.shape[0]):
                            k = eg_pos[e]
                            su = 0j
                            if k >= 0:
                                acc = 0j
                                for cc in range(y_s_loc.shape[0]):
                                    lc = y_s_loc[cc]
                                    vv = complex(vr[lc, j], vi[lc, j]) if lc >= 0 else slack_v[-lc - 2]
                                    acc += y_s[k, cc] * vv
                                su = (slack_v[k] * np.conj(acc) - ss[k]) * (sn_mva / units_at_slack[k])
                            eg_p_out[b, e] = su.real
                            eg_q_out[b, e] = su.imag
                        post_nodes(b, vr, vi, j, post_rows, sn_mva, res, scratch)
                        pl_row = res[5][b]
                        tot = 0.0
                        for k in range(n_br):
                            tot += pl_row[k]
                        pl_sum_out[b] = tot
                        release = True
                elif idle[j] or pf_it[j] >= max_iter:  # diverged, or out of iterations
                    conv[b] = False
                    iters[b] = n_it[j] + pf_it[j]
                    release = True
                    for k in range(n_pq):  # the next lane starts flat
                        vr[k, j] = v0[k].real
                        vi[k, j] = v0[k].imag
                else:
                    continue
            if release:
                b = nxt
                nxt += 1
                if b >= n_b:
                    lane[j] = -1
                    continue
                lane[j] = b
                pf_it[j] = 0
                n_it[j] = 0
                w[j] = 1.0
                last[j] = math.inf
                outer[b] = 0
                ctl_conv[b] = False
                for i in range(n):
                    _lane_table(i, avail[b, i], scale[b, i], fleet, tabs_dev[j])
                newton = warm  # the devices against the network linearized at the start
                if not warm:  # the functions at a flat 1 pu
                    for i in range(n):
                        if on[b, i]:
                            xp[b, i], xq[b, i] = _out(i, 1.0, tabs_dev[j], fleet)
                        else:
                            xp[b, i] = 0.0
                            xq[b, i] = 0.0
            if newton:  # the devices against the network linearized at vm_dev[b]
                lane_newton(vm_dev[b], xp[b], xq[b], on[b], tabs_dev[j], sens, fleet, inner_max, inner_tol, fd_h,
                            g_all_p, g_all_q, nws, g_known)
                # new set-points: damped after a power flow, the start's at once
                for i in range(n):
                    if g_known:
                        xp[b, i] += w[j] * (g_all_p[i] - xp[b, i])
                        xq[b, i] += w[j] * (g_all_q[i] - xq[b, i])
                    else:
                        xp[b, i] = g_all_p[i]
                        xq[b, i] = g_all_q[i]
            # lane b's set-points into its element rows (generator convention: sgen
            # generation-positive, storage and load consumption-positive) and its injections
            # into slot j's column of the planes
            for i in range(n):
                tb = tabs[(kind[i] + 1) % 3]  # kinds sgen, storage, load; tables load, sgen, storage
                sg = 1.0 if kind[i] == 0 else -1.0
                tb[2][b, row[i]] = sg * xp[b, i]
                tb[3][b, row[i]] = sg * xq[b, i]
            for k in range(n_pq):
                pr[k, j] = 0.0
                pi[k, j] = 0.0
            if use_zip:
                for k in range(n_pq):
                    ir_[k, j] = 0.0
                    ii_[k, j] = 0.0
                    zr[k, j] = 0.0
                    zi[k, j] = 0.0
            for t in range(3):
                rows_p, rows_q, p_t, q_t, loc_t, zip_t = tabs[t]
                f_t = inv_sn if t == 1 else -inv_sn
                rp = rows_p[b]
                rq = rows_q[b]
                for e in range(loc_t.shape[0]):
                    k = loc_t[e]
                    if k < 0:
                        continue
                    pe = f_t * p_t[rp, e]
                    qe = f_t * q_t[rq, e]
                    if use_zip and t == 0:
                        zp, ip, zq, iq = zip_t[e, 0], zip_t[e, 1], zip_t[e, 2], zip_t[e, 3]
                        pr[k, j] += pe * (1.0 - zp - ip)
                        pi[k, j] -= qe * (1.0 - zq - iq)
                        ir_[k, j] += pe * ip
                        ii_[k, j] -= qe * iq
                        zr[k, j] += pe * zp
                        zi[k, j] -= qe * zq
                    else:
                        pr[k, j] += pe
                        pi[k, j] -= qe
            changed = True
        first = False
        busy = False
        for j in range(kw):
            idle[j] = lane[j] < 0  # not tracked by the sweep (keeps its last state)
            busy |= lane[j] >= 0
        if not busy:
            break
        if changed:  # each node's largest |S|^2 of the slots in use (the sweep's mismatch test)
            for k in range(n_pq):
                mx = 0.0
                for j in range(kw):
                    if not idle[j]:
                        mx = max(mx, pr[k, j] ** 2 + pi[k, j] ** 2)
                sp2max[k] = mx
        # one fixed-point iteration of every slot: fp_ok[j] converged, idle[j] set when diverged
        sweep_lanes(kw, vr, vi, planes, work, v0, lu_ri, use_zip, tol, np.int64(1), sp2max, idle, fp_ok, fp_its)
