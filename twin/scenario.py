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
from typing import TYPE_CHECKING, Annotated, Any, Literal, Self

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from twin.grid.der_spec import DerFunctionsSpec, DsoSpec, OltcSpec
from twin.grid.phase_spec import PhaseConnectionSpec, phase_problems
from twin.services.registry import SERVICES, market_services_model, service_problems
from twin.simbench_codes import simbench_code_problem
from twin.spec_base import NonNegFloat, PosFloat, Share, SpecModel

__all__ = [
    "ChainSpec",
    "CommunityStorageSpec",
    "EVSpec",
    "FlexLoadSpec",
    "ForecastSpec",
    "FrequencyEventSpec",
    "FrequencySpec",
    "GameGridSpec",
    "GameSpec",
    "GeneratorUnitSpec",
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



_Spec = SpecModel


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

    kind: Literal["simbench", "cigre_lv", "case33bw", "ieee_eu_lv"] = "simbench"
    #: 3: solve the feeder per phase (twin/grid/phase_spec.py, snapshot3ph.py); 1: balanced
    phases: Literal[1, 3] = 1
    vuf_max_percent: Annotated[float, Field(gt=0)] = 2.0  # voltage-unbalance limit (EN 50160)
    phase_connection: PhaseConnectionSpec = PhaseConnectionSpec()
    #: SimBench grid code (used when kind is "simbench").
    simbench_code: str = "1-LV-semiurb4--0-sw"
    #: local network tariff published by the DSO every interval
    tariff: NetworkTariffSpec = NetworkTariffSpec()
    #: on-load tap changer on the feeder transformer (twin/grid/tap_control.py); null: fixed tap
    oltc: OltcSpec | None = None

    @model_validator(mode="after")
    def _code(self) -> GridSpec:
        problem = simbench_code_problem(self.simbench_code) if self.kind == "simbench" else None
        if problem:
            raise CrossFieldError([("simbench_code", problem)])
        return self


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


class FrequencyEventSpec(_Spec):
    """A frequency excursion added to the series: ``delta_hz`` from ``start_s`` for ``duration_s``."""

    start_s: Annotated[int, Field(ge=0)]
    duration_s: Annotated[int, Field(gt=0)]
    delta_hz: Annotated[float, Field(ge=-5.0, le=5.0)]


class FrequencySpec(_Spec):
    """The system frequency the TSO publishes (HIL devices report it and act on it).

    Synthetic and seeded: an Ornstein-Uhlenbeck process (standard deviation ``std_hz``,
    correlation time ``tau_s``) around ``nominal_hz``, plus the deterministic deviations at
    hour changes of interconnected systems (a ramp to ``hour_change_hz`` and back within
    ``hour_change_s`` of each full hour, sign alternating) and the scenario's ``events``.
    """

    nominal_hz: Literal[50, 60] = 50
    std_hz: NonNegFloat = 0.02
    tau_s: PosFloat = 120.0
    hour_change_hz: Annotated[float, Field(ge=0.0, le=0.5)] = 0.04
    hour_change_s: Annotated[int, Field(gt=0, le=1800)] = 300
    resolution_s: Annotated[int, Field(gt=0, le=3600)] = 1
    events: list[FrequencyEventSpec] = Field(default_factory=list)


class TSOSpec(_Spec):
    """TSO: demand-response calls when the forecast gap is large; imbalance prices; the
    system frequency (``frequency``)."""

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
    #: quasi-static system frequency the TSO publishes per market interval (Hz), repeated
    #: when shorter than the run; drives frequency-watt (der_functions.freq_watt); null: nominal
    frequency_hz: list[Annotated[float, Field(ge=45, le=65)]] | None = None
    nominal_frequency_hz: Literal[50, 60] = 50
    frequency: FrequencySpec = FrequencySpec()

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


if TYPE_CHECKING:
    class MarketServicesSpec(SpecModel):
        def __getattr__(self, name: str) -> Any: ...
else:
    MarketServicesSpec = market_services_model()


class MarketSpec(_Spec):
    """Local market: interval, tariffs against the DSO/supplier, funding."""

    interval_s: Annotated[int, Field(gt=0, le=86_400)] = 900
    ledger: Literal["chain", "reference"] = "chain"
    #: matching rule (twin/market/mechanisms.py): uniform-price double auction, or
    #: continuous double auction, pay-as-bid (the market table's price is then the
    #: volume-weighted mean trade price). The green-token exchange is a market service
    #: (market.services.green_exchange), not a matching rule.
    mechanism: Literal["uniform", "cda"] = "uniform"
    retail_price_per_mwh: PosFloat = 300.0
    feed_in_price_per_mwh: NonNegFloat = 80.0
    initial_balance: PosFloat = 1000.0  # currency units per participant
    dso_balance: PosFloat = 1_000_000.0
    #: market services (twin/services): demand response, certificates, assets, ...
    services: MarketServicesSpec = MarketServicesSpec()

    @field_validator("mechanism", mode="before")
    @classmethod
    def _mechanism(cls, value: Any) -> Any:
        if value == "green_exchange":
            raise ValueError("green_exchange is a market service, not a matching rule: set "
                             "market.services.green_exchange.enabled: true and leave mechanism "
                             "uniform (or cda)")
        return value

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

    @model_validator(mode="after")
    def _code(self) -> GameGridSpec:
        problem = simbench_code_problem(self.simbench_code)
        if problem:
            raise CrossFieldError([("simbench_code", problem)])
        return self


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

    devices: list[HILDeviceSpec] = Field(default_factory=list)
    #: HIL step (register refresh, controls, reversion timers); default: market.interval_s
    step_s: Annotated[int, Field(gt=0)] | None = None
    #: a step starting later than this after its real-time deadline is a deadline miss
    deadline_tolerance_s: PosFloat = 0.1
    max_connections: Annotated[int, Field(ge=1, le=1000)] = 16
    idle_timeout_s: PosFloat = 60.0
    #: a frame must be complete this long after its first byte (a slow drip cannot extend it)
    frame_timeout_s: PosFloat = 2.0
    #: requests per second and connection; above it the server answers exception 0x06
    max_requests_per_s: Annotated[int, Field(ge=1, le=100_000)] = 100
    #: address of the lab's controller: one of max_connections is kept for it
    controller_host: str | None = None
    #: once a controller wrote a heartbeat (715 ControllerHb, 802 CtrlHb), this long
    #: without a new one reverts the device's timed controls (communication loss)
    heartbeat_timeout_s: PosFloat = 60.0

    @model_validator(mode="after")
    def _units(self) -> HILSpec:
        ids = [d.unit_id for d in self.devices]
        dup = sorted({i for i in ids if ids.count(i) > 1})
        if dup:
            raise ValueError(f"unit ids used more than once: {dup}")
        if self.controller_host is not None and self.max_connections < 2:
            raise ValueError("max_connections must be at least 2 with a controller_host")
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
    upstream_outages: list[UpstreamOutageSpec] = Field(default_factory=list)
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
    #: the DSO's policy: curtail after the market, envelopes before it, or both
    dso: DsoSpec = DsoSpec()
    game: GameSpec | None = None  # a cooperative-game scenario instead of a feeder day

    @model_validator(mode="after")
    def _cross_field(self) -> Scenario:
        """Rules across fields, each with its own field path (:class:`CrossFieldError`)."""
        problems = [*_time_problems(self), *_forecast_problems(self),
                    *_game_problems(self.game), *service_problems(self),
                    *phase_problems(self)]
        if problems:
            raise CrossFieldError(problems)
        return self

    @property
    def n_intervals(self) -> int:
        return self.duration_s // self.market.interval_s

    def canonical_json(self) -> str:
        """Stable JSON of the full scenario (defaults included) for hashing and manifests."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


class CrossFieldError(ValueError):
    """Cross-field rules a scenario breaks, as ``(field path, message)`` pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{path}: {msg}" for path, msg in problems))
        self.problems = problems


def _time_problems(sc: Scenario) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if sc.start.tzinfo is None:
        out.append(("start", "must carry a time zone (e.g. 2016-06-15T00:00:00Z)"))
    if sc.hil.step_s is not None and sc.market.interval_s % sc.hil.step_s:
        out.append(("hil.step_s", f"({sc.hil.step_s}) must divide market.interval_s "
                    f"({sc.market.interval_s})"))
    if sc.duration_s % sc.market.interval_s:
        out.append(("duration_s", f"({sc.duration_s}) must be a multiple of market.interval_s "
                    f"({sc.market.interval_s})"))
    return out


def _forecast_problems(sc: Scenario) -> list[tuple[str, str]]:
    fc, where = sc.agents.forecast, "agents.forecast.method"
    if fc.method == "noise":
        return []
    if sc.grid.kind != "simbench" or sc.agents.households.profiles != "simbench":
        return [(where, f"{fc.method!r} learns from SimBench history and needs grid.kind "
                 "'simbench' and agents.households.profiles 'simbench'")]
    if 86_400 % sc.market.interval_s:
        return [(where, f"{fc.method!r} needs market.interval_s to divide one day (86400 s), "
                 f"got {sc.market.interval_s}")]
    start = sc.start.astimezone(UTC) if sc.start.tzinfo else sc.start.replace(tzinfo=UTC)
    day = (start - datetime(start.year, 1, 1, tzinfo=UTC)).days
    if day < fc.train_days + 7:
        return [("agents.forecast.train_days", f"{fc.train_days} training days plus a week of "
                 f"lags must lie before start (day {day} of the SimBench year); lower "
                 "train_days or start later")]
    return []


class ScenarioError(ValueError):
    """All problems of one scenario file; ``errors`` holds one ``(path, message)`` each."""

    def __init__(self, source: str, errors: list[tuple[str, str]]) -> None:
        self.source = source
        self.errors = errors
        lines = [f"{source}: {path}: {msg}" if path else f"{source}: {msg}" for path, msg in errors]
        super().__init__(f"{len(errors)} error(s) in scenario\n" + "\n".join(lines))


def _path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc)


