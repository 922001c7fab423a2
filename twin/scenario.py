"""Typed scenario spec: YAML -> :class:`Scenario`, every error with its field path.

A scenario file is validated as a whole: unknown keys, wrong types, out-of-range values
and cross-field inconsistencies are all collected and raised together as
:class:`ScenarioError`, each line naming the file and the dotted field path
(``quickstart.yaml: agents.households.count: Input should be greater than 0``).

Units follow the project convention: prices in currency/MWh in the YAML (converted to the
market's integer micro-units by :mod:`twin.market.units`), powers in kW, energies in kWh,
time in seconds.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal, Self

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "AssetServiceSpec",
    "CertificatesServiceSpec",
    "ChainSpec",
    "ChargerTariffsServiceSpec",
    "CommunityStorageSpec",
    "DemandResponseServiceSpec",
    "EVSpec",
    "FlexLoadSpec",
    "ForecastSpec",
    "GameGridSpec",
    "GameSpec",
    "GeneratorUnitSpec",
    "GreenCurrencyServiceSpec",
    "GreenExchangeServiceSpec",
    "GridSpec",
    "HILDeviceSpec",
    "HILSpec",
    "HouseholdBatterySpec",
    "HouseholdSpec",
    "LearningSpec",
    "MarketServicesSpec",
    "MarketSpec",
    "NetworkTariffSpec",
    "PVSpec",
    "ResilienceSpec",
    "Scenario",
    "ScenarioError",
    "Strategy",
    "TSOSpec",
    "UpstreamOutageSpec",
    "VPPSpec",
    "load_scenario",
    "scenario_from_dict",
]

PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Share = Annotated[float, Field(ge=0, le=1)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class NetworkTariffSpec(_Spec):
    """Local network tariff published by the DSO: a time-of-use fee per MWh bought on the
    local market, ``peak_fee_per_mwh`` in ``[peak_start_hour, peak_end_hour)`` (UTC hour of
    day; wraps past midnight when ``peak_end_hour <= peak_start_hour``), else
    ``offpeak_fee_per_mwh``. Buyers bid their willingness to pay net of the fee. All zero
    (default): no fee, results as without a tariff."""

    offpeak_fee_per_mwh: NonNegFloat = 0.0
    peak_fee_per_mwh: NonNegFloat = 0.0
    peak_start_hour: Annotated[float, Field(ge=0, lt=24)] = 17.0
    peak_end_hour: Annotated[float, Field(ge=0, le=24)] = 21.0


class _DsoLimitsSpec(_Spec):
    """The DSO's operating limits (voltage band, branch loading) of a grid."""

    vm_min_pu: PosFloat = 0.95
    vm_max_pu: PosFloat = 1.05
    max_loading_percent: PosFloat = 100.0

    @model_validator(mode="after")
    def _band(self) -> Self:
        if self.vm_min_pu >= self.vm_max_pu:
            raise ValueError(f"vm_min_pu ({self.vm_min_pu}) must be below vm_max_pu ({self.vm_max_pu})")
        return self


class GridSpec(_DsoLimitsSpec):
    """The feeder and the DSO's operating limits."""

    kind: Literal["simbench", "cigre_lv", "case33bw"] = "simbench"
    #: SimBench grid code (used when kind is "simbench").
    simbench_code: str = "1-LV-semiurb4--0-sw"
    #: local network tariff published by the DSO every interval
    tariff: NetworkTariffSpec = NetworkTariffSpec()


class PVSpec(_Spec):
    """Rooftop PV on a share of the households."""

    share: Share = 0.4
    kwp_min: PosFloat = 4.0
    kwp_max: PosFloat = 12.0

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


class TSOSpec(_Spec):
    """TSO: demand-response calls when the forecast gap is large; imbalance prices."""

    #: forecast net import (load - generation) of the feeder above which a DR event is
    #: called for the next interval; null: never
    gap_threshold_kw: PosFloat | None = None
    #: compensation offered per curtailed MWh in a DR event
    dr_price_per_mwh: NonNegFloat = 400.0
    #: imbalance price = retail * (1 + imbalance_gain * max(0, gap / threshold - 1))
    imbalance_gain: NonNegFloat = 0.5
    #: loss of the upstream grid from this time (seconds since start); null: never
    upstream_loss_s: Annotated[int, Field(ge=0)] | None = None
    upstream_restore_s: Annotated[int, Field(gt=0)] | None = None

    @model_validator(mode="after")
    def _loss(self) -> TSOSpec:
        if self.upstream_restore_s is not None and (
            self.upstream_loss_s is None or self.upstream_restore_s <= self.upstream_loss_s
        ):
            raise ValueError("upstream_restore_s needs an earlier upstream_loss_s")
        return self


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


