"""DSO security check of the consortium generator game on a SimBench feeder.

The seed paper's trade passes the dispatch centre's security check before it is settled.
Here the DSO checks every coalition's least-cost dispatch (:mod:`twin.market.game`) on a
real grid at one hour of the SimBench year:

* **Feeder** (:func:`game_feeder`, the adapter): the SimBench net of ``simbench_code`` with
  its loads, sgens and storages at their *real* profile values, averaged over the game's
  period ``[start, start + period_h)`` (:func:`twin.grid.profiles.window_average`, the same
  mapping of a date onto the SimBench year as the feeder runs). Each generator unit is a new
  ``sgen`` row at its bus and the buyer a new ``load`` row at its bus, both at unity power
  factor (the game has no reactive power). The returned net holds that background state
  (``scaling`` 1), so pandapower's ``runpp`` on it gives the same flows as the batch.
* **Injections** (:func:`coalition_injections`, pure): one row per coalition -- the units'
  dispatch on their sgen rows, the buyer's demand (``demand_mwh / period_h`` MW) on its load
  row when the coalition trades; a coalition that cannot serve the demand (and the empty
  coalition, the *reference*) does not trade: background only.
* **Check** (:func:`check_coalitions`): all coalitions solved in **one batch** by
  :class:`twin.grid.pf.BatchPowerFlow`. A coalition is **secure** iff its power flow
  converged, every energized bus is within ``[vm_min_pu, vm_max_pu]`` and no line or trafo
  is loaded above ``max_loading_percent`` (the DSO limits of the project's ``grid:`` block,
  same names and defaults). The rule is absolute: the DSO accepts a dispatch only if the grid
  *with* it is within limits; a limit the background alone already breaks therefore rejects
  every trading coalition (the reference row shows it -- pick the hour or the band so that
  the background is secure). There is no redispatch: an insecure dispatch is rejected, not
  repaired.
* **Value**: a rejected coalition cannot trade, so its value is 0
  (:func:`twin.market.game.secure_game` recomputes the exact Shapley split with it).

Bad input is reported with the scenario's field path (``game.grid.simbench_code``,
``game.units.<i>.bus``, ``game.buyer_bus``) as a :class:`GameGridError` (a
:class:`twin.scenario.ScenarioError` the CLI prints as a message); a grand coalition the
check rejects stops the run with :class:`SecurityRejected` (nothing can be traded).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import numpy as np

from twin.errors import TwinError
from twin.market.game import CoalitionOutcome
from twin.scenario import ScenarioError

__all__ = [
    "GameFeeder",
    "GameGridError",
    "SecurityCheck",
    "SecurityLimits",
    "SecurityRejected",
    "check_coalitions",
    "coalition_injections",
    "feeder_problems",
    "game_feeder",
    "security_kpis",
    "security_rows",
]


class GameGridError(ScenarioError, TwinError):
    """A ``game`` field that does not fit the loaded grid (unknown code, bus)."""


class SecurityRejected(TwinError):
    """The DSO's check rejects the grand coalition's dispatch: nothing can be traded."""


@dataclass(frozen=True, slots=True)
class SecurityLimits:
    """The DSO's operating limits (defaults as the project's ``grid:`` block)."""

    vm_min_pu: float = 0.95
    vm_max_pu: float = 1.05
    max_loading_percent: float = 100.0


@dataclass(frozen=True, slots=True, eq=False)
class GameFeeder:
    """The game's grid at its hour: background state, unit and buyer rows (positional)."""

    net: Any  # pandapower net at the hour's background values (no profiles table)
    simbench_code: str
    unit_sgen_row: dict[str, int]
    buyer_load_row: int
    load_p_mw: np.ndarray  # (n_load,) background, buyer row 0
    load_q_mvar: np.ndarray
    sgen_p_mw: np.ndarray  # (n_sgen,) background, unit rows 0


@dataclass(frozen=True, slots=True)
class SecurityCheck:
    """The DSO's verdict on one coalition's dispatch."""

    coalition: frozenset[str]
    feasible_dispatch: bool  # the coalition can serve the demand (it trades)
    secure: bool
    converged: bool
    vm_min_pu: float  # over energized buses (NaN when not converged)
    vm_max_pu: float
    max_line_loading_percent: float
    max_trafo_loading_percent: float
    voltage_violations: int  # buses outside the band
    overloaded_branches: int  # lines and trafos above the loading limit
    ext_grid_p_mw: float  # import from the upstream grid (all ext_grids)
    energy_mwh: float  # energy the coalition's dispatch delivers in the period (0: no trade)
    reason: str  # "" when secure and trading


@lru_cache(maxsize=2)
def _simbench(code: str) -> tuple[Any, dict[tuple[str, str], Any]]:
    """SimBench net (the process-wide one of :mod:`twin.grid.feeders`) and its absolute
    profiles, once per process (read-only; ~5 s)."""
    import simbench as sb

    from twin.grid.feeders import _simbench_net

    shared = _simbench_net(code)
    profiles = sb.get_absolute_values(shared, profiles_instead_of_study_cases=True)
    net = copy.copy(shared)  # shallow: the shared net keeps its profiles
    del net["profiles"]  # the absolute values above replace them; keeps deep copies cheap
    return net, profiles


