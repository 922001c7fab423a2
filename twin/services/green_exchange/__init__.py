"""The green-token exchange (EU Scanergy): no P2P orders; the DSO buys metered PV surplus as
green tokens and sells them to consumers, who redeem them against their consumption.

This folder: ``spec`` (the scenario section and its cross-field checks), ``rules`` (the
pure reference), ``chain`` (the on-chain client), ``service`` (the run hooks), ``results``
(tables and KPIs); :data:`SERVICE` registers it (:mod:`twin.services.registry`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twin.market.units import price_from_per_mwh
from twin.services.base import MarketService, ServiceContext, ServiceDef, ServiceFlow, spec_of
from twin.services.green_exchange import results
from twin.services.green_exchange.spec import GreenExchangeServiceSpec, problems

if TYPE_CHECKING:
    from twin.scenario import Scenario

__all__ = ["SERVICE"]


def _build(scenario: Scenario, ctx: ServiceContext, accounts: list[int]) -> list[MarketService]:
    from twin.services.green_exchange.service import GreenExchangeService

    spec = spec_of(scenario, "green_exchange")
    return [GreenExchangeService(ctx, buy_price_per_mwh=price_from_per_mwh(spec.buy_price_per_mwh),
                                 sell_price_per_mwh=price_from_per_mwh(spec.sell_price_per_mwh),
                                 rate_adjustment=spec.rate_adjustment,
                                 rate_bounds=(spec.rate_min, spec.rate_max))]


SERVICE = ServiceDef.switched(
    "green_exchange", spec=GreenExchangeServiceSpec, results=results, build=_build, problems=problems,
    flows=(ServiceFlow("green_exchange", "account", "amount", +1, True, ("action", "sold"),
                       "energy_wh"),
           ServiceFlow("green_exchange", "account", "amount", -1, True, ("action", "bought"))),
    pages={"green_exchange": "green-exchange trades"},
)
