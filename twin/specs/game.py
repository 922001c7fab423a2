"""Scenario spec of a cooperative game (twin/market/game.py): generator units, the DSO's
feeder for the security check, and the game's cross-field rules."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator

from twin.simbench_codes import simbench_code_problem
from twin.spec_base import CrossFieldError, NonNegFloat, PosFloat, SpecModel
from twin.specs.grid import _DsoLimitsSpec

__all__ = ["GameGridSpec", "GameSpec", "GeneratorUnitSpec", "game_problems"]

_Spec = SpecModel


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


def game_problems(g: GameSpec | None) -> list[tuple[str, str]]:
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
