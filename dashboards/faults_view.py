"""The Resilience page's section on faults inside a run (``faults:`` of ``twin run``).

Reads the run's fault tables (twin/faults/tables.py): ``faults`` (events), ``interruptions``
(customers without supply between fault events, exact times), ``outages`` (customers shed in
islands per interval), ``islands`` (the grid-forming battery's power and state of charge per
island and interval) and ``island_market`` (each island book's price and volume); KPIs from
``kpis.json``, each card's help the KPI's one definition (twin/kpis/reliability.py). Vega-Lite
charts, every axis titled with its unit.
"""

from __future__ import annotations

from typing import Any

import charts
import pandas as pd
import streamlit as st
import twindash as td

from twin.kpis.reliability import COMPARED_NOTES, RUN_NOTES

__all__ = ["has_faults", "show_faults"]

_TABLES = ("faults", "interruptions", "outages", "islands", "island_market")


def has_faults(folder: Any) -> bool:
    """True when the run recorded any fault event."""
    return bool(td.table_rows(folder=folder, name="faults"))


def _customers(intr: pd.DataFrame | None, outg: pd.DataFrame | None) -> pd.DataFrame:
    """Customers without supply (step at each fault event) and shed in islands, by hour."""
    parts = []
    if intr is not None and not intr.empty:
        rows = []
        for r in intr.itertuples():
            rows += [{"hour": r.time_s / 3600, "customers": r.customers_off},
                     {"hour": r.end_s / 3600, "customers": r.customers_off}]
        parts.append(pd.DataFrame(rows).assign(cause="without supply (fault)"))
    if outg is not None and not outg.empty:
        parts.append(pd.DataFrame({"hour": outg["time_s"] / 3600, "customers": outg["customers_shed"],
                                   "cause": "shed in an island"}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def show_faults(*, folder: Any, kpis: dict[str, float] | None) -> None:
    """KPI cards, customers off over time, the islands' battery and book price, the events."""
    t = {n: td.read_table(folder=folder, name=n) for n in _TABLES}
    k = kpis or {}
    st.subheader("Faults in this run")

    def card(col: Any, label: str, key: str, fmt: str) -> None:
        """A KPI card; its help is the KPI's one definition (twin/kpis/reliability.py)."""
        col.metric(label, fmt.format(k[key]) if key in k else "—",
                   help=COMPARED_NOTES.get(key) or RUN_NOTES.get(key))

    c = st.columns(6)
    card(c[0], "Energy not served", "energy_not_served_faults_kwh", "{:.1f} kWh")
    card(c[1], "SAIDI", "saidi_min", "{:.1f} min")
    card(c[2], "SAIFI", "saifi", "{:.2f}")
    card(c[3], "Island survival", "island_survival_min", "{:.0f} min")
    card(c[4], "Island trades", "island_energy_traded_kwh", "{:.1f} kWh")
    mttr = {key[5:-4]: v for key, v in k.items() if key.startswith("mttr_") and key.endswith("_min")}
    c[5].metric("MTTR", " · ".join(f"{n} {v:.0f}" for n, v in mttr.items()) + " min" if mttr else "—",
                help="; ".join(COMPARED_NOTES[f"mttr_{n}_min"] for n in mttr) or None)
    pilots = ("data_acquisition_rate", "market_availability", "tx_latency_p99_s", "provisional_kwh")
    if any(key in k for key in pilots):  # meter-data or chain faults too
        c = st.columns(4)
        card(c[0], "Data acquisition", "data_acquisition_rate", "{:.2%}")
        card(c[1], "Market availability", "market_availability", "{:.2%}")
        card(c[2], "Tx latency p99", "tx_latency_p99_s", "{:.2f} s")
        card(c[3], "Settled on estimates", "provisional_kwh", "{:.2f} kWh")
    cust = _customers(t["interruptions"], t["outages"])
    left, right = st.columns(2)
    if not cust.empty:
        charts.show(spec=charts.lines(data=cust, x="hour", y="customers", color="cause",
                                      x_title="time since start (h)", y_title="customers off (count)",
                                      height=300), key="faults_customers", where=left)
    isl = t["islands"]
    if isl is not None and not isl.empty:
        b = isl.assign(hour=isl["time_s"] / 3600, power_kw=isl["gf_p_mw"] * 1000,
                       soc_percent=isl["gf_soc"] * 100, island=isl["island"].astype(str))
        charts.show(spec=charts.lines(data=b, x="hour", y="power_kw", color="island", points=True,
                                      x_title="time since start (h)",
                                      y_title="grid-forming battery power, supplied (kW)", height=300,
                                      tooltip=["soc_percent", "shed_classes", "collapsed"]),
                    key="faults_battery", where=right)
        charts.show(spec=charts.lines(data=b, x="hour", y="soc_percent", color="island", points=True,
                                      x_title="time since start (h)",
                                      y_title="grid-forming battery state of charge (%)", height=260),
                    key="faults_soc", where=left)
    mk = t["island_market"]
    if mk is not None and not mk.empty:
        m = mk[mk["volume_wh"] > 0].assign(hour=mk["time_s"] / 3600, price=mk["price_per_mwh"] / 1e6,
                                           book=mk["island"].map(lambda i: "grid" if i == 0 else f"island {i}"))
        if not m.empty:
            charts.show(spec=charts.lines(data=m, x="hour", y="price", color="book", points=True,
                                          x_title="delivery time since start (h)",
                                          y_title="book clearing price (currency/MWh)", height=260,
                                          tooltip=["volume_wh", "trades"]),
                        key="faults_prices", where=right)
    ev = t["faults"]
    if ev is not None and not ev.empty:
        st.dataframe(ev.assign(hour=(ev["time_s"] / 3600).round(3)).drop(columns=["time_s"]),
                     hide_index=True, height=240, key="faults_events")
