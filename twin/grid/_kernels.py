"""Numba kernels of the batch power flow (private; see :mod:`twin.grid.pf`).

Imported lazily by :mod:`twin.grid.pf` only for batches big enough to pay for numba
(its import and, on a fresh clone, its compile); small batches run the numpy path there.
Every kernel is ``cache=True``: compiled once per machine into ``__pycache__``. Importing
this module changes no process state: the threading layer and malloc tuning are the
caller's choice (:func:`twin.runtime.configure`); the kernels give the same results with any
numba threading layer.
"""

from __future__ import annotations

import math
from typing import Any

import numba as nb
import numpy as np

__all__ = [
    "K", "branch_arrays", "contingencies_par", "fixed_point_chunked", "fixed_point_par", "injections_rows",
    "mean_start", "post_par", "solve_single",
]

# error_model="numpy": a float division by zero gives inf/NaN instead of a Python-style
# ZeroDivisionError check, whose branch stopped LLVM from vectorizing every loop with a
# division (the currents conj(S/V), atan2); NaN/inf are caught by the convergence tests.
# fastmath "contract" only allows fused multiply-adds (no reassociation, NaN semantics kept).
_OPTS: dict[str, Any] = {"cache": True, "error_model": "numpy", "fastmath": {"contract"}}

# --------------------------------------------------------------------------- numba kernels
#
# Element "locations" per topology: loc >= 0 is a PQ position (in LU order), loc <= -2 the
# slack position -loc - 2, loc == -1 means the element injects nothing (out of service,
# de-energized, or a grid-forming unit acting as slack).


@nb.njit(**_OPTS)
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


@nb.njit(**_OPTS)
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


