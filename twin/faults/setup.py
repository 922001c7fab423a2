"""Wiring a run's faults (``faults:``) into ``twin run``: checks, ties, plan, simulators.

:func:`prepare` runs before anything else of the run (after the feeder is built): it checks
the fault targets against the feeder (a :class:`twin.scenario.ScenarioError` naming each
field path), adds the normally-open ties to the net and runs the SimPy fault processes with a
child of the run's generator (the parent's draws are unchanged). :func:`twin.agents.outages.attach`
then builds the overlay on the agents model and the grid's faulted solver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from twin.faults.plan import (
    FaultPlan,
    _Graph,
    add_ties,
    fault_plan,
    interruption_rows,
    net_problems,
)
from twin.faults.spec import grid_forming_rows

__all__ = ["FaultSetup", "FaultTargetError", "prepare"]


class FaultTargetError(ValueError):
    """Fault targets or ties the built feeder does not have: ``problems`` as (path, message)."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(f"{p}: {m}" for p, m in problems))
        self.problems = problems


@dataclass
class FaultSetup:
    plan: FaultPlan
    overlay: Any = None
    grid_snapshot: Any = None


def prepare(scenario: Any, *, feeder: Any, rng: np.random.Generator,
            duration_s: int) -> FaultSetup | None:
    """Check, add ties and plan the faults of ``scenario`` (None when it has none); fault
    targets the feeder lacks raise :class:`FaultTargetError` (the caller makes it a scenario
    error naming the file)."""
    spec = scenario.faults
    if spec is None:
        return None
    problems = net_problems(spec, feeder.net)
    if problems:
        raise FaultTargetError(problems)
    tie_rows = add_ties(feeder.net, spec.reconfiguration.ties)
    net = feeder.net
    bpos = {int(b): i for i, b in enumerate(net.bus.index)}
    gf_bus = np.array([bpos[int(feeder.storage_bus[j])] for j in grid_forming_rows(scenario)], dtype=np.int64)
    child = rng.spawn(1)[0]  # spawning leaves the run generator's own stream as it was
    plan = fault_plan(spec, net=net, rng=child, duration_s=duration_s,
                      interval_s=scenario.market.interval_s, n_households=feeder.n_households,
                      n_evs=feeder.n_evs, gf_bus=gf_bus, tie_rows=tie_rows)
    # customers: one per household and per background load row (as twin resilience counts)
    cust_bus = np.array([bpos[int(b)] for b in feeder.household_bus]
                        + [bpos[int(net.load.bus.iat[r])] for r in feeder.background_load_row], dtype=np.int64)
    n = duration_s // scenario.market.interval_s
    demand = np.vstack([feeder.household_load_p_mw[:, :n], feeder.background_load_p_mw[:, :n]])
    plan.interruptions = interruption_rows(plan, graph=_Graph.of(net), gf_bus=gf_bus, customer_bus=cust_bus,
                                           demand_mw=demand, interval_s=scenario.market.interval_s,
                                           duration_s=duration_s)
    return FaultSetup(plan=plan)
