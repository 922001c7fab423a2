"""Forecasting of household load, PV and clearing prices: persistence and gradient boosting.

The seed VPP platforms advertise "prediction and analysis"; this module is the twin's.

Kernel (pure; arrays in, arrays out, no pandas, no global state but an in-memory cache of
trained models). Every forecaster follows one protocol over a step series
(``step_s`` seconds per step, ``season`` steps per day)::

    f = GBMForecaster(step_s=900).fit(history, t0_s=t0)   # history: (rows, T) or (T,)
    f.predict(horizon)         # the next ``horizon`` steps after the last observation
    f.update(observed)         # append observations (the same rows), e.g. one day

``t0_s`` is the UNIX time (UTC) of the first history step; the calendar features follow
from it. :func:`rolling_forecast` replays a run causally: before each block of ``block``
steps it predicts the block, then feeds the block's actuals, so a forecast never sees the
values it forecasts.

:class:`PersistenceForecaster`
    seasonal naive: the value ``season`` steps earlier (same time yesterday); beyond one
    season it repeats the last observed season. Exact on a series of period ``season``.
:class:`GBMForecaster`
    scikit-learn ``HistGradientBoostingRegressor`` (one model over all rows of the history,
    each row scaled by its training mean so profiles of different size pool), features:
    time of day (slot and its sine/cosine), day of week, day of year (sine/cosine), the
    value one day and one week earlier and the mean of the last observed day. Every lag
    is at least one season, so a whole day is forecast at once from observations before it
    (day-ahead, the horizon a VPP schedules on); beyond one season it feeds back its own
    predictions. Small trees, no early stopping, fixed ``random_state``: deterministic and
    well under a second on a few weeks of 15-minute data.
:class:`PriceForecaster`
    clearing prices from the run's own history (one value per interval, NaN where nothing
    traded): ``noise`` keeps the agents' old estimate (mean of the last ``window`` prices),
    ``persistence`` the price of the same interval yesterday (else the last price),
    ``gbm`` a small gradient-boosted model refitted once per day on the run's history
    (persistence until one day of prices exists).

Training windows and leakage. The household models train on the SimBench year (2016,
15-minute, per unit) over ``train_days`` days that *end before the scenario starts*; the
lags of the first simulated day come from the week before the start. Training on days
inside the simulated window (or wrapping round the year into December) would let the model
memorise the days it is scored on, and its error KPIs would flatter it; the scenario spec
therefore rejects a start with fewer than ``train_days + 7`` days of the year before it.
SimBench households that share a profile type are the same per-unit series, so a model is
trained once per (grid, profile type, window) and cached in memory for the process.

Adapter: :func:`household_forecasts` builds the load and PV forecasts (Wh per household
and interval) of a feeder's households for ``agents.forecast.method`` ``persistence`` /
``gbm``; the ``noise`` method stays in :mod:`twin.agents.household` (the truth times a
seeded relative error, today's behaviour).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Self

import numpy as np

from twin.agents.strategies import price_forecast

__all__ = [
    "FORECAST_METHODS",
    "GBMForecaster",
    "HouseholdForecasts",
    "PersistenceForecaster",
    "PriceForecaster",
    "calendar_features",
    "feeder_household_forecasts",
    "forecast_kpis",
    "household_forecasts",
    "rolling_forecast",
]

FORECAST_METHODS = ("noise", "persistence", "gbm")
_DAY_S = 86_400
_WEEK_DAYS = 7


def _one_thread() -> Any:
    """One OpenMP thread for scikit-learn: deterministic sums, and no oversubscription of
    the run's cores (a few thousand samples gain nothing from threads)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="openmp")


def _as_2d(name: str, values: Any) -> tuple[np.ndarray, bool]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim not in (1, 2):
        raise ValueError(f"{name}: must be 1-D (steps) or 2-D (rows, steps), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: contains NaN or infinite values")
    return (arr[None, :] if arr.ndim == 1 else arr), arr.ndim == 1


def _season(step_s: int) -> int:
    if isinstance(step_s, bool) or not isinstance(step_s, int | np.integer) or step_s <= 0:
        raise ValueError(f"step_s: must be a positive integer number of seconds, got {step_s!r}")
    if _DAY_S % step_s:
        raise ValueError(f"step_s: must divide one day (86400 s), got {step_s}")
    return _DAY_S // int(step_s)