class DemandResponseServiceSpec(_Spec):
    """DemandResponse on the ledger (twin/market/value_services.py): every DR event the TSO
    calls is posted by the DSO (target and price from the TSO signal, budget escrowed),
    the flexible devices (households with a flexible load, EV chargers, community batteries)
    commit, and compensation is paid on the metered reduction below the baseline when the
    interval settles."""

    enabled: bool = False
    #: baseline = floor mean of the device's metered consumption over this many intervals
    baseline_intervals: Annotated[int, Field(gt=0, le=96)] = 4


class CertificatesServiceSpec(_Spec):
    """GreenCertificate: one certificate per delivered renewable kWh (metered PV injection
    sold on the market, after curtailment), to the trade's buyer; buyers retire
    ``retire_share`` of what they receive (floor)."""

    enabled: bool = False
    retire_share: Share = 1.0


#: agents that can be tokenized: ``storage_<j>`` (alias ``community_storage_<j>``),
#: ``household_<i>`` (its meter: PV sales), ``ev_<e>`` (V2G sales)
AssetAgent = Annotated[str, Field(pattern=r"^(household|ev|storage|community_storage)_[0-9]+$")]


class AssetServiceSpec(_Spec):
    """AssetToken over one agent's market device: ``shares`` split among ``investors`` new
    accounts; the device's market revenue of each interval distributed pro rata; holders
    claim at the end of the run."""

    asset: AssetAgent
    investors: Annotated[int, Field(gt=0, le=1000)] = 4
    shares: Annotated[int, Field(gt=0, le=10**12)] = 1000

    @model_validator(mode="after")
    def _split(self) -> AssetServiceSpec:
        if self.shares < self.investors:
            raise ValueError(f"shares ({self.shares}) must be at least investors ({self.investors})")
        return self

    @property
    def agent(self) -> str:
        """The model's agent name (``community_storage_<j>`` -> ``storage_<j>``)."""
        return self.asset.removeprefix("community_")


class GreenExchangeServiceSpec(_Spec):
    """Fixed prices of the green-token exchange (``market.mechanism: green_exchange``, the
    EU Scanergy pilot; twin/market/green_exchange.py): the DSO buys prosumers' metered PV
    surplus as tokens (1 token = 1 kWh) at ``buy_price_per_mwh`` and sells tokens to
    consumers at ``sell_price_per_mwh``, who redeem them against their metered consumption.
    Prices are for the green token; the energy itself still settles at the market's retail
    and feed-in tariffs (set ``market.feed_in_price_per_mwh: 0`` to pay surplus only here)."""

    buy_price_per_mwh: PosFloat = 100.0
    sell_price_per_mwh: PosFloat = 120.0
    #: the token at a market rate: after each interval the DSO moves both prices by
    #: ``rate_adjustment x (demand - supply) / (demand + supply)`` (relative; demand: the
    #: whole kWh of uncovered consumption, supply: the tokens offered plus the DSO's stock),
    #: within ``rate_min``..``rate_max`` times the prices above. 0: fixed prices (the pilot's
    #: published rule, a special case)
    rate_adjustment: Annotated[float, Field(ge=0, le=1)] = 0.0
    rate_min: Annotated[float, Field(gt=0, le=1)] = 0.25
    rate_max: Annotated[float, Field(ge=1, le=100)] = 4.0


