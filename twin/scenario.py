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
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "ChainSpec",
    "CommunityStorageSpec",
    "EVSpec",
    "GridSpec",
    "HILDeviceSpec",
    "HILSpec",
    "HouseholdBatterySpec",
    "HouseholdSpec",
    "MarketSpec",
    "PVSpec",
    "Scenario",
    "ScenarioError",
    "load_scenario",
    "scenario_from_dict",
]

PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Share = Annotated[float, Field(ge=0, le=1)]


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class GridSpec(_Spec):
    """The feeder and the DSO's operating limits."""

    kind: Literal["simbench", "cigre_lv", "case33bw"] = "simbench"
    #: SimBench grid code (used when kind is "simbench").
    simbench_code: str = "1-LV-semiurb4--0-sw"
    vm_min_pu: PosFloat = 0.95
    vm_max_pu: PosFloat = 1.05
    max_loading_percent: PosFloat = 100.0

    @model_validator(mode="after")
    def _band(self) -> GridSpec:
        if self.vm_min_pu >= self.vm_max_pu:
            raise ValueError(f"vm_min_pu ({self.vm_min_pu}) must be below vm_max_pu ({self.vm_max_pu})")
        return self


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


class HouseholdSpec(_Spec):
    """Households: one meter each (a market device), load from profiles."""

    count: Annotated[int, Field(gt=0, le=100_000)] = 40
    #: "simbench": the feeder's own SimBench household profiles; "synthetic": seeded generator.
    profiles: Literal["simbench", "synthetic"] = "simbench"
    annual_kwh: PosFloat = 3500.0  # used by synthetic profiles
    pv: PVSpec = PVSpec()
    battery: HouseholdBatterySpec = HouseholdBatterySpec()
    #: willingness to pay / reservation price are drawn around the tariffs
    forecast_error: NonNegFloat = 0.05  # relative std-dev of the agents' own forecast


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


class CommunityStorageSpec(_Spec):
    """Community batteries (each a market device)."""

    count: Annotated[int, Field(ge=0, le=1000)] = 1
    capacity_kwh: PosFloat = 100.0
    power_kw: PosFloat = 30.0
    efficiency: Annotated[float, Field(gt=0, le=1)] = 0.92
    soc_min: Share = 0.1
    soc_max: Share = 0.95
    soc_init: Share = 0.5


class AgentsSpec(_Spec):
    households: HouseholdSpec = HouseholdSpec()
    evs: EVSpec = EVSpec()
    community_storage: CommunityStorageSpec = CommunityStorageSpec()
    strategy: Literal["truthful"] = "truthful"


class MarketSpec(_Spec):
    """Local market: interval, tariffs against the DSO/supplier, funding."""

    interval_s: Annotated[int, Field(gt=0, le=86_400)] = 900
    ledger: Literal["chain", "reference"] = "chain"
    retail_price_per_mwh: PosFloat = 300.0
    feed_in_price_per_mwh: NonNegFloat = 80.0
    initial_balance: PosFloat = 1000.0  # currency units per participant
    dso_balance: PosFloat = 1_000_000.0

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

    @property
    def n_intervals(self) -> int:
        return self.duration_s // self.market.interval_s

    def canonical_json(self) -> str:
        """Stable JSON of the full scenario (defaults included) for hashing and manifests."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()


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
