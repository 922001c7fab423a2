"""Results tables of the ancillary (frequency-regulation) service and the KPIs computed from
them, with the flexible portfolio's revenue by stream."""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

from twin.market.units import MICRO
from twin.services.base import Rows

_i64, _f64, _str = pa.int64(), pa.float64(), pa.string()

__all__ = ["KPI_NOTES", "TABLES", "kpis", "revenue_by_stream"]

#: results tables of the service (money in micro-units; tx_hash: the chain transaction, ''
#: on the reference ledger)
TABLES: Mapping[str, pa.Schema] = {
    "regulation": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("device_id", _i64), ("owner", _i64), ("kind", _str),
         ("capacity_w", _i64), ("mileage_w", _i64), ("score_ppm", _i64), ("requested_wh", _f64),
         ("delivered_wh", _f64), ("capacity_amount", _i64), ("performance_amount", _i64),
         ("amount", _i64), ("tx_hash", _str)]
    ),
    "regulation_intervals": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("requested_w", _i64), ("offered_w", _i64),
         ("procured_w", _i64), ("signal_mean", _f64), ("score", _f64), ("capacity_amount", _i64),
         ("performance_amount", _i64), ("status", _str), ("tx_hash", _str)]
    ),
    "reserve": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("requested_w", _i64), ("offered_w", _i64),
         ("activated", pa.bool_()), ("device_id", _i64), ("owner", _i64), ("capacity_w", _i64),
         ("requested_wh", _f64), ("energy_wh", _i64), ("capacity_amount", _i64),
         ("energy_amount", _i64), ("amount", _i64), ("status", _str), ("tx_hash", _str)]
    ),
}


def revenue_by_stream(rows: Rows) -> dict[str, float]:
    """Revenue of the VPP's flexible portfolio by stream (currency): ``market`` = the VPP
    members' sales on the local market plus the community batteries' net trading (sales less
    purchases), ``demand_response`` = DR compensation paid, ``ancillary`` = regulation pay
    plus reserve pay (capacity and activated energy)."""
    members = {int(r["device_id"]) for r in rows("vpp")}
    storage = {int(r["device_id"]) for r in rows("agents") if r["kind"] == "storage"}
    market = 0
    for r in rows("settlements"):
        d, amt = int(r["device_id"]), int(r["trade_amount"])
        if d in storage or (d in members and amt > 0):
            market += amt
    dr = sum(int(r["amount"]) for r in rows("dr_payouts"))
    anc = sum(int(r["amount"]) for r in rows("regulation")) + sum(int(r["amount"]) for r in rows("reserve"))
    return {"market": market / MICRO, "demand_response": dr / MICRO, "ancillary": anc / MICRO}


def kpis(rows: Rows) -> dict[str, float]:
    iv = rows("regulation_intervals")
    res = rows("regulation")
    paid = [r for r in iv if r["status"] == "settled"]
    h = {int(r["interval"]): 0.0 for r in iv}
    cap_mw_h = 0.0
    interval_s = (int(iv[1]["time_s"]) - int(iv[0]["time_s"])) if len(iv) > 1 else 900
    for r in iv:
        cap_mw_h += r["procured_w"] / 1e6 * interval_s / 3600.0
    weight = sum(r["capacity_w"] for r in res)
    score = sum(r["capacity_w"] * r["score_ppm"] for r in res) / 1e6 / weight if weight else 0.0
    out = {
        "anc_intervals": float(len([r for r in iv if r["procured_w"] > 0])),
        "anc_capacity_mw_h": cap_mw_h,
        "anc_capacity_mean_kw": (sum(r["procured_w"] for r in iv) / len(h) / 1000) if h else 0.0,
        "anc_performance_score": score,
        "anc_capacity_paid": sum(r["capacity_amount"] for r in paid) / MICRO,
        "anc_performance_paid": sum(r["performance_amount"] for r in paid) / MICRO,
    }
    rs = rows("reserve")
    rs_paid = [r for r in rs if r["status"] == "settled"]
    out |= {
        "anc_reserve_capacity_mw_h": sum(r["capacity_w"] for r in rs) / 1e6 * interval_s / 3600.0,
        "anc_reserve_activations": float(len({int(r["interval"]) for r in rs if r["activated"]})),
        "anc_reserve_energy_mwh": sum(r["energy_wh"] for r in rs) / 1e6,
        "anc_reserve_paid": sum(r["amount"] for r in rs_paid) / MICRO,
    }
    streams = revenue_by_stream(rows)
    total = sum(streams.values())
    for name, v in streams.items():
        out[f"revenue_share_{name}"] = v / total if total > 0 else 0.0
    return out


KPI_NOTES = {
    "anc_intervals": "intervals with regulation capacity procured (count)",
    "anc_capacity_mw_h": "regulation capacity procured over the run, MW x h",
    "anc_capacity_mean_kw": "mean regulation capacity procured per interval, kW",
    "anc_performance_score": "precision score of the regulation, capacity-weighted mean, 0-1",
    "anc_capacity_paid": "capacity payments for regulation, currency",
    "anc_performance_paid": "performance (mileage) payments for regulation, currency",
    "anc_reserve_capacity_mw_h": "upward reserve capacity procured over the run, MW x h",
    "anc_reserve_activations": "intervals the TSO activated the upward reserve in (count)",
    "anc_reserve_energy_mwh": "upward reserve energy delivered on activation, MWh",
    "anc_reserve_paid": "reserve payments (capacity held and energy activated), currency",
    "revenue_share_market": "share of the flexible portfolio's revenue from the energy market (VPP "
                            "members' sales, batteries' net trading), 0-1",
    "revenue_share_demand_response": "share of the flexible portfolio's revenue from demand "
                                     "response, 0-1",
    "revenue_share_ancillary": "share of the flexible portfolio's revenue from frequency "
                               "regulation and reserve, 0-1",
}
