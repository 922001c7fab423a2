"""The service layer's common parts: hooks, context, money rail, backend switch, registry entry.

Market services are value-layer add-ons that ride on the market of a scenario run.

A service (demand response, green certificates, tokenized assets — and H5's green-token
exchange, charger tariffs, green currency) is a :class:`MarketService` with a few hooks the
market adapter (:mod:`twin.cosim.market_sim`) calls at fixed points of each mosaik step
``k`` — mosaik stays the only time loop:

* ``on_dr_call(call)``: the TSO called demand response for ``call.interval`` (a
  :class:`~twin.market.types.DRCall` with the flexible devices' offers, sent by the agents
  model's step ``k`` for ``k + 1`` as the mosaik attribute ``dr_calls``; the service
  queues it);
* ``on_settled(interval=k, trades=, rows=, metered_wh=)``: after the settlement of ``k``
  (``trades`` after curtailment, ``rows`` the settlement rows; both empty when ``k`` had
  no clearing) — every step, with every device's meter reading of ``k``;
* ``on_cleared(interval=k + 1, clearing=)``: after the clearing of ``k + 1``;
* ``on_regulation(report)``: before the settlement of ``k``, the agents' regulation report
  of ``k`` (:class:`twin.agents.regulation.RegulationReport` as a dict; ancillary service);
* ``finish(interval=)``: after the last interval's ``on_settled`` (end-of-run claims).

``rows()`` hands the new result rows (table -> rows, tables in ``twin/results.py``) to the
adapter, which records them; ``kpis()`` and ``value_holdings()`` feed ``kpis.json`` and the
token audit.

**One service, two ledgers.** A service takes either the pure-Python reference class
(``twin/services/<name>/rules.py``) or its on-chain client (``twin/services/<name>/chain.py``):
same method names, same results; :meth:`ServiceContext.backend` is the one switch. Money is the market's settlement token on both: a payer
first withdraws from its market balance to its wallet (:meth:`MoneyRail.withdraw`), the
value contract pulls it from there and pays out to wallets. On chain the contracts move the
tokens themselves; the reference ledger books no wallet-to-wallet transfers, so
:class:`MoneyRail` books them (``pay_in`` / ``pay_out``) as wallet adjustments and contract
holdings. Either way the token audit closes: supply == wallets + market + value contracts.

**Building.** :func:`plan_services` (before the ledger starts: it reserves the extra
participant accounts, e.g. asset investors, so Anvil has enough) then
:meth:`ServicePlan.build` (with the ledger). A new kind of service is one folder under
``twin/services/`` whose ``__init__`` defines a :class:`ServiceDef`, plus one line in
:data:`twin.services.registry.SERVICES`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from twin.geo import geo_point
from twin.market.types import Clearing, Device, DRCall, SettlementRow, Trade
from twin.market.wallets import CONTRACT_WALLET

if TYPE_CHECKING:
    from twin.scenario import Scenario

__all__ = [
    "MarketService",
    "MarketServices",
    "MoneyRail",
    "RailMoney",
    "ServiceContext",
    "ServiceDef",
    "ServiceFlow",
    "ServicePlan",
    "cash",
    "enabled_services",
    "last_tx",
    "plan_services",
    "spec_of",
    "wallet",
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
    #: device ids that can answer a DR call (flexible households, EVs, batteries); the DR
    #: service records their meters as baselines (empty: the EV and battery devices)
    dr_devices: tuple[int, ...] = ()
    #: services of the run by name, for services that read another's results (a service
    #: registers itself when it is built; hooks run in registry order)
    shared: dict[str, Any] = field(default_factory=dict)
    #: bus -> (x, y) in km from the feeder's geodata (empty without); drivers' distances
    bus_xy_km: Mapping[int, tuple[float, float]] = field(default_factory=dict)

    def backend(self, contract: str, *, reference: Callable[[], Any],
                chain: Callable[[], Any]) -> Any:
        """The one backend switch: the on-chain client (``chain()``; a client with a
        ``contract`` of its own has it registered on the money rail with its address) or the
        reference (``reference()``)."""
        if self.chain:
            client = chain()
            own = getattr(client, "contract", None)
            if own is not None:
                self.rail.register(contract, own.address)
            return client
        self.rail.register(contract)
        return reference()


def last_tx(backend: Any) -> str:
    """Hash of the backend's latest transaction ('' for a reference)."""
    return str(getattr(backend, "last_tx_hash", ""))


