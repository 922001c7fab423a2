"""HIL (folders of ``twin hil serve``): devices and their registers, measurements and controls
over time, register writes by clients, real-time deadline misses."""

from __future__ import annotations

import dashui
import pandas as pd
import plotly.express as px
import streamlit as st
import twindash as td

ctx = dashui.run_context()
dashui.page_header(title="Hardware in the loop", ctx=ctx)

if ctx is not None:
    devices_doc = td.read_json(path=ctx.folder / "hil_devices.json")
    steps_n = td.table_rows(folder=ctx.folder, name="hil") or 0
    writes_n = td.table_rows(folder=ctx.folder, name="hil_writes") or 0
    if not isinstance(devices_doc, dict) and not steps_n and not writes_n:
        dashui.no_data(what="hardware-in-the-loop data (hil_devices.json, hil*.parquet)",
                       folder=ctx.folder,
                       hint="`twin hil serve SCENARIO --out DIR` writes them; this folder comes "
                            "from a run without HIL devices.")
    else:
        devices = pd.DataFrame((devices_doc or {}).get("devices", []))
        deadlines = td.read_table(folder=ctx.folder, name="hil_deadlines")
        misses = 0 if deadlines is None else len(deadlines)
        c = st.columns(4)
        c[0].metric("Devices", f"{len(devices)}")
        c[1].metric("Register writes", f"{writes_n:,}")
        c[2].metric("Deadline misses", f"{misses:,}")
        if isinstance(devices_doc, dict):
            c[3].metric("Modbus TCP", f"{devices_doc.get('host')}:{devices_doc.get('port')}",
                        help=f"SunSpec base {devices_doc.get('base_address')}, step "
                             f"{devices_doc.get('step_s')} s, rt factor {devices_doc.get('rt_factor')}")
        if not devices.empty:
            st.subheader("Devices")
            order = ["unit_id", "device", "kind", "mirrors", "element", "bus", "nameplate_w",
                     "models", "registers"]
            shown = devices[[c for c in order if c in devices.columns]
                            + [c for c in devices.columns if c not in order]].copy()
            for col in ("models", "registers"):
                if col in shown.columns:
                    shown[col] = shown[col].map(lambda v: " ".join(str(x) for x in v)
                                                if isinstance(v, list) else v)
            st.dataframe(shown, hide_index=True, key="hil_devices")
        names = ({int(r.unit_id): f"{r.unit_id} {r.device}" for r in devices.itertuples()}
                 if {"unit_id", "device"} <= set(devices.columns) else {})

        st.subheader("Measurements and controls")
        steps = td.read_table(folder=ctx.folder, name="hil")
        if steps is None or steps.empty:
            dashui.no_data(what="HIL steps (hil.parquet)", folder=ctx.folder,
                           hint="No step ran with the HIL server attached.")
        else:
            steps["device"] = steps["unit_id"].map(lambda u: names.get(int(u), f"unit {u}"))
            steps["hour"] = steps["time_s"] / 3600
            value_cols = [c for c in ("w", "available_w", "w_max_w", "w_set_w", "var", "v")
                          if c in steps.columns]
            shown_cols = st.multiselect("Quantities", options=value_cols,
                                        default=[c for c in ("w", "w_max_w") if c in value_cols],
                                        key="hil_cols")
            if shown_cols:
                long = steps.melt(id_vars=["hour", "device"], value_vars=shown_cols,
                                  var_name="quantity", value_name="value")
                fig = px.line(long, x="hour", y="value", color="device", line_dash="quantity",
                              labels={"hour": "time since start (h)",
                                      "value": "value (W, var or V: see quantity)"})
                fig.update_layout(height=360, margin={"t": 10, "b": 10})
                st.plotly_chart(fig, width="stretch", key="hil_steps")
            if "reverted" in steps.columns:
                rev = steps[steps["reverted"].fillna("") != ""]
                if len(rev):
                    st.caption(f"{len(rev)} control reversions (revert timer expired without renewal).")
                    st.dataframe(rev[["time_s", "device", "reverted"]], hide_index=True,
                                 height=160, key="hil_reverted")

        st.subheader("Register writes over time")
        writes = td.read_table(folder=ctx.folder, name="hil_writes")
        if writes is None or writes.empty:
            dashui.no_data(what="register writes (hil_writes.parquet)", folder=ctx.folder,
                           hint="No client wrote to a device.")
        else:
            writes["device"] = writes["unit_id"].map(lambda u: names.get(int(u), f"unit {u}"))
            writes["result"] = writes["exception_code"].map(
                lambda e: "accepted" if e == 0 else f"refused (0x{int(e):02x})")
            fig = px.scatter(writes, x="time_s", y="device", color="result", symbol="client",
                             hover_data=["address", "count", "points"])
            fig.update_layout(height=320, margin={"t": 10, "b": 10}, xaxis_title="twin time (s)")
            st.plotly_chart(fig, width="stretch", key="hil_writes_chart")
            st.dataframe(writes, hide_index=True, height=220, key="hil_writes_table")

        st.subheader("Real-time deadline misses")
        if deadlines is None or deadlines.empty:
            st.caption("No step started later than its real-time deadline allows.")
        else:
            late = deadlines.assign(lateness_ms=deadlines["lateness_s"] * 1000)
            fig = px.scatter(late, x="time_s", y="lateness_ms",
                             labels={"lateness_ms": "lateness (ms)", "time_s": "twin time (s)"})
            fig.update_traces(marker={"size": 9, "color": "#de2d26"})
            fig.update_yaxes(rangemode="tozero")
            fig.update_layout(height=280, margin={"t": 10, "b": 10})
            st.plotly_chart(fig, width="stretch", key="hil_deadlines_chart")
