"""The Z-bus fixed point of one scenario (and its node-level steps shared by the chunked and
contingency kernels), the warm start, and the per-scenario parallel kernel."""

from __future__ import annotations

import math
from typing import Any

import numba as nb
import numpy as np

from twin.grid._kernels.injections import scenario_injections
from twin.grid._kernels.opts import OPTS


@nb.njit(inline="always", **OPTS)
def mismatch(sp2: float, si2: float, sz2: float, m_old2: float, m_new2: float, d2: float,
              use_zip: bool) -> float:  # pragma: no cover
    """Power mismatch |dS| at a node after the update V_old -> V_new (``d2`` = |V_new -
    V_old|^2; ``sp2``, ``si2``, ``sz2`` squared magnitudes of the constant-power, -current and
    -impedance injections).

    The update solved Y V_new = I(V_old), so the mismatch of V_new is V_new conj(I(V_new) -
    I(V_old)): for constant power exactly |S_p| |dV| / |V_old|; the current and impedance
    parts add at most 2 |S_i| |dV| |V_new| / |V_old| and |S_z| |V_new| |dV|.
    """
    if use_zip:
        vm_new = math.sqrt(m_new2)
        return ((math.sqrt(sp2) + 2.0 * math.sqrt(si2) * vm_new) / math.sqrt(m_old2)
                + math.sqrt(sz2) * vm_new) * math.sqrt(d2)
    return math.sqrt(sp2 * d2 / m_old2)


@nb.njit(inline="always", **OPTS)
def step_v(v: Any, v0: Any, w: Any, n: int, sc: Any, si: Any, sz: Any, use_zip: bool,
            tol: float) -> Any:  # pragma: no cover
    """One fixed-point update ``v <- v0 + w`` in place; returns the largest change of a
    real or imaginary part (NaN propagates: ``not e <= err`` also catches it) and whether
    the power mismatch of the new voltages (``mismatch``) is below ``tol`` at every node
    (for constant power tested squared and times |V_old|^2: no root, no division)."""
    err = 0.0
    ok = True
    tol2 = tol * tol
    for k in range(n):
        vn = v0[k] + w[k]
        vk = v[k]
        d = vn - vk
        e = max(abs(d.real), abs(d.imag))
        if not e <= err:
            err = e
        sk = sc[k]
        sp2 = sk.real * sk.real + sk.imag * sk.imag
        d2 = d.real * d.real + d.imag * d.imag
        m2 = vk.real * vk.real + vk.imag * vk.imag
        if use_zip:
            si2 = si[k].real * si[k].real + si[k].imag * si[k].imag
            sz2 = sz[k].real * sz[k].real + sz[k].imag * sz[k].imag
            ok &= mismatch(sp2, si2, sz2, m2, vn.real * vn.real + vn.imag * vn.imag, d2, True) < tol
        else:
            ok &= sp2 * d2 <= tol2 * m2
        v[k] = vn
    return err, ok


@nb.njit(inline="always", **OPTS)
def node_current(vk: complex, sc: Any, si: Any, sz: Any, k: int, use_zip: bool) -> complex:  # pragma: no cover
    """Injected current conj(S(V)) / conj(V) = conj(S) V / |V|^2 at node k (``sc`` is
    conj(S) of the constant-power part; ``si``/``sz`` the constant-current/impedance parts)."""
    m2 = vk.real * vk.real + vk.imag * vk.imag
    sk = sc[k]
    if use_zip:
        vm = math.sqrt(m2)
        sk = sk + np.conj(si[k]) * vm + np.conj(sz[k]) * m2
    inv2 = 1.0 / m2
    return complex((sk.real * vk.real - sk.imag * vk.imag) * inv2,
                   (sk.real * vk.imag + sk.imag * vk.real) * inv2)


