"""``kpis.json`` of a feeder run: every headline number, from the run's results tables.

:func:`compute_kpis` is the one place the run's KPIs come from (also for partial runs: they
cover what was recorded). It adds to the compared KPIs of :func:`twin.kpis.metrics.feeder_kpis`
the run's counts, voltages and losses, the forecast errors (``agents.forecast``), the token
audit and the KPIs of each market service the scenario switches on (their own definitions,
``twin/services/<name>/results.py``). Names, units and meanings: :data:`twin.kpis.KPIS`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from twin.agents.forecast import forecast_kpis
from twin.kpis.metrics import ChainPricing, RunInputs, _col, _icol, feeder_kpis
from twin.kpis.reliability import reliability_kpis, settlements_after_trueup
from twin.market.units import MICRO
from twin.services.registry import SERVICES

__all__ = ["KPI_READS", "compute_kpis", "kpi_reads", "read_tables"]

#: The columns :func:`compute_kpis` reads of the tables with a row per device, bus, line,
#: order or trade and interval (the big ones: ``orders`` only its row count); the rest of
#: such a table is not read back. Every other table is read whole.
KPI_READS: dict[str, tuple[str, ...]] = {
    "agents": ("kind", "device_id", "metered_wh", "pv_available_wh", "pv_wh"),
    "bus": ("vm_pu", "p_mw", "vm_a_pu", "vm_b_pu", "vm_c_pu", "vuf_percent"),
    "line": ("loading_percent", "pl_mw"),
    "orders": (),
    "settlements": ("interval", "device_id", "owner", "traded_wh", "metered_wh",
                    "imbalance_wh", "trade_amount", "imbalance_amount", "debt"),
    "trades": ("energy_wh", "price_per_mwh"),
}


def kpi_reads(services: Collection[str] = ()) -> Mapping[str, Sequence[str]] | None:
    """The columns :func:`compute_kpis` needs read back (``read_tables(columns=)``); None
    (every column) when market services are on: their KPIs read whole rows of any table."""
    return None if services else KPI_READS


def read_tables(run_dir: Path, names: Collection[str] | None = None, *,
                columns: Mapping[str, Sequence[str]] | None = None) -> dict[str, pa.Table]:
    """The results tables a run folder holds (only ``names`` if given; of a table named in
    ``columns`` only those of its columns the file has: a town's day reads back 193 MB of
    its 481 MB of columns)."""
    out = {}
    for path in sorted(Path(run_dir).glob("*.parquet")):
        if names is not None and path.stem not in names:
            continue
        with pq.ParquetFile(path) as f:
            cols = columns.get(path.stem) if columns is not None else None
            if cols is not None:
                cols = [c for c in cols if c in f.schema_arrow.names]
            out[path.stem] = f.read(columns=cols)
    return out


def _rows(tables: Mapping[str, pa.Table]) -> Any:
    def rows(name: str) -> Sequence[Mapping[str, Any]]:
        t = tables.get(name)
        return t.to_pylist() if t is not None else []
    return rows


def phase_kpis(bus: pa.Table) -> dict[str, float]:
    """Phase voltage extremes and the highest unbalance of a three-phase run (grid.phases: 3;
    the per-phase columns are null in balanced runs, which then get none of these)."""
    phases = ("vm_a_pu", "vm_b_pu", "vm_c_pu")
    if "vm_a_pu" not in bus.column_names or bus.num_rows == 0:
        return {}
    if all(bus.column(c).null_count == bus.num_rows for c in phases):  # a balanced run
        return {}
    vm = np.concatenate([_col(bus, c) for c in phases])
    vm = vm[np.isfinite(vm)]
    vuf = _col(bus, "vuf_percent")
    vuf = vuf[np.isfinite(vuf)]
    if not vm.size:
        return {}
    return {"vm_phase_min_pu": float(vm.min()), "vm_phase_max_pu": float(vm.max()),
            "max_vuf_percent": float(vuf.max()) if vuf.size else float("nan")}


def compute_kpis(tables: Mapping[str, pa.Table], *, inputs: RunInputs,
                 tokens: Mapping[str, Any] | None, services: Collection[str] = (),
                 pricing: ChainPricing | None = None) -> dict[str, float]:
    """Every KPI of a feeder run (flat name -> number; NaN where a KPI does not apply is
    left out, so ``kpis.json`` holds numbers only)."""
    def t(name: str) -> pa.Table:
        return tables.get(name, pa.table({}))

    trades, market, agents = t("trades"), t("market"), t("agents")
    traded_wh = int(_icol(trades, "energy_wh").sum())
    value = int((_icol(trades, "energy_wh") * _icol(trades, "price_per_mwh")).sum())
    metered = _col(agents, "metered_wh") if agents.num_rows else np.zeros(0)
    imbalance = _icol(settlements_after_trueup(t("settlements"), tables.get("trueups")),
                      "imbalance_wh")
    vm = _col(t("bus"), "vm_pu")
    vm = vm[np.isfinite(vm)]
    line = t("line")
    interval = _icol(market, "interval")
    kpis: dict[str, float] = {
        "intervals_settled": float(interval.max() + 1) if interval.size else 0.0,
        "orders": float(t("orders").num_rows),
        "trades": float(trades.num_rows),
        "mean_price_per_mwh": value / traded_wh / MICRO if traded_wh else 0.0,
        "metered_consumption_kwh": float(np.nansum(np.clip(metered, 0, None)) / 1000),
        "imbalance_import_kwh": float(np.clip(imbalance, 0, None).sum() / 1000),
        "vm_min_pu": float(vm.min()) if vm.size else 0.0,
        "vm_max_pu": float(vm.max()) if vm.size else 0.0,
        "max_line_loading_percent": float(np.nanmax(_col(line, "loading_percent")))
        if line.num_rows else 0.0,
        "line_losses_kwh": float(np.nansum(_col(line, "pl_mw")) * inputs.interval_s / 3.6),
    }
    # the DSO's network fee on the traded energy as its tariff puts it (recorded agent-side
    # in the dso rows; charged in settlement only by the network_fee service)
    dso = t("dso")
    if dso.num_rows:
        kpis["network_fee_amount"] = float(np.nansum(_col(dso, "network_fee_amount")))
    grid = t("grid")
    if grid.num_rows:
        to_kwh = inputs.interval_s / 3.6  # MW over one interval -> kWh
        ext = _col(grid, "ext_grid_p_mw")
        kpis["grid_import_kwh"] = float(np.clip(ext, 0.0, None).sum() * to_kwh)
        kpis["grid_export_kwh"] = float(np.clip(-ext, 0.0, None).sum() * to_kwh)
        kpis["local_generation_kwh"] = float(_col(grid, "sgen_p_mw").sum() * to_kwh)
    kpis |= phase_kpis(t("bus"))
    kpis |= feeder_kpis(tables, inputs=inputs, pricing=pricing or ChainPricing())
    kpis |= reliability_kpis(tables, interval_s=inputs.interval_s, n_intervals=inputs.n_intervals,
                             run=True)  # faults: the run-only reliability KPIs too
    if tokens is not None:
        kpis["tokens_conserved"] = 1.0 if tokens.get("conserved") else 0.0
        kpis["total_supply"] = float(tokens.get("total_supply", 0))
        if services:
            kpis["value_holdings"] = float(tokens.get("value_holdings", 0))
    rows = _rows(tables)
    kpis |= forecast_kpis(rows("forecasts"))  # agents.forecast (twin/agents/forecast.py)
    for d in SERVICES:
        if d.name in services:
            kpis |= d.kpis(rows)
    # a KPI that does not apply (NaN: no consumption, a reference ledger's gas) is left out
    return {k: v for k, v in kpis.items() if not (isinstance(v, float) and np.isnan(v))}
