"""``market.services.demand_response``:
the spec and its checks against the rest of the scenario."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field

from twin.spec_base import SpecModel

if TYPE_CHECKING:
    from twin.scenario import Scenario

__all__ = ["DemandResponseServiceSpec", "problems"]

FIELD = "market.services.demand_response.enabled"


class DemandResponseServiceSpec(SpecModel):
    """DemandResponse on the ledger (twin/services/demand_response): every DR event the TSO
    calls is posted by the DSO (target and price from the TSO signal, budget escrowed),
    the flexible devices (households with a flexible load, EV chargers, community batteries)
    commit, and compensation is paid on the metered reduction below the baseline when the
    interval settles."""

    enabled: bool = False
    #: baseline = floor mean of the device's metered consumption over this many intervals
    baseline_intervals: Annotated[int, Field(gt=0, le=96)] = 4
    #: non-delivery bond (#19): a commitment escrows this share (basis points) of its full
    #: pay from the owner's free balance (an owner who cannot post it does not commit); the
    #: same share of the undelivered part's pay goes to the poster, the rest comes back
    penalty_bps: Annotated[int, Field(ge=0, le=10_000)] = 1000


def problems(sc: Scenario) -> list[tuple[str, str]]:
    """What the rest of the scenario cannot support, as (field path, message)."""
    ag = sc.agents
    out: list[tuple[str, str]] = []
    if ag.tso.gap_threshold_kw is None:
        out.append((FIELD, "demand response needs a TSO that calls events "
                           "(agents.tso.gap_threshold_kw)"))
    if ag.tso.dr_price_per_mwh <= 0:
        out.append((FIELD, "demand response needs a compensation price "
                           "(agents.tso.dr_price_per_mwh > 0)"))
    if (ag.evs.count == 0 and ag.community_storage.count == 0
            and round(ag.households.flex.share * ag.households.count) == 0
            and not (ag.households.battery.dr and ag.households.battery.share > 0
                     and ag.households.pv.share > 0)):
        out.append((FIELD, "no flexible device can commit (agents.evs.count and "
                           "agents.community_storage.count are 0, no household has a flexible load "
                           "or a home battery with agents.households.battery.dr)"))
    return out
