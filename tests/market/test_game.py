"""Shapley values (exact and sampled) and the consortium generator game."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.market.audit import token_audit
from twin.market.game import (
    GeneratorUnit,
    consortium_game,
    consortium_on_ledger,
    integer_allocation,
    shapley,
    shapley_sample,
    shapley_values,
)
from twin.market.reference import ReferenceLedger

PAPER_UNITS = [
    GeneratorUnit("GU1", a=0.01, b=8.4, p_min_mw=30, p_max_mw=100, k=1.3),
    GeneratorUnit("GU2", a=0.02, b=8.2, p_min_mw=35, p_max_mw=90, k=1.2),
    GeneratorUnit("GU3", a=0.01, b=8.8, p_min_mw=20, p_max_mw=105, k=1.1),
]


def _coalitions(players: list[int]) -> list[frozenset[int]]:
    return [frozenset(c) for r in range(len(players) + 1) for c in itertools.combinations(players, r)]


@st.composite
def games(draw: st.DrawFn, max_players: int = 6) -> tuple[list[int], dict[frozenset[int], float]]:
    n = draw(st.integers(1, max_players))
    players = list(range(n))
    vals = draw(st.lists(st.floats(-100, 100, allow_nan=False), min_size=2**n, max_size=2**n))
    v = dict(zip(_coalitions(players), vals, strict=True))
    v[frozenset()] = 0.0
    return players, v


@settings(max_examples=60, deadline=None)
@given(games())
def test_efficiency(game: tuple[list[int], dict[frozenset[int], float]]) -> None:
    players, v = game
    phi = shapley_values(v, players)
    assert math.isclose(sum(phi.values()), v[frozenset(players)], abs_tol=1e-7)


@settings(max_examples=60, deadline=None)
@given(games(), st.data())
def test_symmetry_and_null_player(game: tuple[list[int], dict[frozenset[int], float]], data: st.DataObject) -> None:
    players, v = game
    n = len(players)
    # make player n a null player and players 0, 1 symmetric
    null = n
    ext = {c | extra: v[c] for c in v for extra in (frozenset(), frozenset({null}))}

    def sym(c: frozenset[int]) -> float:
        swapped = frozenset({1: 0, 0: 1}.get(p, p) for p in c)
        return ext[c] + ext[swapped]  # invariant under swapping 0 and 1

    phi_null = shapley_values(ext, [*players, null])
    assert abs(phi_null[null]) < 1e-9
    for p in players:
        assert math.isclose(phi_null[p], shapley_values(v, players)[p], abs_tol=1e-7)
    if n >= 2:
        phi = shapley_values(sym, [*players, null])
        assert math.isclose(phi[0], phi[1], abs_tol=1e-7)


@settings(max_examples=40, deadline=None)
@given(games(max_players=5), st.lists(st.floats(-50, 50, allow_nan=False), min_size=32, max_size=32))
def test_additivity(game: tuple[list[int], dict[frozenset[int], float]], other: list[float]) -> None:
    players, v = game
    w = dict(zip(_coalitions(players), other, strict=False))
    w[frozenset()] = 0.0
    both = {c: v[c] + w[c] for c in v}
    a, b, ab = shapley_values(v, players), shapley_values(w, players), shapley_values(both, players)
    for p in players:
        assert math.isclose(ab[p], a[p] + b[p], abs_tol=1e-7)


def test_callable_and_known_game() -> None:
    # glove game: 0 has a left glove, 1 and 2 right ones; a pair is worth 1
    def v(c: frozenset[str]) -> float:
        return float(min(("L" in c), len(c & {"R1", "R2"})))

    phi = shapley_values(v, ["L", "R1", "R2"])
    assert phi["L"] == pytest.approx(2 / 3) and phi["R1"] == pytest.approx(1 / 6)
    with pytest.raises(KeyError):
        shapley_values({frozenset({1}): 1.0}, [1, 2])


def test_sampling_within_stated_bound() -> None:
    rng = np.random.default_rng(3)
    players = list(range(9))
    weights = rng.uniform(0, 10, size=9)

    def v(c: frozenset[int]) -> float:  # superadditive: (sum of weights)^2 / 10
        return float(sum(weights[list(c)])) ** 2 / 10

    exact = shapley_values(v, players)
    est = shapley_sample(v, players, n_permutations=400, rng=np.random.default_rng(7), delta=0.01)
    for p in players:
        assert abs(est.values[p] - exact[p]) <= est.half_width[p]
        assert abs(est.values[p] - exact[p]) <= 5 * est.std_error[p] + 1e-9
    assert math.isclose(sum(est.values.values()), v(frozenset(players)), rel_tol=1e-9)  # per permutation
    same = shapley_sample(v, players, n_permutations=400, rng=np.random.default_rng(7), delta=0.01)
    assert same.values == est.values
    auto = shapley(v, players, exact_max=5, rng=np.random.default_rng(1), n_permutations=50)
    assert not auto.exact and auto.n_permutations == 50


@given(st.dictionaries(st.integers(0, 20), st.floats(-1e6, 1e6, allow_nan=False), min_size=1),
       st.integers(-10**7, 10**7))
def test_integer_allocation_conserves(shares: dict[int, float], total: int) -> None:
    out = integer_allocation(shares, total)
    assert sum(out.values()) == total and set(out) == set(shares)
    scale = sum(shares.values())
    if abs(scale - total) < 1:
        assert all(abs(out[p] - shares[p]) <= 2 for p in shares)


def test_consortium_game_paper_units() -> None:
    res = consortium_game(PAPER_UNITS, demand_mwh=160)
    names = ["GU1", "GU2", "GU3"]
    for c, o in res.coalitions.items():
        if o.feasible:
            assert sum(o.dispatch_mw.values()) == pytest.approx(160, abs=1e-9)
            assert all(p >= -1e-12 for p in o.profit.values())  # marginal pricing: no losses
            units = {u.name: u for u in PAPER_UNITS}
            for n, p in o.dispatch_mw.items():
                if p > 0:
                    assert units[n].p_min_mw - 1e-9 <= p <= units[n].p_max_mw + 1e-9
                    assert units[n].bid(p) <= o.price_per_mwh + 1e-12
        else:
            assert len(c) == 1 and o.value == 0  # no unit serves 160 MWh alone
    g = res.grand
    assert g.dispatch_mw == pytest.approx({"GU1": 70.0, "GU2": 40.0, "GU3": 50.0})
    assert g.price_per_mwh == pytest.approx(12.74)
    assert g.value == pytest.approx(576.4)
    assert sum(res.shapley.values()) == pytest.approx(g.value)
    # least-cost dispatch: equal marginal cost 9.8 $/MWh for all three
    assert {u.name: u.marginal_cost(g.dispatch_mw[u.name]) for u in PAPER_UNITS} == pytest.approx(
        dict.fromkeys(names, 9.8))
    assert res.shapley == pytest.approx({"GU1": 232.8889, "GU2": 181.6556, "GU3": 161.8556}, abs=1e-3)


def test_consortium_on_reference_ledger_conserves_tokens() -> None:
    res = consortium_game(PAPER_UNITS, demand_mwh=160)
    ledger = ReferenceLedger(interval_s=3600, retail_price_per_mwh=300_000_000, feed_in_price_per_mwh=0)
    st_ = consortium_on_ledger(res, ledger)
    assert st_.price_per_mwh == 12_740_000
    assert sum(st_.energy_wh.values()) == 160_000_000
    assert sum(st_.transfers.values()) == 0
    assert st_.revenue == {"GU1": 891_800_000, "GU2": 509_600_000, "GU3": 637_000_000}
    audit = token_audit(ledger, accounts=range(6), minted=st_.minted)
    assert audit["conserved"]


def test_fixed_cost_keeps_profits_non_negative() -> None:
    units = [GeneratorUnit("A", a=0.01, b=5, c=300, p_min_mw=10, p_max_mw=100, k=1.0),
             GeneratorUnit("B", a=0.05, b=4, c=0, p_min_mw=0, p_max_mw=50, k=1.0)]
    res = consortium_game(units, demand_mwh=40)
    for o in res.coalitions.values():
        assert all(p >= -1e-9 for p in o.profit.values())


def test_twin_run_game_scenario(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pathlib import Path

    import pyarrow.parquet as pq

    from twin.run import run_scenario
    from twin.scenario import load_scenario

    root = Path(__file__).resolve().parents[2]
    out = tmp_path / "game"
    run_scenario(load_scenario(root / "scenarios" / "consortium_generators.yaml"), out_dir=out)
    kpis = json.loads((out / "kpis.json").read_text())
    # the scenario plays the paper's valuation; ours (profit) is reported beside it
    assert kpis["game_grand_value"] == kpis["game_grand_value_paper"] and kpis["tokens_conserved"] == 1.0
    assert kpis["game_grand_value_profit"] == pytest.approx(576.4)
    assert (kpis["game_superadditive_profit"], kpis["game_superadditive_paper"]) == (0.0, 1.0)
    assert pq.read_table(out / "game_coalitions.parquet").num_rows == 7
    assert pq.read_table(out / "game_checks.parquet").num_rows == 2
    assert pq.read_table(out / "game_price_segments.parquet").num_rows == 3
    assert pq.read_table(out / "trades.parquet").num_rows == 3
