"""Meter-data faults between the devices' meters and the market (``faults.data``): which
reading of which interval reaches the market when, after polling with retries.

Pure and seeded: :class:`MeterDataFaults` takes each interval's true readings and returns
the meter-data message the market receives at that step (the on-time readings, the late ones
of earlier intervals, duplicates included as delivered) plus one acquisition row per
expected reading. Its random stream is its own (``numpy`` seeded with ``[seed, 21]``), so a
run with data faults draws its agents, prices and grid exactly as the same run without them.

Timing, in seconds after the end of interval ``k`` (``t_end``): poll attempt ``j`` at
``j * retry_interval_s`` (``j = 0 .. retries``); a reading is acquired by the first attempt
that does not fail and finds it there (a delayed reading is there from ``delay_s`` on), if
that is by ``deadline_s``; the market settles interval ``k`` at the deadline. A reading
that misses the deadline is pushed later: a delayed one at ``delay_s``, a lost one (or one
all of whose polls failed) is backfilled at ``deadline_s + backfill_delay_s``, one lost in a
burst at the burst's end plus ``backfill_delay_s``. A reading arriving ``a`` seconds after
``t_end`` reaches the market at step ``k + j``, the first one whose settlement time
``j * interval_s + deadline_s`` is at or after ``a``. At the run's last step every
reading still on its way is delivered (the final collection before the books close), so
only readings lost for good (``backfill_delay_s: null``) stay provisional.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import numpy as np

from twin.faults.comm_spec import DataFaultsSpec

__all__ = ["ACQUISITION_SCHEMA_COLUMNS", "MeterDataFaults"]

#: columns of the ``meter_data`` table (one row per expected reading)
ACQUISITION_SCHEMA_COLUMNS = ("time_s", "interval", "device_id", "acquired", "attempts",
                              "latency_s", "cause", "arrives_interval")


class MeterDataFaults:
    """The meter-data path of a run (module docstring)."""

    def __init__(self, spec: DataFaultsSpec, *, seed: int, interval_s: int,
                 n_intervals: int | None = None) -> None:
        self.spec = spec
        #: the run's length: at its last step every outstanding reading is delivered
        self.n_intervals = n_intervals
        self.interval_s = interval_s
        self._rng = np.random.default_rng([int(seed), 21])
        #: step -> late or duplicated readings (interval, device, wh) delivered then
        self._pending: dict[int, list[tuple[int, int, int]]] = defaultdict(list)

    def _burst_end(self, t_end: int, device: int) -> int | None:
        for b in self.spec.bursts:
            if b.start_s <= t_end < b.start_s + b.duration_s and (not b.devices or device in b.devices):
                return b.start_s + b.duration_s
        return None

    def _arrival_step(self, k: int, offset_s: float) -> int:
        j = math.ceil((offset_s - self.spec.polling.deadline_s) / self.interval_s)
        return k + max(j, 1)

    def deliver(self, k: int, metered_wh: Mapping[int, int]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The market's meter-data message at step ``k`` and the acquisition rows of ``k``."""
        s, p = self.spec, self.spec.polling
        t_end = (k + 1) * self.interval_s
        on_time: dict[int, int] = {}
        rows = []
        for d in sorted(metered_wh):
            wh = int(metered_wh[d])
            # a fixed number of draws per reading: the stream does not depend on outcomes
            u = self._rng.random(4 + p.retries)  # loss, delay, duplicate, attempts
            u_loss, u_delay, u_dup, u_attempts = u[0], u[1], u[2], u[3:]
            burst_end = self._burst_end(t_end, d)
            delay_s = s.delay_s if u_delay < s.delay_rate else 0
            lost = burst_end is not None or u_loss < s.device_loss_rate.get(d, s.loss_rate)
            attempts, acquired_at = p.retries + 1, None
            if not lost:
                for j in range(p.retries + 1):
                    t = j * p.retry_interval_s
                    if t >= delay_s and u_attempts[j] >= s.poll_failure_rate and t <= p.deadline_s:
                        attempts, acquired_at = j + 1, t
                        break
            cause = "ok"
            arrives: float | None = None
            if acquired_at is not None:
                on_time[d] = wh
            elif burst_end is not None:
                cause = "burst"
                if s.backfill_delay_s is not None:
                    arrives = max(burst_end - t_end, p.deadline_s) + s.backfill_delay_s
            elif lost:
                cause = "loss"
                if s.backfill_delay_s is not None:
                    arrives = p.deadline_s + s.backfill_delay_s
            elif delay_s > p.deadline_s:
                cause, arrives = "delay", float(delay_s)
            else:
                cause = "poll"
                if s.backfill_delay_s is not None:
                    arrives = p.deadline_s + s.backfill_delay_s
            arrives_step = self._arrival_step(k, arrives) if arrives is not None else None
            if arrives_step is not None:
                self._pending[arrives_step].append((k, d, wh))
            if u_dup < s.duplicate_rate:  # a second copy, one step later
                self._pending[(arrives_step if arrives_step is not None else k) + 1].append((k, d, wh))
            rows.append({"time_s": k * self.interval_s, "interval": k, "device_id": d,
                         "acquired": acquired_at is not None, "attempts": attempts,
                         "latency_s": float(acquired_at) if acquired_at is not None else float("nan"),
                         "cause": cause,
                         "arrives_interval": arrives_step if arrives_step is not None else -1})
        late = self._pending.pop(k, [])
        if self.n_intervals is not None and k >= self.n_intervals - 1:
            # the run's last step: the outstanding readings are collected before it closes
            for step in sorted(self._pending):
                late += self._pending.pop(step)
        msg = {"interval": k, "metered_wh": on_time, "expected": sorted(int(d) for d in metered_wh),
               "late": [list(x) for x in late]}
        return msg, rows
