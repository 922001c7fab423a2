"""Properties of a transferable-utility game: superadditivity and the core.

* :func:`superadditivity`: ``v(S u T) >= v(S) + v(T)`` for every pair of disjoint non-empty
  coalitions (all ``3**n`` pairs are checked); the violations are listed, worst first.
* :func:`core_check`: the **least core** ``eps* = min eps`` s.t. ``x(S) >= v(S) - eps`` for
  every proper coalition and ``x(N) = v(N)`` (one linear program, HiGHS through scipy). The
  core is non-empty iff ``eps* <= 0``. For a given allocation (e.g. the Shapley split) its
  largest *excess* ``max_S v(S) - x(S)`` and the coalition that attains it are reported: the
  allocation is in the core iff that excess is ``<= 0`` (no coalition would rather leave).

Values are given like :mod:`twin.market.game` (a mapping on frozensets or a callable);
``tol`` absorbs floating-point noise.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["CoreCheck", "SuperadditivityCheck", "core_check", "superadditivity"]


def _fn(value: Mapping[frozenset[Any], float] | Callable[[frozenset[Any]], float]
        ) -> Callable[[frozenset[Any]], float]:
    if callable(value):
        return value
    table = value
    return lambda c: float(table.get(c, 0.0)) if c else 0.0


def _coalitions(players: Sequence[Hashable]) -> list[frozenset[Any]]:
    return [frozenset(c) for r in range(1, len(players) + 1) for c in itertools.combinations(players, r)]


@dataclass(frozen=True, slots=True)
class SuperadditivityCheck:
    """Whether the game is superadditive; violations as (S, T, v(S u T) - v(S) - v(T))."""

    superadditive: bool
    violations: list[tuple[frozenset[Any], frozenset[Any], float]]

    @property
    def worst_gap(self) -> float:
        """Most negative ``v(S u T) - v(S) - v(T)`` (0 when superadditive)."""
        return self.violations[0][2] if self.violations else 0.0


def superadditivity(value: Mapping[frozenset[Any], float] | Callable[[frozenset[Any]], float],
                    players: Sequence[Hashable], *, tol: float = 1e-9) -> SuperadditivityCheck:
    """Check every pair of disjoint non-empty coalitions (module docstring)."""
    v = _fn(value)
    ps = list(players)
    out: list[tuple[frozenset[Any], frozenset[Any], float]] = []
    for labels in itertools.product((0, 1, 2), repeat=len(ps)):  # 0: neither, 1: S, 2: T
        s = frozenset(p for p, x in zip(ps, labels, strict=True) if x == 1)
        t = frozenset(p for p, x in zip(ps, labels, strict=True) if x == 2)
        if not s or not t or min(map(str, s)) > min(map(str, t)):  # each unordered pair once
            continue
        gap = v(s | t) - v(s) - v(t)
        if gap < -tol:
            out.append((s, t, gap))
    out.sort(key=lambda r: r[2])
    return SuperadditivityCheck(superadditive=not out, violations=out)


@dataclass(frozen=True, slots=True)
class CoreCheck:
    """Least core of the game and where a given allocation stands."""

    core_nonempty: bool
    least_core_epsilon: float  # <= 0 iff the core is non-empty
    allocation_in_core: bool
    max_excess: float  # max over proper coalitions of v(S) - x(S)
    blocking: frozenset[Any]  # the coalition attaining max_excess


def core_check(value: Mapping[frozenset[Any], float] | Callable[[frozenset[Any]], float],
               players: Sequence[Hashable], allocation: Mapping[Any, float], *,
               tol: float = 1e-6) -> CoreCheck:
    """Least-core LP and the allocation's largest excess (module docstring)."""
    from scipy.optimize import linprog

    v = _fn(value)
    ps = list(players)
    n = len(ps)
    grand = frozenset(ps)
    proper = [c for c in _coalitions(ps) if c != grand]
    excess = [(v(c) - sum(allocation[p] for p in c), c) for c in proper]
    max_exc, blocking = max(excess, key=lambda e: e[0]) if excess else (0.0, frozenset())
    if not proper:
        return CoreCheck(True, 0.0, True, 0.0, frozenset())
    # variables x_1..x_n, eps; minimise eps; -x(S) - eps <= -v(S); x(N) = v(N)
    a_ub = np.zeros((len(proper), n + 1))
    b_ub = np.empty(len(proper))
    for r, c in enumerate(proper):
        for j, p in enumerate(ps):
            if p in c:
                a_ub[r, j] = -1.0
        a_ub[r, n] = -1.0
        b_ub[r] = -v(c)
    a_eq = np.array([[1.0] * n + [0.0]])
    sol = linprog(c=[0.0] * n + [1.0], A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=[v(grand)],
                  bounds=[(None, None)] * (n + 1), method="highs")
    if sol.status != 0:  # the LP is always feasible and bounded (eps large enough)
        raise RuntimeError(f"least-core LP failed: {sol.message}")
    eps = float(sol.x[n])
    return CoreCheck(core_nonempty=eps <= tol, least_core_epsilon=eps,
                     allocation_in_core=max_exc <= tol, max_excess=float(max_exc), blocking=blocking)
