"""Three-phase batch power flow with its controls: IEEE 1547 DER functions and regulators.

``ControlledPowerFlow3ph(feeder, devices=..., regulators=...)`` wraps
:class:`twin.grid.pf3ph.BatchPowerFlow3ph` (one solver per set of regulator taps, cached)
and solves B lanes at once:

* **DER functions** (:class:`Der3phDevice`: an inverter at a bus on one, two or three
  phases with its :class:`twin.grid.der_functions.DerFunctions`). ``sensing="per_phase"``
  (default) splits the inverter into one unit per phase, each with its share of the ratings
  and answering its own phase-to-ground voltage (volt-var and volt-watt per phase);
  ``sensing="mean"`` answers the mean of its phase voltages with one set-point split
  equally. The set-points and the network are solved together by the quasi-Newton outer
  iteration of :mod:`twin.grid.controlled_pf` (the device Newton step on a measured
  voltage sensitivity, damping per lane), to ``tol_pu`` of each unit's rating.
* **Regulators** (:class:`twin.grid.regcontrol3ph.Regulator3ph`, OpenDSS ``RegControl``):
  OpenDSS's static control loop, per lane: solve (with the DER functions to their fixed
  point at these taps), sample, let the armed regulators with the shortest delay act,
  repeat until none is armed. Lanes whose taps did not move are not solved again, and the
  DER set-points of a lane start from its previous control iteration (warm start).

Non-convergence is reported per lane: ``controls_converged`` (DER fixed point) and
``regulators_converged`` (no regulator armed within ``max_control_iter``).

Conventions: ``p_mw`` / ``q_mvar`` (B, n_bus, 3) are consumption-positive per-phase loads
(as :meth:`BatchPowerFlow3ph.solve`); device set-points are generator-convention MW / Mvar.
"""

from __future__ import annotations

import dataclasses
import sys
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from twin.grid import capcontrol3ph
from twin.grid.capcontrol3ph import CapControl3ph, CapState
from twin.grid.controlled_pf import ControlledPowerFlow
from twin.grid.der_functions import DerFleet, DerFunctions
from twin.grid.feeder3ph import Feeder3ph
from twin.grid.pf3ph import BatchPowerFlow3ph, PowerFlow3phResult
from twin.grid.regcontrol3ph import (
    RegState,
    Regulator3ph,
    act,
    control_voltage_v,
    sample,
    scaled_elem_y,
)

