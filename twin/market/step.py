"""The market's protocol for one step, without mosaik: curtail, settle, take orders, clear.

:class:`MarketStep` is the pure core the mosaik adapter (:mod:`twin.cosim.market_sim`) only
calls. At step ``k`` (delivery interval ``k``) it applies the DSO's curtailments of ``k``,
settles ``k`` on the meter readings, then takes the orders for ``k + 1``, clears them and
returns the trades (the agents receive them at the next step). Interval 0 has no trades:
gate closure is one interval before delivery.

Market services (``services``: :class:`twin.services.base.MarketServices` or None) are
called at fixed points of the step: ``on_dr_call`` for each demand-response call of the
step (before the settlement), ``on_settled`` after the settlement of ``k`` (every step,
with the meter readings of ``k``), ``on_cleared`` after the clearing of ``k + 1``,
``finish`` after the last interval. Every result row of the step comes back in
:attr:`StepResult.rows` (table -> rows), built by :mod:`twin.market.rows`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from twin.market.audit import drain_tx_log
from twin.market.provisional import MeterDesk
from twin.market.rows import RowBlock, market_row, order_block, settlement_block, trade_block
from twin.market.types import Clearing, DRCall, OrderIntent, Trade

__all__ = ["Curtailment", "MarketLog", "MarketStep", "StepResult", "island_market_rows"]


def island_market_rows(trades: Sequence[Trade], books: Mapping[int, int], *, interval: int,
                       time_s: int) -> list[dict[str, Any]]:
    """One row per island book of a split interval: trades, volume (Wh) and the book's
    uniform price (micro-units per MWh; 0 without trades)."""
    out = []
    for b in sorted(set(books.values())):
        mine = [t for t in trades if books.get(t.buyer_device) == b]
        vol = sum(t.cleared_wh for t in mine)
        out.append({"time_s": time_s, "interval": interval, "island": b,
                    "devices": sum(1 for v in books.values() if v == b), "trades": len(mine),
                    "volume_wh": vol, "price_per_mwh": mine[0].price_per_mwh if mine else 0})
    return out


@dataclass
class MarketLog:
    """What the market did, for the summary and KPIs (filled as the run goes)."""

    clearings: dict[int, Clearing] = field(default_factory=dict)
    curtailed_wh: dict[int, int] = field(default_factory=dict)
    n_orders: dict[int, int] = field(default_factory=dict)
    last_settled: int = -1

    def price_history(self) -> list[int]:
        """Clearing prices of the intervals that traded, oldest first."""
        c = self.clearings
        return [c[i].price_per_mwh for i in sorted(c) if c[i].volume_wh > 0]


@dataclass(frozen=True, slots=True)
class Curtailment:
    trade_id: int
    energy_wh: int


@dataclass
class StepResult:
    #: the interval whose trades these are (``k + 1``) and its trades after clearing
    interval: int
    trades: list[Trade]
    price_history: list[int]
    #: results table -> new rows of this step
    rows: dict[str, list[dict[str, Any]]]


class MarketStep:
    """One ledger's market, stepped interval by interval (module docstring)."""

    def __init__(self, *, ledger: Any, interval_s: int, n_intervals: int, log: MarketLog,
                 services: Any = None, signers: Any = None,
                 desk: MeterDesk | None = None) -> None:
        self.ledger = ledger
        #: meter data faults (scenario faults.data): provisional settlement and true-ups
        self.desk = desk
        #: the devices' keys (twin.market.device_signers): orders and readings device-signed
        self.signers = signers
        #: daily signing (twin.market.daily_signers): schedules and daily reading batches
        self._daily = bool(getattr(signers, "daily", False))
        if self._daily and desk is not None:
            raise ValueError("market.signing: daily settles every interval provisionally on "
                             "the relayed readings; it does not combine with faults.data")
        self.interval_s = interval_s
        self.n_intervals = n_intervals
        self.log = log
        self.services = services

    def step(self, k: int, *, orders_interval: int | None, orders: Sequence[OrderIntent],
             curtailments: Sequence[Curtailment], metered_wh: Mapping[int, int] | None,
             metered_interval: int | None, dr_calls: Sequence[DRCall] = (),
             envelopes: Mapping[str, Mapping[int, int]] | None = None,
             regulation: Mapping[str, Any] | None = None,
             books: Mapping[int, int] | None = None,
             expected: Sequence[int] | None = None,
             late: Sequence[Sequence[int]] = (),
             settle_interval: int | None = None) -> StepResult:
        """Step ``k``: the inputs of the agents' step ``k`` in, the trades of ``k + 1`` out.

        ``regulation``: the agents' regulation report of ``k`` (ancillary service), handed to
        the services before the settlement of ``k``. ``books``: while the feeder is split into
        electrical islands (twin/faults), device -> island book: only devices with a book
        trade, each book clears on its own (``island_market`` rows: one per book, its price
        and volume). ``expected`` / ``late``: meter-data faults (twin/cosim/meters_sim.py): the
        devices whose reading was due, and late readings that true up a provisional settlement.
        ``settle_interval``: the interval whose readings are settled now (default ``k``; HIL
        runs settle ``k - 1`` at ``k·T`` on the energy delivered per HIL step, nothing when
        negative)."""
        rows: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.ledger.set_time(now_s=k * self.interval_s)  # block time = simulation time
        if self.services:
            for call in dr_calls:
                self.services.on_dr_call(call)
        s = k if settle_interval is None else settle_interval
        metered = None if metered_wh is None or metered_interval != s else dict(metered_wh)
        if self.services and regulation is not None and metered is not None:
            self.services.on_regulation(dict(regulation))
        if self.desk is not None and metered is not None:
            metered = self.desk.take(interval=k, readings=metered)
        if s >= 0:
            self._deliver(s, curtailments, metered, rows, expected=expected)
        if self.desk is not None:
            self._true_up(k, late, rows)
        result = StepResult(interval=k + 1, trades=[], price_history=self.log.price_history(),
                            rows=rows)
        if orders_interval is not None and orders_interval < self.n_intervals:
            if envelopes is not None:  # the DSO's envelopes first: the ledger checks orders on them
                self.ledger.set_envelopes(orders_interval, export_wh=envelopes["export"],
                                          import_wh=envelopes["import"])
            if books is not None:
                orders = [o for o in orders if o.device_id in books]
                if len(set(books.values())) > 1:  # one book needs no split (any ledger)
                    self.ledger.set_books(orders_interval, books)
            result = self._clear(orders_interval, orders, rows)
            if books is not None:
                rows["island_market"] += island_market_rows(
                    result.trades, books, interval=orders_interval,
                    time_s=orders_interval * self.interval_s)
        if self.services:
            if s == self.n_intervals - 1:
                self.services.finish(interval=s)
            for table, new in self.services.rows().items():
                rows[table] = [*rows[table], *new]  # after a RowBlock's rows too
        rows["chain"].extend(drain_tx_log(self.ledger, interval_s=self.interval_s))
        faults = getattr(self.ledger, "drain_fault_log", None)  # a flaky chain (faults.chain)
        if faults is not None:
            for table, new in faults(time_s=k * self.interval_s, interval=k).items():
                rows[table].extend(new)
        return result

    def _clear(self, interval: int, intents: Sequence[OrderIntent],
               rows: dict[str, list[dict[str, Any]]]) -> StepResult:
        if self.services and not self.services.takes_orders:
            intents = []  # e.g. the green-token exchange: no P2P orders, tariffs settle
        if self._daily:  # each order relayed with its device's signed day schedule
            orders = self.ledger.place_scheduled_orders(
                self.signers.sign_orders(list(intents), domain=self.ledger.domain))
        elif self.signers is not None:  # the operator relays what each device signed
            orders = self.ledger.place_signed_orders(
                self.signers.sign_orders(list(intents), domain=self.ledger.domain))
        else:
            orders = self.ledger.place_orders(list(intents))
        _put(rows, "orders", order_block(orders, time_s=interval * self.interval_s))
        clearing = self.ledger.clear(interval=interval)
        if self.services:
            self.services.on_cleared(interval=interval, clearing=clearing)
        self.log.clearings[interval] = clearing
        self.log.n_orders[interval] = len(orders)
        return StepResult(interval=interval, trades=list(clearing.trades),
                          price_history=self.log.price_history(), rows=rows)

    def _deliver(self, k: int, curtailments: Sequence[Curtailment],
                 metered: dict[int, int] | None, rows: dict[str, list[dict[str, Any]]],
                 expected: Sequence[int] | None = None) -> None:
        clearing = self.log.clearings.get(k)
        if self._daily and metered is not None:  # the meters keep their day profiles
            self.signers.record_readings(interval=k, metered_wh=metered)
        if clearing is None:  # nothing traded for this interval (interval 0)
            if self.services and metered is not None:
                self.services.on_settled(interval=k, trades=[], rows=[], metered_wh=metered)
            return
        if metered is None:
            raise ValueError(f"market: no meter readings for interval {k}")
        trades = {t.trade_id: t for t in clearing.trades}
        if curtailments:  # one curtailBatch transaction (chunked) for the interval's curtailments
            for t in self.ledger.curtail_batch([(c.trade_id, c.energy_wh) for c in curtailments]):
                trades[t.trade_id] = t
        kw: dict[str, Any] = {}
        estimates: dict[int, int] = {}
        if self.desk is not None:  # readings missing at the deadline: settled on estimates
            estimates = self.desk.estimates(interval=k, expected=expected or sorted(metered),
                                            readings=metered, trades=list(trades.values()))
            kw = {"estimated_wh": estimates}
        if self._daily:  # provisional on the relayed readings; the signed day batch trues up
            settled = self.ledger.settle_relayed(k, metered)
        elif self.signers is not None:
            settled = self.ledger.settle_signed(k, self.signers.sign_readings(
                interval=k, metered_wh=metered, domain=self.ledger.domain), **kw)
        else:
            settled = self.ledger.settle(interval=k, metered_wh=metered, **kw)
        time_s = k * self.interval_s
        if self.desk is not None:
            self.desk.settled_on(interval=k, estimates=estimates)
            traded = {r.device_id: r.traded_wh for r in settled}
            rows["provisional"] += [{"time_s": time_s, "interval": k, "device_id": d,
                                     "estimated_wh": wh, "traded_wh": traded.get(d, 0)}
                                    for d, wh in sorted(estimates.items())]
            metered = metered | estimates
        curtailed = sum(t.curtailed_wh for t in trades.values())
        self.log.curtailed_wh[k] = curtailed
        self.log.last_settled = k
        final = sorted(trades.values(), key=lambda t: t.trade_id)
        _put(rows, "trades", trade_block(final, time_s=time_s))
        _put(rows, "settlements", settlement_block(settled, time_s=time_s))
        rows["market"].append(market_row(clearing, time_s=time_s, interval=k,
                                         n_orders=self.log.n_orders.get(k, 0),
                                         curtailed_wh=curtailed))
        if self._daily and self.signers.day_ends(k, n_intervals=self.n_intervals):
            self._true_up_day(k, rows)
        if self.services:
            self.services.on_settled(interval=k, trades=final, rows=settled, metered_wh=metered)

    def _true_up_day(self, k: int, rows: dict[str, list[dict[str, Any]]]) -> None:
        """The devices' signed readings of ``k``'s day arrive: true up what differs."""
        batches = self.signers.daily_readings(day=self.signers.day_of(k), domain=self.ledger.domain)
        for tu in self.ledger.true_up_daily(batches):
            rows["trueups"].append(_trueup_row(tu, time_s=k * self.interval_s))

    def _true_up(self, k: int, late: Sequence[Sequence[int]],
                 rows: dict[str, list[dict[str, Any]]]) -> None:
        """True up the provisional settlements whose real readings arrived at step ``k``."""
        assert self.desk is not None
        for interval, d, wh in self.desk.late(late):
            if self.signers is not None:
                reading = self.signers.sign_readings(interval=interval, metered_wh={d: wh},
                                                     domain=self.ledger.domain)[0]
                tu = self.ledger.true_up_signed(reading)
            else:
                tu = self.ledger.true_up(interval, d, wh)
            rows["trueups"].append(_trueup_row(tu, time_s=k * self.interval_s))


def _put(rows: dict[str, Any], table: str, block: RowBlock) -> None:
    """A table's rows of the step as one column block (:class:`RowBlock`) when it has none
    yet, else appended as dict rows."""
    if rows.get(table):
        rows[table] = [*rows[table], *block]
    else:
        rows[table] = block


def _trueup_row(tu: Any, *, time_s: int) -> dict[str, Any]:
    return {"time_s": time_s, "interval": tu.interval, "device_id": tu.device_id,
            "owner": tu.owner, "estimated_wh": tu.estimated_wh, "metered_wh": tu.metered_wh,
            "delta_wh": tu.delta_wh, "amount": tu.amount, "paid": tu.paid, "debt": tu.debt}
