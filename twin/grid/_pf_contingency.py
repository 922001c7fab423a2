"""All scenarios of a batch at once, each with its own topology (N-1/N-k sweeps): the
Python side of ``twin.grid._kernels.contingency`` for :class:`twin.grid.pf.BatchPowerFlow`."""

from __future__ import annotations

import numpy as np

from twin.grid._pf_single import NO_ZIP
from twin.grid._pf_topology import FillPattern
from twin.grid._pf_types import BoolArray, FloatArray, IntArray, ResultArrays
from twin.grid.arrays import GridArrays

__all__ = ["solve_contingencies"]


def solve_contingencies(
    ga: GridArrays, pat: FillPattern, k_br: tuple[FloatArray, FloatArray], br_mask: BoolArray,
    inj: dict[str, FloatArray], row_of: dict[str, IntArray], stop: tuple[float, int], out: ResultArrays,
) -> None:
    """Solve every row of ``br_mask`` in one parallel numba call into ``out`` (``k_br`` the
    loading factors of the branch ends; ``stop`` = (tol, max_iter))."""
    from twin.grid import _kernels as kern

    k_from, k_to = k_br
    n_b = br_mask.shape[0]
    br_on = np.ascontiguousarray(br_mask & ga.br_connectable[None, :])
    n_node = ga.n_node
    eg_ok = ga.ext_grid_node >= 0
    slack_nodes = np.unique(ga.ext_grid_node[eg_ok]).astype(np.int64)
    slack_of_node = np.full(n_node, -1, dtype=np.int64)
    slack_of_node[slack_nodes] = np.arange(slack_nodes.size)
    slack_v = np.zeros(slack_nodes.size, dtype=np.complex128)
    eg_slack = np.full(ga.ext_grid_node.shape[0], -1, dtype=np.int64)
    for e in np.flatnonzero(eg_ok)[::-1]:  # the first ext_grid at a node sets its voltage
        slack_v[slack_of_node[ga.ext_grid_node[e]]] = ga.ext_grid_v[e]
        eg_slack[e] = slack_of_node[ga.ext_grid_node[e]]
    units = np.zeros(slack_nodes.size)
    np.add.at(units, eg_slack[eg_slack >= 0], 1.0)
    elements = tuple(
        (row_of[kp], row_of[kq], inj[kp], inj[kq], node, zp)
        for kp, kq, node, zp in (
            ("load_p_mw", "load_q_mvar", ga.load_node, ga.load_zip),
            ("sgen_p_mw", "sgen_q_mvar", ga.sgen_node, NO_ZIP),
            ("storage_p_mw", "storage_q_mvar", ga.storage_node, NO_ZIP),
        )
    )
    v_full = np.zeros((n_b, n_node), dtype=np.complex128)
    en_node = np.zeros((n_b, n_node), dtype=bool)
    sched = np.zeros((n_b, slack_nodes.size), dtype=np.complex128)
    kern.contingencies_par(
        br_on, (ga.br_from, ga.br_to, ga.br_y, ga.shunt_node, ga.shunt_y),
        (pat.pos, pat.node_of, pat.idx4, pat.ent_r, pat.ent_c, pat.d_idx, pat.lk_ptr,
         pat.lk_idx, pat.tr_ptr, pat.tr_tgt, pat.tr_l, pat.tr_u, pat.l_ptr, pat.l_idx,
         pat.l_col, pat.u_ptr, pat.u_idx, pat.u_col),
        (slack_of_node, slack_nodes, slack_v, units, ga.ext_grid_node, eg_slack),
        (*elements, ga.has_zip_loads, 1.0 / ga.sn_mva), stop,
        (ga.bus_node, k_from, k_to), ga.sn_mva,
        (v_full, en_node, sched, out.conv, out.iters, out.eg), out.results(),
    )
