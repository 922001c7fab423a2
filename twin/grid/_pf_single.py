"""The single-scenario fast path of :class:`twin.grid.pf.BatchPowerFlow` (also a few lanes
of the fused controlled kernel): input checks without copies, the kernels' static arguments
of a topology, result buffers and the :class:`PowerFlowResult` built from them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from twin.grid._pf_topology import Topology
from twin.grid._pf_types import BoolArray, FloatArray, PowerFlowResult
from twin.grid.arrays import GridArrays

__all__ = ["BRANCH_FIELDS", "NO_ZIP", "lane_outputs", "lane_result", "single_inputs", "single_static"]

NO_ZIP = np.zeros((0, 4))
BRANCH_FIELDS = ("line_loading_percent", "line_p_from_mw", "line_q_from_mvar", "line_pl_mw",
                  "trafo_loading_percent", "trafo_p_hv_mw", "trafo_q_hv_mvar", "trafo_pl_mw", "pl_mw")


def single_inputs(
    ga: GridArrays, values: tuple[ArrayLike | None, ...], line_in_service: ArrayLike | None,
    trafo_in_service: ArrayLike | None,
) -> tuple[list[FloatArray], BoolArray] | None:
    """The six injection arrays as (1, n) float64 rows (the net's where None) and the branch
    mask of one scenario; None when they are not exactly that (a batch, other dtypes,
    non-finite values: the general path checks and reports them)."""
    cols = (ga.load_p_mw, ga.load_q_mvar, ga.sgen_p_mw, ga.sgen_q_mvar, ga.storage_p_mw, ga.storage_q_mvar)
    arrs = []
    for val, default in zip(values, cols, strict=True):
        if val is None:
            arrs.append(default[None, :])
            continue
        a = val if isinstance(val, np.ndarray) else np.asarray(val)
        if a.ndim == 1:
            a = a[None, :]
        if a.shape != (1, default.shape[0]) or a.dtype != np.float64 or not math.isfinite(float(a.sum())):
            return None
        arrs.append(a)
    br_on = ga.br_default_in_service
    for val, lo, hi in ((line_in_service, 0, ga.n_line), (trafo_in_service, ga.n_line, ga.n_branch)):
        if val is None:
            continue
        m = val if isinstance(val, np.ndarray) else np.asarray(val)
        if m.ndim == 2 and m.shape[0] == 1:
            m = m[0]
        if m.shape != (hi - lo,) or m.dtype != np.bool_:
            return None
        if br_on is ga.br_default_in_service:
            br_on = br_on.copy()
        br_on[lo:hi] = m
    return arrs, br_on


def single_static(ga: GridArrays, topo: Topology, post_arrays: tuple[Any, ...]) -> tuple[Any, ...]:
    """What the single-lane kernels take of a topology: ((use_zip, inv_sn, slack_vm, v0, lu,
    nodes, post_br, ref), load_loc, sgen_loc, storage_loc, eg_slack_pos)."""
    bus_n, f_n, t_n, y8, _, k_f2, k_t2 = post_arrays
    return (
        ga.has_zip_loads, 1.0 / ga.sn_mva, topo.slack_vm, topo.v0, topo.lu,
        (topo.node_comp, topo.energized, topo.pq_nodes, topo.slack_nodes, topo.slack_v),
        (bus_n, f_n, t_n, y8, topo.br_on, k_f2, k_t2),
        (topo.y_s, topo.y_s_loc, topo.units_at_slack),
    ), topo.load_loc, topo.sgen_loc, topo.storage_loc, topo.eg_slack_pos


def lane_outputs(ga: GridArrays, n_b: int, n_eg: int) -> tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]:
    """Result buffers of ``n_b`` lanes: ``res`` = (vm, va, energized, p_from, q_from,
    losses, loading), (eg_p, eg_q, pl_sum), ``status`` = (iters, conv)."""
    nb_, nbr = ga.n_bus, ga.n_branch
    # one C-contiguous array each (not views of one buffer: those are contiguous for one
    # lane only, and numba compiles its kernels once per layout)
    res = (np.empty((n_b, nb_)), np.empty((n_b, nb_)), np.empty((n_b, nb_), dtype=bool),
           *(np.empty((n_b, nbr)) for _ in range(4)))
    eg = (np.empty((n_b, n_eg)), np.empty((n_b, n_eg)), np.empty(n_b))
    return res, eg, (np.zeros(n_b, dtype=np.int64), np.zeros(n_b, dtype=bool))


def lane_result(ga: GridArrays, res: tuple[Any, ...], eg: tuple[Any, ...], status: tuple[Any, ...]) -> PowerFlowResult:
    """The :class:`PowerFlowResult` of :func:`lane_outputs` buffers (no grid-forming units)."""
    vm, va, energized, p_f, q_f, pl, loading = res
    eg_p, eg_q, pl_sum = eg
    iters, conv = status
    nl = ga.n_line
    no_gf = np.zeros((vm.shape[0], 0))
    return PowerFlowResult(
        vm_pu=vm, va_degree=va, energized=energized,
        line_loading_percent=loading[:, :nl], line_p_from_mw=p_f[:, :nl],
        line_q_from_mvar=q_f[:, :nl], line_pl_mw=pl[:, :nl],
        trafo_loading_percent=loading[:, nl:], trafo_p_hv_mw=p_f[:, nl:],
        trafo_q_hv_mvar=q_f[:, nl:], trafo_pl_mw=pl[:, nl:], pl_mw=pl_sum,
        ext_grid_p_mw=eg_p, ext_grid_q_mvar=eg_q, grid_forming_p_mw=no_gf,
        grid_forming_q_mvar=no_gf, converged=conv, iterations=iters,
    )