def _check_horizon(horizon: int) -> int:
    if isinstance(horizon, bool) or not isinstance(horizon, int | np.integer) or horizon <= 0:
        raise ValueError(f"horizon: must be a positive integer, got {horizon!r}")
    return int(horizon)


def calendar_features(t0_s: int, n: int, *, step_s: int) -> np.ndarray:
    """(n, 6) features of steps ``t0_s + i*step_s`` (UTC): slot of day, its sine and
    cosine, day of week (Monday 0), day of year sine and cosine (midpoint of each step)."""
    season = _season(step_s)
    mid_s = int(t0_s) + step_s * np.arange(n, dtype=np.int64) + step_s // 2
    slot = (mid_s % _DAY_S) // step_s
    day = mid_s // _DAY_S  # days since 1970-01-01, a Thursday
    dow = (day + 3) % 7
    doy = (mid_s.astype("datetime64[s]") - mid_s.astype("datetime64[s]").astype("datetime64[Y]")
           ).astype("timedelta64[D]").astype(np.int64)
    ang = 2 * np.pi * slot / season
    yang = 2 * np.pi * doy / 365.25
    return np.column_stack([slot, np.sin(ang), np.cos(ang), dow, np.sin(yang), np.cos(yang)]).astype(np.float64)


class _Base:
    """Observed series (rows, T) and its time axis; subclasses add ``fit`` / ``predict``."""

    def __init__(self, *, step_s: int = 900) -> None:
        self.step_s = int(step_s)
        self.season = _season(step_s)
        self._y: np.ndarray | None = None
        self._t0_s = 0
        self._squeeze = False

    def _store(self, history: Any, t0_s: int, min_steps: int) -> None:
        y, squeeze = _as_2d("history", history)
        if y.shape[1] < min_steps:
            raise ValueError(f"history: needs at least {min_steps} steps "
                             f"({min_steps / self.season:g} days), got {y.shape[1]}")
        self._y, self._t0_s, self._squeeze = y.copy(), int(t0_s), squeeze

    def _observed(self) -> np.ndarray:
        if self._y is None:
            raise RuntimeError(f"{type(self).__name__}: call fit(history) before predict/update")
        return self._y

    @property
    def end_s(self) -> int:
        """UNIX time of the step after the last observation."""
        return self._t0_s + self._observed().shape[1] * self.step_s

    def update(self, observed: Any) -> None:
        """Append observations (same rows as the history; 1-D for a 1-D history)."""
        y = self._observed()
        obs, _ = _as_2d("observed", observed)
        if obs.shape[0] != y.shape[0]:
            raise ValueError(f"observed: {obs.shape[0]} rows, the history has {y.shape[0]}")
        self._y = np.concatenate([y, obs], axis=1)

    def _out(self, pred: np.ndarray) -> np.ndarray:
        return pred[0] if self._squeeze else pred


