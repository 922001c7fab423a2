"""Household load and PV profiles: SimBench slicing and a seeded synthetic generator.

Every function returns plain numpy arrays with one row per element and one column per
market interval, as interval *averages* (so ``p_mw * interval_s / 3600 * 1e6`` is the
interval's energy in Wh).

SimBench ships one year (2016, a leap year) of 15-minute profiles, per unit of each
element's rated ``p_mw`` / ``q_mvar``. :func:`window_average` integrates such a periodic
series exactly over any scenario window (start, duration, interval), wrapping around the
year; a start in another year is mapped onto the same offset from January 1st.

The synthetic generator draws from the generator passed in (never from module state).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

__all__ = [
    "SIMBENCH_STEP_S",
    "aggregate_load_shape",
    "shared_window_average",
    "simbench_offset_s",
    "synthetic_household_load_p_mw",
    "synthetic_pv_pu",
    "window_average",
]

SIMBENCH_STEP_S = 900
_POWER_FACTOR = 0.97
_TAN_PHI = float(np.tan(np.arccos(_POWER_FACTOR)))


def simbench_offset_s(start: datetime) -> int:
    """Seconds from January 1st 00:00 (UTC) of ``start``'s year: the SimBench row offset."""
    start_utc = start.astimezone(UTC)
    year_start = datetime(start_utc.year, 1, 1, tzinfo=UTC)
    return int((start_utc - year_start).total_seconds())


def window_average(
    values: np.ndarray,
    *,
    offset_s: int,
    duration_s: int,
    interval_s: int,
    step_s: int = SIMBENCH_STEP_S,
) -> np.ndarray:
    """Average a periodic step series over consecutive intervals.

    ``values`` has shape (n_rows, n_steps): step ``j`` holds the mean over
    ``[j*step_s, (j+1)*step_s)``; the series repeats after ``n_steps * step_s``. Returns
    (n_rows, duration_s // interval_s), the exact mean over each
    ``[offset_s + k*interval_s, offset_s + (k+1)*interval_s)``.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"values must be 2-D (rows, steps), got shape {values.shape}")
    n_steps = values.shape[1]
    period_s = n_steps * step_s
    n_intervals = duration_s // interval_s
    edges_s = offset_s + interval_s * np.arange(n_intervals + 1, dtype=np.int64)
    cum = np.zeros((values.shape[0], n_steps + 1))
    np.cumsum(values, axis=1, out=cum[:, 1:])
    cum *= step_s
    n_periods, rem_s = np.divmod(edges_s, period_s)
    j, within_s = np.divmod(rem_s, step_s)
    energy = n_periods * cum[:, -1:] + cum[:, j] + values[:, j] * within_s
    out: np.ndarray = np.diff(energy, axis=1) / interval_s
    return out


def shared_window_average(
    table: Any,
    columns: Sequence[str | None],
    *,
    offset_s: int,
    duration_s: int,
    interval_s: int,
    step_s: int = SIMBENCH_STEP_S,
    missing: float = 1.0,
) -> np.ndarray:
    """:func:`window_average` of ``table[columns[i]]`` for each row ``i``, computed once per
    distinct column and then indexed: memory follows the distinct profiles (a few dozen
    SimBench columns), not the rows (10,000 households would otherwise each copy a year).

    ``table``: a mapping of column name -> 1-D step series (e.g. a SimBench profile
    DataFrame); a ``None`` column stands for a constant ``missing`` series. Same values as
    ``window_average(np.stack([table[c] for c in columns]), ...)``, row by row."""
    pos: dict[str | None, int] = {}
    index = np.array([pos.setdefault(c, len(pos)) for c in columns], dtype=np.int64)
    names = list(pos)
    n_intervals = duration_s // interval_s
    if not names:
        return np.zeros((0, n_intervals))
    n_steps = next((len(table[c]) for c in names if c is not None), 1)
    uniq = np.stack([np.asarray(table[c], dtype=np.float64) if c is not None
                     else np.full(n_steps, missing) for c in names])
    avg = window_average(uniq, offset_s=offset_s, duration_s=duration_s, interval_s=interval_s,
                         step_s=step_s)
    out: np.ndarray = avg[index]
    return out


def _interval_hours(start: datetime, duration_s: int, interval_s: int) -> tuple[np.ndarray, np.ndarray]:
    """Hour of day (UTC, interval midpoints) and day of year for each interval."""
    t0 = start.astimezone(UTC)
    mid_s = simbench_offset_s(t0) + interval_s * (np.arange(duration_s // interval_s) + 0.5)
    hour = (mid_s / 3600.0) % 24.0
    doy = np.floor(mid_s / 86_400.0) % 365 + 1
    return hour, doy


def aggregate_load_shape(*, start: datetime, duration_s: int, interval_s: int) -> np.ndarray:
    """Smooth residential daily shape with a seasonal factor, peak 1 (no randomness).

    Used for aggregated background loads of feeders without profiles (CIGRE LV, case33bw)
    and as the mean shape of :func:`synthetic_household_load_p_mw`.
    """
    hour, doy = _interval_hours(start, duration_s, interval_s)
    shape = _daily_shape(hour) * (1.0 + 0.2 * np.cos(2 * np.pi * (doy - 15) / 365.0))
    peak = _daily_shape(np.linspace(0, 24, 97)).max() * 1.2
    out: np.ndarray = shape / peak
    return out


def _daily_shape(hour: np.ndarray) -> np.ndarray:
    # hour in local solar time (UTC+1 is close enough for Central Europe)
    h = (hour + 1.0) % 24.0
    out: np.ndarray = (
        0.35
        + 0.45 * np.exp(-(((h - 7.5) / 1.3) ** 2))
        + 0.30 * np.exp(-(((h - 12.5) / 1.5) ** 2))
        + 0.95 * np.exp(-(((h - 19.5) / 2.2) ** 2))
    )
    return out


def synthetic_household_load_p_mw(
    rng: np.random.Generator,
    *,
    n: int,
    start: datetime,
    duration_s: int,
    interval_s: int,
    annual_kwh: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded household load profiles: (p_mw, q_mvar), each (n, n_intervals).

    A residential double-peak daily shape with a seasonal factor, a per-household time
    shift (std 45 min) and size factor (lognormal, std 25 %), and per-interval lognormal
    noise (std 35 %), scaled so the long-run mean power is ``annual_kwh / 8760``.
    Reactive power at cos phi 0.97.
    """
    hour, doy = _interval_hours(start, duration_s, interval_s)
    n_int = hour.size
    shift_h = rng.normal(0.0, 0.75, size=(n, 1))
    size = rng.lognormal(-0.5 * 0.25**2, 0.25, size=(n, 1))
    noise = rng.lognormal(-0.5 * 0.35**2, 0.35, size=(n, n_int))
    mean_shape = float(_daily_shape(np.linspace(0, 24, 96, endpoint=False)).mean())
    shape = _daily_shape(hour[None, :] + shift_h) / mean_shape
    seasonal = 1.0 + 0.2 * np.cos(2 * np.pi * (doy - 15) / 365.0)
    mean_mw = annual_kwh / 8760.0 / 1000.0
    p_mw = mean_mw * size * shape * seasonal[None, :] * noise
    return p_mw, p_mw * _TAN_PHI