def wallet(ctx: ServiceContext, account: int) -> int:
    """The account's wallet: the ledger's plus the money rail's bookings (reference)."""
    return int(ctx.ledger.wallet(account)) + ctx.rail.wallet_adjustment(account)


def cash(ctx: ServiceContext, account: int, amount: int) -> int:
    """Bring the account's wallet up to ``amount`` from its free market balance as far as it
    goes; returns what the wallet then holds, capped at ``amount``."""
    have = wallet(ctx, account)
    if have >= amount:
        return amount
    take = min(amount - have, int(ctx.ledger.balance(account).free))
    if take > 0:
        ctx.rail.withdraw(account, take)
    return have + max(take, 0)


class RailMoney:
    """:class:`~twin.market.wallets.Money` of a reference service over the run's money
    rail: wallet-to-wallet payments and the contract's escrow (``CONTRACT_WALLET``) are
    booked as the contract pulling in and paying out."""

    def __init__(self, ctx: ServiceContext, contract: str) -> None:
        self.ctx = ctx
        self.contract = contract

    def balance_of(self, account: int) -> int:
        return wallet(self.ctx, account)

    def transfer(self, sender: int, to: int, amount: int) -> None:
        if amount <= 0:
            return
        if sender != CONTRACT_WALLET:
            self.ctx.rail.pay_in(self.contract, sender, amount)
        if to != CONTRACT_WALLET:
            self.ctx.rail.pay_out(self.contract, to, amount)


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

    def on_dr_call(self, call: DRCall) -> None:
        return None

    def on_settled(self, *, interval: int, trades: Sequence[Trade],
                   rows: Sequence[SettlementRow], metered_wh: Mapping[int, int]) -> None:
        return None

    def on_cleared(self, *, interval: int, clearing: Clearing) -> None:
        return None

    def on_regulation(self, report: Mapping[str, Any]) -> None:
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

    def on_dr_call(self, call: DRCall) -> None:
        for s in self.services:
            s.on_dr_call(call)

    def on_settled(self, *, interval: int, trades: Sequence[Trade],
                   rows: Sequence[SettlementRow], metered_wh: Mapping[int, int]) -> None:
        for s in self.services:
            s.on_settled(interval=interval, trades=trades, rows=rows, metered_wh=metered_wh)

    def on_cleared(self, *, interval: int, clearing: Clearing) -> None:
        for s in self.services:
            s.on_cleared(interval=interval, clearing=clearing)

    def on_regulation(self, report: Mapping[str, Any]) -> None:
        for s in self.services:
            s.on_regulation(report)

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
class ServiceFlow:
    """Money a service moves outside the market's settlement, read from one of its tables:
    ``sign`` * column ``amount`` to column ``account``, on the rows where ``where`` (column,
    value) holds. ``energy``: the money pays for energy (green tokens, charging sessions,
    network fees), so it counts in prosumer revenue / consumer cost too; else it is other
    income (DR pay, assets). ``energy_wh``: column of the energy (Wh) this money paid for,
    counted as service energy (one flow per transfer)."""

    table: str
    account: str
    amount: str
    sign: int
    energy: bool = False
    where: tuple[str, str] | None = None
    energy_wh: str | None = None


#: rows of one results table by name (the KPI module passes the run's tables)
Rows = Callable[[str], Sequence[Mapping[str, Any]]]


def _no_problems(scenario: Any) -> list[tuple[str, str]]:
    return []


def _no_kpis(rows: Rows) -> dict[str, float]:
    return {}


