"""Green-currency incentives (Shanghai VPP): tokens minted per kWh of renewable consumption
and of metered demand-response reduction.

This folder: ``spec`` (the scenario section and its cross-field checks), ``rules`` (the
pure reference), ``chain`` (the on-chain client), ``service`` (the run hooks), ``results``
(tables and KPIs); :data:`SERVICE` registers it (:mod:`twin.services.registry`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twin.services.base import MarketService, ServiceContext, ServiceDef
from twin.services.green_currency import results
from twin.services.green_currency.spec import GreenCurrencyServiceSpec, problems

if TYPE_CHECKING:
    from twin.scenario import Scenario

__all__ = ["SERVICE"]


def _build(scenario: Scenario, ctx: ServiceContext, accounts: list[int]) -> list[MarketService]:
    from twin.services.green_currency.service import GreenCurrencyService

    return [GreenCurrencyService(ctx, scenario=scenario)]


SERVICE = ServiceDef.switched(
    "green_currency", spec=GreenCurrencyServiceSpec, results=results, build=_build, problems=problems,
    pages={"green_currency": "green-currency mints, transfers and redemptions"},
)
