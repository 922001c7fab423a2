"""``market.services.charger_tariffs``:
the spec and its checks against the rest of the scenario."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

from pydantic import Field, model_validator

from twin.spec_base import NonNegFloat, PosFloat, Share, SpecModel

if TYPE_CHECKING:
    from twin.scenario import Scenario

__all__ = ["ChargerTariffsServiceSpec", "problems"]


class ChargerTariffsServiceSpec(SpecModel):
    """Shared private EV chargers with owner-set tariffs (the Share&Charge pilot;
    twin/services/charger_tariffs): the first ``shared_share`` of the EV chargers (by
    device id) are shared; their owners post a tariff within the bounds, visiting drivers
    pay each charging session on its metered energy from their escrow."""

    enabled: bool = False
    shared_share: Share = 1.0
    tariff_min_per_mwh: NonNegFloat = 100.0
    tariff_max_per_mwh: PosFloat = 600.0
    #: hosts set their own prices: host j posts the common tariff x (1 + host_markup x f_j),
    #: f_j = frac(j x golden ratio) spread over [0, 1) (clamped to the bounds); 0: one tariff
    host_markup: Annotated[float, Field(ge=0, le=10)] = 0.0
    #: drivers choose among the chargers starting a session (by price and distance): each
    #: free visiting driver, in a rotating order, takes the one with the lowest
    #: tariff x battery + 2 x distance_km x km_cost; false: a fixed driver per charger
    driver_choice: bool = False
    km_cost: NonNegFloat = 0.3  # currency per km driven to a charger and back
    #: a session locks at least this energy's price at tariff_min_per_mwh (the contracts'
    #: ``minLock``): holding a charger with a tiny session ties up real money (#19)
    min_lock_kwh: Annotated[float, Field(ge=0, le=1000)] = 1.0

    @model_validator(mode="after")
    def _bounds(self) -> ChargerTariffsServiceSpec:
        if self.tariff_min_per_mwh > self.tariff_max_per_mwh:
            raise ValueError(f"tariff_min_per_mwh ({self.tariff_min_per_mwh}) must not exceed "
                             f"tariff_max_per_mwh ({self.tariff_max_per_mwh})")
        return self


def problems(sc: Scenario) -> list[tuple[str, str]]:
    """What the rest of the scenario cannot support, as (field path, message)."""
    ag, spec = sc.agents, sc.market.services.charger_tariffs
    if ag.evs.count == 0:
        return [("market.services.charger_tariffs.enabled",
                 "no charger to share: agents.evs.count is 0")]
    if spec.min_lock_kwh > ag.evs.battery_kwh:
        return [("market.services.charger_tariffs.min_lock_kwh",
                 f"{spec.min_lock_kwh} kWh exceeds the EV battery (agents.evs.battery_kwh = "
                 f"{ag.evs.battery_kwh}): no session could lock it")]
    if int(spec.shared_share * ag.evs.count + 0.5) == 0:
        return [("market.services.charger_tariffs.shared_share",
                 f"shares none of the {ag.evs.count} EV chargers")]
    return []
