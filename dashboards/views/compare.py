"""Compare: scenarios side by side (``twin compare SCENARIO... --out DIR``).

Reads ``DIR/compare.parquet`` (one row per scenario: ``scenario``, ``file``, ``kind``,
``ledger``, ``mechanism``, ``grid``, ``status``, ``error``, ``wall_s``, ``run_dir``, then one
float column per KPI, NaN = not applicable) and ``DIR/compare.json`` (``kpis``: the meaning and
unit of each KPI; ``order``: the scenarios' order). Shows the KPI table (KPI rows x scenario
columns), one bar chart per KPI across the scenarios (a single faceted Vega-Lite chart), and
links to each scenario's run pages (``DIR/runs/<scenario>``, picked with ``?run=``).
Columns the page does not know are treated as KPIs when numeric, so a newer compare folder
still opens.
"""

from __future__ import annotations

from urllib.parse import quote

import charts
import dashui
import pandas as pd
import streamlit as st
import twindash as td

#: Descriptive columns of compare.parquet (everything else numeric is a KPI).
_META = ["scenario", "file", "kind", "ledger", "mechanism", "services", "grid", "status", "error",
         "wall_s", "run_dir"]

#: KPI panels drawn by default (the multiselect adds more).
_DEFAULT_PANELS = 6


def _cell(value: object) -> str:
    """A KPI value as the table shows it: 4 significant digits with thousands separators,
    "n/a" where the KPI does not apply (NaN)."""
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return str(value)
    if v != v:
        return "n/a"
    if v == int(v) and abs(v) < 1e15:
        return f"{int(v):,}"
    return f"{v:,.4g}" if abs(v) < 1e4 else f"{v:,.0f}"

folder = dashui.base_folder()
st.title("Compare")

kind = td.folder_kind(folder=folder)
if kind != "compare":
    st.info(f"{folder} is not a comparison folder (no compare.parquet). "
            "`twin compare SCENARIO... --out DIR` makes one; open it with `twin dashboard DIR`.")
else:
    df = td.read_table(folder=folder, name="compare")
    doc = td.read_json(path=folder / "compare.json")
    doc = doc if isinstance(doc, dict) else {}
    if df is None or df.empty or "scenario" not in df.columns:
        dashui.no_data(what="comparison rows (compare.parquet with a scenario column)",
                       folder=folder, hint="`twin compare` writes it once every scenario ran.")
    else:
        df["scenario"] = df["scenario"].astype(str)
        order = [s for s in doc.get("order") or [] if s in set(df["scenario"])]
        order += [s for s in df["scenario"] if s not in order]
        df = df.set_index("scenario").loc[order].reset_index()
        notes = doc.get("kpis") if isinstance(doc.get("kpis"), dict) else {}
        kpis = [c for c in df.columns if c not in _META and pd.api.types.is_numeric_dtype(df[c])]
        status = df["status"].astype(str) if "status" in df.columns else pd.Series("complete", index=df.index)
        c = st.columns(4)
        c[0].metric("Scenarios", f"{len(df)}")
        c[1].metric("Complete", f"{int((status == 'complete').sum())}")
        c[2].metric("Failed", f"{int((status != 'complete').sum())}")
        c[3].metric("KPIs", f"{len(kpis)}")

        st.subheader("Scenarios")
        scen = df[[c for c in _META if c in df.columns and c != "error"]].copy()
        scen.insert(0, "pages", [f"./overview?run={quote(s)}" for s in df["scenario"]])
        st.dataframe(scen, hide_index=True, key="cmp_scenarios", column_config={
            "pages": st.column_config.LinkColumn(
                "open", display_text="open run",
                help="this scenario's Overview page (the run pages follow the run picked in "
                     "the sidebar)")})
        failed = df[status != "complete"]
        for row in failed.itertuples():
            st.error(f"{row.scenario}: {getattr(row, 'status', '?')} — "
                     f"{getattr(row, 'error', None) or 'no error recorded'}")

        if not kpis:
            st.warning("compare.parquet has no numeric KPI columns.")
        else:
            st.subheader("KPIs side by side")
            table = df.set_index("scenario")[kpis].T.map(_cell)
            table.index.name = "kpi"
            table.insert(0, "meaning, unit", [str(notes.get(k, "")) for k in kpis])
            st.dataframe(table, key="cmp_kpis", height=min(40 + 35 * len(kpis), 600))

            st.subheader("Each KPI across the scenarios")
            with_data = [k for k in kpis if df[k].notna().any()]
            chosen = st.multiselect("KPIs", options=kpis, default=with_data[:_DEFAULT_PANELS],
                                    key="cmp_chosen",
                                    help=f"the first {_DEFAULT_PANELS} KPIs with a value by "
                                         "default (each panel costs drawing time)")
            if not chosen:
                st.caption("Pick at least one KPI.")
            else:
                long = df.melt(id_vars=["scenario"], value_vars=chosen, var_name="kpi",
                               value_name="value").dropna(subset=["value"])
                long["meaning"] = long["kpi"].map(lambda k: str(notes.get(k, "")))
                # each panel's title names its KPI and unit ("meaning, unit"): the y axes share one title
                panel = {k: f"{k} ({str(notes.get(k, '')).rsplit(', ', 1)[1]})"
                         if ", " in str(notes.get(k, "")) else k for k in chosen}
                long["panel"] = long["kpi"].map(panel)
                spec = {
                    "datasets": {"kpis": long},
                    "data": {"name": "kpis"},
                    "facet": {"field": "panel", "type": "nominal", "title": None,
                              "sort": [panel[k] for k in chosen], "header": {"labelLimit": 0}},
                    "columns": 3,
                    "spec": {"width": 200, "height": 150, "mark": {"type": "bar"},
                             "encoding": {
                                 "x": charts.field("scenario", kind="nominal", sort=order,
                                                   axis={"labelAngle": -30, "labelLimit": 0,
                                                         "labelOverlap": False})
                                      | {"title": "scenario"},
                                 "y": charts.field("value", title="value (unit in the panel's title)"),
                                 "color": charts.field("scenario", kind="nominal", sort=order,
                                                       legend={"title": "scenario",
                                                               "orient": "top",
                                                               "labelLimit": 0}),
                                 "tooltip": charts.tooltip(data=long, columns=[
                                     "scenario", "kpi", "value", "meaning"])}},
                    "resolve": {"scale": {"y": "independent"}},
                }
                st.caption("Each panel's unit is in the table's \"meaning, unit\" column (and "
                           "in the bars' tooltips).")
                st.vega_lite_chart(spec=spec, key="cmp_bars")
                missing = [k for k in chosen if k not in set(long["kpi"])]
                if missing:
                    st.caption(f"No value for any scenario (not applicable): {', '.join(missing)}.")
        pricing = doc.get("chain_pricing")
        if isinstance(pricing, dict) and pricing:
            st.caption("Chain cost priced at " + ", ".join(f"{k} = {v}" for k, v in pricing.items()))
