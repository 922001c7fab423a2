"""A few lanes of the controlled power flow in one serial call: per lane, the outer
quasi-Newton loop of :class:`twin.grid.controlled_pf.ControlledPowerFlow` around the Z-bus
fixed point, each power flow warm-started from the previous one's voltages (the first one of
a lane from the last lane's: the lanes of a batch are nearby cases), so a snapshot with a
controller in the loop runs no Python between its power flows."""

from __future__ import annotations

import math
from typing import Any

import numba as nb
import numpy as np

from twin.grid._der_kernels import _target, newton_lane_into, newton_scratch
from twin.grid._kernels.fixed_point import _fp_scalar
from twin.grid._kernels.injections import scenario_injections
from twin.grid._kernels.opts import OPTS
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


@nb.njit(nogil=True, **OPTS)
def controlled_lanes(
    inj: Any, v0: Any, lu: Any, stop: Any, nodes: Any, post_br: Any, sn_mva: float, ref: Any,
    res: Any, eg: Any, status: Any, dev: Any, fleet: Any, ctl: Any, x: Any, ctl_out: Any,
) -> None:  # pragma: no cover
    """Controlled power flow of every lane (row) of ``inj``, serially.

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
    v_out = np.empty((n_b, n_pq), dtype=np.complex128)
    sched_out = np.empty((n_b, slack_v.shape[0]), dtype=np.complex128)
    s = np.empty(n_pq, dtype=np.complex128)
    si = np.empty(n_pq if use_zip else 0, dtype=np.complex128)
    sz = np.empty(n_pq if use_zip else 0, dtype=np.complex128)
    ss = np.empty(slack_v.shape[0], dtype=np.complex128)
    v = np.empty(n_pq, dtype=np.complex128)
    new_p = np.empty(n)
    new_q = np.empty(n)
    fin = finish_scratch(n_b, nodes, post_br)
    nws = newton_scratch(n)
    for b in range(n_b):
        if warm:
            newton_lane_into(vm_dev[b], xp[b].copy(), xq[b].copy(), avail[b], on[b], scale[b], sens, fleet,
                             inner_max, inner_tol, fd_h, new_p, new_q, nws)
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
        if b == 0 or not conv[b - 1]:  # later lanes start from the last lane's voltages
            for k in range(n_pq):
                v[k] = v0[k]
        w = 1.0
        last = math.inf
        done = False
        ok = False
        n_it = 0
        k_out = 0
        for it in range(max_outer):
            _write_setpoints(b, inj, kind, row, xp, xq)
            scenario_injections(b, inj, s, si, sz, ss)
            ok, it_pf = _fp_scalar(s, si, sz, use_zip, v0, lu, tol, max_iter, v)
            n_it += it_pf
            k_out += 1
            if not ok:
                break
            resid = 0.0
            for i in range(n):
                li = loc[i]
                vm = abs(v[li]) if li >= 0 else abs(slack_v[-li - 2])
                vm_dev[b, i] = vm
                gp, gq = 0.0, 0.0
                if on[b, i]:
                    gp, gq = _target(i, vm, avail[b, i], scale[b, i], fleet)
                r = max(abs(gp - xp[b, i]), abs(gq - xq[b, i])) / tol_mva[b, i]
                if not r <= resid:
                    resid = r
            if resid <= 1.0:
                done = True
                break
            if resid > last:
                w *= 0.5
            last = resid
            if it == max_outer - 1:
                break  # the set-points stay those of the last power flow
            newton_lane_into(vm_dev[b], xp[b], xq[b], avail[b], on[b], scale[b], sens, fleet, inner_max,
                             inner_tol, fd_h, new_p, new_q, nws)
            for i in range(n):
                xp[b, i] += w * (new_p[i] - xp[b, i])
                xq[b, i] += w * (new_q[i] - xq[b, i])
        conv[b] = ok
        iters[b] = n_it
        ctl_conv[b] = done
        outer[b] = k_out
        if ok:
            for k in range(n_pq):
                v_out[b, k] = v[k]
            for k in range(ss.shape[0]):
                sched_out[b, k] = ss[k]
            finish_lane_into(b, v_out, sched_out, conv, nodes, post_br, sn_mva, ref, res, eg, fin)
