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
The device Newton and the post-processing are the builds the batch path and the plain flow
compile anyway (no new compile in the suite); the rest of a lane's work is inline (a call
with dozens of arrays costs a reference-count update per array on each side, on counts the
threads that run blocks share)."""

from __future__ import annotations

import math
from typing import Any

import numba as nb
import numpy as np

from twin.grid._der_kernels import _target, newton_lane_into, newton_scratch
from twin.grid._kernels.chunked import _staggered, sweep_lanes
from twin.grid._kernels.opts import OPTS, K
from twin.grid._kernels.post import post_nodes, post_scratch


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
    nws = newton_scratch(n)
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
                            g_p, g_q = _target(i, vm, avail[b, i], scale[b, i], fleet)
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
                if warm:  # the devices against the network linearized at the start
                    newton = True
                else:  # the functions at a flat 1 pu
                    for i in range(n):
                        if on[b, i]:
                            xp[b, i], xq[b, i] = _target(i, 1.0, avail[b, i], scale[b, i], fleet)
                        else:
                            xp[b, i] = 0.0
                            xq[b, i] = 0.0
            if newton:  # the devices against the network linearized at vm_dev[b] (the shared build)
                newton_lane_into(vm_dev[b], xp[b], xq[b], avail[b], on[b], scale[b], sens, fleet, inner_max,
                                 inner_tol, fd_h, g_all_p, g_all_q, nws, g_known)
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