__all__ = ["Controlled3phResult", "ControlledPowerFlow3ph", "Der3phDevice"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
_PERTURB = 1e-3  # fraction of the ratings moved to measure the voltage sensitivity
_SOLVERS = 64  # cached solvers (tap combinations)


@dataclass(frozen=True)
class Der3phDevice:
    """An inverter at feeder bus ``bus`` (index) on ``phases`` (0/1/2 = a/b/c)."""

    bus: int
    phases: tuple[int, ...]
    functions: DerFunctions
    sensing: Literal["per_phase", "mean"] = "per_phase"


@dataclass(frozen=True, eq=False)
class Controlled3phResult:
    """The power flow at the final set-points and taps, and those set-points and taps."""

    pf: PowerFlow3phResult
    der_p_mw: FloatArray  # (B, N) per device, generator convention
    der_q_mvar: FloatArray
    unit_p_mw: FloatArray  # (B, U) per unit (phase share) of the devices
    unit_q_mvar: FloatArray
    unit_vm_pu: FloatArray  # (B, U) the voltage each unit answers
    taps: IntArray  # (B, R) regulator tap numbers
    controls_converged: BoolArray  # (B,)
    regulators_converged: BoolArray  # (B,)
    outer_iterations: IntArray  # (B,) power flows solved for the DER fixed points
    control_iterations: IntArray  # (B,) regulator solve-sample-act rounds
    pf_solves: int

    @property
    def converged(self) -> BoolArray:
        """Power flow, DER functions and regulators all converged, per lane."""
        return np.asarray(self.pf.converged & self.controls_converged & self.regulators_converged)


class _Units(ControlledPowerFlow):
    """The device-side steps of :class:`ControlledPowerFlow` (targets, device Newton) on a fleet."""

    def __init__(self, fleet: DerFleet) -> None:  # no balanced solver: only the fleet is used
        self._fleet = fleet
        self._use_nb = False
        self._sens = None
        fl = fleet
        self._nb_fleet = fl.kernel_arrays()


class ControlledPowerFlow3ph:
    """Three-phase batch power flow with DER functions and regulators (see the module doc)."""

    def __init__(self, feeder: Feeder3ph, *, devices: Sequence[Der3phDevice] = (),
                 regulators: Sequence[Regulator3ph] = (), use_numba: bool | None = None,
                 solver: BatchPowerFlow3ph | None = None) -> None:
        self.feeder = feeder
        self.devices = tuple(devices)
        self.regulators = tuple(regulators)
        self._use_numba = use_numba
        self._solvers: OrderedDict[tuple[int, ...], BatchPowerFlow3ph] = OrderedDict()
        self._own = solver  # ``solver``: an existing solver of ``feeder`` (its LU cache is shared)
        if solver is not None and solver.feeder is not feeder:
            raise ValueError("solver: must be a BatchPowerFlow3ph of the same feeder")
        has = feeder.node_of >= 0
        dev, bus, wv, scale, funcs = [], [], [], [], []
        for i, d in enumerate(self.devices):
            path = f"devices[{i}]"
            if not 0 <= d.bus < feeder.n_bus:
                raise ValueError(f"{path}.bus: {d.bus} is not a bus of the feeder ({feeder.n_bus} buses)")
            ph = tuple(d.phases)
            if not ph or len(set(ph)) != len(ph) or any(p not in (0, 1, 2) for p in ph):
                raise ValueError(f"{path}.phases: must be distinct phases among 0, 1, 2 (a, b, c), got {d.phases}")
            for p in ph:
                if not has[d.bus, p]:
                    raise ValueError(f"{path}.phases: bus {feeder.bus_names[d.bus]!r} has no phase {'abc'[p]}")
            if d.sensing not in ("per_phase", "mean"):
                raise ValueError(f"{path}.sensing: must be 'per_phase' or 'mean', got {d.sensing!r}")
            groups = [(p,) for p in ph] if d.sensing == "per_phase" else [ph]
            for g in groups:
                w = np.zeros(3)
                w[list(g)] = 1.0 / len(g)
                dev.append(i)
                bus.append(d.bus)
                wv.append(w)
                scale.append(len(g) / len(ph))
                funcs.append(d.functions)
        self._unit_dev = np.array(dev, dtype=np.int64)
        self._unit_bus = np.array(bus, dtype=np.int64)
        self._w_v = np.array(wv).reshape(-1, 3)  # voltage weights per phase
        self._w_s = self._w_v  # a unit's power is split over its phases as its voltage is averaged
        self._scale = np.array(scale, dtype=np.float64)
        self._units = _Units(DerFleet.from_functions(funcs)) if funcs else None
        self._sens: FloatArray | None = None
        for r, reg in enumerate(self.regulators):
            if not 0 <= reg.elem < len(feeder.elem_names):
                raise ValueError(f"regulators[{r}].elem: {reg.elem} is not an element of the feeder")
        # regulators and switched capacitors share the taps vector (a capacitor's "tap": its steps in)
        self._ci = np.array([r for r, g in enumerate(self.regulators) if isinstance(g, CapControl3ph)], dtype=np.int64)
        self._ri = np.array([r for r, g in enumerate(self.regulators) if not isinstance(g, CapControl3ph)],
                            dtype=np.int64)
        self._regs = tuple(self.regulators[r] for r in self._ri)
        self._caps = tuple(self.regulators[c] for c in self._ci)
        # the regulators' CT conductors: element rows of Y (taps applied per lane)
        self._reg_rows = [self._reg_ct(reg) for reg in self._regs]

    # ------------------------------------------------------------------ helpers

    @property
    def n_units(self) -> int:
        """Number of device units (one per phase of a per-phase device)."""
        return int(self._unit_dev.size)

    def tap0(self) -> IntArray:
        """(R,) the tap numbers of the feeder's own admittances."""
        return np.array([r.tap_number(r.tap0_pu) for r in self.regulators], dtype=np.int64)

    def _reg_ct(self, reg: Regulator3ph) -> tuple[Any, ...]:
        f = self.feeder
        a, b = int(f.elem_ptr[reg.elem]), int(f.elem_ptr[reg.elem + 1])
        y0 = f.elem_y[reg.elem]
        nodes = f.elem_nodes[a:b]
        d_idx = reg.tap_conds - a
        rows = reg.ct_cond - a
        return y0[rows], np.where(nodes >= 0, nodes, f.n_node), d_idx, rows

    def _solver(self, taps: tuple[int, ...]) -> BatchPowerFlow3ph:
        s = self._solvers.get(taps)
        if s is None:
            f = self.feeder
            if self.regulators and taps != tuple(self.tap0()):
                s = BatchPowerFlow3ph(dataclasses.replace(f, elem_y=scaled_elem_y(f, self.regulators, taps)),
                                      use_numba=self._use_numba)
            else:
                s = self._own if self._own is not None else BatchPowerFlow3ph(f, use_numba=self._use_numba)
            self._solvers[taps] = s
            if len(self._solvers) > _SOLVERS:
                self._solvers.popitem(last=False)
        else:
            self._solvers.move_to_end(taps)
        return s

    def _pf(self, p: FloatArray, q: FloatArray, taps: IntArray, base_loads: bool, tol: float,
            elem_on: BoolArray | None = None) -> PowerFlow3phResult:
        """Solve lanes (k, n_bus, 3) each at its taps (k, R): one batch per tap combination;
        ``elem_on``: the topology (None: every element in service)."""
        if taps.shape[1] == 0:
            return self._solver(()).solve(p_mw=p, q_mvar=q, base_loads=base_loads, tol=tol, elem_in_service=elem_on)
        uniq, inv = np.unique(taps, axis=0, return_inverse=True)
        inv = np.asarray(inv).reshape(-1)
        if uniq.shape[0] == 1:
            return self._solver(tuple(int(t) for t in uniq[0])).solve(p_mw=p, q_mvar=q, base_loads=base_loads, tol=tol,
                                                                      elem_in_service=elem_on)
        out: PowerFlow3phResult | None = None
        for g in range(uniq.shape[0]):
            rows = np.flatnonzero(inv == g)
            r = self._solver(tuple(int(t) for t in uniq[g])).solve(p_mw=p[rows], q_mvar=q[rows],
                                                                   base_loads=base_loads, tol=tol,
                                                                   elem_in_service=elem_on)
            if out is None:
                out = _alloc(r, p.shape[0])
            _put(out, r, rows)
        assert out is not None
        return out

    def _inject(self, p: FloatArray, q: FloatArray, x_p: FloatArray, x_q: FloatArray) -> tuple[FloatArray, FloatArray]:
        """Per-phase loads with the units' set-points (generator convention) added."""
        if self._units is None:
            return p, q
        p2, q2 = p.copy(), q.copy()
        ws = self._w_s
        for u in range(self.n_units):
            b = self._unit_bus[u]
            p2[:, b, :] -= x_p[:, u, None] * ws[u]
            q2[:, b, :] -= x_q[:, u, None] * ws[u]
        return p2, q2

    def _vm_units(self, res: PowerFlow3phResult) -> FloatArray:
        vm = np.nan_to_num(res.vm_pu[:, self._unit_bus, :], nan=0.0)  # (B, U, 3)
        out = np.einsum("bup,up->bu", vm, self._w_v)
        return np.asarray(np.where(res.converged[:, None], out, 1.0))

    def _sensitivity(self, p: FloatArray, q: FloatArray, taps: IntArray, base_loads: bool,
                     elem_on: BoolArray | None = None) -> FloatArray:
        """(U, 2U) change of each unit's voltage per MW of P, then per Mvar of Q, of every unit
        (measured once on the first lane: 2U + 1 power flows in one batch)."""
        if self._sens is not None:
            return self._sens
        assert self._units is not None
        fl = self._units.fleet
        n = self.n_units
        step = np.concatenate([_PERTURB * fl.p_rated_mw * self._scale, _PERTURB * fl.s_rated_mva * self._scale])
        dx = np.zeros((2 * n + 1, 2 * n))
        dx[1 + np.arange(2 * n), np.arange(2 * n)] = step
        pp, qq = self._inject(np.repeat(p[:1], 2 * n + 1, axis=0), np.repeat(q[:1], 2 * n + 1, axis=0),
                              dx[:, :n], dx[:, n:])
        res = self._pf(pp, qq, np.repeat(taps[:1], 2 * n + 1, axis=0), base_loads, 1e-10, elem_on)
        vm = self._vm_units(res)
        self._sens = np.nan_to_num(((vm[1:] - vm[0]) / step[:, None]).T)
        return self._sens

    # ------------------------------------------------------------------ solve

    def solve(
        self,
        p_mw: ArrayLike | None = None,
        q_mvar: ArrayLike | None = None,
        *,
        der_p_avail_mw: ArrayLike | None = None,
        taps: ArrayLike | None = None,
        regulate: bool | Sequence[bool] = True,
        freq_hz: ArrayLike | None = None,
        time_s: ArrayLike | None = None,
        elem_in_service: ArrayLike | None = None,
        base_loads: bool = True,
        tol: float = 1e-8,
        tol_pu: float = 1e-4,
        max_outer: int = 30,
        max_control_iter: int = 15,
    ) -> Controlled3phResult:
        """Solve B controlled power flows.

        ``p_mw`` / ``q_mvar`` (B, n_bus, 3): per-phase loads besides the devices (consumption-
        positive); ``der_p_avail_mw`` (B, N) or (N,): what each device would do unconstrained
        (generator convention: PV available power, battery schedule); ``taps`` (B, R) or (R,):
        the regulators' starting tap numbers (default: the feeder's); ``regulate=False`` keeps
        them, a sequence of R bools keeps those that are False (e.g. a changer stepped in time
        series by its own controller). ``freq_hz`` (B,) or scalar: the system frequency the devices' frequency-watt
        droop answers (None: nominal, no droop). ``time_s`` (B,) or scalar: the solution time
        (seconds since hour 0, OpenDSS's ``3600 intHour + t``) that time-of-day CapControls
        (``ctype="time"``) switch on; needed when there is one. ``elem_in_service`` (n_elem,) bool:
        the topology (a faulted or switched feeder; None: every element in service); the
        regulators and capacitors act on it as on the healthy one, a monitored element out
        of service carrying no current. ``tol`` is the power flow's, ``tol_pu`` the DER fixed point's (per unit of each
        unit's rating), ``max_control_iter`` bounds the regulator rounds (OpenDSS's
        ``maxcontroliter``).
        """
        f = self.feeder
        n_dev, n_reg = len(self.devices), len(self.regulators)
        arrs = [np.asarray(a, dtype=np.float64) for a in (p_mw, q_mvar) if a is not None]
        for name, a in (("p_mw", p_mw), ("q_mvar", q_mvar)):
            if a is not None and (np.ndim(a) not in (2, 3) or np.shape(a)[-2:] != (f.n_bus, 3)):
                raise ValueError(f"{name}: expected shape (B, {f.n_bus}, 3), got {np.shape(a)}")
        avail = np.zeros((1, n_dev)) if der_p_avail_mw is None else np.asarray(der_p_avail_mw, dtype=np.float64)
        avail = avail[None] if avail.ndim == 1 else avail
        if avail.ndim != 2 or avail.shape[1] != n_dev:
            raise ValueError(f"der_p_avail_mw: expected shape (B, {n_dev}), got {avail.shape}")
        t0 = self.tap0() if taps is None else np.asarray(taps, dtype=np.int64)
        t0 = t0[None] if t0.ndim == 1 else t0
        if t0.ndim != 2 or t0.shape[1] != n_reg:
            raise ValueError(f"taps: expected shape (B, {n_reg}), got {t0.shape}")
        for r, reg in enumerate(self.regulators):
            lo, hi = reg.tap_range
            if (t0[:, r] < lo).any() or (t0[:, r] > hi).any():
                raise ValueError(f"taps[:, {r}]: regulator {reg.name!r} has taps {lo}..{hi}")
        sizes = {a.shape[0] for a in arrs if a.ndim == 3} | {avail.shape[0], t0.shape[0]}
        sizes.discard(1)
        freq = None if freq_hz is None else np.atleast_1d(np.asarray(freq_hz, dtype=np.float64))
        if freq is not None:
            if freq.ndim != 1 or not np.isfinite(freq).all():
                raise ValueError(f"freq_hz: expected finite (B,) or a scalar, got shape {freq.shape}")
            sizes.add(freq.shape[0])
            sizes.discard(1)
        elem_on = None
        if elem_in_service is not None:
            elem_on = np.asarray(elem_in_service, dtype=bool)
            if elem_on.shape != (len(f.elem_names),):
                raise ValueError(f"elem_in_service: expected shape ({len(f.elem_names)},), got {elem_on.shape}")
        tod = None
        if any(g.ctype == "time" for g in self._caps):
            if time_s is None:
                raise ValueError("time_s: a time-of-day CapControl "
                                 f"({next(g.name for g in self._caps if g.ctype == 'time')}) needs the solution time")
            tod = capcontrol3ph.hour_of_day(np.atleast_1d(np.asarray(time_s, dtype=np.float64)))
            if tod.ndim != 1 or not np.isfinite(tod).all():
                raise ValueError(f"time_s: expected finite (B,) or a scalar, got shape {tod.shape}")
            sizes.add(tod.shape[0])
            sizes.discard(1)
        if len(sizes) > 1:
            raise ValueError(f"inconsistent batch sizes: {sorted(sizes)}")
        n_b = sizes.pop() if sizes else 1
        held = ~np.broadcast_to(np.asarray(regulate, dtype=bool), (n_reg,)) if n_reg else np.zeros(0, dtype=bool)
        acting = bool(n_reg) and not held.all()
        fq = None if freq is None else np.broadcast_to(freq, (n_b,))[:, None].copy()  # (B, 1)
        if self._units is None or not self._units.fleet.fw_on.any():
            fq = None  # no device droops: the frequency changes nothing (and numba stays usable)

        def batch(a: ArrayLike | None) -> FloatArray:
            if a is None:
                return np.zeros((n_b, f.n_bus, 3))
            x = np.asarray(a, dtype=np.float64)
            return np.broadcast_to(x[None] if x.ndim == 2 else x, (n_b, f.n_bus, 3)).copy()

        p, q = batch(p_mw), batch(q_mvar)
        avail = np.broadcast_to(avail, (n_b, n_dev))
        taps_all = np.broadcast_to(t0, (n_b, n_reg)).copy()
        ri, ci = self._ri, self._ci
        n_r = ri.size
        state = RegState(taps=taps_all[:, ri].copy(), pending=np.zeros((n_b, n_r)),
                         armed=np.zeros((n_b, n_r), dtype=bool))
        r_due = np.full((n_b, n_r), np.inf)  # the control queue's action times (OpenDSS static mode)
        r_delay = np.array([g.delay_s for g in self._regs], dtype=float)
        cstate = CapState.start(n_b, self._caps)
        clock = np.zeros(n_b)
        held_r, held_c = np.flatnonzero(held[ri]) if n_reg else ri, np.flatnonzero(held[ci]) if n_reg else ci
        u_avail = avail[:, self._unit_dev] * self._scale
        n_u = self.n_units
        on: Any = (None, np.broadcast_to(self._scale, (n_b, n_u))) if n_u else None
        if self._units is not None:  # device work in numba once its kernels are loaded (or for big batches)
            from twin.grid.controlled_pf import _NUMBA_DEVICE_WORK

            # the numba device kernels have no frequency input: frequency-watt runs in numpy
            nb = fq is None and (n_b * n_u >= _NUMBA_DEVICE_WORK or "twin.grid._der_kernels" in sys.modules)
            self._units._use_nb = nb
            if nb:
                on = (np.ones((n_b, n_u), dtype=bool), np.ascontiguousarray(np.broadcast_to(self._scale, (n_b, n_u))))
        if self._units is not None:
            x_p, x_q = self._units._target(np.ones((n_b, n_u)), u_avail, fq, None, None, on)
        else:
            x_p, x_q = np.zeros((n_b, 0)), np.zeros((n_b, 0))
        vm_u = np.ones((n_b, n_u))
        der_ok = np.ones(n_b, dtype=bool)
        outer = np.zeros(n_b, dtype=np.int64)
        rounds = np.zeros(n_b, dtype=np.int64)
        reg_ok = np.ones(n_b, dtype=bool) if not acting else np.zeros(n_b, dtype=bool)
        out: PowerFlow3phResult | None = None
        calls = 0
        lanes = np.arange(n_b, dtype=np.int64)
        for _ in range(max_control_iter if acting else 1):
            res, c = self._der_fixed_point(lanes, p, q, taps_all, u_avail, on, x_p, x_q, vm_u, der_ok, outer,
                                           base_loads, tol, tol_pu, max_outer, fq, elem_on)
            calls += c
            if out is None:
                out = res if lanes.size == n_b else _alloc(res, n_b)
            if out is not res:
                _put(out, res, lanes)
            rounds[lanes] += 1
            if not acting:
                break
            v_act = (control_voltage_v(self._regs, res.v_node,
                                       self._ct_currents(res.v_node, taps_all[lanes][:, ri], elem_on))
                     if n_r else None)
            meas = capcontrol3ph.measure(f, self._caps, res.v_node, elem_on=elem_on) if ci.size else None
            if meas is not None and tod is not None:  # the hour of day of each lane
                meas["tod_h"] = np.repeat(np.broadcast_to(tod, (n_b,))[lanes, None], ci.size, axis=1)
            moved = np.zeros(lanes.size, dtype=bool)
            sub = np.arange(lanes.size)
            for _k in range(n_reg + 1):  # actions that moved nothing: sample again at the same voltages
                lan = lanes[sub]
                if n_r:
                    assert v_act is not None
                    was = state.armed[lan].copy()
                    sample(self._regs, state, v_act[sub], lan)
                    if held_r.size:
                        state.armed[np.ix_(lan, held_r)] = False
                    now = state.armed[lan]
                    r_due[lan] = np.where(now & ~was, clock[lan, None] + r_delay, np.where(now, r_due[lan], np.inf))
                if ci.size:
                    assert meas is not None
                    capcontrol3ph.sample(self._caps, taps_all[lan][:, ci], cstate, {k: v[sub] for k, v in meas.items()},
                                         clock[lan], lan)
                    if held_c.size:
                        cstate.armed[np.ix_(lan, held_c)] = False
                        cstate.due[np.ix_(lan, held_c)] = np.inf
                busy = state.armed[lan].any(axis=1) | cstate.armed[lan].any(axis=1)
                reg_ok[lan[~busy]] = True
                sub = sub[busy]
                if not sub.size:
                    break
                lan = lanes[sub]
                t_next = np.minimum(r_due[lan].min(axis=1, initial=np.inf), cstate.due[lan].min(axis=1, initial=np.inf))
                clock[lan] = t_next
                before = taps_all[lan].copy()
                if n_r:
                    first = state.armed[lan] & (r_due[lan] == t_next[:, None])
                    act(self._regs, state, lan, first=first)
                    r_due[lan] = np.where(first, np.inf, r_due[lan])
                    taps_all[np.ix_(lan, ri)] = state.taps[lan]
                if ci.size:
                    first_c = cstate.armed[lan] & (cstate.due[lan] == t_next[:, None])
                    taps_all[np.ix_(lan, ci)] = capcontrol3ph.act(self._caps, taps_all[lan][:, ci], cstate, first_c,
                                                                  clock[lan], lan)
                ch = (taps_all[lan] != before).any(axis=1)
                moved[sub[ch]] = True
                sub = sub[~ch]
                if not sub.size:
                    break
            lanes = lanes[moved]
            if not lanes.size:
                break
        assert out is not None
        der_p = np.zeros((n_b, n_dev))
        der_q = np.zeros((n_b, n_dev))
        np.add.at(der_p.T, self._unit_dev, x_p.T)
        np.add.at(der_q.T, self._unit_dev, x_q.T)
        return Controlled3phResult(
            pf=out, der_p_mw=der_p, der_q_mvar=der_q, unit_p_mw=x_p, unit_q_mvar=x_q, unit_vm_pu=vm_u,
            taps=taps_all, controls_converged=der_ok, regulators_converged=reg_ok, outer_iterations=outer,
            control_iterations=rounds, pf_solves=calls)

    def _ct_currents(self, v_node: NDArray[np.complex128], taps: IntArray,
                     elem_on: BoolArray | None = None) -> NDArray[np.complex128]:
        """(B, R, n_ph) per-unit CT conductor currents into each regulator's terminal at its taps
        (none through a regulator out of service)."""
        n_b = v_node.shape[0]
        n_ph = max((len(r.ct_cond) for r in self._regs), default=0)
        out = np.zeros((n_b, len(self._regs), n_ph), dtype=complex)
        vg = np.concatenate([np.nan_to_num(v_node), np.zeros((n_b, 1), dtype=complex)], axis=1)
        for r, reg in enumerate(self._regs):
            if elem_on is not None and not elem_on[reg.elem]:
                continue
            y_rows, cols, d_idx, rows = self._reg_rows[r]
            d = np.ones((n_b, cols.size))
            d[:, d_idx] = (reg.tap0_pu / reg.tap_pu(taps[:, r]))[:, None]
            i_el = (d * vg[:, cols]) @ y_rows.T  # (B, n_ct)
            out[:, r, :rows.size] = d[:, rows] * i_el
        return out

    def _der_fixed_point(self, lanes: IntArray, p: FloatArray, q: FloatArray, taps: IntArray, u_avail: FloatArray,
                         on: Any, x_p: FloatArray, x_q: FloatArray, vm_u: FloatArray, ok: BoolArray,
                         outer: IntArray, base_loads: bool, tol: float, tol_pu: float,
                         max_outer: int, freq: FloatArray | None = None,
                         elem_on: BoolArray | None = None) -> tuple[PowerFlow3phResult, int]:
        """The DER functions' fixed point on ``lanes`` at their taps, from the set-points in
        ``x_p`` / ``x_q`` (updated in place, as ``vm_u``, ``ok``, ``outer``)."""
        units = self._units
        if units is None:
            res = self._pf(p[lanes], q[lanes], taps[lanes], base_loads, tol, elem_on)
            outer[lanes] += 1
            return res, 1
        fl = units.fleet
        sens = self._sensitivity(p[lanes], q[lanes], taps[lanes], base_loads, elem_on)
        tol_mva = tol_pu * fl.s_rated_mva * self._scale
        w = np.ones((p.shape[0], 1))
        last = np.full(p.shape[0], np.inf)
        active = lanes
        out: PowerFlow3phResult | None = None
        calls = 0
        for it in range(max_outer):
            pp, qq = self._inject(p[active], q[active], x_p[active], x_q[active])
            res = self._pf(pp, qq, taps[active], base_loads, tol, elem_on)
            calls += 1
            idx = np.searchsorted(lanes, active)
            if out is None:
                out = res
            else:
                _put(out, res, idx)
            outer[active] += 1
            vm = self._vm_units(res)
            vm_u[active] = vm
            oa = _rows(on, active)
            fa = None if freq is None else freq[active]
            g_p, g_q = units._target(vm, u_avail[active], fa, None, None, oa)
            resid = np.max(np.maximum(np.abs(g_p - x_p[active]), np.abs(g_q - x_q[active])) / tol_mva, axis=1)
            good = (resid <= 1.0) | ~res.converged
            ok[active] = resid <= 1.0
            grew = resid > 0.9 * last[active]  # too slow a decrease (or a 2-cycle): damp the lane
            w[active[grew]] *= 0.5
            last[active] = resid
            if good.all() or it == max_outer - 1:
                break
            sub = active[~good]
            new_p, new_q = units._device_newton(vm[~good], x_p[sub], x_q[sub], u_avail[sub],
                                                None if freq is None else freq[sub], None, None, sens,
                                                _rows(on, sub))
            x_p[sub] += w[sub] * (new_p - x_p[sub])
            x_q[sub] += w[sub] * (new_q - x_q[sub])
            active = sub
        assert out is not None
        return out, calls


def _rows(on: Any, rows: IntArray) -> Any:
    return None if on is None else tuple(None if a is None else a[rows] for a in on)


def _alloc(like: PowerFlow3phResult, n: int) -> PowerFlow3phResult:
    """An empty result of ``n`` lanes shaped like ``like``."""
    kw: dict[str, Any] = {}
    for fld in dataclasses.fields(like):
        v = getattr(like, fld.name)
        if isinstance(v, np.ndarray):
            kw[fld.name] = np.zeros((n, *v.shape[1:]), dtype=v.dtype)
        else:
            kw[fld.name] = v
    return PowerFlow3phResult(**kw)


def _put(full: PowerFlow3phResult, part: PowerFlow3phResult, rows: IntArray) -> None:
    for fld in dataclasses.fields(full):
        v = getattr(full, fld.name)
        if isinstance(v, np.ndarray):
            v[rows] = getattr(part, fld.name)
