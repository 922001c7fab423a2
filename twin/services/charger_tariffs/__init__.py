"""Shared EV chargers with owner-set tariffs (Share&Charge): visiting drivers pay each
charging session on its metered energy from their escrow.

This folder: ``spec`` (the scenario section and its cross-field checks), ``rules`` (the
pure reference), ``chain`` (the on-chain client), ``service`` (the run hooks), ``results``
(tables and KPIs); :data:`SERVICE` registers it (:mod:`twin.services.registry`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twin.services.base import MarketService, ServiceContext, ServiceDef, ServiceFlow
from twin.services.charger_tariffs import results
from twin.services.charger_tariffs.spec import ChargerTariffsServiceSpec, problems

if TYPE_CHECKING:
    from twin.scenario import Scenario

__all__ = ["SERVICE"]


def _build(scenario: Scenario, ctx: ServiceContext, accounts: list[int]) -> list[MarketService]:
    from twin.services.charger_tariffs.service import ChargerTariffService

    return [ChargerTariffService(ctx, scenario=scenario)]


SERVICE = ServiceDef.switched(
    "charger_tariffs", spec=ChargerTariffsServiceSpec, results=results, build=_build, problems=problems,
    flows=(ServiceFlow("charging_sessions", "owner", "amount", +1, True, None, "metered_wh"),
           ServiceFlow("charging_sessions", "driver", "amount", -1, True)),
    pages={"charger_tariffs": "EV charger tariffs", "charging_sessions": "EV charging sessions"},
)
