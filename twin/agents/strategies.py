"""Bidding strategies, vectorized over an agent group, and price forecasts.

Every agent of a group has a *valuation* per order: a buyer's willingness to pay, a
seller's reservation price (marginal cost), integer micro-units per MWh. A strategy turns
valuations into limit prices and never bids outside the agent's limits:

* a bid lies in ``[feed_in, valuation]`` (never above what the energy is worth to it,
  never below the price it gets from the DSO for nothing);
* an ask lies in ``[valuation, retail]``.

Strategies (scenario ``agents.strategy`` or a group's ``strategy``):

``truthful``
    bid / ask exactly the valuation.
``zi_c``
    zero intelligence, constrained (Gode & Sunder 1993): a fresh uniform draw in the
    allowed interval for every order.
``roth_erev``
    modified Roth-Erev reinforcement learning (Nicolaisen, Petrov & Tesfatsion 2001): each
    agent and side has ``K`` actions ``j`` - shading the price by ``j / (K - 1)`` of the
    allowed interval from the valuation towards the other end - chosen with probability
    proportional to its propensity ``q_j``. After the interval, with reward ``R`` = the
    surplus of the order (``(valuation - price) * bought`` for a bid, ``(price - valuation)
    * sold`` for an ask, currency units): ``q_j <- (1 - recency) q_j + E_j`` with
    ``E_j = R (1 - experimentation)`` for the chosen action and
    ``q_j * experimentation / (K - 1)`` for the others. Propensities stay positive.

All randomness comes from the generator passed in (the model's), in a fixed order, so the
same seed gives the same bids. :func:`price_forecast` is the price expectation the agents
share (mean of recent clearing prices); it is the ``noise`` method of
:class:`twin.agents.forecast.PriceForecaster`, whose ``persistence`` / ``gbm`` methods
(``agents.forecast.method``) forecast the next clearing price from the run's own history
and replace it in the community batteries' buy/sell decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np

from twin.market.units import MICRO, WH_PER_MWH
from twin.scenario import LearningSpec

__all__ = ["STRATEGY_NAMES", "BidStrategy", "SideName", "make_strategy", "price_forecast"]

STRATEGY_NAMES = ("truthful", "zi_c", "roth_erev")
SideName = Literal["buy", "sell"]


def price_forecast(price_history: Sequence[int], *, window: int = 96, default: float) -> float:
    """Mean of the last ``window`` non-zero clearing prices; ``default`` while there are none."""
    recent = [p for p in list(price_history)[-window:] if p > 0]
    return float(np.mean(recent)) if recent else float(default)


class BidStrategy:
    """Limit prices for one agent group (``n`` agents); see the module docstring."""

    def __init__(self, name: str, *, n: int, feed_in: int, retail: int, rng: np.random.Generator,
                 learning: LearningSpec | None = None) -> None:
        if name not in STRATEGY_NAMES:
            raise ValueError(f"unknown strategy {name!r} (known: {', '.join(STRATEGY_NAMES)})")
        self.name = name
        self.n = n
        self.feed_in = int(feed_in)
        self.retail = int(retail)
        self.rng = rng
        self.learning = learning or LearningSpec()
        k = self.learning.actions
        self.shading = np.linspace(0.0, 1.0, k)
        #: propensities per side ("buy" 0, "sell" 1), agent and action
        self.propensity = np.full((2, n, k), self.learning.initial_propensity)
        #: interval -> side -> (agent index, chosen action, valuation, price)
        self._pending: dict[int, dict[int, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]] = {}

    def _bounds(self, side: SideName, valuation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        v = np.clip(np.asarray(valuation, dtype=np.int64), self.feed_in, self.retail)
        if side == "buy":
            return np.full_like(v, self.feed_in), v  # [feed_in, valuation]
        return v, np.full_like(v, self.retail)  # [valuation, retail]

    def prices(self, side: SideName, *, interval: int, index: np.ndarray,
               valuation: np.ndarray) -> np.ndarray:
        """Integer limit prices for the agents ``index`` (valuations given per order)."""
        index = np.asarray(index, dtype=np.int64)
        lo, hi = self._bounds(side, valuation)
        if index.size == 0 or self.name == "truthful":
            return hi.copy() if side == "buy" else lo.copy()
        if self.name == "zi_c":
            return self.rng.integers(lo, hi + 1)
        s = 0 if side == "buy" else 1
        q = self.propensity[s, index]
        cum = np.cumsum(q / q.sum(axis=1, keepdims=True), axis=1)
        u = self.rng.random(index.size)[:, None]
        action = np.minimum((u > cum).sum(axis=1), q.shape[1] - 1)
        f = self.shading[action]
        price = np.where(side == "buy", hi - f * (hi - lo), lo + f * (hi - lo))
        price = np.clip(np.rint(price).astype(np.int64), lo, hi)
        own = hi if side == "buy" else lo
        self._pending.setdefault(interval, {})[s] = (index, action, own, price)
        return price

    def observe(self, *, interval: int, bought_wh: np.ndarray, sold_wh: np.ndarray,
                price_per_mwh: int) -> None:
        """Learn from the traded energy (per agent, after curtailment) of ``interval``."""
        pending = self._pending.pop(interval, {})
        for old in [i for i in self._pending if i < interval]:
            del self._pending[old]
        if self.name != "roth_erev":
            return
        lr = self.learning
        k = self.shading.size
        for s, (index, action, own, _price) in pending.items():
            traded = (bought_wh if s == 0 else sold_wh)[index]
            margin = (own - price_per_mwh) if s == 0 else (price_per_mwh - own)
            reward = np.clip(margin, 0, None) * traded / WH_PER_MWH / MICRO  # currency units
            q = self.propensity[s, index]
            chosen = np.zeros_like(q, dtype=bool)
            chosen[np.arange(index.size), action] = True
            e = np.where(chosen, (reward * (1 - lr.experimentation))[:, None],
                         q * lr.experimentation / (k - 1))
            self.propensity[s, index] = np.maximum((1 - lr.recency) * q + e, 1e-9)


def make_strategy(name: str, *, n: int, feed_in: int, retail: int, rng: np.random.Generator,
                  learning: LearningSpec | None = None) -> BidStrategy:
    """The strategy ``name`` for a group of ``n`` agents."""
    return BidStrategy(name, n=n, feed_in=feed_in, retail=retail, rng=rng, learning=learning)
