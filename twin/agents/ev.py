"""EVs with a separately metered charger (one market device each); charge-only (no V2G).

Sessions come from the SimPy trip processes of :func:`twin.events.ev_trips` (seeded, per
EV and day, from :class:`~twin.scenario.EVSpec`: arrival and departure hours, dwell in
[1 h, 23 h], sessions never overlap, energy need in [1 kWh, 85 % of the battery]); the need
is also clipped to what the charger can deliver while plugged.
A car arrives with ``90 % - need`` state of charge and wants 90 % at departure. A session
already running at the scenario start keeps the share of its need for the remaining dwell.
An EV is plugged in for every interval fully inside ``[arrival, departure)``.

Smart charging, interval ``k`` (energies in Wh): with ``R`` still needed and ``N`` plugged
intervals left, the EV charges ``min(C, R, max(bought, R / N))`` (``C``: charger limit) —
everything it bought, and at least an even spread of the rest, so the departure need is
met. A curtailed buy trade caps charging at the post-curtailment bought energy instead.
Orders for ``k+1``: buy ``min(C, R)`` at ``wtp + u * (retail - wtp)``, urgency
``u = R / (N * C)`` in [0, 1]: the less slack is left, the closer to retail it bids. That
is the EV's valuation; the EV group's strategy (:mod:`twin.agents.strategies`) sets the bid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import mesa
import numpy as np

from twin.agents._common import Tariffs, energy_cap_wh, limit_prices
from twin.agents.strategies import make_strategy
from twin.events import ev_trips
from twin.grid.feeders import Feeder
from twin.market.types import OrderIntent, Side
from twin.scenario import Scenario

__all__ = ["EVAgent", "EVDispatch", "EVFleet"]

_SOC_TARGET = 0.9


@dataclass(frozen=True, slots=True, eq=False)
class EVDispatch:
    """One interval of every EV (one entry per EV)."""

    plugged: np.ndarray
    charge_wh: np.ndarray  # metered, consumption positive
    remaining_need_wh: np.ndarray  # after this interval


class EVFleet:
    """Vectorized sessions, state and behaviour of all EVs of a feeder."""

    def __init__(self, *, scenario: Scenario, feeder: Feeder, rng: np.random.Generator,
                 first_device_id: int, owner_account: np.ndarray) -> None:
        spec = scenario.agents.evs
        n = feeder.n_evs
        T = scenario.n_intervals
        self.n = n
        self.n_intervals = T
        self.interval_s = interval_s = scenario.market.interval_s
        self.device_id = first_device_id + np.arange(n, dtype=np.int64)
        self.account = np.asarray(owner_account, dtype=np.int64)
        self.bus = feeder.ev_bus
        self.capacity_w = np.full(n, round(spec.charger_kw * 1000), dtype=np.int64)
        self.cap_wh = energy_cap_wh(self.capacity_w, interval_s)
        self.battery_wh = spec.battery_kwh * 1000.0
        # session tables, one entry per (EV, interval)
        self.plugged = np.zeros((n, T), dtype=bool)
        self.departure_k = np.zeros((n, T), dtype=np.int64)
        self.arrives = np.zeros((n, T), dtype=bool)
        self.arrival_energy_wh = np.zeros((n, T))
        sessions, self.events = ev_trips(rng, spec=spec, n_evs=n, start=scenario.start,
                                         duration_s=scenario.duration_s)
        for ses in sessions:
            e = ses.ev
            a_k = int(np.ceil(ses.arrival_s / interval_s))
            b_k = int(np.floor(ses.departure_s / interval_s))
            if b_k <= max(a_k, 0) or a_k >= T:
                continue
            need_wh = min(ses.energy_need_wh, (b_k - a_k) * float(self.cap_wh[e]))
            if a_k < 0:  # running at the start: the share of its need for the rest of the stay
                need_wh *= b_k / (b_k - a_k)
                a_k = 0
            lo, hi = a_k, min(b_k, T)
            self.plugged[e, lo:hi] = True
            self.departure_k[e, lo:hi] = b_k
            self.arrives[e, lo] = True
            self.arrival_energy_wh[e, lo] = _SOC_TARGET * self.battery_wh - need_wh
        self.target_wh = np.full(n, _SOC_TARGET * self.battery_wh)
        self.energy_wh = np.full(n, _SOC_TARGET * self.battery_wh)
        tariffs = Tariffs(
            feed_in_price_per_mwh=scenario.market.feed_in_price_per_mwh,
            retail_price_per_mwh=scenario.market.retail_price_per_mwh,
        )
        self.retail = tariffs.retail
        self.base_price = limit_prices(rng, tariffs, n=n, low=0.3, high=0.7)
        self.strategy = make_strategy(
            spec.strategy or scenario.agents.strategy, n=n, feed_in=tariffs.feed_in,
            retail=tariffs.retail, rng=rng, learning=scenario.agents.learning,
        )

    @property
    def soc(self) -> np.ndarray:
        return self.energy_wh / self.battery_wh

    def _energy_at(self, k: int) -> np.ndarray:
        """Battery energy at the start of interval ``k`` (arrivals applied), state unchanged."""
        return np.where(self.arrives[:, k], self.arrival_energy_wh[:, k], self.energy_wh)

    def _must(self, k: int, need: np.ndarray) -> np.ndarray:
        """Least charging in ``k`` that still meets the departure need (Wh)."""
        left = np.maximum(self.departure_k[:, k] - k, 1)
        return np.clip(need - (left - 1) * self.cap_wh.astype(np.float64), 0.0, None)

    def _charge(self, k: int, energy_wh: np.ndarray, bought_wh: np.ndarray,
                curtailed: np.ndarray, dr: bool = False) -> tuple[np.ndarray, np.ndarray]:
        plugged = self.plugged[:, k]
        need = np.where(plugged, np.clip(self.target_wh - energy_wh, 0.0, None), 0.0)
        left = np.maximum(self.departure_k[:, k] - k, 1)
        cap = self.cap_wh.astype(np.float64)
        free = np.minimum(np.minimum(cap, need), np.maximum(bought_wh, need / left))
        charge = np.where(curtailed, np.minimum(np.minimum(bought_wh, need), cap), free)
        if dr:  # demand-response call: only what the departure need forces
            charge = np.minimum(charge, self._must(k, need))
        return np.where(plugged, charge, 0.0), need

    def plan(self, k: int, *, bought_wh: np.ndarray, curtailed: np.ndarray,
             dr: bool = False) -> np.ndarray:
        """Planned charging (Wh) of interval ``k`` for the given trades (state unchanged)."""
        return self._charge(k, self._energy_at(k), bought_wh, curtailed, dr)[0]

    def dispatch(self, k: int, *, bought_wh: np.ndarray, curtailed: np.ndarray,
                 dr: bool = False) -> EVDispatch:
        """Charge during interval ``k``; advances the state."""
        self.energy_wh = self._energy_at(k)
        charge, need = self._charge(k, self.energy_wh, bought_wh, curtailed, dr)
        self.energy_wh = self.energy_wh + charge
        return EVDispatch(plugged=self.plugged[:, k].copy(), charge_wh=charge,
                          remaining_need_wh=need - charge)

    def orders(self, k: int, *, dr: bool = False) -> list[OrderIntent]:
        """Buy orders for interval ``k`` (needs after the state so far); ``dr``: only the must."""
        if k >= self.n_intervals:
            return []
        plugged = self.plugged[:, k]
        need = np.where(plugged, np.clip(self.target_wh - self._energy_at(k), 0.0, None), 0.0)
        left = np.maximum(self.departure_k[:, k] - k, 1)
        energy = np.minimum(np.floor(need + 0.5).astype(np.int64), self.cap_wh)
        if dr:
            energy = np.minimum(energy, np.ceil(self._must(k, need)).astype(np.int64))
        urgency = np.clip(need / (left * np.maximum(self.cap_wh, 1)), 0.0, 1.0)
        price = np.rint(self.base_price + urgency * (self.retail - self.base_price)).astype(np.int64)
        price = np.clip(price, self.base_price, self.retail)
        idx = np.flatnonzero(energy >= 1)
        bid = self.strategy.prices("buy", interval=k, index=idx, valuation=price[idx])
        ids, e, p = self.device_id[idx].tolist(), energy[idx].tolist(), bid.tolist()
        return [
            OrderIntent(device_id=ids[j], interval=k, side=Side.BUY, energy_wh=e[j], price_per_mwh=p[j])
            for j in range(idx.size)
        ]


class EVAgent(mesa.Agent):
    """Mesa view of one EV (its state lives in :class:`EVFleet`)."""

    def __init__(self, model: Any, *, fleet: EVFleet, index: int) -> None:
        super().__init__(model)
        self.fleet = fleet
        self.index = index

    @property
    def device_id(self) -> int:
        return int(self.fleet.device_id[self.index])

    @property
    def soc(self) -> float:
        return float(self.fleet.soc[self.index])
