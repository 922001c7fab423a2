"""Community batteries (one market device each): buy cheap, sell dear.

Price estimate: the mean of the last ``window`` non-zero clearing prices (the midpoint of
the feed-in..retail spread while there are none). Each interval the battery offers to buy
at ``estimate * (1 - margin)`` what it can still store and to sell at
``estimate * (1 + margin)`` what it can still deliver (both capped by the power limit and
clipped to the tariff band; the buy limit net of the DSO's network fee, ``grid.tariff``).
A uniform price can never clear both orders of one battery (the buy limit is below the
sell limit).

Demand-response reservation (``agents.community_storage.dr_reserve_soc``): outside a DR
call the battery offers to sell only the energy above ``max(soc_min, dr_reserve_soc)``, so
it does not sell the charge a TSO call would need in the market beforehand (the evening
peak follows the afternoon's high prices); in an interval the TSO called DR for it offers
everything down to ``soc_min``. Resting at the reserve its meter reads ~0, so the DR
service's baseline is ~0 and the DR export is the metered reduction it is paid for. The
reserve is static (held all day); 0 (default) = no reservation.

Regulation (``market.services.ancillary``): capacity the TSO procured for an interval
(``reserved_w``) is kept free of the energy market at both ends of the power limit and the
SOC band (:mod:`twin.agents.regulation`).

Physics: the battery follows its (post-curtailment) trades — net ``bought - sold`` is
charged (positive) or discharged — clipped to the power limit and the SOC band. Round-trip
efficiency is split evenly, ``sqrt(eta)`` each way; stored energy changes by
``charge * sqrt(eta) - discharge / sqrt(eta)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from twin.agents._common import FleetAgent, Tariffs, energy_cap_wh
from twin.agents.strategies import price_forecast
from twin.grid.feeders import Feeder
from twin.market.types import OrderIntent, Side
from twin.scenario import Scenario

__all__ = ["CommunityStorage", "StorageAgent", "StorageDispatch"]


@dataclass(frozen=True, slots=True, eq=False)
class StorageDispatch:
    """One interval of every community battery (one entry per battery)."""

    charge_wh: np.ndarray
    discharge_wh: np.ndarray
    metered_wh: np.ndarray  # charge - discharge (consumption positive)


class CommunityStorage:
    """Vectorized state and behaviour of all community batteries."""

    def __init__(self, *, scenario: Scenario, feeder: Feeder, first_device_id: int,
                 first_account: int, margin: float = 0.1, window: int = 96) -> None:
        spec = scenario.agents.community_storage
        n = feeder.n_storage
        self.n = n
        self.interval_s = scenario.market.interval_s
        self.device_id = first_device_id + np.arange(n, dtype=np.int64)
        self.account = first_account + np.arange(n, dtype=np.int64)
        self.bus = feeder.storage_bus
        self.capacity_w = np.full(n, round(spec.power_kw * 1000), dtype=np.int64)
        self.cap_wh = energy_cap_wh(self.capacity_w, self.interval_s)
        self.capacity_wh = spec.capacity_kwh * 1000.0
        self.soc_min, self.soc_max = spec.soc_min, spec.soc_max
        self.eta = float(np.sqrt(spec.efficiency))
        self.energy_wh = np.full(n, self.capacity_wh * float(np.clip(spec.soc_init, spec.soc_min, spec.soc_max)))
        #: lowest SOC it sells down to outside DR calls (DR reservation)
        self.dr_reserve = float(np.clip(spec.dr_reserve_soc, spec.soc_min, spec.soc_max))
        self.tariffs = Tariffs(
            feed_in_price_per_mwh=scenario.market.feed_in_price_per_mwh,
            retail_price_per_mwh=scenario.market.retail_price_per_mwh,
        )
        self.margin = margin
        self.window = window
        #: regulation capacity procured for the interval being planned (W; twin/agents/regulation.py)
        self.reserved_w = np.zeros(n, dtype=np.int64)
        #: upward reserve capacity procured for it (W): kept free on the discharge side
        self.reserved_up_w = np.zeros(n, dtype=np.int64)
        #: can hold voltage and frequency in an island (read by the islanding studies)
        self.grid_forming = np.full(n, spec.grid_forming, dtype=bool)

    @property
    def soc(self) -> np.ndarray:
        return self.energy_wh / self.capacity_wh

    def _room_avail(self) -> tuple[np.ndarray, np.ndarray]:
        """Most it may charge / discharge this interval, metered (AC) side Wh; regulation
        capacity reserved for the interval (``reserved_w``) stays free at both ends, upward
        reserve (``reserved_up_w``) on the discharge side."""
        h = self.interval_s / 3600.0
        res = self.reserved_w * h
        up = self.reserved_up_w * h
        cap = self.cap_wh.astype(np.float64) - res
        room = np.clip(self.soc_max * self.capacity_wh - self.energy_wh, 0.0, None) / self.eta - res
        avail = np.clip(self.energy_wh - self.soc_min * self.capacity_wh, 0.0, None) * self.eta - res - up
        return np.clip(np.minimum(cap, room), 0.0, None), np.clip(np.minimum(cap - up, avail), 0.0, None)

    def dr_offer_wh(self) -> np.ndarray:
        """Reduction (Wh, whole) each battery can offer a DR call of the next interval: what
        it can still deliver down to ``soc_min`` at its power limit (an empty battery: 0)."""
        return np.floor(self._room_avail()[1]).astype(np.int64)

    def price_estimate(self, price_history: Sequence[int]) -> float:
        return price_forecast(price_history, window=self.window,
                              default=0.5 * (self.tariffs.feed_in + self.tariffs.retail))

    def plan(self, *, bought_wh: np.ndarray, sold_wh: np.ndarray) -> StorageDispatch:
        room, avail = self._room_avail()
        net = bought_wh - sold_wh
        charge = np.clip(net, 0.0, room)
        discharge = np.clip(-net, 0.0, avail)
        return StorageDispatch(charge_wh=charge, discharge_wh=discharge, metered_wh=charge - discharge)

    def dispatch(self, *, bought_wh: np.ndarray, sold_wh: np.ndarray) -> StorageDispatch:
        out = self.plan(bought_wh=bought_wh, sold_wh=sold_wh)
        self.energy_wh = np.clip(
            self.energy_wh + out.charge_wh * self.eta - out.discharge_wh / self.eta,
            self.soc_min * self.capacity_wh,
            self.soc_max * self.capacity_wh,
        )
        return out

    def orders(self, k: int, *, price_history: Sequence[int], dr: bool = False,
               fee: int = 0, estimate: float | None = None) -> list[OrderIntent]:
        """Orders for ``k``; during a demand-response call (``dr``) the batteries only sell.
        Bids are net of the DSO's network fee ``fee`` of ``k``. ``estimate``: a price
        forecast of ``k`` (``agents.forecast``) replacing the running mean."""
        est = self.price_estimate(price_history) if estimate is None else float(estimate)
        t = self.tariffs
        buy_price = int(np.clip(round(est * (1 - self.margin)) - fee, t.feed_in, t.retail))
        sell_price = int(np.clip(round(est * (1 + self.margin)), t.feed_in, t.retail))
        if buy_price >= sell_price:  # estimate pinned at a tariff: keep the spread
            buy_price, sell_price = t.feed_in, t.retail
        room, avail = self._room_avail()
        if not dr and self.dr_reserve > self.soc_min:  # keep the DR reserve
            above = np.clip(self.energy_wh - self.dr_reserve * self.capacity_wh, 0.0, None) * self.eta
            above = np.clip(above - (self.reserved_w + self.reserved_up_w) * (self.interval_s / 3600.0),
                            0.0, None)
            avail = np.minimum(avail, above)
        # One side per interval (market rule OppositeSide): buy while the latest clearing
        # price is at or below the running estimate (cheap, e.g. midday PV surplus), sell
        # when above it; without a price yet, fill up below half charge, else offer.
        last = price_history[-1] if price_history else None
        out: list[OrderIntent] = []
        for i in range(self.n):
            buy_wh, sell_wh = int(np.floor(room[i])), int(np.floor(avail[i]))
            buying = (last <= est) if last is not None else buy_wh >= sell_wh
            buying = buying and not dr
            if buying and buy_wh >= 1:
                out.append(OrderIntent(device_id=int(self.device_id[i]), interval=k, side=Side.BUY,
                                       energy_wh=buy_wh, price_per_mwh=buy_price))
            elif not buying and sell_wh >= 1:
                out.append(OrderIntent(device_id=int(self.device_id[i]), interval=k, side=Side.SELL,
                                       energy_wh=sell_wh, price_per_mwh=sell_price))
        return out


class StorageAgent(FleetAgent):
    """Mesa view of one community battery (its state lives in :class:`CommunityStorage`)."""

    fleet: CommunityStorage
