"""Results tables of the charger tariffs service and the KPIs computed from them."""

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
    "charger_tariffs": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("charger", _i64), ("owner", _i64),
         ("price_per_mwh", _i64), ("tx_hash", _str)]
    ),
    "charging_sessions": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("end_interval", _i64), ("session_id", _i64),
         ("charger", _i64), ("owner", _i64), ("driver", _i64), ("price_per_mwh", _i64),
         ("max_wh", _i64), ("locked", _i64), ("metered_wh", _i64), ("amount", _i64),
         ("status", _str), ("tx_hash", _str)]
    ),
}


def kpis(rows: Rows) -> dict[str, float]:
    cs = rows("charging_sessions")
    paid = [r for r in cs if r["status"] == "paid"]
    wh = sum(r["metered_wh"] for r in paid)
    return {
        "charging_sessions": float(len(paid)),
        "charging_sessions_unfunded": float(len(cs) - len(paid)),
        "charging_energy_kwh": wh / 1000,
        "charging_paid": sum(r["amount"] for r in paid) / MICRO,
        "charging_mean_tariff_per_mwh": (
            sum(r["metered_wh"] * r["price_per_mwh"] for r in paid) / wh / MICRO if wh else 0.0),
    }


KPI_NOTES = {
    "charging_sessions": "charging sessions paid at shared chargers (count)",
    "charging_sessions_unfunded": "sessions the driver could not fund (count)",
    "charging_energy_kwh": "metered energy of the paid sessions, kWh",
    "charging_paid": "paid by drivers to charger hosts, currency",
    "charging_mean_tariff_per_mwh": "energy-weighted mean tariff of the sessions, currency/MWh",
}
