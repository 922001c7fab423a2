"""Chunk sizes by gas: how many items (signed orders, clearing ids, trades priced) one
transaction carries so that it fills a block up to a margin.

Each chunked call learns its gas per item from the receipts of this run (gas used less the
21,000 intrinsic gas, over the items it carried; the largest of the last :data:`WINDOW`
chunks, so the cold first interval counts until warmer ones replace it). The next chunk
then carries ``FILL`` x the gas limit a transaction may use (the smaller of the client's
``tx_gas`` and the block gas limit read from the node) over that figure. Before a kind's
first receipt its fixed default is used (sizes known to fit a 30 M block). A chunk that
still runs out of gas is split and sent again by the caller (its orders are never lost);
the failed chunk raises the figure to at least its gas limit over its items.
"""

from __future__ import annotations

from collections import deque

__all__ = ["FILL", "MIN_ITEMS", "WINDOW", "GasSizer"]

#: fraction of a transaction's gas limit a chunk aims at (the rest: variation between chunks)
FILL = 0.8
#: chunks of fewer items teach nothing (their fixed cost dominates the per-item figure)
MIN_ITEMS = 8
#: receipts per kind whose largest per-item gas sizes the next chunk
WINDOW = 16
_INTRINSIC = 21_000


class GasSizer:
    """Per-item gas by kind of chunk, learned from receipts; chunk sizes from it."""

    def __init__(self, *, gas_limit: int, fill: float = FILL) -> None:
        if gas_limit <= 0 or not 0 < fill <= 1:
            raise ValueError(f"GasSizer: gas_limit must be > 0 and fill in (0, 1], "
                             f"got {gas_limit} and {fill}")
        self.gas_limit = int(gas_limit)
        self.fill = fill
        self._seen: dict[str, deque[float]] = {}
        self._floor: dict[str, float] = {}  # raised by an out-of-gas chunk

    @property
    def budget(self) -> int:
        """Gas a chunk aims at."""
        return int(self.gas_limit * self.fill)

    def learn(self, kind: str, *, items: int, gas_used: int) -> None:
        """One receipt of a ``kind`` chunk carrying ``items`` items."""
        if items < MIN_ITEMS and kind in self._seen:
            return
        if items <= 0:
            return
        seen = self._seen.setdefault(kind, deque(maxlen=WINDOW))
        seen.append(max(gas_used - _INTRINSIC, 1) / items)

    def out_of_gas(self, kind: str, *, items: int, gas_limit: int) -> None:
        """A ``kind`` chunk of ``items`` items ran out of ``gas_limit``: an item costs more."""
        if items > 0:
            self._floor[kind] = max(self._floor.get(kind, 0.0), gas_limit / items)

    def per_item(self, kind: str) -> float | None:
        """Gas per item that sizes the next chunk (None before any receipt)."""
        seen = self._seen.get(kind)
        floor = self._floor.get(kind)
        if not seen and floor is None:
            return None
        return max(max(seen) if seen else 0.0, floor or 0.0)

    def size(self, kind: str, default: int) -> int:
        """Items the next ``kind`` chunk carries: ``default`` until the kind has a receipt."""
        per = self.per_item(kind)
        if per is None:
            return max(1, int(default))
        return max(1, int(self.budget // per))

    def fits(self, kinds: dict[str, int]) -> bool | None:
        """Whether one transaction carrying these items by kind fits the budget (None: a kind
        has no figure yet)."""
        total = 0.0
        for kind, n in kinds.items():
            per = self.per_item(kind)
            if per is None:
                return None
            total += per * n
        return total <= self.budget
