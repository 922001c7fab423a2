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

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from twin.market.limits import column
from twin.market.types import Order, Side

__all__ = ["COLUMNS_MIN", "Fill", "MatchColumns", "MatchResult", "PricedFill", "book_columns", "match_columns",
           "match_orders", "sort_book"]


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


@dataclass(frozen=True, slots=True)
class MatchColumns:
    """:class:`MatchResult` as arrays (int64): the sorted book's ids and, per fill in matching
    order, its bid and ask order ids and energy."""

    bid_ids: np.ndarray
    ask_ids: np.ndarray
    buy_ids: np.ndarray
    sell_ids: np.ndarray
    energy_wh: np.ndarray
    price_per_mwh: int


#: below this many orders the walk in Python is quicker than numpy's set-up
COLUMNS_MIN = 64


def book_columns(orders: Sequence[Order]) -> tuple[np.ndarray, ...] | None:
    """(order id, buy, sell, energy Wh, price) of ``orders`` as arrays, or ``None`` when a
    number is not an integer that int64 holds with room for the energy's running sum."""
    n = len(orders)
    ids = column([o.order_id for o in orders])
    wh = column([o.energy_wh for o in orders])
    price = column([o.price_per_mwh for o in orders])
    if ids.dtype != np.int64 or wh.dtype != np.int64 or price.dtype != np.int64:
        return None
    if n and (wh.min() < 1 or int(wh.max()) >= 2**62 // n or price.min() < -(2**62)):
        return None
    side = [o.side for o in orders]
    buy = np.fromiter((x == Side.BUY for x in side), bool, n)
    sell = np.fromiter((x == Side.SELL for x in side), bool, n)
    return ids, buy, sell, wh, price


def match_columns(ids: np.ndarray, buy: np.ndarray, sell: np.ndarray, wh: np.ndarray,
                  price: np.ndarray) -> MatchColumns:
    """The walk of :func:`match_orders` at once. Bids and asks are sorted as there; with
    ``B`` and ``A`` the running sums of their energies, every step of the walk ends at the
    next point of ``B`` or ``A`` (one step when both meet), so the steps are the segments
    between the sorted union of those points, each inside one bid and one ask. A step is
    taken while its bid's price is at least its ask's: bid prices fall and ask prices rise
    along the segments, so the steps taken are a prefix."""
    b = np.flatnonzero(buy)
    a = np.flatnonzero(sell)
    b = b[np.lexsort((ids[b], -price[b]))]
    a = a[np.lexsort((ids[a], price[a]))]
    empty = np.zeros(0, np.int64)
    if b.size == 0 or a.size == 0:
        return MatchColumns(ids[b], ids[a], empty, empty, empty, 0)
    cum_b, cum_a = np.cumsum(wh[b]), np.cumsum(wh[a])
    ends = np.union1d(cum_b, cum_a)
    ends = ends[ends <= min(int(cum_b[-1]), int(cum_a[-1]))]
    starts = np.concatenate(([0], ends[:-1]))
    i = np.searchsorted(cum_b, starts, side="right")  # the bid and ask each step is in
    j = np.searchsorted(cum_a, starts, side="right")
    cross = price[b[i]] >= price[a[j]]
    taken = int(np.argmin(cross)) if not cross.all() else cross.size
    i, j = i[:taken], j[:taken]
    q = (ends - starts)[:taken]
    p = (int(price[b[i[-1]]]) + int(price[a[j[-1]]])) // 2 if taken else 0
    return MatchColumns(ids[b], ids[a], ids[b[i]], ids[a[j]], q, p)


def match_orders(orders: Iterable[Order]) -> MatchResult:
    """Clear one interval's orders (all of the same interval) by the rules above."""
    orders = list(orders)
    cols = book_columns(orders) if len(orders) >= COLUMNS_MIN else None
    if cols is not None:
        m = match_columns(*cols)
        return MatchResult(
            bid_ids=tuple(m.bid_ids.tolist()), ask_ids=tuple(m.ask_ids.tolist()),
            fills=tuple(map(Fill, m.buy_ids.tolist(), m.sell_ids.tolist(), m.energy_wh.tolist())),
            price_per_mwh=m.price_per_mwh)
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