def synthetic_pv_pu(
    rng: np.random.Generator,
    *,
    n: int,
    start: datetime,
    duration_s: int,
    interval_s: int,
    latitude_deg: float = 51.0,
) -> np.ndarray:
    """Seeded PV output per unit of kWp, (n, n_intervals), always within [0, 1].

    Clear-sky output from the sun's elevation (declination and hour angle), times one
    daily clearness index per day (shared by the feeder: same sky), times intra-day cloud
    noise, times a per-system orientation factor in [0.85, 1.0].
    """
    hour, doy = _interval_hours(start, duration_s, interval_s)
    lat = np.radians(latitude_deg)
    decl = np.radians(23.45) * np.sin(2 * np.pi * (284 + doy) / 365.0)
    omega = np.radians(15.0 * (hour + 10.0 / 15.0 - 12.0))  # ~10 deg E
    sin_elev = np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(omega)
    clear = 0.85 * np.clip(sin_elev, 0.0, None) ** 1.15
    day = (np.arange(hour.size) * interval_s + simbench_offset_s(start)) // 86_400
    day -= day.min()
    clearness = rng.beta(5.0, 2.0, size=int(day.max()) + 1)[day]
    cloud = np.clip(rng.normal(1.0, 0.12, size=hour.size), 0.3, 1.15)
    orientation = rng.uniform(0.85, 1.0, size=(n, 1))
    out: np.ndarray = np.clip(orientation * (clear * clearness * cloud)[None, :], 0.0, 1.0)
    return out
