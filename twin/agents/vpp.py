"""VPP aggregator: bundles member households (PV, home batteries) and bids as one participant.

Members are ``vpp.members`` PV households (a seeded choice; all PV households when there
are fewer). The member meters stay the registered devices (the market only trades metered
devices) but their owner is the VPP's account, so the VPP is the one participant that
places their orders and receives their money: each interval it bids every member's
forecast position with *one* price per side, from its own strategy (one agent of
:mod:`twin.agents.strategies`, valuation = the mean of its members' valuations).

Forecasts. A member's forecast position is its household plan for ``k`` (load and PV
forecasts with the battery's planned action), so the VPP sizes its orders with the
scenario's forecaster (``agents.forecast.method``: ``noise`` / ``persistence`` / ``gbm``,
:mod:`twin.agents.forecast`); the model records the portfolio's forecast net load against
the actual one (``forecasts`` target ``vpp_net_load``), the error the VPP settles as a
balance group. :meth:`VPPAggregator.portfolio_forecast_wh` is that forecast.

Revenue sharing by Shapley value. Per member ``i`` and interval ``k`` the VPP records the
trade revenue ``r_ik = price_k * (sold_ik - bought_ik)`` and the deviation
``d_ik = metered_ik - (bought_ik - sold_ik)`` (Wh). As a balance group the VPP settles the
*netted* deviation of its members: coalition ``S`` is worth

``v(S) = sum_k [ sum_{i in S} r_ik - imbalance(sum_{i in S} d_ik) ]``

with ``imbalance(x) = retail * x`` for a shortfall and ``feed_in * x`` for a surplus (money in
currency units). Because ``retail > feed_in`` netting is worth something, ``v`` is
superadditive and the Shapley value rewards members whose deviations offset others'.
:meth:`VPPAggregator.split` computes it exactly up to ``exact_max`` members and by
permutation sampling beyond (with the Hoeffding half-width of :mod:`twin.market.game`), and
pays ``v(N)`` out in integer micro-units that sum exactly. The reference ledger settles
each meter on its own, so ``v(N) - sum_i v({i})`` (the netting benefit) is what the VPP
would realise as a balance-responsible party; it is reported, not moved.
"""

from __future__ import annotations

from typing import Any

import mesa
import numpy as np

from twin.agents.strategies import BidStrategy, SideName
from twin.market.game import integer_allocation, shapley
from twin.market.types import OrderIntent, Side
from twin.market.units import MICRO, WH_PER_MWH
from twin.scenario import VPPSpec

__all__ = ["VPPAggregator"]


class VPPAggregator(mesa.Agent):
    """One VPP over household indices ``members``; see the module docstring."""

    def __init__(self, model: Any, *, spec: VPPSpec, members: np.ndarray, account: int,
                 strategy: BidStrategy, feed_in: int, retail: int, n_intervals: int) -> None:
        super().__init__(model)
        self.spec = spec
        self.members = np.asarray(members, dtype=np.int64)
        self.account = account
        self.strategy = strategy
        self.feed_in, self.retail = feed_in, retail
        m = self.members.size
        self.revenue = np.zeros((m, n_intervals))  # currency units
        self.deviation_wh = np.zeros((m, n_intervals))

    def orders(self, k: int, *, device_id: np.ndarray, meter_wh: np.ndarray, cap_wh: np.ndarray,
               buy_price: np.ndarray, sell_price: np.ndarray) -> list[OrderIntent]:
        """Members' orders for ``k`` at the VPP's one price per side (member-indexed inputs)."""
        energy = np.minimum(np.abs(meter_wh), cap_wh)
        active = energy >= 1
        buy = meter_wh > 0
        prices: dict[str, int] = {}
        sides: tuple[tuple[SideName, np.ndarray, np.ndarray], ...] = (
            ("buy", active & buy, buy_price), ("sell", active & ~buy, sell_price))
        for side, mask, val in sides:
            if mask.any():
                v = np.array([round(float(val[mask].mean()))])
                prices[side] = int(self.strategy.prices(side, interval=k, index=np.zeros(1, np.int64),
                                                        valuation=v)[0])
        return [
            OrderIntent(device_id=int(device_id[j]), interval=k, side=Side.BUY if buy[j] else Side.SELL,
                        energy_wh=int(energy[j]), price_per_mwh=prices["buy" if buy[j] else "sell"])
            for j in np.flatnonzero(active)
        ]

    def portfolio_forecast_wh(self, *, load_forecast_wh: np.ndarray, pv_forecast_wh: np.ndarray) -> float:
        """The members' forecast net load (load - PV, Wh, before batteries) of one interval,
        from the households' forecast arrays of that interval (household-indexed)."""
        m = self.members
        return float(load_forecast_wh[m].sum() - pv_forecast_wh[m].sum())

    def record(self, k: int, *, bought_wh: np.ndarray, sold_wh: np.ndarray, metered_wh: np.ndarray,
               price_per_mwh: int) -> None:
        """Book interval ``k`` of every member (member-indexed arrays) and let the strategy learn."""
        self.revenue[:, k] = price_per_mwh * (sold_wh - bought_wh) / WH_PER_MWH / MICRO
        self.deviation_wh[:, k] = metered_wh - (bought_wh - sold_wh)
        self.strategy.observe(interval=k, bought_wh=np.array([bought_wh.sum()]),
                              sold_wh=np.array([sold_wh.sum()]), price_per_mwh=price_per_mwh)

    def value(self, rows: np.ndarray, upto: int | None = None) -> float:
        """``v(S)`` for the member rows ``rows`` over intervals ``[0, upto)``."""
        if rows.size == 0:
            return 0.0
        t = slice(0, upto)
        dev = self.deviation_wh[rows, t].sum(axis=0)
        imb = np.where(dev > 0, self.retail * dev, self.feed_in * dev) / WH_PER_MWH / MICRO
        return float(self.revenue[rows, t].sum() - imb.sum())

    def split(self, *, upto: int | None = None, rng: np.random.Generator) -> list[dict[str, Any]]:
        """Shapley split of ``v(all members)``; one row per member (``vpp`` table columns)."""
        m = self.members.size
        if m == 0:
            return []
        cache: dict[frozenset[int], float] = {}

        def v(c: frozenset[int]) -> float:
            if c not in cache:
                cache[c] = self.value(np.array(sorted(c), dtype=np.int64), upto)
            return cache[c]

        est = shapley(v, list(range(m)), rng=rng, exact_max=self.spec.exact_max,
                      n_permutations=self.spec.n_permutations, delta=self.spec.delta)
        total = round(v(frozenset(range(m))) * MICRO)
        pay = integer_allocation({j: est.values[j] * MICRO for j in range(m)}, total)
        return [
            {"agent": f"household_{int(self.members[j])}", "device_id": -1,
             "standalone_value": v(frozenset({j})), "shapley_value": est.values[j],
             "half_width": est.half_width[j], "payout": pay[j]}
            for j in range(m)
        ]
