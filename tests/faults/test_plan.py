"""Fault processes (SimPy): protection, ties, repairs, upstream loss, islands, exact interruptions."""

from __future__ import annotations

import numpy as np
import pytest

from tests.faults._nets import lateral_net
from twin.faults.plan import FaultState, _Graph, add_ties, fault_plan, interruption_rows, islands
from twin.faults.spec import FaultsSpec

DAY = 86_400
GF_BUS = np.array([3])  # the battery's bus position


def _plan(spec: dict, *, seed: int = 1, ties: list | None = None, duration_s: int = DAY):
    net = lateral_net()
    s = FaultsSpec.model_validate(spec | ({"reconfiguration": {"allowed": True, "switching_s": 300,
                                                                "ties": ties}} if ties else {}))
    rows = add_ties(net, s.reconfiguration.ties)
    plan = fault_plan(s, net=net, rng=np.random.default_rng(seed), duration_s=duration_s, interval_s=900,
                      n_households=3, n_evs=2, gf_bus=GF_BUS, tie_rows=rows)
    return net, plan


def test_lateral_fault_is_isolated_tie_closes_and_opens_at_repair() -> None:
    tie = [{"from_bus": 4, "to_bus": 6, "like_line": 4, "length_km": 0.05}]
    # line 3 (bus 2 -> 5) faults at 09:00 for exactly 2 h: buses 5 and 6 lose supply
    net, plan = _plan({"lines": [{"element": 3, "at_s": [32_400], "repair": {"mean_s": 7200}}]}, ties=tie)
    kinds = [(e.time_s, e.kind) for e in plan.events]
    assert kinds == [(32_400, "fault"), (32_400, "isolate"), (32_700, "tie_close"),
                     (39_600, "tie_open"), (39_600, "repair")]
    assert plan.outages[0].repair_s == 7200 and plan.outages[0].fault_kind == "line"
    # interval 36 (09:00-09:15) has its midpoint after the switching: the tie is closed
    assert plan.states[35] == FaultState()
    assert plan.states[36] == FaultState(lines_out=(3,), ties_closed=(5,))
    assert plan.states[44] == FaultState()  # 11:00: repaired, tie open again
    graph = _Graph.of(net)
    isl = islands(graph, FaultState(lines_out=(3,)), GF_BUS)
    assert isl.bus_island.tolist() == [0, 0, 0, 0, 0, -1, -1]
    assert islands(graph, plan.states[36], GF_BUS).bus_island.tolist() == [0] * 7
    # exact interruptions: 2 customers (loads at buses 5, 6) for the 5 switching minutes only
    cust = np.arange(1, 7)
    demand = np.tile((cust / 1000.0)[:, None], (1, 96))
    rows = interruption_rows(plan, graph=graph, gf_bus=GF_BUS, customer_bus=cust, demand_mw=demand,
                             interval_s=900, duration_s=DAY)
    assert rows[0]["customers_off"] == 2 and rows[0]["new_interruptions"] == 2
    assert rows[0]["end_s"] - rows[0]["time_s"] == 300
    assert rows[0]["ens_wh"] == pytest.approx((5 + 6) * 1000 * 300 / 3600)  # 11 kW for 5 min, Wh
    assert sum(r["customers_off"] for r in rows[1:]) == 0


def test_no_tie_without_a_dead_part_and_without_reconfiguration() -> None:
    # the fault leaves nothing dead on the tie's ends: the tie stays open
    tie = [{"from_bus": 4, "to_bus": 6, "like_line": 4, "length_km": 0.05}]
    _, plan = _plan({"lines": [{"element": 2, "at_s": [3600], "repair": {"mean_s": 600}}]}, ties=tie)
    assert "tie_close" in [e.kind for e in plan.events]  # line 2 (3-4) out: bus 4 dead, tie feeds it
    _, plan = _plan({"lines": [{"element": 0, "at_s": [3600], "repair": {"mean_s": 600}}]}, ties=tie)
    assert "tie_close" not in [e.kind for e in plan.events]  # everything behind line 0: both ends dead
    _, plan = _plan({"lines": [{"element": 3, "at_s": [3600], "repair": {"mean_s": 600}}]})
    assert [e.kind for e in plan.events] == ["fault", "isolate", "repair"]


def test_upstream_loss_islands_the_battery_part_and_reconnects() -> None:
    net, plan = _plan({"upstream": [{"start_s": 64_800, "duration_s": 7200}]})
    assert plan.states[72].upstream_lost and plan.states[79].upstream_lost
    assert not plan.states[71].upstream_lost and not plan.states[80].upstream_lost
    isl = islands(_Graph.of(net), plan.states[72], GF_BUS)
    assert isl.bus_island.tolist() == [-1, 1, 1, 1, 1, 1, 1] and isl.gf_island.tolist() == [1]
    # a lateral fault inside the island splits it: the cut-off part is dead
    both = FaultState(lines_out=(1,), upstream_lost=True)
    assert islands(_Graph.of(net), both, GF_BUS).bus_island.tolist() == [-1, -1, -1, 1, 1, -1, -1]
    assert plan.outages[0].fault_kind == "upstream" and plan.outages[0].repair_s == 7200


def test_random_faults_are_seeded_and_independent_of_other_processes() -> None:
    spec = {"lines": [{"element": 1, "rate_per_day": 3.0,
                       "repair": {"distribution": "exponential", "mean_s": 1800}}],
            "devices": [{"kind": "inverter_trip", "target": "all", "rate_per_day": 1.0}]}
    _, a = _plan(spec, seed=7)
    _, b = _plan(spec, seed=7)
    _, c = _plan(spec, seed=8)
    assert a.events == b.events and a.states == b.states
    assert a.events != c.events
    # adding another fault source does not move the line's draws
    _, d = _plan(spec | {"upstream": [{"start_s": 1000, "duration_s": 500}]}, seed=7)
    line = [(e.time_s, e.kind) for e in a.events if e.element_kind == "line"]
    assert line == [(e.time_s, e.kind) for e in d.events if e.element_kind == "line"]
    assert len(line) >= 2
    # repairs follow faults of the same id, no repair before its fault
    start = {e.fault_id: e.time_s for e in a.events if e.kind in ("fault", "device_fault")}
    for e in a.events:
        if e.kind in ("repair", "device_repair"):
            assert e.time_s >= start[e.fault_id]
    inv = [e for e in a.events if e.element_kind == "inverter"]
    assert {e.element for e in inv} <= {0, 1, 2}
