"""Drive the agents with the project's own clearing (twin.market.clearing), no ledger.

Orders get sequential ids in the order the model emits them; the uniform-price double auction
is :func:`twin.market.clearing.match_orders`, the same rule both ledgers use.
"""

from __future__ import annotations

from twin.market.clearing import match_orders
from twin.market.types import Order, OrderIntent, Trade


def clear(orders: list[OrderIntent], *, interval: int, first_trade_id: int = 1) -> tuple[list[Trade], int]:
    book = [Order(order_id=n + 1, device_id=o.device_id, owner=0, interval=o.interval, side=o.side,
                  energy_wh=o.energy_wh, price_per_mwh=o.price_per_mwh)
            for n, o in enumerate(orders) if o.interval == interval]
    by_id = {o.order_id: o for o in book}
    result = match_orders(book)
    trades = [
        Trade(trade_id=first_trade_id + n, interval=interval, buy_order_id=f.buy_order_id,
              sell_order_id=f.sell_order_id, buyer_device=by_id[f.buy_order_id].device_id,
              seller_device=by_id[f.sell_order_id].device_id, cleared_wh=f.energy_wh,
              energy_wh=f.energy_wh, price_per_mwh=result.price_per_mwh)
        for n, f in enumerate(result.fills)
    ]
    return trades, result.price_per_mwh


def run_day(model, n_intervals: int):  # type: ignore[no-untyped-def]
    """Drive ``model`` through ``n_intervals`` with :func:`clear`; return the outputs."""
    outs = []
    trades: list[Trade] = []
    prices: list[int] = []
    next_id = 1
    for k in range(n_intervals):
        out = model.step_interval(interval=k, trades=trades, price_history=list(prices))
        outs.append(out)
        trades, price = clear(out.orders, interval=k + 1, first_trade_id=next_id)
        next_id += len(trades)
        prices.append(price)
    return outs
