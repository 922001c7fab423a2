"""Sweep specs: every problem listed at once, designs expand deterministically. No runs here."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.sweep._specs import BASE, write_spec
from twin.cli import main
from twin.sweep import SweepError, load_sweep, plan_sweep

ROOT = Path(__file__).resolve().parents[2]


def test_bad_spec_lists_every_problem_before_any_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec = write_spec(tmp_path, set={"market.ledgr": "reference"}, parameters={
        "agents.pv.share": [0.1],                          # no such path
        "agents.households.pv.share": [0.2, "lots"],       # wrong type
        "agents.evs.count": [],                            # empty design
        "market.retail_price_per_mwh": {"low": 1, "high": 2},  # interval in a grid
    })
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    for needle in ("set.market.ledgr: no field 'ledgr' in market",
                   "parameters.agents.pv.share: no field 'pv' in agents",
                   "parameters.agents.households.pv.share: value 'lots'",
                   "parameters.agents.evs.count: empty design",
                   "parameters.market.retail_price_per_mwh: an interval"):
        assert needle in err
    assert not out.exists()  # nothing started


def test_cross_field_errors_name_the_variant(tmp_path: Path) -> None:
    with pytest.raises(SweepError) as exc:
        load_sweep(write_spec(tmp_path, parameters={"market.retail_price_per_mwh": [100, 300],
                                                    "market.feed_in_price_per_mwh": [90, 200]}))
    # (100, 200) is fine value by value, bad together: named once per seed (3 and 4)
    assert "2 error(s)" in str(exc.value)
    assert ("variant (market.retail_price_per_mwh=100, market.feed_in_price_per_mwh=200, seed=3): "
            "market: feed_in_price_per_mwh") in str(exc.value)


def test_empty_designs(tmp_path: Path) -> None:
    for fields in ({"parameters": {}, "seeds": 1}, {"seeds": []},
                   {"parameters": {"seed": {"start": 5, "stop": 1}}}):
        with pytest.raises(SweepError, match="empty"):
            load_sweep(write_spec(tmp_path, **fields))


def test_grid_range_and_seeds() -> None:
    plan = plan_sweep({"name": "g", "base": BASE, "seeds": [1, 2],
                       "parameters": {"agents.evs.count": {"start": 0, "stop": 10, "step": 5},
                                      "market.ledger": ["reference", "chain"]}})
    assert len(plan.variants) == 3 * 2 * 2
    assert [v.params["agents.evs.count"] for v in plan.variants[::4]] == [0, 5, 10]
    assert {v.seed for v in plan.variants} == {1, 2}
    assert len({v.run_id for v in plan.variants}) == 12


def test_sampled_designs_are_seeded_and_in_bounds() -> None:
    spec = {"name": "s", "base": BASE, "design": {"kind": "lhs", "samples": 8, "seed": 7},
            "parameters": {"agents.households.pv.share": {"low": 0.1, "high": 0.9},
                           "agents.evs.count": {"low": 0, "high": 3}}}
    a, b = plan_sweep(spec), plan_sweep(spec)
    assert [v.params for v in a.variants] == [v.params for v in b.variants]
    shares = sorted(v.params["agents.households.pv.share"] for v in a.variants)
    assert all(0.1 <= s <= 0.9 for s in shares)
    # Latin hypercube: one sample per eighth of the interval
    assert [int((s - 0.1) / 0.8 * 8) for s in shares] == list(range(8))
    assert all(isinstance(v.params["agents.evs.count"], int) for v in a.variants)
    rnd = plan_sweep(spec | {"design": {"kind": "random", "samples": 5, "seed": 1}})
    assert len(rnd.variants) + rnd.merged == 5


def test_run_ids_stable_when_the_spec_grows() -> None:
    small = plan_sweep({"name": "g", "base": BASE, "parameters": {"agents.evs.count": [0, 1]}})
    big = plan_sweep({"name": "g", "base": BASE, "parameters": {"agents.evs.count": [0, 1, 2]}})
    assert {v.run_id for v in small.variants} < {v.run_id for v in big.variants}


def test_sweep_demo_is_valid() -> None:
    plan = load_sweep(ROOT / "scenarios" / "sweep_demo.yaml")
    assert len(plan.variants) == 12
    assert all(v.scenario["market"]["ledger"] == "reference" for v in plan.variants)
