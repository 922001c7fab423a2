"""Sweep: swept parameters against KPIs (scatter, parallel coordinates, heat map over two
parameters), filters, and a table of runs linking to each run's pages.

Scatter and heat map are Vega-Lite (``charts.py``); the parallel coordinates stay plotly (no
Vega-Lite equivalent) and are drawn by default only up to 300 runs, so a large sweep's first
render never loads plotly.js.

Reads ``kpis.parquet`` of a sweep folder (one row per run: ``run_id``, each swept parameter,
``seed``, ``status``, each KPI). Parameters are the columns named in the sweep's own JSON
(``sweep.json`` / ``sweep_manifest.json``: ``"parameters"``) when there is one, else the
columns named by a field path (``agents.households.pv.share``) or prefixed ``param.``.
"""

from __future__ import annotations

from typing import Any

import charts
import dashui
import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import twindash as td

from twin.kpis.reference import KPIS

#: Up to this many runs (after the filters) the parallel-coordinates chart is drawn by default.
_PARCOORDS_AUTO = 300
_META = {"run_id", "seed", "status", "error", "run_dir", "started_at", "finished_at"}

folder = dashui.base_folder()
st.title("Sweep")


#: a scenario parameter's unit from the end of its field path (the scenario's unit names)
_PARAM_UNITS = (("_per_mwh", "currency per MWh"), ("_kwh", "kWh"), ("_kwp", "kWp"), ("_kw", "kW"),
                ("_pu", "pu"), ("_hz", "Hz"), ("_percent", "%"), ("_s", "s"), ("_hour", "h"),
                ("share", "share, 0-1"), ("soc", "share, 0-1"), ("count", "count"),
                ("members", "count"), ("seed", "count"))


def _titled(column: str) -> str:
    """An axis title: the KPI's name and its unit (twin.kpis.KPIS), a scenario parameter's
    unit from its name, else the column."""
    meaning = KPIS.get(column, "")
    unit = meaning.rsplit(", ", 1)[1] if ", " in meaning else ""
    if not unit:
        unit = next((u for end, u in _PARAM_UNITS if column.lower().endswith(end)), "")
    return f"{column} ({unit})" if unit and len(unit) < 20 else column



def _parameters(df: pd.DataFrame) -> list[str]:
    for name in ("sweep.json", "sweep_manifest.json"):
        doc = td.read_json(path=folder / name)
        if isinstance(doc, dict) and doc.get("parameters"):
            declared = doc["parameters"]
            names = list(declared) if isinstance(declared, dict) else [
                p if isinstance(p, str) else p.get("path") or p.get("name") for p in declared]
            found = [n for n in names if n in df.columns]
            if found:
                return found
    return [c for c in df.columns if c not in _META and ("." in c or c.startswith("param"))]


def _codes(s: pd.Series) -> tuple[np.ndarray, dict[str, Any]]:
    """A parallel-coordinates dimension for numeric or categorical values."""
    if pd.api.types.is_numeric_dtype(s):
        return s.to_numpy(dtype=float), {}
    cats = sorted(s.astype(str).unique())
    idx = {c: i for i, c in enumerate(cats)}
    return s.astype(str).map(idx).to_numpy(dtype=float), {"tickvals": list(range(len(cats))),
                                                          "ticktext": cats}


if td.folder_kind(folder=folder) == "compare":
    st.info(f"{folder} is a comparison of scenarios (`twin compare`), not a sweep: the Compare "
            "page shows it side by side.")
elif td.folder_kind(folder=folder) != "sweep":
    st.info(f"{folder} is a single run folder, not a sweep (no kpis.parquet, no runs/). "
            "`twin sweep SWEEP.yaml --out DIR` makes a sweep folder; open it with "
            "`twin dashboard DIR`.")
