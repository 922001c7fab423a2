"""Headline KPIs of a run (flat name -> number), computed from the recorded tables."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from twin.agents.forecast import forecast_kpis
from twin.cosim.market_sim import MarketLog
from twin.market.pilot_services import pilot_kpis
from twin.market.units import MICRO
from twin.results import RunRecorder

__all__ = ["compute_kpis"]


def compute_kpis(*, recorder: RunRecorder, log: MarketLog, tokens: dict[str, Any] | None,
                 interval_s: int, services: Collection[str] = ()) -> dict[str, float]:
    """KPIs of the run so far (also for partial runs: they cover what was recorded).

    ``services``: the market services the scenario switches on (their KPIs are added)."""
    trades = recorder.rows("trades")
    bus = recorder.rows("bus")
    line = recorder.rows("line")
    agents = recorder.rows("agents")
    settlements = recorder.rows("settlements")
    traded_wh = sum(t["energy_wh"] for t in trades)
    value = sum(t["energy_wh"] * t["price_per_mwh"] for t in trades)
    consumed_wh = sum(a["metered_wh"] for a in agents if a["metered_wh"] and a["metered_wh"] > 0)
    imported_wh = sum(s["imbalance_wh"] for s in settlements if s["imbalance_wh"] > 0)
    vm = [b["vm_pu"] for b in bus]
    kpis: dict[str, float] = {
        "intervals_settled": float(log.last_settled + 1),
        "orders": float(sum(log.n_orders.values())),
        "trades": float(len(trades)),
        "energy_traded_kwh": traded_wh / 1000,
        "mean_price_per_mwh": (value / traded_wh / MICRO) if traded_wh else 0.0,
        "curtailed_kwh": sum(log.curtailed_wh.values()) / 1000,
        "metered_consumption_kwh": consumed_wh / 1000,
        "imbalance_import_kwh": imported_wh / 1000,
        "vm_min_pu": min(vm) if vm else 0.0,
        "vm_max_pu": max(vm) if vm else 0.0,
        "max_line_loading_percent": max((ln["loading_percent"] for ln in line), default=0.0),
        "line_losses_kwh": sum(ln["pl_mw"] for ln in line) * interval_s / 3.6,
    }
    # the DSO's local network fee on the traded energy (grid.tariff; recorded agent-side in
    # the dso rows, not charged in settlement)
    dso = recorder.rows("dso")
    if dso:
        kpis["network_fee_amount"] = float(sum(r.get("network_fee_amount") or 0.0 for r in dso))
    if consumed_wh:
        kpis["local_market_share"] = traded_wh / consumed_wh
    # Self-sufficiency: share of the feeder's consumption (loads + storage charging, net of
    # storage discharging) not drawn from the upstream grid: 1 - import / consumption.
    grid = recorder.rows("grid")
    if grid:
        to_kwh = interval_s / 3.6  # MW over one interval -> kWh
        import_kwh = sum(max(g["ext_grid_p_mw"], 0.0) for g in grid) * to_kwh
        consumption_kwh = sum(max(g["load_p_mw"], 0.0) for g in grid) * to_kwh
        kpis["grid_import_kwh"] = import_kwh
        kpis["grid_export_kwh"] = sum(max(-g["ext_grid_p_mw"], 0.0) for g in grid) * to_kwh
        kpis["local_generation_kwh"] = sum(g["sgen_p_mw"] for g in grid) * to_kwh
        if consumption_kwh > 0:
            kpis["self_sufficiency"] = max(0.0, 1.0 - import_kwh / consumption_kwh)
    if tokens is not None:
        kpis["tokens_conserved"] = 1.0 if tokens.get("conserved") else 0.0
        kpis["total_supply"] = float(tokens.get("total_supply", 0))
        if services:
            kpis["value_holdings"] = float(tokens.get("value_holdings", 0))
    kpis |= forecast_kpis(recorder.rows("forecasts"))  # agents.forecast (twin/agents/forecast.py)
    kpis |= service_kpis(recorder, services)
    return kpis


def service_kpis(recorder: RunRecorder, services: Collection[str]) -> dict[str, float]:
    """KPIs of the value-layer services (money in currency units, energy in kWh)."""
    out: dict[str, float] = {}
    if "demand_response" in services:
        ev = recorder.rows("dr_events")
        settled = [r for r in ev if r["status"] == "settled"]
        out["dr_events"] = float(len(ev))
        out["dr_events_unfunded"] = float(len(ev) - len(settled))
        out["dr_requested_kwh"] = sum(r["target_wh"] for r in ev) / 1000
        out["dr_committed_kwh"] = sum(r["committed_wh"] for r in settled) / 1000
        out["dr_reduction_kwh"] = sum(r["reduction_wh"] for r in settled) / 1000
        out["dr_paid"] = sum(r["paid"] for r in settled) / MICRO
        out["dr_refund"] = sum(r["refund"] for r in settled) / MICRO
    if "certificates" in services:
        certs = recorder.rows("certificates")
        issued = [r for r in certs if r["action"] == "issued"]
        out["certificates_issued"] = float(sum(r["count"] for r in issued))
        out["certificates_retired"] = float(sum(r["count"] for r in certs if r["action"] == "retired"))
        out["certified_renewable_kwh"] = sum(r["delivered_wh"] for r in issued) / 1000
    if "assets" in services:
        out["asset_revenue"] = sum(r["revenue"] for r in recorder.rows("asset_distributions")) / MICRO
        out["asset_revenue_distributed"] = sum(
            r["amount"] for r in recorder.rows("asset_distributions")) / MICRO
        out["asset_claimed"] = sum(r["amount"] for r in recorder.rows("asset_claims")) / MICRO
    out |= pilot_kpis(recorder.rows, services)  # green exchange, charger tariffs, green currency
    return out
