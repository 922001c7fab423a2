"""DSO agent: security check of a cleared schedule and curtailment of trades.

The DSO applies the planned schedule of an interval (forecasts + cleared trades) to *its
own copy* of the net, runs the power flow (:func:`twin.grid.powerflow.run_snapshot`) and
checks every bus voltage against ``[vm_min_pu, vm_max_pu]`` and every line and trafo
loading against ``max_loading_percent``. If something is violated it curtails trades that
cause it, least-cost first:

* overvoltage — and overloads while the feeder exports (reverse flow, PV backfeed):
  *sell* trades of injecting devices (PV meters, community batteries), lowest seller limit
  price first;
* undervoltage and overloads while the feeder imports (and a diverging power flow, which
  is treated by the same rule for the feeder's flow direction): *buy* trades of flexible
  loads (EV chargers, community batteries), lowest buyer limit price first;

ties by trade id, in steps of ``step_fraction`` of each trade, re-running the power flow.
The smallest number of steps that removes the violation is found by a galloping
(1, 2, 4, ...) then bisecting search over that ordered step list, so a check costs a few
power flows instead of one per step. Curtailing a trade by ``x`` Wh lowers both sides'
flexible physics by ``x`` (a PV seller exports less, an EV buyer charges less, a battery
discharges / charges less), which is exactly how the agents dispatch a curtailed trade.
With DER grid-support functions (``der_functions`` of an inverter group) the check solves
them with the network (:mod:`twin.grid.controlled_pf`): volt-var and volt-watt act first,
and only what they leave is curtailed. When nothing is violated nothing is curtailed; when nothing is left to curtail the
remaining violations are reported. An interval without trades is not checked (there is
nothing to curtail; the grid simulator reports the actual state). A V2G EV selling
(``agents.evs.v2g``) is an injecting device like the others: curtailing its sale lowers
its discharge.

Three-phase grids (``grid.phases: 3``, :mod:`twin.grid.snapshot3ph`): each element row sits
on its phase; the check counts phase-to-neutral voltages outside the band, per-phase line
and trafo loadings and three-phase buses whose voltage-unbalance factor exceeds
``grid.vuf_max_percent`` (:class:`Violations` ``unbalance``, and ``hot_phase``, the phase of
the worst violation). An unbalance is relieved like an overload (sell trades while the
feeder exports, else buy trades), and the candidates are ranked by phase before price:
devices on the violated phase first, then three-phase devices, then the other phases.

Tap changers: the check runs at the taps the grid simulator is at. The grid publishes, after
each solve, the taps its next solve starts from (mosaik attribute ``taps`` from the grid to
the agents, :func:`twin.cosim.grid_sim.taps_message`) and :meth:`DSOAgent.follow_taps` sets
them on the DSO's copy: the balanced OLTC's ``tap_pos`` (``grid.oltc``), and on the
three-phase engine the gang-operated OLTC's and an OpenDSS deck's RegControls' tap numbers
(``grid.opendss.regulators: deck``). Within the interval the check does what the grid's solve
of that interval does: an OLTC holds its tap (it steps after the solve, acting from the next
interval), and a deck's regulators and switched capacitors act to convergence from the grid's
taps and states in every trial solve (OpenDSS's static control loop), so for the same
injections the check's voltages are the grid simulator's. The checks of a faulted topology
(:class:`twin.faults.grid.FaultedSnapshot` on the DSO's copy) and the operating envelopes
(:mod:`twin.agents.envelope_policy`, on the DSO's copy) run at the same taps: on a three-phase
grid the per-phase envelope batch starts from :meth:`regulator_taps`, and the OLTC's tap number
is also set as ``tap_pos`` of trafo row 0 of the DSO's balanced copy.
(With a grid step shorter than the interval, ``twin hil serve``, the check assumes the taps at
the interval's start hold through it.)

Local network tariff (``grid.tariff``): the DSO publishes, each interval, the time-of-use
network fee of the next interval (:meth:`DSOAgent.network_fee`, integer micro-units per
MWh, peak in ``[peak_start_hour, peak_end_hour)`` UTC, else off-peak). Buyers bid their
willingness to pay net of it. The fee is *not* charged in settlement (the market and the
contracts know no network fee yet): the model records what it would collect — the fee
times the energy of the interval's final (post-curtailment) trades — in the ``dso`` rows
(``network_fee_per_mwh``, ``network_fee_amount``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import mesa
import numpy as np

from twin.grid.der_runtime import ControlledSnapshot
from twin.grid.phase_spec import PHASE_ABC
from twin.grid.powerflow import GridState, run_snapshot
from twin.grid.snapshot3ph import PhaseSnapshot
from twin.grid.tap_control import oltc_from_trafo
from twin.market.tariffs import NetworkTariff
from twin.market.types import Side, Trade
from twin.market.units import price_from_per_mwh
from twin.scenario import GridSpec

__all__ = ["Curtailment", "DSOAgent", "Effect", "SecurityCheck", "Violations"]

#: (table, row, MW per Wh curtailed) — how curtailing one Wh moves one element's p_mw.
Effect = tuple[str, int, float]

_TABLES = ("load", "sgen", "storage")


@dataclass(frozen=True, slots=True)
class Curtailment:
    """The DSO's decision on one trade: its new (post-curtailment) energy."""

    trade_id: int
    energy_wh: int
    reason: str  # "overvoltage" | "undervoltage" | "overload" | "unbalance" | "not_converged"


