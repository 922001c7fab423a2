"""Feeder: the network from its geodata (or a computed layout), buses coloured by voltage and
lines by loading at a chosen time; voltage band and loading duration curves."""

from __future__ import annotations

from typing import Any

import dashui
import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st
import twindash as td

ctx = dashui.run_context()
dashui.page_header(title="Feeder", ctx=ctx)

#: Points of each duration curve (quantiles), whatever the run's length.
_CURVE_POINTS = 201
#: Loading bins for the line colours (one plotly trace per bin, since a trace has one colour).
_LOADING_BINS = [(0, 25, "#2c7bb6"), (25, 50, "#74add1"), (50, 75, "#fdae61"),
                 (75, 100, "#f46d43"), (100, float("inf"), "#a50026")]


def feeder_figure(*, topology: dict[str, Any], vm: pd.Series, loading: pd.Series,
                  vm_band: tuple[float, float]) -> go.Figure:
    """The network: line segments binned by loading, buses coloured by ``vm`` (index: bus)."""
    buses = pd.DataFrame(topology["buses"]).set_index("bus")
    fig = go.Figure()
    lines = pd.DataFrame(topology["lines"])
    if not lines.empty:
        lines["loading"] = lines["line"].map(loading)
        for lo, hi, colour in _LOADING_BINS:
            sel = lines[(lines["loading"] >= lo) & (lines["loading"] < hi)]
            if sel.empty:
                continue
            xs, ys = _segments(buses, sel["from_bus"], sel["to_bus"])
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line={"color": colour, "width": 3},
                                     name=f"loading {lo}–{hi if hi != float('inf') else '…'} %",
                                     hoverinfo="skip"))
        unknown = lines[lines["loading"].isna()]
        if not unknown.empty:
            xs, ys = _segments(buses, unknown["from_bus"], unknown["to_bus"])
            fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="no result / out of service",
                                     line={"color": "#bbbbbb", "width": 1, "dash": "dot"},
                                     hoverinfo="skip"))
        # invisible markers at line midpoints carry the hover text
        fb, tb = buses.loc[lines["from_bus"]], buses.loc[lines["to_bus"]]
        fig.add_trace(go.Scatter(
            x=(fb["x"].to_numpy() + tb["x"].to_numpy()) / 2,
            y=(fb["y"].to_numpy() + tb["y"].to_numpy()) / 2, mode="markers",
            marker={"size": 6, "opacity": 0}, showlegend=False,
            text=[f"line {r.line}: {r.loading:.1f} %" if pd.notna(r.loading) else f"line {r.line}"
                  for r in lines.itertuples()], hoverinfo="text"))
    trafos = pd.DataFrame(topology.get("trafos", []))
    if not trafos.empty:
        xs, ys = _segments(buses, trafos["hv_bus"], trafos["lv_bus"])
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", name="transformer",
                                 line={"color": "black", "width": 4}, hoverinfo="skip"))
    bvm = buses.index.map(vm)
    fig.add_trace(go.Scatter(
        x=buses["x"], y=buses["y"], mode="markers", name="bus",
        marker={"size": 11, "color": bvm, "colorscale": "RdBu_r", "cmin": vm_band[0],
                "cmax": vm_band[1], "colorbar": {"title": "vm_pu"},
                "line": {"color": "black", "width": 0.5}},
        text=[f"bus {b} ({n}): {v:.4f} p.u." if pd.notna(v) else f"bus {b} ({n})"
              for b, n, v in zip(buses.index, buses["name"], bvm, strict=True)],
        hoverinfo="text"))
    slack = [b for b in topology.get("slack_buses", []) if b in buses.index]
    if slack:
        fig.add_trace(go.Scatter(x=buses.loc[slack, "x"], y=buses.loc[slack, "y"], mode="markers",
                                 name="upstream grid", marker={"symbol": "square", "size": 16,
                                                               "color": "black"},
                                 hoverinfo="name"))
    geo = topology.get("layout") == "geodata"
    fig.update_layout(height=560, margin={"t": 10, "b": 10, "l": 10, "r": 10},
                      legend={"orientation": "h", "y": -0.05},
                      xaxis={"visible": False}, yaxis={"visible": False})
    if geo:
        fig.update_yaxes(scaleanchor="x", scaleratio=1 / max(np.cos(np.radians(
            float(buses["y"].mean()))), 0.1) if abs(buses["y"]).max() <= 90 else 1)
    return fig


def _segments(buses: pd.DataFrame, a: pd.Series, b: pd.Series) -> tuple[list, list]:
    xa, ya = buses.loc[a, "x"].to_numpy(), buses.loc[a, "y"].to_numpy()
    xb, yb = buses.loc[b, "x"].to_numpy(), buses.loc[b, "y"].to_numpy()
    n = len(xa)
    xs = np.column_stack([xa, xb, np.full(n, np.nan)]).ravel()
    ys = np.column_stack([ya, yb, np.full(n, np.nan)]).ravel()
    return xs.tolist(), ys.tolist()