else:
    df = td.read_table(folder=folder, name="kpis")
    runs = td.list_runs(sweep_dir=folder)
    if df is None or df.empty:
        dashui.no_data(what="sweep KPIs (kpis.parquet)", folder=folder,
                       hint=f"The sweep has {len(runs)} run folders so far; kpis.parquet is "
                            "written as runs finish.")
    else:
        doc = td.read_json(path=folder / "sweep.json")
        spec = doc.get("spec") if isinstance(doc, dict) else None
        if isinstance(spec, dict):
            st.markdown(f"**{spec.get('name', folder.name)}** — {spec.get('description') or ''} "
                        f"(base `{spec.get('base')}`, {spec.get('seeds', '?')} seeds per point)")
        df["run_id"] = df["run_id"].astype(str) if "run_id" in df.columns else df.index.astype(str)
        params = _parameters(df)
        kpis = [c for c in df.columns if c not in _META and c not in params
                and pd.api.types.is_numeric_dtype(df[c])]
        status = df["status"] if "status" in df.columns else pd.Series("complete", index=df.index)
        c = st.columns(4)
        c[0].metric("Runs", f"{len(df):,}")
        c[1].metric("Complete", f"{int((status == 'complete').sum()):,}")
        c[2].metric("Failed or incomplete", f"{int((status != 'complete').sum()):,}")
        c[3].metric("Parameters", f"{len(params)}", help=", ".join(params) or "none found")

        with st.sidebar.expander("Filter runs", expanded=True):
            keep = pd.Series(True, index=df.index)
            statuses = sorted(status.astype(str).unique())
            chosen = st.multiselect("status", options=statuses, default=statuses, key="sw_status")
            keep &= status.astype(str).isin(chosen)
            for p in params:
                col = df[p]
                values = col.dropna().unique()
                if pd.api.types.is_numeric_dtype(col) and len(values) > 6:
                    lo, hi = float(col.min()), float(col.max())
                    rng = st.slider(p, min_value=lo, max_value=hi, value=(lo, hi), key=f"sw_{p}")
                    keep &= col.between(*rng)
                else:
                    opts = sorted(values.tolist(), key=str)
                    sel = st.multiselect(p, options=opts, default=opts, key=f"sw_{p}")
                    keep &= col.isin(sel)
        shown = df[keep]
        st.caption(f"{len(shown):,} of {len(df):,} runs after the filters.")

        if not kpis:
            st.warning("kpis.parquet has no numeric KPI columns.")
        elif shown.empty:
            st.warning("No run passes the filters.")
        else:
            axes = [*params, *(["seed"] if "seed" in df.columns else [])]
            default_kpi = next((k for k in ("energy_traded_kwh", "mean_price_per_mwh") if k in kpis),
                               kpis[0])
            st.subheader("Parameters against KPIs")
            a, b, cc = st.columns(3)
            x = a.selectbox("x", options=axes or kpis, key="sw_x")
            y = b.selectbox("y (KPI)", options=kpis, index=kpis.index(default_kpi), key="sw_y")
            colour = cc.selectbox("colour", options=["(none)", *axes, *kpis], key="sw_colour",
                                  index=2 if len(axes) > 1 else 0)
            cols = list(dict.fromkeys([x, y, "run_id", *([] if colour == "(none)" else [colour])]))
            numeric_colour = colour != "(none)" and pd.api.types.is_numeric_dtype(shown[colour])
            # every point visible on white: a scheme without its pale end, a thin white edge
            # so overlapping runs stay apart
            colour_scale = {"scheme": {"name": "plasma", "extent": [0.0, 0.85]}}
            spec = charts.layered(datasets={"runs": shown[cols]}, height=380, layers=[{
                "data": {"name": "runs"},
                "mark": {"type": "point", "filled": True, "size": 50, "opacity": 0.9,
                         "stroke": "white", "strokeWidth": 0.5},
                "encoding": {"x": charts.field(x, title=_titled(x), scale={"zero": False}),
                             "y": charts.field(y, title=_titled(y), scale={"zero": False}),
                             **({} if colour == "(none)" else {"color": charts.field(
                                 colour, title=_titled(colour),
                                 kind="quantitative" if numeric_colour else "nominal",
                                 **({"scale": colour_scale} if numeric_colour else {}))}),
                             "tooltip": charts.tooltip(data=shown, columns=cols)}}])
            charts.show(spec=spec, key="sw_scatter")

            st.subheader("Parallel coordinates")
            # parcoords draws with WebGL: costly without a GPU, so on demand for large sweeps
            show_pc = st.toggle("Draw parallel coordinates",
                                value=len(shown) <= _PARCOORDS_AUTO, key="sw_pc_on",
                                help=f"On by default up to {_PARCOORDS_AUTO} runs (after the "
                                     "filters); drag along an axis to select a range.")
            pc_kpis = st.multiselect("KPIs", options=kpis, default=kpis[: min(3, len(kpis))],
                                     key="sw_pc_kpis") if show_pc else []
            dims = []
            for name in [*params, *pc_kpis]:
                vals, extra = _codes(shown[name])
                dims.append({"label": name, "values": vals, **extra})
            if dims and show_pc:
                colour_vals = shown[pc_kpis[0]].to_numpy(dtype=float) if pc_kpis else None
                fig = go.Figure(go.Parcoords(
                    dimensions=dims,
                    line={"color": colour_vals, "colorscale": "Viridis", "showscale": True}
                    if colour_vals is not None else {}))
                fig.update_layout(height=380, margin={"t": 40, "b": 10, "l": 60, "r": 60})
                st.plotly_chart(fig, width="stretch", key="sw_parcoords")

            st.subheader("Heat map over two parameters")
            if len(params) < 2:
                st.caption("Needs two swept parameters; this sweep has "
                           f"{len(params)} ({', '.join(params) or 'none'}).")
            else:
                a, b, cc = st.columns(3)
                hx = a.selectbox("x parameter", options=params, index=0, key="sw_hx")
                hy = b.selectbox("y parameter", options=params, index=1, key="sw_hy")
                hz = cc.selectbox("KPI (mean over seeds and other parameters)", options=kpis,
                                  index=kpis.index(default_kpi), key="sw_hz")
                if hx == hy:
                    st.caption("Pick two different parameters.")
                else:
                    grid = (shown.groupby([hx, hy])[hz].agg(["mean", "count"]).reset_index()
                            .rename(columns={"mean": hz, "count": "runs"}))
                    enc = {"x": charts.field(hx, kind="ordinal"), "y": charts.field(hy, kind="ordinal",
                                                                                    sort="descending")}
                    spec = charts.layered(datasets={"grid": grid}, height=380, legend_top=False, layers=[
                        {"data": {"name": "grid"}, "mark": {"type": "rect"},
                         "encoding": {**enc, "color": charts.field(hz, scale={"scheme": "viridis"}),
                                      "tooltip": charts.tooltip(data=grid, columns=[hx, hy, hz, "runs"])}},
                        {"data": {"name": "grid"}, "mark": {"type": "text", "color": "white"},
                         "encoding": {**enc, "text": charts.field(hz, format=".3g")}}])
                    charts.show(spec=spec, key="sw_heatmap")

        st.subheader("Runs")
        table = shown.copy()
        table.insert(0, "pages", [f"./overview?run={r}" for r in table["run_id"]])
        st.dataframe(
            table, hide_index=True, height=360, key="sw_runs",
            column_config={"pages": st.column_config.LinkColumn(
                "open", display_text="open run", help="this run's Overview page (the other run "
                "pages follow the run picked in the sidebar)")})
        failed = df[status != "complete"]
        if len(failed) and "error" in failed.columns:
            with st.expander(f"Errors of {len(failed)} failed or incomplete runs"):
                st.dataframe(failed[["run_id", "status", "error"]], hide_index=True, key="sw_errors")
