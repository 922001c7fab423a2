"""Results tables of the green exchange service and the KPIs computed from them."""

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
    "green_exchange": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("action", _str), ("device_id", _i64),
         ("account", _i64), ("tokens", _i64), ("energy_wh", _i64), ("amount", _i64),
         ("tx_hash", _str), ("price_per_mwh", _i64)]
    ),
}


def kpis(rows: Rows) -> dict[str, float]:
    ge = rows("green_exchange")

    def total(action: str, col: str) -> int:
        return sum(r[col] for r in ge if r["action"] == action)

    return {
        "green_tokens_minted": float(total("minted", "tokens")),
        "green_tokens_redeemed": float(total("redeemed", "tokens")),
        "green_delivered_kwh": total("minted", "energy_wh") / 1000,
        "green_supplied_kwh": total("redeemed", "energy_wh") / 1000,
        "green_exchange_dso_paid": total("sold", "amount") / MICRO,
        "green_exchange_dso_received": total("bought", "amount") / MICRO,
    }


KPI_NOTES = {
    "green_tokens_minted": "green tokens minted on metered PV surplus (1 per kWh)",
    "green_tokens_redeemed": "green tokens redeemed against metered consumption",
    "green_delivered_kwh": "PV surplus behind the minted tokens, kWh",
    "green_supplied_kwh": "consumption covered by redeemed tokens, kWh",
    "green_exchange_dso_paid": "paid by the DSO for tokens prosumers sold, currency",
    "green_exchange_dso_received": "paid to the DSO for tokens consumers bought, currency",
}
