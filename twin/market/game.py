"""Cooperative games: Shapley values (exact and sampled) and the consortium generator game.

**Shapley values.** A transferable-utility game is a set of players and a value function
``v`` on coalitions (``frozenset`` of players -> number), given as a mapping or a
callable; ``v(frozenset()) = 0`` is assumed when the mapping lacks it.

* :func:`shapley_values` is exact: it evaluates ``v`` once per coalition (``2**n``) and
  sums the weighted marginal contributions with numpy, per player
  ``phi_i = sum_{S not containing i} |S|! (n-|S|-1)! / n! * (v(S + i) - v(S))``.
  Up to :data:`EXACT_MAX_PLAYERS` (20: about a million coalitions) players.
* :func:`shapley_sample` estimates by permutation sampling (Castro et al. 2009): for ``m``
  seeded random orders, each player's marginal contribution on joining its predecessors.
  The estimate is unbiased. **Error bound** (Hoeffding + a union bound over the ``n``
  players): with probability at least ``1 - delta`` *all* estimates are within
  ``r_i * sqrt(ln(2 n / delta) / (2 m))`` of the exact values, where ``r_i`` is the range of
  player ``i``'s marginal contributions. ``r_i`` is taken from ``value_range`` when the
  caller knows a bound (rigorous), else from the contributions observed (an estimate, slightly
  optimistic for small ``m``); the standard error (CLT) is reported as well.
* :func:`shapley` picks exact up to ``exact_max`` players, sampling beyond.
* :func:`integer_allocation` turns real-valued shares into integers that sum exactly to a
  total (largest remainder, ties by player order): how money in micro-units is split
  without creating or destroying any.

**Consortium generator game** (seed paper: cooperative game for consortium-blockchain power
trading). Generator units with cost ``f(p) = a p^2 + b p + c`` ($, p in MW over a period of
``period_h`` hours; quantities below are per period) bid ``r(p) = k (2 a p + b)`` (marginal
cost times a markup ``k >= 1``); one buyer asks ``demand_mwh`` for the period.

* *Best dispatch of a coalition* ``S``: the least-cost commitment and dispatch of ``S``'s
  units that serves the whole demand (each committed unit within ``[p_min, p_max]``; equal
  marginal cost ``2 a p + b`` among units not at a limit, found by bisection; every
  commitment of ``S`` tried, which matters only when ``c > 0``). A coalition that cannot
  serve the demand alone (``sum p_max < demand``) does not trade: value 0 (the buyer's
  request is indivisible).
* *Marginal pricing with non-negative profits*: the price is the highest of the committed
  units' bids at their dispatch, ``lambda = max_i max(r_i(p_i), f_i(p_i) / p_i)``. Since
  ``k >= 1`` and the cost is convex, ``r_i(p_i) >= f_i'(p_i) >= (f_i(p_i) - c_i) / p_i``;
  the average-cost term also covers ``c > 0``. So every unit's profit
  ``lambda p_i - f_i(p_i)`` is non-negative.
* *Coalition value* ``v(S) = sum_{i in S} (lambda_S p_i - f_i(p_i))`` and the *Shapley
  split* of the grand coalition's profit ``v(N)``.

That is ``valuation="profit"`` (the default: profit against the cost of the paper's own
equation (1), each coalition priced by its own committed units). ``valuation="paper"`` is the
seed paper's Table 3 (:mod:`twin.market.game_paper`): every coalition priced at the whole
consortium's Fig. 7 price ``lambda(demand)``, each unit's profit counted against its marginal
cost at its dispatch, ``(lambda - f_i'(p_i)) p_i``, and the dispatch that maximises it.

:func:`consortium_game` returns all of it; :func:`consortium_orders` the orders that make
the project's market (uniform-price double auction, :mod:`twin.market.clearing`) clear the
grand coalition's dispatch at exactly ``lambda`` (each unit offers its dispatch at its own
minimum price ``max(r_i, f_i/p_i)``, the buyer bids the demand at ``lambda``; the highest ask
is ``lambda``, so the midpoint price is ``lambda``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, TypeVar

import numpy as np

from twin.market.allocation import integer_allocation

__all__ = [
    "EXACT_MAX_PLAYERS",
    "VALUATIONS",
    "CoalitionOutcome",
    "ConsortiumResult",
    "ConsortiumSettlement",
    "GeneratorUnit",
    "ShapleyEstimate",
    "Valuation",
    "Value",
    "consortium_game",
    "consortium_on_ledger",
    "dispatch_coalition",
    "integer_allocation",
    "secure_game",
    "shapley",
    "shapley_sample",
    "shapley_values",
]

P = TypeVar("P", bound=Hashable)
#: A coalition's worth: a mapping frozenset -> number, or a callable on frozensets.
Value = Mapping[frozenset[Any], float] | Callable[[frozenset[Any]], float]

#: Largest game solved exactly by default (2**20 coalitions).
EXACT_MAX_PLAYERS = 20

#: How a coalition of the consortium game is valued (module docstring).
Valuation = Literal["profit", "paper"]
VALUATIONS: tuple[Valuation, ...] = ("profit", "paper")


def _value_fn(value: Value) -> Callable[[frozenset[Any]], float]:
    if callable(value):
        return value
    table = value

    def lookup(coalition: frozenset[Any]) -> float:
        if coalition in table:
            return float(table[coalition])
        if not coalition:
            return 0.0
        raise KeyError(f"value of coalition {sorted(map(str, coalition))} is missing")

    return lookup


def _check_players(players: Sequence[P]) -> list[P]:
    out = list(players)
    if len(set(out)) != len(out):
        raise ValueError("players must be distinct")
    return out


def _popcount(n_players: int) -> np.ndarray:
    return np.bitwise_count(np.arange(1 << n_players, dtype=np.uint32)).astype(np.int64)


def shapley_values(value: Value, players: Sequence[P], *,
                   max_players: int = EXACT_MAX_PLAYERS) -> dict[P, float]:
    """Exact Shapley value of every player (``value`` evaluated on all ``2**n`` coalitions)."""
    ps = _check_players(players)
    n = len(ps)
    if n > max_players:
        raise ValueError(f"{n} players: exact Shapley values need 2**{n} coalitions; "
                         f"use shapley_sample (or raise max_players)")
    if n == 0:
        return {}
    v_of = _value_fn(value)
    masks = np.arange(1 << n, dtype=np.int64)
    v = np.empty(1 << n)
    for m in range(1 << n):
        v[m] = v_of(frozenset(ps[j] for j in range(n) if m >> j & 1))
    v[0] = v_of(frozenset())
    size = _popcount(n)
    # weight of a coalition of size s not containing i: s! (n - s - 1)! / n!
    w_by_size = np.array([math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n)
                          for s in range(n)])
    out: dict[P, float] = {}
    for j, p in enumerate(ps):
        bit = 1 << j
        without = masks[(masks & bit) == 0]
        out[p] = float(np.sum(w_by_size[size[without]] * (v[without | bit] - v[without])))
    return out


@dataclass(frozen=True, slots=True)
class ShapleyEstimate:
    """Sampled Shapley values with their error bound (see the module docstring)."""

    values: dict[Any, float]
    #: Hoeffding half-width per player: all within it with probability >= 1 - delta
    half_width: dict[Any, float]
    #: standard error of each estimate (sample std / sqrt(m))
    std_error: dict[Any, float]
    n_permutations: int
    delta: float
    exact: bool = False


def shapley_sample(value: Value, players: Sequence[P], *, n_permutations: int,
                   rng: np.random.Generator, delta: float = 0.05,
                   value_range: float | None = None) -> ShapleyEstimate:
    """Permutation-sampling estimate with a stated error bound (module docstring)."""
    ps = _check_players(players)
    n = len(ps)
    if n_permutations < 1:
        raise ValueError("n_permutations must be >= 1")
    if not 0 < delta < 1:
        raise ValueError("delta must be in (0, 1)")
    v_of = _value_fn(value)
    cache: dict[frozenset[Any], float] = {}

    def v(c: frozenset[Any]) -> float:
        if c not in cache:
            cache[c] = float(v_of(c))
        return cache[c]

    contrib = np.zeros((n_permutations, n))
    v_empty = v(frozenset())
    for r in range(n_permutations):
        order = rng.permutation(n)
        members: set[P] = set()
        prev = v_empty
        for j in order:
            members.add(ps[int(j)])
            cur = v(frozenset(members))
            contrib[r, j] = cur - prev
            prev = cur
    m = n_permutations
    mean = contrib.mean(axis=0)
    std = contrib.std(axis=0, ddof=1) if m > 1 else np.full(n, np.inf)
    rng_i = (np.full(n, float(value_range)) if value_range is not None
             else contrib.max(axis=0) - contrib.min(axis=0))
    eps = rng_i * math.sqrt(math.log(2 * max(n, 1) / delta) / (2 * m))
    return ShapleyEstimate(
        values={p: float(mean[j]) for j, p in enumerate(ps)},
        half_width={p: float(eps[j]) for j, p in enumerate(ps)},
        std_error={p: float(std[j] / math.sqrt(m)) for j, p in enumerate(ps)},
        n_permutations=m, delta=delta,
    )


def shapley(value: Value, players: Sequence[P], *, rng: np.random.Generator | None = None,
            exact_max: int = EXACT_MAX_PLAYERS, n_permutations: int = 2000,
            delta: float = 0.05) -> ShapleyEstimate:
    """Exact up to ``exact_max`` players (zero error), permutation sampling beyond."""
    ps = _check_players(players)
    if len(ps) <= exact_max:
        vals = shapley_values(value, ps, max_players=exact_max)
        zero = dict.fromkeys(ps, 0.0)
        return ShapleyEstimate(values=vals, half_width=zero, std_error=dict(zero),
                               n_permutations=0, delta=0.0, exact=True)
    if rng is None:
        raise ValueError(f"{len(ps)} players: sampling needs the run's rng")
    return shapley_sample(value, ps, n_permutations=n_permutations, rng=rng, delta=delta)


# --------------------------------------------------------------------- consortium game


@dataclass(frozen=True, slots=True)
class GeneratorUnit:
    """A generator unit: cost ``a p^2 + b p + c`` per period, bid ``k (2 a p + b)``."""

    name: str
    a: float  # $/MW^2 (per period)
    b: float  # $/MW
    p_min_mw: float
    p_max_mw: float
    k: float = 1.0
    c: float = 0.0

    def __post_init__(self) -> None:
        if not (self.a > 0 and self.b >= 0 and self.c >= 0 and self.k >= 1):
            raise ValueError(f"{self.name}: need a > 0, b >= 0, c >= 0, k >= 1")
        if not 0 <= self.p_min_mw <= self.p_max_mw:
            raise ValueError(f"{self.name}: need 0 <= p_min_mw <= p_max_mw")

    def cost(self, p_mw: float) -> float:
        return self.a * p_mw * p_mw + self.b * p_mw + self.c if p_mw > 0 else 0.0

    def marginal_cost(self, p_mw: float) -> float:
        return 2 * self.a * p_mw + self.b

    def bid(self, p_mw: float) -> float:
        return self.k * self.marginal_cost(p_mw)

    def min_price(self, p_mw: float) -> float:
        """Lowest price at which producing ``p_mw`` is not a loss: max(bid, average cost)."""
        return max(self.bid(p_mw), self.cost(p_mw) / p_mw) if p_mw > 0 else 0.0


@dataclass(frozen=True, slots=True)
class CoalitionOutcome:
    """Best dispatch of one coalition, its marginal price and value."""

    members: tuple[str, ...]
    feasible: bool
    dispatch_mw: dict[str, float]  # 0 for uncommitted members
    price_per_mwh: float  # 0 when infeasible
    cost: float  # production cost of equation (1), sum f_i(p_i) over the period
    revenue: float
    profit: dict[str, float]  # per unit, as the valuation counts it
    valuation: str = "profit"
    period_h: float = 1.0

    @property
    def value(self) -> float:
        return float(sum(self.profit.values()))

    def counted_cost(self, name: str) -> float:
        """What the valuation subtracts from unit ``name``'s revenue over the period:
        ``f(p)`` (profit) or ``f'(p) p`` (paper)."""
        return self.price_per_mwh * self.dispatch_mw[name] * self.period_h - self.profit[name]


