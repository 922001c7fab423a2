"""Results tables of the green currency service and the KPIs computed from them."""

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
    "green_currency": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("reason", _str), ("ref", _i64),
         ("device_id", _i64), ("owner", _i64), ("energy_wh", _i64), ("amount", _i64),
         ("tx_hash", _str)]
    ),
}


def kpis(rows: Rows) -> dict[str, float]:
    gc = rows("green_currency")
    return {
        "green_currency_minted": sum(r["amount"] for r in gc) / MICRO,
        "green_currency_renewable_kwh": sum(
            r["energy_wh"] for r in gc if r["reason"] == "renewable") / 1000,
        "green_currency_dr_kwh": sum(r["energy_wh"] for r in gc if r["reason"] == "dr") / 1000,
        "green_currency_recipients": float(len({r["owner"] for r in gc if r["amount"] > 0})),
    }


KPI_NOTES = {
    "green_currency_minted": "green-currency tokens minted (tokens, not money)",
    "green_currency_renewable_kwh": "renewable consumption rewarded, kWh",
    "green_currency_dr_kwh": "metered demand-response reduction rewarded, kWh",
    "green_currency_recipients": "accounts that received green currency (count)",
}