class PersistenceForecaster(_Base):
    """Seasonal naive forecast: the value one season (one day) earlier."""

    def fit(self, history: Any, *, t0_s: int = 0) -> Self:
        self._store(history, t0_s, self.season)
        return self

    def predict(self, horizon: int) -> np.ndarray:
        h = _check_horizon(horizon)
        last = self._observed()[:, -self.season:]
        return self._out(np.tile(last, (1, -(-h // self.season)))[:, :h].copy())


class GBMForecaster(_Base):
    """Gradient-boosted trees on calendar and lag features; see the module docstring."""

    def __init__(self, *, step_s: int = 900, max_iter: int = 60, learning_rate: float = 0.1,
                 max_leaf_nodes: int = 15, random_state: int = 0) -> None:
        super().__init__(step_s=step_s)
        if max_iter <= 0:
            raise ValueError(f"max_iter: must be positive, got {max_iter}")
        if not 0 < learning_rate <= 1:
            raise ValueError(f"learning_rate: must be in (0, 1], got {learning_rate}")
        self.params = {"max_iter": int(max_iter), "learning_rate": float(learning_rate),
                       "max_leaf_nodes": int(max_leaf_nodes), "random_state": int(random_state)}
        self._scale = np.ones(1)
        self._model: Any = None

    @property
    def min_history(self) -> int:
        """Fewest history steps ``fit`` accepts: a week of lags plus a day of targets."""
        return (_WEEK_DAYS + 1) * self.season

    def _features(self, y: np.ndarray, start: int, n: int) -> np.ndarray:
        """Features of steps ``start .. start+n-1`` of the scaled series ``y`` (rows, T),
        ``n <= season`` and ``start >= 7 * season``; rows stacked row-major."""
        s = self.season
        cal = calendar_features(self._t0_s + start * self.step_s, n, step_s=self.step_s)
        idx = start + np.arange(n)
        day_ago = y[:, idx - s]
        week_ago = y[:, idx - _WEEK_DAYS * s]
        level = y[:, start - s:start].mean(axis=1, keepdims=True) * np.ones((1, n))
        rows = y.shape[0]
        return np.column_stack([np.tile(cal, (rows, 1)), day_ago.ravel(), week_ago.ravel(), level.ravel()])

    def fit(self, history: Any, *, t0_s: int = 0) -> Self:
        from sklearn.ensemble import HistGradientBoostingRegressor  # heavy import, on use

        self._store(history, t0_s, self.min_history)
        y = self._observed()
        scale = np.abs(y).mean(axis=1, keepdims=True)
        self._scale = np.where(scale > 0, scale, 1.0)
        ys = y / self._scale
        s, T = self.season, y.shape[1]
        starts = range(_WEEK_DAYS * s, T, s)
        X = np.concatenate([self._features(ys, a, min(s, T - a)) for a in starts])
        target = np.concatenate([ys[:, a:a + min(s, T - a)].ravel() for a in starts])
        with _one_thread():
            self._model = HistGradientBoostingRegressor(early_stopping=False, **self.params).fit(X, target)
        return self

    def predict(self, horizon: int) -> np.ndarray:
        h = _check_horizon(horizon)
        y = self._observed()
        rows, T, s = y.shape[0], y.shape[1], self.season
        ys = np.concatenate([y / self._scale, np.zeros((rows, h))], axis=1)
        for a in range(T, T + h, s):
            n = min(s, T + h - a)
            with _one_thread():
                ys[:, a:a + n] = self._model.predict(self._features(ys, a, n)).reshape(rows, n)
        return self._out(ys[:, T:] * self._scale)


Forecaster = PersistenceForecaster | GBMForecaster


def make_forecaster(method: str, *, step_s: int) -> Forecaster:
    """A fresh forecaster for ``method`` ``persistence`` or ``gbm``."""
    if method == "persistence":
        return PersistenceForecaster(step_s=step_s)
    if method == "gbm":
        return GBMForecaster(step_s=step_s)
    raise ValueError(f"method: must be 'persistence' or 'gbm' for a trained forecaster, got {method!r}")


def rolling_forecast(forecaster: Forecaster, *, actual: Any, block: int | None = None) -> np.ndarray:
    """Forecast ``actual`` (the steps right after the fitted history) block by block.

    Before each block of ``block`` steps (default one season) it calls ``predict`` and then
    ``update`` with that block's actuals, so each forecast uses only earlier observations.
    Returns the forecasts, the shape of ``actual``.
    """
    act, squeeze = _as_2d("actual", actual)
    b = forecaster.season if block is None else _check_horizon(block)
    out = np.empty_like(act)
    for a in range(0, act.shape[1], b):
        n = min(b, act.shape[1] - a)
        pred = np.asarray(forecaster.predict(n))
        out[:, a:a + n] = pred.reshape(act.shape[0], n)
        forecaster.update(act[:, a:a + n] if not squeeze else act[0, a:a + n])
    return out[0] if squeeze else out


# ---------------------------------------------------------------------------- prices
class PriceForecaster:
    """Clearing-price forecasts from the run's own history (integer micro-units / MWh).

    ``observe(interval, price)`` records each interval's clearing price (``None``: nothing
    traded); ``predict(interval)`` forecasts an interval after the last observed one.
    """

    def __init__(self, method: str, *, interval_s: int, start_s: int, default: float,
                 window: int = 96) -> None:
        if method not in FORECAST_METHODS:
            raise ValueError(f"method: must be one of {', '.join(FORECAST_METHODS)}, got {method!r}")
        self.method = method
        self.interval_s = int(interval_s)
        self.season = _season(self.interval_s)
        self.start_s = int(start_s)
        self.default = float(default)
        self.window = int(window)
        self._prices: list[float] = []  # per interval from 0, NaN where nothing traded
        self._model: Any = None
        self._fitted_upto = -1

    def observe(self, interval: int, price: float | None) -> None:
        if interval != len(self._prices):
            raise ValueError(f"interval: expected {len(self._prices)}, got {interval}")
        self._prices.append(float("nan") if price is None else float(price))

    def _last(self, p: np.ndarray) -> float:
        traded = p[np.isfinite(p)]
        return float(traded[-1]) if traded.size else self.default

    def predict(self, interval: int) -> float:
        """Forecast of the clearing price of ``interval`` (> every observed interval)."""
        p = np.asarray(self._prices, dtype=np.float64)
        if interval < p.size:
            raise ValueError(f"interval: {interval} is already observed (have {p.size})")
        if self.method == "noise":  # the agents' shared estimate (twin.agents.strategies)
            traded = [int(x) for x in p[np.isfinite(p)]]
            return price_forecast(traded, window=self.window, default=self.default)
        day_ago = interval - self.season
        persistence = (float(p[day_ago]) if 0 <= day_ago < p.size and np.isfinite(p[day_ago])
                       else self._last(p))
        if self.method == "persistence" or np.isfinite(p).sum() < self.season:
            return persistence
        if p.size - self._fitted_upto >= self.season or self._model is None:
            self._fit(p)
        x = self._row(p, interval)
        with _one_thread():
            return float(self._model.predict(x[None, :])[0])

    def _row(self, p: np.ndarray, i: int) -> np.ndarray:
        cal = calendar_features(self.start_s + i * self.interval_s, 1, step_s=self.interval_s)[0]
        past = p[:min(i, p.size)]
        last = self._last(past)
        d = i - self.season
        day_ago = p[d] if 0 <= d < p.size and np.isfinite(p[d]) else last
        return np.concatenate([cal[:4], [last, day_ago]])

    def _fit(self, p: np.ndarray) -> None:
        from sklearn.ensemble import HistGradientBoostingRegressor

        idx = np.flatnonzero(np.isfinite(p))
        idx = idx[idx > 0]
        X = np.array([self._row(p[:i], int(i)) for i in idx])
        with _one_thread():
            self._model = HistGradientBoostingRegressor(
                max_iter=60, max_leaf_nodes=7, min_samples_leaf=5, early_stopping=False,
                random_state=0).fit(X, p[idx])
        self._fitted_upto = p.size


# ---------------------------------------------------------------------------- households
#: UNIX time of 2016-01-01T00:00Z: SimBench's profile year (its calendar drives the features)
SIMBENCH_YEAR_T0_S = 1_451_606_400


@dataclass(frozen=True, slots=True, eq=False)
class HouseholdForecasts:
    """Forecast load and PV of every household and interval (Wh, (n, n_intervals))."""

    load_wh: np.ndarray
    pv_wh: np.ndarray


def _window(series: np.ndarray, *, offset_s: int, n: int, interval_s: int) -> np.ndarray:
    from twin.grid.profiles import window_average

    return window_average(series, offset_s=offset_s, duration_s=n * interval_s, interval_s=interval_s)


@lru_cache(maxsize=64)
def _per_unit(code: str, table: str, column: str, method: str, offset_s: int, train_days: int,
              interval_s: int, n_intervals: int) -> tuple[np.ndarray, np.ndarray]:
    """(forecast, actual) per unit of one SimBench profile column over the scenario window.

    Trains on ``train_days`` days before ``offset_s`` (after a week that only feeds the
    lags), then forecasts the window day by day with :func:`rolling_forecast`. Cached per
    process: households sharing a profile type share one trained model.
    """
    from twin.grid.feeders import _simbench_net  # the loaded net, cached by the feeder builder

    series = _simbench_net(code).profiles[table][column].to_numpy(np.float64)[None, :]
    lead = (train_days + _WEEK_DAYS) * (_DAY_S // interval_s)
    lead_s = lead * interval_s
    history = _window(series, offset_s=offset_s - lead_s, n=lead, interval_s=interval_s)[0]
    actual = _window(series, offset_s=offset_s, n=n_intervals, interval_s=interval_s)[0]
    f = make_forecaster(method, step_s=interval_s).fit(history, t0_s=SIMBENCH_YEAR_T0_S + offset_s - lead_s)
    out = rolling_forecast(f, actual=actual)
    out.setflags(write=False)
    actual.setflags(write=False)
    return out, actual


def household_forecasts(*, method: str, code: str, offset_s: int, train_days: int, interval_s: int,
                        load_profiles: Sequence[str], load_wh: np.ndarray,
                        pv_columns: Sequence[str], pv_pu: np.ndarray,
                        pv_scale_wh: np.ndarray) -> HouseholdForecasts:
    """Load and PV forecasts of households on SimBench profiles (Wh, (n, n_intervals)).

    ``load_profiles[i]``: household ``i``'s SimBench load profile (``H0-A`` ...) and
    ``load_wh[i]`` its actual load over the window (Wh per interval; its scale is read off
    against the per-unit profile). PV: ``pv_pu[i]`` its actual per-unit output over the
    window (all zero: no PV), matched exactly against the SimBench ``pv_columns`` to find
    its profile, ``pv_scale_wh[i]`` its Wh per interval at 1 p.u. ``offset_s``: the
    scenario start in seconds from January 1st.
    """
    if method not in ("persistence", "gbm"):
        raise ValueError(f"method: must be 'persistence' or 'gbm', got {method!r}")
    n, T = load_wh.shape
    key = {"method": method, "offset_s": int(offset_s), "train_days": int(train_days),
           "interval_s": int(interval_s), "n_intervals": int(T)}
    load = np.zeros((n, T))
    for i, name in enumerate(load_profiles):
        fc, act = _per_unit(code, "load", f"{name}_pload", **key)
        scale = float(load_wh[i].sum() / act.sum()) if act.sum() > 0 else 0.0
        load[i] = np.clip(fc, 0.0, None) * scale
    pv = np.zeros((n, T))
    has_pv = np.flatnonzero(pv_pu.max(axis=1, initial=0.0) > 0)
    if has_pv.size:
        cols = {c: _per_unit(code, "renewables", c, **key) for c in pv_columns}
        for i in has_pv.tolist():
            col = next((c for c, (_, act) in cols.items()
                        if np.allclose(np.clip(act, 0.0, 1.0), pv_pu[i], rtol=0, atol=1e-9)), None)
            if col is None:
                raise ValueError(f"pv_pu: household {i}'s PV output matches none of the SimBench "
                                 f"PV profiles {list(pv_columns)}")
            pv[i] = np.clip(cols[col][0], 0.0, 1.0) * pv_scale_wh[i]
    return HouseholdForecasts(load_wh=load, pv_wh=pv)


def feeder_household_forecasts(*, scenario: Any, feeder: Any, load_wh: np.ndarray,
                               pv_scale_wh: np.ndarray) -> HouseholdForecasts:
    """:func:`household_forecasts` for the households of a SimBench ``feeder`` (adapter:
    profile names from the net's load table, PV columns from the SimBench net)."""
    from twin.grid.feeders import _simbench_net
    from twin.grid.profiles import simbench_offset_s

    code = scenario.grid.simbench_code
    names = feeder.net.load["profile"].to_numpy(dtype=object)[feeder.household_load_row]
    pv_cols = [str(c) for c in _simbench_net(code).profiles["renewables"].columns if str(c).startswith("PV")]
    return household_forecasts(
        method=scenario.agents.forecast.method, code=code, offset_s=simbench_offset_s(scenario.start),
        train_days=scenario.agents.forecast.train_days, interval_s=scenario.market.interval_s,
        load_profiles=[str(x) for x in names], load_wh=load_wh, pv_columns=pv_cols,
        pv_pu=feeder.household_pv_pu, pv_scale_wh=pv_scale_wh)


# ---------------------------------------------------------------------------- KPIs
def forecast_kpis(rows: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Forecast-error KPIs from ``forecasts`` table rows (see :mod:`twin.results`).

    Per target: ``forecast_mae_<target>_<unit>`` (mean absolute error), and for the
    non-negative targets ``forecast_nmae_<target>`` (sum of absolute errors / sum of
    actuals) and ``forecast_mape_<target>`` (mean of ``|error| / actual`` over the
    intervals with a positive actual). Units: kW for load / PV / the VPP's net load,
    currency/MWh for the price. Targets without rows give no KPIs.
    """
    out: dict[str, float] = {}
    units = {"load": "kw", "pv": "kw", "vpp_net_load": "kw", "price": "per_mwh"}
    for target, unit in units.items():
        sel = [(float(r["forecast"]), float(r["actual"])) for r in rows if r["target"] == target]
        if not sel:
            continue
        f, a = np.array(sel).T
        err = np.abs(f - a)
        out[f"forecast_mae_{target}_{unit}"] = float(err.mean())
        if target == "vpp_net_load":
            continue
        if a.sum() > 0:
            out[f"forecast_nmae_{target}"] = float(err.sum() / a.sum())
        pos = a > 0
        if pos.any():
            out[f"forecast_mape_{target}"] = float((err[pos] / a[pos]).mean())
    return out