if ctx is not None:
    grid = ctx.scenario.get("grid", {})
    vmin, vmax = float(grid.get("vm_min_pu", 0.95)), float(grid.get("vm_max_pu", 1.05))
    max_loading = float(grid.get("max_loading_percent", 100))
    topology = td.read_json(path=ctx.folder / "topology.json")
    times = td.table_values(folder=ctx.folder, name="bus", column="time_s")
    if not times:
        dashui.no_data(what="bus results (bus.parquet)", folder=ctx.folder,
                       hint="The run wrote no power-flow results yet.")
    else:
        st.subheader("Network at a point in time")
        hour_options = [t / 3600 for t in times]
        # the slider starts at the step farthest from 1 p.u.: the interesting one
        all_vm = td.read_table(folder=ctx.folder, name="bus", columns=("time_s", "vm_pu"))
        worst_t = int(all_vm.loc[(all_vm["vm_pu"] - 1.0).abs().idxmax(), "time_s"])
        chosen_h = st.select_slider("Time (hours since start)", options=hour_options,
                                    value=worst_t / 3600, format_func=lambda h: f"{h:.2f} h",
                                    key="feeder_time")
        t = round(chosen_h * 3600)
        vm = td.read_table(folder=ctx.folder, name="bus", columns=("bus", "vm_pu"),
                           filters=(("time_s", "==", t),)).set_index("bus")["vm_pu"]
        ld = td.read_table(folder=ctx.folder, name="line", columns=("line", "loading_percent"),
                           filters=(("time_s", "==", t),))
        loading = (ld.set_index("line")["loading_percent"] if ld is not None
                   else pd.Series(dtype=float))
        c = st.columns(3)
        c[0].metric("Lowest voltage", f"{vm.min():.4f} p.u.", help=f"bus {vm.idxmin()}")
        c[1].metric("Highest voltage", f"{vm.max():.4f} p.u.", help=f"bus {vm.idxmax()}")
        c[2].metric("Highest line loading", f"{loading.max():.1f} %" if len(loading) else "—")
        if isinstance(topology, dict) and topology.get("buses"):
            lo = min(vmin, float(vm.min()))
            hi = max(vmax, float(vm.max()))
            st.plotly_chart(feeder_figure(topology=topology, vm=vm, loading=loading,
                                          vm_band=(lo, hi)), width="stretch", key="feeder_map")
            st.caption(f"Layout: {'bus geodata' if topology.get('layout') == 'geodata' else 'computed radial layout (the net has no geodata)'}; "
                       f"{len(topology['buses'])} buses, {len(topology['lines'])} lines. "
                       f"Colour scale spans the DSO band [{vmin}, {vmax}] p.u.")
        else:
            dashui.no_data(what="network topology (topology.json)", folder=ctx.folder,
                           hint="Runs made by this version of `twin run` write it; "
                                "re-run the scenario to draw the feeder.")

        st.subheader("Duration curves")
        left, right = st.columns(2)
        pct = np.linspace(0, 100, _CURVE_POINTS)  # quantiles: the curve's size is fixed
        vm_curve = np.quantile(all_vm["vm_pu"].to_numpy(), 1 - pct / 100)
        fig = px.line(x=pct, y=vm_curve, labels={"x": "% of bus-intervals exceeding", "y": "vm_pu"},
                      render_mode="svg")
        fig.add_hrect(y0=vmin, y1=vmax, fillcolor="green", opacity=0.08, line_width=0)
        fig.update_layout(height=320, margin={"t": 30, "b": 10}, title="Voltage (all buses)")
        left.plotly_chart(fig, width="stretch", key="vm_duration")
        lines_df = td.read_table(folder=ctx.folder, name="line", columns=("time_s", "loading_percent"))
        if lines_df is not None and len(lines_df):
            per_t = lines_df.groupby("time_s")["loading_percent"].max().to_numpy()
            fig = px.line(x=pct, y=np.quantile(per_t, 1 - pct / 100), render_mode="svg",
                          labels={"x": "% of intervals exceeding", "y": "max loading_percent"})
            fig.add_hline(y=max_loading, line_dash="dot", line_color="red")
            fig.update_layout(height=320, margin={"t": 30, "b": 10},
                              title="Highest line loading per interval")
            right.plotly_chart(fig, width="stretch", key="loading_duration")
        else:
            with right:
                dashui.no_data(what="line results (line.parquet)", folder=ctx.folder,
                               hint="The loading duration curve needs them.")
