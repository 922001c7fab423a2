"""Market: clearing price and volume per interval, supply/demand curves of one interval,
its trades, curtailments by the DSO, and revenue and cost per agent.

One lazy tab each (``st.tabs(on_change="rerun")``): the first render builds only the price
and volume chart; a tab's tables are read when it is opened (cached afterwards).
"""

from __future__ import annotations

from typing import Any

import charts
import dashui
import numpy as np
import pandas as pd
import streamlit as st
import twindash as td

ctx = dashui.run_context()
dashui.page_header(title="Market", ctx=ctx)

MICRO = td.MICRO
#: Lazy tabs (only the open one runs and is sent to the browser).
_TABS = ["Price and volume", "Supply and demand of one interval", "DSO curtailments",
         "Revenue and cost per agent"]


def _step_curve(prices: np.ndarray, energy_wh: np.ndarray) -> tuple[list, list]:
    """Cumulative energy (kWh) against price as a step curve."""
    cum = np.concatenate([[0.0], np.cumsum(energy_wh) / 1000])
    xs, ys = [], []
    for i, p in enumerate(prices):
        xs += [cum[i], cum[i + 1]]
        ys += [p, p]
    return xs, ys


def _device_labels(folder) -> pd.Series:
    """device id -> agent name, when the agents table carries device ids."""
    ag = td.read_table(folder=folder, name="agents", columns=("agent", "kind", "device_id"),
                       filters=(("time_s", "==", 0),))
    if ag is None or "device_id" not in ag.columns:
        return pd.Series(dtype=str)
    return ag.dropna(subset=["device_id"]).drop_duplicates("device_id").set_index("device_id")["agent"]


def _col(frame: Any, name: str) -> Any:
    """A numeric column, zeros when absent (folders written before the column existed)."""
    if name in frame.columns:
        return frame[name].fillna(0)
    return frame["time_s"] * 0


