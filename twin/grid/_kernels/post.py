"""Post-processing: bus voltages (magnitude, angle), branch flows, losses and loadings."""

from __future__ import annotations

import math
from typing import Any

import numba as nb
import numpy as np

from twin.grid._kernels.opts import OPTS

_ATAN_P = (-8.750608600031904122785e-1, -1.615753718733365076637e1, -7.500855792314704667340e1,
           -1.228866684490136173410e2, -6.485021904942025371773e1)
_ATAN_Q = (2.485846490142306297962e1, 1.650270098316988542046e2, 4.328810604912902668951e2,
           4.853903996359136964868e2, 1.945506571482613964425e2)
_MOREBITS = 6.123233995736765886130e-17


@nb.njit(inline="always", **OPTS)
def _atan2(y: float, x: float) -> float:  # pragma: no cover
    """``math.atan2`` without a libm call (Cephes ``atan``, within a few ulp), branch-free.

    Inlined in the post-processing loops, where the library call cost more than the flows.
    Two divisions (the argument, reduced to [-0.2, 0.66] in one step, and the rational
    approximation) instead of Cephes' three: the divider bounds the vectorized bus loop.
    """
    ax = abs(x)
    ay = abs(y)
    hi = max(ax, ay)
    lo = min(ax, ay)
    big = lo > 0.66 * hi  # atan(t) = pi/4 + atan((t - 1) / (t + 1)) for t = lo / hi
    num = lo - hi if big else lo
    den = lo + hi if big else hi
    z = num / den if hi > 0.0 else 0.0
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


@nb.njit(**OPTS)
def post_one(
    b: int, rows: Any, v_pq: Any, conv: Any, kill: Any, nodes: Any, post_br: Any, sn_mva: float,
    res: Any, scratch: Any,
) -> None:  # pragma: no cover
    """Bus voltages, branch flows (MW, Mvar) and loadings for scenario b of a group
    (``nodes`` = (node_comp, energized_node, pq_nodes, slack_nodes, slack_v); ``post_br``
    from ``branch_arrays``; ``res`` = (vm, va, energized, p_from, q_from, losses, loading)).

    Node voltages go to real/imaginary arrays with one extra zero node (``n_node``: open
    branch end, bus without node); ``post_nodes`` computes the results from them.
    ``scratch`` (from ``post_scratch``) is reused across the scenarios of a thread: on small
    nets its allocation cost more than the arithmetic.
    """
    node_comp, energized_node, pq_nodes, slack_nodes, slack_v = nodes
    n_node = node_comp.shape[0]
    vr, vi = scratch[0], scratch[1]
    vr[:] = 0.0
    vi[:] = 0.0
    for k in range(slack_nodes.shape[0]):
        vr[slack_nodes[k]] = slack_v[k].real
        vi[slack_nodes[k]] = slack_v[k].imag
    for k in range(pq_nodes.shape[0]):
        x = v_pq[b, k]
        vr[pq_nodes[k]] = x.real
        vi[pq_nodes[k]] = x.imag
    if kill.shape[1] > 0:
        for k in range(n_node):
            if kill[b, node_comp[k]]:
                vr[k] = 0.0
                vi[k] = 0.0
    if not conv[b]:
        for k in range(n_node):
            if energized_node[k]:
                vr[k] = np.nan
                vi[k] = np.nan
    post_nodes(rows[b], vr.reshape((n_node + 1, 1)), vi.reshape((n_node + 1, 1)), np.int64(0), post_br,
               sn_mva, res, scratch)