@nb.njit(inline="always", **_OPTS)
def _mismatch(sp2: float, si2: float, sz2: float, m_old2: float, m_new2: float, d2: float,
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


@nb.njit(inline="always", **_OPTS)
def _step_v(v: Any, v0: Any, w: Any, n: int, sc: Any, si: Any, sz: Any, use_zip: bool,
            tol: float) -> Any:  # pragma: no cover
    """One fixed-point update ``v <- v0 + w`` in place; returns the largest change of a
    real or imaginary part (NaN propagates: ``not e <= err`` also catches it) and whether
    the power mismatch of the new voltages (``_mismatch``) is below ``tol`` at every node
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
            ok &= _mismatch(sp2, si2, sz2, m2, vn.real * vn.real + vn.imag * vn.imag, d2, True) < tol
        else:
            ok &= sp2 * d2 <= tol2 * m2
        v[k] = vn
    return err, ok


@nb.njit(inline="always", **_OPTS)
def _node_current(vk: complex, sc: Any, si: Any, sz: Any, k: int, use_zip: bool) -> complex:  # pragma: no cover
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


@nb.njit(**_OPTS)
def _fp_scalar(
    s: Any, si: Any, sz: Any, use_zip: bool, v0: Any, l_ptr: Any, l_idx: Any, l_val: Any,
    u_ptr: Any, u_idx: Any, u_val: Any, u_dinv: Any, tol: float, max_iter: int, v: Any,
) -> Any:  # pragma: no cover
    """Z-bus fixed point ``V <- V0 + Y_LL^-1 conj(S(V)/V)`` of one scenario, in place on the
    start voltages ``v``; returns (converged, iterations).

    Vectors are in the LU order of ``Y_LL``, so the triangular solves need no permutation.
    """
    n = v.shape[0]
    sc = np.conj(s)
    w = np.empty(n, dtype=np.complex128)
    ok = False
    it = 0
    while it < max_iter:
        it += 1
        for k in range(n):
            w[k] = _node_current(v[k], sc, si, sz, k, use_zip)
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
        err, done = _step_v(v, v0, w, n, sc, si, sz, use_zip, tol)
        if done and err < 1e3:
            ok = True
            break
        if not err < 1e3:
            break
    return ok, it


@nb.njit(**_OPTS)
def _fixed_point_one(
    b: int,
    load: Any, sgen: Any, storage: Any, use_zip: bool, inv_sn: float, slack_vm: Any,
    v0: Any, l_ptr: Any, l_idx: Any, l_val: Any, u_ptr: Any, u_idx: Any, u_val: Any,
    u_dinv: Any, tol: float, max_iter: int, v_out: Any, sched_out: Any, iters: Any, conv: Any,
) -> None:  # pragma: no cover
    """``_fp_scalar`` for scenario (row) b, from ``v0``."""
    n = v_out.shape[1]
    n_s = sched_out.shape[1]
    s = np.empty(n, dtype=np.complex128)
    si = np.empty(n if use_zip else 0, dtype=np.complex128)
    sz = np.empty(n if use_zip else 0, dtype=np.complex128)
    ss = np.empty(n_s, dtype=np.complex128)
    _injections(b, load, sgen, storage, use_zip, inv_sn, slack_vm, s, si, sz, ss)
    for k in range(n_s):
        sched_out[b, k] = ss[k]
    v = v0.copy()
    ok, it = _fp_scalar(s, si, sz, use_zip, v0, l_ptr, l_idx, l_val, u_ptr, u_idx, u_val, u_dinv,
                        tol, max_iter, v)
    for k in range(n):
        v_out[b, k] = v[k]
    iters[b] = it
    conv[b] = ok


@nb.njit(**_OPTS)
def _mean_start(
    sample: Any, load: Any, sgen: Any, storage: Any, use_zip: bool, inv_sn: float,
    slack_vm: Any, v0: Any, l_ptr: Any, l_idx: Any, l_val: Any, u_ptr: Any, u_idx: Any,
    u_val: Any, u_dinv: Any,
) -> Any:  # pragma: no cover
    """Start voltages for a large group: the solution at the mean injections of the
    ``sample`` rows (``v0`` when that does not converge).

    Scenarios of a batch scatter around their mean, so starting from its solution instead
    of the no-load voltages ``v0`` saves about two of the fixed point's iterations.
    """
    n = v0.shape[0]
    acc = np.zeros((3, n), dtype=np.complex128)
    s = np.empty(n, dtype=np.complex128)
    si = np.empty(n if use_zip else 0, dtype=np.complex128)
    sz = np.empty(n if use_zip else 0, dtype=np.complex128)
    ss = np.empty(slack_vm.shape[0], dtype=np.complex128)
    for b in sample:
        _injections(b, load, sgen, storage, use_zip, inv_sn, slack_vm, s, si, sz, ss)
        for k in range(n):
            acc[0, k] += s[k]
            if use_zip:
                acc[1, k] += si[k]
                acc[2, k] += sz[k]
    acc /= max(sample.shape[0], 1)
    v = v0.copy()
    ok, _ = _fp_scalar(acc[0], acc[1], acc[2], use_zip, v0, l_ptr, l_idx, l_val, u_ptr, u_idx,
                       u_val, u_dinv, 1e-6, 30, v)
    if not ok:
        return v0.copy()
    return v


@nb.njit(parallel=True, **_OPTS)
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


@nb.njit(**_OPTS)
def _add_element_lanes(
    c: int, n_b: int, rows_p: Any, rows_q: Any, p: Any, q: Any, loc: Any, zip_: Any,
    use_zip: bool, factor: float, slack_vm: Any, pr: Any, pi: Any, ir_: Any, ii_: Any, zr: Any,
    zi: Any, sched_out: Any, bad: Any,
) -> None:  # pragma: no cover
    """``_add_element`` for the ``_K`` lanes of chunk c, into (node, lane) planes of conj(S).

    ``bad[j]`` turns NaN when a value of lane j's rows (any element, in service or not) is
    not finite: the caller's input check, fused into the one pass over the inputs.

    Lane by lane: each scenario's row of ``p`` and ``q`` is read front to back and scattered
    into the lane's column of the planes (in cache). Element by element, each value was a
    gather from ``_K`` rows of the (B, n) inputs, which the hardware prefetcher cannot
    follow: on a 1000-bus feeder that cost three times as much (about 13 against 4.5 µs
    per scenario).
    """
    for j in range(_K):
        b = min(c * _K + j, n_b - 1)
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
        for j in range(min(_K, n_b - c * _K)):
            b = c * _K + j
            pe = factor * p[rows_p[b], e]
            qe = factor * q[rows_q[b], e]
            if use_zip:
                zp, ip, zq, iq = zip_[e, 0], zip_[e, 1], zip_[e, 2], zip_[e, 3]
                pe *= 1.0 - zp - ip + ip * vm + zp * vm * vm
                qe *= 1.0 - zq - iq + iq * vm + zq * vm * vm
            sched_out[b, sk] += complex(pe, qe)


_K = 32  # scenarios per chunk (lanes) of the parallel kernel


@nb.njit(**_OPTS)
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


@nb.njit(parallel=True, **_OPTS)
def _fixed_point_chunked(
    load: Any, sgen: Any, storage: Any, use_zip: bool, inv_sn: float, slack_vm: Any,
    v0: Any, l_ptr: Any, l_idx: Any, l_val: Any, u_ptr: Any, u_idx: Any, u_val: Any,
    u_dinv: Any, tol: float, max_iter: int, v_out: Any, sched_out: Any, iters: Any, conv: Any,
    v_init: Any, post: bool, rows: Any, node_comp: Any, pq_nodes: Any, slack_nodes: Any,
    slack_v: Any, bus_node: Any, br_f: Any, br_t: Any, br_y: Any, br_on: Any,
    k_f: Any, k_t: Any, sn_mva: float, vm_out: Any, va_out: Any, en_out: Any, pf_out: Any,
    qf_out: Any, pl_out: Any, ld_out: Any, y_s: Any, y_s_loc: Any, units_at_slack: Any,
    s_unit_out: Any, finite_out: Any,
) -> None:  # pragma: no cover
    """Same fixed point as ``_fixed_point_one``, on chunks of ``_K`` scenarios (lanes) at once.

    State is stored as (node, lane) real/imaginary planes, so every inner loop runs over the
    ``_K`` lanes of a chunk: vectorized, and the latency of the triangular solves' dependency
    chains (one long chain on a radial feeder) is spread over ``_K`` independent lanes. An
    iteration is two passes over the nodes: forward (currents ``conj(S/V)`` and the L solve)
    and backward (U solve, voltage update and convergence check). Lanes past the end of the
    batch repeat the last scenario. Every lane starts from ``v_init`` (a warm start, e.g.
    the solution of the batch's mean injections; ``v0`` for a cold start). A lane has
    converged when the power mismatch of every node (``_mismatch``) is below ``tol``; for
    constant-power injections the test uses the chunk's largest |S| at the node (no plane to
    load in the backward pass), which can only make it stricter.

    With ``post`` the converged lanes are post-processed (``_post_nodes``) right after their
    chunk, straight from the lane planes while they are still in cache, and their ``v_out``
    rows are not written; the caller post-processes the others (after its Newton fallback).
    Only for groups without grid-forming units (no island can collapse after the solve).
    ``s_unit_out`` gets the power each reference unit supplies (MVA): the network injection
    at its slack node (slack rows ``y_s`` of Y, columns at PQ position ``y_s_loc`` or slack
    ``-loc - 2``) minus the node's scheduled injections.
    ``finite_out[b]`` is False when an input value of scenario b is NaN or infinite (the
    caller then reports where; the kernel reads every input once anyway).
    """
    n_b, n = v_out.shape
    n_node = node_comp.shape[0]
    y8, bus_n, f_n, t_n, k_f2, k_t2 = _branch_arrays(br_y, br_f, br_t, bus_node, k_f, k_t, n_node)
    n_s = sched_out.shape[1]
    n_chunk = (n_b + _K - 1) // _K
    tol2 = tol * tol
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
    lr = l_val.real.copy()
    li = l_val.imag.copy()
    ur = u_val.real.copy()
    ui = u_val.imag.copy()
    dr = u_dinv.real.copy()
    di = u_dinv.imag.copy()
    for c in nb.prange(n_chunk):
        # vr, vi: PQ rows, then the slack voltages and a zero row (post-processing gathers)
        buf, offs = _staggered(n_ext * _K, 10)
        pr = buf[offs[0]:offs[0] + n * _K].reshape((n, _K))
        pi = buf[offs[1]:offs[1] + n * _K].reshape((n, _K))
        vr = buf[offs[2]:offs[2] + n_ext * _K].reshape((n_ext, _K))
        vi = buf[offs[3]:offs[3] + n_ext * _K].reshape((n_ext, _K))
        for k in range(n_s_nodes):
            vr[n + k] = slack_v[k].real
            vi[n + k] = slack_v[k].imag
        vr[n_ext - 1] = 0.0
        vi[n_ext - 1] = 0.0
        wr = buf[offs[4]:offs[4] + n * _K].reshape((n, _K))
        wi = buf[offs[5]:offs[5] + n * _K].reshape((n, _K))
        nz = n * _K if use_zip else 0
        ir_ = buf[offs[6]:offs[6] + nz].reshape((nz // _K, _K))
        ii_ = buf[offs[7]:offs[7] + nz].reshape((nz // _K, _K))
        zr = buf[offs[8]:offs[8] + nz].reshape((nz // _K, _K))
        zi = buf[offs[9]:offs[9] + nz].reshape((nz // _K, _K))
        pr[:] = 0.0
        pi[:] = 0.0
        ir_[:] = 0.0
        ii_[:] = 0.0
        zr[:] = 0.0
        zi[:] = 0.0
        for j in range(_K):
            if c * _K + j < n_b:
                for k in range(n_s):
                    sched_out[c * _K + j, k] = 0.0
        bad = np.zeros(_K)
        _add_element_lanes(c, n_b, load[0], load[1], load[2], load[3], load[4], load[5], use_zip,
                           -inv_sn, slack_vm, pr, pi, ir_, ii_, zr, zi, sched_out, bad)
        _add_element_lanes(c, n_b, sgen[0], sgen[1], sgen[2], sgen[3], sgen[4], sgen[5], False,
                           inv_sn, slack_vm, pr, pi, ir_, ii_, zr, zi, sched_out, bad)
        _add_element_lanes(c, n_b, storage[0], storage[1], storage[2], storage[3], storage[4],
                           storage[5], False, -inv_sn, slack_vm, pr, pi, ir_, ii_, zr, zi, sched_out, bad)
        for j in range(min(_K, n_b - c * _K)):
            finite_out[c * _K + j] = bad[j] == 0.0
        sp2max = np.empty(n)
        for k in range(n):
            x = 0.0
            for j in range(_K):
                vr[k, j] = v_init[k].real
                vi[k, j] = v_init[k].imag
                x = max(x, pr[k, j] * pr[k, j] + pi[k, j] * pi[k, j])
            sp2max[k] = x
        err = np.empty(_K)
        mq = np.empty(_K)  # largest mismatch test value per lane (<= 0: converged)
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
            # backward: w <- U^-1 w, V <- V0 + w, largest squared change and mismatch test per lane
            err[:] = 0.0
            mq[:] = -np.inf
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
                s2max = sp2max[i]
                for j in range(_K):
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
                        q = _mismatch(sp2, ir_[i, j] * ir_[i, j] + ii_[i, j] * ii_[i, j],
                                      zr[i, j] * zr[i, j] + zi[i, j] * zi[i, j], m2,
                                      nr * nr + ni * ni, d2, True) - tol
                    else:  # _mismatch^2 - tol^2, times |V_old|^2 (no division, no root),
                        # with the chunk's largest |S_p| at the node: no plane to load
                        q = s2max * d2 - tol2 * m2
                    mq[j] = q if not q <= mq[j] else mq[j]
                    vr[i, j] = nr
                    vi[i, j] = ni
            all_done = True
            for j in range(_K):
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
        for j in range(min(_K, n_b - c * _K)):  # row by row: contiguous writes
            b = c * _K + j
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
            scratch = _post_scratch(0, bus_n.shape[0], f_n.shape[0])
            for j in range(min(_K, n_b - c * _K)):
                if ok[j]:
                    _post_nodes(rows[c * _K + j], vr, vi, j, bus_p, f_p, t_p, y8, br_on, k_f2,
                                k_t2, sn_mva, vm_out, va_out, en_out, pf_out, qf_out, pl_out,
                                ld_out, scratch)


@nb.njit(**_OPTS)
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


@nb.njit(inline="always", **_OPTS)
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


@nb.njit(**_OPTS)
def _post_one(
    b: int,
    rows: Any, v_pq: Any, conv: Any, kill: Any, node_comp: Any, energized_node: Any,
    pq_nodes: Any, slack_nodes: Any, slack_v: Any, bus_node: Any,
    br_f: Any, br_t: Any, y8: Any, br_on: Any, k_f2: Any, k_t2: Any, sn_mva: float,
    vm_out: Any, va_out: Any, en_out: Any, pf_out: Any, qf_out: Any, pl_out: Any, ld_out: Any,
    scratch: Any,
) -> None:  # pragma: no cover
    """Bus voltages, branch flows (MW, Mvar) and loadings for scenario b of a group.

    Node voltages go to real/imaginary arrays with one extra zero node (``n_node``: open
    branch end, bus without node); ``_post_nodes`` computes the results from them.
    ``scratch`` (from ``_post_scratch``) is reused across the scenarios of a thread: on small
    nets its allocation cost more than the arithmetic.
    """
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
    _post_nodes(rows[b], vr.reshape((n_node + 1, 1)), vi.reshape((n_node + 1, 1)), 0, bus_node,
                br_f, br_t, y8, br_on, k_f2, k_t2, sn_mva, vm_out, va_out, en_out, pf_out, qf_out,
                pl_out, ld_out, scratch)


@nb.njit(**_OPTS)
def _post_nodes(
    r: int, src_r: Any, src_i: Any, lane: int, bus_node: Any, br_f: Any, br_t: Any, y8: Any,
    br_on: Any, k_f2: Any, k_t2: Any, sn_mva: float, vm_out: Any, va_out: Any, en_out: Any,
    pf_out: Any, qf_out: Any, pl_out: Any, ld_out: Any, scratch: Any,
) -> None:  # pragma: no cover
    """Row r of the results from the node voltages in column ``lane`` of ``src_r``,
    ``src_i`` (rows indexed by ``bus_node``, ``br_f``, ``br_t``).

    When ``pl_out`` has a column more than there are branches, it gets the row's total.

    The bus and branch loops gather from the node arrays once and then run branch-free over
    contiguous arrays, so LLVM vectorizes them (atan2, flows).
    """
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


@nb.njit(**_OPTS)
def _branch_arrays(
    br_y: Any, br_f: Any, br_t: Any, bus_node: Any, k_f: Any, k_t: Any, n_node: int,
) -> Any:  # pragma: no cover
    """Branch data laid out for the post-processing kernels: re/im of y_ff, y_ft, y_tf,
    y_tt as contiguous rows, bus/branch-end nodes with -1 mapped to the ground slot
    ``n_node``, and squared tap ratios."""
    n_br = br_f.shape[0]
    y8 = np.empty((8, n_br))
    for k in range(n_br):
        for m in range(4):
            y8[2 * m, k] = br_y[k, m].real
            y8[2 * m + 1, k] = br_y[k, m].imag
    bus_n = np.where(bus_node >= 0, bus_node, n_node)
    f_n = np.where(br_f >= 0, br_f, n_node)
    t_n = np.where(br_t >= 0, br_t, n_node)
    return y8, bus_n, f_n, t_n, k_f * k_f, k_t * k_t


@nb.njit(**_OPTS)
def _post_scratch(n_node: int, n_bus: int, n_br: int) -> Any:  # pragma: no cover
    """Work arrays of ``_post_one``: node voltages (with the ground slot), bus and branch-end
    gathers."""
    return (np.empty(n_node + 1), np.empty(n_node + 1), np.empty(n_bus), np.empty(n_bus),
            np.empty(n_br), np.empty(n_br), np.empty(n_br), np.empty(n_br))


_POST_CHUNK = 64  # scenarios per thread task of the post-processing


@nb.njit(parallel=True, **_OPTS)
def _post_par(
    rows: Any, v_pq: Any, conv: Any, kill: Any, node_comp: Any, energized_node: Any,
    pq_nodes: Any, slack_nodes: Any, slack_v: Any, bus_node: Any,
    br_f: Any, br_t: Any, br_y: Any, br_on: Any, k_f: Any, k_t: Any, sn_mva: float,
    vm_out: Any, va_out: Any, en_out: Any, pf_out: Any, qf_out: Any, pl_out: Any, ld_out: Any,
) -> None:  # pragma: no cover
    """Post-processing for all scenarios, parallel over scenarios."""
    n_node = node_comp.shape[0]
    y8, bus_n, f_n, t_n, k_f2, k_t2 = _branch_arrays(br_y, br_f, br_t, bus_node, k_f, k_t, n_node)
    n_b = v_pq.shape[0]
    for c in nb.prange((n_b + _POST_CHUNK - 1) // _POST_CHUNK):
        scratch = _post_scratch(n_node, bus_n.shape[0], f_n.shape[0])
        for b in range(c * _POST_CHUNK, min(n_b, (c + 1) * _POST_CHUNK)):
            _post_one(
                b, rows, v_pq, conv, kill, node_comp, energized_node, pq_nodes, slack_nodes,
                slack_v, bus_n, f_n, t_n, y8, br_on, k_f2, k_t2, sn_mva, vm_out, va_out, en_out,
                pf_out, qf_out, pl_out, ld_out, scratch,
            )


@nb.njit(**_OPTS)
def _solve_single(
    load: Any, sgen: Any, storage: Any, use_zip: bool, inv_sn: float, slack_vm: Any,
    v0: Any, l_ptr: Any, l_idx: Any, l_val: Any, u_ptr: Any, u_idx: Any, u_val: Any,
    u_dinv: Any, tol: float, max_iter: int, node_comp: Any, energized_node: Any, pq_nodes: Any,
    slack_nodes: Any, slack_v: Any, bus_n: Any, f_n: Any, t_n: Any, y8: Any, br_on: Any,
    k_f2: Any, k_t2: Any, sn_mva: float, y_s: Any, y_s_loc: Any, units_at_slack: Any,
    vm_out: Any, va_out: Any, en_out: Any, pf_out: Any, qf_out: Any, pl_out: Any, ld_out: Any,
    eg_pos: Any, eg_p_out: Any, eg_q_out: Any, pl_sum_out: Any, iters: Any, conv: Any,
) -> None:  # pragma: no cover
    """One scenario, serially (no thread launch): fixed point, ext_grid power (``eg_pos``:
    slack position of each ext_grid, -1 when not acting) and, when converged, the
    post-processing and total losses. ``y8`` ... ``k_t2`` come from ``_branch_arrays``.
    A scenario that does not converge is left to the caller (Newton fallback)."""
    v_out = np.empty((1, v0.shape[0]), dtype=np.complex128)
    sched_out = np.empty((1, slack_v.shape[0]), dtype=np.complex128)
    s_unit = np.empty(slack_v.shape[0], dtype=np.complex128)
    _fixed_point_one(0, load, sgen, storage, use_zip, inv_sn, slack_vm, v0, l_ptr, l_idx,
                     l_val, u_ptr, u_idx, u_val, u_dinv, tol, max_iter, v_out, sched_out, iters,
                     conv)
    if not conv[0]:
        return
    for k in range(sched_out.shape[1]):
        acc = 0j
        for cc in range(y_s_loc.shape[0]):
            loc = y_s_loc[cc]
            acc += y_s[k, cc] * (v_out[0, loc] if loc >= 0 else slack_v[-loc - 2])
        s_unit[k] = (slack_v[k] * np.conj(acc) - sched_out[0, k]) * (sn_mva / units_at_slack[k])
    for e in range(eg_pos.shape[0]):
        su = s_unit[eg_pos[e]] if eg_pos[e] >= 0 else 0j
        eg_p_out[0, e] = su.real
        eg_q_out[0, e] = su.imag
    rows = np.zeros(1, dtype=np.int64)
    _post_one(0, rows, v_out, conv, np.zeros((1, 0), dtype=np.bool_), node_comp, energized_node,
              pq_nodes, slack_nodes, slack_v, bus_n, f_n, t_n, y8, br_on, k_f2, k_t2, sn_mva,
              vm_out, va_out, en_out, pf_out, qf_out, pl_out, ld_out,
              _post_scratch(node_comp.shape[0], bus_n.shape[0], f_n.shape[0]))
    tot = 0.0
    for k in range(pl_out.shape[1]):
        tot += pl_out[0, k]
    pl_sum_out[0] = tot


# --------------------------------------------------------------------------- contingencies
#
# A batch where (almost) every scenario has its own topology (an N-1 sweep) runs in one
# parallel call: per scenario, connected components by union-find, the admittance matrix
# assembled into the shared fill pattern of the full branch graph (in the net's global
# elimination order; nodes that are not PQ get an identity row), a numeric LU on that
# pattern, the Z-bus fixed point and the post-processing. No per-topology Python work.


@nb.njit(**_OPTS)
def _find(parent: Any, x: int) -> int:  # pragma: no cover
    while parent[x] != x:
        parent[x] = parent[parent[x]]
        x = parent[x]
    return x


@nb.njit(**_OPTS)
def _element_loc(node: Any, loc_of_node: Any) -> Any:  # pragma: no cover
    loc = np.empty(node.shape[0], dtype=np.int64)
    for e in range(node.shape[0]):
        loc[e] = loc_of_node[node[e]] if node[e] >= 0 else -1
    return loc


@nb.njit(**_OPTS)
def _contingency_one(
    b: int, br_on: Any, br_f: Any, br_t: Any, br_y: Any, pos: Any, idx4: Any,
    shunt_node: Any, shunt_y: Any, ent_r: Any, ent_c: Any, d_idx: Any, lk_ptr: Any, lk_idx: Any,
    tr_ptr: Any, tr_tgt: Any, tr_l: Any, tr_u: Any, l_ptr: Any, l_idx: Any, l_col: Any,
    u_ptr: Any, u_idx: Any, u_col: Any, slack_of_node: Any, slack_v: Any, slack_vm: Any,
    eg_node: Any, load: Any, sgen: Any, storage: Any, use_zip: bool, inv_sn: float,
    tol: float, max_iter: int, v_full: Any, en_node: Any, sched_s: Any, conv: Any, iters: Any,
) -> None:  # pragma: no cover
    """One contingency: components, factorisation, fixed point; full position-order voltages."""
    n = pos.shape[0]
    n_br = br_f.shape[0]
    on = br_on[b]
    parent = np.arange(n)
    for k in range(n_br):
        if on[k] and br_f[k] >= 0 and br_t[k] >= 0:
            ra = _find(parent, br_f[k])
            rb = _find(parent, br_t[k])
            if ra != rb:
                parent[ra] = rb
    has_ref = np.zeros(n, dtype=np.bool_)
    for e in range(eg_node.shape[0]):
        if eg_node[e] >= 0:
            has_ref[_find(parent, eg_node[e])] = True
    is_pq = np.zeros(n, dtype=np.bool_)  # position space
    loc_of_node = np.empty(n, dtype=np.int64)
    en = en_node[b]
    for nd in range(n):
        e_ = has_ref[_find(parent, nd)]
        en[nd] = e_
        if slack_of_node[nd] >= 0:
            loc_of_node[nd] = -slack_of_node[nd] - 2
        elif e_:
            loc_of_node[nd] = pos[nd]
            is_pq[pos[nd]] = True
        else:
            loc_of_node[nd] = -1
    # assemble Y into the pattern; slack voltages drive i_s into the PQ nodes
    vals = np.zeros(ent_r.shape[0], dtype=np.complex128)
    i_s = np.zeros(n, dtype=np.complex128)
    for k in range(n_br):
        if not on[k]:
            continue
        f = br_f[k]
        t = br_t[k]
        if f >= 0:
            vals[idx4[k, 0]] += br_y[k, 0]
        if t >= 0:
            vals[idx4[k, 3]] += br_y[k, 3]
        if f >= 0 and t >= 0:
            vals[idx4[k, 1]] += br_y[k, 1]
            vals[idx4[k, 2]] += br_y[k, 2]
            sf = slack_of_node[f]
            st = slack_of_node[t]
            if sf >= 0 and st < 0:
                i_s[pos[t]] += br_y[k, 2] * slack_v[sf]
            if st >= 0 and sf < 0:
                i_s[pos[f]] += br_y[k, 1] * slack_v[st]
    for k in range(shunt_node.shape[0]):
        if shunt_node[k] >= 0:
            vals[d_idx[pos[shunt_node[k]]]] += shunt_y[k]
    for q in range(ent_r.shape[0]):
        if not (is_pq[ent_r[q]] and is_pq[ent_c[q]]):
            vals[q] = 1.0 if ent_r[q] == ent_c[q] else 0.0
    # numeric LU on the shared pattern (right-looking, no pivoting)
    ok = True
    dinv = np.empty(n, dtype=np.complex128)
    for k in range(n):
        piv = vals[d_idx[k]]
        if not abs(piv) >= 1e-14:
            ok = False
            break
        inv = 1.0 / piv
        dinv[k] = inv
        for q in range(lk_ptr[k], lk_ptr[k + 1]):
            vals[lk_idx[q]] *= inv
        for q in range(tr_ptr[k], tr_ptr[k + 1]):
            vals[tr_tgt[q]] -= vals[tr_l[q]] * vals[tr_u[q]]
    n_s = slack_v.shape[0]
    ss = np.zeros(n_s, dtype=np.complex128)
    s = np.zeros(n, dtype=np.complex128)
    si = np.zeros(n if use_zip else 0, dtype=np.complex128)
    sz = np.zeros(n if use_zip else 0, dtype=np.complex128)
    _add_element(b, load[0], load[1], load[2], load[3], _element_loc(load[4], loc_of_node),
                 load[5], use_zip, -inv_sn, slack_vm, s, si, sz, ss)
    _add_element(b, sgen[0], sgen[1], sgen[2], sgen[3], _element_loc(sgen[4], loc_of_node),
                 sgen[5], False, inv_sn, slack_vm, s, si, sz, ss)
    _add_element(b, storage[0], storage[1], storage[2], storage[3],
                 _element_loc(storage[4], loc_of_node), storage[5], False, -inv_sn, slack_vm,
                 s, si, sz, ss)
    for k in range(n_s):
        sched_s[b, k] = ss[k]
    v = v_full[b]
    if not ok:
        conv[b] = False
        iters[b] = 0
        return
    # v0 = -Y_LL^-1 i_s
    w = np.empty(n, dtype=np.complex128)
    for i in range(n):
        w[i] = -i_s[i] if is_pq[i] else 0j
    _lu_solve(w, l_ptr, l_idx, l_col, u_ptr, u_idx, u_col, dinv, vals)
    v0 = w.copy()
    for i in range(n):
        v[i] = v0[i]
    sc = np.conj(s)
    it = 0
    n_pq = 0
    for k in range(n):
        n_pq += is_pq[k]
    good = n_pq == 0
    while it < max_iter and n_pq > 0:
        it += 1
        for k in range(n):
            if is_pq[k]:
                w[k] = _node_current(v[k], sc, si, sz, k, use_zip)
            else:
                w[k] = 0j
        _lu_solve(w, l_ptr, l_idx, l_col, u_ptr, u_idx, u_col, dinv, vals)
        err, done = _step_v(v, v0, w, n, sc, si, sz, use_zip, tol)
        if done and err < 1e3:
            good = True
            break
        if not err < 1e3:
            break
    for nd in range(n):
        if slack_of_node[nd] >= 0:
            v[pos[nd]] = slack_v[slack_of_node[nd]]
    conv[b] = good
    iters[b] = it


@nb.njit(**_OPTS)
def _lu_solve(
    w: Any, l_ptr: Any, l_idx: Any, l_col: Any, u_ptr: Any, u_idx: Any, u_col: Any, dinv: Any,
    vals: Any,
) -> None:  # pragma: no cover
    n = w.shape[0]
    for i in range(n):
        acc = w[i]
        for q in range(l_ptr[i], l_ptr[i + 1]):
            acc -= vals[l_idx[q]] * w[l_col[q]]
        w[i] = acc
    for i in range(n - 1, -1, -1):
        acc = w[i]
        for q in range(u_ptr[i], u_ptr[i + 1]):
            acc -= vals[u_idx[q]] * w[u_col[q]]
        w[i] = acc * dinv[i]


@nb.njit(**_OPTS)
def _eg_power(
    b: int, br_on: Any, br_f: Any, br_t: Any, br_y: Any, pos: Any, shunt_node: Any,
    shunt_y: Any, slack_of_node: Any, slack_v: Any, units_at_slack: Any, eg_slack: Any,
    sn_mva: float, v_full: Any, sched_s: Any, eg_out: Any,
) -> None:  # pragma: no cover
    """Supplied power of the ext_grids: network injection at the slack minus scheduled."""
    n_br = br_f.shape[0]
    n_s = slack_v.shape[0]
    v = v_full[b]
    on = br_on[b]
    cur = np.zeros(n_s, dtype=np.complex128)
    for k in range(n_br):
        if not on[k]:
            continue
        f = br_f[k]
        t = br_t[k]
        vf = v[pos[f]] if f >= 0 else 0j
        vt = v[pos[t]] if t >= 0 else 0j
        if f >= 0 and slack_of_node[f] >= 0:
            cur[slack_of_node[f]] += br_y[k, 0] * vf + br_y[k, 1] * vt
        if t >= 0 and slack_of_node[t] >= 0:
            cur[slack_of_node[t]] += br_y[k, 2] * vf + br_y[k, 3] * vt
    for k in range(shunt_node.shape[0]):
        nd = shunt_node[k]
        if nd >= 0 and slack_of_node[nd] >= 0:
            cur[slack_of_node[nd]] += shunt_y[k] * slack_v[slack_of_node[nd]]
    for e in range(eg_slack.shape[0]):
        sk = eg_slack[e]
        if sk >= 0:
            s_net = slack_v[sk] * np.conj(cur[sk])
            eg_out[b, e] = (s_net - sched_s[b, sk]) * (sn_mva / units_at_slack[sk])


@nb.njit(parallel=True, **_OPTS)
def _contingencies_par(
    br_on: Any, br_f: Any, br_t: Any, br_y: Any, pos: Any, node_of: Any, idx4: Any,
    shunt_node: Any, shunt_y: Any, ent_r: Any, ent_c: Any, d_idx: Any, lk_ptr: Any, lk_idx: Any,
    tr_ptr: Any, tr_tgt: Any, tr_l: Any, tr_u: Any, l_ptr: Any, l_idx: Any, l_col: Any,
    u_ptr: Any, u_idx: Any, u_col: Any, slack_of_node: Any, slack_nodes: Any, slack_v: Any,
    units_at_slack: Any, eg_node: Any, eg_slack: Any, load: Any, sgen: Any, storage: Any,
    use_zip: bool, inv_sn: float, tol: float, max_iter: int, bus_node: Any, k_f: Any, k_t: Any,
    sn_mva: float, v_full: Any, en_node: Any, sched_s: Any, conv: Any, iters: Any, eg_out: Any,
    vm_out: Any, va_out: Any, en_out: Any, pf_out: Any, qf_out: Any, pl_out: Any, ld_out: Any,
) -> None:  # pragma: no cover
    """Every scenario with its own topology (row b of ``br_on``), parallel over scenarios.

    Handles ext_grid slacks only (no grid-forming units). Non-converged scenarios keep
    ``conv`` False; the caller re-solves them on the per-topology path (Newton fallback).
    """
    n_node = pos.shape[0]
    y8, bus_n, f_n, t_n, k_f2, k_t2 = _branch_arrays(br_y, br_f, br_t, bus_node, k_f, k_t, n_node)
    n_b = br_on.shape[0]
    rows = np.arange(n_b)
    kill = np.zeros((n_b, 0), dtype=np.bool_)
    no_nodes = np.zeros(0, dtype=np.int64)
    no_v = np.zeros(0, dtype=np.complex128)
    slack_vm = np.abs(slack_v)
    for b in nb.prange(n_b):
        _contingency_one(
            b, br_on, br_f, br_t, br_y, pos, idx4, shunt_node, shunt_y, ent_r, ent_c, d_idx,
            lk_ptr, lk_idx, tr_ptr, tr_tgt, tr_l, tr_u, l_ptr, l_idx, l_col, u_ptr, u_idx,
            u_col, slack_of_node, slack_v, slack_vm, eg_node, load, sgen, storage, use_zip,
            inv_sn, tol, max_iter, v_full, en_node, sched_s, conv, iters,
        )
        if not conv[b]:
            continue
        _post_one(
            b, rows, v_full, conv, kill, pos, en_node[b], node_of, no_nodes, no_v, bus_n,
            f_n, t_n, y8, br_on[b], k_f2, k_t2, sn_mva, vm_out, va_out, en_out, pf_out,
            qf_out, pl_out, ld_out, _post_scratch(n_node, bus_n.shape[0], f_n.shape[0]),
        )
        _eg_power(b, br_on, br_f, br_t, br_y, pos, shunt_node, shunt_y, slack_of_node, slack_v,
                  units_at_slack, eg_slack, sn_mva, v_full, sched_s, eg_out)


K = _K
branch_arrays = _branch_arrays
mean_start = _mean_start
solve_single = _solve_single
contingencies_par = _contingencies_par
fixed_point_par = _fixed_point_par
fixed_point_chunked = _fixed_point_chunked
injections_rows = _injections_rows
post_par = _post_par
