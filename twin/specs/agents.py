"""Scenario spec of the agents: households (PV, batteries, flexible loads), EVs, community
storage, learning, the VPP and forecasts; the TSO's section is :mod:`twin.specs.tso`."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from twin.grid.der_spec import DerFunctionsSpec
from twin.spec_base import NonNegFloat, PosFloat, Share, SpecModel
from twin.specs.tso import TSOSpec

__all__ = ["AgentsSpec", "CommunityStorageSpec", "EVSpec", "FlexLoadSpec", "ForecastSpec",
           "HouseholdBatterySpec", "HouseholdSpec", "LearningSpec", "PVSpec", "Strategy", "VPPSpec"]

_Spec = SpecModel


class PVSpec(_Spec):
    """Rooftop PV on a share of the households."""

    share: Share = 0.4
    kwp_min: PosFloat = 4.0
    kwp_max: PosFloat = 12.0
    #: IEEE 1547 grid-support functions of the PV inverters (twin/grid/der_spec.py); null: none
    der_functions: DerFunctionsSpec | None = None

    @model_validator(mode="after")
    def _range(self) -> PVSpec:
        if self.kwp_min > self.kwp_max:
            raise ValueError(f"kwp_min ({self.kwp_min}) must not exceed kwp_max ({self.kwp_max})")
        return self


class HouseholdBatterySpec(_Spec):
    """Home batteries (behind the household meter) on a share of the PV households."""

    share: Share = 0.3
    capacity_kwh: PosFloat = 10.0
    power_kw: PosFloat = 5.0
    efficiency: Annotated[float, Field(gt=0, le=1)] = 0.95  # round trip
    soc_min: Share = 0.1
    soc_max: Share = 0.95
    soc_init: Share = 0.5
    #: IEEE 1547 grid-support functions of the battery inverters; null: none
    der_functions: DerFunctionsSpec | None = None
    #: home batteries answer demand-response calls (offer to stop charging and discharge
    #: down to soc_min; the TenneT pilot's residential batteries)
    dr: bool = False
    #: with ``dr``: outside a DR call self-consumption discharges only above
    #: max(soc_min, dr_reserve_soc), keeping the rest for the calls; 0 = no reservation
    dr_reserve_soc: Share = 0.0

    @model_validator(mode="after")
    def _soc(self) -> HouseholdBatterySpec:
        if self.dr_reserve_soc > self.soc_max:
            raise ValueError(f"dr_reserve_soc ({self.dr_reserve_soc}) must not exceed soc_max ({self.soc_max})")
        if self.dr_reserve_soc > 0 and not self.dr:
            raise ValueError("dr_reserve_soc keeps energy for DR calls: set dr: true or drop it")
        return _soc_band(self)


def _soc_band(spec: Any) -> Any:
    if spec.soc_min >= spec.soc_max:
        raise ValueError(f"soc_min ({spec.soc_min}) must be below soc_max ({spec.soc_max})")
    if not spec.soc_min <= spec.soc_init <= spec.soc_max:
        raise ValueError(f"soc_init ({spec.soc_init}) must lie in [soc_min, soc_max]")
    return spec


#: Bidding strategies (twin/agents/strategies.py).
Strategy = Literal["truthful", "zi_c", "roth_erev"]


class FlexLoadSpec(_Spec):
    """Flexible load of a share of the households (shiftable appliances, heat-pump energy):
    ``energy_kwh`` to consume every day inside the comfort window
    ``[earliest_hour, latest_hour)`` (UTC hour of day; wraps past midnight when
    ``latest_hour <= earliest_hour``) at up to ``power_kw``."""

    share: Share = 0.0
    energy_kwh: PosFloat = 3.0
    power_kw: PosFloat = 2.0
    earliest_hour: Annotated[float, Field(ge=0, lt=24)] = 8.0
    latest_hour: Annotated[float, Field(ge=0, le=24)] = 20.0

    @model_validator(mode="after")
    def _fits(self) -> FlexLoadSpec:
        span = (self.latest_hour - self.earliest_hour) % 24 or 24.0
        if self.energy_kwh > self.power_kw * span:
            raise ValueError(f"energy_kwh ({self.energy_kwh}) cannot be met at power_kw "
                             f"({self.power_kw}) within a {span:g} h window")
        return self


class HouseholdSpec(_Spec):
    """Households: one meter each (a market device), load from profiles."""

    count: Annotated[int, Field(gt=0, le=100_000)] = 40
    #: "simbench": the feeder's own SimBench household profiles; "synthetic": seeded generator.
    profiles: Literal["simbench", "synthetic"] = "simbench"
    annual_kwh: PosFloat = 3500.0  # used by synthetic profiles
    pv: PVSpec = PVSpec()
    battery: HouseholdBatterySpec = HouseholdBatterySpec()
    flex: FlexLoadSpec = FlexLoadSpec()
    #: willingness to pay / reservation price are drawn around the tariffs
    forecast_error: NonNegFloat = 0.05  # relative std-dev of the agents' own forecast
    strategy: Strategy | None = None  # default: agents.strategy


class EVSpec(_Spec):
    """Electric vehicles with a separately metered charger (a market device)."""

    count: Annotated[int, Field(ge=0, le=100_000)] = 10
    charger_kw: PosFloat = 11.0
    battery_kwh: PosFloat = 60.0
    arrival_hour_mean: Annotated[float, Field(ge=0, lt=24)] = 18.0
    arrival_hour_std: NonNegFloat = 1.5
    departure_hour_mean: Annotated[float, Field(ge=0, lt=24)] = 7.5
    departure_hour_std: NonNegFloat = 1.0
    energy_need_kwh_mean: PosFloat = 15.0
    energy_need_kwh_std: NonNegFloat = 5.0
    strategy: Strategy | None = None  # default: agents.strategy
    #: vehicle-to-grid: a plugged EV may sell (discharge to the grid) when it has slack
    v2g: bool = False
    #: round trip of a V2G cycle: delivering d Wh takes d / v2g_efficiency from the battery
    v2g_efficiency: Annotated[float, Field(gt=0, le=1)] = 0.9
    #: V2G never discharges the battery below this state of charge
    v2g_soc_min: Share = 0.2
    #: battery wear added to the V2G reservation price, per MWh delivered
    v2g_wear_per_mwh: NonNegFloat = 20.0
    #: IEEE 1547 grid-support functions of the (V2G) chargers; null: none
    der_functions: DerFunctionsSpec | None = None


class CommunityStorageSpec(_Spec):
    """Community batteries (each a market device)."""

    count: Annotated[int, Field(ge=0, le=1000)] = 1
    capacity_kwh: PosFloat = 100.0
    power_kw: PosFloat = 30.0
    efficiency: Annotated[float, Field(gt=0, le=1)] = 0.92
    soc_min: Share = 0.1
    soc_max: Share = 0.95
    soc_init: Share = 0.5
    #: can hold voltage and frequency in an island (read by the islanding studies)
    grid_forming: bool = False
    #: state of charge held back for demand-response calls: outside a DR interval the
    #: battery sells only above max(soc_min, dr_reserve_soc); 0 = no reservation
    dr_reserve_soc: Share = 0.0
    #: IEEE 1547 grid-support functions of the battery inverters; null: none
    der_functions: DerFunctionsSpec | None = None

    @model_validator(mode="after")
    def _soc(self) -> CommunityStorageSpec:
        if self.dr_reserve_soc > self.soc_max:
            raise ValueError(f"dr_reserve_soc ({self.dr_reserve_soc}) must not exceed soc_max ({self.soc_max})")
        return _soc_band(self)


class LearningSpec(_Spec):
    """Roth-Erev learner: markup choices, forgetting and experimentation."""

    actions: Annotated[int, Field(ge=2, le=100)] = 10
    recency: Annotated[float, Field(ge=0, lt=1)] = 0.1
    experimentation: Annotated[float, Field(ge=0, lt=1)] = 0.2
    initial_propensity: PosFloat = 0.05  # currency units, about one interval's surplus


class VPPSpec(_Spec):
    """A VPP aggregator bundling PV households (with or without battery)."""

    members: Annotated[int, Field(ge=0, le=10_000)] = 0  # 0: no VPP
    strategy: Strategy | None = None  # default: agents.strategy
    exact_max: Annotated[int, Field(ge=1, le=20)] = 12  # exact Shapley up to this many
    n_permutations: Annotated[int, Field(ge=10)] = 500  # sampling beyond
    delta: Annotated[float, Field(gt=0, lt=1)] = 0.05  # error-bound confidence 1 - delta


class ForecastSpec(_Spec):
    """The agents' load / PV / price forecasts (twin/agents/forecast.py). ``noise``: the
    truth times a seeded relative error ``households.forecast_error`` (prices: mean of
    recent clearing prices); ``persistence``: same time yesterday; ``gbm``: gradient
    boosting trained on ``train_days`` SimBench days before ``start`` (prices: on the run's
    own clearing history). ``persistence`` / ``gbm`` need SimBench household profiles and
    ``train_days + 7`` days of the year before ``start`` (no training on simulated days)."""

    method: Literal["noise", "persistence", "gbm"] = "noise"
    train_days: Annotated[int, Field(ge=1, le=300)] = 28


class AgentsSpec(_Spec):
    households: HouseholdSpec = HouseholdSpec()
    evs: EVSpec = EVSpec()
    community_storage: CommunityStorageSpec = CommunityStorageSpec()
    #: default bidding strategy of every group: truthful | zi_c | roth_erev
    strategy: Strategy = "truthful"
    learning: LearningSpec = LearningSpec()
    tso: TSOSpec = TSOSpec()
    vpp: VPPSpec = VPPSpec()
    forecast: ForecastSpec = ForecastSpec()

    @model_validator(mode="after")
    def _vpp_members(self) -> AgentsSpec:
        # the feeder gives PV to round(share * count) households (twin.grid.feeders); a VPP
        # asking for more members would silently bundle fewer (e.g. a pilot's portfolio)
        n_pv = round(self.households.pv.share * self.households.count)
        if self.vpp.members > n_pv:
            raise ValueError(f"vpp.members ({self.vpp.members}) exceeds the {n_pv} PV households "
                             f"(households.pv.share {self.households.pv.share:g} x households.count "
                             f"{self.households.count}): a VPP bundles PV households only")
        return self
