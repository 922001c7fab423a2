"""numba kernels of the controlled power flow's device-space work (parallel over lanes).

Same arithmetic as :class:`twin.grid.der_functions.DerFleet` (``targets``: volt-watt, the
reactive-power mode, the apparent-power limit) and the inner Newton of
:meth:`twin.grid.controlled_pf.ControlledPowerFlow._device_newton`, for the case without
frequency-watt input and without response-time lag (what hosting studies and snapshots use);
the numpy path covers the rest. Compiled on first use (cached on disk).
"""

from __future__ import annotations

import math
import types
from typing import Any

import numpy as np
from numba import njit, prange

# as the power flow's kernels: no Python-style division checks (their branches kept LLVM from
# optimizing the curve evaluations; measured ~3x faster device work), fused multiply-adds only;
# the curve evaluation is inlined into the lane loops
_OPTS: dict[str, Any] = {"cache": True, "error_model": "numpy", "fastmath": {"contract"}}


@njit(inline="always", **_OPTS)
def _pw(x: float, cv: np.ndarray, i: int, c: int) -> float:
    """Curve c of device i (``curves`` of :meth:`DerFleet.kernel_arrays`) at x."""
    k_n = cv.shape[3]
    if x <= cv[i, c, 0, 0]:
        return float(cv[i, c, 1, 0])
    for k in range(k_n - 1):
        if x <= cv[i, c, 0, k + 1]:
            dx = cv[i, c, 0, k + 1] - cv[i, c, 0, k]
            if dx <= 0.0:
                return float(cv[i, c, 1, k + 1])
            return float(cv[i, c, 1, k] + (cv[i, c, 1, k + 1] - cv[i, c, 1, k]) * (x - cv[i, c, 0, k]) / dx)
    return float(cv[i, c, 1, k_n - 1])


@njit(inline="always", **_OPTS)
def _target(i: int, v: float, p_av: float, sc: float, f: tuple) -> tuple[float, float]:  # type: ignore[type-arg]
    """Output (p, q) of device i at voltage v (``f`` = (par, curves) of :meth:`DerFleet.kernel_arrays`)."""
    par, cv = f
    pr = par[i, 1] * sc
    sr = par[i, 0] * sc
    p = p_av
    p_min = par[i, 3] * pr
    if par[i, 8] != 0.0:  # volt-watt
        cap = _pw(v, cv, i, 2) * pr
        p = max(min(p, cap), p_min)
    m = par[i, 5]
    q = 0.0
    if m == 1.0:  # volt-var
        q = _pw(v, cv, i, 0) * sr
    elif m == 2.0:  # watt-var
        q = _pw(p / pr, cv, i, 1) * sr
    elif m == 3.0:  # constant power factor
        q = abs(p) * par[i, 6]
    elif m == 4.0:  # constant var
        q = par[i, 7] * sr
    qc = par[i, 2] * sr
    q = min(max(q, -qc), qc)
    if par[i, 4] != 0.0:  # reactive priority
        q = min(max(q, -sr), sr)
        room = math.sqrt(max(sr * sr - q * q, 0.0))
        p = min(max(p, -room), room)
    else:
        p = min(max(p, -sr), sr)
        room = math.sqrt(max(sr * sr - p * p, 0.0))
        q = min(max(q, -room), room)
    return p, q


@njit(parallel=True, **_OPTS)
def targets(vm: np.ndarray, avail: np.ndarray, on: np.ndarray, scale: np.ndarray, f: tuple,  # type: ignore[type-arg]
            out_p: np.ndarray, out_q: np.ndarray) -> None:
    """Device outputs (generator convention, MW/Mvar) of every lane at voltages ``vm``."""
    b, n = vm.shape
    for r in prange(b):
        for i in range(n):
            if on[r, i]:
                p, q = _target(i, vm[r, i], avail[r, i], scale[r, i], f)
                out_p[r, i] = p
                out_q[r, i] = q
            else:
                out_p[r, i] = 0.0
                out_q[r, i] = 0.0


@njit(**_OPTS)
def newton_lane(v_k: np.ndarray, x_p: np.ndarray, x_q: np.ndarray, avail: np.ndarray, on: np.ndarray,
                scale: np.ndarray, sens: np.ndarray, f: tuple, inner_max: int, tol: float,  # type: ignore[type-arg]
                fd_h: float, out_p: np.ndarray, out_q: np.ndarray) -> None:
    """One lane (1-D arrays over the devices): solve ``v = v_k + S (G(v) - x)`` by Newton
    (dense LU with partial pivoting), then write ``G(v)``.

    Only the devices in service take part (an off device outputs nothing, so its voltage
    enters no equation; its set-point ``x``, normally 0, is a constant term): on a hosting
    study's lanes that is the placement's PV, not every candidate bus."""
    newton_lane_into(v_k, x_p, x_q, avail, on, scale, sens, f, inner_max, tol, fd_h, out_p, out_q,
                     newton_scratch(v_k.shape[0]), np.bool_(False))


@njit(**_OPTS)
def newton_scratch(n: int) -> tuple:  # type: ignore[type-arg]
    """Work arrays of :func:`newton_lane_into` for ``n`` devices (reused across lanes)."""
    return np.empty(n, dtype=np.int64), np.empty((7, n)), np.empty((n, n))


