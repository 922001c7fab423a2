"""What the feeder model returns for one interval (:class:`IntervalOutput`) and the columns
of its rows (``agents``, ``dso`` tables)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twin.agents._common import wh_to_mw
from twin.agents.dso import Curtailment
from twin.agents.tso import TSOSignal
from twin.market.types import DRCall, OrderIntent, Trade

__all__ = ["AGENT_ROW_COLUMNS", "DSO_ROW_COLUMNS", "IntervalOutput", "agent_columns"]

AGENT_ROW_COLUMNS = (
    "time_s", "interval", "agent", "kind", "device_id", "bus", "soc", "p_mw",
    "metered_wh", "load_wh", "pv_available_wh", "pv_wh", "battery_charge_wh",
    "battery_discharge_wh", "bought_wh", "sold_wh", "plugged", "remaining_need_wh", "flex_wh",
)
#: Keys of every ``dso_rows`` dict.
DSO_ROW_COLUMNS = (
    "time_s", "interval", "checks", "converged", "violations_found", "violations_remaining",
    "overvoltage", "undervoltage", "overload", "curtailed_trades", "curtailed_wh",
    "vm_min_pu", "vm_max_pu", "max_loading_percent", "network_fee_per_mwh", "network_fee_amount",
    "unbalance", "vuf_max_percent",
)
_TABLES = ("load", "sgen", "storage")


@dataclass(frozen=True, slots=True, eq=False)
class IntervalOutput:
    """Everything one ``step_interval`` produces."""

    interval: int
    time_s: int
    #: DSO decisions on this interval's cleared trades
    curtailments: list[Curtailment]
    #: this interval's trades after curtailment (the ones dispatched)
    trades: list[Trade]
    #: "load" / "sgen" / "storage" -> set-points in table row order (pandapower signs)
    element_p_mw: dict[str, np.ndarray]
    element_q_mvar: dict[str, np.ndarray]
    #: device id -> metered energy of this interval, Wh, consumption positive
    metered_wh: dict[int, int]
    #: orders for the next interval (empty after the last one)
    orders: list[OrderIntent]
    #: the ``agents`` rows as columns (keys :data:`AGENT_ROW_COLUMNS`, one entry per agent)
    agent_columns: dict[str, np.ndarray] = field(repr=False)
    dso_rows: list[dict[str, Any]] = field(repr=False)
    #: rows of the ``events`` table: EV arrivals/departures, TSO signals, DR calls/responses
    event_rows: list[dict[str, Any]] = field(default_factory=list, repr=False)
    #: rows of the ``vpp`` table (the Shapley split; filled at the last interval)
    vpp_rows: list[dict[str, Any]] = field(default_factory=list, repr=False)
    #: rows of the ``forecasts`` table: this interval's feeder forecasts and actuals
    forecast_rows: list[dict[str, Any]] = field(default_factory=list, repr=False)
    #: the TSO's signal for the next interval (None after the last one)
    #: operating envelopes the DSO published for the next interval (dso.policy envelopes |
    #: both): ("export" | "import") -> device id -> Wh; None otherwise
    envelopes: dict[str, dict[int, int]] | None = None
    tso: TSOSignal | None = None
    #: demand-response calls the TSO made in this step (for the next interval), with the
    #: flexible devices' offers: the market's services post and pay them
    dr_calls: list[DRCall] = field(default_factory=list)
    #: HIL (``der_controls``): each controlled device's own dispatch without its controls,
    #: by table and element row (element convention, MW), so that a control lifted within
    #: the interval is lifted at the next HIL step
    free_p_mw: dict[str, dict[int, float]] = field(default_factory=dict, repr=False)
    #: the regulation report of this interval (ancillary service,
    #: :class:`twin.agents.regulation.RegulationReport` encoded); None without the service
    regulation: dict[str, Any] | None = None

    @property
    def agent_rows(self) -> list[dict[str, Any]]:
        """One dict per agent (keys :data:`AGENT_ROW_COLUMNS`), built on demand."""
        cols = [self.agent_columns[c].tolist() for c in AGENT_ROW_COLUMNS]
        return [dict(zip(AGENT_ROW_COLUMNS, vals, strict=True)) for vals in zip(*cols, strict=True)]

    # flat accessors (the names of :func:`twin.grid.powerflow.apply_injections`)
    @property
    def load_p_mw(self) -> np.ndarray:
        return self.element_p_mw["load"]

    @property
    def load_q_mvar(self) -> np.ndarray:
        return self.element_q_mvar["load"]

    @property
    def sgen_p_mw(self) -> np.ndarray:
        return self.element_p_mw["sgen"]

    @property
    def sgen_q_mvar(self) -> np.ndarray:
        return self.element_q_mvar["sgen"]

    @property
    def storage_p_mw(self) -> np.ndarray:
        return self.element_p_mw["storage"]

    @property
    def storage_q_mvar(self) -> np.ndarray:
        return self.element_q_mvar["storage"]

    def injections(self) -> dict[str, np.ndarray]:
        """Keyword arguments for :func:`twin.grid.powerflow.apply_injections`."""
        out = {f"{t}_p_mw": self.element_p_mw[t] for t in _TABLES}
        out.update({f"{t}_q_mvar": self.element_q_mvar[t] for t in _TABLES})
        return out


def agent_columns(k: int, time_s: int, hd: Any, ed: Any, sd: Any, hh_m: np.ndarray,
                  ev_m: np.ndarray, cs_m: np.ndarray, traded: tuple[np.ndarray, ...], *,
                  households: Any, evs: Any, storage: Any, interval_s: int,
                  agent_names: Sequence[str]) -> dict[str, np.ndarray]:
    """The ``agents`` rows of one interval as columns (households, EVs, batteries)."""
    hh, ev, cs, it = households, evs, storage, interval_s
    hh_b, hh_s, ev_b, ev_s, cs_b, cs_s = traded
    n_h, n_e, n_c = hh.n, ev.n, cs.n
    nan_e, nan_c = np.full(n_e, np.nan), np.full(n_c, np.nan)

    def cat(*parts: Any) -> np.ndarray:
        return np.concatenate([np.asarray(x) for x in parts])

    n = n_h + n_e + n_c
    return {
        "time_s": np.full(n, time_s, dtype=np.int64),
        "interval": np.full(n, k, dtype=np.int64),
        "agent": np.array(agent_names, dtype=object),
        "kind": np.array(["household"] * n_h + ["ev"] * n_e + ["storage"] * n_c, dtype=object),
        "device_id": cat(hh.device_id, ev.device_id, cs.device_id).astype(np.int64),
        "bus": cat(hh.bus, ev.bus, cs.bus).astype(np.int64),
        "soc": cat(hh.soc, ev.soc, cs.soc).astype(np.float64),
        "p_mw": cat(wh_to_mw(hd.metered_wh, it), wh_to_mw(ed.metered_wh, it), wh_to_mw(sd.metered_wh, it)),
        "metered_wh": cat(hh_m, ev_m, cs_m).astype(np.int64),
        "load_wh": cat(hd.load_wh, ed.charge_wh, nan_c).astype(np.float64),
        "pv_available_wh": cat(hd.pv_available_wh, nan_e, nan_c).astype(np.float64),
        "pv_wh": cat(hd.pv_wh, nan_e, nan_c).astype(np.float64),
        "battery_charge_wh": cat(hd.battery_charge_wh, ed.charge_wh, sd.charge_wh).astype(np.float64),
        "battery_discharge_wh": cat(hd.battery_discharge_wh, ed.discharge_wh, sd.discharge_wh).astype(np.float64),
        "bought_wh": cat(hh_b, ev_b, cs_b).astype(np.float64),
        "sold_wh": cat(hh_s, ev_s, cs_s).astype(np.float64),
        "plugged": cat(np.zeros(n_h, dtype=bool), ed.plugged, np.zeros(n_c, dtype=bool)).astype(bool),
        "remaining_need_wh": cat(np.full(n_h, np.nan), ed.remaining_need_wh, nan_c).astype(np.float64),
        "flex_wh": cat(hd.flex_wh, nan_e, nan_c).astype(np.float64),
    }
