"""The consortium paper's price curve (its Fig. 7) and its coalition valuation.

Seed paper: *Power trading method based on consortium blockchain* (Huang et al., §4.1-4.2).
Read from the paper's text, its Fig. 7 and its Table 3:

**Price curve.** The consortium's units start at their minimum outputs (total
``Q0 = sum p_min``); "from Q0 on, the marginal price is the highest of the three units' bids
within their output ranges". Each unit's curve is drawn as if it alone picked up the total
above ``Q0``: at total ``Q`` unit ``i`` is at ``p_i(Q) = min(p_max_i, p_min_i + (Q - Q0))``
and bids ``r_i(p_i(Q)) = k_i (2 a_i p_i(Q) + b_i)``; the price is the upper envelope

    ``lambda(Q) = max_i r_i(p_i(Q))``,  ``Q in [sum p_min, sum p_max]``.

For the paper's three units this is GU1 from 85 to 93.18 MWh, GU2 from 93.18 to 140 MWh
(where GU2 reaches its ``p_max``) and flat beyond -- the breakpoints the paper states. The
curve is a property of the *whole consortium*: every coalition, the grand one and the pairs
alike, is priced at ``lambda(demand)`` of all the consortium's units (Table 3 lists one price
for every coalition).

**Coalition value.** Table 3's "maximum coalition revenue" of a coalition ``S`` is

    ``v(S) = max sum_{i in S} (lambda - f_i'(p_i)) p_i``,  ``sum p_i = demand``,
    ``p_min_i <= p_i <= p_max_i``,

each unit's profit counted against its *marginal* cost ``f_i'(p_i) = 2 a_i p_i + b_i`` at its
dispatch, not against its cost ``f_i(p_i) = a_i p_i^2 + b_i p_i + c_i`` of the paper's own
equation (1). Since ``lambda * demand`` is fixed, the best dispatch minimises
``sum (2 a_i p_i^2 + b_i p_i)`` -- equal ``4 a_i p_i + b_i`` among units not at a limit --
which is the least-cost dispatch of units with their ``a`` doubled. A coalition that cannot
serve the demand does not trade (value 0), as in :mod:`twin.market.game`. Against equation
(1) this valuation understates every unit's profit by ``a_i p_i^2 - c_i`` and dispatches as
if the quadratic cost were twice as steep.

Pure functions over :class:`twin.market.game.GeneratorUnit`; :func:`twin.market.game.consortium_game`
uses them with ``valuation="paper"``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from twin.market.game import GeneratorUnit

__all__ = [
    "PriceSegment",
    "curve_outputs_mw",
    "curve_price",
    "curve_range_mw",
    "price_curve_rows",
    "price_segments",
]


def curve_range_mw(units: Sequence[GeneratorUnit]) -> tuple[float, float]:
    """The curve's domain: ``(sum p_min, sum p_max)`` of the consortium's units."""
    return (float(sum(u.p_min_mw for u in units)), float(sum(u.p_max_mw for u in units)))


def curve_outputs_mw(units: Sequence[GeneratorUnit], total_mw: float) -> list[float]:
    """Each unit's output on its own curve at ``total_mw``: ``min(p_max, p_min + total - Q0)``."""
    q0, q1 = curve_range_mw(units)
    if not q0 - 1e-9 <= total_mw <= q1 + 1e-9:
        raise ValueError(f"total {total_mw:g} MW is outside the consortium's bid range "
                         f"[{q0:g}, {q1:g}] MW (sum of p_min .. sum of p_max)")
    extra = max(total_mw - q0, 0.0)
    return [min(u.p_max_mw, u.p_min_mw + extra) for u in units]


def curve_price(units: Sequence[GeneratorUnit], total_mw: float) -> tuple[float, int]:
    """``(lambda(total), index of the unit that sets it)``; ties go to the first unit."""
    bids = [u.bid(p) for u, p in zip(units, curve_outputs_mw(units, total_mw), strict=True)]
    j = int(np.argmax(bids))
    return bids[j], j


