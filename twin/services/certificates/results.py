"""Results tables of the certificates service and the KPIs computed from them."""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

from twin.services.base import Rows

_i64, _str = pa.int64(), pa.string()

__all__ = ["KPI_NOTES", "TABLES", "kpis"]

#: results tables of the service (money in micro-units, energy in Wh; tx_hash: the chain
#: transaction, '' on the reference ledger)
TABLES: Mapping[str, pa.Schema] = {
    "certificates": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("vintage", _i64), ("action", _str),
         ("trade_id", _i64), ("seller_device", _i64), ("seller", _i64), ("buyer_device", _i64),
         ("holder", _i64), ("delivered_wh", _i64), ("count", _i64), ("tx_hash", _str)]
    ),
}


def kpis(rows: Rows) -> dict[str, float]:
    certs = rows("certificates")
    issued = [r for r in certs if r["action"] == "issued"]
    return {
        "certificates_issued": float(sum(r["count"] for r in issued)),
        "certificates_retired": float(sum(r["count"] for r in certs if r["action"] == "retired")),
        "certified_renewable_kwh": sum(r["delivered_wh"] for r in issued) / 1000,
    }


KPI_NOTES = {
    "certificates_issued": "green certificates issued, one per delivered renewable kWh (count)",
    "certificates_retired": "certificates the buyers retired (count)",
    "certified_renewable_kwh": "renewable energy delivered on certified trades, kWh",
    "certificates_outstanding": "certificates issued and not retired (count)",
}
