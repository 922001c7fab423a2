"""Results tables of the demand response service and the KPIs computed from them."""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

from twin.market.units import MICRO
from twin.services.base import Rows

_i64, _str = pa.int64(), pa.string()

__all__ = ["KPI_NOTES", "TABLES", "kpis"]

#: results tables of the service (money in micro-units, energy in Wh; tx_hash: the chain
#: transaction, '' on the reference ledger)
TABLES: Mapping[str, pa.Schema] = {
    "dr_events": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("event_id", _i64), ("poster", _i64),
         ("target_wh", _i64), ("price_per_mwh", _i64), ("budget", _i64), ("committed_wh", _i64),
         ("n_committed", _i64), ("paid", _i64), ("refund", _i64), ("reduction_wh", _i64),
         ("status", _str), ("tx_hash", _str)]
    ),
    "dr_payouts": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("event_id", _i64), ("device_id", _i64),
         ("owner", _i64), ("committed_wh", _i64), ("baseline_wh", _i64), ("metered_wh", _i64),
         ("reduction_wh", _i64), ("amount", _i64), ("penalty", _i64), ("tx_hash", _str)]
    ),
}


def kpis(rows: Rows) -> dict[str, float]:
    ev = rows("dr_events")
    settled = [r for r in ev if r["status"] == "settled"]
    return {
        "dr_events": float(len(ev)),
        "dr_events_unfunded": float(len(ev) - len(settled)),
        "dr_requested_kwh": sum(r["target_wh"] for r in ev) / 1000,
        "dr_committed_kwh": sum(r["committed_wh"] for r in settled) / 1000,
        "dr_reduction_kwh": sum(r["reduction_wh"] for r in settled) / 1000,
        "dr_paid": sum(r["paid"] for r in settled) / MICRO,
        "dr_refund": sum(r["refund"] for r in settled) / MICRO,
        "dr_penalties": sum(int(r.get("penalty") or 0) for r in rows("dr_payouts")) / MICRO,
    }


KPI_NOTES = {
    "dr_events": "demand-response events the TSO called (count)",
    "dr_events_unfunded": "events the DSO could not fund (count)",
    "dr_requested_kwh": "reduction requested by all events, kWh",
    "dr_committed_kwh": "reduction the flexible devices committed (settled events), kWh",
    "dr_reduction_kwh": "metered reduction below the baselines (settled events), kWh",
    "dr_paid": "compensation paid to device owners, currency",
    "dr_refund": "unspent budget back to the DSO, currency",
    "dr_penalties": "non-delivery penalties from the owners' bonds to the DSO, currency",
}
