"""mosaik adapter over the market step (:class:`twin.market.step.MarketStep`): orders,
curtailments, meter readings and demand-response calls in, cleared trades out.

It only translates: the inputs of step ``k`` are decoded and handed to the pure core, whose
result rows go to the recorder and whose trades become the ``trades`` attribute.
"""

from __future__ import annotations

import gc
from typing import Any

import mosaik_api_v3
from mosaik_api_v3.types import CreateResult, InputData, Meta, OutputData, OutputRequest, Time

from twin.cosim.codec import decode_dr_calls, decode_orders, encode_trades, single, timed
from twin.market.rows import RowBlock
from twin.market.step import Curtailment, MarketLog, MarketStep

__all__ = ["META", "MarketLog", "MarketSim"]

META: Meta = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {
        "Market": {
            "public": True,
            "params": [],
            "attrs": ["orders", "curtailments", "metered_wh", "dr_calls", "trades", "books"],
        }
    },
}


class MarketSim(mosaik_api_v3.Simulator):
    def __init__(self) -> None:
        super().__init__(META)
        self._trades_msg: dict[str, Any] | None = None

    def init(self, sid: str, time_resolution: float = 1.0, **sim_params: Any) -> Meta:
        self.recorder = sim_params["recorder"]
        self.interval_s: int = sim_params["interval_s"]
        self.timings: dict[str, float] = sim_params.get("timings", {})
        self.core = MarketStep(ledger=sim_params["ledger"], interval_s=self.interval_s,
                               n_intervals=sim_params["n_intervals"], log=sim_params["log"],
                               services=sim_params.get("services"),
                               signers=sim_params.get("signers"),
                               desk=sim_params.get("desk"))
        #: HIL (twin hil serve): interval k settles at (k + 1)·T on the delivered energy
        self.settle_at_end: bool = sim_params.get("settle_at_end", False)
        return self.meta

    def create(self, num: int, model: str, **model_params: Any) -> list[CreateResult]:
        if num != 1:
            raise ValueError("MarketSim holds exactly one Market entity")
        return [{"eid": "market", "type": model}]

    def step(self, time: Time, inputs: InputData, max_advance: Time) -> Time | None:
        with timed(self.timings, "market_s"):
            out = self._step(time, inputs)
        # the ledger's books grow by ~30,000 objects an interval in a town (orders, trades,
        # settlement rows): kept out of the cyclic collector's scans (which otherwise walk the
        # whole growing heap again and again); twin.run unfreezes them when the world ends.
        # The collection first frees this step's cyclic garbage (it scans only what is not
        # frozen yet: the step's new objects), so a long run does not keep it until the end.
        gc.collect()
        gc.freeze()
        return out

    def _step(self, time: Time, inputs: InputData) -> Time:
        k = time // self.interval_s
        data = inputs.get("market", {})
        orders_msg = single(data.get("orders"))
        curtail_msg = single(data.get("curtailments")) or {}
        meter_msg = single(data.get("metered_wh"))
        dr_msg = single(data.get("dr_calls")) or {}
        books_msg = single(data.get("books"))  # faults: island books while the feeder is split
        result = self.core.step(
            k,
            orders_interval=orders_msg["interval"] if orders_msg is not None else None,
            orders=decode_orders(orders_msg["orders"]) if orders_msg is not None else [],
            curtailments=[Curtailment(trade_id=c["trade_id"], energy_wh=c["energy_wh"])
                          for c in curtail_msg.get("curtailments", [])],
            metered_wh=({int(d): int(w) for d, w in meter_msg["metered_wh"].items()}
                        if meter_msg is not None else None),
            metered_interval=meter_msg["interval"] if meter_msg is not None else None,
            regulation=meter_msg.get("regulation") if meter_msg is not None else None,
            dr_calls=decode_dr_calls(dr_msg.get("calls")),
            envelopes=({s: {int(d): int(w) for d, w in m.items()} for s, m in orders_msg["envelopes"].items()}
                       if orders_msg is not None and "envelopes" in orders_msg else None),
            books=({int(d): int(b) for d, b in books_msg["books"].items()}
                   if books_msg and books_msg.get("books") is not None else None),
            # meter-data faults (twin.cosim.meters_sim): expected devices and late readings
            expected=([int(d) for d in meter_msg["expected"]]
                      if meter_msg is not None and "expected" in meter_msg else None),
            late=[[int(x) for x in r] for r in (meter_msg or {}).get("late", [])],
            settle_interval=k - 1 if self.settle_at_end else k)
        for table, rows in result.rows.items():
            if isinstance(rows, RowBlock) and hasattr(self.recorder, "add_columns"):
                self.recorder.add_columns(table, rows.columns, n=len(rows))  # no dict per row
            else:
                self.recorder.add(table, rows)
        # Always answer (mosaik treats a missing output as an error): no orders, no trades.
        self._trades_msg = {"interval": result.interval, "trades": encode_trades(result.trades),
                            "price_history": result.price_history}
        return time + self.interval_s

    def get_data(self, outputs: OutputRequest) -> OutputData:
        return {eid: {a: self._trades_msg for a in attrs} for eid, attrs in outputs.items()}
