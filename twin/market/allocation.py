"""Whole-unit allocation of real-valued shares (money in micro-units, energy in Wh): pure,
used by the cooperative game, the VPP's Shapley split and the ancillary settlement."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping
from typing import TypeVar

__all__ = ["integer_allocation"]

P = TypeVar("P", bound=Hashable)


def integer_allocation(shares: Mapping[P, float], total: int) -> dict[P, int]:
    """Integers close to ``shares`` that sum to exactly ``total`` (largest remainder).

    Each player gets ``floor(share)``; the difference to ``total`` is handed out one unit
    at a time by largest fractional part (taken back by smallest when negative), ties by
    the mapping's order. Shares need not sum to ``total`` exactly (floating point).
    """
    keys = list(shares)
    if not keys:
        if total:
            raise ValueError("cannot allocate a non-zero total to nobody")
        return {}
    floors = {p: math.floor(shares[p]) for p in keys}
    frac = {p: shares[p] - floors[p] for p in keys}
    rest = int(total) - sum(floors.values())
    order = sorted(range(len(keys)), key=lambda j: (-frac[keys[j]], j))
    if rest < 0:
        order = sorted(range(len(keys)), key=lambda j: (frac[keys[j]], j))
    step = 1 if rest > 0 else -1
    whole, part = divmod(abs(rest), len(keys))
    for p in keys:
        floors[p] += step * whole
    for t in range(part):
        floors[keys[order[t]]] += step
    return floors
