"""The controlled power flow's lanes in one serial call, ``K`` lanes at a time: per chunk of
lanes, the outer quasi-Newton loop of :class:`twin.grid.controlled_pf.ControlledPowerFlow`
around the Z-bus fixed point, with the fixed point's state in (node, lane) planes as in
:func:`twin.grid._kernels.chunked.fixed_point_chunked`, so the lanes of a chunk share its
vectorized inner loops. Every power flow of a lane is warm-started from the lane's previous
one (the first ones of a chunk from the last lane of the chunk before: the lanes of a batch
are nearby cases); a lane that has finished keeps its result while the others iterate."""

from __future__ import annotations

import math
from typing import Any

import numba as nb
import numpy as np

from twin.grid._der_kernels import _target, newton_lane_into, newton_scratch
from twin.grid._kernels.chunked import _staggered, sweep_lanes
from twin.grid._kernels.injections import scenario_injections
from twin.grid._kernels.opts import OPTS, K
from twin.grid._kernels.single import finish_lane_into, finish_scratch


@nb.njit(**OPTS)
def _write_setpoints(b: int, inj: Any, kind: Any, row: Any, xp: Any, xq: Any) -> None:  # pragma: no cover
    """Device set-points (generator convention) into the element rows of lane b (sgen
    generation-positive, storage and load consumption-positive)."""
    load, sgen, storage = inj[0], inj[1], inj[2]
    for i in range(kind.shape[0]):
        r = row[i]
        if kind[i] == 0:
            sgen[2][b, r] = xp[b, i]
            sgen[3][b, r] = xq[b, i]
        elif kind[i] == 1:
            storage[2][b, r] = -xp[b, i]
            storage[3][b, r] = -xq[b, i]
        else:
            load[2][b, r] = -xp[b, i]
            load[3][b, r] = -xq[b, i]


@nb.njit(**OPTS)
def _lane_planes(j: int, s: Any, si: Any, sz: Any, use_zip: bool, planes: Any) -> None:  # pragma: no cover
    """Lane j's column of the injection planes: conj(S) of the constant-power, -current and
    -impedance parts (``planes`` = (pr, pi, ir, ii, zr, zi))."""
    pr, pi, ir_, ii_, zr, zi = planes
    for k in range(s.shape[0]):
        pr[k, j] = s[k].real
        pi[k, j] = -s[k].imag
    if use_zip:
        for k in range(s.shape[0]):
            ir_[k, j] = si[k].real
            ii_[k, j] = -si[k].imag
            zr[k, j] = sz[k].real
            zi[k, j] = -sz[k].imag


