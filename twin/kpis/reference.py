"""Every KPI of ``kpis.json`` once: its name and what it means, unit included.

The compared KPIs' notes come from :data:`twin.kpis.metrics.KPI_NOTES`, each market
service's from its ``ServiceDef.kpi_notes``; :func:`kpi_reference` renders the table the
README's KPI reference shows (a test keeps the two equal).
"""

from __future__ import annotations

from twin.kpis.metrics import KPI_NOTES
from twin.kpis.reliability import RUN_NOTES as RUN_FAULT_NOTES
from twin.services.registry import SERVICES

__all__ = ["KPIS", "RUN_NOTES", "kpi_reference"]

#: the feeder run's own KPIs beyond the compared ones
RUN_NOTES: dict[str, str] = {
    "intervals_settled": "market intervals settled (count)",
    "orders": "orders placed on the local market (count)",
    "trades": "trades cleared (count)",
    "mean_price_per_mwh": "volume-weighted mean trade price, currency/MWh",
    "metered_consumption_kwh": "metered consumption of all agents' devices, kWh",
    "imbalance_import_kwh": "consumption settled against the DSO at retail (not traded), kWh",
    "vm_min_pu": "lowest bus voltage, p.u.",
    "vm_max_pu": "highest bus voltage, p.u.",
    "vm_phase_min_pu": "lowest phase-to-neutral voltage of any bus and phase, p.u. (three-phase runs)",
    "vm_phase_max_pu": "highest phase-to-neutral voltage of any bus and phase, p.u. (three-phase runs)",
    "max_vuf_percent": "highest voltage-unbalance factor (negative / positive sequence) of any "
                       "three-phase bus, % (three-phase runs; EN 50160 limit 2 %)",
    "max_line_loading_percent": "highest line loading, %",
    "line_losses_kwh": "line losses, kWh",
    "grid_import_kwh": "energy imported from upstream, kWh",
    "grid_export_kwh": "energy exported upstream, kWh",
    "local_generation_kwh": "energy of the feeder's generators (PV), kWh",
    "network_fee_amount": "the DSO's published network fee on the traded energy (recorded; "
                          "charged only by the network_fee service), currency",
    "tokens_conserved": "1 when the token audit closes exactly, else 0",
    "total_supply": "settlement tokens minted, micro-units",
    "value_holdings": "tokens the service contracts hold at the end, micro-units",
    "wall_time_s": "wall time of the run, s",
}

#: name -> meaning (unit included), every KPI ``kpis.json`` can hold except the forecast
#: errors (``forecast_<metric>_<target>``, twin/agents/forecast.py)
KPIS: dict[str, str] = {**RUN_NOTES, **KPI_NOTES, **RUN_FAULT_NOTES,
                        **{k: v for d in SERVICES for k, v in d.kpi_notes.items()}}


def kpi_reference() -> str:
    """The KPI reference as a Markdown table."""
    lines = ["| KPI | meaning, unit |", "|---|---|"]
    lines += [f"| `{k}` | {v} |" for k, v in KPIS.items()]
    return "\n".join(lines)
