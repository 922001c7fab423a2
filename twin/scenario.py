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
from typing import Annotated, Any

import yaml
from pydantic import Field, ValidationError, model_validator

from twin.faults.spec import FaultsSpec, fault_problems
from twin.grid.der_spec import DsoSpec
from twin.grid.phase_spec import phase_problems
from twin.services.registry import SERVICES, service_problems
from twin.spec_base import CrossFieldError, SpecModel
from twin.specs.agents import (
    AgentsSpec,
    CommunityStorageSpec,
    EVSpec,
    FlexLoadSpec,
    ForecastSpec,
    HouseholdBatterySpec,
    HouseholdSpec,
    LearningSpec,
    PVSpec,
    Strategy,
    VPPSpec,
)
from twin.specs.game import GameGridSpec, GameSpec, GeneratorUnitSpec, game_problems
from twin.specs.grid import GridSpec, NetworkTariffSpec
from twin.specs.hil import HILDeviceSpec, HILSpec
from twin.specs.market import ChainSpec, MarketServicesSpec, MarketSpec
from twin.specs.resilience import ResilienceSpec, UpstreamOutageSpec
from twin.specs.tso import FrequencyEventSpec, FrequencySpec, TSOSpec

__all__ = [
    "AgentsSpec",
    "ChainSpec",
    "CommunityStorageSpec",
    "CrossFieldError",
    "EVSpec",
    "FaultsSpec",
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
    #: faults inside the run (twin/faults): grid faults and repairs, islands, meter data, a flaky chain; None: a sunny day
    faults: FaultsSpec | None = None

    @model_validator(mode="after")
    def _cross_field(self) -> Scenario:
        """Rules across fields, each with its own field path (:class:`CrossFieldError`)."""
        problems = [*_time_problems(self), *_forecast_problems(self),
                    *game_problems(self.game), *service_problems(self),
                    *phase_problems(self), *fault_problems(self), *_signing_problems(self)]
        if problems:
            raise CrossFieldError(problems)
        return self

    @property
    def n_intervals(self) -> int:
        return self.duration_s // self.market.interval_s

    def canonical_json(self) -> str:
        """Stable JSON of the full scenario (defaults included) for hashing and manifests."""
        data = self.model_dump(mode="json")
        if data.get("faults") is None:  # a scenario without faults keeps its digest
            data.pop("faults", None)
        if data["market"].get("signing") == "per_interval":  # so does one signing as before
            data["market"].pop("signing")
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def digest(self) -> str:
        """sha256 of :meth:`canonical_json`, with an OpenDSS deck entering by its content
        (:func:`~twin.grid.opendss_grid.deck_fingerprint`), not by where the checkout lives."""
        if self.grid.opendss is None:
            return hashlib.sha256(self.canonical_json().encode()).hexdigest()
        from twin.grid.opendss_grid import deck_fingerprint

        data = json.loads(self.canonical_json())
        data["grid"]["opendss"]["deck"] = "sha256:" + deck_fingerprint(self.grid.opendss.deck)
        return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
                              ).hexdigest()


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


def _signing_problems(sc: Scenario) -> list[tuple[str, str]]:
    if sc.market.signing == "daily" and sc.faults is not None and sc.faults.data is not None:
        return [("market.signing", "daily settles every interval provisionally on the relayed "
                 "readings and does not combine with faults.data (per_interval does)")]
    return []


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
    if isinstance(data, dict):  # grid.opendss.deck is relative to the scenario file
        from twin.grid.opendss_grid import resolve_deck_path

        data = resolve_deck_path(data, p.parent)
    return scenario_from_dict(data, source=p.name)
