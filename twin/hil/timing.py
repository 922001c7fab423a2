"""Step lateness statistics in constant memory (a day of 1-s steps or a year: same size).

Lateness (seconds a HIL step started after its wall-clock deadline) goes into a
log-spaced histogram: 100 bins per decade from 1 µs to 1000 s, so a percentile is
exact to 2.3 % of its value; the count, misses above the tolerance and the maximum are
exact. Steps of a run without real time (``--rt-factor 0``) are counted, without
lateness.
"""

from __future__ import annotations

import gc
import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["StepTiming", "TwinClock", "freeze_gc", "unfreeze_gc", "warm_grid_kernels"]

_LO_S = 1e-6
_BINS_PER_DECADE = 100
_N_BINS = 9 * _BINS_PER_DECADE + 2  # [<=1 µs], 1 µs .. 1000 s, [> 1000 s]


@dataclass
class StepTiming:
    """Counts, maximum and a histogram of step lateness; see the module docstring."""

    tolerance_s: float = 0.1
    steps: int = 0
    timed: int = 0  # steps with a real-time deadline
    misses: int = 0
    max_s: float = 0.0
    boundary_max_s: float = 0.0  # steps at a market-interval boundary
    _hist: np.ndarray = field(default_factory=lambda: np.zeros(_N_BINS, dtype=np.int64), repr=False)

    def count(self) -> None:
        """A step without a deadline (as fast as possible)."""
        self.steps += 1

    def record(self, late_s: float, *, boundary: bool = False) -> bool:
        """One real-time step that started ``late_s`` after its deadline; True: a miss."""
        self.steps += 1
        self.timed += 1
        self.max_s = max(self.max_s, late_s)
        if boundary:
            self.boundary_max_s = max(self.boundary_max_s, late_s)
        if late_s <= _LO_S:
            b = 0
        else:
            b = min(_N_BINS - 1, 1 + int(math.log10(late_s / _LO_S) * _BINS_PER_DECADE))
        self._hist[b] += 1
        miss = late_s > self.tolerance_s
        self.misses += miss
        return miss

    def percentile_s(self, q: float) -> float:
        """Upper edge of the bin holding the ``q``-th percentile (NaN without timed steps)."""
        if self.timed == 0:
            return float("nan")
        rank = math.ceil(q / 100.0 * self.timed)
        b = int(np.searchsorted(np.cumsum(self._hist), max(rank, 1)))
        if b == 0:
            return _LO_S
        edge = _LO_S * 10.0 ** (b / _BINS_PER_DECADE)
        return min(edge, self.max_s) if b < _N_BINS - 1 else self.max_s

    def summary(self) -> str:
        if self.timed == 0:
            return f"{self.steps} (as fast as possible, no deadlines)"
        return (f"{self.steps} (deadline misses {self.misses} > {self.tolerance_s * 1e3:.0f} ms; "
                f"lateness p99 {self.percentile_s(99) * 1e3:.1f} ms, max {self.max_s * 1e3:.1f} ms)")

    def as_dict(self) -> dict[str, float]:
        return {"steps": self.steps, "deadline_misses": self.misses,
                "lateness_p50_s": self.percentile_s(50), "lateness_p99_s": self.percentile_s(99),
                "lateness_max_s": self.max_s, "boundary_lateness_max_s": self.boundary_max_s}


@dataclass
class TwinClock:
    """Twin time now, for client writes between steps (reversion timers, write records).

    ``last_t``: the latest HIL step's time; with a real-time factor and the wall-clock
    origin ``wall0`` (``time.perf_counter`` of twin time 0, system-wide on Linux, so a
    server process computes the same) it runs on between steps.
    """

    rt_factor: float | None = None
    last_t: float = 0.0
    wall0: float | None = None

    def __call__(self) -> float:
        if self.rt_factor and self.wall0 is not None:
            return max(self.last_t, (time.perf_counter() - self.wall0) / self.rt_factor)
        return self.last_t

    @property
    def state(self) -> tuple[float | None, float, float | None]:
        return (self.rt_factor, self.last_t, self.wall0)


_FROZEN: list[int] = []


def warm_grid_kernels(net: Any, *, solves: int) -> bool:
    """Load the power flow's numba kernels now when a run of ``solves`` power flows would
    load them mid-run; returns whether it did.

    The solver (``kernel="auto"``, :mod:`twin.grid.pf`) solves single snapshots with numpy
    until its 200th call, then loads its numba kernels (numba's import and the cached
    machine code: about 0.3 s on an idle core, 3 s at load 13, and +57 MB of resident
    memory). In a real-time HIL run that load landed in one step (hours into the run: a
    late step and most of the day's memory growth); one numba solve of the feeder at
    set-up moves it before the clock starts. Short runs (``solves`` below the switch) skip
    it and pay nothing.
    """
    from twin.grid import pf

    if solves <= pf._AUTO_NUMBA_CALLS:
        return False
    pf.BatchPowerFlow(net, kernel="numba").solve()
    return True


def freeze_gc() -> None:
    """Collect once and move every object alive into the permanent generation.

    A real-time HIL run calls it before its first step: the set-up's heap (the feeder,
    pandapower, numba's dispatchers, the agents) is then never scanned again, so a full
    (generation 2) collection during the run costs what the run allocated since, not
    hundreds of ms of scanning that heap (what made occasional steps late).
    """
    gc.collect()
    gc.freeze()
    _FROZEN.append(gc.get_freeze_count())


def unfreeze_gc() -> None:
    """Undo :func:`freeze_gc` (the end of a run inside a longer-lived process)."""
    if _FROZEN:
        _FROZEN.clear()
        gc.unfreeze()