def _equal_mc(units: Sequence[GeneratorUnit], demand: float) -> list[float]:
    """Least-cost dispatch of committed ``units`` (sum = demand, limits respected)."""
    def total(mu: float) -> float:
        return sum(min(max((mu - u.b) / (2 * u.a), u.p_min_mw), u.p_max_mw) for u in units)

    lo = min(u.marginal_cost(u.p_min_mw) for u in units)
    hi = max(u.marginal_cost(u.p_max_mw) for u in units)
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if total(mid) < demand:
            lo = mid
        else:
            hi = mid
    mu = 0.5 * (lo + hi)
    p = [min(max((mu - u.b) / (2 * u.a), u.p_min_mw), u.p_max_mw) for u in units]
    # remove the bisection residue on a unit strictly inside its limits
    residue = demand - sum(p)
    for j, u in enumerate(units):
        if u.p_min_mw <= p[j] + residue <= u.p_max_mw:
            p[j] += residue
            break
    return p


def dispatch_coalition(units: Sequence[GeneratorUnit], demand_mwh: float,
                       period_h: float = 1.0, *, valuation: Valuation = "profit",
                       price_per_mwh: float | None = None) -> CoalitionOutcome:
    """Best dispatch, price and value of the coalition ``units`` (module docstring).

    ``valuation="paper"`` needs ``price_per_mwh``, the consortium's price
    (:func:`twin.market.game_paper.curve_price` at the demand over *all* its units).
    """
    if valuation not in VALUATIONS:
        raise ValueError(f"unknown valuation {valuation!r} (known: {', '.join(VALUATIONS)})")
    paper = valuation == "paper"
    if paper and price_per_mwh is None:
        raise ValueError("the paper's valuation needs the consortium's price_per_mwh")
    names = tuple(u.name for u in units)
    demand_mw = demand_mwh / period_h
    best: tuple[float, list[GeneratorUnit], list[float]] | None = None
    for r in range(1, len(units) + 1):
        for on in itertools.combinations(units, r):
            if not sum(u.p_min_mw for u in on) <= demand_mw <= sum(u.p_max_mw for u in on):
                continue
            if paper:  # minimise sum f'(p) p = sum 2a p^2 + b p: least cost with a doubled
                p = _equal_mc([replace(u, a=2 * u.a, c=0.0) for u in on], demand_mw)
                cost = sum(u.marginal_cost(x) * x for u, x in zip(on, p, strict=True))
            else:
                p = _equal_mc(on, demand_mw)
                cost = sum(u.cost(x) for u, x in zip(on, p, strict=True))
            if best is None or cost < best[0] - 1e-12:
                best = (cost, list(on), p)
    if best is None:
        zero = dict.fromkeys(names, 0.0)
        return CoalitionOutcome(members=names, feasible=False, dispatch_mw=zero, price_per_mwh=0.0,
                                cost=0.0, revenue=0.0, profit=dict(zero), valuation=valuation,
                                period_h=period_h)
    _, committed, p = best
    dispatch = dict.fromkeys(names, 0.0)
    dispatch.update({u.name: float(x) for u, x in zip(committed, p, strict=True)})
    by_name = {u.name: u for u in units}
    h = period_h
    if paper:
        assert price_per_mwh is not None
        price = float(price_per_mwh)
        profit = {n: (price - by_name[n].marginal_cost(dispatch[n])) * dispatch[n] * h for n in names}
    else:
        price = max(u.min_price(x) for u, x in zip(committed, p, strict=True))
        profit = {n: (price * dispatch[n] - by_name[n].cost(dispatch[n])) * h for n in names}
    cost = sum(by_name[n].cost(dispatch[n]) for n in names) * h
    return CoalitionOutcome(members=names, feasible=True, dispatch_mw=dispatch, price_per_mwh=price,
                            cost=cost, revenue=price * demand_mwh, profit=profit, valuation=valuation,
                            period_h=period_h)


