"""Batch power flow with IEEE 1547 DER functions solved inside it.

``ControlledPowerFlow(solver, devices=...)`` wraps a :class:`twin.grid.pf.BatchPowerFlow`
(one compiled net) and a set of inverters (sgen or storage rows, each with its
:class:`twin.grid.der_functions.DerFunctions`). ``.solve(...)`` finds, per scenario (lane),
the set-points ``x = (p, q)`` of the inverters that agree with the network:

    x = G(V(x))        G: the devices' functions (volt-var, volt-watt, ...), V: the power flow

Method: an outer quasi-Newton iteration per lane around the unchanged batch solver. The
sensitivity ``S`` of every device's voltage to every device's P and Q is measured once per
solver (2N perturbed power flows in one batch). At iterate ``x_k`` the power flow gives the
device voltages ``v_k`` and the residual ``r = G(v_k) - x_k``. The next set-points solve the
devices exactly against the *linearized* network: ``v = v_k + S (G(v) - x_k)`` by Newton's
method on the N device voltages (slopes of the curves by forward difference; exact curves, so
kinks and limits are respected), then ``x_{k+1} = x_k + w (G(v) - x_k)``. ``w`` starts at 1 and
halves in a lane whose residual grew (damping). Only lanes not yet converged are solved again: on
distribution feeders a batch takes two to three power flows per lane (measured in ``bench/hosting.py``
and the tests).

Stopping rule (stated tolerance): a lane has converged when every device's set-point is within
``tol_pu`` (per unit of its apparent-power rating) of what its functions give at the voltages
of the power flow of those same set-points; the returned voltages and flows are that power
flow's. A lane that does not converge within ``max_outer`` iterations is reported
(``controls_converged`` False) with its last state, never silently.

Open-loop response times: with ``previous`` set-points and a step ``dt_s``, each device moves
from ``previous`` toward ``G(V)`` by the first-order lag of
:func:`twin.grid.der_functions.first_order_lag`, solved with the network in the same way.

Signs: ``sgen`` rows are generation-positive, ``storage`` rows consumption-positive (as in
pandapower and :meth:`BatchPowerFlow.solve`); the DER functions work in generator
convention and this module converts.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from twin.grid._pf_single import BRANCH_FIELDS, NO_ZIP, lane_outputs, lane_result
from twin.grid.der_functions import DerFleet, DerFunctions, first_order_lag
from twin.grid.pf import BatchPowerFlow, PowerFlowResult

__all__ = ["ControlledPowerFlow", "ControlledResult", "DerDevice"]

FloatArray = NDArray[np.float64]
_FD_H = 1e-5  # voltage step (pu) for the curve slopes (forward difference)
_INNER_MAX = 4  # Newton steps on the linearized network per outer iteration (the outer loop corrects)
_INNER_TOL = 1e-7  # pu voltage
_NUMBA_DEVICE_WORK = 20_000  # lanes x devices from which the device work runs in numba
_PARALLEL_DEVICE_WORK = 20_000  # ... and in parallel (below: the serial kernels)
_FUSED_LANES = 1 << 62  # batches up to this size run the fused kernel (0: never; tests switch it)
_FUSED_BLOCK = 256  # lanes per fused kernel call; the blocks of a bigger batch run on threads
_PERTURB = 1e-3  # fraction of the ratings moved to measure the common-mode sensitivity


@dataclass(frozen=True)
class DerDevice:
    """One inverter of the net: ``element`` table, ``row`` position in it, its functions
    (``load`` rows: a V2G charger metered as a load, consumption-positive like storage)."""

    element: Literal["sgen", "storage", "load"]
    row: int
    functions: DerFunctions


@dataclass(frozen=True, eq=False)
class ControlledResult:
    """A controlled batch: the power flow at the final set-points and those set-points."""

    pf: PowerFlowResult
    sgen_p_mw: FloatArray  # (B, n_sgen) as solved (generation-positive)
    sgen_q_mvar: FloatArray
    storage_p_mw: FloatArray  # (B, n_storage) consumption-positive
    storage_q_mvar: FloatArray
    load_p_mw: FloatArray  # (B, n_load) consumption-positive (V2G chargers written in)
    load_q_mvar: FloatArray
    der_p_mw: FloatArray  # (B, N) device set-points, generator convention
    der_q_mvar: FloatArray
    der_vm_pu: FloatArray  # (B, N) terminal voltages
    controls_converged: NDArray[np.bool_]  # (B,) outer fixed point within tol_pu
    outer_iterations: NDArray[np.int64]  # (B,) power flows solved for each lane
    pf_solves: int  # batch solver calls

    @property
    def converged(self) -> NDArray[np.bool_]:
        """Power flow and controls both converged, per lane."""
        return self.pf.converged & self.controls_converged

    def curtailed_mw(self, p_avail_mw: ArrayLike) -> FloatArray:
        """(B, N) active power the functions withheld from ``p_avail_mw`` (>= 0)."""
        return np.asarray(np.maximum(np.asarray(p_avail_mw, dtype=np.float64) - self.der_p_mw, 0.0))


def _batch(name: str, value: ArrayLike | None, default: FloatArray) -> FloatArray:
    a = default[None, :] if value is None else np.asarray(value, dtype=np.float64)
    if a.ndim == 1:
        a = a[None, :]
    if a.ndim != 2 or a.shape[1] != default.shape[0]:
        raise ValueError(f"{name}: expected shape (B, {default.shape[0]}), got {a.shape}")
    return a


class ControlledPowerFlow:
    """Batch power flow with DER functions solved to a fixed point (see module docstring).

    Raises ``ValueError`` naming the device (``devices[i]``) for an unknown element or row.
    """

    def __init__(self, solver: BatchPowerFlow, *, devices: Sequence[DerDevice]) -> None:
        self._pf = solver
        ga = solver.arrays
        self._devices = tuple(devices)
        n = len(self._devices)
        self._row = np.zeros(n, dtype=np.int64)
        node = np.zeros(n, dtype=np.int64)
        tables = {"sgen": ga.sgen_node, "storage": ga.storage_node, "load": ga.load_node}
        self._of = {k: np.array([d.element == k for d in self._devices], dtype=bool) for k in tables}
        for i, d in enumerate(self._devices):
            if d.element not in tables:
                raise ValueError(f"devices[{i}].element: must be 'sgen', 'storage' or 'load', got {d.element!r}")
            nodes = tables[d.element]
            if not 0 <= d.row < nodes.shape[0]:
                raise ValueError(f"devices[{i}].row: {d.row} is not a row of net.{d.element}")
            self._row[i] = d.row
            node[i] = nodes[d.row]
        # bus position whose voltage each device sees (first bus of its electrical node)
        first_bus = np.full(max(ga.n_node, 1), -1, dtype=np.int64)
        for b in range(ga.n_bus - 1, -1, -1):
            if ga.bus_node[b] >= 0:
                first_bus[ga.bus_node[b]] = b
        self._bus = np.where(node >= 0, first_bus[np.maximum(node, 0)], -1)
        self._node = node
        self._kind = np.array([("sgen", "storage", "load").index(d.element) for d in self._devices], dtype=np.int64)
        self._loc: NDArray[np.int64] | None = None  # device node in the default topology (fused path)
        self._fleet = DerFleet.from_functions([d.functions for d in self._devices])
        self._sens: FloatArray | None = None
        fl = self._fleet
        self._nb_fleet = fl.kernel_arrays()
        self._use_nb = False  # set per solve: the numba device kernels

    @property
    def fleet(self) -> DerFleet:
        """The devices' functions as arrays."""
        return self._fleet

    @property
    def solver(self) -> BatchPowerFlow:
        """The wrapped batch power flow."""
        return self._pf

    # ----------------------------------------------------------------- internals

    def _apply(self, base: dict[str, FloatArray], p: FloatArray, q: FloatArray) -> dict[str, FloatArray]:
        """Injection arrays with the device set-points (generator convention) written in."""
        out = dict(base)
        for table, sign in (("sgen", 1.0), ("storage", -1.0), ("load", -1.0)):
            m = self._of[table]
            if m.any():
                kp, kq = f"{table}_p_mw", f"{table}_q_mvar"
                tp, tq = base[kp].copy(), base[kq].copy()
                tp[:, self._row[m]], tq[:, self._row[m]] = sign * p[:, m], sign * q[:, m]
                out[kp], out[kq] = tp, tq
        return out

    def _vm(self, res: PowerFlowResult) -> FloatArray:
        vm = res.vm_pu[:, np.maximum(self._bus, 0)]
        return np.asarray(np.where(self._bus >= 0, vm, 1.0), dtype=np.float64)

    def _sensitivity(self, base: dict[str, FloatArray], masks: dict[str, Any], tol: float) -> FloatArray:
        """(N, 2N) change of each device's voltage (pu) per MW of P then per Mvar of Q of
        every device, measured once with 2N perturbed power flows in one batch."""
        if self._sens is not None:
            return self._sens
        fl = self._fleet
        n = fl.size
        row0 = {k: v[:1] for k, v in base.items()}
        step = np.concatenate([_PERTURB * fl.p_rated_mw, _PERTURB * fl.s_rated_mva])
        dx = np.zeros((2 * n + 1, 2 * n))
        dx[1 + np.arange(2 * n), np.arange(2 * n)] = step
        inj: dict[str, Any] = self._apply({k: np.repeat(v, 2 * n + 1, axis=0) for k, v in row0.items()},
                                          dx[:, :n], dx[:, n:])
        inj.update({k: (None if v is None else np.asarray(v)[:1]) for k, v in masks.items()})
        res = self._pf.solve(**inj, tol=min(tol, 1e-10), branch_flows=False)
        vm = self._vm(res)
        self._sens = np.nan_to_num(((vm[1:] - vm[0]) / step[:, None]).T)
        return self._sens

    def _device_newton(self, v_k: FloatArray, x_p: FloatArray, x_q: FloatArray, avail: FloatArray,
                       freq: FloatArray | None, prev: tuple[FloatArray, FloatArray] | None,
                       dt_s: float | None, sens: FloatArray, on: Any) -> tuple[FloatArray, FloatArray]:
        """Set-points on the curves at the voltages that solve the linearized network
        ``v = v_k + S (G(v) - x_k)`` (Newton on the device voltages, exact curves)."""
        if self._use_nb and freq is None and prev is None:
            kern = _der_kernels()
            out_p, out_q = np.empty_like(v_k), np.empty_like(v_k)
            x = np.ascontiguousarray(np.concatenate([x_p, x_q], axis=1))
            newton = kern.device_newton if v_k.size >= _PARALLEL_DEVICE_WORK else kern.device_newton_ser
            # writable (a copy when read-only): the controlled kernel's lanes pass writable rows,
            # so both callers share one build of the inner newton_lane_into
            newton(_writable(v_k), x, _writable(avail), _writable(on[0]), _writable(on[1]), sens,
                   self._nb_fleet, _INNER_MAX, _INNER_TOL, _FD_H, out_p, out_q)
            return out_p, out_q
        n = self._fleet.size
        eye = np.eye(n)
        x = np.concatenate([x_p, x_q], axis=1)
        v = v_k.copy()
        act = np.arange(v.shape[0])  # lanes still iterating
        for _ in range(_INNER_MAX):
            a_ = act
            fa = None if freq is None else freq[a_]
            pa = None if prev is None else (prev[0][a_], prev[1][a_])
            oa = _rows(on, a_)
            va, av = v[a_], avail[a_]
            g_p, g_q = self._target(va, av, fa, pa, dt_s, oa)
            h = va - v_k[a_] - (np.concatenate([g_p, g_q], axis=1) - x[a_]) @ sens.T
            left = np.max(np.abs(h), axis=1) >= _INNER_TOL
            if not left.any():
                break
            act, h, va, av, g_p, g_q = a_[left], h[left], va[left], av[left], g_p[left], g_q[left]
            fa = None if fa is None else fa[left]
            pa = None if pa is None else (pa[0][left], pa[1][left])
            oa = _rows(oa, np.flatnonzero(left))
            hp, hq = self._target(va + _FD_H, av, fa, pa, dt_s, oa)
            d_p, d_q = (hp - g_p) / _FD_H, (hq - g_q) / _FD_H
            a_mat = eye[None] - sens[None, :, :n] * d_p[:, None, :] - sens[None, :, n:] * d_q[:, None, :]
            v[act] = va - np.linalg.solve(a_mat, h[:, :, None])[:, :, 0]
        return self._target(v, avail, freq, prev, dt_s, on)

    def _target(self, vm: FloatArray, p_avail: FloatArray, freq: FloatArray | None,
                prev: tuple[FloatArray, FloatArray] | None, dt_s: float | None,
                on: Any = None) -> tuple[FloatArray, FloatArray]:
        """Device outputs at voltages ``vm``; ``on`` = (in-service mask, rating scale) of
        the lanes, either may be None."""
        mask, scale = (None, None) if on is None else on
        if self._use_nb and freq is None and prev is None:
            kern = _der_kernels()
            out_p, out_q = np.empty(vm.shape), np.empty(vm.shape)
            tgt = kern.targets if vm.size >= _PARALLEL_DEVICE_WORK else kern.targets_ser
            tgt(_frozen(vm), _frozen(p_avail), _frozen(mask), _frozen(scale), self._nb_fleet,
                out_p, out_q)
            return out_p, out_q
        if scale is None:
            p, q = self._fleet.targets(vm, p_avail, freq)
        else:
            p, q = self._fleet.targets(vm, p_avail / scale, freq)
            p, q = p * scale, q * scale
        if prev is not None and dt_s is not None:
            p = first_order_lag(prev[0], p, dt_s=dt_s, response_time_s=self._fleet.p_response_s)
            q = first_order_lag(prev[1], q, dt_s=dt_s, response_time_s=self._fleet.q_response_s)
        if mask is not None:
            p, q = np.where(mask, p, 0.0), np.where(mask, q, 0.0)
        return p, q

    def _fused_ok(self) -> bool:
        """Whether the fused kernel may run: numba wanted by the solver's policy (or its
        kernels already loaded in this process), and every device on an energized node of
        the net's own topology."""
        pf = self._pf
        if self._fleet.size == 0 or pf.kernel == "numpy" or pf.grid_forming_units:
            return False
        if pf.kernel == "auto" and not pf.single_numba() and "twin.grid._kernels" not in sys.modules:
            return False
        if self._loc is None:
            topo = pf.default_topology()
            pos = np.full(max(pf.arrays.n_node, 1), -1, dtype=np.int64)
            pos[topo.pq_nodes] = np.arange(topo.pq_nodes.shape[0])
            pos[topo.slack_nodes] = -2 - np.arange(topo.slack_nodes.shape[0])
            loc = np.where(self._node >= 0, pos[np.maximum(self._node, 0)], -1)
            self._loc = loc if np.all(loc != -1) else np.zeros(0, dtype=np.int64)
        return self._loc.shape[0] == self._fleet.size

    def _fused_inputs(self, values: dict[str, ArrayLike | None], avail: ArrayLike,
                      der_in_service: ArrayLike | None, der_scale: ArrayLike | None) -> tuple[Any, ...] | None:
        """(B, n) writable copies of the injections, and avail, mask, scale (B, N); None
        for anything but plain finite float rows of one batch size (the general path checks
        and reports it)."""
        ga = self._pf.arrays
        n = self._fleet.size
        defaults = {"load_p_mw": ga.load_p_mw, "load_q_mvar": ga.load_q_mvar, "sgen_p_mw": ga.sgen_p_mw,
                    "sgen_q_mvar": ga.sgen_q_mvar, "storage_p_mw": ga.storage_p_mw,
                    "storage_q_mvar": ga.storage_q_mvar}
        n_b = 1
        arrs: list[NDArray[Any] | None] = []
        given: list[bool] = []
        for name, default in defaults.items():
            v = values[name]
            arrs.append(default if v is None else np.asarray(v, dtype=np.float64))
            given.append(v is not None)
        arrs += [np.asarray(avail, dtype=np.float64),
                 None if der_in_service is None else np.asarray(der_in_service, dtype=bool),
                 None if der_scale is None else np.asarray(der_scale, dtype=np.float64)]
        given += [True, False, der_scale is not None]
        widths = [d.shape[0] for d in defaults.values()] + [n, n, n]
        for a, m in zip(arrs, widths, strict=True):
            if a is None:
                continue
            if a.shape[-1:] != (m,) or a.ndim > 2:
                return None
            if a.ndim == 2 and a.shape[0] != 1:
                if n_b not in (1, a.shape[0]):
                    return None
                n_b = a.shape[0]
        out: list[Any] = []
        for a, m, g in zip(arrs, widths, given, strict=True):
            if a is None:
                out.append(None)
                continue
            c = np.empty((n_b, m), dtype=a.dtype)
            c[...] = a
            if g and not math.isfinite(float(c.sum())):
                return None
            out.append(c)
        return n_b, out

    def _solve_fused(self, values: dict[str, ArrayLike | None], avail_in: ArrayLike,
                     der_in_service: ArrayLike | None, der_scale: ArrayLike | None,
                     start: tuple[ArrayLike, ArrayLike, ArrayLike] | None, tol_pu: float,
                     max_outer: int, tol: float, branch_flows: bool) -> ControlledResult | None:
        """Every lane in serial numba calls (:func:`twin.grid._kernels.controlled.controlled_lanes`,
        the same outer iteration as :meth:`solve`, with no Python between the power flows, the
        lanes streaming through 32 slots that share the fixed point's vectorized loops), one call per block of
        ``_FUSED_BLOCK`` lanes, the blocks on threads (the kernel releases the GIL); None when it cannot run (more than ``_FUSED_LANES`` lanes, inputs the general
        path must check) or a lane's power flow did not converge (the general path's Newton
        fallback)."""
        sens = self._sens
        got = self._fused_inputs(values, avail_in, der_in_service, der_scale)
        if got is None or sens is None or got[0] > _FUSED_LANES:
            return None
        n_b, (load_p, load_q, sgen_p, sgen_q, sto_p, sto_q, avail, mask, scale) = got
        pf = self._pf
        ga = pf.arrays
        st = pf.single_static(ga.br_default_in_service)
        if st is None:
            return None
        (use_zip, inv_sn, slack_vm, v0, lu, nodes, post_br, ref), load_loc, sgen_loc, storage_loc, eg_pos = st[1]
        n = avail.shape[1]
        rows = np.arange(n_b, dtype=np.int64)
        res, eg, status = lane_outputs(ga, n_b, eg_pos.shape[0])
        tol_mva = np.empty((n_b, n))
        tol_mva[...] = tol_pu * self._fleet.s_rated_mva
        if scale is None:
            scale = np.ones((n_b, n))
        else:
            tol_mva *= scale
        if mask is None:
            mask = np.ones((n_b, n), dtype=bool)
        x_p, x_q, vm = np.empty((n_b, n)), np.empty((n_b, n)), np.empty((n_b, n))
        if start is not None:
            for dst, a in zip((x_p, x_q, vm), start, strict=True):
                dst[...] = np.asarray(a, dtype=np.float64)
        ctl_conv, outer = np.zeros(n_b, dtype=bool), np.zeros(n_b, dtype=np.int64)
        kern = _controlled_kernel()
        fleet = self._nb_fleet
        ctl = (max_outer, _INNER_MAX, _INNER_TOL, _FD_H, start is not None)
        loads, sgens, stos = (load_p, load_q, load_loc), (sgen_p, sgen_q, sgen_loc), (sto_p, sto_q, storage_loc)
        eg_all = (eg_pos, *eg)
        dev = (self._kind, self._row, self._loc, avail, mask, scale, sens, tol_mva)
        x_all, ctl_all = (x_p, x_q, vm), (ctl_conv, outer)

        def call(r: Any, cut: Any) -> None:
            """Lanes ``cut`` (a row slice, or None: all) in one serial kernel call (row slices
            of C-contiguous arrays: the same array types, no new compile)."""
            def c(a: Any) -> Any:
                return a if cut is None else a[cut]

            kern.controlled_lanes(
                ((r, r, c(loads[0]), c(loads[1]), load_loc, ga.load_zip), (r, r, c(sgens[0]), c(sgens[1]), sgen_loc,
                 NO_ZIP), (r, r, c(stos[0]), c(stos[1]), storage_loc, NO_ZIP), use_zip, inv_sn, slack_vm),
                v0, lu, (tol, 100), nodes, post_br, ga.sn_mva, ref,
                res if cut is None else tuple(a[cut] for a in res),
                eg_all if cut is None else (eg_pos, *(a[cut] for a in eg)),
                status if cut is None else tuple(a[cut] for a in status),
                dev if cut is None else (*dev[:3], *(a[cut] for a in dev[3:6]), sens, tol_mva[cut]),
                fleet, ctl, x_all if cut is None else tuple(a[cut] for a in x_all),
                ctl_all if cut is None else tuple(a[cut] for a in ctl_all))

        if n_b <= _FUSED_BLOCK:
            call(rows, None)
        else:  # fixed blocks (the results do not depend on the thread count), nogil kernel
            cuts = [slice(lo, min(lo + _FUSED_BLOCK, n_b)) for lo in range(0, n_b, _FUSED_BLOCK)]
            list(_block_pool().map(lambda cut: call(rows[: cut.stop - cut.start], cut), cuts))
        if not status[1].all():
            return None
        out = lane_result(ga, res, eg, status)
        if not branch_flows:
            for name in BRANCH_FIELDS:
                getattr(out, name)[...] = np.nan
        return ControlledResult(
            pf=out, sgen_p_mw=sgen_p, sgen_q_mvar=sgen_q, storage_p_mw=sto_p, storage_q_mvar=sto_q,
            load_p_mw=load_p, load_q_mvar=load_q, der_p_mw=x_p, der_q_mvar=x_q, der_vm_pu=vm,
            controls_converged=ctl_conv, outer_iterations=outer, pf_solves=int(outer.max()),
        )

    # ----------------------------------------------------------------- solve

    def solve(
        self,
        *,
        der_p_avail_mw: ArrayLike,
        load_p_mw: ArrayLike | None = None,
        load_q_mvar: ArrayLike | None = None,
        sgen_p_mw: ArrayLike | None = None,
        sgen_q_mvar: ArrayLike | None = None,
        storage_p_mw: ArrayLike | None = None,
        storage_q_mvar: ArrayLike | None = None,
        line_in_service: ArrayLike | None = None,
        trafo_in_service: ArrayLike | None = None,
        freq_hz: ArrayLike | None = None,
        previous: tuple[ArrayLike, ArrayLike] | None = None,
        der_in_service: ArrayLike | None = None,
        der_scale: ArrayLike | None = None,
        dt_s: float | None = None,
        start: tuple[ArrayLike, ArrayLike, ArrayLike] | None = None,
        tol_pu: float = 1e-4,
        max_outer: int = 30,
        tol: float = 1e-8,
        branch_flows: bool = True,
    ) -> ControlledResult:
        """Solve B controlled power flows.

        ``der_p_avail_mw`` (B, N) or (N,): what each device would do unconstrained, generator
        convention (PV: available power; battery or V2G: its schedule, discharging positive);
        the device rows of ``sgen_*`` / ``storage_*`` are overwritten by the solved set-points.
        ``freq_hz`` (B,) drives frequency-watt. ``previous`` (p, q) (B, N) and ``dt_s`` apply
        the open-loop response times. ``der_in_service`` (B, N) bool switches devices off per
        lane (no P, no Q: e.g. hosting studies where a placement has no PV at a bus);
        ``der_scale`` (B, N) multiplies every device's ratings per lane (the functions are then
        given per unit of that scale; the tolerance scales with it). ``start`` (p, q, vm) (B, N):
        a solution of a nearby case (e.g. the previous step's ``der_p_mw``, ``der_q_mvar``,
        ``der_vm_pu``): the first set-points then solve the devices against the network
        linearized there with today's ``der_p_avail_mw`` (warm start; the stopping rule is
        unchanged). Other arguments as :meth:`BatchPowerFlow.solve`.
        """
        if not (tol_pu > 0 and np.isfinite(tol_pu)):
            raise ValueError(f"tol_pu: must be a positive number, got {tol_pu}")
        if max_outer < 1:
            raise ValueError(f"max_outer: must be >= 1, got {max_outer}")
        fused_args: tuple[Any, ...] | None = None
        if (freq_hz is None and previous is None and line_in_service is None and trafo_in_service is None
                and self._fused_ok()):
            values = {"load_p_mw": load_p_mw, "load_q_mvar": load_q_mvar, "sgen_p_mw": sgen_p_mw,
                      "sgen_q_mvar": sgen_q_mvar, "storage_p_mw": storage_p_mw, "storage_q_mvar": storage_q_mvar}
            fused_args = (values, der_p_avail_mw, der_in_service, der_scale, start, tol_pu, max_outer, tol,
                          branch_flows)
            if self._sens is not None:
                fused = self._solve_fused(*fused_args)
                if fused is not None:
                    return fused
                fused_args = None
        ga = self._pf.arrays
        fl = self._fleet
        n = fl.size
        base = {
            "load_p_mw": _batch("load_p_mw", load_p_mw, ga.load_p_mw),
            "load_q_mvar": _batch("load_q_mvar", load_q_mvar, ga.load_q_mvar),
            "sgen_p_mw": _batch("sgen_p_mw", sgen_p_mw, ga.sgen_p_mw),
            "sgen_q_mvar": _batch("sgen_q_mvar", sgen_q_mvar, ga.sgen_q_mvar),
            "storage_p_mw": _batch("storage_p_mw", storage_p_mw, ga.storage_p_mw),
            "storage_q_mvar": _batch("storage_q_mvar", storage_q_mvar, ga.storage_q_mvar),
        }
        avail = np.asarray(der_p_avail_mw, dtype=np.float64)
        if avail.ndim == 1:
            avail = avail[None, :]
        if avail.ndim != 2 or avail.shape[1] != n:
            raise ValueError(f"der_p_avail_mw: expected shape (B, {n}), got {avail.shape}")
        masks: dict[str, Any] = {"line_in_service": line_in_service, "trafo_in_service": trafo_in_service}
        freq = None if freq_hz is None else np.atleast_1d(np.asarray(freq_hz, dtype=np.float64))
        sizes = {a.shape[0] for a in (*base.values(), avail)} | ({freq.shape[0]} if freq is not None else set())
        for v in masks.values():
            if v is not None and np.ndim(v) == 2:
                sizes.add(np.shape(v)[0])
        for extra in (der_in_service, der_scale):
            if extra is not None and np.ndim(extra) == 2:
                sizes.add(np.shape(extra)[0])
        sizes.discard(1)
        if len(sizes) > 1:
            raise ValueError(f"inconsistent batch sizes: {sorted(sizes)}")
        n_b = sizes.pop() if sizes else 1
        base = {k: np.broadcast_to(v, (n_b, v.shape[1])) for k, v in base.items()}
        avail = np.broadcast_to(avail, (n_b, n)).copy()
        if freq is not None:
            freq = np.broadcast_to(freq, (n_b,))[:, None]
        on = None
        if der_in_service is not None or der_scale is not None:
            on = (None if der_in_service is None else np.broadcast_to(np.asarray(der_in_service, dtype=bool), (n_b, n)),
                  None if der_scale is None else np.broadcast_to(np.asarray(der_scale, dtype=np.float64), (n_b, n)))
        # big batches without frequency-watt input or lag: device work in numba
        # (or any batch once the kernels are loaded in this process: no compile cost left)
        self._use_nb = freq is None and previous is None and n > 0 and (
            n_b * n >= _NUMBA_DEVICE_WORK or "twin.grid._der_kernels" in sys.modules)
        if self._use_nb:
            mask = np.ones((n_b, n), dtype=bool) if on is None or on[0] is None else np.ascontiguousarray(on[0])
            scale = np.ones((n_b, n)) if on is None or on[1] is None else np.ascontiguousarray(on[1], dtype=np.float64)
            on = (mask, scale)
        prev = None
        if previous is not None:
            prev = (np.broadcast_to(np.asarray(previous[0], dtype=np.float64), (n_b, n)),
                    np.broadcast_to(np.asarray(previous[1], dtype=np.float64), (n_b, n)))
        sens = self._sensitivity(base, masks, tol)
        if fused_args is not None:  # the sensitivity is known now
            fused = self._solve_fused(*fused_args)
            if fused is not None:
                return fused

        def rows_of(v: Any, rows: NDArray[np.int64]) -> Any:
            return v if v is None or np.ndim(v) < 2 or np.shape(v)[0] == 1 else np.asarray(v)[rows]

        if start is None:  # start: the functions at the voltage of a flat 1 pu (no network call)
            x_p, x_q = self._target(np.ones((n_b, n)), avail, freq, prev, dt_s, on)
        else:  # warm start: the devices against the network linearized at a known solution
            s_p, s_q, s_v = (np.broadcast_to(np.asarray(a, dtype=np.float64), (n_b, n)) for a in start)
            x_p, x_q = self._device_newton(np.ascontiguousarray(s_v), np.ascontiguousarray(s_p),
                                           np.ascontiguousarray(s_q), avail, freq, prev, dt_s, sens, on)
        tol_mva = tol_pu * fl.s_rated_mva
        if der_scale is not None:
            tol_mva = tol_mva * np.broadcast_to(np.asarray(der_scale, dtype=np.float64), (n_b, n))
        w = np.ones((n_b, 1))
        last_res = np.full(n_b, np.inf)
        done = np.zeros(n_b, dtype=bool)
        iters = np.zeros(n_b, dtype=np.int64)
        out: PowerFlowResult | None = None
        vm_dev = np.ones((n_b, n))
        active = np.arange(n_b, dtype=np.int64)
        calls = 0
        for it in range(max_outer):
            inj: dict[str, Any] = self._apply({k: v[active] for k, v in base.items()}, x_p[active], x_q[active])
            inj.update({k: rows_of(v, active) for k, v in masks.items()})
            res = self._pf.solve(**inj, tol=tol, branch_flows=branch_flows)
            calls += 1
            out = res if out is None else _merge(out, res, active)
            iters[active] += 1
            vm = self._vm(res)
            vm_dev[active] = vm
            fa = None if freq is None else freq[active]
            pa = None if prev is None else (prev[0][active], prev[1][active])
            g_p, g_q = self._target(vm, avail[active], fa, pa, dt_s, _rows(on, active))
            r_p, r_q = g_p - x_p[active], g_q - x_q[active]
            tol_a = tol_mva[active] if tol_mva.ndim == 2 else tol_mva
            resid = np.max(np.maximum(np.abs(r_p), np.abs(r_q)) / tol_a, axis=1)
            ok = (resid <= 1.0) | ~res.converged
            done[active[ok]] = True
            # quasi-Newton on x: J = dG/dV S - I with the measured sensitivity S and each
            # device's curve slopes at its present voltage; a lane whose residual grew is damped
            grew = resid > last_res[active]
            w[active[grew]] *= 0.5
            last_res[active] = resid
            keep = ~ok
            if not keep.any():
                active = active[:0]
                break
            sub = active[keep]
            vk, ak = vm[keep], avail[sub]
            fk = None if freq is None else freq[sub]
            pk = None if prev is None else (prev[0][sub], prev[1][sub])
            if it == max_outer - 1:
                break  # the returned set-points stay those of the last power flow
            new_p, new_q = self._device_newton(vk, x_p[sub], x_q[sub], ak, fk, pk, dt_s, sens,
                                               _rows(on, sub))
            wk = w[sub]
            x_p[sub] += wk * (new_p - x_p[sub])
            x_q[sub] += wk * (new_q - x_q[sub])
            active = sub
        assert out is not None
        final = self._apply(base, x_p, x_q)
        conv = done & out.converged
        return ControlledResult(
            pf=out, sgen_p_mw=final["sgen_p_mw"], sgen_q_mvar=final["sgen_q_mvar"],
            storage_p_mw=final["storage_p_mw"], storage_q_mvar=final["storage_q_mvar"],
            load_p_mw=final["load_p_mw"], load_q_mvar=final["load_q_mvar"],
            der_p_mw=x_p, der_q_mvar=x_q, der_vm_pu=vm_dev, controls_converged=conv,
            outer_iterations=iters, pf_solves=calls,
        )


