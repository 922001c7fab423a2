"""Tokenized assets: shares of a device's market revenue (a PV plant, a community battery)
held by investors, distributed pro rata every interval.

This folder: ``spec`` (the scenario section and its cross-field checks), ``rules`` (the
pure reference), ``chain`` (the on-chain client), ``service`` (the run hooks), ``results``
(tables and KPIs); :data:`SERVICE` registers it (:mod:`twin.services.registry`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import AfterValidator

from twin.services.assets.results import KPI_NOTES, TABLES, kpis
from twin.services.assets.spec import AssetServiceSpec, check_distinct, problems
from twin.services.base import MarketService, ServiceContext, ServiceDef, ServiceFlow, spec_of

if TYPE_CHECKING:
    from twin.scenario import Scenario

__all__ = ["SERVICE"]


def _build(scenario: Scenario, ctx: ServiceContext, accounts: list[int]) -> list[MarketService]:
    from twin.services.assets.service import AssetService

    out: list[MarketService] = []
    pool = iter(accounts)
    for i, spec in enumerate(spec_of(scenario, "assets")):
        investors = [next(pool) for _ in range(spec.investors)]
        out.append(AssetService(ctx, spec=spec, asset_id=i + 1, investors=investors))
    return out


def _spec_checked(assets: list[AssetServiceSpec]) -> list[AssetServiceSpec]:
    check_distinct(assets)
    return assets


SERVICE = ServiceDef(
    name="assets", spec=Annotated[list[AssetServiceSpec], AfterValidator(_spec_checked)],
    default=[], enabled=bool, accounts=lambda spec: sum(a.investors for a in spec),
    build=_build, problems=problems, tables=TABLES, kpis=kpis, kpi_notes=KPI_NOTES,
    flows=(ServiceFlow("asset_distributions", "issuer", "amount", -1),
           ServiceFlow("asset_claims", "holder", "amount", +1)),
    pages={"asset_distributions": "asset revenue distributions",
           "asset_claims": "asset revenue claims"},
)
