"""Home batteries answering demand-response calls (``households.battery.dr``, the TenneT
pilot's residential batteries): what they offer, that a commitment really discharges them
(the meter drops by it, the state of charge stays in its band) and the DR reserve."""

from __future__ import annotations

import numpy as np
import pytest

from tests._quickstart import quickstart_with
from twin.agents.model import FeederModel
from twin.grid.feeders import build_feeder
from twin.scenario import Scenario, ScenarioError

BAT = {"share": 1.0, "capacity_kwh": 10.0, "power_kw": 4.0, "soc_init": 0.6, "soc_min": 0.1}


def _model(sc: Scenario) -> FeederModel:
    rng = np.random.default_rng(sc.seed)
    return FeederModel(scenario=sc, feeder=build_feeder(scenario=sc, rng=rng), rng=rng)


def _evening(**battery: object) -> Scenario:
    return quickstart_with(start="2016-06-15T18:00:00Z", duration_s=2 * 3600, market__ledger="reference",
                           agents__households__battery={**BAT, **battery})


def test_committed_home_battery_discharges_by_its_commitment() -> None:
    hh = _model(_evening(dr=True)).households
    k = 1
    offer = hh.battery_offer_wh(k)
    assert (offer[~hh.has_battery] == 0).all() and (offer[hh.has_battery] >= 1).all()
    power_wh = BAT["power_kw"] * 1000 * 0.25
    assert (offer <= power_wh + 1e-9).all()  # never beyond the inverter for one interval
    inf = np.full(hh.n, np.inf)
    before = hh.plan(k, export_cap_wh=inf)
    commit = np.floor(offer / 2)
    hh.defer(k, commit)
    after = hh.plan(k, export_cap_wh=inf)
    np.testing.assert_allclose(before.metered_wh - after.metered_wh, commit, atol=1e-9)
    e0 = hh.energy_wh.copy()
    out = hh.dispatch(k, export_cap_wh=inf)
    extra = out.battery_discharge_wh - out.battery_charge_wh
    assert (extra[hh.has_battery] >= commit[hh.has_battery] - 1e-9).all()
    assert (hh.energy_wh <= e0 + 1e-9).all()
    assert (hh.energy_wh >= hh.soc_min * hh.battery_capacity_wh - 1e-9).all()
    assert k not in hh.battery_dr_wh  # a commitment is used once


def test_without_dr_home_batteries_offer_nothing_and_reserve_needs_dr() -> None:
    hh = _model(_evening()).households
    assert not hh.battery_offer_wh(1).any()
    with pytest.raises(ScenarioError, match="dr_reserve_soc"):
        _evening(dr_reserve_soc=0.4)


def test_dr_reserve_stops_self_consumption_but_not_a_call() -> None:
    hh = _model(_evening(dr=True, dr_reserve_soc=0.6)).households  # starts at its reserve
    inf = np.full(hh.n, np.inf)
    plan = hh.plan(0, export_cap_wh=inf)
    assert not plan.battery_discharge_wh[hh.has_battery].any()  # evening deficit, reserve kept
    offer = hh.battery_offer_wh(0)
    assert (offer[hh.has_battery] >= 1).all()  # the reserve is there for the call
    hh.defer(0, offer)
    out = hh.dispatch(0, export_cap_wh=inf)
    np.testing.assert_allclose(out.battery_discharge_wh[hh.has_battery], offer[hh.has_battery], atol=1e-9)