class ChargerTariffsServiceSpec(_Spec):
    """Shared private EV chargers with owner-set tariffs (the Share&Charge pilot;
    twin/market/charger_tariffs.py): the first ``shared_share`` of the EV chargers (by
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

    @model_validator(mode="after")
    def _bounds(self) -> ChargerTariffsServiceSpec:
        if self.tariff_min_per_mwh > self.tariff_max_per_mwh:
            raise ValueError(f"tariff_min_per_mwh ({self.tariff_min_per_mwh}) must not exceed "
                             f"tariff_max_per_mwh ({self.tariff_max_per_mwh})")
        return self


class GreenCurrencyServiceSpec(_Spec):
    """Green-currency incentives (the Shanghai VPP platform; twin/market/green_currency.py):
    tokens minted per kWh of renewable consumption (bought from PV sellers, or redeemed green
    tokens under the green exchange) and per kWh of metered demand-response reduction."""

    enabled: bool = False
    tokens_per_kwh_renewable: Annotated[float, Field(ge=0, le=1e6)] = 1.0
    tokens_per_kwh_dr: Annotated[float, Field(ge=0, le=1e6)] = 2.0


class MarketServicesSpec(_Spec):
    """Market services on the ledger (twin/market/services.py), each off by default."""

    demand_response: DemandResponseServiceSpec = DemandResponseServiceSpec()
    certificates: CertificatesServiceSpec = CertificatesServiceSpec()
    assets: list[AssetServiceSpec] = []
    #: pilot mechanisms (twin/market/pilot_services.py)
    green_exchange: GreenExchangeServiceSpec = GreenExchangeServiceSpec()
    charger_tariffs: ChargerTariffsServiceSpec = ChargerTariffsServiceSpec()
    green_currency: GreenCurrencyServiceSpec = GreenCurrencyServiceSpec()

    @model_validator(mode="after")
    def _distinct(self) -> MarketServicesSpec:
        names = [a.agent for a in self.assets]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"assets: tokenized more than once: {dup}")
        return self


class MarketSpec(_Spec):
    """Local market: interval, tariffs against the DSO/supplier, funding."""

    interval_s: Annotated[int, Field(gt=0, le=86_400)] = 900
    ledger: Literal["chain", "reference"] = "chain"
    #: matching rule (twin/market/mechanisms.py): uniform-price double auction, or
    #: continuous double auction, pay-as-bid (the market table's price is then the
    #: volume-weighted mean trade price); or green_exchange: no P2P orders, prosumers'
    #: surplus goes to the DSO for green tokens (market.services.green_exchange)
    mechanism: Literal["uniform", "cda", "green_exchange"] = "uniform"
    retail_price_per_mwh: PosFloat = 300.0
    feed_in_price_per_mwh: NonNegFloat = 80.0
    initial_balance: PosFloat = 1000.0  # currency units per participant
    dso_balance: PosFloat = 1_000_000.0
    #: value-layer services: demand response, green certificates, tokenized assets
    services: MarketServicesSpec = MarketServicesSpec()

    @model_validator(mode="after")
    def _tariffs(self) -> MarketSpec:
        if self.feed_in_price_per_mwh >= self.retail_price_per_mwh:
            raise ValueError(
                f"feed_in_price_per_mwh ({self.feed_in_price_per_mwh}) must be below "
                f"retail_price_per_mwh ({self.retail_price_per_mwh})"
            )
        return self


class ChainSpec(_Spec):
    """Where the ledger runs: a twin-managed Anvil (default) or an external RPC URL."""

    rpc_url: str | None = None



# --- cooperative games (twin/market/game.py) ---------------------------------------------


class GeneratorUnitSpec(_Spec):
    """A generator unit: cost a p^2 + b p + c, bid k (2 a p + b), p in [p_min_mw, p_max_mw]."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    a: PosFloat
    b: NonNegFloat
    c: NonNegFloat = 0.0
    p_min_mw: NonNegFloat
    p_max_mw: PosFloat
    k: Annotated[float, Field(ge=1)] = 1.0
    #: its bus (``net.bus`` label) on ``game.grid``; required there, unused without it
    bus: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _range(self) -> GeneratorUnitSpec:
        if self.p_min_mw > self.p_max_mw:
            raise ValueError(f"p_min_mw ({self.p_min_mw}) must not exceed p_max_mw ({self.p_max_mw})")
        return self


class GameGridSpec(_DsoLimitsSpec):
    """The game's feeder for the DSO security check (twin/market/game_security.py): a
    SimBench grid at the hour ``start`` (its real profiles as background) and the DSO's
    limits (same names and defaults as ``grid:``)."""

    simbench_code: Annotated[str, Field(min_length=1)]


