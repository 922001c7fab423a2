"""On-load tap changers and voltage regulators: band, delay, step by step or to convergence.

Engine-neutral: the controller sees only a callable ``solve(taps) -> vm_pu`` (the voltage
magnitudes of the buses it regulates, one per changer), so the same logic drives the balanced
batch engine (:class:`BalancedTapSolver`) and, per phase, the three-phase one (a single-phase
regulator is a changer whose ``bus`` voltage is that phase's).

Semantics (OpenDSS ``RegControl`` / pandapower ``DiscreteTapControl`` style):

* a changer holds the voltage of its regulated bus within ``v_set_pu +- band_pu / 2``;
* each tap moves the regulated voltage by about ``v_per_tap_pu`` (signed: a tap on the HV
  side of a step-down transformer lowers the LV voltage as the position rises);
* **time series** (:meth:`TapController.step`): a changer out of band for ``delay_s``
  (accumulated over consecutive steps) moves the taps it needs, at most ``max_tap_change``
  per action, within ``tap_min..tap_max``; back in band resets its timer;
* **snapshot** (:meth:`TapController.settle`): taps move at once until every changer is in
  band or at a limit (the time delays play no role), each round estimating the taps needed
  from ``v_per_tap_pu`` and then correcting one tap at a time.

A band narrower than one tap step cannot be met (the changer would hunt) and is rejected with
the field path, as are limits and set-points outside sensible ranges.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from twin.grid.pf import BatchPowerFlow

__all__ = ["BalancedTapSolver", "SettleResult", "TapChanger", "TapChangerError", "TapController",
           "oltc_from_trafo"]

IntArray = NDArray[np.int64]
FloatArray = NDArray[np.float64]


class TapChangerError(ValueError):
    """Invalid tap-changer settings; ``errors`` holds ``(field_path, message)`` pairs."""

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        self.errors = list(errors)
        super().__init__("; ".join(f"{p}: {m}" for p, m in self.errors))


@dataclass(frozen=True)
class TapChanger:
    """One changer: ``trafo`` row it moves, ``bus`` position whose voltage it regulates."""

    trafo: int
    bus: int
    v_set_pu: float
    band_pu: float
    v_per_tap_pu: float
    tap_min: int
    tap_max: int
    delay_s: float = 30.0
    max_tap_change: int = 16
    path: str = ""

    def __post_init__(self) -> None:
        errs = self.errors(self.path)
        if errs:
            raise TapChangerError(errs)

    def errors(self, path: str = "") -> list[tuple[str, str]]:
        """Every problem with its field path (empty when valid)."""
        p = (path + ".") if path else ""
        errs: list[tuple[str, str]] = []
        if not (math.isfinite(self.v_set_pu) and 0.8 <= self.v_set_pu <= 1.2):
            errs.append((p + "v_set_pu", f"must be within 0.8..1.2 pu, got {self.v_set_pu!r}"))
        if not (math.isfinite(self.v_per_tap_pu) and self.v_per_tap_pu != 0 and abs(self.v_per_tap_pu) < 0.1):
            errs.append((p + "v_per_tap_pu", f"must be non-zero and below 0.1 pu, got {self.v_per_tap_pu!r}"))
        elif not (math.isfinite(self.band_pu) and self.band_pu > abs(self.v_per_tap_pu)):
            errs.append((p + "band_pu", f"{self.band_pu!r} is narrower than one tap step "
                                        f"({abs(self.v_per_tap_pu):.4g} pu): the changer would hunt"))
        if self.tap_min > self.tap_max:
            errs.append((p + "tap_min", f"{self.tap_min} is above tap_max {self.tap_max}"))
        if not (math.isfinite(self.delay_s) and self.delay_s >= 0):
            errs.append((p + "delay_s", f"must be >= 0 s, got {self.delay_s!r}"))
        if self.max_tap_change < 1:
            errs.append((p + "max_tap_change", f"must be >= 1, got {self.max_tap_change}"))
        return errs


def oltc_from_trafo(net: Any, row: int, *, v_set_pu: float = 1.0, band_pu: float | None = None,
                    delay_s: float = 30.0, bus: int | None = None, path: str = "") -> TapChanger:
    """An OLTC on ``net.trafo`` row ``row`` regulating its LV bus (or bus label ``bus``).

    Tap data (``tap_min``, ``tap_max``, ``tap_step_percent``, ``tap_side``) come from the
    net; ``band_pu`` defaults to 1.5 tap steps. A trafo whose ``tap_changer_type`` is unset
    (SimBench nets) is set to ``"Ratio"`` so that its tap acts in the power flow.
    """
    t = net.trafo.iloc[row]
    step = float(t.get("tap_step_percent", float("nan")))
    if not (math.isfinite(step) and step > 0):
        raise TapChangerError([(path + ".trafo" if path else "trafo", f"trafo row {row} has no tap_step_percent")])
    if "tap_changer_type" in net.trafo.columns and not isinstance(t["tap_changer_type"], str):
        net.trafo["tap_changer_type"] = net.trafo["tap_changer_type"].astype(object)
        net.trafo.iat[row, net.trafo.columns.get_loc("tap_changer_type")] = "Ratio"
    sign = -1.0 if t["tap_side"] == "hv" else 1.0
    v_tap = sign * step / 100.0
    label = int(t["lv_bus"]) if bus is None else bus
    pos = int(net.bus.index.get_loc(label))
    return TapChanger(trafo=row, bus=pos, v_set_pu=v_set_pu,
                      band_pu=1.5 * abs(v_tap) if band_pu is None else band_pu, v_per_tap_pu=v_tap,
                      tap_min=int(t["tap_min"]), tap_max=int(t["tap_max"]), delay_s=delay_s, path=path)


@dataclass(frozen=True)
class SettleResult:
    """Outcome of :meth:`TapController.settle`."""

    taps: IntArray
    vm_pu: FloatArray  # regulated voltages at those taps
    converged: bool  # every changer in band or at a limit
    solves: int


class TapController:
    """The changers of one net with their state (tap positions, delay timers)."""

    def __init__(self, changers: Sequence[TapChanger], *, taps: Sequence[int] | None = None) -> None:
        self.changers = tuple(changers)
        c = self.changers
        self._set = np.array([x.v_set_pu for x in c])
        self._half = np.array([x.band_pu / 2 for x in c])
        self._dv = np.array([x.v_per_tap_pu for x in c])
        self._lo = np.array([x.tap_min for x in c], dtype=np.int64)
        self._hi = np.array([x.tap_max for x in c], dtype=np.int64)
        self._delay = np.array([x.delay_s for x in c])
        self._max = np.array([x.max_tap_change for x in c], dtype=np.int64)
        self.taps = np.zeros(len(c), dtype=np.int64) if taps is None else np.asarray(taps, dtype=np.int64).copy()
        self.timers_s = np.zeros(len(c))
        self.operations = 0  # tap moves so far (wear)

    @property
    def buses(self) -> IntArray:
        """Bus positions whose voltages the changers regulate."""
        return np.array([x.bus for x in self.changers], dtype=np.int64)

    def _wanted(self, vm: FloatArray, *, one: bool = False) -> IntArray:
        """Tap moves that bring each voltage into band (0 when in band), within limits."""
        err = vm - self._set
        out = np.abs(err) > self._half + 1e-12
        if one:
            n = np.where(out, -np.sign(err) * np.sign(self._dv), 0).astype(np.int64)
        else:
            need = np.ceil((np.abs(err) - self._half) / np.abs(self._dv) - 1e-9)
            n = np.where(out, -np.sign(err) * np.sign(self._dv) * np.maximum(need, 1), 0).astype(np.int64)
        n = np.clip(n, -self._max, self._max)
        return np.clip(self.taps + n, self._lo, self._hi) - self.taps

    def step(self, vm_pu: FloatArray, *, dt_s: float) -> IntArray:
        """Time-series step: regulated voltages ``vm_pu`` (one per changer) held for ``dt_s``.
        Returns the tap moves made (the new positions are in ``taps``)."""
        vm = np.asarray(vm_pu, dtype=np.float64)
        want = self._wanted(vm)
        out = np.abs(vm - self._set) > self._half + 1e-12
        self.timers_s = np.where(out, self.timers_s + dt_s, 0.0)
        act = out & (self.timers_s >= self._delay) & (want != 0)
        moves = np.where(act, want, 0)
        self.taps = self.taps + moves
        self.timers_s[act] = 0.0
        self.operations += int(np.abs(moves).sum())
        return moves

    def settle(self, solve: Callable[[IntArray], FloatArray], *, max_rounds: int = 30) -> SettleResult:
        """Snapshot: move taps until every changer is in band or at a limit."""
        solves = 0
        vm = np.asarray(solve(self.taps.copy()), dtype=np.float64)
        solves += 1
        for r in range(max_rounds):
            moves = self._wanted(vm, one=r > 0)
            if not moves.any():
                return SettleResult(self.taps.copy(), vm, True, solves)
            self.taps = self.taps + moves
            self.operations += int(np.abs(moves).sum())
            vm = np.asarray(solve(self.taps.copy()), dtype=np.float64)
            solves += 1
        return SettleResult(self.taps.copy(), vm, not self._wanted(vm).any(), solves)


class BalancedTapSolver:
    """Batch power flows of ``net`` at given tap positions of some trafos (compiled solvers
    cached per tap vector; taps change rarely, so a time series compiles a handful)."""

    def __init__(self, net: Any, trafo_rows: Sequence[int], *, cache_size: int = 64, **solver_kw: Any) -> None:
        self._net = copy.deepcopy(net)
        self._rows = np.asarray(trafo_rows, dtype=np.int64)
        self._col = int(self._net.trafo.columns.get_loc("tap_pos"))
        self._net.trafo["tap_pos"] = self._net.trafo["tap_pos"].astype(np.float64)
        self._kw = solver_kw
        self._cache: OrderedDict[tuple[int, ...], BatchPowerFlow] = OrderedDict()
        self._size = cache_size

    def solver(self, taps: Sequence[int]) -> BatchPowerFlow:
        """The batch power flow with the trafos at ``taps``."""
        key = tuple(int(t) for t in taps)
        s = self._cache.get(key)
        if s is None:
            for row, tap in zip(self._rows, key, strict=True):
                self._net.trafo.iat[int(row), self._col] = float(tap)
            s = BatchPowerFlow(self._net, **self._kw)
            self._cache[key] = s
            if len(self._cache) > self._size:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return s
