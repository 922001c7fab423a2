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
def finish_lane(
    b: int, v_out: Any, sched_out: Any, conv: Any, nodes: Any, post_br: Any, sn_mva: float, ref: Any,
    res: Any, eg: Any,
) -> None:  # pragma: no cover
    """Row b of a converged lane: ext_grid power, post-processing and total losses from its
    PQ voltages ``v_out[b]`` and scheduled slack injections ``sched_out[b]`` (arguments as
    :func:`solve_single`)."""
    finish_lane_into(b, v_out, sched_out, conv, nodes, post_br, sn_mva, ref, res, eg,
                     finish_scratch(v_out.shape[0], nodes, post_br))


@nb.njit(**OPTS)
def finish_scratch(n_b: int, nodes: Any, post_br: Any) -> Any:  # pragma: no cover
    """Work arrays of :func:`finish_lane_into` for lanes of ``n_b`` rows (reused across lanes)."""
    return (np.empty(nodes[4].shape[0], dtype=np.complex128), np.arange(n_b), np.zeros((n_b, 0), dtype=np.bool_),
            post_scratch(nodes[0].shape[0], post_br[0].shape[0], post_br[1].shape[0]))


@nb.njit(**OPTS)
def finish_lane_into(
    b: int, v_out: Any, sched_out: Any, conv: Any, nodes: Any, post_br: Any, sn_mva: float, ref: Any,
    res: Any, eg: Any, scratch: Any,
) -> None:  # pragma: no cover
    """:func:`finish_lane` with its work arrays given (``finish_scratch``): a kernel that
    finishes many lanes allocates them once."""
    slack_v = nodes[4]
    y_s, y_s_loc, units_at_slack = ref
    eg_pos, eg_p_out, eg_q_out, pl_sum_out = eg
    pl_out = res[5]
    s_unit, rows, kill, post = scratch
    for k in range(sched_out.shape[1]):
        acc = 0j
        for cc in range(y_s_loc.shape[0]):
            loc = y_s_loc[cc]
            acc += y_s[k, cc] * (v_out[b, loc] if loc >= 0 else slack_v[-loc - 2])
        s_unit[k] = (slack_v[k] * np.conj(acc) - sched_out[b, k]) * (sn_mva / units_at_slack[k])
    for e in range(eg_pos.shape[0]):
        su = s_unit[eg_pos[e]] if eg_pos[e] >= 0 else 0j
        eg_p_out[b, e] = su.real
        eg_q_out[b, e] = su.imag
    post_one(b, rows, v_out, conv, kill, nodes, post_br, sn_mva, res, post)
    tot = 0.0
    for k in range(pl_out.shape[1]):
        tot += pl_out[b, k]
    pl_sum_out[b] = tot


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
    slack_v = nodes[4]
    iters, conv = status
    v_out = np.empty((1, v0.shape[0]), dtype=np.complex128)
    sched_out = np.empty((1, slack_v.shape[0]), dtype=np.complex128)
    fixed_point_one(np.int64(0), inj, v0, lu, stop, (v_out, sched_out, iters, conv))
    if not conv[0]:
        return
    finish_lane(np.int64(0), v_out, sched_out, conv, nodes, post_br, sn_mva, ref, res, eg)
