"""Demand response: the TSO calls a reduction, the DSO posts it with an escrowed budget, the
flexible devices commit, and compensation is paid on the metered reduction below the
baseline.

This folder: ``spec`` (the scenario section and its cross-field checks), ``rules`` (the
pure reference), ``chain`` (the on-chain client), ``service`` (the run hooks), ``results``
(tables and KPIs); :data:`SERVICE` registers it (:mod:`twin.services.registry`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twin.services.base import MarketService, ServiceContext, ServiceDef, ServiceFlow, spec_of
from twin.services.demand_response import results
from twin.services.demand_response.spec import DemandResponseServiceSpec, problems

if TYPE_CHECKING:
    from twin.scenario import Scenario

__all__ = ["SERVICE"]


def _build(scenario: Scenario, ctx: ServiceContext, accounts: list[int]) -> list[MarketService]:
    from twin.services.demand_response.service import DemandResponseService

    spec = spec_of(scenario, "demand_response")
    return [DemandResponseService(ctx, baseline_intervals=spec.baseline_intervals,
                                  penalty_bps=spec.penalty_bps)]


SERVICE = ServiceDef.switched(
    "demand_response", spec=DemandResponseServiceSpec, results=results, build=_build, problems=problems,
    flows=(ServiceFlow("dr_payouts", "owner", "amount", +1),
           ServiceFlow("dr_payouts", "owner", "penalty", -1)),
    pages={"dr_events": "demand-response events", "dr_payouts": "demand-response payouts"},
)
