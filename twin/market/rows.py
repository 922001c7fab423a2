"""Result rows of the market tables (``orders``, ``trades``, ``settlements``, ``market``),
built in one place for every run that records a market (the feeder run's market step, the
cooperative-game run). Schemas: :data:`twin.results.SCHEMAS`."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from itertools import repeat
from operator import attrgetter
from typing import Any, overload

from twin.market.types import Clearing, Order, SettlementRow, Side, Trade

__all__ = ["RowBlock", "market_row", "order_block", "order_rows", "settlement_block",
           "settlement_rows", "trade_block", "trade_rows"]

Row = dict[str, Any]
_SIDE_NAMES = {Side.BUY: "buy", Side.SELL: "sell"}


class RowBlock(Sequence[Row]):
    """Rows held as columns (name -> one list of values), as a recorder's ``add_columns``
    takes them: a town interval's ~10,000 orders and ~11,000 settlements need no dict per
    row on their way to the results. Read as a sequence it gives the same dict rows as
    :func:`order_rows` and the others (built on demand); equal to any sequence of equal rows."""

    __slots__ = ("columns", "n")

    def __init__(self, columns: dict[str, list[Any]], n: int) -> None:
        self.columns, self.n = columns, n

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, i: int) -> Row: ...
    @overload
    def __getitem__(self, i: slice) -> list[Row]: ...
    def __getitem__(self, i: int | slice) -> Row | list[Row]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if not -self.n <= i < self.n:
            raise IndexError(i)
        return {k: v[i] for k, v in self.columns.items()}

    def __iter__(self) -> Iterator[Row]:
        names = list(self.columns)
        return (dict(zip(names, values, strict=True))
                for values in zip(*self.columns.values(), strict=True))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RowBlock({self.n} rows: {list(self.columns)})"


def _block(records: Sequence[Any], time_s: int, names: tuple[str, ...]) -> RowBlock:
    n = len(records)
    cols: dict[str, list[Any]] = {"time_s": list(repeat(time_s, n))}
    cols.update((k, list(map(attrgetter(k), records))) for k in names)
    return RowBlock(cols, n)


_ORDER_NAMES = ("interval", "order_id", "device_id", "owner", "side", "energy_wh", "price_per_mwh")
_TRADE_NAMES = ("interval", "trade_id", "buy_order_id", "sell_order_id", "buyer_device",
                "seller_device", "cleared_wh", "energy_wh", "curtailed_wh", "price_per_mwh",
                "creator", "created_s")
_SETTLEMENT_NAMES = ("interval", "device_id", "owner", "traded_wh", "metered_wh", "imbalance_wh",
                     "trade_amount", "imbalance_amount", "debt")


def order_block(orders: Sequence[Order], *, time_s: int) -> RowBlock:
    """:func:`order_rows` as a :class:`RowBlock`."""
    block = _block(orders, time_s, _ORDER_NAMES)
    block.columns["side"] = [_SIDE_NAMES.get(s) or Side(s).name.lower() for s in block.columns["side"]]
    return block


def trade_block(trades: Sequence[Trade], *, time_s: int) -> RowBlock:
    """:func:`trade_rows` (in trade-id order) as a :class:`RowBlock`."""
    return _block(sorted(trades, key=attrgetter("trade_id")), time_s, _TRADE_NAMES)


def settlement_block(rows: Sequence[SettlementRow], *, time_s: int) -> RowBlock:
    """:func:`settlement_rows` as a :class:`RowBlock`."""
    return _block(rows, time_s, _SETTLEMENT_NAMES)


def order_rows(orders: Iterable[Order], *, time_s: int) -> list[Row]:
    return [{"time_s": time_s, "interval": o.interval, "order_id": o.order_id,
             "device_id": o.device_id, "owner": o.owner, "side": _SIDE_NAMES.get(o.side) or Side(o.side).name.lower(),
             "energy_wh": o.energy_wh, "price_per_mwh": o.price_per_mwh} for o in orders]


def trade_rows(trades: Iterable[Trade], *, time_s: int) -> list[Row]:
    """One row per trade, in trade-id order."""
    return [{"time_s": time_s, "interval": t.interval, "trade_id": t.trade_id,
             "buy_order_id": t.buy_order_id, "sell_order_id": t.sell_order_id,
             "buyer_device": t.buyer_device, "seller_device": t.seller_device,
             "cleared_wh": t.cleared_wh, "energy_wh": t.energy_wh,
             "curtailed_wh": t.curtailed_wh, "price_per_mwh": t.price_per_mwh,
             "creator": t.creator, "created_s": t.created_s}
            for t in sorted(trades, key=lambda t: t.trade_id)]


def settlement_rows(rows: Iterable[SettlementRow], *, time_s: int) -> list[Row]:
    return [{"time_s": time_s, "interval": r.interval, "device_id": r.device_id,
             "owner": r.owner, "traded_wh": r.traded_wh, "metered_wh": r.metered_wh,
             "imbalance_wh": r.imbalance_wh, "trade_amount": r.trade_amount,
             "imbalance_amount": r.imbalance_amount, "debt": r.debt} for r in rows]


def market_row(clearing: Clearing, *, time_s: int, interval: int, n_orders: int,
               curtailed_wh: int) -> Row:
    return {"time_s": time_s, "interval": interval, "price_per_mwh": clearing.price_per_mwh,
            "volume_wh": clearing.volume_wh, "n_orders": n_orders,
            "n_trades": len(clearing.trades), "curtailed_wh": curtailed_wh}
