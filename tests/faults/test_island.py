"""Balancing an island with its grid-forming batteries: shedding order, curtailment, collapse."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.faults.island import balance_island

DT_H = 0.25


def _bal(demand, gen=None, rank=None, *, energy_wh=50_000.0, power_mw=0.03, n_classes=3, other=0.0):
    d = np.asarray(demand, float)
    return balance_island(
        demand_mw=d, gen_mw=np.zeros_like(d) if gen is None else np.asarray(gen, float),
        rank=np.zeros(d.size, np.int64) if rank is None else np.asarray(rank, np.int64),
        n_classes=n_classes, other_mw=other, energy_wh=np.array([energy_wh]),
        capacity_wh=np.array([100_000.0]), power_mw=np.array([power_mw]), soc_min=np.array([0.1]),
        soc_max=np.array([0.95]), eta=np.array([1.0]), dt_h=DT_H)


def test_feasible_island_needs_no_shedding() -> None:
    b = _bal([0.010, 0.012], rank=[0, 1])
    assert not b.shed.any() and not b.collapsed and b.gen_scale == 1.0
    assert b.gf_p_mw[0] == pytest.approx(0.022)


def test_shedding_goes_by_class_then_biggest_first() -> None:
    # 40 kW against 30 kW: class 0 (EVs) first, its biggest entry first
    b = _bal([0.004, 0.011, 0.015, 0.010], rank=[0, 0, 1, 1])
    assert b.shed.tolist() == [False, True, False, False] and b.shed_class == 1
    assert b.gf_p_mw[0] == pytest.approx(0.029)
    b = _bal([0.004, 0.002, 0.020, 0.015], rank=[0, 0, 1, 1])
    assert b.shed.tolist() == [True, True, True, False] and b.shed_class == 2


def test_energy_limit_and_collapse() -> None:
    # 5 kWh above soc_min (10 kWh) over 15 min: at most 20 kW
    b = _bal([0.015, 0.010], rank=[0, 1], energy_wh=15_000.0)
    assert b.shed.tolist() == [True, False] and b.gf_p_mw[0] == pytest.approx(0.010)
    # never-shed demand beyond the battery: the island collapses
    c = _bal([0.040], rank=[3])
    assert c.collapsed and c.shed.all() and c.gf_p_mw[0] == 0.0


def test_surplus_is_curtailed_to_what_the_battery_absorbs() -> None:
    # 60 kW of PV against a 30 kW inverter with room: PV scaled so the battery takes 30 kW
    b = _bal([0.0, 0.0], gen=[0.05, 0.01], rank=[1, 1], energy_wh=50_000.0)
    assert not b.collapsed and b.gen_scale == pytest.approx(0.5)
    assert b.gf_p_mw[0] == pytest.approx(-0.030)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 0.02), st.floats(0, 0.02), st.integers(0, 3)), min_size=1, max_size=12),
       st.floats(10_000, 95_000))
def test_the_balance_always_fits_the_battery(entries, energy_wh) -> None:
    d, g, r = (np.array(x) for x in zip(*entries, strict=True))
    b = _bal(d, g, r, energy_wh=energy_wh)
    if b.collapsed:
        return
    hi = min(0.03, (energy_wh - 10_000.0) / DT_H / 1e6)
    lo = min(0.03, (95_000.0 - energy_wh) / DT_H / 1e6)
    net = float((d - g * b.gen_scale)[~b.shed].sum())
    assert b.gf_p_mw[0] == pytest.approx(net, abs=1e-12)  # the battery carries exactly the rest
    assert -lo - 1e-9 <= b.gf_p_mw[0] <= hi + 1e-9
    assert not b.shed[r >= 3].any()  # never-shed entries stay
