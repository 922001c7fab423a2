"""One scenario in one serial call (a controller in the loop): fixed point, reference power,
post-processing and losses."""

from __future__ import annotations

from typing import Any

import numba as nb
import numpy as np

from twin.grid._kernels.fixed_point import fixed_point_one
from twin.grid._kernels.opts import OPTS
from twin.grid._kernels.post import post_one, post_scratch


@nb.njit(**OPTS)
def solve_single(
    inj: Any, v0: Any, lu: Any, stop: Any, nodes: Any, post_br: Any, sn_mva: float, ref: Any,
    res: Any, eg: Any, status: Any,
) -> None:  # pragma: no cover
    """One scenario, serially (no thread launch): fixed point, ext_grid power and, when
    converged, the post-processing and total losses. ``ref`` = (y_s, y_s_loc,
    units_at_slack): the slack rows of Y and the units per slack; ``eg`` = (eg_pos,
    eg_p_out, eg_q_out, pl_sum_out), ``eg_pos`` the slack position of each ext_grid (-1 when
    not acting); ``status`` = (iters, conv); ``post_br`` from ``branch_arrays``.
    A scenario that does not converge is left to the caller (Newton fallback)."""
    node_comp, slack_v = nodes[0], nodes[4]
    y_s, y_s_loc, units_at_slack = ref
    eg_pos, eg_p_out, eg_q_out, pl_sum_out = eg
    iters, conv = status
    pl_out = res[5]
    v_out = np.empty((1, v0.shape[0]), dtype=np.complex128)
    sched_out = np.empty((1, slack_v.shape[0]), dtype=np.complex128)
    s_unit = np.empty(slack_v.shape[0], dtype=np.complex128)
    fixed_point_one(0, inj, v0, lu, stop, (v_out, sched_out, iters, conv))
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
    post_one(0, rows, v_out, conv, np.zeros((1, 0), dtype=np.bool_), nodes, post_br, sn_mva, res,
             post_scratch(node_comp.shape[0], post_br[0].shape[0], post_br[1].shape[0]))
    tot = 0.0
    for k in range(pl_out.shape[1]):
        tot += pl_out[0, k]
    pl_sum_out[0] = tot
