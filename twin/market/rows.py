"""Result rows of the market tables (``orders``, ``trades``, ``settlements``, ``market``),
built in one place for every run that records a market (the feeder run's market step, the
cooperative-game run). Schemas: :data:`twin.results.SCHEMAS`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twin.market.types import Clearing, Order, SettlementRow, Side, Trade

__all__ = ["market_row", "order_rows", "settlement_rows", "trade_rows"]

Row = dict[str, Any]
_SIDE_NAMES = {Side.BUY: "buy", Side.SELL: "sell"}


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