class GameSpec(_Spec):
    """A cooperative-game scenario (``twin run`` plays it instead of a feeder day)."""

    kind: Literal["consortium_generators"] = "consortium_generators"
    units: Annotated[list[GeneratorUnitSpec], Field(min_length=2, max_length=8)]  # 3**n dispatches
    demand_mwh: PosFloat
    period_h: PosFloat = 1.0
    #: how a coalition is valued: ``profit`` (revenue minus the cost of the paper's equation
    #: (1), each coalition priced by its own units) or ``paper`` (the seed paper's Table 3:
    #: the consortium's Fig. 7 price for every coalition, profit counted against each unit's
    #: marginal cost at its dispatch); see twin/market/game_paper.py
    valuation: Literal["profit", "paper"] = "profit"
    #: feeder of the DSO security check (null: the game has no network)
    grid: GameGridSpec | None = None
    #: the buyer's bus on ``grid`` (``net.bus`` label)
    buyer_bus: Annotated[int, Field(ge=0)] | None = None

    @model_validator(mode="after")
    def _names(self) -> GameSpec:
        names = [u.name for u in self.units]
        if len(set(names)) != len(names):
            raise ValueError(f"unit names must be distinct: {names}")
        return self


def _game_problems(g: GameSpec | None) -> list[tuple[str, str]]:
    """Buses without a game grid or a game grid without buses, a demand off the paper's bid
    curve, as (field path, message); whether a bus exists in the grid is checked when the
    grid is loaded (twin run)."""
    if g is None:
        return []
    out: list[tuple[str, str]] = []
    q0, q1 = sum(u.p_min_mw for u in g.units), sum(u.p_max_mw for u in g.units)
    if g.valuation == "paper" and not q0 <= g.demand_mwh / g.period_h <= q1:
        out.append(("game.demand_mwh", f"the paper's valuation prices the demand on the consortium's "
                    f"bid curve, defined for {q0:g}..{q1:g} MW (sum of p_min .. sum of p_max); "
                    f"{g.demand_mwh / g.period_h:g} MW is outside"))
    if g.grid is None:
        return (out + [(f"game.units.{i}.bus", "only used with game.grid (set game.grid or drop the bus)")
                       for i, u in enumerate(g.units) if u.bus is not None]
                + ([("game.buyer_bus", "only used with game.grid (set game.grid or drop it)")]
                   if g.buyer_bus is not None else []))
    out += [(f"game.units.{i}.bus", f"unit {u.name} needs its bus on game.grid")
            for i, u in enumerate(g.units) if u.bus is None]
    if g.buyer_bus is None:
        out.append(("game.buyer_bus", "the buyer needs its bus on game.grid"))
    return out


# --- hardware in the loop (twin/hil) ------------------------------------------------------


class HILDeviceSpec(_Spec):
    """One SunSpec Modbus device served to external controllers (``twin hil serve``).

    ``agent`` names what the device mirrors: ``household_<i>`` (its PV for a
    ``pv_inverter``, its home battery for a ``battery``, its meter for a ``meter``),
    ``storage_<j>`` (community battery), ``ev_<e>`` (EV charger); a ``meter`` without an
    agent is the feeder's connection point (sum of all elements, losses excluded).
    ``bus`` overrides the bus whose voltage the device reports.
    """

    unit_id: Annotated[int, Field(ge=1, le=247)]
    kind: Literal["pv_inverter", "battery", "ev_charger", "meter"]
    agent: Annotated[str, Field(pattern=r"^(household|storage|ev)_[0-9]+$")] | None = None
    bus: Annotated[int, Field(ge=0)] | None = None
    nameplate_kw: PosFloat | None = None  # default: the mirrored agent's rating
    name: str | None = None

    @model_validator(mode="after")
    def _agent(self) -> HILDeviceSpec:
        prefix = (self.agent or "").split("_")[0]
        allowed = {"pv_inverter": {"household"}, "battery": {"household", "storage"},
                   "ev_charger": {"ev"}, "meter": {"household", ""}}[self.kind]
        if self.kind != "meter" and self.agent is None:
            raise ValueError(f"a {self.kind} needs the agent it mirrors")
        if prefix not in allowed:
            raise ValueError(f"a {self.kind} cannot mirror {self.agent}")
        if self.kind == "meter" and self.agent is None and self.nameplate_kw is None:
            raise ValueError("a feeder meter needs nameplate_kw (its rating)")
        return self


