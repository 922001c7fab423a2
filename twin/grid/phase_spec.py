"""Scenario block for three-phase feeders: how agents connect to phases (pydantic), and its checks.

``grid.phases: 3`` solves the feeder in the phase frame (:mod:`twin.grid.snapshot3ph`); the
phase connection of each agent group is ``grid.phase_connection``::

    grid:
      kind: ieee_eu_lv            # pandapower's IEEE European LV feeder (zero-sequence data)
      phases: 3
      vuf_max_percent: 2.0        # voltage-unbalance limit of the DSO check (EN 50160)
      phase_connection:
        households: random        # a | b | c | abc | random (seeded, per household)
        pv: household             # a | b | c | abc | random | household (the household's phase)
        evs: household
        battery: household        # home batteries
        community_storage: abc
        single_phase_max_kva: 4.6 # limit of a single-phase inverter / charger

A single-phase device above ``single_phase_max_kva`` (PV ``kwp_max``, EV ``charger_kw``,
battery ``power_kw``) and a phase connection on a balanced grid are scenario errors with
their field paths (:func:`phase_problems`).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["PHASE_ABC", "PhaseConnectionSpec", "assign_phases", "phase_problems"]

Phase = Literal["a", "b", "c", "abc", "random"]
DevicePhase = Literal["a", "b", "c", "abc", "random", "household"]
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
    return bool(ph != "abc")


def phase_problems(scenario: Any) -> list[tuple[str, str]]:
    """Rules of the phase connection (``(field path, message)``); ``scenario`` is a Scenario."""
    g = scenario.grid
    out: list[tuple[str, str]] = []
    zero_sequence = getattr(g, "zero_sequence", None)
    if g.phases == 1:
        if g.phase_connection != PhaseConnectionSpec():
            out.append(("grid.phase_connection", "phase connections need a three-phase grid (grid.phases: 3)"))
        if zero_sequence is not None:
            out.append(("grid.zero_sequence", "zero-sequence assumptions are used by a three-phase solve "
                                              "only (grid.phases: 3)"))
        return out
    if g.kind not in THREE_PHASE_KINDS and zero_sequence is None:
        out.append(("grid.phases", f"grid.kind {g.kind!r} has no zero-sequence line data for a three-phase "
                                   f"solve; use one of {list(THREE_PHASE_KINDS)}, or state what to assume "
                                   "with grid.zero_sequence (e.g. {r0_per_r1: 4.0, x0_per_x1: 4.0})"))
    der = [path for path, spec in (("agents.households.pv", scenario.agents.households.pv),
                                   ("agents.households.battery", scenario.agents.households.battery),
                                   ("agents.evs", scenario.agents.evs), ("agents.community_storage", scenario.agents.community_storage))
           if getattr(getattr(spec, "der_functions", None), "freq_watt", None) is not None]
    # volt-var, volt-watt, watt-var, constant PF/var are solved per phase (twin/grid/controlled_pf3ph.py)
    out += [(f"{path}.der_functions.freq_watt", "frequency-watt is solved with the balanced engine "
                                                "only (grid.phases: 1)") for path in der]
    if g.oltc is not None:
        out.append(("grid.oltc", "the tap changer is simulated with the balanced engine only (grid.phases: 1)"))
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


def _draw(rng: np.random.Generator, phase: str, n: int) -> np.ndarray:
    if phase == "random":
        return rng.integers(0, 3, size=n).astype(np.int64)
    return np.full(n, "abc".index(phase) if phase != "abc" else PHASE_ABC, dtype=np.int64)


def assign_phases(spec: PhaseConnectionSpec, *, rng: np.random.Generator, n_households: int,
                  pv_household: np.ndarray, battery_household: np.ndarray, ev_household: np.ndarray,
                  n_storage: int) -> dict[str, np.ndarray]:
    """Phase code per device (0/1/2 = a/b/c, :data:`PHASE_ABC`), seeded by ``rng``.

    ``*_household`` give each device's owning household (for ``household``).
    """
    hh = _draw(rng, spec.households, n_households)

    def dev(phase: str, owner: np.ndarray) -> np.ndarray:
        if phase == "household":
            return hh[owner].astype(np.int64) if owner.size else np.zeros(0, np.int64)
        return _draw(rng, phase, owner.size)

    return {"household": hh, "pv": dev(spec.pv, pv_household),
            "battery": dev(spec.battery, battery_household), "ev": dev(spec.evs, ev_household),
            "community_storage": _draw(rng, spec.community_storage, n_storage)}
