"""TSO agent: watches the area's forecast supply-demand gap, calls demand response, sets
imbalance prices, signals loss of the upstream grid, and publishes the system frequency
(:meth:`TSOAgent.system_frequency_hz`, the one frequency every consumer reads).

Each step ``k`` the model hands the TSO the forecast net import of the feeder for
``k + 1`` (household forecasts with their batteries' plans, planned EV charging, background
loads minus background generation; W averaged over the interval). When the gap exceeds
``gap_threshold_kw`` the TSO calls a :class:`DemandResponseEvent` for ``k + 1`` asking for the
excess, at ``dr_price_per_mwh`` compensation (the seed's "when supply and demand diverge,
the platform organizes users through smart contracts"). The event is published to every
hook in ``FeederModel.demand_response_hooks`` (e.g. the market value layer that pays the
compensation) and answered by the flexible agents: households with a flexible load defer
what the comfort window's end does not force into that interval, EVs charge only what their
departure needs force in that interval, community batteries offer to sell instead of buying.

Imbalance price of ``k + 1``: ``retail * (1 + imbalance_gain * max(0, gap / threshold - 1))``
(the tariff when there is no threshold or no excess). Loss of the upstream grid: between
``upstream_loss_s`` and ``upstream_restore_s`` the TSO reports ``upstream_available = False``
(an event at each edge) for the islanding studies.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import mesa
import numpy as np

from twin.scenario import FrequencySpec, TSOSpec

__all__ = ["DemandResponseEvent", "TSOAgent", "TSOSignal", "synthetic_frequency"]


def synthetic_frequency(spec: FrequencySpec, *, duration_s: int, rng: np.random.Generator,
                        start_s_of_day: int = 0) -> np.ndarray:
    """System frequency (Hz) every ``spec.resolution_s`` over ``duration_s`` (pure, seeded).

    Exact discretization of the Ornstein-Uhlenbeck process (stationary from the first
    sample), the hour-change deviations (a triangle of ``hour_change_hz`` centred on each
    full hour of the day, sign alternating with the hour) and the scenario's events.
    """
    dt = spec.resolution_s
    n = duration_s // dt + 2
    a = math.exp(-dt / spec.tau_s)
    noise = rng.standard_normal(n) * spec.std_hz * math.sqrt(1.0 - a * a)
    x = np.empty(n)
    x[0] = rng.standard_normal() * spec.std_hz
    for i in range(1, n):  # a plain recursion: n is a day of seconds at most a few times
        x[i] = a * x[i - 1] + noise[i]
    t = np.arange(n) * dt
    if spec.hour_change_hz > 0:
        tod = (t + start_s_of_day) % 86_400
        hour = np.rint(tod / 3600.0)
        dist = np.abs(tod - hour * 3600.0)
        sign = np.where(hour.astype(np.int64) % 2 == 0, 1.0, -1.0)
        x += sign * spec.hour_change_hz * np.clip(1.0 - dist / spec.hour_change_s, 0.0, None)
    for e in spec.events:
        x[(t >= e.start_s) & (t < e.start_s + e.duration_s)] += e.delta_hz
    return spec.nominal_hz + x


@dataclass(frozen=True, slots=True)
class DemandResponseEvent:
    """A call to reduce the feeder's consumption in ``interval``."""

    interval: int
    requested_wh: int  # reduction asked for
    forecast_gap_wh: int  # forecast net import that triggered it
    price_per_mwh: int  # compensation, micro-units per MWh


@dataclass(frozen=True, slots=True)
class TSOSignal:
    """What the TSO publishes for one interval."""

    interval: int
    forecast_gap_wh: int
    imbalance_price_per_mwh: int
    upstream_available: bool
    event: DemandResponseEvent | None


class TSOAgent(mesa.Agent):
    """Thresholds on the forecast gap; see the module docstring."""

    def __init__(self, model: Any, *, spec: TSOSpec, interval_s: int, retail: int,
                 dr_price: int) -> None:
        super().__init__(model)
        self.spec = spec
        self.interval_s = interval_s
        self.retail = retail
        self.dr_price = dr_price
        self.threshold_wh = (spec.gap_threshold_kw * 1000.0 * interval_s / 3600.0
                             if spec.gap_threshold_kw is not None else None)
        self.duration_s = int(getattr(model, "n_intervals", 96)) * interval_s
        sc = getattr(model, "scenario", None)
        self.start_s_of_day = (sc.start.hour * 3600 + sc.start.minute * 60 + sc.start.second
                               if sc is not None else 0)
        self._frequency: np.ndarray | None = None

    def system_frequency_hz(self, time_s: float) -> float:
        """The system frequency the TSO publishes at ``time_s`` (seconds since the start):
        the one source of the inverters' frequency-watt droop (grid, DSO check) and of the
        HIL devices (``agents.tso.frequency``, :class:`~twin.scenario.FrequencySpec`).

        A synthetic frequency is drawn once, lazily, from a generator spawned off the
        model's (the model's own stream is not advanced, so the draw changes nothing else)."""
        fs = self.spec.frequency
        if fs.source == "nominal":
            return float(fs.nominal_hz)
        if fs.source == "series":
            assert fs.series_hz is not None  # FrequencySpec checks it
            return float(fs.series_hz[int(time_s // self.interval_s) % len(fs.series_hz)])
        if self._frequency is None:
            rng = self.model.rng.spawn(1)[0]
            self._frequency = synthetic_frequency(fs, duration_s=self.duration_s, rng=rng,
                                                  start_s_of_day=self.start_s_of_day)
        i = int(time_s // fs.resolution_s)
        return float(self._frequency[min(max(i, 0), len(self._frequency) - 1)])

    def upstream_available(self, interval: int) -> bool:
        s = self.spec
        if s.upstream_loss_s is None:
            return True
        t = interval * self.interval_s
        end = s.upstream_restore_s if s.upstream_restore_s is not None else float("inf")
        return not (s.upstream_loss_s <= t < end)

    def assess(self, interval: int, *, forecast_gap_wh: float) -> TSOSignal:
        """The TSO's signal for ``interval`` from the forecast net import (Wh)."""
        gap = round(forecast_gap_wh)
        event = None
        price = self.retail
        thr = self.threshold_wh
        if thr is not None and gap > thr:
            event = DemandResponseEvent(interval=interval, requested_wh=round(gap - thr),
                                        forecast_gap_wh=gap, price_per_mwh=self.dr_price)
            price = round(self.retail * (1 + self.spec.imbalance_gain * (gap / thr - 1)))
        return TSOSignal(interval=interval, forecast_gap_wh=gap, imbalance_price_per_mwh=price,
                         upstream_available=self.upstream_available(interval), event=event)
