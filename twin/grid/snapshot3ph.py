"""Three-phase snapshot adapter: the balanced net's element set-points, placed on their phases.

A run with ``grid.phases: 3`` keeps the pandapower net as its element map (``net.load``,
``net.sgen``, ``net.storage`` rows, as the balanced run) and gives every row a phase code
(0/1/2 = a/b/c, :data:`~twin.grid.phase_spec.PHASE_ABC` = split equally over the three
phases). :class:`PhaseSnapshot` imports the net's lines, transformers and source once
(:meth:`twin.grid.feeder3ph.Feeder3ph.from_pandapower`, elements' own loads left out) and
solves each snapshot with :class:`twin.grid.pf3ph.BatchPowerFlow3ph`: per-phase wye
constant-power injections, consumption-positive (sgens negative).

An OpenDSS feeder (``network``, :mod:`twin.grid.opendss_grid`) is solved as the deck has it,
its own loads included; the net is then only the element map (its buses in the deck's order,
line and trafo rows named after the deck's elements). A three-phase row on a bus with fewer
phases is split over the phases the bus has.

The result is a :class:`twin.grid.powerflow.GridState` whose balanced fields hold the worst
phase (``vm_pu``: the phase voltage farthest from 1 p.u.; loadings: the highest phase) and
whose three-phase fields hold ``vm_abc_pu`` (n_bus, 3), ``vuf_percent`` (n_bus,) and the
per-phase line / trafo loadings; ``line_p_from_mw`` / ``line_q_from_mvar`` sum the phases of
the power into each line at its from bus, ``line_p_abc_from_mw`` (n_line, 3) holds them per phase.

With ``der_devices`` (the balanced run's :class:`twin.grid.controlled_pf.DerDevice` rows),
:meth:`PhaseSnapshot.solve_controlled` solves the inverters' IEEE 1547 functions inside the
phase-frame flow (:class:`twin.grid.controlled_pf3ph.ControlledPowerFlow3ph`): a single-phase
inverter answers its own phase's voltage; one split over the three phases answers each
phase's voltage with a third of its ratings.

With ``regulators`` (:class:`twin.grid.regcontrol3ph.Regulator3ph`, an OpenDSS deck's
RegControls) every solve runs OpenDSS's static control loop (with the DER functions, if any)
from the taps the previous solve ended on (:attr:`PhaseSnapshot.taps`, starting from the
deck's): quasi-static time series. :attr:`PhaseSnapshot.regulators_converged` tells whether
the last solve's regulators settled within OpenDSS's default 15 control rounds.

With ``oltc`` (``grid.oltc``, a pandapower net's trafo row 0) the transformer's gang-operated
tap changer (:mod:`twin.grid.oltc3ph`) is held during each solve and stepped after it by
:meth:`PhaseSnapshot.step_oltc` (band, delay accumulated over the steps; the balanced run's
:class:`twin.grid.tap_control.TapController`) on the voltage of its control phase:
step by step in time series, acting from the next solve.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from typing import Any

import numpy as np

from twin.grid.controlled_pf3ph import ControlledPowerFlow3ph, Der3phDevice
from twin.grid.der_runtime import SnapshotControls
from twin.grid.feeder3ph import Feeder3ph
from twin.grid.oltc3ph import control_voltage_pu, oltc_from_pandapower
from twin.grid.pf3ph import BatchPowerFlow3ph
from twin.grid.phase_spec import PHASE_ABC
from twin.grid.powerflow import GridState, _fingerprint, apply_injections
from twin.grid.tap_control import TapController, oltc_from_trafo

__all__ = ["PhaseSnapshot"]

_TABLES = ("load", "sgen", "storage")
_SIGN = {"load": 1.0, "sgen": -1.0, "storage": 1.0}


# network fingerprint -> (feeder, solver): the DSO's copy and the grid simulator's net share
# one import (seconds on a 900-bus feeder) and one LU cache
_NETWORKS: OrderedDict[bytes, tuple[Feeder3ph, BatchPowerFlow3ph]] = OrderedDict()


def _network(net: Any) -> tuple[Feeder3ph, BatchPowerFlow3ph]:
    """The phase-frame network of ``net`` without its loads, sgens and storage (cached)."""
    bare = copy.deepcopy(net)
    for t in _TABLES:
        if len(bare[t]):
            bare[t]["in_service"] = False
    key = _fingerprint(bare)
    hit = _NETWORKS.get(key)
    if hit is None:
        feeder = Feeder3ph.from_pandapower(bare)
        hit = (feeder, BatchPowerFlow3ph(feeder))
        _NETWORKS[key] = hit
        while len(_NETWORKS) > 4:
            _NETWORKS.popitem(last=False)
    return hit


# id(deck feeder) -> (feeder, solver): the DSO and the grid simulator share one LU cache
_DECKS: OrderedDict[int, tuple[Feeder3ph, BatchPowerFlow3ph]] = OrderedDict()


def _deck_network(feeder: Feeder3ph) -> tuple[Feeder3ph, BatchPowerFlow3ph]:
    hit = _DECKS.get(id(feeder))
    if hit is None or hit[0] is not feeder:
        hit = (feeder, BatchPowerFlow3ph(feeder))
        _DECKS[id(feeder)] = hit
        while len(_DECKS) > 4:
            _DECKS.popitem(last=False)
    return hit


class PhaseSnapshot:
    """Solve snapshots of ``net`` with each element row on its phase (see the module doc)."""

    def __init__(self, net: Any, *, phase: dict[str, np.ndarray], der_devices: Any = (),
                 network: Feeder3ph | None = None, regulators: Any = (), oltc: Any = None) -> None:
        self.net = net
        if oltc is not None and network is None and len(net.trafo):  # checks; a tap acting in the import
            oltc_from_trafo(net, 0, v_set_pu=oltc.v_set_pu, band_pu=oltc.band_pu, delay_s=oltc.delay_s,
                            path="grid.oltc")
        if network is None:
            self.feeder, self.solver = _network(net)
        else:
            self.feeder, self.solver = _deck_network(network)
            if self.feeder.n_bus != len(net.bus):
                raise ValueError(f"network: {self.feeder.n_bus} buses, the net has {len(net.bus)}")
        self._base_loads = network is not None
        has = self.feeder.bus_phases
        self._n_phases = has.sum(axis=1).astype(np.float64)
        self._has = has.astype(np.float64)
        bus_pos = {int(b): k for k, b in enumerate(net.bus.index)}
        self._bus_index = np.asarray(net.bus.index, dtype=np.int64)
        self._rows: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for t in _TABLES:
            ph = np.asarray(phase.get(t, np.full(len(net[t]), PHASE_ABC)), dtype=np.int64)
            if ph.shape != (len(net[t]),):
                raise ValueError(f"phase[{t!r}]: expected {len(net[t])} phase codes, got shape {ph.shape}")
            if ph.size and (ph.min() < 0 or ph.max() > PHASE_ABC):
                raise ValueError(f"phase[{t!r}]: codes must be 0, 1, 2 (a, b, c) or {PHASE_ABC} (abc)")
            pos = np.array([bus_pos[int(b)] for b in net[t]["bus"]], dtype=np.int64)
            one = ph < PHASE_ABC
            lacks = one & ~has[pos, np.minimum(ph, 2)] if pos.size else np.zeros(0, bool)
            if lacks.any():
                r = int(np.flatnonzero(lacks)[0])
                raise ValueError(f"phase[{t!r}][{r}]: phase {'abc'[ph[r]]} on bus {self.feeder.bus_names[pos[r]]!r}, "
                                 f"which has phases {''.join(p for p, h in zip('abc', has[pos[r]], strict=True) if h)}")
            self._rows[t] = (pos, ph)
        names = {n: i for i, n in enumerate(self.feeder.elem_names)}
        if network is None:
            line_keys, trafo_keys = [f"line.{i}" for i in net.line.index], [f"trafo.{i}" for i in net.trafo.index]
        else:  # the element map's rows carry the deck's element names
            line_keys, trafo_keys = list(net.line.name), list(net.trafo.name)
        self._line_elem = np.array([names.get(k, -1) for k in line_keys], dtype=np.int64)
        self._trafo_elem = np.array([names.get(k, -1) for k in trafo_keys], dtype=np.int64)
        self.phase = {t: self._rows[t][1] for t in _TABLES}
        self.der_devices = list(der_devices)
        self._cpf: ControlledPowerFlow3ph | None = None
        self.regulators = tuple(regulators)
        #: grid.oltc: the trafo's changer, stepped in time by its controller (not by the solve)
        self.oltc: TapController | None = None
        self._oltc_offset = 0
        self._last_v: np.ndarray | None = None
        if oltc is not None:
            if network is not None or not len(net.trafo):
                raise ValueError("oltc: needs a pandapower net with a trafo (an OpenDSS deck brings its RegControls)")
            reg, ch, self._oltc_offset = oltc_from_pandapower(
                self.feeder, net, 0, v_set_pu=oltc.v_set_pu, band_pu=oltc.band_pu, delay_s=oltc.delay_s,
                control_phase=oltc.control_phase or "a", path="grid.oltc")
            self.oltc = TapController([ch], taps=[reg.tap_number(reg.tap0_pu) + self._oltc_offset])
            self.regulators = (*self.regulators, reg)
        self._regulate = [True] * (len(self.regulators) - (oltc is not None)) + [False] * (oltc is not None)
        devs: list[Der3phDevice] = []
        if self.der_devices:
            for d in self.der_devices:
                if d.element not in self._rows:
                    raise ValueError(f"der_devices: element table {d.element!r} is not one of {_TABLES}")
                pos, ph = self._rows[d.element]
                phases = (0, 1, 2) if ph[d.row] == PHASE_ABC else (int(ph[d.row]),)
                devs.append(Der3phDevice(bus=int(pos[d.row]), phases=phases, functions=d.functions))
            self._dev_el = [d.element for d in self.der_devices]
            self._dev_row = np.array([d.row for d in self.der_devices], dtype=np.int64)
        if devs or self.regulators:
            self._cpf = ControlledPowerFlow3ph(self.feeder, devices=devs, regulators=self.regulators,
                                               solver=self.solver)
        #: (R,) the regulators' tap numbers: where the next solve starts, the last one ended
        self.taps = self._cpf.tap0() if self._cpf is not None else np.zeros(0, dtype=np.int64)
        self.regulators_converged = True

    def injections(self, p: dict[str, np.ndarray], q: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Per-phase consumption-positive (n_bus, 3) P and Q of row-order set-points."""
        n = len(self._bus_index)
        p_bus = np.zeros((n, 3))
        q_bus = np.zeros((n, 3))
        for t in _TABLES:
            pos, ph = self._rows[t]
            if not pos.size:
                continue
            pv = _SIGN[t] * np.asarray(p[t], dtype=np.float64)
            qv = _SIGN[t] * np.asarray(q[t], dtype=np.float64)
            one = ph < PHASE_ABC
            np.add.at(p_bus, (pos[one], ph[one]), pv[one])
            np.add.at(q_bus, (pos[one], ph[one]), qv[one])
            # three-phase rows: split over the phases the bus has (all three on a pandapower net)
            n_ph, has = self._n_phases[pos[~one], None], self._has[pos[~one]]
            np.add.at(p_bus, pos[~one], pv[~one, None] / n_ph * has)
            np.add.at(q_bus, pos[~one], qv[~one, None] / n_ph * has)
        return p_bus, q_bus

    def injections_batch(self, p: dict[str, np.ndarray], q: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """As :meth:`injections` for (B, n_rows) set-points (a table's (n_rows,) row is
        broadcast): (B, n_bus, 3) P and Q."""
        n = len(self._bus_index)
        b = max([np.atleast_2d(a).shape[0] for a in (*p.values(), *q.values())] + [1])
        p_bus, q_bus = np.zeros((b, n * 3)), np.zeros((b, n * 3))
        for t in _TABLES:
            pos, ph = self._rows[t]
            if not pos.size:
                continue
            one = ph < PHASE_ABC
            m = np.zeros((pos.size, n * 3))  # row -> (bus, phase) share, sign of the table
            m[np.flatnonzero(one), pos[one] * 3 + ph[one]] = _SIGN[t]
            three = np.flatnonzero(~one)
            share = self._has[pos[three]] / self._n_phases[pos[three], None]
            for k in range(3):
                m[three, pos[three] * 3 + k] = _SIGN[t] * share[:, k]
            p_bus += np.atleast_2d(np.asarray(p[t], dtype=np.float64)) @ m
            q_bus += np.atleast_2d(np.asarray(q[t], dtype=np.float64)) @ m
        return p_bus.reshape(b, n, 3), q_bus.reshape(b, n, 3)

    def solve_batch(self, p: dict[str, np.ndarray], q: dict[str, np.ndarray], *,
                    taps: np.ndarray | None = None, time_s: float | None = None) -> Any:
        """B snapshots in one batch (rows as :meth:`injections_batch`), without DER functions;
        regulators start from ``taps`` (default :attr:`taps`) and act as in :meth:`solve`
        (an OLTC holds). Returns the :class:`twin.grid.pf3ph.PowerFlow3phResult` and the
        (n_line + n_trafo) element indices of the net's line and trafo rows (-1: none)."""
        p_bus, q_bus = self.injections_batch(p, q)
        if self.regulators:
            assert self._cpf is not None
            r = self._cpf.solve(p_bus, q_bus, taps=self.taps if taps is None else taps, base_loads=self._base_loads,
                                tol=1e-9, regulate=self._regulate, time_s=time_s)
            res = r.pf
        else:
            res = self.solver.solve(p_mw=p_bus, q_mvar=q_bus, base_loads=self._base_loads, tol=1e-9)
        return res, np.concatenate([self._line_elem, self._trafo_elem])

    def elements_on(self, *, line_in_service: np.ndarray | None = None,
                    trafo_in_service: np.ndarray | None = None) -> np.ndarray | None:
        """The (n_elem,) in-service mask of a topology given on the net's line and trafo rows
        (row order, as :meth:`twin.faults.grid.FaultedSnapshot.masks`); None: as built."""
        if line_in_service is None and trafo_in_service is None:
            return None
        on = np.ones(len(self.feeder.elem_names), dtype=bool)
        for name, mask, elem in (("line_in_service", line_in_service, self._line_elem),
                                 ("trafo_in_service", trafo_in_service, self._trafo_elem)):
            if mask is None:
                continue
            m = np.asarray(mask, dtype=bool)
            if m.shape != elem.shape:
                raise ValueError(f"{name}: expected {elem.size} rows, got shape {m.shape}")
            off = elem[~m]
            if (off < 0).any():
                r = int(np.flatnonzero(~m & (elem < 0))[0])
                raise ValueError(f"{name}[{r}]: the row has no element in the phase-frame network")
            on[off] = False
        return on

    def solve(self, *, load_p_mw: np.ndarray, load_q_mvar: np.ndarray, sgen_p_mw: np.ndarray,
              sgen_q_mvar: np.ndarray, storage_p_mw: np.ndarray,
              storage_q_mvar: np.ndarray | None = None, time_s: float | None = None,
              elem_in_service: np.ndarray | None = None) -> GridState:
        """Write the set-points into the net (as :func:`twin.grid.powerflow.run_snapshot`) and solve;
        ``time_s``: the solution time a deck's time-of-day CapControls switch on (seconds
        since hour 0 of the run's first day, :func:`twin.grid.capcontrol3ph.hour_of_day`);
        ``elem_in_service``: a changed topology (:meth:`elements_on`; None: as built), on which
        the regulators and capacitors act from :attr:`taps` as on the healthy feeder."""
        sto_q = np.zeros(len(self.net.storage)) if storage_q_mvar is None else storage_q_mvar
        apply_injections(self.net, load_p_mw=load_p_mw, load_q_mvar=load_q_mvar, sgen_p_mw=sgen_p_mw,
                         sgen_q_mvar=sgen_q_mvar, storage_p_mw=storage_p_mw, storage_q_mvar=sto_q)
        p = {"load": load_p_mw, "sgen": sgen_p_mw, "storage": storage_p_mw}
        q = {"load": load_q_mvar, "sgen": sgen_q_mvar, "storage": sto_q}
        p_bus, q_bus = self.injections(p, q)
        if self.regulators:
            assert self._cpf is not None
            r = self._cpf.solve(p_bus[None], q_bus[None], taps=self.taps, base_loads=self._base_loads, tol=1e-9,
                                regulate=self._regulate, time_s=time_s, elem_in_service=elem_in_service)
            self._settle(r)
            return self._state(r.pf, p_bus, q_bus)
        res = self.solver.solve(p_mw=p_bus[None], q_mvar=q_bus[None], base_loads=self._base_loads, tol=1e-9,
                                elem_in_service=elem_in_service)
        return self._state(res, p_bus, q_bus)

    def _settle(self, res: Any) -> None:
        """Keep a regulated solve's taps for the next solve (quasi-static)."""
        if self.regulators and bool(res.pf.converged[0]):
            self.taps = np.asarray(res.taps[0], dtype=np.int64).copy()
            self._last_v = np.asarray(res.pf.v_node[:1])
        self.regulators_converged = bool(res.regulators_converged[0])

    @property
    def oltc_tap(self) -> int:
        """The OLTC's tap position (pandapower's numbering; -1 without one)."""
        return int(self.oltc.taps[0]) if self.oltc is not None else -1

    def oltc_vm_pu(self) -> float:
        """The voltage the OLTC regulates in the last solve (NaN before one)."""
        if self.oltc is None or self._last_v is None:
            return float("nan")
        return float(control_voltage_pu(self.regulators[-1], self._last_v)[0])

    def step_oltc(self, *, dt_s: float) -> int:
        """Time-series step of the OLTC on the last solve's control voltage held for ``dt_s``:
        returns the tap moves made (they act from the next solve)."""
        if self.oltc is None or self._last_v is None:
            return 0
        moves = self.oltc.step(np.array([self.oltc_vm_pu()]), dt_s=dt_s)
        if moves.any():
            self.taps = self.taps.copy()
            self.taps[-1] = int(self.oltc.taps[0]) - self._oltc_offset
        return int(moves[0])

    def tap_rows(self) -> list[dict[str, Any]]:
        """One row per regulator: its name, tap number and tap ratio (the last solve's)."""
        return [{"regulator": g.name, "tap": int(t), "tap_pu": float(g.tap_pu(int(t)))}
                for g, t in zip(self.regulators, self.taps, strict=True)]

    def solve_controlled(self, *, load_p_mw: np.ndarray, load_q_mvar: np.ndarray, sgen_p_mw: np.ndarray,
                         sgen_q_mvar: np.ndarray, storage_p_mw: np.ndarray,
                         storage_q_mvar: np.ndarray | None = None, tol_pu: float = 1e-4,
                         freq_hz: float | None = None, time_s: float | None = None
                         ) -> tuple[GridState, SnapshotControls]:
        """As :meth:`solve`, with the DER functions solved in; the device rows of the arrays are
        what the devices would do unconstrained; ``freq_hz``: the TSO's system frequency
        (frequency-watt; None: nominal). Returns the state and a
        :class:`twin.grid.der_runtime.SnapshotControls`."""
        if self._cpf is None or not self.der_devices:
            raise ValueError("solve_controlled: this snapshot has no der_devices")
        sto_q = np.zeros(len(self.net.storage)) if storage_q_mvar is None else storage_q_mvar
        p = {"load": np.array(load_p_mw, dtype=np.float64), "sgen": np.array(sgen_p_mw, dtype=np.float64),
             "storage": np.array(storage_p_mw, dtype=np.float64)}
        q = {"load": np.array(load_q_mvar, dtype=np.float64), "sgen": np.array(sgen_q_mvar, dtype=np.float64),
             "storage": np.array(sto_q, dtype=np.float64)}
        sign = {"sgen": 1.0, "storage": -1.0, "load": -1.0}  # generator convention of the devices
        avail = np.array([sign[e] * p[e][r] for e, r in zip(self._dev_el, self._dev_row, strict=True)])
        for e, r in zip(self._dev_el, self._dev_row, strict=True):
            p[e][r] = 0.0
            q[e][r] = 0.0
        p_bus, q_bus = self.injections(p, q)
        res = self._cpf.solve(p_bus[None], q_bus[None], der_p_avail_mw=avail[None], base_loads=self._base_loads, tol=1e-9,
                              tol_pu=tol_pu, taps=self.taps if self.regulators else None, regulate=self._regulate,
                              freq_hz=None if freq_hz is None else [freq_hz], time_s=time_s)
        self._settle(res)
        for i, (e, r) in enumerate(zip(self._dev_el, self._dev_row, strict=True)):
            p[e][r] = sign[e] * res.der_p_mw[0, i]
            q[e][r] = sign[e] * res.der_q_mvar[0, i]
        apply_injections(self.net, load_p_mw=p["load"], load_q_mvar=q["load"], sgen_p_mw=p["sgen"],
                         sgen_q_mvar=q["sgen"], storage_p_mw=p["storage"], storage_q_mvar=q["storage"])
        p_bus, q_bus = self.injections(p, q)
        ctl = SnapshotControls(converged=bool(res.controls_converged[0]), outer_iterations=int(res.outer_iterations[0]),
                               p_avail_mw=avail, p_mw=res.der_p_mw[0], q_mvar=res.der_q_mvar[0])
        return self._state(res.pf, p_bus, q_bus), ctl

    def _state(self, res: Any, p_bus: np.ndarray, q_bus: np.ndarray) -> GridState:
        nb, nl, nt = len(self._bus_index), self._line_elem.size, self._trafo_elem.size
        ok = bool(res.converged[0])
        vm3 = res.vm_pu[0] if ok else np.full((nb, 3), np.nan)
        dev = np.where(np.isfinite(vm3), np.abs(vm3 - 1.0), -np.inf)  # a phase the bus lacks never
        worst = np.argmax(dev, axis=1)
        vm = np.take_along_axis(vm3, worst[:, None], axis=1)[:, 0]
        va = np.take_along_axis(res.va_degree[0], worst[:, None], axis=1)[:, 0] if ok else np.full(nb, np.nan)

        def loading(elem: np.ndarray, n: int) -> np.ndarray:
            out = np.full((n, 3), np.nan)
            has = elem >= 0
            if ok and has.any():
                out[has] = res.branch_loading_percent[0][elem[has]]
            return out

        line3, trafo3 = loading(self._line_elem, nl), loading(self._trafo_elem, nt)
        pl = np.full(nl, np.nan)
        p3, q3 = np.full((nl, 3), np.nan), np.full((nl, 3), np.nan)
        on = self._line_elem >= 0
        if ok and on.any():
            pl[on] = res.branch_pl_mw[0][self._line_elem[on]]
            p3[on] = res.branch_p_from_mw[0][self._line_elem[on]]
            q3[on] = res.branch_q_from_mvar[0][self._line_elem[on]]
        return GridState(
            converged=ok, bus=self._bus_index.copy(), vm_pu=vm, va_degree=va,
            bus_p_mw=p_bus.sum(axis=1), bus_q_mvar=q_bus.sum(axis=1),
            line_loading_percent=_row_max(line3), line_p_from_mw=_row_sum(p3), line_q_from_mvar=_row_sum(q3),
            line_pl_mw=pl, trafo_loading_percent=_row_max(trafo3),
            ext_grid_p_mw=float(res.source_p_mw[0]) if ok else float("nan"),
            vm_abc_pu=vm3, vuf_percent=res.vuf_percent[0] if ok else np.full(nb, np.nan),
            line_loading_abc_percent=line3, trafo_loading_abc_percent=trafo3, line_p_abc_from_mw=p3,
        )


def _row_sum(a: np.ndarray) -> np.ndarray:
    """Sum over the phases a line has (NaN if none)."""
    out = np.full(a.shape[0], np.nan)
    fin = np.isfinite(a).any(axis=1)
    out[fin] = np.nansum(a[fin], axis=1)
    return out


def _row_max(a: np.ndarray) -> np.ndarray:
    out = np.full(a.shape[0], np.nan)
    fin = np.isfinite(a).any(axis=1)
    out[fin] = np.nanmax(a[fin], axis=1)
    return out