class HILSpec(_Spec):
    """HIL devices and timing; empty by default (``twin run`` ignores it)."""

    devices: list[HILDeviceSpec] = []
    #: HIL step (register refresh, controls, reversion timers); default: market.interval_s
    step_s: Annotated[int, Field(gt=0)] | None = None
    #: a step starting later than this after its real-time deadline is a deadline miss
    deadline_tolerance_s: PosFloat = 0.1
    max_connections: Annotated[int, Field(ge=1, le=1000)] = 16
    idle_timeout_s: PosFloat = 60.0

    @model_validator(mode="after")
    def _units(self) -> HILSpec:
        ids = [d.unit_id for d in self.devices]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"unit ids used more than once: {dup}")
        return self


class UpstreamOutageSpec(_Spec):
    """A loss of the upstream grid, seconds from the scenario start."""

    start_s: Annotated[int, Field(ge=0)]
    duration_s: Annotated[int, Field(gt=0)]


class ResilienceSpec(_Spec):
    """The study ``twin resilience`` runs (``twin run`` ignores it); see twin.grid.resilience.

    Shedding priorities: lower is shed first.
    """

    n_minus_1: bool = True
    n_minus_k: Annotated[int, Field(ge=2)] = 2
    n_minus_k_samples: Annotated[int, Field(ge=0)] = 0
    upstream_outages: list[UpstreamOutageSpec] = []
    #: which storage forms islands: the community batteries, or none
    grid_forming: Literal["community_storage", "none"] = "community_storage"
    soc_initial: Share = 0.9
    soc_min: Share = 0.1
    efficiency: Annotated[float, Field(gt=0, le=1)] = 0.95
    priority_ev: int = 0
    priority_household: int = 1
    priority_other: int = 2