@dataclass(frozen=True, slots=True)
class PriceSegment:
    """A stretch of the curve set by one unit (rising, or flat once it is at ``p_max``)."""

    from_mw: float
    to_mw: float
    setter: str
    setter_at_max: bool
    price_from: float
    price_to: float


def _pieces(u: GeneratorUnit, q0: float) -> list[tuple[float, float, float, float]]:
    """A unit's curve over ``Q`` as (slope, intercept, from, to) pieces: rising, then flat."""
    q_cap = q0 + (u.p_max_mw - u.p_min_mw)
    slope = u.k * 2 * u.a
    intercept = u.k * (2 * u.a * (u.p_min_mw - q0) + u.b)
    return [(slope, intercept, -np.inf, q_cap), (0.0, u.bid(u.p_max_mw), q_cap, np.inf)]


def price_segments(units: Sequence[GeneratorUnit]) -> list[PriceSegment]:
    """The curve's segments from ``sum p_min`` to ``sum p_max`` with their price setters.

    The curve is the upper envelope of piecewise-linear unit curves, so its setter can only
    change where a unit reaches ``p_max`` or two unit pieces cross; the candidates are all
    such points, the setter of each stretch between two candidates is the highest bid at
    its midpoint, and neighbouring stretches with the same setter (and state) are merged.
    """
    q0, q1 = curve_range_mw(units)
    cands = {q0, q1}
    pieces = [_pieces(u, q0) for u in units]
    for i, pi in enumerate(pieces):
        cands.add(pi[0][3])
        for pj in pieces[i + 1:]:
            for s1, c1, lo1, hi1 in pi:
                for s2, c2, lo2, hi2 in pj:
                    if s1 != s2:
                        x = (c2 - c1) / (s1 - s2)
                        if max(lo1, lo2) <= x <= min(hi1, hi2):
                            cands.add(x)
    pts = sorted(x for x in cands if q0 <= x <= q1)
    segs: list[PriceSegment] = []
    for lo, hi in itertools.pairwise(pts):
        if hi - lo < 1e-9:
            continue
        _, j = curve_price(units, 0.5 * (lo + hi))
        at_max = q0 + (units[j].p_max_mw - units[j].p_min_mw) <= lo + 1e-9
        p_lo, p_hi = curve_price(units, lo)[0], curve_price(units, hi)[0]
        if segs and segs[-1].setter == units[j].name and segs[-1].setter_at_max == at_max:
            last = segs.pop()
            segs.append(PriceSegment(last.from_mw, hi, last.setter, at_max, last.price_from, p_hi))
        else:
            segs.append(PriceSegment(lo, hi, units[j].name, at_max, p_lo, p_hi))
    if not segs:  # a single point (every unit has p_min == p_max)
        price, j = curve_price(units, q0)
        segs.append(PriceSegment(q0, q1, units[j].name, True, price, price))
    return segs


def price_curve_rows(units: Sequence[GeneratorUnit], *, step_mw: float = 1.0,
                     period_h: float = 1.0) -> list[dict[str, object]]:
    """Fig. 7 as a long table: one row per (total, unit) on a grid of ``step_mw`` plus every
    breakpoint, with the unit's output and bid on its curve, the price and its setter."""
    if step_mw <= 0:
        raise ValueError("step_mw must be positive")
    q0, q1 = curve_range_mw(units)
    grid = set(np.round(np.arange(q0, q1 + 1e-9, step_mw), 9).tolist()) | {q0, q1}
    for s in price_segments(units):
        grid |= {s.from_mw, s.to_mw}
    rows: list[dict[str, object]] = []
    for q in sorted(grid):
        q = min(max(q, q0), q1)
        ps = curve_outputs_mw(units, q)
        price, j = curve_price(units, q)
        for i, (u, p) in enumerate(zip(units, ps, strict=True)):
            rows.append({"total_mwh": q * period_h, "unit": u.name, "p_mw": p, "bid_per_mwh": u.bid(p),
                         "price_per_mwh": price, "is_setter": i == j})
    return rows
