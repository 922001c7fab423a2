"""Discrete events from SimPy processes: EV trips (arrivals, departures, energy needs).

One :class:`simpy.Environment` per call, its clock in seconds since the scenario start
(it begins before the day preceding the start, so sessions already running at the start exist). SimPy orders
simultaneous events by (time, priority, insertion), so the event list is deterministic;
all random numbers are drawn up front from the generator passed in (the model's), one
vectorized block per quantity, so they do not depend on the scheduling order either.

EV trips (:func:`ev_trips`): every car is a process that, day after day, draws its plan —
arrival hour ``N(arrival_hour_mean, arrival_hour_std)``, departure hour
``N(departure_hour_mean, departure_hour_std)`` (the next day when earlier than arrival), and
energy need ``N(energy_need_kwh_mean, energy_need_kwh_std)`` clipped to [1 kWh, 85 % of the
battery] — then is away (at least an hour after its last departure) until it arrives, stays
plugged in for the dwell (clipped to [1 h, 23 h]) and leaves. Each arrival and departure is
an :class:`Event`; each stay a :class:`Session`.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import simpy

__all__ = ["Event", "Session", "ev_trips"]

_DAY_S = 86_400.0
_LEAD_DAYS = 1


@dataclass(frozen=True, slots=True)
class Event:
    """A discrete event at ``time_s`` (seconds since the scenario start)."""

    time_s: float
    kind: str  # "ev_arrival" | "ev_departure" | ...
    agent: str
    value: float = 0.0  # e.g. the energy need in Wh at an arrival
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Session:
    """One EV stay at its charger: plugged in over ``[arrival_s, departure_s)``."""

    ev: int
    arrival_s: float
    departure_s: float
    energy_need_wh: float


def ev_trips(rng: np.random.Generator, *, spec: Any, n_evs: int, start: datetime,
             duration_s: int) -> tuple[list[Session], list[Event]]:
    """Sessions and events of ``n_evs`` cars over ``duration_s`` (``spec``: an ``EVSpec``).

    Sessions overlapping the window are returned (also those that began before it), in
    (ev, arrival) order; events inside ``[0, duration_s)`` in time order. Plans cover the
    day before the start through the last day; the draws are taken per car and day in the
    order (arrival, departure, need).
    """
    n_days = int(-(-duration_s // _DAY_S)) + 2  # day -1 .. last day
    z = rng.standard_normal(size=(n_evs, n_days, 3))
    arr_h = spec.arrival_hour_mean + spec.arrival_hour_std * z[:, :, 0]
    dep_h = spec.departure_hour_mean + spec.departure_hour_std * z[:, :, 1]
    need_kwh = spec.energy_need_kwh_mean + spec.energy_need_kwh_std * z[:, :, 2]
    need_wh = np.clip(need_kwh, 1.0, 0.85 * spec.battery_kwh) * 1000.0
    start_h = (start.hour * 3600 + start.minute * 60 + start.second) / 3600.0
    env = simpy.Environment(initial_time=-(_LEAD_DAYS + 1) * _DAY_S)
    sessions: list[Session] = []
    events: list[Event] = []

    def car(e: int) -> Generator[simpy.Event, Any, None]:
        last_departure = -np.inf
        for j in range(n_days):
            d = j - 1
            dwell_h = float(np.clip((dep_h[e, j] - arr_h[e, j]) % 24.0, 1.0, 23.0))
            arrival = max((d * 24.0 + arr_h[e, j] - start_h) * 3600.0, last_departure + 3600.0)
            departure = arrival + dwell_h * 3600.0
            yield env.timeout(max(arrival - env.now, 0.0))  # away on a trip
            events.append(Event(time_s=arrival, kind="ev_arrival", agent=f"ev_{e}",
                                value=float(need_wh[e, j])))
            yield env.timeout(max(departure - env.now, 0.0))  # plugged in
            events.append(Event(time_s=departure, kind="ev_departure", agent=f"ev_{e}"))
            last_departure = departure
            sessions.append(Session(ev=e, arrival_s=arrival, departure_s=departure,
                                    energy_need_wh=float(need_wh[e, j])))

    for e in range(n_evs):
        env.process(car(e))
    env.run()
    sessions.sort(key=lambda s: (s.ev, s.arrival_s))
    events.sort(key=lambda ev: ev.time_s)  # SimPy's order; exact times kept unrounded
    inside = [ev for ev in events if 0 <= ev.time_s < duration_s]
    return [s for s in sessions if s.departure_s > 0 and s.arrival_s < duration_s], inside
