"""Per-unit injections of one scenario (generation-positive) at PQ and slack nodes.

Element "locations" per topology: loc >= 0 is a PQ position (in LU order), loc <= -2 the
slack position -loc - 2, loc == -1 means the element injects nothing (out of service,
de-energized, or a grid-forming unit acting as slack).
"""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np

from twin.grid._kernels.opts import OPTS


@nb.njit(**OPTS)
def add_element(
    b: int, el: Any, use_zip: bool, factor: float, slack_vm: Any, s: Any, si: Any, sz: Any, ss: Any,
) -> None:  # pragma: no cover
    """Add one element table ``el`` = (rows_p, rows_q, p, q, loc, zip) of scenario b, times
    ``factor``, to the PQ (``s``, ``si``, ``sz``) and slack (``ss``) injections."""
    rows_p, rows_q, p, q, loc, zip_ = el
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


@nb.njit(**OPTS)
def scenario_injections(b: int, inj: Any, s: Any, si: Any, sz: Any, ss: Any) -> None:  # pragma: no cover
    """Per-unit injections (generation-positive) of scenario b at PQ and slack nodes
    (``inj`` = (load, sgen, storage, use_zip, inv_sn, slack_vm))."""
    load, sgen, storage, use_zip, inv_sn, slack_vm = inj
    s[:] = 0.0
    si[:] = 0.0
    sz[:] = 0.0
    ss[:] = 0.0
    add_element(b, load, use_zip, -inv_sn, slack_vm, s, si, sz, ss)
    add_element(b, sgen, np.bool_(False), inv_sn, slack_vm, s, si, sz, ss)
    add_element(b, storage, np.bool_(False), -inv_sn, slack_vm, s, si, sz, ss)


@nb.njit(**OPTS)
def injections_rows(sel: Any, inj: Any, n: int) -> Any:  # pragma: no cover
    """Injections (s, si, sz) of selected scenarios, for the Newton fallback."""
    use_zip = inj[3]
    slack_vm = inj[5]
    out = np.zeros((3, sel.shape[0], n), dtype=np.complex128)
    ss = np.empty(slack_vm.shape[0], dtype=np.complex128)
    si = np.empty(n, dtype=np.complex128)
    sz = np.empty(n, dtype=np.complex128)
    s = np.empty(n, dtype=np.complex128)
    for j in range(sel.shape[0]):
        scenario_injections(sel[j], inj, s, si, sz, ss)
        out[0, j] = s
        if use_zip:
            out[1, j] = si
            out[2, j] = sz
    return out
