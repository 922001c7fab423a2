"""``market.services.green_exchange``:
the spec and its checks against the rest of the scenario."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

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
    #: the token at a market rate: after each interval the DSO moves both prices by
    #: ``rate_adjustment x (demand - supply) / (demand + supply)`` (relative; demand: the
    #: whole kWh of uncovered consumption, supply: the tokens offered plus the DSO's stock),
    #: within ``rate_min``..``rate_max`` times the prices above. 0: fixed prices (the pilot's
    #: published rule, a special case)
    rate_adjustment: Annotated[float, Field(ge=0, le=1)] = 0.0
    rate_min: Annotated[float, Field(gt=0, le=1)] = 0.25
    rate_max: Annotated[float, Field(ge=1, le=100)] = 4.0


def problems(sc: Scenario) -> list[tuple[str, str]]:
    """What the rest of the scenario cannot support, as (field path, message)."""
    if sc.agents.households.pv.share == 0:
        return [("market.services.green_exchange.enabled",
                 "the green exchange needs green sellers: agents.households.pv.share is 0")]
    return []
