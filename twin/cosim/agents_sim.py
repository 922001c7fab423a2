"""mosaik adapter over the Mesa feeder model (:class:`twin.agents.model.FeederModel`).

Each step is one market interval ``k``: the model receives the cleared trades of ``k``
(from the market, one step earlier), lets the DSO agent check and curtail them, dispatches
every device, and returns the element powers (to the grid), the meter readings and
curtailments of ``k``, the orders for ``k + 1`` and the demand-response calls the TSO made
for ``k + 1`` with the flexible devices' offers (to the market). The grid's ``taps`` (the
tap positions its solve of ``k`` will use, :func:`twin.cosim.grid_sim.taps_message`) reach
the DSO's check before it runs.
"""

from __future__ import annotations

from typing import Any

import mosaik_api_v3
from mosaik_api_v3.types import CreateResult, InputData, Meta, OutputData, OutputRequest, Time

from twin.agents.delivered import (
    apply_ev_delta,
    apply_storage_delta,
    corrected_readings,
    delivered_columns,
)
from twin.cosim.codec import (
    decode_der_controls,
    decode_trades,
    encode_dr_calls,
    encode_orders,
    single,
    timed,
)
from twin.hil.books import DeliveredBook

META: Meta = {
    "api_version": "3.0",
    "type": "time-based",
    "models": {
        "Feeder": {
            "public": True,
            "params": [],
            "attrs": ["trades", "der_controls", "fault_state", "hil_books", "taps",
                      "element_power", "orders", "curtailments", "metered_wh", "dr_calls"],
        }
    },
}


