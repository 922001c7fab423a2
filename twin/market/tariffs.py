"""The DSO's published network tariff: a time-of-use fee per MWh of local-market energy.

One rule for everyone who needs the fee of an interval (the DSO agent publishing it, the
buyers bidding net of it, the charger hosts adding it to their tariff, the network-fee
service charging it): ``peak_fee`` in ``[peak_start_hour, peak_end_hour)`` (hour of day at
the interval's start, UTC; the window wraps past midnight when it ends at or before its
start), else ``offpeak_fee``. Fees are integer micro-units per MWh (:mod:`twin.market.units`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twin.market.units import price_from_per_mwh

__all__ = ["NetworkTariff"]


@dataclass(frozen=True, slots=True)
class NetworkTariff:
    offpeak_fee_per_mwh: int
    peak_fee_per_mwh: int
    peak_start_hour: float
    peak_end_hour: float
    #: seconds since midnight (UTC) at which interval 0 starts
    start_s_of_day: int
    interval_s: int

    @classmethod
    def of(cls, scenario: Any) -> NetworkTariff:
        """The tariff a scenario publishes (``grid.tariff``), on its clock."""
        t, start = scenario.grid.tariff, scenario.start
        return cls(offpeak_fee_per_mwh=price_from_per_mwh(t.offpeak_fee_per_mwh),
                   peak_fee_per_mwh=price_from_per_mwh(t.peak_fee_per_mwh),
                   peak_start_hour=t.peak_start_hour, peak_end_hour=t.peak_end_hour,
                   start_s_of_day=start.hour * 3600 + start.minute * 60 + start.second,
                   interval_s=scenario.market.interval_s)

    @property
    def charges(self) -> bool:
        """Whether any interval has a fee."""
        return self.offpeak_fee_per_mwh > 0 or self.peak_fee_per_mwh > 0

    def fee_per_mwh(self, k: int) -> int:
        """The fee of interval ``k`` (micro-units per MWh)."""
        if self.offpeak_fee_per_mwh == self.peak_fee_per_mwh:
            return self.offpeak_fee_per_mwh
        hour = ((self.start_s_of_day + k * self.interval_s) % 86_400) / 3600.0
        a, b = self.peak_start_hour, self.peak_end_hour
        peak = (a <= hour < b) if a < b else (hour >= a or hour < b)
        return self.peak_fee_per_mwh if peak else self.offpeak_fee_per_mwh
