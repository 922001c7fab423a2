"""The pilots' reliability KPIs of a run with data and chain faults, from its tables.

- ``data_acquisition_rate``: readings acquired by the polling deadline / readings expected
  (``meter_data``; NA without ``faults.data``);
- ``provisional_kwh``: energy settled on estimates (sum of ``|estimated_wh|``);
  ``trueup_kwh``: the corrections the real readings brought (sum of ``|delta_wh|``);
  ``trueup_amount``: money the true-ups moved to owners (signed, currency);
  ``provisional_open``: provisional settlements never trued up (reading never arrived);
- ``settled_metered_kwh``: net metered energy settled, true-ups applied (equals the
  fault-free run's when every reading arrives);
- ``market_availability``: intervals cleared and settled in their own step / intervals due
  (every interval after the first, which has no gate; a run stopped by a chain outage
  lowers it);
- ``tx_latency_p50_s`` / ``tx_latency_p99_s``: submission to receipt of the run's
  transactions (``tx_latency``; chain runs with ``faults.chain``);
- ``chain_mttr_<kind>_s``: mean time to recover from each kind of chain incident
  (``chain_incidents``), and ``chain_incidents`` their count.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from twin.market.units import MICRO

__all__ = ["FAULT_KPI_COLUMNS", "FAULT_KPI_NOTES", "FAULT_TABLES_READ", "fault_kpis",
           "settlements_after_trueup"]

NA = float("nan")
FAULT_TABLES_READ = ("meter_data", "provisional", "trueups", "chain_incidents", "tx_latency")

#: compared in ``twin compare`` (every run has a value or NA)
FAULT_KPI_COLUMNS = ("data_acquisition_rate", "market_availability", "tx_latency_p50_s",
                     "tx_latency_p99_s", "chain_mttr_s", "provisional_kwh", "trueup_amount")

FAULT_KPI_NOTES = {
    "data_acquisition_rate": "meter readings acquired by the polling deadline / readings expected (0..1; NA without faults.data)",
    "market_availability": "intervals cleared and settled in their own step / intervals due (0..1)",
    "tx_latency_p50_s": "median transaction latency, submission to receipt, s (chain runs with faults.chain)",
    "tx_latency_p99_s": "99th-percentile transaction latency, submission to receipt, s (chain runs with faults.chain)",
    "chain_mttr_s": "mean time to recover from a chain incident (outage, restart, dropped or delayed tx), s",
    "provisional_kwh": "energy settled provisionally on estimated meter readings, kWh",
    "trueup_amount": "money the true-ups of provisional settlements moved to device owners (signed), currency",
}

RUN_FAULT_NOTES = {
    "trueup_kwh": "corrections of provisional settlements by the real readings (sum of |delta|), kWh",
    "provisional_open": "provisional settlements never trued up (reading never arrived), count",
    "settled_metered_kwh": "net metered energy settled, true-ups applied, kWh",
    "readings_late": "meter readings that arrived after the deadline (true-up or duplicate), count",
    "chain_incidents": "incidents of a flaky chain (outages, restarts, dropped/delayed tx, gas spikes), count",
    "chain_mttr_<kind>_s": "mean time to recover from chain incidents of one kind, s",
}


def _col(t: pa.Table | None, name: str) -> np.ndarray:
    if t is None or t.num_rows == 0 or name not in t.column_names:
        return np.zeros(0)
    return np.asarray(t.column(name).to_numpy(zero_copy_only=False), dtype=float)


def fault_kpis(tables: Mapping[str, pa.Table], *, n_intervals: int | None = None,
               run: bool = False) -> dict[str, float]:
    """The compared fault KPIs (``run``: and the run-only ones of ``kpis.json``)."""
    md, prov, tu = tables.get("meter_data"), tables.get("provisional"), tables.get("trueups")
    inc, lat = tables.get("chain_incidents"), tables.get("tx_latency")
    acquired = _col(md, "acquired")
    latency = _col(lat, "latency_s")
    duration = _col(inc, "duration_s")
    market = tables.get("market")
    settled_intervals = market.num_rows if market is not None else 0
    due = (n_intervals - 1) if n_intervals else None
    out = {
        "data_acquisition_rate": float(acquired.mean()) if acquired.size else NA,
        "market_availability": min(1.0, settled_intervals / due) if due else NA,
        "tx_latency_p50_s": float(np.percentile(latency, 50)) if latency.size else NA,
        "tx_latency_p99_s": float(np.percentile(latency, 99)) if latency.size else NA,
        "chain_mttr_s": float(duration[np.isfinite(duration)].mean())
        if np.isfinite(duration).any() else NA,
        "provisional_kwh": float(np.abs(_col(prov, "estimated_wh")).sum() / 1000) if prov is not None else NA,
        "trueup_amount": float(_col(tu, "amount").sum() / MICRO) if tu is not None else NA,
    }
    if not run:
        return out
    if prov is not None:
        out["trueup_kwh"] = float(np.abs(_col(tu, "delta_wh")).sum() / 1000)
        out["provisional_open"] = float(prov.num_rows - (tu.num_rows if tu is not None else 0))
    settlements = tables.get("settlements")
    if settlements is not None:
        out["settled_metered_kwh"] = float((_col(settlements, "metered_wh").sum()
                                            + _col(tu, "delta_wh").sum()) / 1000)
    if md is not None:
        out["readings_late"] = float((_col(md, "arrives_interval") >= 0).sum())
    if inc is not None:
        out["chain_incidents"] = float(inc.num_rows)
        kinds = inc.column("kind").to_pylist()
        for kind in sorted(set(kinds)):
            d = duration[np.array([k == kind for k in kinds])]
            d = d[np.isfinite(d)]  # an incident the run did not recover from has no time
            out[f"chain_mttr_{kind}_s"] = float(d.mean()) if d.size else NA
    return out


def settlements_after_trueup(settlements: pa.Table, trueups: pa.Table | None) -> pa.Table:
    """The settlements table as the true-ups left it: each trued-up row's metered and
    imbalance energy replaced by the real reading's, the true-up's payment added to its
    imbalance amount and its unpaid rest to its debt (the settlement KPIs then read as if the
    reading had been there on time)."""
    if trueups is None or trueups.num_rows == 0 or settlements.num_rows == 0:
        return settlements
    fix = {(r["interval"], r["device_id"]): r for r in trueups.to_pylist()}
    rows = settlements.to_pylist()
    for r in rows:
        t = fix.get((r["interval"], r["device_id"]))
        if t is None:
            continue
        r["metered_wh"] = t["metered_wh"]
        r["imbalance_wh"] += t["delta_wh"]
        r["imbalance_amount"] += t["paid"]
        r["debt"] += t["debt"]
    return pa.Table.from_pylist(rows, schema=settlements.schema)