if ctx is not None:
    market = td.read_table(folder=ctx.folder, name="market")
    if market is None or market.empty:
        dashui.no_data(what="market results (market.parquet)", folder=ctx.folder,
                       hint="The run cleared no market interval yet.")
    else:
        market = market.sort_values("interval")
        market["hour"] = dashui.hours(seconds=market["time_s"])
        market["price"] = market["price_per_mwh"] / MICRO
        market.loc[market["volume_wh"] == 0, "price"] = np.nan  # no trade: no price
        c = st.columns(4)
        c[0].metric("Intervals cleared", f"{len(market)}")
        c[1].metric("Intervals with trades", f"{int((market['volume_wh'] > 0).sum())}")
        c[2].metric("Volume", f"{market['volume_wh'].sum() / 1000:.1f} kWh")
        c[3].metric("Curtailed by DSO", f"{market['curtailed_wh'].sum() / 1000:.1f} kWh")

        tabs = st.tabs(_TABS, key="market_tab", on_change="rerun")
        if tabs[0].open:
            with tabs[0]:
                st.subheader("Clearing price and volume per interval")
                vol = market.melt(id_vars=["hour", "interval"], value_vars=["volume_wh", "curtailed_wh"],
                                  var_name="series", value_name="wh")
                vol["kWh"] = vol["wh"] / 1000
                vol["series"] = vol["series"].map({"volume_wh": "volume", "curtailed_wh": "curtailed by DSO"})
                bar_w = max(2.0, 600 / max(len(market), 1))
                spec = charts.layered(
                    datasets={"vol": vol[["hour", "interval", "series", "kWh"]],
                              "price": market[["hour", "interval", "price"]]},
                    height=360, resolve={"scale": {"y": "independent", "color": "independent"}},
                    layers=[
                        {"data": {"name": "vol"}, "mark": {"type": "bar", "size": bar_w},
                         "encoding": {"x": charts.field("hour", title="time since start (h)"),
                                      "y": charts.field("kWh", title="energy (kWh)", stack="zero"),
                                      "color": charts.field("series", kind="nominal", title=None, scale={
                                          "domain": ["volume", "curtailed by DSO"],
                                          "range": ["#9ecae1", "#de2d26"]}),
                                      "tooltip": [charts.field("interval"), charts.field("series", kind="nominal"),
                                                  charts.field("kWh", format=".2f")]}},
                        {"data": {"name": "price"}, "mark": {"type": "line", "point": True, "color": "#08519c"},
                         "encoding": {"x": charts.field("hour", title="time since start (h)"),
                                      "y": charts.field("price", title="clearing price (currency per MWh)",
                                                        scale={"zero": False}),
                                      "tooltip": [charts.field("interval"), charts.field("price", format=".2f")]}},
                    ])
                charts.show(spec=spec, key="price_volume")

        if tabs[1].open:
            with tabs[1]:
                st.subheader("Supply and demand of one interval")
                traded = market.loc[market["volume_wh"] > 0, "interval"].tolist()
                options = market["interval"].tolist()
                interval = st.selectbox(
                    "Interval", options=options, index=options.index(traded[0]) if traded else 0,
                    format_func=lambda k: f"{k} (starts {k * ctx.interval_s / 3600:.2f} h)",
                    key="market_interval")
                orders = td.read_table(folder=ctx.folder, name="orders", filters=(("interval", "==", int(interval)),))
                trades = td.read_table(folder=ctx.folder, name="trades", filters=(("interval", "==", int(interval)),))
                if orders is None or orders.empty:
                    dashui.no_data(what=f"orders for interval {interval}", folder=ctx.folder,
                                   hint="Nobody bid or offered in it.")
                else:
                    bids = orders[orders["side"] == "buy"].sort_values(["price_per_mwh", "order_id"],
                                                                        ascending=[False, True])
                    asks = orders[orders["side"] == "sell"].sort_values(["price_per_mwh", "order_id"],
                                                                         ascending=[True, True])
                    curves = []
                    for df, name in ((bids, "demand (bids)"), (asks, "supply (asks)")):
                        xs, ys = _step_curve(df["price_per_mwh"].to_numpy() / MICRO, df["energy_wh"].to_numpy())
                        curves.append(pd.DataFrame({"kWh": xs, "price": ys, "curve": name,
                                                    "step": range(len(xs))}))
                    row = market[market["interval"] == interval].iloc[0]
                    point = pd.DataFrame({"kWh": [row["volume_wh"] / 1000], "price": [row["price"]],
                                          "curve": ["clearing point"]})
                    layers = [{"data": {"name": "curves"}, "mark": {"type": "line"},
                               "encoding": {"x": charts.field("kWh", title="cumulative energy (kWh)"),
                                            "y": charts.field("price", title="price (currency per MWh)",
                                                              scale={"zero": False}),
                                            "order": charts.field("step"),
                                            "color": charts.field("curve", kind="nominal", title=None, scale={
                                                "domain": ["demand (bids)", "supply (asks)"],
                                                "range": ["#2166ac", "#b2182b"]}),
                                            "tooltip": [charts.field("curve", kind="nominal"),
                                                        charts.field("kWh", format=".2f"),
                                                        charts.field("price", format=".2f")]}}]
                    if row["volume_wh"] > 0:
                        layers.append({"data": {"name": "point"},
                                       "mark": {"type": "point", "shape": "cross", "size": 200,
                                                "color": "black", "filled": True},
                                       "encoding": {"x": charts.field("kWh", title="cumulative energy (kWh)"),
                                                    "y": charts.field("price", title="price (currency per MWh)"),
                                                    "tooltip": [charts.field("kWh", format=".2f"),
                                                                charts.field("price", format=".2f")]}})
                    charts.show(spec=charts.layered(datasets={"curves": pd.concat(curves), "point": point},
                                                    layers=layers, height=360), key="supply_demand")
                    st.caption(f"{len(bids)} bids, {len(asks)} asks; uniform price = mean of the last "
                               "matched bid and ask.")
                if trades is not None and not trades.empty:
                    shown = trades.assign(price=trades["price_per_mwh"] / MICRO).drop(columns=["price_per_mwh"])
                    st.markdown(f"**Trades of interval {interval}** ({len(trades)})")
                    st.dataframe(shown, hide_index=True, height=220, key="trades_table")

        if tabs[2].open:
            with tabs[2]:
                st.subheader("Curtailments by the DSO")
                dso = td.read_table(folder=ctx.folder, name="dso")
                curtailed = td.read_table(folder=ctx.folder, name="trades", filters=(("curtailed_wh", ">", 0),))
                if dso is not None and not dso.empty:
                    dso = dso.assign(hour=dashui.hours(seconds=dso["time_s"]))
                    c = st.columns(3)
                    c[0].metric("Intervals with violations before the check",
                                f"{int((_col(dso, 'violations_found') > 0).sum())}")
                    c[1].metric("Violations left after curtailment",
                                f"{int(_col(dso, 'violations_remaining').sum())}")
                    c[2].metric("Trades curtailed", f"{0 if curtailed is None else len(curtailed)}")
                if curtailed is not None and not curtailed.empty:
                    st.dataframe(curtailed, hide_index=True, height=200, key="curtailed_table")
                else:
                    st.caption("The DSO curtailed no trade in this run: every cleared schedule passed the "
                               "voltage and loading check.")

        if tabs[3].open:
            with tabs[3]:
                st.subheader("Revenue and cost per agent")
                st_df = td.read_table(folder=ctx.folder, name="settlements",
                                      columns=("device_id", "owner", "trade_amount", "imbalance_amount",
                                               "traded_wh", "metered_wh"))
                if st_df is None or st_df.empty:
                    dashui.no_data(what="settlements (settlements.parquet)", folder=ctx.folder,
                                   hint="No interval was settled yet.")
                else:
                    g = st_df.groupby("device_id").agg(
                        owner=("owner", "first"), market=("trade_amount", "sum"),
                        supplier=("imbalance_amount", "sum"), traded_kwh=("traded_wh", "sum"),
                        metered_kwh=("metered_wh", "sum")).reset_index()
                    g["market"] /= MICRO
                    g["supplier"] /= MICRO
                    g["net"] = g["market"] + g["supplier"]
                    g["traded_kwh"] /= 1000
                    g["metered_kwh"] /= 1000
                    labels = _device_labels(ctx.folder)
                    g["agent"] = [labels.get(d, f"device {d} (account {o})")
                                  for d, o in zip(g["device_id"], g["owner"], strict=True)]
                    g = g.sort_values("net")
                    parts = g.melt(id_vars=["agent", "net"], value_vars=["market", "supplier"],
                                   var_name="side", value_name="amount")
                    parts["side"] = parts["side"].map({"market": "local market",
                                                       "supplier": "supplier / DSO (imbalance)"})
                    charts.show(spec=charts.bars(
                        data=parts, x="amount", y="agent", color="side", horizontal=True, y_kind="nominal",
                        x_title="currency (+ revenue, − cost)", y_title=None, tooltip=["net"],
                        sort=g["agent"].tolist(), height=max(300, 14 * len(g))), key="agent_revenue")
                    st.dataframe(g[["agent", "device_id", "owner", "traded_kwh", "metered_kwh", "market",
                                    "supplier", "net"]], hide_index=True, height=240, key="agent_table")