@dataclass(frozen=True, slots=True, eq=False)
class ConsortiumResult:
    """Every coalition's outcome, the grand coalition and the Shapley split of its profit."""

    units: tuple[GeneratorUnit, ...]
    demand_mwh: float
    period_h: float
    coalitions: dict[frozenset[str], CoalitionOutcome]
    shapley: dict[str, float]
    #: coalitions whose dispatch a security check rejected (value 0; see :func:`secure_game`)
    rejected: frozenset[frozenset[str]] = frozenset()
    valuation: str = "profit"

    @property
    def grand(self) -> CoalitionOutcome:
        return self.coalitions[frozenset(u.name for u in self.units)]

    def market_value(self, coalition: frozenset[str]) -> float:
        """The coalition's profit from the market alone (before any security check)."""
        return self.coalitions[coalition].value if coalition else 0.0

    def value(self, coalition: frozenset[str]) -> float:
        """The coalition's worth in the game: its market value, 0 when rejected."""
        return 0.0 if coalition in self.rejected else self.market_value(coalition)


def consortium_game(units: Sequence[GeneratorUnit], *, demand_mwh: float,
                    period_h: float = 1.0, valuation: Valuation = "profit") -> ConsortiumResult:
    """All coalitions' best dispatch and values under ``valuation``, and the exact Shapley split."""
    names = [u.name for u in units]
    if len(set(names)) != len(names):
        raise ValueError("unit names must be distinct")
    if demand_mwh <= 0 or period_h <= 0:
        raise ValueError("demand_mwh and period_h must be positive")
    if valuation not in VALUATIONS:
        raise ValueError(f"unknown valuation {valuation!r} (known: {', '.join(VALUATIONS)})")
    price: float | None = None
    if valuation == "paper":  # one price for every coalition: the consortium's Fig. 7 curve
        from twin.market.game_paper import curve_price

        price = curve_price(units, demand_mwh / period_h)[0]
    coalitions: dict[frozenset[str], CoalitionOutcome] = {}
    for r in range(1, len(units) + 1):
        for members in itertools.combinations(units, r):
            out = dispatch_coalition(members, demand_mwh, period_h, valuation=valuation,
                                     price_per_mwh=price)
            coalitions[frozenset(out.members)] = out
    values = {c: o.value for c, o in coalitions.items()}
    phi = shapley_values(values, names)
    return ConsortiumResult(units=tuple(units), demand_mwh=demand_mwh, period_h=period_h,
                            coalitions=coalitions, shapley=phi, valuation=valuation)


