"""numpy/SuperLU path of the batch power flow: the fixed point, injections and post-processing of
the numba kernels (:mod:`twin.grid._kernels`), vectorized over the scenarios of a group.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from twin.grid._pf_topology import Topology
from twin.grid._pf_types import BoolArray, ComplexArray, FloatArray, IntArray

__all__ = ["np_fixed_point", "np_injections", "np_post"]


# --------------------------------------------------------------------------- numpy path
#
# The same fixed point, injections and post-processing as the numba kernels
# (``twin.grid._kernels``), vectorized over the scenarios of a group with numpy and SuperLU.
# Used for small batches: no numba import or compile (cold start), and for B = 1 on feeders
# of a few hundred buses it is as fast as the compiled kernels.


def np_injections(
    elements: tuple[Any, ...], use_zip: bool, inv_sn: float, slack_vm: FloatArray, n_pq: int,
    sched_out: ComplexArray,
) -> ComplexArray:
    """Per-unit injections (generation-positive) of every scenario of a group.

    Returns ``(3, n_g, n_pq)``: constant-power, constant-current and constant-impedance parts
    at the PQ nodes (the latter two zero without ZIP loads); writes the scheduled injections
    at the slack nodes (ZIP parts evaluated at the slack voltage) into ``sched_out``.
    """
    n_g, n_s = sched_out.shape
    s3 = np.zeros((3, n_g, n_pq), dtype=np.complex128)
    sched_out[:] = 0.0
    for (rows_p, rows_q, p, q, loc, zip_), factor, zipped in zip(
        elements, (-inv_sn, inv_sn, -inv_sn), (use_zip, False, False), strict=True
    ):
        if loc.shape[0] == 0:
            continue
        pe = factor * p[rows_p]
        qe = factor * q[rows_q]
        at_pq = loc >= 0
        at_s = loc <= -2
        parts: tuple[Any, ...]
        if zipped:
            zp, ip, zq, iq = zip_[:, 0], zip_[:, 1], zip_[:, 2], zip_[:, 3]
            parts = (
                pe * (1.0 - zp - ip) + 1j * (qe * (1.0 - zq - iq)),
                pe * ip + 1j * (qe * iq),
                pe * zp + 1j * (qe * zq),
            )
            if at_s.any():
                vm = slack_vm[-loc[at_s] - 2]
                e = at_s
                s_at = (pe[:, e] * (1.0 - zp[e] - ip[e] + ip[e] * vm + zp[e] * vm * vm)
                        + 1j * (qe[:, e] * (1.0 - zq[e] - iq[e] + iq[e] * vm + zq[e] * vm * vm)))
                _scatter_add(sched_out, -loc[at_s] - 2, s_at, n_s)
        else:
            parts = (pe + 1j * qe,)
            if at_s.any():
                _scatter_add(sched_out, -loc[at_s] - 2, parts[0][:, at_s], n_s)
        if at_pq.any():
            for k, part in enumerate(parts):
                _scatter_add(s3[k], loc[at_pq], part[:, at_pq], n_pq)
    return s3


def _scatter_add(target: ComplexArray, cols: IntArray, values: ComplexArray, n: int) -> None:
    """``target[:, cols[e]] += values[:, e]`` summing duplicate columns."""
    if target.shape[0] == 1:
        target[0] += np.bincount(cols, weights=values[0].real, minlength=n) + 1j * np.bincount(
            cols, weights=values[0].imag, minlength=n
        )
    else:
        m = sp.csr_matrix((np.ones(cols.shape[0]), (np.arange(cols.shape[0]), cols)), shape=(cols.shape[0], n))
        target += np.asarray(m.T @ values.T).T


def np_fixed_point(
    topo: Topology, s3: ComplexArray, use_zip: bool, tol: float, max_iter: int,
    v_out: ComplexArray, iters: IntArray, conv: BoolArray,
) -> None:
    """Z-bus fixed point for all scenarios of a group (columns), with SuperLU solves.

    Same update and stopping rule as the numba kernels: per scenario, stop when the largest
    power mismatch at a node is below ``tol`` (pu); give up when a voltage change exceeds 1e3
    or is NaN (the Newton fallback then takes over).
    """
    n_g = v_out.shape[0]
    conv[:] = False
    if max_iter == 0 or v_out.shape[1] == 0:
        iters[:] = 0
        return
    sc = np.conj(s3[0]).T.copy()  # (n_pq, n_g)
    sci = np.conj(s3[1]).T.copy() if use_zip else None
    scz = np.conj(s3[2]).T.copy() if use_zip else None
    v0 = topo.v0[:, None]
    v = np.repeat(v0, n_g, axis=1)
    active = np.arange(n_g)
    for it in range(1, max_iter + 1):
        va = v[:, active]
        m2 = va.real * va.real + va.imag * va.imag
        sk = sc[:, active]
        if sci is not None and scz is not None:
            sk = sk + sci[:, active] * np.sqrt(m2) + scz[:, active] * m2
        w = topo.lu_obj.solve(np.asfortranarray(sk * va / m2))
        vn = v0 + w
        d = vn - va
        with np.errstate(invalid="ignore", divide="ignore"):
            err = np.maximum(np.abs(d.real), np.abs(d.imag)).max(axis=0)
            # power mismatch of the new voltages (see the kernels' _mismatch)
            ad = np.abs(d)
            mis = np.abs(sc[:, active]) * ad / np.sqrt(m2)
            if sci is not None and scz is not None:
                vm_new = np.abs(vn)
                mis += 2.0 * np.abs(sci[:, active]) * ad * vm_new / np.sqrt(m2)
                mis += np.abs(scz[:, active]) * vm_new * ad
            mis_max = np.where(np.isnan(mis).any(axis=0), np.nan, mis.max(axis=0))
        v[:, active] = vn
        iters[active] = it
        with np.errstate(invalid="ignore"):
            ok = (mis_max < tol) & (err < 1e3)
            stop = ok | ~(err < 1e3)
        conv[active[ok]] = True
        active = active[~stop]
        if active.size == 0:
            break
    v_out[:] = v.T


def np_post(
    rows: IntArray, v_pq: ComplexArray, conv: BoolArray, kill: BoolArray, nodes: tuple[Any, ...],
    branches: tuple[Any, ...], sn_mva: float, res: tuple[Any, ...],
) -> None:
    """Bus voltages, branch flows (MW, Mvar) and loadings: numpy twin of the kernels'
    ``post_par`` (same tuples: see :mod:`twin.grid._kernels`)."""
    node_comp, energized_node, pq_nodes, slack_nodes, slack_v = nodes
    bus_node, br_f, br_t, br_y, br_on, k_f, k_t = branches
    vm_out, va_out, en_out, pf_out, qf_out, pl_out, ld_out = res
    n_g = v_pq.shape[0]
    n_node = node_comp.shape[0]
    v = np.zeros((n_g, n_node + 1), dtype=np.complex128)  # last column: open end / no node
    v[:, slack_nodes] = slack_v
    v[:, pq_nodes] = v_pq
    if kill.shape[1] > 0:
        v[:, :n_node][kill[:, node_comp]] = 0.0
    bad = ~conv
    if bad.any():
        v[np.ix_(bad, np.flatnonzero(energized_node))] = complex(np.nan, np.nan)
    x = v[:, np.where(bus_node >= 0, bus_node, n_node)]
    vm = np.abs(x)
    with np.errstate(invalid="ignore"):
        on = (vm > 0.0) | np.isnan(vm)
    vm_out[rows] = vm
    va_out[rows] = np.where(on, np.angle(x, deg=True), 0.0)
    en_out[rows] = on
    vf = v[:, np.where(br_f >= 0, br_f, n_node)]
    vt = v[:, np.where(br_t >= 0, br_t, n_node)]
    i_f = br_y[:, 0] * vf + br_y[:, 1] * vt
    i_t = br_y[:, 2] * vf + br_y[:, 3] * vt
    sf = vf * np.conj(i_f)
    st = vt * np.conj(i_t)
    off = ~br_on
    a2 = (i_f.real**2 + i_f.imag**2) * (k_f * k_f)
    b2 = (i_t.real**2 + i_t.imag**2) * (k_t * k_t)
    with np.errstate(invalid="ignore"):
        ld = np.sqrt(np.maximum(a2, b2))
    for arr, val in (
        (pf_out, sf.real * sn_mva), (qf_out, sf.imag * sn_mva),
        (pl_out, (sf.real + st.real) * sn_mva), (ld_out, ld),
    ):
        val[:, off] = 0.0
        arr[rows, : val.shape[1]] = val
    if pl_out.shape[1] > br_on.shape[0]:  # the row-sum column (see ResultArrays)
        pl_out[rows, -1] = pl_out[rows, :-1].sum(axis=1)
