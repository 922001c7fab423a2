"""Balancing one island with its grid-forming batteries: pure arrays in, decisions out.

An island without the upstream grid is held by its grid-forming batteries: they supply (or
absorb) the island's net demand ``D = loads + other storage - generation`` (MW, load
convention), within their power and what their state of charge allows for the interval
(down to ``soc_min``, up to ``soc_max``, one-way efficiency ``eta``). When ``D`` is above what
they can supply, loads are shed by priority class (lowest first, one class per round, each
class as a whole); when the island's surplus is more than they can absorb, its generation is
curtailed (proportionally). Shedding goes class by class, lowest first, and within a class
the entry with the biggest net demand first, until the batteries can supply the rest. If
shedding every sheddable entry is not enough the island collapses (all of it de-energized
for the interval). Network losses are left to the power flow, where the
batteries are the island's slack.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

__all__ = ["IslandBalance", "balance_island"]

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class IslandBalance:
    """``shed_class``: classes reached by shedding (0: none); ``shed``: per load entry; ``gen_scale``: factor
    on the island's generation (1: none curtailed); ``gf_p_mw``: per unit, supplied
    (generator convention); ``collapsed``."""

    shed_class: int
    shed: NDArray[np.bool_]
    gen_scale: float
    gf_p_mw: FloatArray
    collapsed: bool


def balance_island(*, demand_mw: FloatArray, gen_mw: FloatArray, rank: NDArray[np.int64],
                   n_classes: int, other_mw: float, energy_wh: FloatArray, capacity_wh: FloatArray,
                   power_mw: FloatArray, soc_min: FloatArray, soc_max: FloatArray, eta: FloatArray,
                   dt_h: float) -> IslandBalance:
    """Balance one island (see the module doc).

    Per island entry (a household, an EV, a background load or generator): ``demand_mw``
    (load convention, its own battery included), ``gen_mw`` (its generation, curtailable) and
    ``rank`` (its shedding class, 0 shed first; ``>= n_classes``: never shed). ``other_mw``:
    other storage of the island (load convention). The battery arrays are per grid-forming
    unit (energy and capacity in Wh, power in MW).
    """
    hi = np.minimum(power_mw, np.clip(energy_wh - soc_min * capacity_wh, 0.0, None) * eta / dt_h / 1e6)
    lo = np.minimum(power_mw, np.clip(soc_max * capacity_wh - energy_wh, 0.0, None) / eta / dt_h / 1e6)
    sup, absorb = float(hi.sum()), float(lo.sum())
    shed = np.zeros(demand_mw.shape, dtype=bool)
    # shedding order: class by class (lowest first), within a class the biggest net demand
    # first (fewest customers off); entries that would not lower the demand are kept
    net = demand_mw - gen_mw
    order = [int(i) for i in np.lexsort((-net, rank)) if rank[i] < n_classes and net[i] > 0]
    d = float(net.sum()) + other_mw
    level = 0
    for i in order:
        if d <= sup + 1e-12:
            break
        shed[i] = True
        d -= float(net[i])
        level = max(level, int(rank[i]) + 1)
    if d > sup + 1e-12:  # every sheddable load off and still short: the island collapses
        return IslandBalance(n_classes, np.ones(demand_mw.shape, bool), 0.0, np.zeros(power_mw.shape), True)
    scale = 1.0
    gen = float(gen_mw[~shed].sum())
    if d < -absorb - 1e-12:  # surplus: curtail the island's generation
        scale = max(0.0, 1.0 - (-absorb - d) / gen) if gen > 0 else 1.0
        d += gen * (1.0 - scale)
        if d < -absorb - 1e-9:  # more absorbed than the batteries can take: collapse
            return IslandBalance(level, np.ones(demand_mw.shape, bool), 0.0, np.zeros(power_mw.shape), True)
    # share the balance between the units by what each can do in that direction
    cap = hi if d > 0 else lo
    share = cap / cap.sum() if cap.sum() > 0 else np.full(cap.shape, 1.0 / max(cap.size, 1))
    return IslandBalance(level, shed, scale, d * share, False)
