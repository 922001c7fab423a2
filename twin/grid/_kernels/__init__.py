"""Numba kernels of the batch power flow (private; see :mod:`twin.grid.pf`).

Imported lazily by :mod:`twin.grid.pf` only for batches big enough to pay for numba
(its import and, on a fresh clone, its compile); small batches run the numpy path there.
Every kernel is ``cache=True``: compiled once per machine into ``__pycache__``. Importing
this package changes no process state: the threading layer and malloc tuning are the
caller's choice (:func:`twin.runtime.configure`); the kernels give the same results with any
numba threading layer.

By concern: :mod:`.injections` (per-scenario injections), :mod:`.fixed_point` (the Z-bus
fixed point of one scenario, the warm start, the per-scenario parallel kernel),
:mod:`.chunked` (``K`` scenarios per lane chunk, fused post-processing), :mod:`.post`
(voltages, flows, losses, loadings), :mod:`.single` (one scenario in one serial call),
:mod:`.contingency` (every scenario with its own topology).

Arguments travel in plain tuples (a NamedTuple costs numba's dispatcher about 9 µs a
call, a plain tuple about 1.5 µs), always in this order:

- element table ``el`` = (rows_p, rows_q, p, q, loc, zip) of loads, sgens and storage;
- ``inj`` = (load, sgen, storage, use_zip, inv_sn, slack_vm): a group's injections;
- ``lu`` = (l_ptr, l_idx, l_val, u_ptr, u_idx, u_val, u_dinv): ``Topology.lu``;
- ``stop`` = (tol, max_iter); ``fp_out`` = (v_out, sched_out, iters, conv);
- ``nodes`` = (node_comp, energized_node, pq_nodes, slack_nodes, slack_v);
- ``branches`` = (bus_node, br_f, br_t, br_y, br_on, k_f, k_t), laid out by
  ``branch_arrays`` as ``post_br`` = (bus_n, f_n, t_n, y8, br_on, k_f2, k_t2);
- ``ref`` = (y_s, y_s_loc, units_at_slack): the slack rows of Y and units per slack;
- ``res`` = (vm, va, energized, p_from, q_from, losses, loading): result rows.
"""

from twin.grid._kernels.chunked import fixed_point_chunked
from twin.grid._kernels.contingency import contingencies_par
from twin.grid._kernels.fixed_point import fixed_point_par, mean_start
from twin.grid._kernels.injections import injections_rows
from twin.grid._kernels.opts import K
from twin.grid._kernels.post import branch_arrays, post_par
from twin.grid._kernels.single import solve_single

__all__ = [
    "K", "branch_arrays", "contingencies_par", "fixed_point_chunked", "fixed_point_par", "injections_rows",
    "mean_start", "post_par", "solve_single",
]
