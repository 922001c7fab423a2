"""Hosting: how much PV (or how many EV chargers) the feeder takes, and what limits it.

Reads the folder of ``twin hosting SCENARIO --out DIR`` through :mod:`hostingdata`: the
feeder's hosting capacity per control mode, violations against penetration, the limiting
violation, and a map of the per-bus hosting capacity.
"""

from __future__ import annotations

import charts
import dashui
import hostingdata as hd
import streamlit as st
import twindash as td

ctx = dashui.run_context()
dashui.page_header(title="Hosting capacity", ctx=ctx)

if ctx is not None:
    lanes = td.read_table(folder=ctx.folder, name="lanes")
    feeder = td.read_table(folder=ctx.folder, name="feeder_hosting")
    if lanes is None or feeder is None or lanes.empty:
        dashui.no_data(what="hosting study (lanes.parquet, feeder_hosting.parquet)", folder=ctx.folder,
                       hint="`twin hosting SCENARIO --out DIR` (add `--der ev` for EV chargers) writes a study; "
                            "open that folder with `twin dashboard DIR`.")
    else:
        what = hd.der_label(feeder)
        k = ctx.kpis or {}
        modes = sorted(feeder["mode"].unique())
        cols = st.columns(len(modes) + 1)
        for c, m in zip(cols, modes, strict=False):
            hc = feeder.loc[feeder["mode"] == m, "hosting_kw"]
            c.metric(f"{what} hosted, median ({m})", f"{hc.median():,.0f} kW",
                     help=f"10th percentile {hc.quantile(0.1):,.0f} kW over {len(hc)} placements")
        cols[-1].metric("power flows", f"{k.get('power_flows', 0):,.0f}",
                        help=f"{k.get('pf_per_s', 0):,.0f} per second")
        curves = hd.violation_curves(lanes)
        st.subheader("Violations against penetration")
        left, right = st.columns(2)
        charts.show(spec=charts.lines(data=curves, x="penetration_percent", y="violated_percent", color="mode",
                                      x_title="penetration (% of candidate buses)",
                                      y_title="placements with a violation (%)", points=True, height=300),
                    key="hosting_viol", where=left)
        vm_col, vm_title = (("vm_min_pu", "median lowest voltage (p.u.)") if what.startswith("EV")
                            else ("vm_max_pu", "median highest voltage (p.u.)"))
        charts.show(spec=charts.lines(data=curves, x="placed_kw", y=vm_col, color="mode",
                                      x_title=f"{what} placed, median (kW)", y_title=vm_title, points=True,
                                      height=300),
                    key="hosting_vm", where=right)
        st.subheader("What limits the hosting capacity")
        shares = hd.limit_shares(feeder)
        charts.show(spec=charts.bars(data=shares, x="share", y="mode", color="limiting", horizontal=True,
                                     y_kind="nominal", x_title="placements (%)", y_title="control mode",
                                     height=60 + 40 * len(modes)),
                    key="hosting_limits")
        bus_h = td.read_table(folder=ctx.folder, name="bus_hosting")
        topology = td.read_json(path=ctx.folder / "topology.json")
        if bus_h is not None and isinstance(topology, dict) and topology.get("buses"):
            st.subheader(f"{what} hosting capacity per bus (alone at that bus)")
            mode = st.selectbox("control mode", modes, key="hosting_mode")
            pts = hd.bus_map(topology=topology, bus_hosting=bus_h, mode=mode)
            cand = pts[pts["candidate"]]
            xy = {"x": charts.field("x", title="x (layout)", axis=None), "y": charts.field("y", title="y (layout)", axis=None)}
            spec = charts.layered(datasets={"all": pts, "cand": cand}, height=460, layers=[
                {"data": {"name": "all"}, "mark": {"type": "circle", "size": 12, "color": "#bbbbbb"}, "encoding": xy},
                {"data": {"name": "cand"}, "mark": {"type": "circle", "size": 90, "stroke": "black", "strokeWidth": 0.4},
                 "encoding": {**xy, "color": charts.field("hosting_kw", title="hosting capacity (kW)",
                                                          scale={"scheme": "redyellowgreen"}),
                              "shape": charts.field("limiting", kind="nominal", title="limiting violation"),
                              "tooltip": [charts.field("bus"), charts.field("hosting_kw", title="kW"),
                                          charts.field("limiting", kind="nominal")]}}])
            charts.show(spec=spec, key="hosting_map")
        else:
            st.caption("No per-bus results or no topology.json in this folder (run `twin hosting` with "
                       "`--bus-sizes-kw`).")
