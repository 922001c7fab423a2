"""Split one interval's clearing into bounded ``EnergyMarket.clearChunk`` calls.

The contract walks the sorted bid and ask lists exactly like
:func:`twin.market.clearing.match_orders`, taking the next bid (ask) only when the current
one is exhausted, and pauses when it needs an id the chunk did not bring. :func:`take_order`
replays that walk and lists the ids in the order the contract takes them, then the ids the
walk never reached (verified only, unmatched bids refunded). Any cut of that sequence is a
valid chunk boundary, so chunks are simply consecutive slices of ``chunk_orders`` ids;
after them come calls that only price and announce trades, ``chunk_trades`` at a time.
Gas per call is then bounded by ``chunk_orders`` (each id adds at most one fill) or
``chunk_trades``, whatever the size of the book.

Settlement (``EnergyMarket.settleChunk`` / ``settleSignedChunk``) is cut the same way by
:func:`plan_settlement`: calls that pay ``chunk_trades`` trades each (trade id order), then
calls that settle ``chunk_devices`` meter readings each (device id order); the last call
closes the interval. The contract pays and settles in exactly the one-transaction order, so
every cut gives the reference result.

Resuming: a chunk sequence that stops midway (a chunk reverts, the operator process or the
node dies) leaves the interval "clearing" / "settling" with the contract's cursor intact,
and every other interval's clearing waits for it (``ClearingInProgress``). Both plans take
the cursor (``EnergyMarket.clearingProgress`` / ``settlementProgress``) and list only the
calls still needed, so the operator simply runs the sequence again — with any chunk sizes —
and it completes exactly as the uninterrupted sequence would have (restart is idempotent:
what was done is never redone). Nothing is ever half-undone, so there is no abort.

Each call names the cursor position it follows (``at``: ids verified plus trades finalized;
trades paid plus readings settled), and the contract reverts ``CursorMismatch`` otherwise:
chunks sent at once (pipelined) behind one that reverted all revert too, instead of
verifying ids (settling readings) from the wrong place, so the sequence simply resumes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from twin.market.types import Order, Side

__all__ = ["ClearingChunk", "SettlementChunk", "plan_clearing", "plan_settlement", "take_order",
           "take_order_fills"]


@dataclass(frozen=True, slots=True)
class ClearingChunk:
    """Arguments of one ``clearChunk`` call."""

    bid_ids: tuple[int, ...]
    ask_ids: tuple[int, ...]
    max_trades: int
    fills: int = 0  # trades its ids make (take_order_fills)
    at: int = 0  # cursor position it follows: ids verified (both sides) + trades finalized


def take_order(bids: Sequence[Order], asks: Sequence[Order]) -> list[tuple[Side, int]]:
    """(side, order id) in the order the contract's walk takes them, then the rest."""
    return [(side, oid) for side, oid, _ in take_order_fills(bids, asks)]


def take_order_fills(bids: Sequence[Order], asks: Sequence[Order]) -> list[tuple[Side, int, int]]:
    """:func:`take_order` with, for each id, 1 if the walk makes a fill right after taking
    it (a trade written: the dear part of a chunk's gas), else 0."""
    takes: list[tuple[Side, int, int]] = []
    i = j = 0
    rem_bid = rem_ask = 0
    bid_price = ask_price = 0
    while True:
        if rem_bid == 0:
            if i == len(bids):
                break
            takes.append((Side.BUY, bids[i].order_id, 0))
            rem_bid, bid_price = bids[i].energy_wh, bids[i].price_per_mwh
            i += 1
        if rem_ask == 0:
            if j == len(asks):
                break
            takes.append((Side.SELL, asks[j].order_id, 0))
            rem_ask, ask_price = asks[j].energy_wh, asks[j].price_per_mwh
            j += 1
        if bid_price < ask_price:
            break
        side, oid, _ = takes[-1]
        takes[-1] = (side, oid, 1)
        q = min(rem_bid, rem_ask)
        rem_bid -= q
        rem_ask -= q
    takes += [(Side.BUY, o.order_id, 0) for o in bids[i:]]
    takes += [(Side.SELL, o.order_id, 0) for o in asks[j:]]
    return takes


