"""Small helpers shared by the agent kinds (private)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import mesa
import numpy as np

from twin.market.types import Trade
from twin.market.units import price_from_per_mwh

__all__ = [
    "FleetAgent",
    "Tariffs",
    "TradeArrays",
    "energy_cap_wh",
    "limit_prices",
    "net_trades",
    "self_consumption",
    "wh_to_mw",
]


class Tariffs:
    """Feed-in and retail tariffs in integer micro-units per MWh."""

    __slots__ = ("feed_in", "retail")

    def __init__(self, *, feed_in_price_per_mwh: float, retail_price_per_mwh: float) -> None:
        self.feed_in = price_from_per_mwh(feed_in_price_per_mwh)
        self.retail = price_from_per_mwh(retail_price_per_mwh)

    def between(self, fraction: np.ndarray) -> np.ndarray:
        """Integer prices at ``fraction`` of the way from feed-in to retail (clipped)."""
        f = np.clip(np.asarray(fraction, dtype=np.float64), 0.0, 1.0)
        out = np.rint(self.feed_in + f * (self.retail - self.feed_in)).astype(np.int64)
        return np.clip(out, self.feed_in, self.retail)


def limit_prices(
    rng: np.random.Generator, tariffs: Tariffs, *, n: int, low: float, high: float
) -> np.ndarray:
    """One integer limit price per agent, uniform in [low, high] of the tariff spread."""
    return tariffs.between(rng.uniform(low, high, size=n))


def energy_cap_wh(capacity_w: np.ndarray | int, interval_s: int) -> np.ndarray:
    """Registered per-interval energy cap: ``capacity_w * interval_s // 3600`` (integers)."""
    return np.asarray(capacity_w, dtype=np.int64) * interval_s // 3600


def wh_to_mw(energy_wh: np.ndarray, interval_s: int) -> np.ndarray:
    """Average power (MW) of an interval's energy (Wh)."""
    out: np.ndarray = np.asarray(energy_wh, dtype=np.float64) * (3600.0 / interval_s) / 1e6
    return out


class TradeArrays:
    """The trades of one interval as arrays (one pass over the records, then numpy)."""

    __slots__ = ("buyer", "cleared", "energy", "seller")

    def __init__(self, trades: Iterable[Trade]) -> None:
        ts = list(trades)
        n = len(ts)
        self.buyer = np.fromiter((t.buyer_device for t in ts), np.int64, n)
        self.seller = np.fromiter((t.seller_device for t in ts), np.int64, n)
        self.energy = np.fromiter((t.energy_wh for t in ts), np.int64, n)
        self.cleared = np.fromiter((t.cleared_wh for t in ts), np.int64, n)


def net_trades(
    trades: Iterable[Trade] | TradeArrays, device_index: dict[int, int], n: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per device of one kind: bought Wh, sold Wh (after curtailment), and curtailed flags.

    Returns (bought_wh, sold_wh, buy_curtailed, sell_curtailed); ``device_index`` maps a
    device id to its position in the kind's arrays (other devices are ignored).
    """
    ta = trades if isinstance(trades, TradeArrays) else TradeArrays(trades)
    bought, sold = np.zeros(n), np.zeros(n)
    buy_cut, sell_cut = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    if ta.energy.size == 0 or not device_index:
        return bought, sold, buy_cut, sell_cut
    ids = np.fromiter(device_index.keys(), np.int64, len(device_index))
    pos = np.fromiter(device_index.values(), np.int64, len(device_index))
    top = int(max(ids.max(), ta.buyer.max(), ta.seller.max())) + 1
    lut = np.full(top, -1, dtype=np.int64)
    lut[ids] = pos
    cut = ta.energy < ta.cleared
    for dev, total, flags in ((ta.buyer, bought, buy_cut), (ta.seller, sold, sell_cut)):
        i = lut[dev]
        mine = i >= 0
        total += np.bincount(i[mine], weights=ta.energy[mine], minlength=n)[:n]
        flags[i[mine & cut]] = True
    return bought, sold, buy_cut, sell_cut


def self_consumption(
    net_wh: np.ndarray,
    energy_wh: np.ndarray,
    *,
    capacity_wh: np.ndarray,
    max_wh: np.ndarray,
    soc_min: float,
    soc_max: float,
    eta_charge: float,
    eta_discharge: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Battery behind a meter raising self-consumption (AC side energies, Wh).

    ``net_wh`` is consumption minus generation behind the meter: a surplus (negative) is
    charged, a deficit discharged, within the power limit ``max_wh`` per interval and the
    SOC band. Stored energy changes by ``charge * eta_charge - discharge / eta_discharge``.
    """
    room = np.clip(soc_max * capacity_wh - energy_wh, 0.0, None)
    avail = np.clip(energy_wh - soc_min * capacity_wh, 0.0, None)
    charge = np.minimum(np.minimum(np.clip(-net_wh, 0.0, None), max_wh), room / eta_charge)
    discharge = np.minimum(np.minimum(np.clip(net_wh, 0.0, None), max_wh), avail * eta_discharge)
    return charge, discharge


class FleetAgent(mesa.Agent):
    """Mesa view of one member of a vectorized fleet; the state lives in the fleet's arrays.

    Per-interval state is kept in numpy arrays on the fleet (see the agent modules); the
    Mesa agent is a thin handle that reads its row.
    """

    def __init__(self, model: Any, *, fleet: Any, index: int) -> None:
        super().__init__(model)
        self.fleet = fleet
        self.index = index

    @property
    def device_id(self) -> int:
        return int(self.fleet.device_id[self.index])

    @property
    def soc(self) -> float:
        return float(self.fleet.soc[self.index])