@njit(**_OPTS)
def newton_lane_into(v_k: np.ndarray, x_p: np.ndarray, x_q: np.ndarray, avail: np.ndarray, on: np.ndarray,
                     scale: np.ndarray, sens: np.ndarray, f: tuple, inner_max: int, tol: float,  # type: ignore[type-arg]
                     fd_h: float, out_p: np.ndarray, out_q: np.ndarray, scratch: tuple,  # type: ignore[type-arg]
                     g_known: bool) -> None:
    """:func:`newton_lane` with its work arrays given (``newton_scratch``). With ``g_known``
    ``out_p``, ``out_q`` hold on entry the in-service devices' outputs ``G(v_k)`` (a caller
    that has just tested its residual there): not evaluated again. The outputs ``G(v)`` of
    the last residual test are reused as the result (the same numbers)."""
    n = v_k.shape[0]
    idx, work, a = scratch
    m = 0
    for i in range(n):
        if on[i]:
            idx[m] = i
            m += 1
    c, v, gp, gq, dp, dq, hv = work[0], work[1], work[2], work[3], work[4], work[5], work[6]
    c[:] = 0.0  # the off devices' constant term -S x_off
    if m < n:
        for jj in range(m):
            j = idx[jj]
            acc = 0.0
            for i in range(n):
                if not on[i]:
                    acc -= sens[j, i] * x_p[i] + sens[j, n + i] * x_q[i]
            c[jj] = acc
    for jj in range(m):
        v[jj] = v_k[idx[jj]]
    fresh = g_known  # gp, gq are the outputs at the present v
    if g_known:
        for ii in range(m):
            gp[ii] = out_p[idx[ii]]
            gq[ii] = out_q[idx[ii]]
    for _ in range(inner_max):
        if not fresh:
            for ii in range(m):
                i = idx[ii]
                gp[ii], gq[ii] = _target(i, v[ii], avail[i], scale[i], f)
        fresh = True
        err = 0.0
        for jj in range(m):
            j = idx[jj]
            s = c[jj]
            for ii in range(m):
                i = idx[ii]
                s += sens[j, i] * (gp[ii] - x_p[i]) + sens[j, n + i] * (gq[ii] - x_q[i])
            hv[jj] = v[jj] - v_k[j] - s
            err = max(err, abs(hv[jj]))
        if err < tol:
            break
        for ii in range(m):
            i = idx[ii]
            pp, qq = _target(i, v[ii] + fd_h, avail[i], scale[i], f)
            dp[ii] = (pp - gp[ii]) / fd_h
            dq[ii] = (qq - gq[ii]) / fd_h
        for jj in range(m):
            j = idx[jj]
            for ii in range(m):
                i = idx[ii]
                a[jj, ii] = (1.0 if ii == jj else 0.0) - sens[j, i] * dp[ii] - sens[j, n + i] * dq[ii]
        # Gaussian elimination with partial pivoting, solving a dv = hv in place
        for cc in range(m):
            piv = cc
            for j in range(cc + 1, m):
                if abs(a[j, cc]) > abs(a[piv, cc]):
                    piv = j
            if piv != cc:
                for k in range(m):
                    t = a[cc, k]
                    a[cc, k] = a[piv, k]
                    a[piv, k] = t
                t = hv[cc]
                hv[cc] = hv[piv]
                hv[piv] = t
            d = a[cc, cc]
            if d == 0.0:
                continue
            for j in range(cc + 1, m):
                mult = a[j, cc] / d
                if mult != 0.0:
                    for k in range(cc, m):
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
            out_p[i], out_q[i] = _target(i, v[ii], avail[i], scale[i], f)


@njit(parallel=True, **_OPTS)
def device_newton(v_k: np.ndarray, x: np.ndarray, avail: np.ndarray, on: np.ndarray, scale: np.ndarray,
                  sens: np.ndarray, f: tuple, inner_max: int, tol: float, fd_h: float,  # type: ignore[type-arg]
                  out_p: np.ndarray, out_q: np.ndarray) -> None:
    """Per lane: :func:`newton_lane` (``x`` = (B, 2N): P then Q set-points)."""
    b, n = v_k.shape
    for r in prange(b):
        newton_lane(v_k[r], x[r, :n], x[r, n:], avail[r], on[r], scale[r], sens, f, inner_max, tol, fd_h,
                    out_p[r], out_q[r])


# the same kernels without threads: small batches (a snapshot, a few lanes) where a parallel
# launch costs more than the work, the more so on a loaded machine. Each under its own name:
# numba's disk cache names a kernel by module, qualified name and line, and its index keys
# hold neither ``parallel`` nor the dispatcher, so a plain copy of ``targets`` loaded the
# parallel build from the cache (or the parallel kernel the serial build), whichever compiled first.


def _renamed(func: Any, name: str) -> Any:
    copy = types.FunctionType(func.__code__, func.__globals__, name, func.__defaults__, func.__closure__)
    copy.__qualname__ = name
    copy.__doc__ = func.__doc__
    return copy


targets_ser = njit(**_OPTS)(_renamed(targets.py_func, "targets_ser"))
device_newton_ser = njit(**_OPTS)(_renamed(device_newton.py_func, "device_newton_ser"))
