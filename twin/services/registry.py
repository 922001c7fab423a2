"""Every market service the twin knows, in the order their hooks run: one line each.

Adding a service is one folder under ``twin/services/`` (its ``SERVICE``) and one line
here. The scenario spec (``market.services.<name>``), its cross-field checks, the results
schemas, the KPIs, ``twin compare``'s money flows, the dashboards and the run all iterate
:data:`SERVICES`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from pydantic import create_model

from twin.services import (
    ancillary,
    assets,
    certificates,
    charger_tariffs,
    demand_response,
    green_currency,
    green_exchange,
    network_fee,
)
from twin.services.base import ServiceDef, ServiceFlow, spec_of
from twin.spec_base import SpecModel

if TYPE_CHECKING:
    from twin.scenario import Scenario

__all__ = ["SERVICES", "by_name", "market_services_model", "service_flows", "service_problems",
           "service_tables", "table_pages"]

SERVICES: tuple[ServiceDef, ...] = (
    demand_response.SERVICE,
    certificates.SERVICE,
    assets.SERVICE,
    green_exchange.SERVICE,
    charger_tariffs.SERVICE,
    green_currency.SERVICE,
    network_fee.SERVICE,
    ancillary.SERVICE,
)


def by_name() -> dict[str, ServiceDef]:
    return {d.name: d for d in SERVICES}


def service_tables() -> dict[str, pa.Schema]:
    """Results tables of every service (name -> Arrow schema); names are unique."""
    out: dict[str, pa.Schema] = {}
    for d in SERVICES:
        for name, schema in d.tables.items():
            if name in out:
                raise ValueError(f"results table {name!r} declared by two services")
            out[name] = schema
    return out


def service_flows() -> tuple[ServiceFlow, ...]:
    """Money every service moves outside the market's settlement (``twin compare``)."""
    return tuple(f for d in SERVICES for f in d.flows)


def table_pages() -> Mapping[str, str]:
    """Service tables the dashboards list (table -> what it holds), in registry order."""
    return {t: what for d in SERVICES for t, what in d.pages.items()}


def market_services_model() -> type[SpecModel]:
    """``market.services`` of the scenario: one optional section per service, each off by
    default (:class:`twin.scenario.MarketServicesSpec`)."""
    fields: dict[str, Any] = {d.name: (d.spec, d.default) for d in SERVICES}
    return create_model("MarketServicesSpec", __base__=SpecModel,
                        __doc__="Market services on the ledger (twin/services), each off by default.",
                        **fields)


def service_problems(scenario: Scenario) -> list[tuple[str, str]]:
    """What the rest of the scenario cannot support of the services it switches on, as
    (field path, message)."""
    out: list[tuple[str, str]] = []
    for d in SERVICES:
        if d.enabled(spec_of(scenario, d.name)):
            out += d.problems(scenario)
    return out
