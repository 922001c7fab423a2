"""Results table of the network-fee service and the KPIs computed from it."""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

from twin.market.units import MICRO
from twin.services.base import Rows

__all__ = ["KPI_NOTES", "TABLES", "kpis"]

_i64, _str = pa.int64(), pa.string()

#: one row per buying device and interval; money in micro-units, energy in Wh
TABLES: Mapping[str, pa.Schema] = {
    "network_fees": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("device_id", _i64), ("payer", _i64),
         ("energy_wh", _i64), ("fee_per_mwh", _i64), ("due", _i64), ("amount", _i64),
         ("status", _str), ("tx_hash", _str)]
    ),
}


def kpis(rows: Rows) -> dict[str, float]:
    fees = rows("network_fees")
    return {
        "network_fee_charged": sum(r["amount"] for r in fees) / MICRO,
        "network_fee_short": sum(r["due"] - r["amount"] for r in fees) / MICRO,
        "network_fee_energy_kwh": sum(r["energy_wh"] for r in fees) / 1000,
    }


KPI_NOTES = {
    "network_fee_charged": "network fees the buyers paid to the DSO in settlement, currency",
    "network_fee_short": "fees due that the buyers' free balance could not cover, currency",
    "network_fee_energy_kwh": "local-market energy the fees were charged on, kWh",
}