def secure_game(result: ConsortiumResult, *, rejected: Iterable[frozenset[str]]) -> ConsortiumResult:
    """``result`` with the ``rejected`` coalitions worth 0 and the exact Shapley split redone.

    A security check (e.g. :mod:`twin.market.game_security`) that rejects a coalition's
    dispatch stops that coalition from trading, so it is worth nothing; the dispatch, price
    and market profits stay as they were (they describe what the coalition *would* do).
    """
    rej = frozenset(frozenset(c) for c in rejected)
    unknown = [sorted(c) for c in rej if c not in result.coalitions]
    if unknown:
        raise ValueError(f"rejected coalitions are not coalitions of the game: {unknown}")
    names = [u.name for u in result.units]
    values = {c: (0.0 if c in rej else o.value) for c, o in result.coalitions.items()}
    return ConsortiumResult(units=result.units, demand_mwh=result.demand_mwh,
                            period_h=result.period_h, coalitions=result.coalitions,
                            shapley=shapley_values(values, names), rejected=rej,
                            valuation=result.valuation)


@dataclass(frozen=True, slots=True, eq=False)
class ConsortiumSettlement:
    """The grand coalition's trade run through a ledger (integer units)."""

    devices: tuple[Any, ...]  # twin.market.types.Device, units first, then the buyer
    orders: list[Any]  # accepted twin.market.types.Order
    clearing: Any  # twin.market.types.Clearing
    settlements: list[Any]  # twin.market.types.SettlementRow
    energy_wh: dict[str, int]  # per unit, sums to the demand exactly
    price_per_mwh: int  # micro-units per MWh
    revenue: dict[str, int]  # micro-units received per unit
    transfers: dict[str, int]  # Shapley side payments inside the consortium, sum 0
    minted: int


