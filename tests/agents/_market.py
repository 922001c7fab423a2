"""A minimal uniform-price double auction for driving the agents in tests.

Not the project's market (twin/market is the reference); only enough to produce realistic
trades: buyers by price desc, sellers by price asc, ties by device id, matched while
bid >= ask, price = midpoint of the last matched pair rounded down.
"""

from __future__ import annotations

from twin.market.types import OrderIntent, Side, Trade


def clear(orders: list[OrderIntent], *, interval: int, first_trade_id: int = 1) -> tuple[list[Trade], int]:
    buys = sorted((o for o in orders if o.side == Side.BUY and o.interval == interval),
                  key=lambda o: (-o.price_per_mwh, o.device_id))
    sells = sorted((o for o in orders if o.side == Side.SELL and o.interval == interval),
                   key=lambda o: (o.price_per_mwh, o.device_id))
    pairs: list[tuple[OrderIntent, OrderIntent, int]] = []
    bi = si = 0
    b_left = buys[0].energy_wh if buys else 0
    s_left = sells[0].energy_wh if sells else 0
    while bi < len(buys) and si < len(sells) and buys[bi].price_per_mwh >= sells[si].price_per_mwh:
        b, s = buys[bi], sells[si]
        if b.device_id != s.device_id:
            q = min(b_left, s_left)
            pairs.append((b, s, q))
        else:
            q = min(b_left, s_left)
        b_left -= q
        s_left -= q
        if b_left == 0:
            bi += 1
            b_left = buys[bi].energy_wh if bi < len(buys) else 0
        if s_left == 0:
            si += 1
            s_left = sells[si].energy_wh if si < len(sells) else 0
    if not pairs:
        return [], 0
    last_b, last_s, _ = pairs[-1]
    price = (last_b.price_per_mwh + last_s.price_per_mwh) // 2
    trades = [
        Trade(trade_id=first_trade_id + n, interval=interval, buy_order_id=0, sell_order_id=0,
              buyer_device=b.device_id, seller_device=s.device_id, cleared_wh=q, energy_wh=q,
              price_per_mwh=price)
        for n, (b, s, q) in enumerate(pairs)
    ]
    return trades, price


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
