"""Market services: value-layer add-ons that ride on the market of a scenario run.

A service (demand response, green certificates, tokenized assets — and H5's green-token
exchange, charger tariffs, green currency) is a :class:`MarketService` with a few hooks the
market adapter (:mod:`twin.cosim.market_sim`) calls at fixed points of each mosaik step
``k`` — mosaik stays the only time loop:

* ``on_dr_call(event)``: the TSO called demand response for ``event.interval`` (fired by
  the agents model during its step ``k`` for ``k + 1``; the service queues it);
* ``on_settled(interval=k, trades=, rows=, metered_wh=)``: after the settlement of ``k``
  (``trades`` after curtailment, ``rows`` the settlement rows; both empty when ``k`` had
  no clearing) — every step, with every device's meter reading of ``k``;
* ``on_cleared(interval=k + 1, clearing=)``: after the clearing of ``k + 1``;
* ``finish(interval=)``: after the last interval's ``on_settled`` (end-of-run claims).

``rows()`` hands the new result rows (table -> rows, tables in ``twin/results.py``) to the
adapter, which records them; ``kpis()`` and ``value_holdings()`` feed ``kpis.json`` and the
token audit.

**One service, two ledgers.** A service takes either the pure-Python reference class
(``twin/market/demand_response.py`` ...) or its on-chain client (``twin/chain/value.py``):
same method names, same results. Money is the market's settlement token on both: a payer
first withdraws from its market balance to its wallet (:meth:`MoneyRail.withdraw`), the
value contract pulls it from there and pays out to wallets. On chain the contracts move the
tokens themselves; the reference ledger books no wallet-to-wallet transfers, so
:class:`MoneyRail` books them (``pay_in`` / ``pay_out``) as wallet adjustments and contract
holdings. Either way the token audit closes: supply == wallets + market + value contracts.

**Building.** :func:`plan_services` (before the ledger starts: it reserves the extra
participant accounts, e.g. asset investors, so Anvil has enough) then
:meth:`ServicePlan.build` (with the ledger). A new kind of service adds one
:class:`ServiceBuilder` to :func:`builders`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from twin.market.types import Clearing, Device, SettlementRow, Trade
from twin.scenario import Scenario

__all__ = [
    "MarketService",
    "MarketServices",
    "MoneyRail",
    "ServiceBuilder",
    "ServiceContext",
    "ServicePlan",
    "builders",
    "plan_services",
]


class MoneyRail:
    """Settlement tokens between market balances, wallets and the value contracts."""

    def __init__(self, ledger: Any, *, chain: bool) -> None:
        self.ledger = ledger
        self.chain = chain
        self._held: dict[str, int] = defaultdict(int)  # reference: contract -> tokens
        self._adjust: dict[int, int] = defaultdict(int)  # reference: wallet corrections
        self._addresses: dict[str, str] = {}  # chain: contract -> address

    def register(self, contract: str, address: str | None = None) -> None:
        """A value contract that may hold tokens (its address on chain)."""
        if address is not None:
            self._addresses[contract] = address

    def withdraw(self, account: int, amount: int) -> None:
        """Move ``amount`` from the account's free market balance to its wallet."""
        if amount > 0:
            self.ledger.withdraw(account, amount)

    def pay_in(self, contract: str, account: int, amount: int) -> None:
        """``contract`` pulled ``amount`` from the account's wallet."""
        if not self.chain and amount:
            self._adjust[account] -= amount
            self._held[contract] += amount

    def pay_out(self, contract: str, account: int, amount: int) -> None:
        """``contract`` paid ``amount`` to the account's wallet."""
        if not self.chain and amount:
            self._adjust[account] += amount
            self._held[contract] -= amount

    def holdings(self) -> int:
        """Tokens the value contracts hold (escrow, undistributed or unclaimed revenue)."""
        if not self.chain:
            return sum(self._held.values())
        token = self.ledger.token
        return sum(int(token.functions.balanceOf(a).call()) for a in self._addresses.values())

    def wallet_adjustments(self) -> dict[int, int]:
        """Reference only: wallet balance changes the reference ledger does not book."""
        return {a: v for a, v in self._adjust.items() if v}

    def wallet_adjustment(self, account: int) -> int:
        """Reference only: one account's wallet change the reference ledger does not book."""
        return self._adjust.get(account, 0)

    def addresses(self) -> dict[str, str]:
        return dict(self._addresses)


