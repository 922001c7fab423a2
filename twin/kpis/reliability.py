"""Every reliability KPI of a run with faults, defined once (``faults:``, twin/faults), from
its tables: the grid's (outages, islands, repairs) and the pilots' (meter data, market
availability, a flaky chain). Each KPI's unit and meaning is in :data:`COMPARED_NOTES`
(the KPIs of ``twin compare``, ``twin regress`` and the dashboards, NaN where they do not
apply) or :data:`RUN_NOTES` (``kpis.json`` only); :func:`reliability_kpis` computes them.

Grid faults (tables ``interruptions``, ``outages``, ``islands``, ``island_market``,
``faults``): customers are one per household and per background load; customers without
supply are counted at exact times between fault events, customers shed in islands per
interval; SAIDI/SAIFI are IEEE 1366 style over the run; an island's survival is the time a
grid-forming battery held it before it first collapsed (or the whole islanded stretch).

Data and chain faults (tables ``meter_data``, ``provisional``, ``trueups``,
``chain_incidents``, ``tx_latency``, and ``market``/``settlements``): readings acquired by
the polling deadline, provisional settlement on estimates and its true-ups, intervals
cleared and settled in their own step, transaction latency submission to receipt, time to
recover from each kind of chain incident.

A run without faults has none of these tables' rows: every KPI is NaN (left out of
``kpis.json``, NA in ``twin compare``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pyarrow as pa

from twin.market.units import MICRO

__all__ = ["COMPARED_NOTES", "FAULT_KINDS", "RELIABILITY_COLUMNS", "RUN_NOTES", "TABLES_READ",
           "reliability_kpis", "settlements_after_trueup"]

NA = float("nan")
#: the grid's fault kinds (``faults.lines``/``trafos``/``upstream``/``devices``)
FAULT_KINDS = ("line", "trafo", "upstream", "inverter_trip", "charger_outage")
#: the results tables the reliability KPIs read (``twin compare`` reads only these and its own)
TABLES_READ = ("faults", "interruptions", "outages", "islands", "island_market", "meter_data",
               "provisional", "trueups", "chain_incidents", "tx_latency")

#: name -> unit and meaning of the compared reliability KPIs, in ``twin compare``'s order
COMPARED_NOTES: dict[str, str] = {
    "data_acquisition_rate": "meter readings acquired by the polling deadline / readings expected (0..1; NA without faults.data)",
    "market_availability": "intervals cleared and settled in their own step / intervals due (0..1; every interval after the first, which has no gate; a run stopped by a chain outage lowers it)",
    "tx_latency_p50_s": "median transaction latency, submission to receipt, s (chain runs with faults.chain)",
    "tx_latency_p99_s": "99th-percentile transaction latency, submission to receipt, s (chain runs with faults.chain)",
    "chain_mttr_s": "mean time to recover from a chain incident (outage, restart, dropped or delayed tx), s",
    "provisional_kwh": "energy settled provisionally on estimated meter readings (sum of |estimate|), kWh",
    "trueup_amount": "money the true-ups of provisional settlements moved to device owners (signed), currency",
    "energy_not_served_faults_kwh": "demand without supply (exact times between fault events) or shed in islands, kWh (faults)",
    "saidi_min": "customer-minutes of interruption per customer (SAIDI over the run), min (faults)",
    "saifi": "interruptions per customer (SAIFI over the run) (faults)",
    "customers_interrupted": "customer interruptions, each loss of supply counted (faults)",
    "island_survival_min": "shortest life of an island held by a grid-forming battery before it first collapsed, min (faults)",
    "island_collapsed_intervals": "intervals an island collapsed, its batteries short even after shedding every load (faults)",
    "island_trades": "trades cleared on island books (faults.islands.market: per_island)",
    "island_energy_traded_kwh": "energy traded on island books, kWh (faults)",
    "island_price_per_mwh": "volume-weighted price of the island books, currency/MWh (faults)",
    **{f"mttr_{k}_min": f"mean time to repair a {k} fault (repaired within the run), min (faults)"
       for k in FAULT_KINDS},
}
#: the compared reliability KPIs
RELIABILITY_COLUMNS = tuple(COMPARED_NOTES)

#: name -> unit and meaning of the reliability KPIs only ``kpis.json`` holds
RUN_NOTES: dict[str, str] = {
    "trueup_kwh": "corrections of provisional settlements by the real readings (sum of |delta|), kWh",
    "provisional_open": "provisional settlements never trued up (reading never arrived), count",
    "settled_metered_kwh": "net metered energy settled, true-ups applied (the fault-free run's when every reading arrives), kWh",
    "readings_late": "meter readings that arrived after the deadline (true-up or duplicate), count",
    "chain_incidents": "incidents of a flaky chain (outages, restarts, dropped/delayed tx, gas spikes), count",
    "chain_mttr_<kind>_s": "mean time to recover from chain incidents of one kind, s",
}


def _c(t: pa.Table | None, name: str) -> np.ndarray:
    if t is None or name not in t.column_names or t.num_rows == 0:
        return np.zeros(0)
    return np.asarray(t.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)


def reliability_kpis(tables: Mapping[str, pa.Table], *, interval_s: int,
                     n_intervals: int | None = None, run: bool = False) -> dict[str, float]:
    """The compared reliability KPIs (NaN where they do not apply); ``run``: and the ones of
    :data:`RUN_NOTES` that apply. ``n_intervals``: the run's planned intervals (market
    availability; None: not known)."""
    return _comm(tables, n_intervals=n_intervals, run=run) | _grid(tables, interval_s=interval_s)


def _grid(tables: Mapping[str, pa.Table], *, interval_s: int) -> dict[str, float]:
    """Grid faults: interruptions, energy not served, islands, repairs."""
    def t(name: str) -> pa.Table:
        return tables.get(name, pa.table({}))

    out = dict.fromkeys(RELIABILITY_COLUMNS[RELIABILITY_COLUMNS.index("energy_not_served_faults_kwh"):], NA)
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


def _comm(tables: Mapping[str, pa.Table], *, n_intervals: int | None, run: bool
          ) -> dict[str, float]:
    """Meter-data and chain faults, market availability."""
    md, prov, tu = tables.get("meter_data"), tables.get("provisional"), tables.get("trueups")
    inc, lat = tables.get("chain_incidents"), tables.get("tx_latency")
    acquired = _c(md, "acquired")
    latency = _c(lat, "latency_s")
    duration = _c(inc, "duration_s")
    market = tables.get("market")
    settled_intervals = market.num_rows if market is not None else 0
    due = (n_intervals - 1) if n_intervals else None
    out = {
        "data_acquisition_rate": float(acquired.mean()) if acquired.size else NA,
        "market_availability": min(1.0, settled_intervals / due) if due else NA,
        "tx_latency_p50_s": float(np.percentile(latency, 50)) if latency.size else NA,
        "tx_latency_p99_s": float(np.percentile(latency, 99)) if latency.size else NA,
        "chain_mttr_s": float(duration[np.isfinite(duration)].mean())
        if np.isfinite(duration).any() else NA,
        "provisional_kwh": float(np.abs(_c(prov, "estimated_wh")).sum() / 1000) if prov is not None else NA,
        "trueup_amount": float(_c(tu, "amount").sum() / MICRO) if tu is not None else NA,
    }
    if not run:
        return out
    if prov is not None:
        out["trueup_kwh"] = float(np.abs(_c(tu, "delta_wh")).sum() / 1000)
        out["provisional_open"] = float(prov.num_rows - (tu.num_rows if tu is not None else 0))
    settlements = tables.get("settlements")
    if settlements is not None:
        out["settled_metered_kwh"] = float((_c(settlements, "metered_wh").sum()
                                            + _c(tu, "delta_wh").sum()) / 1000)
    if md is not None:
        out["readings_late"] = float((_c(md, "arrives_interval") >= 0).sum())
    if inc is not None:
        out["chain_incidents"] = float(inc.num_rows)
        kinds = inc.column("kind").to_pylist()
        for kind in sorted(set(kinds)):
            d = duration[np.array([k == kind for k in kinds])]
            d = d[np.isfinite(d)]  # an incident the run did not recover from has no time
            out[f"chain_mttr_{kind}_s"] = float(d.mean()) if d.size else NA
    return out


def settlements_after_trueup(settlements: pa.Table, trueups: pa.Table | None) -> pa.Table:
    """The settlements table as the true-ups left it: each trued-up row's metered and
    imbalance energy replaced by the real reading's, the true-up's payment added to its
    imbalance amount and its unpaid rest to its debt (the settlement KPIs then read as if the
    reading had been there on time)."""
    if trueups is None or trueups.num_rows == 0 or settlements.num_rows == 0:
        return settlements
    fix = {(r["interval"], r["device_id"]): r for r in trueups.to_pylist()}
    rows = settlements.to_pylist()
    for r in rows:
        t = fix.get((r["interval"], r["device_id"]))
        if t is None:
            continue
        r["metered_wh"] = t["metered_wh"]
        r["imbalance_wh"] += t["delta_wh"]
        r["imbalance_amount"] += t["paid"]
        r["debt"] += t["debt"]
    return pa.Table.from_pylist(rows, schema=settlements.schema)