def plan_clearing(
    bids: Sequence[Order],
    asks: Sequence[Order],
    *,
    n_trades: int,
    chunk_orders: int,
    chunk_trades: int,
    bids_seen: int = 0,
    asks_seen: int = 0,
    finalized: int = 0,
    cut: Callable[[Sequence[int]], int] | None = None,
) -> list[ClearingChunk]:
    """The ``clearChunk`` calls that clear the sorted book (see the module docstring); from
    a cursor that has verified the first ``bids_seen`` bids and ``asks_seen`` asks and
    finalized ``finalized`` of the ``n_trades`` trades, only the calls still needed.

    ``cut``: the length of the next id chunk given the fill flags of the ids still to send
    (:func:`take_order_fills`; chunks sized by gas), instead of ``chunk_orders`` ids each."""
    if chunk_orders <= 0 or chunk_trades <= 0:
        raise ValueError("chunk_orders and chunk_trades must be > 0")
    if not (0 <= bids_seen <= len(bids) and 0 <= asks_seen <= len(asks)
            and 0 <= finalized <= n_trades):  # fmt: skip
        raise ValueError(
            f"cursor (bids_seen={bids_seen}, asks_seen={asks_seen}, finalized={finalized}) "
            f"does not fit a book of {len(bids)} bids, {len(asks)} asks, {n_trades} trades"
        )
    seen = {o.order_id for o in bids[:bids_seen]} | {o.order_id for o in asks[:asks_seen]}
    takes = [t for t in take_order_fills(bids, asks) if t[1] not in seen]
    at = bids_seen + asks_seen + finalized
    chunks = []
    k = 0
    while k < len(takes):
        n = max(1, cut([f for _, _, f in takes[k:]])) if cut is not None else chunk_orders
        part = takes[k : k + n]
        k += n
        chunks.append(ClearingChunk(
            bid_ids=tuple(oid for side, oid, _ in part if side == Side.BUY),
            ask_ids=tuple(oid for side, oid, _ in part if side == Side.SELL),
            max_trades=0, fills=sum(f for _, _, f in part), at=at,
        ))  # fmt: skip
        at += len(part)
    chunks = chunks or [ClearingChunk(bid_ids=(), ask_ids=(), max_trades=0, at=at)]
    chunks += [
        ClearingChunk(bid_ids=(), ask_ids=(), max_trades=chunk_trades, at=at + t)
        for t in range(0, n_trades - finalized, chunk_trades)
    ]
    if not takes and len(chunks) > 1:
        chunks = chunks[1:]  # the empty id chunk is only needed when nothing else is sent
    return chunks


@dataclass(frozen=True, slots=True)
class SettlementChunk:
    """Arguments of one ``settleChunk`` call: trades to pay, readings[start:stop], last;
    ``at``: the cursor position it follows (trades paid + readings settled)."""

    max_trades: int
    start: int
    stop: int
    last: bool
    at: int = 0


def plan_settlement(
    *, n_trades: int, n_readings: int, chunk_trades: int, chunk_devices: int, at: int = 0
) -> list[SettlementChunk]:
    """The ``settleChunk`` calls that settle an interval (see the module docstring): its
    ``n_trades`` trades still unpaid, then its ``n_readings`` readings still unsettled, from
    the cursor position ``at`` (trades paid + readings settled so far)."""
    if chunk_trades <= 0 or chunk_devices <= 0:
        raise ValueError("chunk_trades and chunk_devices must be > 0")
    if n_trades < 0 or n_readings < 0 or at < 0:
        raise ValueError("n_trades, n_readings and at must be >= 0")
    chunks = [
        SettlementChunk(max_trades=chunk_trades, start=0, stop=0, last=False, at=at + t)
        for t in range(0, n_trades, chunk_trades)
    ]
    chunks += [
        SettlementChunk(max_trades=0, start=k, stop=min(k + chunk_devices, n_readings),
                        last=False, at=at + n_trades + k)
        for k in range(0, n_readings, chunk_devices)
    ]
    if not chunks:
        chunks = [SettlementChunk(max_trades=0, start=0, stop=0, last=False, at=at)]
    tail = chunks[-1]
    chunks[-1] = SettlementChunk(tail.max_trades, tail.start, tail.stop, last=True, at=tail.at)
    return chunks