@dataclass
class ServiceContext:
    """What a service may use: the ledger, the money rail and the feeder's participants."""

    ledger: Any
    chain: bool
    rail: MoneyRail
    devices: dict[int, Device]
    #: agent name (``household_3``, ``ev_0``, ``storage_0``) -> its market device id
    agent_devices: dict[str, int]
    interval_s: int
    #: interval -> the flexible devices' offered DR reductions (Wh by device id)
    dr_offers: Callable[[int], Mapping[int, int]]
    #: device ids that can answer a DR call (flexible households, EVs, batteries); the DR
    #: service records their meters as baselines (empty: the EV and battery devices)
    dr_devices: tuple[int, ...] = ()
    #: services of the run by name, for services that read another's results (a service
    #: registers itself when it is built; hooks run in builder order)
    shared: dict[str, Any] = field(default_factory=dict)
    #: bus -> (x, y) in km from the feeder's geodata (empty without); drivers' distances
    bus_xy_km: Mapping[int, tuple[float, float]] = field(default_factory=dict)


class MarketService:
    """Base class: every hook is a no-op; see the module docstring for when each runs."""

    name: str = "service"
    #: results tables the service fills (declared in twin/results.py SCHEMAS)
    tables: tuple[str, ...] = ()
    #: False: the P2P auction takes no orders while this service runs (the market still
    #: clears an empty book and settles every meter at the tariffs); the green exchange
    takes_orders: bool = True

    def __init__(self) -> None:
        self._rows: dict[str, list[dict[str, Any]]] = defaultdict(list)

    def on_dr_call(self, event: Any) -> None:
        return None

    def on_settled(self, *, interval: int, trades: Sequence[Trade],
                   rows: Sequence[SettlementRow], metered_wh: Mapping[int, int]) -> None:
        return None

    def on_cleared(self, *, interval: int, clearing: Clearing) -> None:
        return None

    def finish(self, *, interval: int) -> None:
        return None

    def record(self, table: str, row: dict[str, Any]) -> None:
        if table not in self.tables:
            raise KeyError(f"service {self.name}: table {table!r} not among {self.tables}")
        self._rows[table].append(row)

    def rows(self) -> dict[str, list[dict[str, Any]]]:
        out = {t: r for t, r in self._rows.items() if r}
        self._rows = defaultdict(list)
        return out

    def kpis(self) -> dict[str, float]:
        return {}


