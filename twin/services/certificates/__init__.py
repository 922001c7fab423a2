"""Green certificates: one per delivered renewable kWh, to the trade's buyer, who retires a
share of them.

This folder: ``spec`` (the scenario section and its cross-field checks), ``rules`` (the
pure reference), ``chain`` (the on-chain client), ``service`` (the run hooks), ``results``
(tables and KPIs); :data:`SERVICE` registers it (:mod:`twin.services.registry`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from twin.services.base import MarketService, ServiceContext, ServiceDef, spec_of
from twin.services.certificates import results
from twin.services.certificates.spec import CertificatesServiceSpec, problems

if TYPE_CHECKING:
    from twin.scenario import Scenario

__all__ = ["SERVICE"]


def _build(scenario: Scenario, ctx: ServiceContext, accounts: list[int]) -> list[MarketService]:
    from twin.services.certificates.service import CertificateService

    return [CertificateService(ctx, retire_share=spec_of(scenario, "certificates").retire_share)]


SERVICE = ServiceDef.switched(
    "certificates", spec=CertificatesServiceSpec, results=results, build=_build, problems=problems,
    pages={"certificates": "green certificates issued and retired"},
)
