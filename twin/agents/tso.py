"""TSO agent: watches the area's forecast supply-demand gap, calls demand response, sets
imbalance prices, signals loss of the upstream grid, and publishes the system frequency.

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

from dataclasses import dataclass
from typing import Any

import mesa

from twin.scenario import TSOSpec

__all__ = ["DemandResponseEvent", "TSOAgent", "TSOSignal"]


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

    def frequency_hz(self, interval: int) -> float:
        """Quasi-static system frequency published for ``interval`` (``frequency_hz`` series,
        repeated; nominal without one). Drives the inverters' frequency-watt droop."""
        series = self.spec.frequency_hz
        if not series:
            return float(self.spec.nominal_frequency_hz)
        return float(series[interval % len(series)])

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
