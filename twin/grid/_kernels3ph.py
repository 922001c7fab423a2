"""Numba kernel of the phase-frame fixed point (see :mod:`twin.grid.pf3ph`): arrays in, arrays out.

Each scenario iterates ``z <- M^-1 (c + R I(V))``, ``V = V_fix + T z`` with the sparse LU
factors of ``M`` (``Pr M Pc = L U``), in parallel over scenarios. Imported only when a batch
is large enough to pay for numba (compiled functions are cached on disk).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit, prange

import twin.grid._kernels  # noqa: F401  (the shared numba threading-layer choice, set before any launch)


@njit(cache=True)
def _lu_solve(b: Any, lp: Any, li: Any, lx: Any, up: Any, ui: Any, ux: Any, dinv: Any, perm_r: Any, perm_c: Any,
              w: Any, out: Any) -> None:  # pragma: no cover - numba
    n = b.shape[0]
    for i in range(n):
        w[perm_r[i]] = b[i]
    for i in range(n):
        acc = w[i]
        for k in range(lp[i], lp[i + 1]):
            acc -= lx[k] * w[li[k]]
        w[i] = acc
    for i in range(n - 1, -1, -1):
        acc = w[i]
        for k in range(up[i], up[i + 1]):
            acc -= ux[k] * w[ui[k]]
        w[i] = acc * dinv[i]
    for i in range(n):
        out[i] = w[perm_c[i]]


@njit(cache=True)
def _injections(v: Any, s_node: Any, ld_i: Any, ld_j: Any, ld_k: Any, ld_lo: Any, ld_hi: Any, ld_p: Any,
                inj: Any) -> None:  # pragma: no cover - numba
    n = inj.shape[0]
    for k in range(n):
        s = s_node[k]
        if s.real != 0.0 or s.imag != 0.0:
            vk = v[k]
            inj[k] = -(s.conjugate() * vk) / (vk.real * vk.real + vk.imag * vk.imag)
        else:
            inj[k] = 0.0
    for e in range(ld_i.shape[0]):
        i = ld_i[e]
        j = ld_j[e]
        u = v[i] - v[j]
        a = np.sqrt(u.real * u.real + u.imag * u.imag)
        if a < ld_lo[e]:
            a = ld_lo[e]
        elif a > ld_hi[e]:
            a = ld_hi[e]
        p = ld_p[e]
        cur = ld_k[e] * u
        if p == 2.0:
            cur = cur / (a * a)
        elif p == 1.0:
            cur = cur / a
        inj[i] -= cur
        if j < n:
            inj[j] += cur


@njit(parallel=True, cache=True)
def fixed_point_par(c: Any, v_fix: Any, t_ptr: Any, t_idx: Any, t_val: Any, r_ptr: Any, r_idx: Any, r_val: Any,
                    lp: Any, li: Any, lx: Any, up: Any, ui: Any, ux: Any, dinv: Any, perm_r: Any, perm_c: Any,
                    ld_i: Any, ld_j: Any, ld_k: Any, ld_lo: Any, ld_hi: Any, ld_p: Any, s_node: Any, tol: float,
                    max_iter: int, v_out: Any, iters: Any, conv: Any) -> None:  # pragma: no cover - numba
    n_b = s_node.shape[0]
    n = v_fix.shape[0]
    n_z = c.shape[0]
    for b in prange(n_b):
        v = np.zeros(n + 1, dtype=np.complex128)  # v[n] is ground
        inj = np.zeros(n, dtype=np.complex128)
        inj_new = np.zeros(n, dtype=np.complex128)
        rhs = np.empty(n_z, dtype=np.complex128)
        w = np.empty(n_z, dtype=np.complex128)
        z = np.empty(n_z, dtype=np.complex128)
        s_b = s_node[b]
        for it in range(max_iter + 1):
            for r in range(n_z):
                acc = c[r]
                if it > 0:
                    for k in range(r_ptr[r], r_ptr[r + 1]):
                        acc += r_val[k] * inj[r_idx[k]]
                rhs[r] = acc
            _lu_solve(rhs, lp, li, lx, up, ui, ux, dinv, perm_r, perm_c, w, z)
            for k in range(n):
                acc = v_fix[k]
                for q in range(t_ptr[k], t_ptr[k + 1]):
                    acc += t_val[q] * z[t_idx[q]]
                v[k] = acc
            _injections(v, s_b, ld_i, ld_j, ld_k, ld_lo, ld_hi, ld_p, inj_new)
            mis = 0.0
            for k in range(n):
                d = inj_new[k] - inj[k]
                m2 = (d.real * d.real + d.imag * d.imag) * (v[k].real * v[k].real + v[k].imag * v[k].imag)
                if m2 > mis or m2 != m2:
                    mis = m2
                inj[k] = inj_new[k]
            iters[b] = it
            if it > 0 and mis <= tol * tol:
                conv[b] = True
                break
            if mis != mis:
                break
        for k in range(n):
            v_out[b, k] = v[k]


def solve_batch(topo: Any, pf: Any, s_node: Any, ld_k: Any, tol: float, max_iter: int) -> tuple[Any, Any, Any]:
    """Run the kernel for one topology; returns (v (B, n_node), iterations (B,), converged (B,))."""
    n_b, n = s_node.shape
    v = np.zeros((n_b, n), dtype=np.complex128)
    iters = np.zeros(n_b, dtype=np.int64)
    conv = np.zeros(n_b, dtype=np.bool_)
    t, r = topo.t_mat, topo.r_mat
    fixed_point_par(  # type: ignore[call-arg]
        topo.c, topo.v_fix, t.indptr.astype(np.int64), t.indices.astype(np.int64), t.data.astype(np.complex128),
        r.indptr.astype(np.int64), r.indices.astype(np.int64), r.data.astype(np.complex128), *topo.lu_arrays,
        pf._ld_i, pf._ld_j, np.ascontiguousarray(ld_k, dtype=np.complex128), pf._ld_lo, pf._ld_hi, pf._ld_p,
        np.ascontiguousarray(s_node), float(tol), int(max_iter), v, iters, conv,
    )
    return v, iters, conv
