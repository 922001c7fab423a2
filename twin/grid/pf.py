"""Vectorized batch AC power flow with per-scenario topology.

``BatchPowerFlow(net)`` compiles the net once (:func:`twin.grid.arrays.compile_net`);
``.solve(...)`` then runs B power flows at once, one per row of the injection arrays.

Method
------
For each distinct topology in the batch (line/trafo in-service pattern) the nodes are split
into connected components. A component with an in-service ``ext_grid`` is solved with the
ext_grid bus(es) as slack (voltage magnitude and angle fixed). A component without one but
with a grid-forming unit (see :class:`GridFormingUnit`) uses that unit as slack; a
component with neither is de-energized (``vm_pu`` 0, ``energized`` False). With the slack
voltages ``V_S`` fixed, the PQ voltages solve ``Y_LL V_L + Y_LS V_S = conj(S(V_L) / V_L)``.
The kernel iterates the Z-bus fixed point

    V_L <- V_0 + Y_LL^-1 conj(S(V_L) / V_L),       V_0 = -Y_LL^-1 Y_LS V_S

with a sparse LU factorisation of ``Y_LL`` (SuperLU, computed once per topology and cached)
and numba-compiled triangular solves, in parallel over scenarios. The fill-reducing node
order is computed once per net on the graph of all branches and reused by every topology
(an outage only removes edges, so the induced order stays fill-reducing): a new topology
costs one numeric factorisation, which matters for N-1 sweeps with one topology per row.
A batch with many distinct topologies (``_CONTINGENCY_GROUPS`` or more; N-1/N-k sweeps) and
no grid-forming unit skips the per-topology Python work altogether: one parallel numba call
(``_kernels.contingencies_par``) finds each scenario's components by union-find, assembles
its ``Y_LL`` into the fill pattern of the full branch graph in that global order (computed
once, :class:`FillPattern`; non-PQ nodes get an identity row), factorizes it numerically on
that shared pattern and runs the same fixed point and post-processing. Scenarios it leaves
unconverged are re-solved on the per-topology path (Newton fallback).
For radial and weakly meshed distribution feeders this converges in a handful of
iterations; a scenario that has not converged after ``max_iter`` iterations (or diverges)
is retried with Newton-Raphson.
Convergence and iteration counts are reported per scenario and nothing is ever raised for
a non-converged scenario: its voltages and flows are NaN.

Conventions
-----------
Units in names, pandapower style. ``load`` and ``storage`` powers are consumption-positive,
``sgen`` generation-positive; ``ext_grid_p_mw`` and ``grid_forming_p_mw`` are the power the
reference unit supplies (generation-positive). Angles in degrees, referred to the ext_grid
``va_degree`` (or the grid-forming unit's set point in an island).
"""

from __future__ import annotations

import math
import sys
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from twin.grid._pf_contingency import solve_contingencies
from twin.grid._pf_newton import newton
from twin.grid._pf_numpy import np_fixed_point, np_injections, np_post
from twin.grid._pf_single import (
    BRANCH_FIELDS,
    NO_ZIP,
    lane_outputs,
    lane_result,
    single_inputs,
    single_static,
)
from twin.grid._pf_topology import (
    FillPattern,
    FormingUnit,
    Topology,
    build_topology,
    distinct_rows,
    fill_pattern,
    group_rows,
    node_rank,
    slack_power,
)
from twin.grid._pf_types import (
    BoolArray,
    ComplexArray,
    FloatArray,
    GridFormingUnit,
    IntArray,
    PowerFlowResult,
    ResultArrays,
)
from twin.grid.arrays import GridArrays, compile_net

__all__ = ["BatchPowerFlow", "GridFormingUnit", "PowerFlowResult"]