def _errors(exc: ValidationError) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    for err in exc.errors():
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, CrossFieldError):
            prefix = _path(err["loc"])
            errors += [(f"{prefix}.{path}" if prefix else path, msg) for path, msg in cause.problems]
            continue
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
            if tuple(err["loc"][:2]) == ("market", "services") and len(err["loc"]) == 3:
                msg = f"unknown market service (known: {', '.join(d.name for d in SERVICES)})"
        errors.append((_path(err["loc"]), msg))
    return errors


def _without(data: Any, locs: list[tuple[Any, ...]]) -> Any:
    """``data`` with the values at ``locs`` removed (their defaults apply)."""
    import copy

    out = copy.deepcopy(data)
    for loc in locs:
        node = out
        for key in loc[:-1]:
            node = node[key] if isinstance(node, dict | list) and _has(node, key) else None
            if node is None:
                break
        if isinstance(node, dict) and loc and loc[-1] in node:
            del node[loc[-1]]
    return out


def _has(node: Any, key: Any) -> bool:
    return key in node if isinstance(node, dict) else isinstance(key, int) and 0 <= key < len(node)


def scenario_from_dict(data: Any, *, source: str = "<scenario>") -> Scenario:
    """Validate a mapping; raise :class:`ScenarioError` listing every problem: field errors
    and, in the same pass, the cross-field rules (checked with the bad fields at their
    defaults), each with its field path."""
    if not isinstance(data, dict):
        raise ScenarioError(source, [("", f"top level must be a mapping, got {type(data).__name__}")])
    try:
        return Scenario.model_validate(data)
    except ValidationError as exc:
        errors = _errors(exc)
        field_locs = [tuple(e["loc"]) for e in exc.errors() if e["loc"]]
    if field_locs:
        try:
            Scenario.model_validate(_without(data, field_locs))
        except ValidationError as again:
            bad = {_path(loc) for loc in field_locs}
            errors += [e for e in _errors(again) if e not in errors
                       and not any(e[0] == b or e[0].startswith(b + ".") for b in bad)]
    raise ScenarioError(source, errors) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file."""
    p = Path(path)
    if not p.is_file():
        raise ScenarioError(str(p), [("", "file not found")])
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        text = " ".join(str(exc).replace('"<unicode string>"', str(p)).split())
        raise ScenarioError(p.name, [("", f"not valid YAML: {text}")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(str(p), [("", f"cannot read the file ({exc})")]) from None
    return scenario_from_dict(data, source=p.name)
