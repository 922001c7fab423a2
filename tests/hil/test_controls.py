"""HIL controls reach the agents model: dispatch, SOC and meter readings follow them.

``FeederModel.step_interval(der_controls={device_id: DERControl})`` on the small HIL
scenario (CIGRE LV, synthetic profiles), against the same model stepped without controls.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from twin.agents.controls import DERControl
from twin.agents.model import FeederModel, IntervalOutput
from twin.grid.feeders import Feeder, build_feeder
from twin.scenario import Scenario, load_scenario

SCENARIO = Path(__file__).resolve().parent / "data" / "hil_e2e.yaml"


@pytest.fixture(scope="module")
def built() -> tuple[Scenario, Feeder]:
    s = load_scenario(SCENARIO)
    return s, build_feeder(s)


def _models(built: tuple[Scenario, Feeder]) -> tuple[FeederModel, FeederModel]:
    s, f = built
    return (FeederModel(scenario=s, feeder=f, rng=np.random.default_rng(s.seed)),
            FeederModel(scenario=s, feeder=f, rng=np.random.default_rng(s.seed)))


def _step(m: FeederModel, k: int, controls: dict[int, DERControl] | None) -> IntervalOutput:
    return m.step_interval(interval=k, trades=[], price_history=[], der_controls=controls)


def test_battery_set_point_moves_soc_and_meter(built: tuple[Scenario, Feeder]) -> None:
    free, ctl = _models(built)
    dev = int(ctl.storage.device_id[0])
    kwh = ctl.interval_s / 3600.0 * 20.0  # 20 kW for one interval
    for k in range(2):
        a = _step(free, k, None)
        b = _step(ctl, k, {dev: DERControl(w_set_w=20e3)})  # discharge 20 kW
        assert a.metered_wh[dev] == 0
        assert b.metered_wh[dev] == pytest.approx(-kwh * 1e3, abs=1)
        row = ctl.storage.device_id.tolist().index(dev)
        assert b.storage_p_mw[ctl.feeder.storage_row[row]] == pytest.approx(-0.02, abs=1e-6)
    assert ctl.storage.soc[0] < free.storage.soc[0] - 0.03  # 3.3 kWh of 100 kWh
    # a cap below the set-point wins; a disconnected battery does nothing
    assert _step(ctl, 2, {dev: DERControl(w_set_w=20e3, w_max_w=5e3)}).metered_wh[dev] == pytest.approx(
        -ctl.interval_s / 3600.0 * 5e3, abs=1)
    assert _step(ctl, 3, {dev: DERControl(w_set_w=20e3, connected=False)}).metered_wh[dev] == 0


def test_pv_cap_reaches_the_household_meter() -> None:
    s = load_scenario(SCENARIO)
    s = s.model_copy(update={"start": s.start.replace(hour=11)})  # midday: PV produces
    f = build_feeder(s)
    free = FeederModel(scenario=s, feeder=f, rng=np.random.default_rng(s.seed))
    ctl = FeederModel(scenario=s, feeder=f, rng=np.random.default_rng(s.seed))
    dev = int(ctl.households.device_id[0])
    a = _step(free, 0, None)
    b = _step(ctl, 0, {dev: DERControl(w_max_w=0.0)})  # WMaxLimPct = 0
    row = int(f.household_sgen_row[0])
    assert a.sgen_p_mw[row] > 0
    assert b.sgen_p_mw[row] == 0.0
    assert b.metered_wh[dev] > a.metered_wh[dev]  # the meter imports what PV no longer gives
    rows = {r["agent"]: r for r in b.agent_rows}
    assert rows["household_0"]["pv_wh"] == 0.0
    assert rows["household_0"]["pv_available_wh"] > 0.0  # the resource is still reported


def test_unknown_device_is_an_error(built: tuple[Scenario, Feeder]) -> None:
    m, _ = _models(built)
    with pytest.raises(ValueError, match="not a device"):
        _step(m, 0, {9999: DERControl(w_max_w=0.0)})