_SQRT3 = math.sqrt(3.0)
_TOPOLOGY_CACHE_SIZE = 256
_NR_MAX_ITER = 30
# batches with at least this much work (scenarios x (nodes + branches)) run the numba
# kernels (parallel over scenarios); smaller ones the numpy/SuperLU path, which needs no
# numba import or compile (a cold start of the twin or of a test process stays short)
_NUMBA_WORK = 20_000
# batches with at least this many distinct topologies (and no grid-forming unit) run the
# contingency kernel: one parallel call, no per-topology Python work
_CONTINGENCY_GROUPS = 8
# ... and at most this many scenarios per topology on average: a topology costs ~1-2 ms on
# the per-topology path, a scenario ~30 us in the contingency kernel vs a few us in the
# chunked one, so big groups (time series with a few outage states) stay per topology
_CONTINGENCY_ROWS = 32
# "auto" solves a single scenario with numpy/SuperLU (no numba import or compile: a short
# run never pays for it) until the solver has been called this often; from then on in one
# serial numba call (about 20x faster: the kernels' load, ~0.3 s from the cache, is repaid
# within the next ~1000 solves of a long run or a controller loop)
_AUTO_NUMBA_CALLS = 200
_ZERO_ROW = np.zeros(1, dtype=np.int64)
_WARM_SAMPLE = 16  # scenarios averaged for the warm start
# branch arguments of the chunked kernel without branches (its post-processing then skips them)
_NO_BRANCHES = (np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64),
                np.zeros((0, 4), dtype=np.complex128), np.zeros(0, dtype=bool), np.zeros(0), np.zeros(0))


def _numba_kernels() -> Any:
    """The numba kernels module, imported on first use (numba import + cached compile)."""
    kern = sys.modules.get("twin.grid._kernels")
    if kern is None:
        from twin.grid import _kernels as kern
    return kern

# --------------------------------------------------------------------------- facade


def _check_finite(specs: Any, inj: dict[str, FloatArray]) -> None:
    """Raise on the first NaN or infinite injection given, naming argument, scenario, row."""
    for name, val, _, table in specs:
        a = inj[name]
        # a finite sum proves every value finite (one pass, no temporary); a non-finite
        # sum can also be an overflow of huge finite values: then nothing is reported
        if val is not None and not math.isfinite(float(a.sum())) and not np.all(np.isfinite(a)):
            b, j = np.argwhere(~np.isfinite(a))[0]
            raise ValueError(f"{name}: non-finite value in scenario {b} for {table} row {j}")


def _as_batch(name: str, value: ArrayLike, n_col: int, dtype: Any) -> NDArray[Any]:
    arr = np.asarray(value, dtype=dtype)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != n_col:
        raise ValueError(f"{name}: expected shape (B, {n_col}) or ({n_col},), got {np.shape(value)}")
    return np.ascontiguousarray(arr)