def feeder_problems(net: Any, *, unit_bus: Sequence[tuple[str, int]],
                    buyer_bus: int) -> list[tuple[str, str]]:
    """Buses not in ``net`` (or out of service), as (field path, message)."""
    out: list[tuple[str, str]] = []
    ok = set(net.bus.index[net.bus.in_service.astype(bool)])
    where = [(f"game.units.{i}.bus", b) for i, (_, b) in enumerate(unit_bus)]
    for path, b in [*where, ("game.buyer_bus", buyer_bus)]:
        if b not in net.bus.index:
            out.append((path, f"bus {b} is not a bus of the grid ({len(net.bus)} buses, "
                              f"labels {int(net.bus.index.min())}..{int(net.bus.index.max())})"))
        elif b not in ok:
            out.append((path, f"bus {b} is out of service"))
    return out


def _hour_values(table: Any, *, offset_s: int, period_s: int) -> np.ndarray:
    from twin.grid.profiles import window_average

    values = np.asarray(table.to_numpy(float)).T  # (n_elements, n_steps)
    if values.shape[0] == 0:
        return np.zeros(0)
    out: np.ndarray = window_average(values, offset_s=offset_s, duration_s=period_s,
                                     interval_s=period_s)[:, 0]
    return out


def game_feeder(*, simbench_code: str, start: datetime, period_h: float,
                unit_bus: Sequence[tuple[str, int]], buyer_bus: int,
                source: str = "<scenario>") -> GameFeeder:
    """Build the game's grid at ``[start, start + period_h)`` (module docstring).

    ``unit_bus``: (unit name, bus label) in the scenario's unit order. Raises
    :class:`GameGridError` naming the field for an unknown grid code or bus.
    """
    import pandapower as pp

    from twin.grid.profiles import simbench_offset_s

    try:
        base, profiles = _simbench(simbench_code)
    except ValueError as exc:  # twin.grid.feeders wraps simbench's error for an unknown code
        raise GameGridError(source, [("game.grid.simbench_code",
                                      f"cannot load SimBench grid {simbench_code!r}: "
                                      f"{exc.__cause__ or exc}")]) from None
    problems = feeder_problems(base, unit_bus=unit_bus, buyer_bus=buyer_bus)
    if problems:
        raise GameGridError(source, problems)
    net = copy.deepcopy(base)
    window = {"offset_s": simbench_offset_s(start), "period_s": round(period_h * 3600)}
    for (element, column), table in profiles.items():
        if element in ("load", "sgen", "storage") and len(net[element]):
            net[element][column] = _hour_values(table.loc[:, net[element].index], **window)
    for element in ("load", "sgen", "storage"):
        if len(net[element]):
            net[element]["scaling"] = 1.0
    buyer = pp.create_load(net, bus=buyer_bus, p_mw=0.0, q_mvar=0.0, name="game buyer",
                           type="game_buyer")
    sgen_rows = {name: pp.create_sgen(net, bus=b, p_mw=0.0, q_mvar=0.0, name=name,
                                      type="game_unit") for name, b in unit_bus}
    return GameFeeder(
        net=net, simbench_code=simbench_code,
        unit_sgen_row={n: int(net.sgen.index.get_loc(r)) for n, r in sgen_rows.items()},
        buyer_load_row=int(net.load.index.get_loc(buyer)),
        load_p_mw=net.load.p_mw.to_numpy(float).copy(),
        load_q_mvar=net.load.q_mvar.to_numpy(float).copy(),
        sgen_p_mw=net.sgen.p_mw.to_numpy(float).copy(),
    )


def coalition_injections(feeder: GameFeeder, outcomes: Sequence[CoalitionOutcome | None], *,
                         demand_mw: float) -> tuple[np.ndarray, np.ndarray]:
    """(load_p_mw, sgen_p_mw), each (B, n), one row per outcome (``None``: the reference)."""
    n_b = len(outcomes)
    load_p = np.repeat(feeder.load_p_mw[None, :], n_b, axis=0)
    sgen_p = np.repeat(feeder.sgen_p_mw[None, :], n_b, axis=0)
    for r, o in enumerate(outcomes):
        if o is None or not o.feasible:
            continue
        load_p[r, feeder.buyer_load_row] = demand_mw
        for name, p in o.dispatch_mw.items():
            sgen_p[r, feeder.unit_sgen_row[name]] = p
    return load_p, sgen_p