@dataclass(frozen=True)
class ServiceDef:
    """Everything the twin knows of one kind of market service (its folder's ``SERVICE``).

    ``spec``/``default``: the type and default of ``market.services.<name>`` in the scenario;
    ``enabled(spec)``: whether the scenario switches it on; ``accounts(spec)``: extra
    participant accounts it needs (reserved before the ledger starts); ``build(scenario,
    ctx, accounts)``: its services (called only when enabled; imports its run hooks and chain
    client lazily); ``problems(scenario)``: cross-field checks as (field path, message);
    ``tables``: its results tables and their Arrow schemas; ``kpis(rows)``: its KPIs from
    those tables; ``kpi_notes``: unit and meaning of each; ``flows``: money it moves outside
    the market's settlement (``twin compare``); ``pages``: its tables the dashboard's ledger
    page lists (table -> what it holds).
    """

    name: str
    spec: Any
    default: Any
    enabled: Callable[[Any], bool]
    build: Callable[[Scenario, ServiceContext, list[int]], list[MarketService]]
    tables: Mapping[str, pa.Schema]
    accounts: Callable[[Any], int] = lambda spec: 0
    problems: Callable[[Scenario], list[tuple[str, str]]] = _no_problems
    kpis: Callable[[Rows], dict[str, float]] = _no_kpis
    kpi_notes: Mapping[str, str] = field(default_factory=dict)
    flows: tuple[ServiceFlow, ...] = ()
    pages: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def switched(
        cls, name: str, *, spec: Any, results: Any,
        build: Callable[[Scenario, ServiceContext, list[int]], list[MarketService]],
        problems: Callable[[Scenario], list[tuple[str, str]]] = _no_problems, **extra: Any,
    ) -> ServiceDef:
        """A service its spec's ``enabled`` flag switches on (default: the spec's defaults),
        with the tables, KPIs and KPI notes of its ``results`` module (``TABLES``, ``kpis``,
        ``KPI_NOTES``): the shape of most services' ``SERVICE``."""
        return cls(name=name, spec=spec, default=spec(), enabled=lambda s: bool(s.enabled),
                   build=build, problems=problems, tables=results.TABLES, kpis=results.kpis,
                   kpi_notes=results.KPI_NOTES, **extra)


def spec_of(scenario: Scenario, name: str) -> Any:
    """The scenario's ``market.services.<name>`` section."""
    return getattr(scenario.market.services, name)


def _registry() -> tuple[ServiceDef, ...]:
    from twin.services.registry import SERVICES

    return SERVICES


@dataclass
class ServicePlan:
    """The services of a scenario before the ledger exists."""

    scenario: Scenario
    model: Any
    #: extra participant accounts (after the model's), by service name
    accounts: dict[str, list[int]] = field(default_factory=dict)

    @property
    def all_accounts(self) -> list[int]:
        return sorted(a for accts in self.accounts.values() for a in accts)

    @property
    def enabled(self) -> list[str]:
        """Names of the services the scenario switches on (KPIs are given for these)."""
        return enabled_services(self.scenario)

    def build(self, *, ledger: Any, chain: bool) -> MarketServices:
        model = self.model
        rail = MoneyRail(ledger, chain=chain)
        ctx = ServiceContext(
            ledger=ledger, chain=chain, rail=rail,
            devices={d.device_id: d for d in model.devices},
            agent_devices=model.agent_devices(),
            interval_s=self.scenario.market.interval_s,
            dr_devices=tuple(model.dr_devices()),
            bus_xy_km=_bus_xy_km(getattr(getattr(model, "feeder", None), "net", None)),
        )
        services: list[MarketService] = []
        for d in _registry():
            if d.enabled(spec_of(self.scenario, d.name)):
                services += d.build(self.scenario, ctx, self.accounts.get(d.name, []))
        return MarketServices(services, rail=rail)


def enabled_services(scenario: Scenario) -> list[str]:
    """Names of the services the scenario switches on, in registry order."""
    return [d.name for d in _registry() if d.enabled(spec_of(scenario, d.name))]


def _bus_xy_km(net: Any) -> dict[int, tuple[float, float]]:
    """Bus positions in km (equirectangular around the feeder) from ``net.bus.geo``."""
    if net is None or "geo" not in net.bus.columns:
        return {}
    pts = {int(b): p for b, g in net.bus["geo"].items() if (p := geo_point(g)) is not None}
    if not pts:
        return {}
    lat0 = sum(p[1] for p in pts.values()) / len(pts)
    kx = 111.32 * math.cos(math.radians(lat0))
    return {b: (lon * kx, lat * 110.57) for b, (lon, lat) in pts.items()}


def plan_services(scenario: Scenario, *, model: Any, first_account: int) -> ServicePlan:
    """Reserve the extra accounts of the scenario's services, from ``first_account`` on."""
    plan = ServicePlan(scenario=scenario, model=model)
    nxt = first_account
    for d in _registry():
        spec = spec_of(scenario, d.name)
        n = d.accounts(spec) if d.enabled(spec) else 0
        plan.accounts[d.name] = list(range(nxt, nxt + n))
        nxt += n
    return plan
