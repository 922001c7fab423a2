"""Flexible household loads: the daily energy inside the comfort window, within power."""

from __future__ import annotations

import numpy as np
import pytest

from twin.agents.model import FeederModel
from twin.grid.feeders import build_feeder
from twin.scenario import ScenarioError, scenario_from_dict

from ._market import run_day


def test_flexible_load_meets_its_window() -> None:
    s = scenario_from_dict({
        "name": "flex", "seed": 2, "duration_s": 86_400, "grid": {"kind": "cigre_lv"},
        "agents": {"households": {"count": 20, "profiles": "synthetic", "pv": {"share": 0.5},
                                  "flex": {"share": 0.5, "energy_kwh": 4, "power_kw": 2,
                                           "earliest_hour": 6, "latest_hour": 22}},
                   "evs": {"count": 0}, "community_storage": {"count": 0}},
        "market": {"ledger": "reference"}})
    model = FeederModel(scenario=s, feeder=build_feeder(s), rng=np.random.default_rng(s.seed))
    outs = run_day(model, s.n_intervals)
    hh = model.households
    flex = np.array([[r["flex_wh"] for r in o.agent_rows if r["kind"] == "household"] for o in outs])
    load = np.array([[r["load_wh"] for r in o.agent_rows if r["kind"] == "household"] for o in outs])
    assert hh.has_flex.sum() == 10
    assert (flex[:, ~hh.has_flex] == 0).all()
    assert (flex <= 2000 * 0.25 + 1e-9).all() and (flex >= 0).all()
    assert (flex[~hh.flex_inside] == 0).all()
    assert flex[:, hh.has_flex].sum(axis=0) == pytest.approx(np.full(10, 4000.0))
    assert (load >= flex - 1e-9).all()  # part of the load
    # PV owners shift into their own surplus (midday), the others run at the window's end
    pv_flex = hh.has_flex & (hh.pv_kwp > 0)
    if pv_flex.any():
        hours = (np.arange(96) * 0.25)
        mean_hour = (flex[:, pv_flex] * hours[:, None]).sum(axis=0) / 4000.0
        assert (mean_hour < 18).all()


def test_flex_window_too_short_is_an_error() -> None:
    with pytest.raises(ScenarioError, match=r"households\.flex"):
        scenario_from_dict({"name": "x", "agents": {"households": {"flex": {
            "share": 0.1, "energy_kwh": 10, "power_kw": 1, "earliest_hour": 8, "latest_hour": 12}}}})
