"""``market.services.network_fee``:
the spec and its checks against the rest of the scenario."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twin.spec_base import SpecModel

if TYPE_CHECKING:
    from twin.scenario import Scenario

__all__ = ["NetworkFeeServiceSpec", "problems"]


class NetworkFeeServiceSpec(SpecModel):
    """The DSO charges its published network tariff (``grid.tariff``) in settlement: after
    each interval settles, every buying device's owner pays the interval's fee on the
    energy it bought on the local market (after curtailment) to the DSO."""

    enabled: bool = False


def problems(sc: Scenario) -> list[tuple[str, str]]:
    """What the rest of the scenario cannot support, as (field path, message)."""
    t = sc.grid.tariff
    if t.offpeak_fee_per_mwh == 0 and t.peak_fee_per_mwh == 0:
        return [("market.services.network_fee.enabled",
                 "the DSO publishes no fee: grid.tariff.offpeak_fee_per_mwh and "
                 "peak_fee_per_mwh are 0")]
    return []
