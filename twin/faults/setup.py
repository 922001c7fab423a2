"""Wiring a run's faults (``faults:``) into ``twin run``: checks, ties, plan, simulators.

:func:`prepare` runs before anything else of the run (after the feeder is built): it checks
the fault targets against the feeder (a :class:`twin.scenario.ScenarioError` naming each
field path), adds the normally-open ties to the net and runs the SimPy fault processes with a
child of the run's generator (the parent's draws are unchanged). :func:`attach` builds the
overlay on the agents model and returns what :func:`twin.run._run_world` needs: the extra
simulator parameters and the fault simulator's wiring.
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

__all__ = ["FaultSetup", "attach", "check_targets", "prepare"]


@dataclass
class FaultSetup:
    plan: FaultPlan
    overlay: Any = None
    grid_snapshot: Any = None


def prepare(scenario: Any, *, feeder: Any, rng: np.random.Generator, duration_s: int,
            source: str | None = None) -> FaultSetup | None:
    """Check, add ties and plan the faults of ``scenario`` (None when it has none)."""
    spec = scenario.faults
    if spec is None:
        return None
    from twin.scenario import ScenarioError

    problems = net_problems(spec, feeder.net)
    if problems:
        raise ScenarioError(source or scenario.name, problems)
    tie_rows = add_ties(feeder.net, spec.reconfiguration.ties)
    from twin.faults.overlay import grid_forming_rows

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


def check_targets(scenario: Any, *, source: str | None = None) -> None:
    """``twin validate``: build the feeder and check the fault targets against it."""
    from twin.grid.feeders import build_feeder
    from twin.scenario import ScenarioError

    feeder = build_feeder(scenario=scenario, rng=np.random.default_rng(scenario.seed))
    problems = net_problems(scenario.faults, feeder.net)
    if problems:
        raise ScenarioError(source or scenario.name, problems)


def attach(setup: FaultSetup, *, model: Any, scenario: Any) -> FaultSetup:
    """The overlay on ``model`` and the grid's faulted solver."""
    from twin.faults.grid import FaultedSnapshot
    from twin.faults.overlay import OutageOverlay, grid_forming_rows

    setup.overlay = OutageOverlay(model=model, scenario=scenario)
    f = model.feeder
    setup.grid_snapshot = FaultedSnapshot(f.net, grid_forming=[
        int(f.net.storage.index[f.storage_row[j]]) for j in grid_forming_rows(scenario)])
    return setup
