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
from collections.abc import Iterable

import numpy as np

__all__ = ["FILL", "MIN_ITEMS", "WINDOW", "GasSizer"]

#: fraction of a transaction's gas limit a chunk aims at (the rest: variation between chunks)
FILL = 0.8
#: chunks of fewer items teach nothing (their fixed cost dominates the per-item figure)
MIN_ITEMS = 8
#: receipts per kind whose largest per-item gas sizes the next chunk
WINDOW = 16
_INTRINSIC = 21_000


class GasSizer:
    """Gas by kind of chunk, learned from receipts; chunk sizes from it.

    A chunk's gas is modelled as ``a`` per item plus ``b`` per "extra" (what makes an item
    dearer: a device's first order of the interval writes a fresh slot, a clearing id that
    makes a fill writes a trade), fitted over the kind's last :data:`WINDOW` receipts and
    scaled up until it covers every one of them (so it never predicts less than a receipt
    showed); with too few receipts for a fit, one figure per item-or-extra."""

    def __init__(self, *, gas_limit: int, fill: float = FILL) -> None:
        if gas_limit <= 0 or not 0 < fill <= 1:
            raise ValueError(f"GasSizer: gas_limit must be > 0 and fill in (0, 1], "
                             f"got {gas_limit} and {fill}")
        self.gas_limit = int(gas_limit)
        self.fill = fill
        self._seen: dict[str, deque[tuple[int, int, int]]] = {}  # (items, extras, gas)
        self._floor: dict[str, float] = {}  # raised by an out-of-gas chunk
        self._model: dict[str, tuple[float, float]] = {}

    @property
    def budget(self) -> int:
        """Gas a chunk aims at."""
        return int(self.gas_limit * self.fill)

    def learn(self, kind: str, *, items: int, gas_used: int, extras: int = 0) -> None:
        """One receipt of a ``kind`` chunk carrying ``items`` items, ``extras`` of them dear."""
        if items <= 0 or (items < MIN_ITEMS and kind in self._seen):
            return
        seen = self._seen.setdefault(kind, deque(maxlen=WINDOW))
        seen.append((items, extras, max(gas_used - _INTRINSIC, 1)))
        self._model.pop(kind, None)

    def out_of_gas(self, kind: str, *, items: int, gas_limit: int) -> None:
        """A ``kind`` chunk of ``items`` items ran out of ``gas_limit``: an item costs more."""
        if items > 0:
            self._floor[kind] = max(self._floor.get(kind, 0.0), gas_limit / items)
            self._model.pop(kind, None)

    def model(self, kind: str) -> tuple[float, float] | None:
        """(gas per item, gas per extra) sizing the next chunk (None before any receipt)."""
        if kind in self._model:
            return self._model[kind]
        seen = list(self._seen.get(kind, ()))
        floor = self._floor.get(kind, 0.0)
        if not seen and not floor:
            return None
        a = b = 0.0
        if len({(n, x) for n, x, _ in seen}) >= 2 and any(x for _, x, _ in seen):
            fit = np.linalg.lstsq(np.array([[n, x] for n, x, _ in seen], dtype=float),
                                  np.array([g for _, _, g in seen], dtype=float), rcond=None)[0]
            a, b = float(fit[0]), float(fit[1])
        if a <= 0 or b < 0:  # no sound fit: one figure for an item and for an extra
            a, b = max((g / (n + x) for n, x, g in seen), default=0.0), 0.0
            b = a if any(x for _, x, _ in seen) else 0.0
        scale = max((g / (a * n + b * x) for n, x, g in seen), default=1.0)
        a, b = max(a * scale, floor), b * scale
        self._model[kind] = (a, b)
        return a, b

    def per_item(self, kind: str) -> float | None:
        """Gas per (plain) item that sizes the next chunk (None before any receipt)."""
        m = self.model(kind)
        return None if m is None else m[0]

    def size(self, kind: str, default: int) -> int:
        """Items of the next ``kind`` chunk, each counted dear: ``default`` before a receipt."""
        m = self.model(kind)
        if m is None:
            return max(1, int(default))
        return max(1, int(self.budget // (m[0] + m[1])))

    def take(self, kind: str, extras: Iterable[int], default: int) -> int:
        """How many of the next items (``extras``: each one's dear parts) one chunk carries:
        as many as fit the budget (at least one), ``default`` before a receipt."""
        m = self.model(kind)
        n = 0
        if m is None:
            for _ in extras:
                n += 1
                if n >= default:
                    break
            return max(n, 1)
        gas = 0.0
        for x in extras:
            gas += m[0] + m[1] * x
            if gas > self.budget and n:
                break
            n += 1
        return max(n, 1)

    def fits(self, kinds: dict[str, tuple[int, int]]) -> bool | None:
        """Whether one transaction carrying ``kind: (items, extras)`` fits the budget (None: a
        kind has no figure yet)."""
        total = 0.0
        for kind, (n, x) in kinds.items():
            m = self.model(kind)
            if m is None:
                return None
            total += m[0] * n + m[1] * x
        return total <= self.budget
