"""Polar Newton-Raphson for one scenario: the fallback of the fixed point (see :mod:`twin.grid.pf`)."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import spsolve

from twin.grid._pf_topology import Topology
from twin.grid._pf_types import ComplexArray

__all__ = ["newton"]


def newton(
    topo: Topology,
    s_p: ComplexArray,
    s_i: ComplexArray,
    s_z: ComplexArray,
    v_start: ComplexArray,
    tol: float,
    max_iter: int,
) -> tuple[ComplexArray, bool, int]:
    """Polar Newton-Raphson on the PQ nodes for one scenario (fallback path)."""
    y = topo.y_ll
    i_s = topo.i_s
    v = v_start.copy() if np.all(np.isfinite(v_start)) else topo.v0.copy()
    if np.any(np.abs(v) < 0.3) or np.any(np.abs(v) > 3.0):
        v = topo.v0.copy()
    n = v.size
    for it in range(max_iter + 1):
        vm = np.abs(v)
        s_spec = s_p + s_i * vm + s_z * vm**2
        cur = y @ v + i_s
        mis = v * np.conj(cur) - s_spec
        f = np.concatenate([mis.real, mis.imag])
        if np.max(np.abs(f)) < tol:
            return v, True, it
        if it == max_iter or not np.all(np.isfinite(f)):
            break
        dv = sp.diags(v)
        vnorm = sp.diags(v / vm)
        ds_dvm = dv @ (y @ vnorm).conj() + sp.diags(np.conj(cur) * v / vm)
        ds_dvm = ds_dvm - sp.diags(s_i + 2 * s_z * vm)
        ds_dva = 1j * (sp.diags(v * np.conj(cur)) - dv @ (y @ dv).conj())
        jac = sp.bmat(
            [[ds_dva.real, ds_dvm.real], [ds_dva.imag, ds_dvm.imag]], format="csc"
        )
        dx = spsolve(jac, -f)
        va = np.angle(v) + dx[:n]
        vm = vm + dx[n:]
        v = vm * np.exp(1j * va)
    return v, False, max_iter
