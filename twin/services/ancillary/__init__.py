"""Frequency regulation for VPPs (ancillary services): the TSO procures symmetric regulation
capacity per market interval, the VPP's resources (community batteries, flexible loads)
follow a regulation signal, the TSO pays for capacity and performance; optionally an upward
reserve product (``reserve``: batteries' headroom left after regulation, activated rarely,
paid for capacity and activated energy).

This folder: ``spec`` (the scenario section and its cross-field checks), ``rules`` (the
pure reference: signal, headroom, procurement, dispatch, score, payments, the reference
ledger), ``chain`` (the ``AncillaryServices`` contract's client), ``service`` (the run
hooks), ``results`` (tables, KPIs, revenue by stream); the agents' side (reservation and
signal following) is :mod:`twin.agents.regulation`. :data:`SERVICE` registers it
(:mod:`twin.services.registry`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twin.services.ancillary.results import KPI_NOTES, TABLES, kpis
from twin.services.ancillary.spec import AncillaryServiceSpec, problems
from twin.services.base import MarketService, ServiceContext, ServiceDef, ServiceFlow, spec_of

if TYPE_CHECKING:
    from twin.scenario import Scenario

__all__ = ["SERVICE"]


def _build(scenario: Scenario, ctx: ServiceContext, accounts: list[int]) -> list[MarketService]:
    from twin.services.ancillary.service import AncillaryService

    spec = spec_of(scenario, "ancillary")
    rs = spec.reserve
    return [AncillaryService(ctx, capacity_price_per_mw_h=spec.capacity_price_per_mw_h,
                             performance_price_per_mw=spec.performance_price_per_mw,
                             reserve_capacity_price_per_mw_h=rs.capacity_price_per_mw_h,
                             reserve_energy_price_per_mwh=rs.energy_price_per_mwh)]


SERVICE = ServiceDef(
    name="ancillary", spec=AncillaryServiceSpec, default=AncillaryServiceSpec(),
    enabled=lambda spec: spec.enabled or spec.reserve.enabled, build=_build, problems=problems, tables=TABLES,
    kpis=kpis, kpi_notes=KPI_NOTES,
    flows=(ServiceFlow("regulation", "owner", "amount", +1), ServiceFlow("reserve", "owner", "amount", +1)),
    pages={"regulation": "frequency-regulation payments per resource",
           "regulation_intervals": "frequency regulation per interval",
           "reserve": "upward reserve per resource and interval (capacity held, energy activated)"},
)
