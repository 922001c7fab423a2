"""Scenario block for three-phase feeders: how agents connect to phases (pydantic), and its checks.

``grid.phases: 3`` solves the feeder in the phase frame (:mod:`twin.grid.snapshot3ph`); the
phase connection of each agent group is ``grid.phase_connection``::

    grid:
      kind: ieee_eu_lv            # pandapower's IEEE European LV feeder (zero-sequence data)
      phases: 3
      vuf_max_percent: 2.0        # voltage-unbalance limit of the DSO check (EN 50160)
      phase_connection:
        households: random        # a | b | c | abc | random (seeded, per household)
                                  # or weights, e.g. {a: 0.5, b: 0.3, c: 0.2} (seeded draw)
        pv: household             # a | b | c | abc | random | household (the household's phase)
        evs: household
        battery: household        # home batteries
        community_storage: abc
        single_phase_max_kva: 4.6 # limit of a single-phase inverter / charger

On an OpenDSS feeder (``grid.kind: opendss``) buses may lack phases: ``random`` and weights
draw among the phases the bus has; a fixed phase (``a|b|c|abc``) that a candidate bus lacks
is a scenario error naming the bus and its phases (:mod:`twin.grid.opendss_grid`).

A single-phase device above ``single_phase_max_kva`` (PV ``kwp_max``, EV ``charger_kw``,
battery ``power_kw``) and a phase connection on a balanced grid are scenario errors with
their field paths (:func:`phase_problems`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

import numpy as np
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    model_validator,
)

__all__ = ["PHASE_ABC", "PhaseConnectionSpec", "PhaseWeights", "assign_phases", "phase_problems"]


class PhaseWeights(BaseModel):
    """Probabilities of phases a, b, c for a seeded draw (normalized; each >= 0, sum > 0)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    a: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    b: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0
    c: Annotated[float, Field(ge=0, allow_inf_nan=False)] = 0.0

    @model_validator(mode="after")
    def _positive(self) -> Self:
        if not self.a + self.b + self.c > 0:
            raise ValueError("phase weights must sum to more than 0")
        return self

    def array(self) -> np.ndarray:
        """The weights of a, b, c."""
        return np.array([self.a, self.b, self.c], dtype=np.float64)


def _phase_value(names: tuple[str, ...]) -> Any:
    """Validator of a phase field: one of ``names`` or phase weights (errors on the field itself)."""

    def check(v: Any) -> str | PhaseWeights:
        if isinstance(v, PhaseWeights) or (isinstance(v, str) and v in names):
            return v
        if isinstance(v, dict):
            try:
                return PhaseWeights.model_validate(v)
            except ValidationError as exc:
                e = exc.errors()[0]
                where = ".".join(str(x) for x in e["loc"])
                raise ValueError(f"phase weights{' ' + where if where else ''}: "
                                 f"{str(e['msg']).removeprefix('Value error, ')}") from None
        raise ValueError(f"Input should be {', '.join(repr(n) for n in names)} "
                         "or phase weights such as {a: 0.5, b: 0.3, c: 0.2}")

    return check


def _dump(v: str | PhaseWeights) -> Any:
    return v.model_dump() if isinstance(v, PhaseWeights) else v


_NAMES = ("a", "b", "c", "abc", "random")
Phase = Annotated[str | PhaseWeights, PlainValidator(_phase_value(_NAMES),
                                                     json_schema_input_type=Literal[_NAMES] | PhaseWeights),
                  PlainSerializer(_dump, return_type=Any)]
DevicePhase = Annotated[str | PhaseWeights, PlainValidator(
    _phase_value((*_NAMES, "household")), json_schema_input_type=Literal[(*_NAMES, "household")] | PhaseWeights),
                        PlainSerializer(_dump, return_type=Any)]
#: phase code of a three-phase (balanced, split in three) element; 0, 1, 2 are a, b, c
PHASE_ABC = 3
#: grid kinds whose pandapower net carries the zero-sequence data the phase frame needs
THREE_PHASE_KINDS = ("ieee_eu_lv",)


class PhaseConnectionSpec(BaseModel):
    """Phase connection of each agent group on a three-phase feeder."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    households: Phase = "random"
    pv: DevicePhase = "household"
    evs: DevicePhase = "household"
    battery: DevicePhase = "household"
    community_storage: Phase = "abc"
    single_phase_max_kva: Annotated[float, Field(gt=0)] = 4.6


def _single(spec: PhaseConnectionSpec, group: str) -> bool:
    """Whether ``group``'s devices can sit on one phase."""
    ph = getattr(spec, group)
    if ph == "household":
        ph = spec.households
    return bool(isinstance(ph, PhaseWeights) or ph != "abc")


