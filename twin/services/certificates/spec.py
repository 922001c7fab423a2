"""``market.services.certificates``:
the spec and its checks against the rest of the scenario."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twin.spec_base import Share, SpecModel

if TYPE_CHECKING:
    from twin.scenario import Scenario

__all__ = ["CertificatesServiceSpec", "problems"]


class CertificatesServiceSpec(SpecModel):
    """GreenCertificate: one certificate per delivered renewable kWh (metered PV injection
    sold on the market, after curtailment), to the trade's buyer; buyers retire
    ``retire_share`` of what they receive (floor)."""

    enabled: bool = False
    retire_share: Share = 1.0


def problems(sc: Scenario) -> list[tuple[str, str]]:
    """What the rest of the scenario cannot support, as (field path, message)."""
    out: list[tuple[str, str]] = []
    if sc.agents.households.pv.share == 0:
        out.append(("market.services.certificates.enabled",
                    "no renewable seller: agents.households.pv.share is 0"))
    if sc.market.services.green_exchange.enabled:
        out.append(("market.services.certificates.enabled",
                    "cannot be combined with market.services.green_exchange: its tokens "
                    "already claim the green kWh (double counting of green claims)"))
    return out
