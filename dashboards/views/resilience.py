"""Resilience: contingency results (energy not served, customers interrupted), islands on the
map, and storage state of charge during a blackout; for a `twin run` with ``faults:``, the
faults that happened in the run (dashboards/faults_view.py).

Reads the folder of ``twin resilience SCENARIO --out DIR`` (``twin/grid/resilience.py``):
``cases`` (one row per case: ``case``, ``kind``, ``lines_out``, ``trafos_out`` as row positions,
``ens_kwh``, ``customers_interrupted``, ``customer_minutes``, ``saifi``, ``saidi_min``,
``island_survival_min``, ``vm_min_pu``, ``vm_max_pu``, ``overloaded_branches``, ...) and ``steps``
(per case and time: ``unserved_mw``, ``islanded``, ``island_collapsed``, ``soc``,
``energized_buses``, ...). The map needs ``topology.json``; the part of the feeder cut off
from the upstream grid by a case's outages is found from it.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import dashui
import faults_view
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
import twindash as td

ctx = dashui.run_context()
dashui.page_header(title="Resilience", ctx=ctx)

#: Metrics to rank cases by (first name found wins), with a label.
_METRICS = [
    (("ens_kwh", "energy_not_served_kwh"), "energy not served (kWh)"),
    (("customers_interrupted",), "customers interrupted"),
    (("customer_minutes", "customer_minutes_interrupted"), "customer-minutes interrupted"),
    (("saidi_min",), "SAIDI (min)"),
    (("saifi",), "SAIFI"),
    (("island_survival_min",), "island survival (min)"),
    (("overloaded_branches",), "overloaded branches"),
    (("vm_min_pu",), "lowest voltage (p.u.)"),
]


def _first(df: pd.DataFrame, names: tuple[str, ...]) -> str | None:
    return next((n for n in names if n in df.columns), None)


def _cut_off(topology: dict[str, Any], lines_out: list[int], trafos_out: list[int]) -> set[int]:
    """Buses no longer connected to a slack bus once these lines/trafos (row positions) are out."""
    out_l, out_t = set(lines_out), set(trafos_out)
    adj: dict[int, list[int]] = {b["bus"]: [] for b in topology["buses"]}
    branches = [(ln["from_bus"], ln["to_bus"]) for i, ln in enumerate(topology["lines"])
                if i not in out_l and ln.get("in_service", True)]
    branches += [(t["hv_bus"], t["lv_bus"]) for i, t in enumerate(topology.get("trafos", []))
                 if i not in out_t and t.get("in_service", True)]
    branches += [(s["bus"], s["element"]) for s in topology.get("switches", [])
                 if s.get("et") == "b" and s.get("closed")]
    for a, b in branches:
        adj.setdefault(a, []).append(b)
        adj.setdefault(b, []).append(a)
    seen = set(topology.get("slack_buses", []))
    queue = deque(seen)
    while queue:
        for v in adj.get(queue.popleft(), []):
            if v not in seen:
                seen.add(v)
                queue.append(v)
    return set(adj) - seen


def _as_list(v: Any) -> list[int]:
    return [] if v is None else [int(x) for x in list(v)]


def _map(topology: dict[str, Any], case: pd.Series) -> go.Figure:
    pos = pd.DataFrame(topology["buses"]).set_index("bus")
    lines_out, trafos_out = _as_list(case.get("lines_out")), _as_list(case.get("trafos_out"))
    cut = _cut_off(topology, lines_out, trafos_out)
    fig = go.Figure()
    for label, colour, width, dash, keep in (
            ("in service", "#bbbbbb", 2, None, False), ("out of service", "#d7301f", 4, "dash", True)):
        xs: list[float | None] = []
        ys: list[float | None] = []
        for i, ln in enumerate(topology["lines"]):
            if (i in lines_out) == keep:
                a, b = ln["from_bus"], ln["to_bus"]
                xs += [pos.at[a, "x"], pos.at[b, "x"], None]
                ys += [pos.at[a, "y"], pos.at[b, "y"], None]
        for i, t in enumerate(topology.get("trafos", [])):
            if (i in trafos_out) == keep:
                a, b = t["hv_bus"], t["lv_bus"]
                xs += [pos.at[a, "x"], pos.at[b, "x"], None]
                ys += [pos.at[a, "y"], pos.at[b, "y"], None]
        if xs:
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name=label, hoverinfo="skip",
                                     line={"color": colour, "width": width, "dash": dash}))
    state = pd.Series(["fed from the upstream grid"] * len(pos), index=pos.index)
    state[state.index.isin(cut)] = "cut off (island or de-energized)"
    slack = set(topology.get("slack_buses", []))
    for name, colour in (("fed from the upstream grid", "#2c7bb6"),
                         ("cut off (island or de-energized)", "#fdae61")):
        part = pos[state == name]
        if len(part):
            fig.add_trace(go.Scatter(x=part["x"], y=part["y"], mode="markers", name=name,
                                     marker={"size": 10, "color": colour,
                                             "line": {"color": "black", "width": 0.5}},
                                     text=[f"bus {b}{' (slack)' if b in slack else ''}"
                                           for b in part.index], hoverinfo="text"))
    fig.update_layout(height=480, margin={"t": 10, "b": 10}, legend={"orientation": "h"},
                      xaxis={"visible": False}, yaxis={"visible": False})
    return fig


if ctx is not None:
    cases = next((df for name in ("cases", "resilience_cases")
                  if (df := td.read_table(folder=ctx.folder, name=name)) is not None), None)
    if cases is None and faults_view.has_faults(ctx.folder):  # a twin run with faults:
        faults_view.show_faults(folder=ctx.folder, kpis=ctx.kpis)
    elif cases is None:
        dashui.no_data(what="resilience study (cases.parquet)", folder=ctx.folder,
                       hint="`twin resilience SCENARIO --out DIR` writes contingency results; "
                            "open that folder with `twin dashboard DIR`.")
    else:
        k = ctx.kpis or {}
        case_col = _first(cases, ("case", "case_id")) or cases.columns[0]
        cases[case_col] = cases[case_col].astype(str)
        ens = _first(cases, ("ens_kwh", "energy_not_served_kwh"))
        cust = _first(cases, ("customers_interrupted",))
        c = st.columns(5)
        c[0].metric("Cases", f"{len(cases):,}",
                    help=", ".join(f"{n} {kind}" for kind, n in cases["kind"].value_counts().items())
                    if "kind" in cases.columns else None)
        c[1].metric("Worst-case ENS", f"{cases[ens].max():.1f} kWh" if ens else "—",
                    help="energy not served in the worst case")
        c[2].metric("Worst-case customers out", f"{cases[cust].max():.0f}" if cust else "—",
                    help="customers interrupted in the worst case")
        c[3].metric("ENS, all cases",
                    f"{k['ens_kwh_total']:.1f} kWh" if "ens_kwh_total" in k else "—")
        secure = [f"{key.split('_')[0].upper()} {100 * v:.0f} %" for key, v in k.items()
                  if key.endswith("_secure_fraction")]
        c[4].metric("Secure cases", " · ".join(secure) if secure else "—",
                    help="share of cases with no unserved energy and no violation (kpis.json)")

        st.subheader("Contingency cases")
        metrics = [(col, label) for names, label in _METRICS if (col := _first(cases, names))]
        if metrics:
            labels = dict(metrics)
            metric = st.selectbox("Rank cases by", options=list(labels), format_func=labels.get,
                                  key="res_metric")
            kinds = sorted(cases["kind"].unique()) if "kind" in cases.columns else []
            chosen = st.multiselect("Kinds", options=kinds, default=kinds, key="res_kinds")
            shown = cases[cases["kind"].isin(chosen)] if kinds else cases
            ranked = shown.sort_values(metric, ascending=metric == "vm_min_pu").head(30)
            fig = px.bar(ranked, x=metric, y=case_col, orientation="h",
                         color="kind" if "kind" in ranked.columns else None,
                         labels={metric: labels[metric]})
            fig.update_layout(height=max(300, 18 * len(ranked)), margin={"t": 10, "b": 10},
                              yaxis={"autorange": "reversed", "type": "category"})
            st.plotly_chart(fig, width="stretch", key="cases_chart")
        st.dataframe(cases.assign(**{c_: cases[c_].map(lambda v: " ".join(map(str, _as_list(v))))
                                     for c_ in ("lines_out", "trafos_out") if c_ in cases.columns}),
                     hide_index=True, height=260, key="cases_table")

        st.subheader("Islands on the map")
        worst = cases.sort_values(ens, ascending=False)[case_col].tolist() if ens else cases[case_col].tolist()
        case_name = st.selectbox("Case", options=worst, key="res_case")
        case = cases[cases[case_col] == case_name].iloc[0]
        topology = td.read_json(path=ctx.folder / "topology.json")
        if not isinstance(topology, dict) or not topology.get("buses"):
            dashui.no_data(what="network topology (topology.json)", folder=ctx.folder,
                           hint="`twin run` writes it; the map of a study needs it beside cases.parquet.")
        else:
            st.plotly_chart(_map(topology, case), width="stretch", key="islands_map")
            st.caption(f"Out of service: lines {_as_list(case.get('lines_out')) or '—'}, "
                       f"transformers {_as_list(case.get('trafos_out')) or '—'} (row positions).")

        steps = td.read_table(folder=ctx.folder, name="steps",
                              filters=(("case", "==", case_name),)) if "case" in cases.columns else None
        st.subheader("Storage and unserved load over time")
        if steps is None or steps.empty:
            dashui.no_data(what=f"time series of case {case_name} (steps.parquet)",
                           folder=ctx.folder, hint="The study wrote no per-step results.")
        else:
            steps = steps.assign(hour=steps["time_s"] / 3600)
            left, right = st.columns(2)
            if "soc" in steps.columns and steps["soc"].notna().any():
                fig = px.line(steps, x="hour", y=steps["soc"] * 100,
                              labels={"y": "grid-forming storage SOC (%)", "hour": "time since start (h)"})
                if "islanded" in steps.columns and steps["islanded"].any():
                    isl = steps.loc[steps["islanded"], "hour"]
                    fig.add_vrect(x0=isl.min(), x1=isl.max(), fillcolor="orange", opacity=0.15,
                                  line_width=0, annotation_text="islanded")
                fig.update_layout(height=320, margin={"t": 10, "b": 10}, yaxis_range=[0, 100])
                left.plotly_chart(fig, width="stretch", key="soc_chart")
            else:
                left.caption("No grid-forming storage in this study.")
            if "unserved_mw" in steps.columns:
                fig = px.area(steps, x="hour", y=steps["unserved_mw"] * 1000,
                              labels={"y": "unserved load (kW)", "hour": "time since start (h)"})
                fig.update_layout(height=320, margin={"t": 10, "b": 10})
                right.plotly_chart(fig, width="stretch", key="unserved_chart")