def phase_problems(scenario: Any) -> list[tuple[str, str]]:
    """Rules of the phase connection (``(field path, message)``); ``scenario`` is a Scenario."""
    g = scenario.grid
    out: list[tuple[str, str]] = []
    zero_sequence = getattr(g, "zero_sequence", None)
    if g.phases == 1:
        if g.kind == "opendss":
            out.append(("grid.phases", "an OpenDSS feeder (grid.kind: opendss) is solved per phase: set grid.phases: 3"))
        if g.phase_connection != PhaseConnectionSpec():
            out.append(("grid.phase_connection", "phase connections need a three-phase grid (grid.phases: 3)"))
        if zero_sequence is not None:
            out.append(("grid.zero_sequence", "zero-sequence assumptions are used by a three-phase solve "
                                              "only (grid.phases: 3)"))
        if g.oltc is not None and g.oltc.control_phase is not None:
            out.append(("grid.oltc.control_phase", "a balanced grid has one voltage per bus; the control "
                                                   "phase is read with grid.phases: 3 only"))
        return out
    if g.kind == "opendss":
        from twin.grid.opendss_grid import opendss_problems

        out += opendss_problems(scenario)
    elif g.kind not in THREE_PHASE_KINDS and zero_sequence is None:
        out.append(("grid.phases", f"grid.kind {g.kind!r} has no zero-sequence line data for a three-phase "
                                   f"solve; use one of {list(THREE_PHASE_KINDS)}, or state what to assume "
                                   "with grid.zero_sequence (e.g. {r0_per_r1: 4.0, x0_per_x1: 4.0})"))
    if g.oltc is not None and g.kind == "opendss":
        out.append(("grid.oltc", "an OpenDSS feeder's tap changers are its own RegControls: drop grid.oltc "
                                 "and set grid.opendss.regulators: deck"))
    pc: PhaseConnectionSpec = g.phase_connection
    lim = pc.single_phase_max_kva
    a = scenario.agents
    hh = a.households
    checks = [
        ("pv", hh.pv.share > 0 and hh.count > 0, hh.pv.kwp_max, "agents.households.pv.kwp_max"),
        ("evs", a.evs.count > 0, a.evs.charger_kw, "agents.evs.charger_kw"),
        ("battery", hh.battery.share > 0 and hh.pv.share > 0, hh.battery.power_kw,
         "agents.households.battery.power_kw"),
        ("community_storage", a.community_storage.count > 0, a.community_storage.power_kw,
         "agents.community_storage.power_kw"),
    ]
    for group, present, kva, path in checks:
        if present and _single(pc, group) and kva > lim:
            out.append((path, f"({kva:g} kVA) exceeds the single-phase limit grid.phase_connection."
                              f"single_phase_max_kva ({lim:g}) of a device on one phase "
                              f"(grid.phase_connection.{group}: {getattr(pc, group)}); connect it to abc"))
    return out


def _draw(rng: np.random.Generator, phase: str | PhaseWeights, n: int, mask: np.ndarray | None = None,
          what: str = "") -> np.ndarray:
    """Phase codes of ``n`` devices; ``mask`` (n, 3) the phases each device's bus has (None: all)."""
    if isinstance(phase, str) and phase != "random":
        code = "abc".index(phase) if phase != "abc" else PHASE_ABC
        if mask is not None and n and not (mask.all() if code == PHASE_ABC else mask[:, code].all()):
            raise ValueError(f"{what}: phase {phase!r} on a bus that lacks it")
        return np.full(n, code, dtype=np.int64)
    if isinstance(phase, str) and (mask is None or mask.all()):
        return rng.integers(0, 3, size=n).astype(np.int64)  # "random" on three-phase buses
    w = np.ones(3) if isinstance(phase, str) else phase.array()
    full = np.ones((n, 3), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    cum = np.cumsum(w[None] * full, axis=1)
    if n and not (cum[:, -1] > 0).all():
        raise ValueError(f"{what}: phase weights {w.tolist()} give no phase the bus has")
    with np.errstate(divide="ignore", invalid="ignore"):
        # inverse CDF; the phase that reaches the total is +inf (rounding never picks a zero weight)
        cdf = np.where(cum >= cum[:, -1:], np.inf, cum / cum[:, -1:])
    u = rng.random(n)
    return np.argmax(u[:, None] < cdf, axis=1).astype(np.int64)


def assign_phases(spec: PhaseConnectionSpec, *, rng: np.random.Generator, n_households: int,
                  pv_household: np.ndarray, battery_household: np.ndarray, ev_household: np.ndarray,
                  n_storage: int, household_phases: np.ndarray | None = None,
                  storage_phases: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Phase code per device (0/1/2 = a/b/c, :data:`PHASE_ABC`), seeded by ``rng``.

    ``*_household`` give each device's owning household (for ``household``);
    ``household_phases`` (n_households, 3) / ``storage_phases`` (n_storage, 3) the phases of
    each device's bus (None: three-phase buses).
    """
    hh = _draw(rng, spec.households, n_households, household_phases, "grid.phase_connection.households")

    def dev(group: str, phase: Any, owner: np.ndarray) -> np.ndarray:
        if phase == "household":
            return hh[owner].astype(np.int64) if owner.size else np.zeros(0, np.int64)
        mask = household_phases[owner] if household_phases is not None else None
        return _draw(rng, phase, owner.size, mask, f"grid.phase_connection.{group}")

    return {"household": hh, "pv": dev("pv", spec.pv, pv_household),
            "battery": dev("battery", spec.battery, battery_household), "ev": dev("evs", spec.evs, ev_household),
            "community_storage": _draw(rng, spec.community_storage, n_storage, storage_phases,
                                       "grid.phase_connection.community_storage")}
