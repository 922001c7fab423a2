"""The network fee: the DSO charges its published network tariff (``grid.tariff``) on the
energy each buyer bought on the local market, in settlement.

This folder: ``spec`` (the scenario section and its cross-field checks), ``rules`` (the
pure reference), ``chain`` (the on-chain client), ``service`` (the run hooks), ``results``
(tables and KPIs); :data:`SERVICE` registers it (:mod:`twin.services.registry`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twin.services.base import MarketService, ServiceContext, ServiceDef, ServiceFlow
from twin.services.network_fee import results
from twin.services.network_fee.spec import NetworkFeeServiceSpec, problems

if TYPE_CHECKING:
    from twin.scenario import Scenario

__all__ = ["SERVICE"]


def _build(scenario: Scenario, ctx: ServiceContext, accounts: list[int]) -> list[MarketService]:
    from twin.services.network_fee.service import NetworkFeeService

    return [NetworkFeeService(ctx, scenario=scenario)]


SERVICE = ServiceDef.switched(
    "network_fee", spec=NetworkFeeServiceSpec, results=results, build=_build, problems=problems,
    flows=(ServiceFlow("network_fees", "payer", "amount", -1, True),),
    pages={"network_fees": "network fees charged to buyers"},
)