class Scenario(_Spec):
    """A complete run description."""

    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    description: str = ""
    seed: Annotated[int, Field(ge=0)] = 0
    start: datetime = datetime(2016, 6, 15, tzinfo=UTC)
    duration_s: Annotated[int, Field(gt=0, le=366 * 86_400)] = 86_400
    grid: GridSpec = GridSpec()
    agents: AgentsSpec = AgentsSpec()
    market: MarketSpec = MarketSpec()
    chain: ChainSpec = ChainSpec()
    hil: HILSpec = HILSpec()
    resilience: ResilienceSpec = ResilienceSpec()
    game: GameSpec | None = None  # a cooperative-game scenario instead of a feeder day

    @model_validator(mode="after")
    def _time(self) -> Scenario:
        if self.start.tzinfo is None:
            raise ValueError("start must carry a time zone (e.g. 2016-06-15T00:00:00Z)")
        if self.hil.step_s is not None and self.market.interval_s % self.hil.step_s:
            raise ValueError(
                f"hil.step_s ({self.hil.step_s}) must divide market.interval_s ({self.market.interval_s})"
            )
        if self.duration_s % self.market.interval_s:
            raise ValueError(
                f"duration_s ({self.duration_s}) must be a multiple of market.interval_s "
                f"({self.market.interval_s})"
            )
        return self

    @model_validator(mode="after")
    def _forecast(self) -> Scenario:
        fc, where = self.agents.forecast, "agents.forecast.method"
        if fc.method == "noise":
            return self
        if self.grid.kind != "simbench" or self.agents.households.profiles != "simbench":
            raise ValueError(f"{where}: {fc.method!r} learns from SimBench history and needs "
                             f"grid.kind 'simbench' and agents.households.profiles 'simbench'")
        if 86_400 % self.market.interval_s:
            raise ValueError(f"{where}: {fc.method!r} needs market.interval_s to divide one day "
                             f"(86400 s), got {self.market.interval_s}")
        start = self.start.astimezone(UTC)
        day = (start - datetime(start.year, 1, 1, tzinfo=UTC)).days
        if day < fc.train_days + 7:
            raise ValueError(f"agents.forecast.train_days: {fc.train_days} training days plus a week "
                             f"of lags must lie before start (day {day} of the SimBench year); "
                             f"lower train_days or start later")
        return self

    @model_validator(mode="after")
    def _game(self) -> Scenario:
        problems = _game_problems(self.game)
        if problems:
            raise ValueError("; ".join(f"{path}: {msg}" for path, msg in problems))
        return self

    @model_validator(mode="after")
    def _services(self) -> Scenario:
        problems = _service_problems(self)
        if problems:
            raise ValueError("; ".join(f"{path}: {msg}" for path, msg in problems))
        return self

    @property
    def n_intervals(self) -> int:
        return self.duration_s // self.market.interval_s

    def canonical_json(self) -> str:
        """Stable JSON of the full scenario (defaults included) for hashing and manifests."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


def _service_problems(sc: Scenario) -> list[tuple[str, str]]:
    """Market services the rest of the scenario cannot support, as (field path, message)."""
    sv, ag = sc.market.services, sc.agents
    out: list[tuple[str, str]] = []
    if sv.demand_response.enabled:
        if ag.tso.gap_threshold_kw is None:
            out.append(("market.services.demand_response.enabled",
                        "demand response needs a TSO that calls events (agents.tso.gap_threshold_kw)"))
        if ag.tso.dr_price_per_mwh <= 0:
            out.append(("market.services.demand_response.enabled",
                        "demand response needs a compensation price (agents.tso.dr_price_per_mwh > 0)"))
        if (ag.evs.count == 0 and ag.community_storage.count == 0
                and round(ag.households.flex.share * ag.households.count) == 0
                and not (ag.households.battery.dr and ag.households.battery.share > 0
                         and ag.households.pv.share > 0)):
            out.append(("market.services.demand_response.enabled",
                        "no flexible device can commit (agents.evs.count and "
                        "agents.community_storage.count are 0, no household has a flexible load "
                        "or a home battery with agents.households.battery.dr)"))
    if sv.certificates.enabled and ag.households.pv.share == 0:
        out.append(("market.services.certificates.enabled",
                    "no renewable seller: agents.households.pv.share is 0"))
    counts = {"household": ag.households.count, "ev": ag.evs.count,
              "storage": ag.community_storage.count}
    for i, a in enumerate(sv.assets):
        kind, index = a.agent.rsplit("_", 1)
        if int(index) >= counts[kind]:
            out.append((f"market.services.assets.{i}.asset",
                        f"the scenario has no agent {a.asset!r} ({counts[kind]} {kind} agent(s))"))
    out += _pilot_problems(sc)
    return out


def _pilot_problems(sc: Scenario) -> list[tuple[str, str]]:
    """The pilot mechanisms (green exchange, charger tariffs, green currency) against the
    rest of the scenario, as (field path, message)."""
    m, ag = sc.market, sc.agents
    sv = m.services
    out: list[tuple[str, str]] = []
    if m.mechanism == "green_exchange":
        if ag.households.pv.share == 0:
            out.append(("market.mechanism", "green_exchange needs green sellers: "
                        "agents.households.pv.share is 0"))
        if sv.certificates.enabled:
            out.append(("market.services.certificates.enabled",
                        "cannot be combined with market.mechanism green_exchange: its tokens "
                        "already claim the green kWh (double counting of green claims)"))
    if sv.charger_tariffs.enabled:
        if ag.evs.count == 0:
            out.append(("market.services.charger_tariffs.enabled",
                        "no charger to share: agents.evs.count is 0"))
        elif int(sv.charger_tariffs.shared_share * ag.evs.count + 0.5) == 0:
            out.append(("market.services.charger_tariffs.shared_share",
                        f"shares none of the {ag.evs.count} EV chargers"))
    gc = sv.green_currency
    if gc.enabled:
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


class ScenarioError(ValueError):
    """All problems of one scenario file; ``errors`` holds one ``(path, message)`` each."""

    def __init__(self, source: str, errors: list[tuple[str, str]]) -> None:
        self.source = source
        self.errors = errors
        lines = [f"{source}: {path}: {msg}" if path else f"{source}: {msg}" for path, msg in errors]
        super().__init__(f"{len(errors)} error(s) in scenario\n" + "\n".join(lines))


def _path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def scenario_from_dict(data: Any, *, source: str = "<scenario>") -> Scenario:
    """Validate a mapping; raise :class:`ScenarioError` listing every problem."""
    if not isinstance(data, dict):
        raise ScenarioError(source, [("", f"top level must be a mapping, got {type(data).__name__}")])
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        errors = []
        for err in exc.errors():
            msg = str(err["msg"]).removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown field"
            errors.append((_path(err["loc"]), msg))
        raise ScenarioError(source, errors) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file."""
    p = Path(path)
    if not p.is_file():
        raise ScenarioError(str(p), [("", "file not found")])
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise ScenarioError(p.name, [("", f"not valid YAML: {exc}")]) from None
    return scenario_from_dict(data, source=p.name)