def consortium_on_ledger(result: ConsortiumResult, ledger: Any, *,
                         buyer_funds_margin: float = 1.0) -> ConsortiumSettlement:
    """Place, clear and settle the grand coalition's trade on ``ledger`` (interval 0).

    Units are devices 1..n (kind GENERATOR, owners 2..n+1), the buyer device n+1 (LOAD,
    owner n+2). Each committed unit offers its dispatch (Wh, largest-remainder rounded so
    the offers sum to the demand exactly) at ``ceil(min_price * 10**6)``; the buyer bids the
    demand at the highest of these asks, so the uniform price is that ask (the marginal
    price in micro-units); under the paper's valuation every unit asks the consortium's
    price instead. Settlement on meters equal to the dispatch (no imbalance).
    """
    from twin.market.types import Device, DeviceKind, OrderIntent, Side
    from twin.market.units import MICRO, WH_PER_MWH, payment

    g = result.grand
    if not g.feasible:
        raise ValueError("the grand coalition cannot serve the demand")
    interval_s = round(result.period_h * 3600)
    if getattr(ledger, "interval_s", interval_s) != interval_s:
        raise ValueError("ledger interval must equal the game's period")
    names = [u.name for u in result.units]
    demand_wh = round(result.demand_mwh * WH_PER_MWH)
    energy = integer_allocation({n: g.dispatch_mw[n] * result.period_h * WH_PER_MWH for n in names},
                                demand_wh)
    by_name = {u.name: u for u in result.units}
    if result.valuation == "paper":  # every unit takes the consortium's price
        asks = {n: math.ceil(g.price_per_mwh * MICRO) for n in names if energy[n] > 0}
    else:
        asks = {n: math.ceil(by_name[n].min_price(g.dispatch_mw[n]) * MICRO)
                for n in names if energy[n] > 0}
    price = max(asks.values())
    devices = [Device(device_id=j + 1, owner=j + 2, kind=DeviceKind.GENERATOR, bus=0,
                      capacity_w=math.ceil(u.p_max_mw * 1e6)) for j, u in enumerate(result.units)]
    buyer = Device(device_id=len(names) + 1, owner=len(names) + 2, kind=DeviceKind.LOAD, bus=0,
                   capacity_w=math.ceil(result.demand_mwh / result.period_h * 1e6))
    devices.append(buyer)
    for d in devices:
        ledger.register_device(d)
    funds = math.ceil(payment(demand_wh, price) * (1 + buyer_funds_margin)) + 1
    ledger.deposit(buyer.owner, funds)
    intents = [OrderIntent(device_id=j + 1, interval=0, side=Side.SELL, energy_wh=energy[n],
                           price_per_mwh=asks[n]) for j, n in enumerate(names) if energy[n] > 0]
    intents.append(OrderIntent(device_id=buyer.device_id, interval=0, side=Side.BUY,
                               energy_wh=demand_wh, price_per_mwh=price))
    orders = ledger.place_orders(intents)
    clearing = ledger.clear(interval=0)
    metered = {j + 1: -energy[n] for j, n in enumerate(names)} | {buyer.device_id: demand_wh}
    rows = ledger.settle(interval=0, metered_wh=metered)
    revenue = {n: 0 for n in names}
    for r in rows:
        if r.device_id <= len(names):
            revenue[names[r.device_id - 1]] += r.trade_amount + r.imbalance_amount
    # Shapley payout: unit i keeps its counted cost + phi_i; the side payment is phi_i minus
    # its own profit as the valuation counts it (so the payments sum to 0 up to rounding)
    profit_micro = {n: revenue[n] - g.counted_cost(n) * MICRO for n in names}
    transfers = integer_allocation({n: result.shapley[n] * MICRO - profit_micro[n] for n in names}, 0)
    return ConsortiumSettlement(devices=tuple(devices), orders=orders, clearing=clearing,
                                settlements=rows, energy_wh=energy, price_per_mwh=clearing.price_per_mwh,
                                revenue=revenue, transfers=transfers, minted=funds)
