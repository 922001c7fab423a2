"""Uniform-price double auction: the one pure clearing function both ledgers use.

Bids are the interval's BUY orders sorted by (price desc, order_id asc), asks the SELL
orders sorted by (price asc, order_id asc). Both lists are walked while the current bid's
limit is >= the current ask's: each step matches ``q = min(remaining bid, remaining ask)``
and advances the exhausted order(s). The clearing price is
``(last matched bid price + last matched ask price) // 2``, every trade is at that price;
no match gives price 0 and no trades. Other mechanisms (pay-as-bid continuous double
auction, ...) sit behind :func:`twin.market.mechanisms.match`. The contract
(``twin/chain/contracts/EnergyMarket.sol``, ``clear``) receives the two sorted id lists,
verifies them in O(n) and runs the same walk.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from twin.market.types import Order, Side

__all__ = ["Fill", "MatchResult", "PricedFill", "match_orders", "sort_book"]


@dataclass(frozen=True, slots=True)
class Fill:
    """One matched quantity between a bid and an ask (before the price is known)."""

    buy_order_id: int
    sell_order_id: int
    energy_wh: int


@dataclass(frozen=True, slots=True)
class PricedFill:
    """One matched quantity and the price it trades at (every mechanism's output)."""

    buy_order_id: int
    sell_order_id: int
    energy_wh: int
    price_per_mwh: int


@dataclass(frozen=True, slots=True)
class MatchResult:
    """Sorted book and the matching outcome of one interval."""

    bid_ids: tuple[int, ...]
    ask_ids: tuple[int, ...]
    fills: tuple[Fill, ...]  # in matching order (= trade id order)
    price_per_mwh: int  # 0 when nothing matched

    @property
    def volume_wh(self) -> int:
        return sum(f.energy_wh for f in self.fills)


def sort_book(orders: Iterable[Order]) -> tuple[list[Order], list[Order]]:
    """Split orders into bids (price desc, id asc) and asks (price asc, id asc)."""
    bids = sorted(
        (o for o in orders if o.side == Side.BUY), key=lambda o: (-o.price_per_mwh, o.order_id)
    )
    asks = sorted(
        (o for o in orders if o.side == Side.SELL), key=lambda o: (o.price_per_mwh, o.order_id)
    )
    return bids, asks


def match_orders(orders: Iterable[Order]) -> MatchResult:
    """Clear one interval's orders (all of the same interval) by the rules above."""
    bids, asks = sort_book(orders)
    fills: list[Fill] = []
    i = j = 0
    rem_bid = bids[0].energy_wh if bids else 0
    rem_ask = asks[0].energy_wh if asks else 0
    last_bid = last_ask = 0
    while i < len(bids) and j < len(asks) and bids[i].price_per_mwh >= asks[j].price_per_mwh:
        q = min(rem_bid, rem_ask)
        fills.append(
            Fill(buy_order_id=bids[i].order_id, sell_order_id=asks[j].order_id, energy_wh=q)
        )
        last_bid, last_ask = bids[i].price_per_mwh, asks[j].price_per_mwh
        rem_bid -= q
        rem_ask -= q
        if rem_bid == 0:
            i += 1
            rem_bid = bids[i].energy_wh if i < len(bids) else 0
        if rem_ask == 0:
            j += 1
            rem_ask = asks[j].energy_wh if j < len(asks) else 0
    price = (last_bid + last_ask) // 2 if fills else 0
    return MatchResult(
        bid_ids=tuple(o.order_id for o in bids),
        ask_ids=tuple(o.order_id for o in asks),
        fills=tuple(fills),
        price_per_mwh=price,
    )
