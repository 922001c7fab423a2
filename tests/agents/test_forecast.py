"""Forecasting (twin/agents/forecast.py): persistence and gradient boosting on real SimBench
profiles, causality (no leakage), bad inputs, and a short quickstart run writing the
``forecasts`` table and its KPIs."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from tests._quickstart import quickstart_with
from twin.agents.forecast import (
    SIMBENCH_YEAR_T0_S,
    GBMForecaster,
    PersistenceForecaster,
    PriceForecaster,
    forecast_kpis,
    rolling_forecast,
)
from twin.grid.profiles import simbench_offset_s, window_average
from twin.scenario import ScenarioError

S = 96  # 15-minute steps per day
CODE = "1-LV-semiurb4--0-sw"


@pytest.fixture(scope="module")
def h0_profiles() -> np.ndarray:
    """The quickstart feeder's residential SimBench load profiles (per unit, a year)."""
    from twin.grid.feeders import _simbench_net

    lp = _simbench_net(CODE).profiles["load"]
    cols = sorted(c for c in lp.columns if str(c).startswith("H") and str(c).endswith("_pload"))
    assert len(cols) >= 3
    return np.stack([lp[c].to_numpy(float) for c in cols])


def _split(series: np.ndarray, *, start_day: int, train_days: int, test_days: int) -> tuple[np.ndarray, np.ndarray, int]:
    a = (start_day - train_days - 7) * S
    return series[..., a:start_day * S], series[..., start_day * S:(start_day + test_days) * S], a * 900


def test_persistence_is_exact_on_a_periodic_series() -> None:
    rng = np.random.default_rng(3)
    day = rng.uniform(0.1, 2.0, size=(2, S))
    series = np.tile(day, (1, 5))
    f = PersistenceForecaster(step_s=900).fit(series[:, :2 * S])
    np.testing.assert_array_equal(f.predict(3 * S), series[:, 2 * S:])
    # rolled causally over the same series it stays exact
    np.testing.assert_array_equal(
        rolling_forecast(PersistenceForecaster(step_s=900).fit(series[0, :S]), actual=series[0, S:]),
        series[0, S:])


def test_gbm_learns_a_weekly_pattern_beyond_one_day() -> None:
    """Two-day horizon (its second day fed back from its own predictions) on a series whose
    weekend differs from its weekdays: close to the truth, where persistence is not."""
    t = np.arange(21 * S)
    day = 1 + 0.5 * np.sin(2 * np.pi * t / S)
    weekend = ((t // S + 3) % 7) >= 5  # t0 = 1970-01-01, a Thursday
    series = np.where(weekend, 0.5 * day, day)
    hist, act = series[:16 * S], series[16 * S:18 * S]  # forecast the Saturday and Sunday
    pred = GBMForecaster(step_s=900).fit(hist).predict(2 * S)
    pers = PersistenceForecaster(step_s=900).fit(hist).predict(2 * S)
    assert pred.shape == (2 * S,)
    assert np.abs(pred - act).mean() < 0.2 * np.abs(pers - act).mean()


def test_gbm_beats_persistence_on_held_out_simbench_days(h0_profiles: np.ndarray) -> None:
    """Trained on four weeks before June 15 (day 166), scored on the week from it."""
    hist, act, t0 = _split(h0_profiles, start_day=166, train_days=28, test_days=7)
    t = time.perf_counter()
    gbm = rolling_forecast(GBMForecaster(step_s=900).fit(hist, t0_s=SIMBENCH_YEAR_T0_S + t0), actual=act)
    fit_s = time.perf_counter() - t
    pers = rolling_forecast(PersistenceForecaster(step_s=900).fit(hist), actual=act)
    nmae_gbm = np.abs(gbm - act).sum() / act.sum()
    nmae_pers = np.abs(pers - act).sum() / act.sum()
    print(f"nMAE load, week of June 15: gbm {nmae_gbm:.3f}, persistence {nmae_pers:.3f}, "
          f"gbm fit+forecast {fit_s:.2f} s")
    assert nmae_gbm < 0.95 * nmae_pers  # at least 5 % lower error than same-time-yesterday


def test_forecasts_never_see_what_they_forecast() -> None:
    """Changing the actuals from a block on leaves that block's forecast unchanged."""
    rng = np.random.default_rng(1)
    t = np.arange(12 * S)
    series = 1 + 0.5 * np.sin(2 * np.pi * t / S) + 0.1 * rng.random(t.size)
    hist, act = series[:9 * S], series[9 * S:]
    base = rolling_forecast(GBMForecaster(step_s=900).fit(hist), actual=act)
    for block in range(3):
        changed = act.copy()
        changed[block * S:] = 100.0 * rng.random(changed.size - block * S)
        out = rolling_forecast(GBMForecaster(step_s=900).fit(hist), actual=changed)
        np.testing.assert_array_equal(out[:(block + 1) * S], base[:(block + 1) * S])
        assert not np.array_equal(out, base) or block == 2


def test_household_forecasts_train_before_the_start_only() -> None:
    """The twin's training window ends where the scenario starts, and a window that would
    reach back past January 1st (wrapping into the same year's December) is refused."""
    from twin.agents.forecast import _per_unit
    from twin.grid.feeders import _simbench_net

    s = quickstart_with(agents__forecast__method="persistence", agents__forecast__train_days=7,
                        duration_s=2 * 86_400)
    off = simbench_offset_s(s.start)
    fc, act = _per_unit(CODE, "load", "H0-A_pload", "persistence", off, 7, 900, s.n_intervals)
    series = _simbench_net(CODE).profiles["load"]["H0-A_pload"].to_numpy(float)[None, :]
    before = window_average(series, offset_s=off - 86_400, duration_s=86_400, interval_s=900)[0]
    np.testing.assert_allclose(fc[:S], before)  # day 1: the day before the start, nothing later
    np.testing.assert_allclose(fc[S:], act[:S])  # day 2: day 1 of the run, once observed
    with pytest.raises(ScenarioError, match=r"agents\.forecast\.train_days"):
        quickstart_with(agents__forecast__method="gbm", start="2016-01-20T00:00:00Z")


def test_price_forecasts_use_only_the_runs_past() -> None:
    pf = PriceForecaster("persistence", interval_s=900, start_s=SIMBENCH_YEAR_T0_S, default=7.0)
    assert pf.predict(0) == 7.0
    prices = [100 + (k % S) for k in range(S)]
    for k, p in enumerate(prices):
        pf.observe(k, p if k % 5 else None)
    assert pf.predict(S + 1) == prices[1]  # same interval yesterday
    assert pf.predict(S) == prices[S - 2]  # intervals 0 and 95 did not trade: the last traded price
    g = PriceForecaster("gbm", interval_s=900, start_s=SIMBENCH_YEAR_T0_S, default=7.0)
    for k in range(2 * S):
        g.observe(k, 100 + (k % S))
    assert abs(g.predict(2 * S + 10) - 110) < 5
    with pytest.raises(ValueError, match="interval"):
        g.predict(3)


def test_forecast_kpis_from_rows() -> None:
    rows = [{"target": "load", "forecast": f, "actual": a} for f, a in ((2.0, 1.0), (3.0, 4.0))]
    rows += [{"target": "price", "forecast": 90.0, "actual": 100.0}]
    k = forecast_kpis(rows)
    assert k["forecast_mae_load_kw"] == 1.0 and k["forecast_nmae_load"] == 2.0 / 5.0
    assert k["forecast_mape_load"] == (1.0 + 0.25) / 2
    assert k["forecast_mae_price_per_mwh"] == 10.0 and "forecast_mae_pv_kw" not in k


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda: PersistenceForecaster(step_s=900).fit(np.array([np.nan] * S)), "history"),
        (lambda: PersistenceForecaster(step_s=900).fit(np.ones(S - 1)), "history"),
        (lambda: PersistenceForecaster(step_s=900).fit(np.ones((1, 1, S))), "history"),
        (lambda: PersistenceForecaster(step_s=900).fit(np.ones(S)).predict(0), "horizon"),
        (lambda: PersistenceForecaster(step_s=900).fit(np.ones((2, S))).update(np.ones((3, 4))), "observed"),
        (lambda: PersistenceForecaster(step_s=7), "step_s"),
        (lambda: GBMForecaster(step_s=900).fit(np.ones(3 * S)), "history"),
        (lambda: GBMForecaster(step_s=900, max_iter=0), "max_iter"),
        (lambda: PriceForecaster("arima", interval_s=900, start_s=0, default=1.0), "method"),
    ],
)
def test_bad_inputs_name_the_argument(call, name: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match=rf"^{name}"):
        call()
    with pytest.raises(RuntimeError, match="fit"):
        GBMForecaster(step_s=900).predict(1)