class MarketServices:
    """The services of one run, called in a fixed order (the order of :func:`builders`)."""

    def __init__(self, services: Sequence[MarketService], *, rail: MoneyRail) -> None:
        self.services = list(services)
        self.rail = rail

    def __bool__(self) -> bool:
        return bool(self.services)

    @property
    def takes_orders(self) -> bool:
        """Whether the P2P auction takes orders (no service says otherwise)."""
        return all(s.takes_orders for s in self.services)

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.services]

    def on_dr_call(self, event: Any) -> None:
        for s in self.services:
            s.on_dr_call(event)

    def on_settled(self, *, interval: int, trades: Sequence[Trade],
                   rows: Sequence[SettlementRow], metered_wh: Mapping[int, int]) -> None:
        for s in self.services:
            s.on_settled(interval=interval, trades=trades, rows=rows, metered_wh=metered_wh)

    def on_cleared(self, *, interval: int, clearing: Clearing) -> None:
        for s in self.services:
            s.on_cleared(interval=interval, clearing=clearing)

    def finish(self, *, interval: int) -> None:
        for s in self.services:
            s.finish(interval=interval)

    def rows(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for s in self.services:
            for table, rows in s.rows().items():
                out[table].extend(rows)
        return dict(out)

    def value_holdings(self) -> int:
        return self.rail.holdings()

    def wallet_adjustments(self) -> dict[int, int]:
        return self.rail.wallet_adjustments()

    def contracts(self) -> dict[str, str]:
        """Value contracts deployed for the run (name -> address; chain only)."""
        return self.rail.addresses()


@dataclass(frozen=True)
class ServiceBuilder:
    """How one kind of service comes into a run.

    ``enabled(scenario)``: whether the scenario switches it on (its KPIs are then given);
    ``accounts(scenario)``: extra participant accounts it needs (reserved before the ledger
    starts); ``build(scenario, ctx, accounts)``: its services (called only when enabled).
    """

    name: str
    enabled: Callable[[Scenario], bool]
    accounts: Callable[[Scenario], int]
    build: Callable[[Scenario, ServiceContext, list[int]], list[MarketService]]


def builders() -> list[ServiceBuilder]:
    """Every kind of service, in the order their hooks run."""
    from twin.market.pilot_services import PILOT_BUILDERS
    from twin.market.value_services import VALUE_BUILDERS

    return [*VALUE_BUILDERS, *PILOT_BUILDERS]


@dataclass
class ServicePlan:
    """The services of a scenario before the ledger exists."""

    scenario: Scenario
    model: Any
    #: extra participant accounts (after the model's), by builder name
    accounts: dict[str, list[int]] = field(default_factory=dict)

    @property
    def all_accounts(self) -> list[int]:
        return sorted(a for accts in self.accounts.values() for a in accts)

    @property
    def enabled(self) -> list[str]:
        """Names of the services the scenario switches on (KPIs are given for these)."""
        return [b.name for b in builders() if b.enabled(self.scenario)]

    def build(self, *, ledger: Any, chain: bool) -> MarketServices:
        model = self.model
        rail = MoneyRail(ledger, chain=chain)
        ctx = ServiceContext(
            ledger=ledger, chain=chain, rail=rail,
            devices={d.device_id: d for d in model.devices},
            agent_devices=model.agent_devices(),
            interval_s=self.scenario.market.interval_s,
            dr_offers=model.dr_offers,
            dr_devices=tuple(model.dr_devices()),
            bus_xy_km=_bus_xy_km(getattr(getattr(model, "feeder", None), "net", None)),
        )
        services: list[MarketService] = []
        for b in builders():
            if b.enabled(self.scenario):
                services += b.build(self.scenario, ctx, self.accounts.get(b.name, []))
        out = MarketServices(services, rail=rail)
        if out:
            model.demand_response_hooks.append(out.on_dr_call)
        return out


def _bus_xy_km(net: Any) -> dict[int, tuple[float, float]]:
    """Bus positions in km (equirectangular around the feeder) from ``net.bus.geo``."""
    if net is None or "geo" not in net.bus.columns:
        return {}
    from twin.topology import _point

    pts = {int(b): p for b, g in net.bus["geo"].items() if (p := _point(g)) is not None}
    if not pts:
        return {}
    lat0 = sum(p[1] for p in pts.values()) / len(pts)
    kx = 111.32 * math.cos(math.radians(lat0))
    return {b: (lon * kx, lat * 110.57) for b, (lon, lat) in pts.items()}


def plan_services(scenario: Scenario, *, model: Any, first_account: int) -> ServicePlan:
    """Reserve the extra accounts of the scenario's services, from ``first_account`` on."""
    plan = ServicePlan(scenario=scenario, model=model)
    nxt = first_account
    for b in builders():
        n = b.accounts(scenario) if b.enabled(scenario) else 0
        plan.accounts[b.name] = list(range(nxt, nxt + n))
        nxt += n
    return plan
