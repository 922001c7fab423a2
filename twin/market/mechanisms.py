"""Market mechanisms behind one interface: ``match(orders, mechanism=...)``.

Every mechanism is a pure function of one interval's accepted orders that returns fills,
each carrying its own price, in trade id order. Both ledgers call :func:`match` (the
reference directly; the chain ledger to plan the transactions the contract verifies), so
each mechanism is mirrored on chain with the same integer arithmetic, ids and prices.

* ``uniform`` — uniform-price double auction (:func:`twin.market.clearing.match_orders`,
  contract ``EnergyMarket.clear``/``clearChunk``): every fill trades at the clearing price.
* ``cda`` — continuous double auction, pay-as-bid with price–time priority
  (:func:`twin.market.cda.continuous_double_auction`, contract library ``CdaMatching``
  behind ``EnergyMarket.clearCda``): each fill trades at the resting order's price.

:attr:`MechanismResult.price_per_mwh` is the interval's reported price (the market table's
``price_per_mwh``): the clearing price for ``uniform``; for ``cda`` the volume-weighted mean
of the trade prices, floored (``sum(q * p) // sum(q)``); 0 when nothing traded. Settlement
and curtailment always use each trade's own price.

The mechanism is chosen per market (``market.mechanism`` in the scenario; the
``mechanism=`` argument of both ledgers; ``EnergyMarket.setMechanism`` on chain, before the
first order).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal, get_args

from twin.market.cda import continuous_double_auction
from twin.market.clearing import PricedFill, match_orders
from twin.market.types import Order

__all__ = [
    "CHAIN_CODE",
    "MECHANISMS",
    "Mechanism",
    "MechanismResult",
    "PricedFill",
    "check_mechanism",
    "match",
]

Mechanism = Literal["uniform", "cda"]
MECHANISMS: tuple[str, ...] = get_args(Mechanism)
#: The values ``EnergyMarket.mechanism()`` uses.
CHAIN_CODE: dict[Mechanism, int] = {"uniform": 0, "cda": 1}


@dataclass(frozen=True, slots=True)
class MechanismResult:
    """One interval's matching outcome."""

    fills: tuple[PricedFill, ...]  # in trade id order
    price_per_mwh: int  # the interval's reported price (see the module docstring)

    @property
    def volume_wh(self) -> int:
        return sum(f.energy_wh for f in self.fills)


def check_mechanism(mechanism: str, *, field: str = "mechanism") -> Mechanism:
    """``mechanism`` if it is known, else ValueError naming ``field`` and the choices."""
    if mechanism not in MECHANISMS:
        raise ValueError(f"{field}: unknown market mechanism {mechanism!r}; one of {MECHANISMS}")
    return mechanism  # type: ignore[return-value]


def match(orders: Iterable[Order], *, mechanism: Mechanism = "uniform") -> MechanismResult:
    """Match one interval's orders (all of the same interval) under ``mechanism``."""
    check_mechanism(mechanism)
    if mechanism == "cda":
        cda = continuous_double_auction(orders)
        return MechanismResult(fills=cda.fills, price_per_mwh=cda.vwap_per_mwh)
    res = match_orders(orders)
    return MechanismResult(
        fills=tuple(
            PricedFill(
                buy_order_id=f.buy_order_id,
                sell_order_id=f.sell_order_id,
                energy_wh=f.energy_wh,
                price_per_mwh=res.price_per_mwh,
            )
            for f in res.fills
        ),
        price_per_mwh=res.price_per_mwh,
    )