class AgentsSim(mosaik_api_v3.Simulator):
    def __init__(self) -> None:
        super().__init__(META)
        self._out: dict[str, Any] = {}

    def init(self, sid: str, time_resolution: float = 1.0, **sim_params: Any) -> Meta:
        self.model = sim_params["model"]
        self.recorder = sim_params["recorder"]
        self.interval_s: int = sim_params["interval_s"]
        self.timings: dict[str, float] = sim_params.get("timings", {})
        #: faults inside the run (twin/agents/outages.py): the model's step under a fault state
        self.outages = sim_params.get("outages")
        #: HIL (twin hil serve, ``end_s`` given): interval k's readings, corrected by what the
        #: HIL devices delivered (``hil_books``), and its curtailments go to the market at
        #: (k + 1)·T; the step at ``end_s`` only hands over the last interval's
        self.end_s: int | None = sim_params.get("end_s")
        self.settle_at_end = self.end_s is not None
        self._held: dict[str, Any] = {"metered_wh": None,
                                      "curtailments": {"interval": -1, "curtailments": []}}
        self._held_columns: dict[str, Any] | None = None  # HIL: k's agents rows, until delivered
        return self.meta

    def create(self, num: int, model: str, **model_params: Any) -> list[CreateResult]:
        if num != 1:
            raise ValueError("AgentsSim holds exactly one Feeder entity")
        return [{"eid": "feeder", "type": model}]

    def step(self, time: Time, inputs: InputData, max_advance: Time) -> Time | None:
        with timed(self.timings, "agents_s"):
            return self._step(time, inputs)

    def _step(self, time: Time, inputs: InputData) -> Time:
        k = time // self.interval_s
        if self.settle_at_end:
            held = self._settle_held(k, single(inputs.get("feeder", {}).get("hil_books")))
            if self.end_s is not None and time >= self.end_s:  # the last interval settles; no more
                self._out = {**self._out, **held, "orders": {"interval": k + 1, "orders": []},
                             "dr_calls": {"interval": k, "calls": []}}
                return time + self.interval_s  # past the world's end
        market_msg = single(inputs.get("feeder", {}).get("trades"))
        trades = decode_trades(market_msg["trades"]) if market_msg else []
        prices = market_msg["price_history"] if market_msg else []
        # external DER controls in force (twin hil serve; absent otherwise), by device id
        controls = decode_der_controls(single(inputs.get("feeder", {}).get("der_controls")))
        taps = single(inputs.get("feeder", {}).get("taps"))
        if taps is not None:  # the grid simulator's taps: the DSO checks at them
            self.model.dso.follow_taps(trafo_tap_pos={int(r): int(t) for r, t in taps["trafo_tap_pos"].items()},
                                       regulator_taps=taps["regulator_taps"])
        soc_start = self.model.storage_soc_by_row()  # HIL: batteries at the interval's start
        fault_msg = single(inputs.get("feeder", {}).get("fault_state"))
        if self.outages is not None:
            from twin.faults.plan import FaultState

            state = FaultState.from_msg(fault_msg) if fault_msg is not None else None
            out, fault_rows = self.outages.step(interval=k, trades=trades, price_history=prices,
                                                der_controls=controls or None, state=state)
            for table, rows in fault_rows.items():
                self.recorder.add(table, rows)
        else:
            out = self.model.step_interval(interval=k, trades=trades, price_history=prices,
                                           der_controls=controls or None)
        if self.settle_at_end:  # the agents rows of k are written on what k delivered
            self._held_columns = out.agent_columns
        else:
            self.recorder.add_columns("agents", out.agent_columns)
        self.recorder.add("dso", out.dso_rows)
        self.recorder.add("events", out.event_rows)
        self.recorder.add("vpp", out.vpp_rows)
        self.recorder.add("forecasts", out.forecast_rows)
        self._out = {
            "element_power": {
                "interval": k,
                "load_p_mw": out.load_p_mw, "load_q_mvar": out.load_q_mvar,
                "sgen_p_mw": out.sgen_p_mw, "sgen_q_mvar": out.sgen_q_mvar,
                "storage_p_mw": out.storage_p_mw,
                # HIL: own dispatch of the devices under external control, and the batteries'
                # state of charge at the interval's start (fractions, by storage row)
                "free_p_mw": {t: {str(r): v for r, v in rows.items()} for t, rows in out.free_p_mw.items()},
                "storage_soc": soc_start,
            },
            "orders": {"interval": k + 1, "orders": encode_orders(out.orders),
                       # the DSO's operating envelopes of k + 1 (dso.policy), published first
                       **({"envelopes": {s: {str(d): w for d, w in m.items()} for s, m in out.envelopes.items()}}
                          if out.envelopes is not None else {})},
            "curtailments": {
                "interval": k,
                "curtailments": [
                    {"trade_id": c.trade_id, "energy_wh": c.energy_wh, "reason": c.reason}
                    for c in out.curtailments
                ],
            },
            "metered_wh": {"interval": k, "metered_wh": dict(out.metered_wh),
                           # the regulation report of k (ancillary service; absent without)
                           **({"regulation": out.regulation} if out.regulation is not None else {})},
            "dr_calls": {"interval": k, "calls": encode_dr_calls(out.dr_calls)},
        }
        if self.settle_at_end:  # k's readings wait for what the HIL delivers; k - 1's go now
            self._held = {"metered_wh": self._out["metered_wh"], "curtailments": self._out["curtailments"]}
            self._out |= held
        return time + self.interval_s

    def _settle_held(self, k: int, msg: dict[str, Any] | None) -> dict[str, Any]:
        """Interval ``k - 1``'s readings (delivered energy) and curtailments; batteries' and
        EVs' stored energy moved by what the HIL devices delivered in ``k - 1``; its
        ``agents`` rows recorded on the delivered energy."""
        held = dict(self._held)
        book = DeliveredBook.decode(msg)
        meter = held["metered_wh"]
        if meter is None or book is None or book.interval != k - 1:
            if meter is not None:
                raise ValueError(f"agents: no HIL books for interval {k - 1} at t={k * self.interval_s}s")
            return held
        apply_storage_delta(self.model, book.storage_delta_wh)
        apply_ev_delta(self.model, book.ev_delta_wh)
        if self._held_columns is not None:
            self.recorder.add_columns("agents", delivered_columns(
                self.model, self._held_columns, interval_s=self.interval_s,
                meter_delta_wh=book.meter_delta_wh, sgen_delta_wh=book.sgen_delta_wh,
                storage_delta_wh=book.storage_delta_wh, ev_delta_wh=book.ev_delta_wh))
            self._held_columns = None
        planned = {int(d): int(w) for d, w in meter["metered_wh"].items()}
        held["metered_wh"] = {**meter, "metered_wh": corrected_readings(planned, book.meter_delta_wh)}
        return held

    def get_data(self, outputs: OutputRequest) -> OutputData:
        return {eid: {a: self._out.get(a) for a in attrs} for eid, attrs in outputs.items()}