@nb.njit(nogil=True, **OPTS)
def controlled_lanes(
    inj: Any, v0: Any, lu: Any, stop: Any, nodes: Any, post_br: Any, sn_mva: float, ref: Any,
    res: Any, eg: Any, status: Any, dev: Any, fleet: Any, ctl: Any, x: Any, ctl_out: Any,
) -> None:  # pragma: no cover
    """Controlled power flow of every lane (row) of ``inj``, ``K`` lanes at a time (fewer
    when the batch has fewer), serially.

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
    use_zip = inj[3]
    slack_v = nodes[4]
    n_b, n = xp.shape
    n_pq = v0.shape[0]
    n_s = slack_v.shape[0]
    kw = min(K, n_b)  # lanes per chunk
    v_out = np.empty((n_b, n_pq), dtype=np.complex128)
    sched_out = np.empty((n_b, n_s), dtype=np.complex128)
    s = np.empty(n_pq, dtype=np.complex128)
    si = np.empty(n_pq if use_zip else 0, dtype=np.complex128)
    sz = np.empty(n_pq if use_zip else 0, dtype=np.complex128)
    ss = np.empty(n_s, dtype=np.complex128)
    new_p = np.empty(n)
    new_q = np.empty(n)
    fin = finish_scratch(n_b, nodes, post_br)
    nws = newton_scratch(n)
    nz = n_pq if use_zip else 0
    buf, offs = _staggered(n_pq * kw, 10)  # ten planes, staggered against 4K aliasing
    buf[:] = 0.0
    pl = [buf[offs[p]:offs[p] + (n_pq if p < 6 else nz) * kw].reshape((n_pq if p < 6 else nz, kw))
          for p in range(10)]
    vr, vi = pl[0], pl[1]
    work = (pl[2], pl[3])
    planes = (pl[4], pl[5], pl[6], pl[7], pl[8], pl[9])
    lu_ri = (lu[0], lu[1], lu[2].real.copy(), lu[2].imag.copy(), lu[3], lu[4], lu[5].real.copy(),
             lu[5].imag.copy(), lu[6].real.copy(), lu[6].imag.copy())
    v_start = v0.copy()
    fp_done = np.zeros(kw, dtype=np.bool_)
    fp_ok = np.zeros(kw, dtype=np.bool_)
    fp_its = np.zeros(kw, dtype=np.int64)
    sp2max = np.empty(n_pq)
    w = np.empty(kw)
    last = np.empty(kw)
    frozen = np.empty(kw, dtype=np.bool_)  # lane finished (or past the batch's end)
    n_it = np.zeros(kw, dtype=np.int64)
    for c0 in range(0, n_b, kw):
        nl = min(kw, n_b - c0)
        for j in range(kw):
            frozen[j] = j >= nl
            w[j] = 1.0
            last[j] = math.inf
            n_it[j] = 0
        for j in range(nl):
            b = c0 + j
            outer[b] = 0
            ctl_conv[b] = False
            if warm:
                newton_lane_into(vm_dev[b], xp[b].copy(), xq[b].copy(), avail[b], on[b], scale[b], sens, fleet,
                                 inner_max, inner_tol, fd_h, new_p, new_q, nws, np.bool_(False))
                for i in range(n):
                    xp[b, i] = new_p[i]
                    xq[b, i] = new_q[i]
            else:  # the functions at a flat 1 pu
                for i in range(n):
                    if on[b, i]:
                        xp[b, i], xq[b, i] = _target(i, 1.0, avail[b, i], scale[b, i], fleet)
                    else:
                        xp[b, i] = 0.0
                        xq[b, i] = 0.0
        for k in range(n_pq):
            for j in range(kw):
                vr[k, j] = v_start[k].real
                vi[k, j] = v_start[k].imag
        for it in range(max_outer):
            for j in range(nl):
                if not frozen[j]:
                    b = c0 + j
                    _write_setpoints(b, inj, kind, row, xp, xq)
                    scenario_injections(b, inj, s, si, sz, ss)
                    _lane_planes(j, s, si, sz, use_zip, planes)
                    for k in range(n_s):
                        sched_out[b, k] = ss[k]
            for k in range(n_pq):
                m = 0.0
                for j in range(kw):
                    if not frozen[j]:
                        m = max(m, planes[0][k, j] ** 2 + planes[1][k, j] ** 2)
                sp2max[k] = m
            for j in range(kw):
                fp_done[j] = frozen[j]
            sweep_lanes(kw, vr, vi, planes, work, v0, lu_ri, use_zip, tol, max_iter, sp2max, fp_done, fp_ok,
                        fp_its)
            for j in range(nl):
                if frozen[j]:
                    continue
                b = c0 + j
                n_it[j] += fp_its[j]
                outer[b] += 1
                finish = False
                if not fp_ok[j]:
                    conv[b] = False
                    iters[b] = n_it[j]
                    frozen[j] = True
                    continue
                resid = 0.0
                for i in range(n):
                    li = loc[i]
                    vm = math.sqrt(vr[li, j] ** 2 + vi[li, j] ** 2) if li >= 0 else abs(slack_v[-li - 2])
                    vm_dev[b, i] = vm
                    gp, gq = 0.0, 0.0
                    if on[b, i]:
                        gp, gq = _target(i, vm, avail[b, i], scale[b, i], fleet)
                    new_p[i] = gp  # G(v_k) for the device Newton
                    new_q[i] = gq
                    r = max(abs(gp - xp[b, i]), abs(gq - xq[b, i])) / tol_mva[b, i]
                    if not r <= resid:
                        resid = r
                if resid <= 1.0:
                    ctl_conv[b] = True
                    finish = True
                else:
                    if resid > last[j]:
                        w[j] *= 0.5
                    last[j] = resid
                    if it == max_outer - 1:
                        finish = True  # the set-points stay those of the last power flow
                    else:
                        newton_lane_into(vm_dev[b], xp[b], xq[b], avail[b], on[b], scale[b], sens, fleet,
                                         inner_max, inner_tol, fd_h, new_p, new_q, nws, np.bool_(True))
                        for i in range(n):
                            xp[b, i] += w[j] * (new_p[i] - xp[b, i])
                            xq[b, i] += w[j] * (new_q[i] - xq[b, i])
                if finish:
                    frozen[j] = True
                    conv[b] = True
                    iters[b] = n_it[j]
                    for k in range(n_pq):
                        v_out[b, k] = complex(vr[k, j], vi[k, j])
                    finish_lane_into(b, v_out, sched_out, conv, nodes, post_br, sn_mva, ref, res, eg, fin)
                    for k in range(n_pq):
                        v_start[k] = v_out[b, k]
            all_frozen = True
            for j in range(kw):
                all_frozen &= frozen[j]
            if all_frozen:
                break
