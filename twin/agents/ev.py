"""EVs with a separately metered charger (one market device each); optional V2G.

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
is the EV's valuation net of the DSO's network fee of ``k+1`` (``grid.tariff``; 0 by
default); the EV group's strategy (:mod:`twin.agents.strategies`) sets the bid.

V2G (``agents.evs.v2g``, off by default; off, an EV only ever buys and charges). A plugged
EV may instead *sell* in ``k+1`` — one side per interval, never both (the market forbids
it) — when the latest clearing price reached its reservation price
``base / v2g_efficiency + v2g_wear`` (clipped to the tariff band; the group's strategy sets
the ask from it). It offers at most ``D = min(C, eta * (E - soc_min * B),
eta * (E - T + (N - 1) * C))`` Wh (``E`` battery energy, ``B`` capacity, ``T`` departure
target, ``N`` plugged intervals left incl. this one, ``eta = v2g_efficiency``): the charger
limit, the SOC floor ``v2g_soc_min`` and — after the discharge, charging at the charger
limit in the remaining ``N - 1`` intervals must still reach ``T`` — the departure need. So
an EV with any must-charge never sells. Charging stays lossless as without V2G (the metered
charge is stored); the full round-trip loss is taken on discharge: delivering ``d`` Wh
takes ``d / eta`` from the battery. In an interval with a sale the EV discharges
``min(sold, D)`` (``sold`` after curtailment) and does not charge; the DSO may curtail the
sale like any injection (a sale curtailed to nothing leaves the EV idle for the interval,
which the departure need allows: a seller had slack). Metered energy is ``charge - discharge`` (consumption positive).

Price forecast (``agents.forecast.method`` persistence / gbm): the model passes the run's
clearing-price forecast of ``k+1`` (:class:`twin.agents.forecast.PriceForecaster`) as
``estimate``; it replaces the latest clearing price as the V2G trigger (an EV sells into
``k+1`` when the price expected *there* reaches its reservation price). Buy bids stay
urgency-priced (buying less on a dear forecast would not lower charging: the EV charges at
least its even spread, so the unbought part would be an imbalance). Under ``noise`` no
estimate is passed and bidding is exactly as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.agents._common import FleetAgent, Tariffs, energy_cap_wh, limit_prices
from twin.agents.strategies import make_strategy
from twin.events import ev_trips
from twin.grid.feeders import Feeder
from twin.market.types import OrderIntent, Side
from twin.market.units import price_from_per_mwh
from twin.scenario import Scenario

__all__ = ["EVAgent", "EVDispatch", "EVFleet"]

_SOC_TARGET = 0.9


@dataclass(frozen=True, slots=True, eq=False)
class EVDispatch:
    """One interval of every EV (one entry per EV)."""

    plugged: np.ndarray
    charge_wh: np.ndarray  # AC side, >= 0
    remaining_need_wh: np.ndarray  # after this interval
    discharge_wh: np.ndarray  # V2G, AC side, >= 0 (delivered to the grid)

    @property
    def metered_wh(self) -> np.ndarray:
        """Consumption positive: ``charge - discharge``."""
        out: np.ndarray = self.charge_wh - self.discharge_wh
        return out


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
        # V2G (no randomness: V2G off draws exactly what it drew before)
        #: regulation capacity procured for the interval being planned (Wh per interval;
        #: twin/agents/regulation.py): the orders leave it free below the need and the charger
        self.reserved_wh = np.zeros(n)
        self.v2g = bool(spec.v2g)
        self.v2g_eta = float(spec.v2g_efficiency)
        self.v2g_floor_wh = spec.v2g_soc_min * self.battery_wh
        wear = price_from_per_mwh(spec.v2g_wear_per_mwh)
        self.sell_price = np.clip(np.rint(self.base_price / self.v2g_eta + wear).astype(np.int64),
                                  tariffs.feed_in, tariffs.retail)

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

    def sellable_wh(self, k: int, energy_wh: np.ndarray | None = None) -> np.ndarray:
        """Most V2G discharge (AC Wh) in ``k`` that keeps the departure need and the SOC floor."""
        if not self.v2g:
            return np.zeros(self.n)
        e = self._energy_at(k) if energy_wh is None else energy_wh
        cap = self.cap_wh.astype(np.float64)
        left = np.maximum(self.departure_k[:, k] - k, 1)
        slack = e - self.target_wh + (left - 1) * cap  # stored Wh it may give up
        d = np.minimum(cap, self.v2g_eta * np.minimum(e - self.v2g_floor_wh, slack))
        return np.where(self.plugged[:, k], np.clip(d, 0.0, None), 0.0)

    def _discharge(self, k: int, energy_wh: np.ndarray, sold_wh: np.ndarray | None,
                   sell_curtailed: np.ndarray | None) -> tuple[np.ndarray, np.ndarray] | None:
        """V2G discharge (AC Wh) and which EVs sell (a sale, even one curtailed to 0)."""
        if sold_wh is None or not self.v2g:
            return None
        selling = sold_wh > 0
        if sell_curtailed is not None:
            selling = selling | sell_curtailed
        if not selling.any():
            return None
        return np.minimum(np.clip(sold_wh, 0.0, None), self.sellable_wh(k, energy_wh)), selling

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

    def regulation_band_wh(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(least, most, must)`` charge of ``k`` (Wh) without trades: the even spread of the
        need it charges anyway, the charger or the need, and what the departure forces."""
        plugged = self.plugged[:, k]
        need = np.where(plugged, np.clip(self.target_wh - self._energy_at(k), 0.0, None), 0.0)
        left = np.maximum(self.departure_k[:, k] - k, 1)
        most = np.minimum(self.cap_wh.astype(np.float64), need)
        least = np.minimum(most, need / left)
        return least, most, self._must(k, need)

    def plan(self, k: int, *, bought_wh: np.ndarray, curtailed: np.ndarray,
             dr: bool = False, sold_wh: np.ndarray | None = None,
             sell_curtailed: np.ndarray | None = None) -> np.ndarray:
        """Planned metered energy (Wh, charge - V2G discharge) of interval ``k`` for the
        given trades (state unchanged)."""
        energy = self._energy_at(k)
        charge = self._charge(k, energy, bought_wh, curtailed, dr)[0]
        v2g = self._discharge(k, energy, sold_wh, sell_curtailed)
        if v2g is None:
            return charge
        out: np.ndarray = np.where(v2g[1], -v2g[0], charge)
        return out

    def dispatch(self, k: int, *, bought_wh: np.ndarray, curtailed: np.ndarray,
                 dr: bool = False, sold_wh: np.ndarray | None = None,
                 sell_curtailed: np.ndarray | None = None) -> EVDispatch:
        """Charge (or, V2G, discharge) during interval ``k``; advances the state.

        ``sold_wh``: post-curtailment V2G sales; ``sell_curtailed``: EVs whose sale the DSO
        curtailed (they sell what is left, possibly nothing, and do not charge).
        """
        self.energy_wh = self._energy_at(k)
        charge, need = self._charge(k, self.energy_wh, bought_wh, curtailed, dr)
        v2g = self._discharge(k, self.energy_wh, sold_wh, sell_curtailed)
        if v2g is None:
            discharge = np.zeros(self.n)
        else:  # one side per interval: a selling EV does not charge
            discharge = np.where(v2g[1], v2g[0], 0.0)
            charge = np.where(v2g[1], 0.0, charge)
        self.energy_wh = self.energy_wh + charge - discharge / self.v2g_eta
        return EVDispatch(plugged=self.plugged[:, k].copy(), charge_wh=charge,
                          remaining_need_wh=need - charge + discharge / self.v2g_eta,
                          discharge_wh=discharge)

    def orders(self, k: int, *, dr: bool = False, fee: int = 0,
               last_price: int | None = None, estimate: float | None = None) -> list[OrderIntent]:
        """Orders for interval ``k`` (needs after the state so far); ``dr``: buy only the
        must. ``fee``: the DSO's network fee of ``k`` (bids net of it); ``last_price``: the
        latest clearing price (V2G sells when it reached the EV's reservation price);
        ``estimate``: a clearing-price forecast of ``k`` (``agents.forecast``) replacing
        ``last_price`` as the V2G trigger."""
        if k >= self.n_intervals:
            return []
        plugged = self.plugged[:, k]
        need = np.where(plugged, np.clip(self.target_wh - self._energy_at(k), 0.0, None), 0.0)
        left = np.maximum(self.departure_k[:, k] - k, 1)
        energy = np.minimum(np.floor(need + 0.5).astype(np.int64), self.cap_wh)
        if self.reserved_wh.any():  # regulation headroom stays out of the market
            room = np.minimum(self.cap_wh.astype(np.float64), need) - self.reserved_wh
            energy = np.where(self.reserved_wh > 0, np.minimum(energy, np.floor(np.clip(room, 0.0, None))),
                              energy).astype(np.int64)
        if dr:
            energy = np.minimum(energy, np.ceil(self._must(k, need)).astype(np.int64))
        urgency = np.clip(need / (left * np.maximum(self.cap_wh, 1)), 0.0, 1.0)
        price = np.rint(self.base_price + urgency * (self.retail - self.base_price)).astype(np.int64)
        price = np.clip(price, self.base_price, self.retail)
        if fee:
            price = price - fee
        trigger = last_price if estimate is None else round(estimate)
        selling = np.zeros(self.n, dtype=bool)
        sell_wh = np.zeros(self.n, dtype=np.int64)
        if self.v2g and trigger is not None and trigger > 0:
            sell_wh = np.floor(self.sellable_wh(k)).astype(np.int64)
            selling = (sell_wh >= 1) & (trigger >= self.sell_price)
        idx = np.flatnonzero((energy >= 1) & ~selling)
        bid = self.strategy.prices("buy", interval=k, index=idx, valuation=price[idx])
        ids, e, p = self.device_id[idx].tolist(), energy[idx].tolist(), bid.tolist()
        out = [
            OrderIntent(device_id=ids[j], interval=k, side=Side.BUY, energy_wh=e[j], price_per_mwh=p[j])
            for j in range(idx.size)
        ]
        if selling.any():
            sdx = np.flatnonzero(selling)
            ask = self.strategy.prices("sell", interval=k, index=sdx, valuation=self.sell_price[sdx])
            out += [OrderIntent(device_id=int(self.device_id[i]), interval=k, side=Side.SELL,
                                energy_wh=int(sell_wh[i]), price_per_mwh=int(a))
                    for i, a in zip(sdx.tolist(), ask.tolist(), strict=True)]
        return out


class EVAgent(FleetAgent):
    """Mesa view of one EV (its state lives in :class:`EVFleet`)."""

    fleet: EVFleet
