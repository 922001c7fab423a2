"""Feeder: the network from its geodata (or a computed layout), buses coloured by voltage and
lines by loading at a chosen time; voltage band and loading duration curves."""

from __future__ import annotations

from typing import Any

import charts
import dashui
import numpy as np
import pandas as pd
import streamlit as st
import twindash as td

ctx = dashui.run_context()
dashui.page_header(title="Feeder", ctx=ctx)

#: Points of each duration curve (quantiles), whatever the run's length.
_CURVE_POINTS = 201


def feeder_spec(*, topology: dict[str, Any], vm: pd.Series, loading: pd.Series,
                vm_band: tuple[float, float], max_loading: float) -> dict[str, Any]:
    """The network as a Vega-Lite spec: line segments coloured by loading (grey dashed when
    there is no result), transformers in black, buses coloured by ``vm`` (index: bus)."""
    buses = pd.DataFrame(topology["buses"]).set_index("bus")
    buses["vm_pu"] = buses.index.map(vm)
    buses = buses.reset_index()
    segs = []
    lines = pd.DataFrame(topology["lines"])
    if not lines.empty:
        lines["loading_percent"] = lines["line"].map(loading)
        segs.append(_segments(buses, lines, "from_bus", "to_bus").assign(
            element=[f"line {i}" for i in lines["line"]],
            loading_percent=lines["loading_percent"].to_numpy()))
    trafos = pd.DataFrame(topology.get("trafos", []))
    if not trafos.empty:
        segs.append(_segments(buses, trafos, "hv_bus", "lv_bus").assign(
            element=[f"transformer {i}" for i in trafos.get("trafo", trafos.index)],
            loading_percent=np.nan))
    seg = pd.concat(segs, ignore_index=True) if segs else pd.DataFrame(
        columns=["x", "y", "x2", "y2", "element", "loading_percent"])
    seg["kind"] = np.where(seg["element"].str.startswith("transformer"), "transformer",
                           np.where(seg["loading_percent"].isna(), "no result", "line"))
    slack = buses[buses["bus"].isin(topology.get("slack_buses", []))]
    xy = {"x": _axis("x", buses["x"]), "y": _axis("y", buses["y"])}
    hi_load = max(max_loading, float(np.nanmax(seg["loading_percent"])) if seg["kind"].eq("line").any() else 0)
    layers = [
        {"data": {"name": "seg"}, "transform": [{"filter": "datum.kind === 'line'"}],
         "mark": {"type": "rule", "strokeWidth": 3},
         "encoding": {**xy, "x2": {"field": "x2"}, "y2": {"field": "y2"},
                      "color": charts.field("loading_percent", title="loading %",
                                            scale={"domain": [0, hi_load], "scheme": "yelloworangered"}),
                      "tooltip": [charts.field("element", kind="nominal"),
                                  charts.field("loading_percent", format=".1f")]}},
        {"data": {"name": "seg"}, "transform": [{"filter": "datum.kind === 'no result'"}],
         "mark": {"type": "rule", "strokeWidth": 1, "strokeDash": [3, 3], "color": "#bbbbbb"},
         "encoding": {**xy, "x2": {"field": "x2"}, "y2": {"field": "y2"},
                      "tooltip": [charts.field("element", kind="nominal")]}},
        {"data": {"name": "seg"}, "transform": [{"filter": "datum.kind === 'transformer'"}],
         "mark": {"type": "rule", "strokeWidth": 4, "color": "black"},
         "encoding": {**xy, "x2": {"field": "x2"}, "y2": {"field": "y2"},
                      "tooltip": [charts.field("element", kind="nominal")]}},
        {"data": {"name": "slack"}, "mark": {"type": "square", "size": 260, "color": "black"},
         "encoding": {**xy, "tooltip": {"value": "upstream grid"}}},
        {"data": {"name": "buses"},
         "mark": {"type": "circle", "size": 90, "opacity": 1, "stroke": "black", "strokeWidth": 0.5},
         "encoding": {**xy, "color": charts.field("vm_pu", title="voltage (pu)", scale={
                          "domain": list(vm_band), "scheme": "redblue", "reverse": True}),
                      "tooltip": [charts.field("bus"), charts.field("name", kind="nominal"),
                                  charts.field("vm_pu", format=".4f")]}},
    ]
    spec = charts.layered(datasets={"seg": seg, "buses": buses[["bus", "name", "x", "y", "vm_pu"]],
                                    "slack": slack[["x", "y"]]},
                          layers=layers, height=560, resolve={"scale": {"color": "independent"}},
                          legend_top=False)
    return spec


def _axis(name: str, values: pd.Series) -> dict[str, Any]:
    lo, hi = float(values.min()), float(values.max())
    pad = 0.03 * (hi - lo or 1.0)
    return {"field": name, "type": "quantitative", "axis": None,
            "scale": {"domain": [lo - pad, hi + pad], "zero": False, "nice": False}}


def _segments(buses: pd.DataFrame, rows: pd.DataFrame, a: str, b: str) -> pd.DataFrame:
    pos = buses.set_index("bus")
    fa, fb = pos.loc[rows[a]], pos.loc[rows[b]]
    return pd.DataFrame({"x": fa["x"].to_numpy(), "y": fa["y"].to_numpy(),
                         "x2": fb["x"].to_numpy(), "y2": fb["y"].to_numpy()})


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
            charts.show(spec=feeder_spec(topology=topology, vm=vm, loading=loading,
                                         vm_band=(lo, hi), max_loading=max_loading),
                        key="feeder_map")
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
        curve = pd.DataFrame({"pct": pct, "vm_pu": vm_curve})
        charts.show(spec=charts.lines(data=curve, x="pct", y="vm_pu", band=(vmin, vmax), height=320,
                                      x_title="% of bus-intervals exceeding", y_title="voltage (pu)",
                                      title="Voltage (all buses)"),
                    key="vm_duration", where=left)
        lines_df = td.read_table(folder=ctx.folder, name="line", columns=("time_s", "loading_percent"))
        if lines_df is not None and len(lines_df):
            per_t = lines_df.groupby("time_s")["loading_percent"].max().to_numpy()
            curve = pd.DataFrame({"pct": pct, "max loading_percent": np.quantile(per_t, 1 - pct / 100)})
            charts.show(spec=charts.lines(data=curve, x="pct", y="max loading_percent",
                                          hlines=[max_loading], height=320,
                                          x_title="% of intervals exceeding",
                                          y_title="highest line loading (%)",
                                          title="Highest line loading per interval"),
                        key="loading_duration", where=right)
        else:
            with right:
                dashui.no_data(what="line results (line.parquet)", folder=ctx.folder,
                               hint="The loading duration curve needs them.")
