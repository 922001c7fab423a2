"""``market.services.green_exchange``:
the spec and its checks against the rest of the scenario."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twin.spec_base import PosFloat, SpecModel

if TYPE_CHECKING:
    from twin.scenario import Scenario

__all__ = ["GreenExchangeServiceSpec", "problems"]


class GreenExchangeServiceSpec(SpecModel):
    """The green-token exchange (the EU Scanergy pilot; twin/services/green_exchange): while
    it runs the P2P auction takes no orders. At fixed prices the DSO buys prosumers' metered PV
    surplus as tokens (1 token = 1 kWh) at ``buy_price_per_mwh`` and sells tokens to
    consumers at ``sell_price_per_mwh``, who redeem them against their metered consumption.
    Prices are for the green token; the energy itself still settles at the market's retail
    and feed-in tariffs (set ``market.feed_in_price_per_mwh: 0`` to pay surplus only here)."""

    enabled: bool = False
    buy_price_per_mwh: PosFloat = 100.0
    sell_price_per_mwh: PosFloat = 120.0


def problems(sc: Scenario) -> list[tuple[str, str]]:
    """What the rest of the scenario cannot support, as (field path, message)."""
    if sc.agents.households.pv.share == 0:
        return [("market.services.green_exchange.enabled",
                 "the green exchange needs green sellers: agents.households.pv.share is 0")]
    return []