def check_coalitions(feeder: GameFeeder, outcomes: Mapping[frozenset[str], CoalitionOutcome], *,
                     demand_mw: float, period_h: float,
                     limits: SecurityLimits = SecurityLimits()) -> dict[frozenset[str], SecurityCheck]:
    """The DSO's verdict on every coalition plus the reference (key ``frozenset()``), one batch."""
    from twin.grid.pf import BatchPowerFlow

    keys = [frozenset[str](), *outcomes]
    rows = [None, *outcomes.values()]
    load_p, sgen_p = coalition_injections(feeder, rows, demand_mw=demand_mw)
    res = BatchPowerFlow(feeder.net).solve(load_p_mw=load_p, load_q_mvar=feeder.load_q_mvar,
                                           sgen_p_mw=sgen_p)
    vm = np.where(res.energized, res.vm_pu, np.nan)
    line = res.line_loading_percent
    trafo = res.trafo_loading_percent
    bus_labels = feeder.net.bus.index.to_numpy()
    out: dict[frozenset[str], SecurityCheck] = {}
    for r, (key, o) in enumerate(zip(keys, rows, strict=True)):
        trades = o is not None and o.feasible
        conv = bool(res.converged[r])
        with np.errstate(invalid="ignore"):
            low = res.energized[r] & (vm[r] < limits.vm_min_pu)
            high = res.energized[r] & (vm[r] > limits.vm_max_pu)
        over_l = line[r] > limits.max_loading_percent
        over_t = trafo[r] > limits.max_loading_percent
        problems: list[str] = []
        if not conv:
            problems.append("power flow did not converge")
        else:
            if low.any():
                j = int(np.nanargmin(vm[r]))
                problems.append(f"undervoltage {vm[r, j]:.4f} pu at bus {bus_labels[j]} "
                                f"(< {limits.vm_min_pu})")
            if high.any():
                j = int(np.nanargmax(vm[r]))
                problems.append(f"overvoltage {vm[r, j]:.4f} pu at bus {bus_labels[j]} "
                                f"(> {limits.vm_max_pu})")
            for name, arr, over, table in (("line", line[r], over_l, feeder.net.line),
                                           ("trafo", trafo[r], over_t, feeder.net.trafo)):
                if over.any():
                    j = int(np.argmax(arr))
                    problems.append(f"{name} {table.index[j]} loaded {arr[j]:.1f} % "
                                    f"(> {limits.max_loading_percent:g} %)")
        secure = conv and not problems
        reason = "; ".join(problems)
        if not trades:
            what = ("reference: background only, no trade" if o is None
                    else "no trade: the coalition cannot serve the demand")
            reason = f"{what}; {reason}" if reason else what
        out[key] = SecurityCheck(
            coalition=key, feasible_dispatch=trades, secure=secure, converged=conv,
            vm_min_pu=float(np.nanmin(vm[r])) if conv else float("nan"),
            vm_max_pu=float(np.nanmax(vm[r])) if conv else float("nan"),
            max_line_loading_percent=float(line[r].max()) if line.shape[1] else 0.0,
            max_trafo_loading_percent=float(trafo[r].max()) if trafo.shape[1] else 0.0,
            voltage_violations=int(low.sum() + high.sum()) if conv else 0,
            overloaded_branches=int(over_l.sum() + over_t.sum()) if conv else 0,
            ext_grid_p_mw=float(res.ext_grid_p_mw[r].sum()),
            energy_mwh=demand_mw * period_h if trades else 0.0,
            reason=reason,
        )
    return out


def security_rows(checks: Mapping[frozenset[str], SecurityCheck], *,
                  market_value: Mapping[frozenset[str], float],
                  value: Mapping[frozenset[str], float]) -> list[dict[str, Any]]:
    """Rows of the ``game_security`` table (twin/results.py), reference first."""
    return [{"coalition": "+".join(sorted(c)), "size": len(c),
             "feasible_dispatch": k.feasible_dispatch, "secure": k.secure, "converged": k.converged,
             "vm_min_pu": k.vm_min_pu, "vm_max_pu": k.vm_max_pu,
             "max_line_loading_percent": k.max_line_loading_percent,
             "max_trafo_loading_percent": k.max_trafo_loading_percent,
             "voltage_violations": k.voltage_violations, "overloaded_branches": k.overloaded_branches,
             "ext_grid_p_mw": k.ext_grid_p_mw, "energy_mwh": k.energy_mwh,
             "market_value": float(market_value.get(c, 0.0)), "value": float(value.get(c, 0.0)),
             "reason": k.reason} for c, k in checks.items()]


def security_kpis(checks: Mapping[frozenset[str], SecurityCheck], *,
                  grand: frozenset[str]) -> dict[str, float]:
    """``game_*`` KPIs of the check: counts over trading coalitions, the grand coalition's flow."""
    trading = [k for c, k in checks.items() if c and k.feasible_dispatch]
    g, ref = checks[grand], checks[frozenset()]
    return {
        "game_secure_coalitions": float(sum(k.secure for k in trading)),
        "game_rejected_coalitions": float(sum(not k.secure for k in trading)),
        "game_grand_vm_min_pu": g.vm_min_pu, "game_grand_vm_max_pu": g.vm_max_pu,
        "game_grand_max_line_loading_percent": g.max_line_loading_percent,
        "game_grand_max_trafo_loading_percent": g.max_trafo_loading_percent,
        "game_grand_voltage_violations": float(g.voltage_violations),
        "game_grand_import_mw": g.ext_grid_p_mw,
        "game_reference_import_mw": ref.ext_grid_p_mw,
    }