class BatchPowerFlow:
    """Batch AC power flow over one pandapower net.

    Parameters
    ----------
    net:
        A pandapower net (read once; later changes to it are not seen).
    grid_forming:
        Storage or sgen units that may act as voltage reference of islands without an
        ext_grid.
    kernel:
        ``"numba"``: compiled kernels, parallel over scenarios (first use in a process imports
        numba and loads or compiles the cached kernels: seconds); ``"numpy"``: numpy/SuperLU,
        no compile; ``"auto"`` (default) picks numba for batches with at least
        ``_NUMBA_WORK`` scenario x (node + branch) units of work. Results agree to ``tol``.

    Raises
    ------
    ValueError
        No in-service ext_grid and no grid-forming unit, invalid element data, unknown
        grid-forming element.
    NotImplementedError
        In-service elements the kernel does not model (gen, trafo3w, ...).
    """

    def __init__(
        self,
        net: Any,
        *,
        grid_forming: Sequence[GridFormingUnit] | None = None,
        kernel: Literal["auto", "numpy", "numba"] = "auto",
    ) -> None:
        if kernel not in ("auto", "numpy", "numba"):
            raise ValueError(f"kernel: must be 'auto', 'numpy' or 'numba', got {kernel!r}")
        self._kernel = kernel
        self._arrays = compile_net(net)
        ga = self._arrays
        units: list[FormingUnit] = []
        for g in grid_forming or ():
            if g.element not in ("storage", "sgen"):
                raise ValueError(f"grid_forming: element must be 'storage' or 'sgen', got {g.element!r}")
            table = net[g.element]
            if g.index not in table.index:
                raise ValueError(f"grid_forming: {g.element} {g.index} not found in net.{g.element}")
            pos = int(table.index.get_loc(g.index))
            node = int((ga.sgen_node if g.element == "sgen" else ga.storage_node)[pos])
            if not (g.vm_pu > 0 and math.isfinite(g.vm_pu) and math.isfinite(g.va_degree)):
                raise ValueError(f"grid_forming: {g.element} {g.index}: invalid vm_pu/va_degree")
            if not g.p_min_mw <= g.p_max_mw or not g.s_max_mva > 0:
                raise ValueError(f"grid_forming: {g.element} {g.index}: invalid power limits")
            v = g.vm_pu * complex(math.cos(math.radians(g.va_degree)), math.sin(math.radians(g.va_degree)))
            units.append(FormingUnit(g.element, pos, node, v, g.p_min_mw, g.p_max_mw, g.s_max_mva))
        self._gf = tuple(units)
        if not np.any(ga.ext_grid_node >= 0) and not any(u.node >= 0 for u in units):
            raise ValueError(
                "net has no in-service ext_grid and no grid-forming unit: nothing can be energized"
            )
        self._cache: OrderedDict[bytes, Topology] = OrderedDict()
        self._rank = node_rank(ga)
        self._pattern: FillPattern | None = None  # built on the first contingency batch
        self._post_arrays: tuple[Any, ...] | None = None  # branch data of the single path
        self._single: tuple[Any, tuple[Any, ...]] | None = None  # its args, default topology
        self._calls = 0  # solves so far: "auto" moves single scenarios to numba after a while
        # loading% = |I_pu| * k  (I in kA = |I_pu| * sn / (sqrt3 * vn_kv))
        with np.errstate(divide="ignore", invalid="ignore"):
            self._k_from = 100.0 * ga.sn_mva / (_SQRT3 * ga.br_vn_from_kv * ga.br_i_rated_ka_from)
            self._k_to = 100.0 * ga.sn_mva / (_SQRT3 * ga.br_vn_to_kv * ga.br_i_rated_ka_to)

    @property
    def arrays(self) -> GridArrays:
        """The compiled network arrays."""
        return self._arrays

    @property
    def kernel(self) -> str:
        """The kernel choice given: ``"auto"``, ``"numpy"`` or ``"numba"``."""
        return self._kernel

    @property
    def grid_forming_units(self) -> int:
        """How many grid-forming units the solver was given."""
        return len(self._gf)

    def _topology(self, br_on: BoolArray) -> Topology:
        key = np.packbits(br_on).tobytes()
        topo = self._cache.get(key)
        if topo is None:
            topo = build_topology(self._arrays, self._gf, br_on, self._rank)
            self._cache[key] = topo
            if len(self._cache) > _TOPOLOGY_CACHE_SIZE:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return topo

    def solve(
        self,
        load_p_mw: ArrayLike | None = None,
        load_q_mvar: ArrayLike | None = None,
        sgen_p_mw: ArrayLike | None = None,
        sgen_q_mvar: ArrayLike | None = None,
        storage_p_mw: ArrayLike | None = None,
        storage_q_mvar: ArrayLike | None = None,
        line_in_service: ArrayLike | None = None,
        trafo_in_service: ArrayLike | None = None,
        tol: float = 1e-8,
        max_iter: int = 100,
        branch_flows: bool = True,
    ) -> PowerFlowResult:
        """Solve B power flows.

        Each array is (B, n) in the row order of the net's table; a 1-D array or one with
        B = 1 is used for every scenario. An argument left ``None`` takes the net's value
        (``p_mw * scaling`` of in-service elements, ``in_service`` of branches). Given values
        are used as they are (no ``scaling``); elements out of service in the net inject
        nothing. ``line_in_service`` / ``trafo_in_service`` replace the net's ``in_service``
        columns (open switches still apply).

        ``tol`` bounds the power mismatch at every node, in per unit of ``net.sn_mva`` (what
        pandapower compares its ``tolerance_mva`` with): the fixed point stops when the
        mismatch |dS| of every node is below it (computed exactly from the last update, see
        ``twin.grid._kernels.fixed_point.mismatch``), the Newton fallback when every |dP| and |dQ| is.
        ``max_iter`` bounds the fixed-point iterations before the Newton-Raphson fallback.

        ``branch_flows=False`` is for screening on voltages (e.g. a voltage-band check of
        many scenarios): branch flows, loadings and losses are not computed and are NaN;
        voltages, energized buses, ext_grid and grid-forming powers are as usual (measured
        about 10 % less time on case33bw at B=1000, 2.87 -> 2.58 µs per flow).
        """
        res = self._solve(
            load_p_mw, load_q_mvar, sgen_p_mw, sgen_q_mvar, storage_p_mw, storage_q_mvar,
            line_in_service, trafo_in_service, tol, max_iter, branch_flows,
        )
        if not branch_flows:
            for name in BRANCH_FIELDS:
                getattr(res, name)[...] = np.nan
        return res

    def _solve(
        self,
        load_p_mw: ArrayLike | None,
        load_q_mvar: ArrayLike | None,
        sgen_p_mw: ArrayLike | None,
        sgen_q_mvar: ArrayLike | None,
        storage_p_mw: ArrayLike | None,
        storage_q_mvar: ArrayLike | None,
        line_in_service: ArrayLike | None,
        trafo_in_service: ArrayLike | None,
        tol: float,
        max_iter: int,
        branch_flows: bool,
    ) -> PowerFlowResult:
        ga = self._arrays
        if not (tol > 0 and math.isfinite(tol)):
            raise ValueError(f"tol: must be a positive number, got {tol}")
        if max_iter < 1:
            raise ValueError(f"max_iter: must be >= 1, got {max_iter}")
        self._calls += 1
        one = self._solve_single(
            (load_p_mw, load_q_mvar, sgen_p_mw, sgen_q_mvar, storage_p_mw, storage_q_mvar),
            line_in_service, trafo_in_service, tol, max_iter,
        )
        if one is not None:
            return one
        specs = (
            ("load_p_mw", load_p_mw, ga.load_p_mw, "load"),
            ("load_q_mvar", load_q_mvar, ga.load_q_mvar, "load"),
            ("sgen_p_mw", sgen_p_mw, ga.sgen_p_mw, "sgen"),
            ("sgen_q_mvar", sgen_q_mvar, ga.sgen_q_mvar, "sgen"),
            ("storage_p_mw", storage_p_mw, ga.storage_p_mw, "storage"),
            ("storage_q_mvar", storage_q_mvar, ga.storage_q_mvar, "storage"),
        )
        inj: dict[str, FloatArray] = {}
        for name, val, default, _ in specs:
            if val is None:
                inj[name] = default[None, :]
            else:
                inj[name] = _as_batch(name, val, default.shape[0], np.float64)
        masks: dict[str, BoolArray] = {}
        for name, val, lo, hi in (
            ("line_in_service", line_in_service, 0, ga.n_line),
            ("trafo_in_service", trafo_in_service, ga.n_line, ga.n_branch),
        ):
            if val is None:
                masks[name] = ga.br_default_in_service[None, lo:hi]
            else:
                raw = np.asarray(val)
                if raw.dtype != np.bool_ and not np.all(np.isin(raw, (0, 1))):
                    raise ValueError(f"{name}: must be boolean")
                masks[name] = _as_batch(name, raw, hi - lo, np.bool_)
        sizes = {a.shape[0] for a in (*inj.values(), *masks.values())} - {1}
        if len(sizes) > 1:
            shapes = {k: v.shape for k, v in (*inj.items(), *masks.items())}
            raise ValueError(f"inconsistent batch sizes: {shapes}")
        n_b = sizes.pop() if sizes else 1
        single = n_b == 1 or masks["line_in_service"].shape[0] == masks["trafo_in_service"].shape[0] == 1
        # one topology through the chunked kernel: it checks the inputs in its own pass over
        # them (out.finite) and the error is raised after it; otherwise check them here
        deferred = single and self._chunked(n_b)
        if not deferred:
            _check_finite(specs, inj)
        # broadcast rows: index arrays instead of copies
        row_of = {k: (np.zeros(n_b, dtype=np.int64) if v.shape[0] == 1 else np.arange(n_b)) for k, v in inj.items()}

        br_mask = np.empty((1 if single else n_b, ga.n_branch), dtype=bool)
        br_mask[:, : ga.n_line] = masks["line_in_service"][:1] if single else masks["line_in_service"]
        br_mask[:, ga.n_line :] = masks["trafo_in_service"][:1] if single else masks["trafo_in_service"]
        batched = False
        if not single and not self._gf and self._kernel != "numpy":
            n_topo = distinct_rows(br_mask)
            batched = n_topo >= _CONTINGENCY_GROUPS and n_b <= _CONTINGENCY_ROWS * n_topo
        if single:
            groups = [(br_mask[0], np.arange(n_b, dtype=np.int64))]
        elif not batched:
            groups = group_rows(br_mask, np.arange(n_b, dtype=np.int64))

        out = ResultArrays(n_b, ga, len(self._gf))
        elems = {
            "load": ("load_p_mw", "load_q_mvar", ga.load_zip),
            "sgen": ("sgen_p_mw", "sgen_q_mvar", NO_ZIP),
            "storage": ("storage_p_mw", "storage_q_mvar", NO_ZIP),
        }
        if batched:
            # one kernel call for all topologies; the rare non-converged scenario is
            # re-solved below on the per-topology path (Newton fallback)
            self._solve_contingencies(br_mask, inj, row_of, tol, max_iter, out)
            bad = np.flatnonzero(~out.conv)
            groups = group_rows(br_mask[bad], bad.astype(np.int64)) if bad.size else []
        for br_on, rows in groups:
            topo = self._topology(br_on)
            locs = {"load": topo.load_loc, "sgen": topo.sgen_loc, "storage": topo.storage_loc}
            args = tuple(
                (row_of[kp][rows], row_of[kq][rows], inj[kp], inj[kq], locs[el], zp)
                for el, (kp, kq, zp) in elems.items()
            )
            self._solve_group(topo, rows, args, tol, max_iter, out, branch_flows)
        if deferred and not out.finite.all():
            _check_finite(specs, inj)
        return out.result(ga)

    def _uses_numba(self, n_g: int) -> bool:
        """Whether a group of ``n_g`` scenarios runs the numba kernels."""
        ga = self._arrays
        return self._kernel == "numba" or (
            self._kernel == "auto" and n_g * (ga.n_node + ga.n_branch) >= _NUMBA_WORK
        )

    def _chunked(self, n_g: int) -> bool:
        """Whether a group of ``n_g`` scenarios runs the chunked kernel (lanes of ``K``)."""
        return self._uses_numba(n_g) and n_g >= _numba_kernels().K

    def _branch_data(self, topo: Topology) -> tuple[Any, ...]:
        """The kernels' ``branches`` tuple (bus_node, br_f, br_t, br_y, br_on, k_f, k_t)."""
        ga = self._arrays
        return ga.bus_node, ga.br_from, ga.br_to, ga.br_y, topo.br_on, self._k_from, self._k_to

    def single_numba(self) -> bool:
        """Whether single scenarios run the serial numba kernel (policy of ``kernel``)."""
        return not self._gf and (self._kernel == "numba" or (
            self._kernel == "auto" and self._calls > _AUTO_NUMBA_CALLS))

    def single_static(self, br_on: BoolArray) -> tuple[Any, tuple[Any, ...]] | None:
        """(kernels module, static arguments of :func:`twin.grid._pf_single.single_static`)
        of the topology ``br_on`` for the single-lane kernels; None without PQ nodes."""
        ga = self._arrays
        is_default = br_on is ga.br_default_in_service
        if is_default and self._single is not None:
            return self._single
        kern = _numba_kernels()
        topo = self._topology(br_on)
        if topo.pq_nodes.shape[0] == 0:
            return None
        if self._post_arrays is None:
            self._post_arrays = kern.branch_arrays(self._branch_data(topo), ga.n_node)
        out = (kern, single_static(ga, topo, self._post_arrays))
        if is_default:
            self._single = out
        return out

    def default_topology(self) -> Topology:
        """The topology of the net's own in-service branches."""
        return self._topology(self._arrays.br_default_in_service)

    def _solve_single(
        self,
        values: tuple[ArrayLike | None, ...],
        line_in_service: ArrayLike | None,
        trafo_in_service: ArrayLike | None,
        tol: float,
        max_iter: int,
    ) -> PowerFlowResult | None:
        """One scenario in one serial numba call, with as little Python as possible (a
        controller in the loop solves one snapshot per step); None when the general path
        must run: a batch, grid-forming units, the numpy kernel, input to be reported as bad,
        or a scenario the fixed point does not converge (Newton fallback)."""
        if not self.single_numba():
            return None
        ga = self._arrays
        got = single_inputs(ga, values, line_in_service, trafo_in_service)
        if got is None:
            return None
        arrs, br_on = got
        st = self.single_static(br_on)
        if st is None:
            return None
        kern, static = st
        (use_zip, inv_sn, slack_vm, v0, lu, nodes, post_br, ref), load_loc, sgen_loc, storage_loc, eg_pos = static
        res, (eg_p, eg_q, pl_sum), status = lane_outputs(ga, 1, eg_pos.shape[0])
        zero = _ZERO_ROW
        kern.solve_single(
            ((zero, zero, arrs[0], arrs[1], load_loc, ga.load_zip),
             (zero, zero, arrs[2], arrs[3], sgen_loc, NO_ZIP),
             (zero, zero, arrs[4], arrs[5], storage_loc, NO_ZIP), use_zip, inv_sn, slack_vm),
            v0, lu, (tol, max_iter), nodes, post_br, ga.sn_mva, ref, res, (eg_pos, eg_p, eg_q, pl_sum), status,
        )
        if not status[1][0]:
            return None
        return lane_result(ga, res, (eg_p, eg_q, pl_sum), status)

    def _solve_contingencies(
        self,
        br_mask: BoolArray,
        inj: dict[str, FloatArray],
        row_of: dict[str, IntArray],
        tol: float,
        max_iter: int,
        out: ResultArrays,
    ) -> None:
        """All scenarios at once, each with its own topology (see ``_kernels`` contingencies)."""
        if self._pattern is None:
            self._pattern = fill_pattern(self._arrays, self._rank)
        solve_contingencies(self._arrays, self._pattern, (self._k_from, self._k_to), br_mask, inj, row_of,
                            (tol, max_iter), out)

    def _solve_group(
        self,
        topo: Topology,
        rows: IntArray,
        elements: tuple[Any, ...],
        tol: float,
        max_iter: int,
        out: ResultArrays,
        branch_flows: bool = True,
    ) -> None:
        ga = self._arrays
        n_g = rows.shape[0]
        n_pq = topo.pq_nodes.shape[0]
        n_s = topo.slack_nodes.shape[0]
        use_zip = ga.has_zip_loads
        inv_sn = 1.0 / ga.sn_mva
        slack_vm = np.abs(topo.slack_v)
        v_pq = np.empty((n_g, n_pq), dtype=np.complex128)
        sched = np.empty((n_g, n_s), dtype=np.complex128)
        iters = np.zeros(n_g, dtype=np.int64)
        conv = np.ones(n_g, dtype=bool)
        inj = (*elements, use_zip, inv_sn, slack_vm)
        stop = (tol, max_iter if n_pq else 0)
        nodes = (topo.node_comp, topo.energized, topo.pq_nodes, topo.slack_nodes, topo.slack_v)
        s_unit: ComplexArray | None = None  # computed by the chunked kernel
        kern: Any = _numba_kernels() if self._uses_numba(n_g) else None
        # post-processed inside the chunked kernel: groups where no island can collapse
        chunked = self._chunked(n_g)
        fused = chunked and not np.any(topo.gf_slack_pos >= 0)
        if chunked:
            if n_pq:
                sample = np.arange(0, n_g, max(1, n_g // _WARM_SAMPLE), dtype=np.int64)
                v_init = kern.mean_start(sample, inj, topo.v0, topo.lu)
            else:
                v_init = topo.v0
            s_unit = np.empty((n_g, n_s), dtype=np.complex128)
            finite = np.empty(n_g, dtype=bool)
            kern.fixed_point_chunked(
                inj, topo.v0, topo.lu, stop, (v_pq, sched, iters, conv), v_init, fused, rows,
                nodes, self._branch_data(topo) if branch_flows else (ga.bus_node, *_NO_BRANCHES),
                ga.sn_mva, out.results(), (topo.y_s, topo.y_s_loc, topo.units_at_slack), s_unit,
                finite,
            )
            out.finite[rows] = finite
            if not finite.all():  # bad input: the caller raises; no Newton on NaN rows
                return
            s3: Any = None
        elif kern is not None:
            kern.fixed_point_par(inj, topo.v0, topo.lu, stop, (v_pq, sched, iters, conv))
            s3 = None
        else:
            s3 = np_injections(elements, use_zip, inv_sn, slack_vm, n_pq, sched)
            np_fixed_point(topo, s3, use_zip, tol, max_iter if n_pq else 0, v_pq, iters, conv)
        if n_pq == 0:
            conv[:] = True
        bad = np.flatnonzero(~conv)
        done = conv.copy() if fused else None  # post-processed by the kernel
        if bad.size:
            if s3 is None:
                s3b = kern.injections_rows(bad, inj, n_pq)
            else:
                s3b = s3[:, bad]
            for j, b in enumerate(bad):
                v_b, ok, it = newton(topo, s3b[0, j], s3b[1, j], s3b[2, j], v_pq[b], tol, _NR_MAX_ITER)
                v_pq[b] = v_b
                conv[b] = ok
                iters[b] += it
        # reference units: supplied power = network injection - scheduled injections at the node
        if s_unit is None:
            s_unit = slack_power(topo, v_pq, sched, ga.sn_mva)
        elif bad.size:  # re-solved by Newton after the kernel computed it
            s_unit[bad] = slack_power(topo, v_pq[bad], sched[bad], ga.sn_mva)
        # grid-forming limits: an island whose reference unit is out of its limits collapses
        gf_s = np.zeros((n_g, len(self._gf)), dtype=np.complex128)
        kill = np.zeros((n_g, 0), dtype=bool)
        for u, g in enumerate(self._gf):
            pos = topo.gf_slack_pos[u]
            if pos < 0:
                continue
            su = s_unit[:, pos]
            gf_s[:, u] = su
            over = (su.real < g.p_min) | (su.real > g.p_max) | (np.abs(su) > g.s_max)
            if over.any():
                if kill.shape[1] == 0:
                    kill = np.zeros((n_g, topo.n_comp), dtype=bool)
                kill[over, topo.gf_comp[u]] = True
        if kill.shape[1]:
            dead_unit = kill[:, np.maximum(topo.gf_comp, 0)] & (topo.gf_comp >= 0)[None, :]
            gf_s[dead_unit] = 0.0
        post: Any = kern.post_par if kern is not None else np_post
        sel = slice(None) if done is None else np.flatnonzero(~done)
        if done is None or sel.size:  # type: ignore[union-attr]
            post(rows[sel], v_pq[sel], conv[sel], kill[sel], nodes, self._branch_data(topo), ga.sn_mva,
                 out.results())
        # the only group of the batch covers every row in order: slices, no scatter
        full = n_g == out.conv.shape[0] and bool(np.all(rows[1:] > rows[:-1]))
        at: Any = slice(None) if full else rows
        eg_pos = topo.eg_slack_pos
        act = eg_pos >= 0
        if act.any():
            eg = np.zeros((n_g, eg_pos.shape[0]), dtype=np.complex128)
            eg[:, act] = s_unit[:, eg_pos[act]]
            eg[~conv] = np.nan
            out.eg[at] = eg
        if gf_s.shape[1]:
            gf_s[~conv] = np.nan
            out.gf[at] = gf_s
        out.conv[at] = conv
        out.iters[at] = iters
