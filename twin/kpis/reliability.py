"""Reliability KPIs of a run with faults (``faults:``, twin/faults), from its tables.

* ``energy_not_served_faults_kwh`` -- demand of customers without supply (table
  ``interruptions``, exact times between fault events) plus demand shed in islands
  (``outages``), kWh.
* ``saidi_min`` / ``saifi`` -- customer-minutes of interruption / interruptions per
  customer (IEEE 1366 style, over the run): customers without supply (exact times) and
  customers shed in islands (per interval); customers: one per household and per background
  load.
* ``customers_interrupted`` -- interruptions (a customer losing supply; again each time).
* ``island_survival_min`` -- the shortest time an island held by a grid-forming battery
  lasted before it first collapsed (or, without a collapse, the whole islanded stretch),
  minutes; ``island_collapsed_intervals`` -- intervals an island collapsed.
* ``island_trades`` / ``island_energy_traded_kwh`` / ``island_price_per_mwh`` -- trades,
  energy and volume-weighted price of the island books (islands 1.., not the grid's book).
* ``mttr_<kind>_min`` -- mean time to repair per fault kind (line, trafo, upstream,
  inverter_trip, charger_outage), over the faults repaired within the run, minutes.

A run without faults has none of these tables' rows: every KPI is NaN (left out of
``kpis.json``, NA in ``twin compare``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from twin.market.units import MICRO

__all__ = ["FAULT_KINDS", "RELIABILITY_COLUMNS", "reliability_kpis"]

FAULT_KINDS = ("line", "trafo", "upstream", "inverter_trip", "charger_outage")
RELIABILITY_COLUMNS = ("energy_not_served_faults_kwh", "saidi_min", "saifi", "customers_interrupted",
                       "island_survival_min", "island_collapsed_intervals", "island_trades",
                       "island_energy_traded_kwh", "island_price_per_mwh",
                       *(f"mttr_{k}_min" for k in FAULT_KINDS))
NA = float("nan")


def _c(t: pa.Table, name: str) -> np.ndarray:
    if name not in t.column_names or t.num_rows == 0:
        return np.zeros(0)
    return np.asarray(t.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)


def reliability_kpis(tables: Mapping[str, pa.Table], *, interval_s: int) -> dict[str, float]:
    """The KPIs of the module doc (NaN where they do not apply)."""
    def t(name: str) -> pa.Table:
        return tables.get(name, pa.table({}))

    out = dict.fromkeys(RELIABILITY_COLUMNS, NA)
    intr, outg, isl, mkt, flt = t("interruptions"), t("outages"), t("islands"), t("island_market"), t("faults")
    total = np.concatenate([_c(outg, "customers_total"), _c(intr, "customers_total")])
    if total.size and total.max() > 0:
        n = float(total.max())
        cmin = float((_c(intr, "customers_off") * (_c(intr, "end_s") - _c(intr, "time_s"))).sum() / 60.0
                     + _c(outg, "customers_shed").sum() * interval_s / 60.0)
        events = float(_c(intr, "new_interruptions").sum() + _c(outg, "new_interruptions").sum())
        out |= {"energy_not_served_faults_kwh": float(_c(intr, "ens_wh").sum() + _c(outg, "ens_wh").sum()) / 1000,
                "saidi_min": cmin / n, "saifi": events / n, "customers_interrupted": events}
    if isl.num_rows:
        out |= _survival(isl, interval_s=interval_s)
    if mkt.num_rows:
        island = _c(mkt, "island") > 0
        vol = _c(mkt, "volume_wh")[island]
        price = _c(mkt, "price_per_mwh")[island]
        out["island_trades"] = float(_c(mkt, "trades")[island].sum())
        out["island_energy_traded_kwh"] = float(vol.sum() / 1000)
        out["island_price_per_mwh"] = float((vol * price).sum() / vol.sum() / MICRO) if vol.sum() else NA
    if flt.num_rows:
        out |= _mttr(flt)
    return out


def _survival(isl: pa.Table, *, interval_s: int) -> dict[str, float]:
    """Shortest island life (minutes) and the intervals an island collapsed."""
    k = _c(isl, "interval").astype(np.int64)
    n = _c(isl, "island").astype(np.int64)
    coll = np.asarray(isl.column("collapsed").to_pylist(), dtype=bool)
    lives: list[float] = []
    for island in np.unique(n):
        m = n == island
        ks, cs = k[m], coll[m]
        order = np.argsort(ks)
        ks, cs = ks[order], cs[order]
        start = 0
        for j in range(1, ks.size + 1):  # episodes: runs of consecutive intervals
            if j == ks.size or ks[j] != ks[j - 1] + 1:
                ep_k, ep_c = ks[start:j], cs[start:j]
                first = int(np.argmax(ep_c)) if ep_c.any() else ep_k.size
                lives.append(first * interval_s / 60.0)
                start = j
    return {"island_survival_min": float(min(lives)) if lives else NA,
            "island_collapsed_intervals": float(coll.sum())}


def _mttr(flt: pa.Table) -> dict[str, float]:
    """Mean time to repair per fault kind, over the faults repaired within the run."""
    rows = flt.select(["time_s", "kind", "fault_id", "fault_kind"]).to_pylist()
    start: dict[int, tuple[str, float]] = {}
    done: dict[str, list[float]] = {}
    for r in rows:
        if r["kind"] in ("fault", "upstream_loss", "device_fault"):
            start[r["fault_id"]] = (r["fault_kind"], r["time_s"])
        elif r["kind"] in ("repair", "upstream_restore", "device_repair") and r["fault_id"] in start:
            kind, t0 = start.pop(r["fault_id"])
            done.setdefault(kind, []).append((r["time_s"] - t0) / 60.0)
    return {f"mttr_{k}_min": float(np.mean(v)) for k, v in done.items()}