@nb.njit(**OPTS)
def _fp_scalar(
    s: Any, si: Any, sz: Any, use_zip: bool, v0: Any, lu: Any, tol: float, max_iter: int, v: Any,
) -> Any:  # pragma: no cover
    """Z-bus fixed point ``V <- V0 + Y_LL^-1 conj(S(V)/V)`` of one scenario, in place on the
    start voltages ``v``; returns (converged, iterations).

    Vectors are in the LU order of ``Y_LL`` (``lu`` = (l_ptr, l_idx, l_val, u_ptr, u_idx,
    u_val, u_dinv)), so the triangular solves need no permutation.
    """
    l_ptr, l_idx, l_val, u_ptr, u_idx, u_val, u_dinv = lu
    n = v.shape[0]
    sc = np.conj(s)
    w = np.empty(n, dtype=np.complex128)
    ok = False
    it = 0
    while it < max_iter:
        it += 1
        for k in range(n):
            w[k] = node_current(v[k], sc, si, sz, k, use_zip)
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
        err, done = step_v(v, v0, w, n, sc, si, sz, use_zip, tol)
        if done and err < 1e3:
            ok = True
            break
        if not err < 1e3:
            break
    return ok, it


@nb.njit(**OPTS)
def fixed_point_one(b: int, inj: Any, v0: Any, lu: Any, stop: Any, fp_out: Any) -> None:  # pragma: no cover
    """``_fp_scalar`` for scenario (row) b, from ``v0`` (``stop`` = (tol, max_iter),
    ``fp_out`` = (v_out, sched_out, iters, conv))."""
    use_zip = inj[3]
    tol, max_iter = stop
    v_out, sched_out, iters, conv = fp_out
    n = v_out.shape[1]
    n_s = sched_out.shape[1]
    s = np.empty(n, dtype=np.complex128)
    si = np.empty(n if use_zip else 0, dtype=np.complex128)
    sz = np.empty(n if use_zip else 0, dtype=np.complex128)
    ss = np.empty(n_s, dtype=np.complex128)
    scenario_injections(b, inj, s, si, sz, ss)
    for k in range(n_s):
        sched_out[b, k] = ss[k]
    v = v0.copy()
    ok, it = _fp_scalar(s, si, sz, use_zip, v0, lu, tol, max_iter, v)
    for k in range(n):
        v_out[b, k] = v[k]
    iters[b] = it
    conv[b] = ok


@nb.njit(**OPTS)
def mean_start(sample: Any, inj: Any, v0: Any, lu: Any) -> Any:  # pragma: no cover
    """Start voltages for a large group: the solution at the mean injections of the
    ``sample`` rows (``v0`` when that does not converge).

    Scenarios of a batch scatter around their mean, so starting from its solution instead
    of the no-load voltages ``v0`` saves about two of the fixed point's iterations.
    """
    use_zip = inj[3]
    slack_vm = inj[5]
    n = v0.shape[0]
    acc = np.zeros((3, n), dtype=np.complex128)
    s = np.empty(n, dtype=np.complex128)
    si = np.empty(n if use_zip else 0, dtype=np.complex128)
    sz = np.empty(n if use_zip else 0, dtype=np.complex128)
    ss = np.empty(slack_vm.shape[0], dtype=np.complex128)
    for b in sample:
        scenario_injections(b, inj, s, si, sz, ss)
        for k in range(n):
            acc[0, k] += s[k]
            if use_zip:
                acc[1, k] += si[k]
                acc[2, k] += sz[k]
    acc /= max(sample.shape[0], 1)
    v = v0.copy()
    ok, _ = _fp_scalar(acc[0], acc[1], acc[2], use_zip, v0, lu, 1e-6, np.int64(30), v)
    if not ok:
        return v0.copy()
    return v


@nb.njit(parallel=True, **OPTS)
def fixed_point_par(inj: Any, v0: Any, lu: Any, stop: Any, fp_out: Any) -> None:  # pragma: no cover
    """Fixed point for all scenarios, parallel over scenarios."""
    # numba passes only flat tuples into a prange body: ``inj`` is rebuilt inside
    load, sgen, storage, use_zip, inv_sn, slack_vm = inj
    for b in nb.prange(fp_out[0].shape[0]):
        fixed_point_one(np.int64(b), (load, sgen, storage, use_zip, inv_sn, slack_vm), v0, lu, stop, fp_out)
