from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from twin.agents.model import FeederModel, IntervalOutput
from twin.grid.feeders import Feeder, build_feeder
from twin.scenario import Scenario, load_scenario, scenario_from_dict

from ._market import run_day

QUICKSTART = Path(__file__).resolve().parents[2] / "scenarios" / "quickstart.yaml"


def scenario(**changes: object) -> Scenario:
    """The quickstart scenario with ``a__b=value`` changes."""
    data = load_scenario(QUICKSTART).model_dump(mode="json")
    for dotted, value in changes.items():
        node = data
        *path, last = dotted.split("__")
        for key in path:
            node = node[key]
        node[last] = value
    return scenario_from_dict(data)


@pytest.fixture(scope="session")
def quickstart_feeder() -> tuple[Scenario, Feeder]:
    s = load_scenario(QUICKSTART)
    return s, build_feeder(s)


@pytest.fixture(scope="session")
def quickstart_day(quickstart_feeder: tuple[Scenario, Feeder]) -> tuple[FeederModel, list[IntervalOutput], float]:
    import time

    s, f = quickstart_feeder
    model = FeederModel(scenario=s, feeder=f, rng=np.random.default_rng(s.seed))
    t0 = time.perf_counter()
    outs = run_day(model, s.n_intervals)
    return model, outs, time.perf_counter() - t0