@pytest.mark.parametrize(
    ("change", "path"),
    [
        ({"agents__forecast__method": "arima"}, "agents.forecast.method"),
        ({"agents__forecast__train_days": 0}, "agents.forecast.train_days"),
        ({"agents__forecast__method": "gbm", "agents__households__profiles": "synthetic"},
         "agents.forecast.method"),
        ({"agents__forecast__method": "gbm", "grid__kind": "cigre_lv"}, "agents.forecast.method"),
    ],
)
def test_bad_forecast_spec_is_a_scenario_error(change: dict[str, object], path: str) -> None:
    with pytest.raises(ScenarioError, match=path.replace(".", r"\.")):
        quickstart_with(**change)


def test_quickstart_with_gbm_writes_forecasts_and_kpis(tmp_path: Path) -> None:
    """Four hours of the quickstart on the reference ledger with GBM forecasts and a VPP."""
    from twin.run import run_scenario

    sc = quickstart_with(start="2016-06-15T08:00:00Z", duration_s=4 * 3600, market__ledger="reference",
                         agents__forecast__method="gbm", agents__vpp__members=4)
    run_scenario(sc, out_dir=tmp_path, progress=False)
    t = pq.read_table(tmp_path / "forecasts.parquet").to_pandas()
    assert set(t["method"]) == {"gbm"}
    load = t[t["target"] == "load"]
    assert len(load) == sc.n_intervals and (load["actual"] > 0).all()
    assert {"pv", "vpp_net_load", "price"} <= set(t["target"])
    agents = pq.read_table(tmp_path / "agents.parquet").to_pandas()
    hh = agents[agents["kind"] == "household"]
    kw = hh.groupby("time_s")["load_wh"].sum().to_numpy() * 4 / 1000  # includes flexible load
    assert np.all(kw >= load["actual"].to_numpy() - 1e-6)
    kpis = json.loads((tmp_path / "kpis.json").read_text())
    err = np.abs(load["forecast"] - load["actual"])
    assert kpis["forecast_mae_load_kw"] == pytest.approx(err.mean())
    assert kpis["forecast_nmae_load"] == pytest.approx(err.sum() / load["actual"].sum())
    assert kpis["forecast_nmae_pv"] > 0 and kpis["forecast_mae_price_per_mwh"] >= 0
