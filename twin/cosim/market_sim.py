"""mosaik adapter over a ledger (reference or on-chain): orders in, cleared trades out.

At step ``k`` (delivery interval ``k``) the market applies the DSO's curtailments of
``k``, settles ``k`` on the meter readings, then takes the orders for ``k + 1``, clears
them and sends the trades to the agents (who receive them at the next step). Interval 0
has no trades: gate closure is one interval before delivery.

Market services (``services``: :class:`twin.market.services.MarketServices`, the value
layer) are called at fixed points of the step: ``on_settled`` after the settlement of ``k``
(every step, with the meter readings of ``k``), ``on_cleared`` after the clearing of
``k + 1``, ``finish`` after the last interval; their rows go to the recorder.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import mosaik_api_v3
from mosaik_api_v3.types import CreateResult, InputData, Meta, OutputData, OutputRequest, Time

from twin.cosim.codec import decode_orders, encode_trades, single, timed
from twin.market.audit import drain_tx_log
from twin.market.types import Clearing, Side

META: Meta = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {
        "Market": {
            "public": True,
            "params": [],
            "attrs": ["orders", "curtailments", "metered_wh", "trades"],
        }
    },
}


@dataclass
class MarketLog:
    """What the market did, for the summary and KPIs (filled as the run goes)."""

    clearings: dict[int, Clearing] = field(default_factory=dict)
    curtailed_wh: dict[int, int] = field(default_factory=dict)
    n_orders: dict[int, int] = field(default_factory=dict)
    last_settled: int = -1


class MarketSim(mosaik_api_v3.Simulator):
    def __init__(self) -> None:
        super().__init__(META)
        self._trades_msg: dict[str, Any] | None = None

    def init(self, sid: str, time_resolution: float = 1.0, **sim_params: Any) -> Meta:
        self.ledger = sim_params["ledger"]
        self.recorder = sim_params["recorder"]
        self.interval_s: int = sim_params["interval_s"]
        self.timings: dict[str, float] = sim_params.get("timings", {})
        self.n_intervals: int = sim_params["n_intervals"]
        self.log: MarketLog = sim_params["log"]
        self.services: Any = sim_params.get("services")  # MarketServices or None
        return self.meta

    def create(self, num: int, model: str, **model_params: Any) -> list[CreateResult]:
        if num != 1:
            raise ValueError("MarketSim holds exactly one Market entity")
        return [{"eid": "market", "type": model}]

    def step(self, time: Time, inputs: InputData, max_advance: Time) -> Time | None:
        with timed(self.timings, "market_s"):
            return self._step(time, inputs)

    def _step(self, time: Time, inputs: InputData) -> Time:
        k = time // self.interval_s
        self.ledger.set_time(now_s=time)  # block time = simulation time (gate closure)
        data = inputs.get("market", {})
        self._deliver(k, single(data.get("curtailments")), single(data.get("metered_wh")))
        orders_msg = single(data.get("orders"))
        # Always answer (mosaik treats a missing output as an error): no orders, no trades.
        self._trades_msg = {"interval": k + 1, "trades": [], "price_history": self._history()}
        if orders_msg is not None and orders_msg["interval"] < self.n_intervals:
            self._trades_msg = self._clear(orders_msg["interval"], orders_msg["orders"])
        if self.services:
            if k == self.n_intervals - 1:
                self.services.finish(interval=k)
            for table, rows in self.services.rows().items():
                self.recorder.add(table, rows)
        self._drain_chain_log()
        return time + self.interval_s

    def get_data(self, outputs: OutputRequest) -> OutputData:
        return {eid: {a: self._trades_msg for a in attrs} for eid, attrs in outputs.items()}

    # -- the two halves of a step -------------------------------------------------------

    def _clear(self, interval: int, order_rows: list[dict[str, Any]]) -> dict[str, Any]:
        if self.services and not self.services.takes_orders:
            order_rows = []  # e.g. the green-token exchange: no P2P orders, tariffs settle
        orders = self.ledger.place_orders(decode_orders(order_rows))
        time_s = interval * self.interval_s
        self.recorder.add("orders", [
            {"time_s": time_s, "interval": o.interval, "order_id": o.order_id,
             "device_id": o.device_id, "owner": o.owner, "side": Side(o.side).name.lower(),
             "energy_wh": o.energy_wh, "price_per_mwh": o.price_per_mwh}
            for o in orders
        ])
        clearing = self.ledger.clear(interval=interval)
        if self.services:
            self.services.on_cleared(interval=interval, clearing=clearing)
        self.log.clearings[interval] = clearing
        self.log.n_orders[interval] = len(orders)
        return {"interval": interval, "trades": encode_trades(list(clearing.trades)),
                "price_history": self._history()}

    def _history(self) -> list[int]:
        """Clearing prices of the intervals that traded, oldest first."""
        c = self.log.clearings
        return [c[i].price_per_mwh for i in sorted(c) if c[i].volume_wh > 0]

    def _deliver(self, k: int, curtail_msg: dict[str, Any] | None,
                 meter_msg: dict[str, Any] | None) -> None:
        clearing = self.log.clearings.get(k)
        if clearing is None:  # nothing traded for this interval (interval 0)
            if self.services and meter_msg is not None and meter_msg["interval"] == k:
                metered = {int(d): int(w) for d, w in meter_msg["metered_wh"].items()}
                self.services.on_settled(interval=k, trades=[], rows=[], metered_wh=metered)
            return
        if meter_msg is None or meter_msg["interval"] != k:
            raise ValueError(f"market: no meter readings for interval {k}")
        trades = {t.trade_id: t for t in clearing.trades}
        for c in (curtail_msg or {}).get("curtailments", []):
            trades[c["trade_id"]] = self.ledger.curtail(trade_id=c["trade_id"], energy_wh=c["energy_wh"])
        metered = {int(d): int(w) for d, w in meter_msg["metered_wh"].items()}
        rows = self.ledger.settle(interval=k, metered_wh=metered)
        time_s = k * self.interval_s
        curtailed = sum(t.curtailed_wh for t in trades.values())
        self.log.curtailed_wh[k] = curtailed
        self.log.last_settled = k
        self.recorder.add("trades", [
            {"time_s": time_s, "interval": t.interval, "trade_id": t.trade_id,
             "buy_order_id": t.buy_order_id, "sell_order_id": t.sell_order_id,
             "buyer_device": t.buyer_device, "seller_device": t.seller_device,
             "cleared_wh": t.cleared_wh, "energy_wh": t.energy_wh,
             "curtailed_wh": t.curtailed_wh, "price_per_mwh": t.price_per_mwh,
             "creator": t.creator, "created_s": t.created_s}
            for t in sorted(trades.values(), key=lambda t: t.trade_id)
        ])
        self.recorder.add("settlements", [
            {"time_s": time_s, "interval": r.interval, "device_id": r.device_id,
             "owner": r.owner, "traded_wh": r.traded_wh, "metered_wh": r.metered_wh,
             "imbalance_wh": r.imbalance_wh, "trade_amount": r.trade_amount,
             "imbalance_amount": r.imbalance_amount, "debt": r.debt}
            for r in rows
        ])
        self.recorder.add("market", [{
            "time_s": time_s, "interval": k, "price_per_mwh": clearing.price_per_mwh,
            "volume_wh": clearing.volume_wh, "n_orders": self.log.n_orders.get(k, 0),
            "n_trades": len(clearing.trades), "curtailed_wh": curtailed,
        }])
        if self.services:
            self.services.on_settled(
                interval=k, trades=sorted(trades.values(), key=lambda t: t.trade_id), rows=rows,
                metered_wh=metered)

    def _drain_chain_log(self) -> None:
        self.recorder.add("chain", drain_tx_log(self.ledger, interval_s=self.interval_s))
