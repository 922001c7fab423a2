"""The stopped run's own market tables, as the record of the intervals whose events the
chain node no longer holds (issue #24).

The twin's Anvil keeps the receipts and logs of its last ``KEEP_TX_BLOCKS`` blocks only
(``--transaction-block-keeper``), and a state it dumps holds no more: after a day or so of
market steps the early intervals' ``OrdersPlaced``, ``TradeMatched``, ``Curtailed``,
``Cleared`` and ``Settled`` events are gone. :class:`twin.resume.ReplayLedger` answers the
replayed steps from the chain's logs; for an interval whose logs are gone it answers from
these tables instead (``orders``, ``trades``, ``settlements``, ``market``), which the stopped
run wrote from the very same events. The replay's checks (the agents ask for exactly what was
booked, the readings are the settled ones) run against them as against the logs.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from twin.market.types import Clearing, Order, SettlementRow, Side, Trade

__all__ = ["TableArchive"]

_TABLES = ("orders", "trades", "settlements", "market")


class TableArchive:
    """The rows of a stopped run's market tables by interval (intervals up to ``last``)."""

    def __init__(self, rows: dict[str, list[dict[str, Any]]], *, last: int) -> None:
        self._by: dict[str, dict[int, list[dict[str, Any]]]] = {}
        for name in _TABLES:
            by: dict[int, list[dict[str, Any]]] = defaultdict(list)
            for r in rows.get(name, []):
                if int(r["interval"]) <= last:
                    by[int(r["interval"])].append(r)
            self._by[name] = dict(by)

    @classmethod
    def read(cls, out_dir: Path, *, last: int) -> TableArchive:
        """The tables of ``out_dir`` (a missing or unreadable one holds nothing)."""
        from twin.results import read_parquet

        rows: dict[str, list[dict[str, Any]]] = {}
        for name in _TABLES:
            try:
                rows[name] = read_parquet(Path(out_dir) / f"{name}.parquet").to_pylist()
            except (OSError, ValueError):
                rows[name] = []
        return cls(rows, last=last)

    def orders(self, interval: int) -> list[Order]:
        return [Order(order_id=int(r["order_id"]), device_id=int(r["device_id"]),
                      owner=int(r["owner"]), interval=int(r["interval"]),
                      side=Side[str(r["side"]).upper()], energy_wh=int(r["energy_wh"]),
                      price_per_mwh=int(r["price_per_mwh"]))
                for r in sorted(self._by["orders"].get(interval, []), key=lambda r: r["order_id"])]

    def trades(self, interval: int, *, announced: bool = False) -> list[Trade]:
        """The interval's trades after curtailment (``announced``: as cleared)."""
        return [Trade(trade_id=int(r["trade_id"]), interval=int(r["interval"]),
                      buy_order_id=int(r["buy_order_id"]), sell_order_id=int(r["sell_order_id"]),
                      buyer_device=int(r["buyer_device"]), seller_device=int(r["seller_device"]),
                      cleared_wh=int(r["cleared_wh"]),
                      energy_wh=int(r["cleared_wh"] if announced else r["energy_wh"]),
                      price_per_mwh=int(r["price_per_mwh"]), creator=int(r["creator"]),
                      created_s=int(r["created_s"]))
                for r in sorted(self._by["trades"].get(interval, []), key=lambda r: r["trade_id"])]

    def clearing(self, interval: int) -> Clearing | None:
        """The interval's clearing as announced, or None when the tables hold none."""
        rows = self._by["market"].get(interval)
        if not rows:
            return None
        return Clearing(interval=interval, price_per_mwh=int(rows[-1]["price_per_mwh"]),
                        volume_wh=int(rows[-1]["volume_wh"]),
                        trades=tuple(self.trades(interval, announced=True)))

    def settlement_rows(self, interval: int) -> list[SettlementRow]:
        return [SettlementRow(interval=int(r["interval"]), device_id=int(r["device_id"]),
                              owner=int(r["owner"]), traded_wh=int(r["traded_wh"]),
                              metered_wh=int(r["metered_wh"]), imbalance_wh=int(r["imbalance_wh"]),
                              trade_amount=int(r["trade_amount"]),
                              imbalance_amount=int(r["imbalance_amount"]), debt=int(r["debt"]))
                for r in sorted(self._by["settlements"].get(interval, []),
                                key=lambda r: r["device_id"])]
