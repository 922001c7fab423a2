"""Results tables of the assets service and the KPIs computed from them."""

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
    "asset_distributions": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("asset", _str), ("asset_id", _i64),
         ("device_id", _i64), ("issuer", _i64), ("revenue", _i64), ("amount", _i64),
         ("tx_hash", _str)]
    ),
    "asset_claims": pa.schema(
        [("time_s", _i64), ("asset", _str), ("asset_id", _i64), ("holder", _i64),
         ("shares", _i64), ("amount", _i64), ("tx_hash", _str)]
    ),
}


def kpis(rows: Rows) -> dict[str, float]:
    dist = rows("asset_distributions")
    return {
        "asset_revenue": sum(r["revenue"] for r in dist) / MICRO,
        "asset_revenue_distributed": sum(r["amount"] for r in dist) / MICRO,
        "asset_claimed": sum(r["amount"] for r in rows("asset_claims")) / MICRO,
    }


KPI_NOTES = {
    "asset_revenue": "market revenue of the tokenized devices, currency",
    "asset_revenue_distributed": "revenue handed to the asset contracts for distribution, currency",
    "asset_claimed": "revenue the share holders claimed, currency",
}