def _der_kernels() -> Any:
    from twin.grid import _der_kernels as k  # numba import and compile on first use only

    return k


def _controlled_kernel() -> Any:
    from twin.grid._kernels import controlled as k  # numba import and compile on first use only

    return k


_POOL: ThreadPoolExecutor | None = None


def _block_pool() -> ThreadPoolExecutor:
    """Threads for the fused kernel's blocks (created on first use; one per numba thread)."""
    global _POOL
    if _POOL is None:
        import numba

        _POOL = ThreadPoolExecutor(max_workers=max(1, numba.get_num_threads()), thread_name_prefix="twin-cpf")
    return _POOL


def _frozen(a: Any) -> Any:
    """A read-only C-contiguous view of a kernel input (None stays None): numba compiles a
    kernel once per argument type, and read-only (broadcast) and writable arrays differ."""
    if a is None:
        return None
    v = np.ascontiguousarray(a).view()
    v.flags.writeable = False
    return v


def _writable(a: Any) -> Any:
    """A writable C-contiguous kernel input (copied only when read-only or strided)."""
    return np.require(a, requirements=("C", "W"))


def _rows(on: Any, rows: NDArray[np.int64]) -> Any:
    if on is None:
        return None
    return tuple(None if a is None else a[rows] for a in on)


def _merge(full: PowerFlowResult, part: PowerFlowResult, rows: NDArray[np.int64]) -> PowerFlowResult:
    """``full`` with the lanes ``rows`` replaced by ``part`` (in place; returns ``full``)."""
    for name in full.__dataclass_fields__:
        getattr(full, name)[rows] = getattr(part, name)
    return full
