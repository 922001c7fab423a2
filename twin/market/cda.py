"""Continuous double auction (CDA): pay-as-bid, price–time priority, integer-exact.

Rules (the contract library ``twin/chain/contracts/CdaMatching.sol`` runs the same ones):

* Orders are processed in arrival order; the order id is the time priority (ids are
  assigned in placement order, so a lower id arrived earlier).
* Two resting books: bids by (price desc, id asc), asks by (price asc, id asc).
* An incoming order matches the best resting order of the other side while prices cross
  (incoming buy limit >= best ask price; incoming sell limit <= best bid price). Each fill
  trades ``q = min(incoming remainder, resting remainder)`` **at the resting order's price**
  (the maker's price: the incoming order either pays less than its limit or receives more).
  Because the resting order always arrived first, a trade's price is the price of the
  lower of its two order ids.
* The unmatched remainder of the incoming order rests in its book.
* Within one delivery interval the book is processed when the interval clears (the twin's
  clock is interval-based): processing the orders in id order then gives exactly the result
  continuous matching in arrival order would have given.

Money: a buy order's escrow is ``payment(energy, limit)`` (held since placement); each fill
keeps ``payment(q, trade price)`` and the rest is released at clearing (a bid paying less
than its limit gets the difference back; an unfilled remainder is released entirely).

For the chain, :func:`continuous_double_auction` also reports, per order, how many fills it
made as the incoming order and where its remainder was inserted (the id of its predecessor
in its book, 0 for the head) — the operator sends these as insertion hints, which the
contract verifies in O(1) instead of searching the book.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable
from dataclasses import dataclass

from twin.market.clearing import PricedFill
from twin.market.types import Order, Side

__all__ = ["CdaResult", "CdaStep", "continuous_double_auction"]


@dataclass(frozen=True, slots=True)
class CdaStep:
    """One order's turn as the incoming order."""

    order_id: int
    fills: int  # fills it made against resting orders
    hint: int  # predecessor in its book when its remainder rested (0: head or not rested)
    rested: bool


@dataclass(frozen=True, slots=True)
class CdaResult:
    """Fills in matching order (= trade id order) and the operator's replay data."""

    fills: tuple[PricedFill, ...]
    steps: tuple[CdaStep, ...]  # in id order
    resting_bids: tuple[int, ...]  # bids left in the book at the end, best first
    resting_asks: tuple[int, ...]

    @property
    def volume_wh(self) -> int:
        return sum(f.energy_wh for f in self.fills)

    @property
    def vwap_per_mwh(self) -> int:
        """Volume-weighted mean trade price, floored; 0 when nothing matched."""
        volume = self.volume_wh
        notional = sum(f.energy_wh * f.price_per_mwh for f in self.fills)
        return notional // volume if volume else 0


def continuous_double_auction(orders: Iterable[Order]) -> CdaResult:
    """Run the CDA over one interval's orders (see the module docstring)."""
    book = sorted(orders, key=lambda o: o.order_id)
    # Each book: sorted keys (price desc for bids via -price, id asc) and remainders.
    keys: dict[Side, list[tuple[int, int]]] = {Side.BUY: [], Side.SELL: []}
    remaining: dict[int, int] = {}
    price_of: dict[int, int] = {}
    fills: list[PricedFill] = []
    steps: list[CdaStep] = []
    for o in book:
        side = Side(o.side)
        other = Side(1 - side)
        rem = o.energy_wh
        n = 0
        opp = keys[other]
        while rem > 0 and opp:
            rid = opp[0][1]
            rp = price_of[rid]
            if (o.price_per_mwh < rp) if side == Side.BUY else (o.price_per_mwh > rp):
                break
            q = min(rem, remaining[rid])
            buy, sell = (o.order_id, rid) if side == Side.BUY else (rid, o.order_id)
            fills.append(
                PricedFill(buy_order_id=buy, sell_order_id=sell, energy_wh=q, price_per_mwh=rp)
            )
            n += 1
            rem -= q
            remaining[rid] -= q
            if remaining[rid] == 0:
                opp.pop(0)
        hint = 0
        if rem > 0:
            own = keys[side]
            key = (-o.price_per_mwh if side == Side.BUY else o.price_per_mwh, o.order_id)
            pos = bisect_left(own, key)
            hint = own[pos - 1][1] if pos > 0 else 0
            own.insert(pos, key)
            remaining[o.order_id] = rem
            price_of[o.order_id] = o.price_per_mwh
        steps.append(CdaStep(order_id=o.order_id, fills=n, hint=hint, rested=rem > 0))
    return CdaResult(
        fills=tuple(fills),
        steps=tuple(steps),
        resting_bids=tuple(k[1] for k in keys[Side.BUY]),
        resting_asks=tuple(k[1] for k in keys[Side.SELL]),
    )
