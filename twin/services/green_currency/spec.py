"""``market.services.green_currency``:
the spec and its checks against the rest of the scenario."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from twin.spec_base import SpecModel

if TYPE_CHECKING:
    from twin.scenario import Scenario

__all__ = ["GreenCurrencyServiceSpec", "problems"]


class GreenCurrencyServiceSpec(SpecModel):
    """Green-currency incentives (the Shanghai VPP platform; twin/services/green_currency):
    tokens minted per kWh of renewable consumption (bought from PV sellers, or redeemed green
    tokens under market.services.green_exchange) and per kWh of metered demand-response reduction."""

    enabled: bool = False
    tokens_per_kwh_renewable: Annotated[float, Field(ge=0, le=1e6)] = 1.0
    tokens_per_kwh_dr: Annotated[float, Field(ge=0, le=1e6)] = 2.0


def problems(sc: Scenario) -> list[tuple[str, str]]:
    """What the rest of the scenario cannot support, as (field path, message)."""
    gc, ag = sc.market.services.green_currency, sc.agents
    out: list[tuple[str, str]] = []
    if gc.tokens_per_kwh_renewable == 0 and gc.tokens_per_kwh_dr == 0:
        out.append(("market.services.green_currency.enabled",
                    "both tokens_per_kwh_renewable and tokens_per_kwh_dr are 0"))
    if gc.tokens_per_kwh_renewable > 0 and ag.households.pv.share == 0:
        out.append(("market.services.green_currency.tokens_per_kwh_renewable",
                    "no renewable seller: agents.households.pv.share is 0"))
    if gc.tokens_per_kwh_dr > 0 and ag.tso.gap_threshold_kw is None:
        out.append(("market.services.green_currency.tokens_per_kwh_dr",
                    "no demand response is ever called (agents.tso.gap_threshold_kw is null)"))
    return out