@nb.njit(**OPTS)
def post_nodes(
    r: int, src_r: Any, src_i: Any, lane: int, post_br: Any, sn_mva: float, res: Any, scratch: Any,
) -> None:  # pragma: no cover
    """Row r of the results from the node voltages in column ``lane`` of ``src_r``,
    ``src_i`` (rows indexed by ``bus_node``, ``br_f``, ``br_t`` of ``post_br`` = (bus_node,
    br_f, br_t, y8, br_on, k_f2, k_t2)).

    When ``pl_out`` has a column more than there are branches, it gets the row's total.

    The bus and branch loops gather from the node arrays once and then run branch-free over
    contiguous arrays, so LLVM vectorizes them (atan2, flows).
    """
    bus_node, br_f, br_t, y8, br_on, k_f2, k_t2 = post_br
    vm_out, va_out, en_out, pf_out, qf_out, pl_out, ld_out = res
    rad2deg = 180.0 / math.pi
    _, _, xr, xi, fr, fi, tr, ti = scratch
    n_bus = bus_node.shape[0]
    for i in range(n_bus):
        xr[i] = src_r[bus_node[i], lane]
        xi[i] = src_i[bus_node[i], lane]
    vm_row = vm_out[r]
    va_row = va_out[r]
    en_row = en_out[r]
    for i in range(n_bus):
        x = xr[i]
        y = xi[i]
        vm = math.sqrt(x * x + y * y)
        on = vm > 0.0 or vm != vm
        vm_row[i] = vm
        va_row[i] = _atan2(y, x) * rad2deg if on else 0.0
        en_row[i] = on
    n_br = br_f.shape[0]
    for k in range(n_br):
        fr[k] = src_r[br_f[k], lane]
        fi[k] = src_i[br_f[k], lane]
        tr[k] = src_r[br_t[k], lane]
        ti[k] = src_i[br_t[k], lane]
    pf_row = pf_out[r]
    qf_row = qf_out[r]
    pl_row = pl_out[r]
    ld_row = ld_out[r]
    for k in range(n_br):
        a_r = fr[k]
        a_i = fi[k]
        b_r = tr[k]
        b_i = ti[k]
        y0r, y0i, y1r, y1i = y8[0, k], y8[1, k], y8[2, k], y8[3, k]
        y2r, y2i, y3r, y3i = y8[4, k], y8[5, k], y8[6, k], y8[7, k]
        ifr = y0r * a_r - y0i * a_i + y1r * b_r - y1i * b_i  # I_f = y_ff V_f + y_ft V_t
        ifi = y0r * a_i + y0i * a_r + y1r * b_i + y1i * b_r
        itr = y2r * a_r - y2i * a_i + y3r * b_r - y3i * b_i  # I_t = y_tf V_f + y_tt V_t
        iti = y2r * a_i + y2i * a_r + y3r * b_i + y3i * b_r
        sfr = a_r * ifr + a_i * ifi  # S_f = V_f conj(I_f)
        sfi = a_i * ifr - a_r * ifi
        st_r = b_r * itr + b_i * iti
        a2 = (ifr * ifr + ifi * ifi) * k_f2[k]
        b2 = (itr * itr + iti * iti) * k_t2[k]
        on = br_on[k]
        pf_row[k] = sfr * sn_mva if on else 0.0
        qf_row[k] = sfi * sn_mva if on else 0.0
        pl_row[k] = (sfr + st_r) * sn_mva if on else 0.0
        ld = math.sqrt(max(a2, b2)) if a2 == a2 and b2 == b2 else np.nan
        ld_row[k] = ld if on else 0.0
    if pl_row.shape[0] > n_br:  # a row-sum column: total losses (four sums: no serial chain)
        t0 = t1 = t2 = t3 = 0.0
        k = 0
        while k + 4 <= n_br:
            t0 += pl_row[k]
            t1 += pl_row[k + 1]
            t2 += pl_row[k + 2]
            t3 += pl_row[k + 3]
            k += 4
        while k < n_br:
            t0 += pl_row[k]
            k += 1
        pl_row[pl_row.shape[0] - 1] = (t0 + t1) + (t2 + t3)


@nb.njit(**OPTS)
def branch_arrays(branches: Any, n_node: int) -> Any:  # pragma: no cover
    """Branch data ``branches`` = (bus_node, br_f, br_t, br_y, br_on, k_f, k_t) laid out for
    the post-processing kernels as (bus_n, f_n, t_n, y8, br_on, k_f2, k_t2): bus/branch-end
    nodes with -1 mapped to the ground slot ``n_node``, re/im of y_ff, y_ft, y_tf, y_tt as
    contiguous rows of ``y8``, and squared tap ratios."""
    bus_node, br_f, br_t, br_y, br_on, k_f, k_t = branches
    n_br = br_f.shape[0]
    y8 = np.empty((8, n_br))
    for k in range(n_br):
        for m in range(4):
            y8[2 * m, k] = br_y[k, m].real
            y8[2 * m + 1, k] = br_y[k, m].imag
    bus_n = np.where(bus_node >= 0, bus_node, n_node)
    f_n = np.where(br_f >= 0, br_f, n_node)
    t_n = np.where(br_t >= 0, br_t, n_node)
    return bus_n, f_n, t_n, y8, br_on, k_f * k_f, k_t * k_t


@nb.njit(**OPTS)
def post_scratch(n_node: int, n_bus: int, n_br: int) -> Any:  # pragma: no cover
    """Work arrays of ``post_one``: node voltages (with the ground slot), bus and branch-end
    gathers."""
    return (np.empty(n_node + 1), np.empty(n_node + 1), np.empty(n_bus), np.empty(n_bus),
            np.empty(n_br), np.empty(n_br), np.empty(n_br), np.empty(n_br))


_POST_CHUNK = 64  # scenarios per thread task of the post-processing


@nb.njit(parallel=True, **OPTS)
def post_par(
    rows: Any, v_pq: Any, conv: Any, kill: Any, nodes: Any, branches: Any, sn_mva: float, res: Any,
) -> None:  # pragma: no cover
    """Post-processing for all scenarios, parallel over scenarios (``branches`` as for
    ``branch_arrays``)."""
    n_node = nodes[0].shape[0]
    post_br = branch_arrays(branches, n_node)
    bus_n, f_n = post_br[0], post_br[1]
    n_b = v_pq.shape[0]
    for c in nb.prange((n_b + _POST_CHUNK - 1) // _POST_CHUNK):
        scratch = post_scratch(n_node, bus_n.shape[0], f_n.shape[0])
        for b in range(c * _POST_CHUNK, min(n_b, (c + 1) * _POST_CHUNK)):
            post_one(b, rows, v_pq, conv, kill, nodes, post_br, sn_mva, res, scratch)
