from __future__ import annotations

import numpy as np
import pytest

from tests._quickstart import QUICKSTART, quickstart_with
from twin.agents.model import FeederModel, IntervalOutput
from twin.grid.feeders import Feeder, build_feeder
from twin.scenario import Scenario, load_scenario

from ._market import run_day

scenario = quickstart_with


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