@dataclass(frozen=True, slots=True)
class Violations:
    """Counts of limit violations in one grid state."""

    converged: bool
    overvoltage: int
    undervoltage: int
    overload: int
    #: three-phase buses above the voltage-unbalance limit (three-phase grids only)
    unbalance: int = 0
    #: the phase (0/1/2 = a/b/c) of the worst violation; -1 for a balanced grid
    hot_phase: int = -1

    @property
    def total(self) -> int:
        return (self.overvoltage + self.undervoltage + self.overload + self.unbalance
                + (0 if self.converged else 1))

    @property
    def any(self) -> bool:
        return self.total > 0


@dataclass(frozen=True, slots=True, eq=False)
class SecurityCheck:
    """Outcome of one interval's check."""

    curtailments: list[Curtailment]
    checks: int
    found: Violations
    remaining: Violations
    state: GridState | None  # final planned state; None when there were no trades to check
    curtailed_wh: int


class DSOAgent(mesa.Agent):
    """Security check + curtailment on a private copy of the feeder net."""

    def __init__(self, model: Any, *, net: Any, grid: GridSpec, step_fraction: float = 0.25,
                 start_s_of_day: float = 0.0, interval_s: int = 900,
                 der_devices: Sequence[Any] = (), element_phase: dict[str, np.ndarray] | None = None,
                 phase_network: Any = None, phase_regulators: Sequence[Any] = ()) -> None:
        super().__init__(model)
        self.net = copy.deepcopy(net)
        # grid.oltc as the grid simulator has it: on the feeder trafo (row 0) of a pandapower net
        oltc = grid.oltc if grid.oltc is not None and len(self.net.trafo) and phase_network is None else None
        #: three-phase grid: each element row on its phase (twin/grid/snapshot3ph.py)
        self._phases = (PhaseSnapshot(self.net, phase=element_phase, der_devices=der_devices,
                                      network=phase_network, regulators=phase_regulators, oltc=oltc)
                        if element_phase is not None else None)
        if oltc is not None and self._phases is None:  # its tap acts in the power flow (SimBench)
            oltc_from_trafo(self.net, 0, v_set_pu=oltc.v_set_pu, band_pu=oltc.band_pu,
                            delay_s=oltc.delay_s, path="grid.oltc")
        #: three-phase regulators' tap numbers every solve starts from (the grid's, follow_taps)
        self._regulator_taps = (self._phases.taps.copy() if self._phases is not None and self._phases.regulators
                                else None)
        self.vuf_max_percent = grid.vuf_max_percent
        #: inverters with IEEE 1547 functions: the check solves them with the network
        self._controlled = ControlledSnapshot(self.net, list(der_devices)) if der_devices else None
        #: frequency of the interval being checked (frequency-watt), set by :meth:`check`
        self._freq_hz: float | None = None
        #: solution time of the interval being checked (a deck's time-of-day CapControls)
        self._time_s: float | None = None
        tariff = grid.tariff
        self.offpeak_fee = price_from_per_mwh(tariff.offpeak_fee_per_mwh)
        self.peak_fee = price_from_per_mwh(tariff.peak_fee_per_mwh)
        self.peak_start_hour = tariff.peak_start_hour
        self.peak_end_hour = tariff.peak_end_hour
        self.start_s_of_day = float(start_s_of_day)
        self.interval_s = int(interval_s)
        self.tariff = NetworkTariff(
            offpeak_fee_per_mwh=self.offpeak_fee, peak_fee_per_mwh=self.peak_fee,
            peak_start_hour=self.peak_start_hour, peak_end_hour=self.peak_end_hour,
            start_s_of_day=int(start_s_of_day), interval_s=self.interval_s)
        #: interval -> published fee (micro-units per MWh)
        self.published: dict[int, int] = {}
        self.vm_min_pu = grid.vm_min_pu
        self.vm_max_pu = grid.vm_max_pu
        self.max_loading_percent = grid.max_loading_percent
        if not 0 < step_fraction <= 1:
            raise ValueError(f"step_fraction must be in (0, 1], got {step_fraction}")
        self.step_fraction = step_fraction
        #: faults inside a run (twin/agents/outages.py): while set, the check solves the
        #: faulted topology with it (islands held by their grid-forming battery)
        self.fault_solver: Callable[[dict[str, np.ndarray], dict[str, np.ndarray]], GridState] | None = None

    def follow_taps(self, *, trafo_tap_pos: dict[int, int] | None = None,
                    regulator_taps: Sequence[int] | None = None) -> None:
        """Check at the grid simulator's taps: ``trafo_tap_pos`` {trafo row: pandapower tap
        position} (balanced engine), ``regulator_taps`` the three-phase engine's regulator tap
        numbers in the grid's order (:func:`twin.cosim.grid_sim.taps_message`)."""
        col = self.net.trafo.columns.get_loc("tap_pos") if len(self.net.trafo) else -1
        for row, pos in (trafo_tap_pos or {}).items():
            if not 0 <= int(row) < len(self.net.trafo):
                raise ValueError(f"taps.trafo_tap_pos: trafo row {row} is not in the DSO's net "
                                 f"({len(self.net.trafo)} trafos)")
            if self._phases is not None:
                raise ValueError("taps.trafo_tap_pos: a three-phase grid's OLTC comes as regulator_taps")
            if self.net.trafo.iat[int(row), col] != float(pos):
                self.net.trafo["tap_pos"] = self.net.trafo["tap_pos"].astype(np.float64)
                self.net.trafo.iat[int(row), col] = float(pos)  # the solvers recompile on it
        if regulator_taps:
            mine = self._regulator_taps
            if mine is None or len(regulator_taps) != len(mine):
                raise ValueError(f"taps.regulator_taps: {len(regulator_taps)} taps for the DSO's "
                                 f"{0 if mine is None else len(mine)} regulators")
            self._regulator_taps = np.asarray(regulator_taps, dtype=np.int64).copy()
            ph = self._phases
            if ph is not None and ph.oltc is not None:  # grid.oltc: the last regulator is trafo row 0's changer
                pos_0 = float(self._regulator_taps[-1] + ph._oltc_offset)
                if self.net.trafo.iat[0, col] != pos_0:  # the balanced copy (envelopes, faulted topology) follows
                    self.net.trafo["tap_pos"] = self.net.trafo["tap_pos"].astype(np.float64)
                    self.net.trafo.iat[0, col] = pos_0

    @property
    def phase_snapshot(self) -> PhaseSnapshot | None:
        """The three-phase engine's snapshot of the DSO's copy (None on a balanced grid)."""
        return self._phases

    def regulator_taps(self) -> np.ndarray | None:
        """The grid simulator's regulator taps the DSO's solves start from (three-phase engine)."""
        return None if self._regulator_taps is None else self._regulator_taps.copy()

    def network_fee(self, k: int) -> int:
        """Time-of-use network fee of interval ``k`` (:class:`twin.market.tariffs.NetworkTariff`)."""
        return self.tariff.fee_per_mwh(k)

    def publish_tariff(self, k: int) -> int:
        """Publish (record) and return the network fee of interval ``k``."""
        fee = self.network_fee(k)
        self.published[k] = fee
        return fee

    def violations(self, state: GridState) -> Violations:
        if not state.converged:
            return Violations(converged=False, overvoltage=0, undervoltage=0, overload=0)
        if state.vm_abc_pu is not None:
            return self._violations_3ph(state)
        vm = state.vm_pu[np.isfinite(state.vm_pu)]
        loading = np.concatenate([state.line_loading_percent, state.trafo_loading_percent])
        loading = loading[np.isfinite(loading)]
        return Violations(
            converged=True,
            overvoltage=int(np.count_nonzero(vm > self.vm_max_pu)),
            undervoltage=int(np.count_nonzero(vm < self.vm_min_pu)),
            overload=int(np.count_nonzero(loading > self.max_loading_percent)),
        )

    def _violations_3ph(self, state: GridState) -> Violations:
        """Per phase: phase-to-neutral band, per-phase loading, unbalance (VUF) limit."""
        vm = np.asarray(state.vm_abc_pu)
        vuf = np.asarray(state.vuf_percent)
        parts = [a for a in (state.line_loading_abc_percent, state.trafo_loading_abc_percent) if a is not None]
        ld = np.concatenate(parts) if parts else np.zeros((0, 3))
        with np.errstate(invalid="ignore"):
            over, under = vm > self.vm_max_pu, vm < self.vm_min_pu
            hot_ld = ld > self.max_loading_percent
            unb = vuf > self.vuf_max_percent
        dev = np.where(np.isfinite(vm), vm, 1.0)
        if over.any():
            hot = int(np.unravel_index(np.argmax(dev), dev.shape)[1])
        elif under.any():
            hot = int(np.unravel_index(np.argmin(dev), dev.shape)[1])
        elif unb.any():  # the phase farthest from nominal at the most unbalanced bus
            k = int(np.nanargmax(np.where(np.isfinite(vuf), vuf, -1.0)))
            hot = int(np.argmax(np.abs(dev[k] - 1.0)))
        elif hot_ld.any():
            hot = int(np.unravel_index(np.argmax(np.where(np.isfinite(ld), ld, -1.0)), ld.shape)[1])
        else:
            hot = -1
        return Violations(converged=True, overvoltage=int(over.sum()), undervoltage=int(under.sum()),
                          overload=int(hot_ld.sum()), unbalance=int(unb.sum()), hot_phase=hot)

    def _solve(self, p: dict[str, np.ndarray], q: dict[str, np.ndarray]) -> GridState:
        if self.fault_solver is not None:
            return self.fault_solver(p, q)
        if self._regulator_taps is not None:  # every trial solve from the grid's taps
            assert self._phases is not None
            self._phases.taps = self._regulator_taps.copy()
        if self._phases is not None and self._phases.der_devices:
            state3, _ = self._phases.solve_controlled(
                load_p_mw=p["load"], load_q_mvar=q["load"], sgen_p_mw=p["sgen"], sgen_q_mvar=q["sgen"],
                storage_p_mw=p["storage"], storage_q_mvar=q["storage"], freq_hz=self._freq_hz, time_s=self._time_s)
            return state3
        if self._phases is not None:
            return self._phases.solve(
                load_p_mw=p["load"], load_q_mvar=q["load"], sgen_p_mw=p["sgen"], sgen_q_mvar=q["sgen"],
                storage_p_mw=p["storage"], storage_q_mvar=q["storage"], time_s=self._time_s)
        if self._controlled is not None:
            state, _ = self._controlled.solve(
                load_p_mw=p["load"], load_q_mvar=q["load"], sgen_p_mw=p["sgen"], sgen_q_mvar=q["sgen"],
                storage_p_mw=p["storage"], storage_q_mvar=q["storage"], freq_hz=self._freq_hz)
            return state
        return run_snapshot(
            self.net,
            load_p_mw=p["load"], load_q_mvar=q["load"],
            sgen_p_mw=p["sgen"], sgen_q_mvar=q["sgen"],
            storage_p_mw=p["storage"], storage_q_mvar=q["storage"],
        )

    def check(
        self,
        *,
        trades: Sequence[Trade],
        element_p_mw: dict[str, np.ndarray],
        element_q_mvar: dict[str, np.ndarray],
        seller_effects: Callable[[int], list[Effect]],
        buyer_effects: Callable[[int], list[Effect]],
        limit_price: Callable[[int, Side], int],
        freq_hz: float | None = None,
        time_s: float | None = None,
    ) -> SecurityCheck:
        """Check the planned schedule; curtail trades until no violation remains.

        ``element_p_mw`` / ``element_q_mvar`` map "load", "sgen", "storage" to the planned
        set-points (row order). ``seller_effects(device)`` / ``buyer_effects(device)`` list
        how curtailing one Wh of that device's sale / purchase moves element set-points
        (empty for inflexible devices); ``limit_price(device, side)`` is the order's limit.
        ``time_s``: the interval's start, seconds since the run's start (a deck's time-of-day
        CapControls switch on the time of day).
        """
        self._freq_hz = freq_hz
        self._time_s = None if time_s is None else self.start_s_of_day + float(time_s)
        base = {k: np.asarray(element_p_mw[k], dtype=np.float64).copy() for k in _TABLES}
        q = {k: np.asarray(element_q_mvar[k], dtype=np.float64) for k in _TABLES}
        if not trades:  # nothing to review or curtail: no power flow
            none = Violations(converged=True, overvoltage=0, undervoltage=0, overload=0)
            return SecurityCheck(curtailments=[], checks=0, found=none, remaining=none,
                                 state=None, curtailed_wh=0)
        state = self._solve(base, q)
        checks = 1
        found = self.violations(state)
        energy = {t.trade_id: t.energy_wh for t in trades}
        reasons: dict[int, str] = {}
        viol = found
        tried: set[str] = set()
        while viol.any:
            side = self._side(viol, base)
            if side in tried:
                break
            tried.add(side)
            reason = self._reason(viol, side)
            cands = self._candidates(trades, energy, side, seller_effects, buyer_effects, limit_price,
                                     phase_rank=self._phase_rank(viol.hot_phase))
            if not cands:
                continue
            steps = self._steps(cands, energy)
            base, cut, state, viol, n = self._search(base, q, cands, steps, side)
            checks += n
            for tid, amount in cut.items():
                if amount > 0:
                    energy[tid] -= amount
                    reasons[tid] = reason
        curtailments = [
            Curtailment(trade_id=t.trade_id, energy_wh=energy[t.trade_id], reason=reasons[t.trade_id])
            for t in sorted(trades, key=lambda t: t.trade_id)
            if energy[t.trade_id] < t.energy_wh
        ]
        return SecurityCheck(
            curtailments=curtailments,
            checks=checks,
            found=found,
            remaining=viol,
            state=state,
            curtailed_wh=sum(t.energy_wh - energy[t.trade_id] for t in trades),
        )

    def _apply(
        self, base: dict[str, np.ndarray], cands: list[tuple[Trade, list[Effect]]],
        steps: list[tuple[int, int]], j: int,
    ) -> tuple[dict[str, np.ndarray], dict[int, int]]:
        """Set-points and per-trade curtailed Wh after the first ``j`` steps."""
        cut = dict.fromkeys((t.trade_id for t, _ in cands), 0)
        for i, amount in steps[:j]:
            cut[cands[i][0].trade_id] = amount
        p = {k: v.copy() for k, v in base.items()}
        for t, effects in cands:
            for table, row, coef in effects:
                p[table][row] += coef * cut[t.trade_id]
        p["sgen"] = np.clip(p["sgen"], 0.0, None)
        return p, cut

    def _search(
        self, base: dict[str, np.ndarray], q: dict[str, np.ndarray],
        cands: list[tuple[Trade, list[Effect]]], steps: list[tuple[int, int]], side: str,
    ) -> tuple[dict[str, np.ndarray], dict[int, int], GridState, Violations, int]:
        """Fewest steps that clear the ``side`` violation (gallop, then bisect).

        Returns the set-points, per-trade curtailed Wh, the state and violations after
        those steps, and the number of power flows run. If even all steps leave the
        violation, all steps are taken.
        """
        results: dict[int, tuple[dict[str, np.ndarray], dict[int, int], GridState, Violations]] = {}

        def ok(j: int) -> bool:
            if j not in results:
                p, cut = self._apply(base, cands, steps, j)
                st = self._solve(p, q)
                results[j] = (p, cut, st, self.violations(st))
            p, _, _, v = results[j]
            return not (v.any and self._side(v, p) == side)

        m = len(steps)
        lo, hi = 0, 1
        while hi < m and not ok(hi):
            lo, hi = hi, min(2 * hi, m)
        if ok(hi):
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if ok(mid):
                    hi = mid
                else:
                    lo = mid
        p, cut, st, v = results[hi]
        return p, cut, st, v, len(results)

    def _phase_rank(self, hot: int) -> Callable[[list[Effect]], int] | None:
        """Rank of a device's effects for a violation on phase ``hot``: 0 on that phase,
        1 three-phase, 2 another phase (None on a balanced grid: price order only)."""
        if self._phases is None or hot < 0:
            return None
        phase = self._phases.phase

        def rank(effects: list[Effect]) -> int:
            codes = {int(phase[table][row]) for table, row, _ in effects}
            return 0 if hot in codes else (1 if PHASE_ABC in codes else 2)
        return rank

    @staticmethod
    def _side(v: Violations, p: dict[str, np.ndarray]) -> str:
        """Which trades relieve ``v``: "sell" (too much injection) or "buy" (too much load)."""
        exporting = float(p["sgen"].sum() - p["load"].sum() - p["storage"].sum()) > 0
        if v.overvoltage or ((v.overload or v.unbalance or not v.converged) and exporting
                             and not v.undervoltage):
            return "sell"
        return "buy"

    @staticmethod
    def _reason(v: Violations, side: str) -> str:
        if not v.converged:
            return "not_converged"
        if side == "sell":
            return "overvoltage" if v.overvoltage else ("overload" if v.overload else "unbalance")
        return "undervoltage" if v.undervoltage else ("overload" if v.overload else "unbalance")

    @staticmethod
    def _candidates(
        trades: Sequence[Trade],
        energy: dict[int, int],
        side: str,
        seller_effects: Callable[[int], list[Effect]],
        buyer_effects: Callable[[int], list[Effect]],
        limit_price: Callable[[int, Side], int],
        phase_rank: Callable[[list[Effect]], int] | None = None,
    ) -> list[tuple[Trade, list[Effect]]]:
        """Trades whose ``side`` device can be curtailed, least-cost first (on a three-phase
        grid: devices on the violated phase first, then three-phase ones, then the rest)."""
        keyed = []
        for t in trades:
            if energy[t.trade_id] <= 0:
                continue
            own = seller_effects(t.seller_device) if side == "sell" else buyer_effects(t.buyer_device)
            if not own:
                continue
            effects = seller_effects(t.seller_device) + buyer_effects(t.buyer_device)
            price = (limit_price(t.seller_device, Side.SELL) if side == "sell"
                     else limit_price(t.buyer_device, Side.BUY))
            rank = phase_rank(own) if phase_rank is not None else 0
            keyed.append(((rank, price, t.trade_id), t, effects))
        keyed.sort(key=lambda x: x[0])
        return [(t, e) for _, t, e in keyed]

    def _steps(self, cands: list[tuple[Trade, list[Effect]]], energy: dict[int, int]) -> list[tuple[int, int]]:
        """Ordered (candidate index, cumulative curtailed Wh) steps."""
        steps: list[tuple[int, int]] = []
        for i, (t, _) in enumerate(cands):
            avail = energy[t.trade_id]
            step = max(1, math.ceil(avail * self.step_fraction))
            amount = 0
            while amount < avail:
                amount = min(avail, amount + step)
                steps.append((i, amount))
        return steps
