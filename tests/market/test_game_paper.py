"""The consortium paper's valuation against the paper's own figures (data-driven).

Inputs and the paper's reported numbers, with their tolerances, live in
``tests/market/data/consortium_paper/`` (``input.json``, ``expected.json``); nothing of the
expected values is in the code under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from twin.market.audit import token_audit
from twin.market.game import GeneratorUnit, consortium_game, consortium_on_ledger
from twin.market.game_paper import curve_price, curve_range_mw, price_curve_rows, price_segments
from twin.market.game_properties import core_check, superadditivity
from twin.market.reference import ReferenceLedger

DATA = Path(__file__).parent / "data" / "consortium_paper"


def _case() -> tuple[list[GeneratorUnit], dict, dict]:  # type: ignore[type-arg]
    inp = json.loads((DATA / "input.json").read_text())
    exp = json.loads((DATA / "expected.json").read_text())
    return [GeneratorUnit(**u) for u in inp["units"]], inp, exp


def test_fig7_price_curve_matches_the_paper() -> None:
    units, inp, exp = _case()
    tol = exp["tolerance"]
    assert curve_range_mw(units) == pytest.approx(tuple(exp["curve"]["range_mwh"]), abs=1e-9)
    segs = price_segments(units)
    assert len(segs) == len(exp["curve"]["segments"])
    for got, want in zip(segs, exp["curve"]["segments"], strict=True):
        assert got.from_mw == pytest.approx(want["from_mwh"], abs=tol["breakpoint_mwh_abs"])
        assert got.to_mw == pytest.approx(want["to_mwh"], abs=tol["breakpoint_mwh_abs"])
        assert (got.setter, got.setter_at_max) == (want["setter"], want["setter_at_max"])
    price, _ = curve_price(units, inp["demand_mwh"] / inp["period_h"])
    assert price == pytest.approx(exp["curve"]["price_at_demand_per_mwh"], abs=tol["price_abs"])
    rows = price_curve_rows(units)
    prices = [r["price_per_mwh"] for r in rows]
    assert prices == sorted(prices)  # the paper: the clearing price never falls as the total rises
    assert all(r["bid_per_mwh"] <= r["price_per_mwh"] + 1e-12 for r in rows)


def test_table3_and_shapley_match_the_paper() -> None:
    units, inp, exp = _case()
    tol = exp["tolerance"]
    res = consortium_game(units, demand_mwh=inp["demand_mwh"], period_h=inp["period_h"], valuation="paper")
    for row in exp["coalitions"]:
        o = res.coalitions[frozenset(row["members"])]
        assert o.feasible
        assert o.price_per_mwh == pytest.approx(row["price_per_mwh"], abs=tol["price_abs"])
        assert o.value == pytest.approx(row["value"], abs=tol["money_abs"])
        for n, p in row["dispatch_mw"].items():
            assert o.dispatch_mw.get(n, 0.0) == pytest.approx(p, abs=tol["dispatch_mw_abs"])
        assert sum(o.dispatch_mw.values()) == pytest.approx(inp["demand_mwh"], abs=1e-9)
    assert res.shapley == pytest.approx(exp["shapley"], abs=tol["money_abs"])
    names = [u.name for u in units]
    values = {c: res.value(c) for c in res.coalitions}
    assert superadditivity(values, names).superadditive is exp["superadditive"]


def test_paper_valuation_settles_at_the_consortium_price() -> None:
    units, inp, _ = _case()
    res = consortium_game(units, demand_mwh=inp["demand_mwh"], valuation="paper")
    ledger = ReferenceLedger(interval_s=3600, retail_price_per_mwh=300_000_000, feed_in_price_per_mwh=0)
    st = consortium_on_ledger(res, ledger)
    assert st.price_per_mwh == round(res.grand.price_per_mwh * 1_000_000)
    assert sum(st.transfers.values()) == 0
    # each unit ends with its counted cost + Shapley share, to a micro-unit per unit
    for n in st.revenue:
        kept = st.revenue[n] + st.transfers[n] - res.grand.counted_cost(n) * 1_000_000
        assert kept == pytest.approx(res.shapley[n] * 1_000_000, abs=2)
    assert token_audit(ledger, accounts=range(6), minted=st.minted)["conserved"]


def test_superadditivity_and_core_on_known_games() -> None:
    # glove game: 1 owns a left glove, 2 and 3 right ones; core = {(1, 0, 0)}
    v = {frozenset({1, 2}): 1.0, frozenset({1, 3}): 1.0, frozenset({1, 2, 3}): 1.0}
    assert superadditivity(v, [1, 2, 3]).superadditive
    cc = core_check(v, [1, 2, 3], {1: 1.0, 2: 0.0, 3: 0.0})
    assert cc.core_nonempty and cc.allocation_in_core and cc.least_core_epsilon == pytest.approx(0, abs=1e-9)
    cc = core_check(v, [1, 2, 3], {1: 2 / 3, 2: 1 / 6, 3: 1 / 6})  # the Shapley value
    assert not cc.allocation_in_core and cc.max_excess == pytest.approx(1 / 6)
    # majority game: any two players win 1; superadditive, empty core, least core 1/3
    w = {frozenset(c): 1.0 for c in ({1, 2}, {1, 3}, {2, 3}, {1, 2, 3})}
    cc = core_check(w, [1, 2, 3], dict.fromkeys([1, 2, 3], 1 / 3))
    assert not cc.core_nonempty and cc.least_core_epsilon == pytest.approx(1 / 3)
    # a pair worth more than the grand coalition breaks superadditivity
    u = {frozenset({1, 2}): 5.0, frozenset({1, 2, 3}): 4.0}
    sa = superadditivity(u, [1, 2, 3])
    assert not sa.superadditive and sa.worst_gap == pytest.approx(-1.0)


def test_unknown_valuation_and_off_curve_demand_are_scenario_errors(tmp_path: Path) -> None:
    from twin.scenario import ScenarioError, load_scenario

    root = Path(__file__).resolve().parents[2]
    text = (root / "scenarios" / "consortium_generators.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("valuation: paper", "valuation: shapely"))
    with pytest.raises(ScenarioError, match=r"game\.valuation"):
        load_scenario(bad)
    bad.write_text(text.replace("demand_mwh: 160", "demand_mwh: 300"))
    with pytest.raises(ScenarioError, match=r"game\.demand_mwh.*85\.\.295"):
        load_scenario(bad)
    with pytest.raises(ValueError, match="unknown valuation"):
        consortium_game(_case()[0], demand_mwh=160, valuation="shapely")  # type: ignore[arg-type]
