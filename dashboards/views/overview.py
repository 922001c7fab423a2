"""Overview: the scenario in one paragraph, KPI cards, and what went wrong if the run failed."""

from __future__ import annotations

from typing import Any

import charts
import dashui
import pandas as pd
import streamlit as st
import twindash as td

ctx = dashui.run_context()
dashui.page_header(title="Run overview", ctx=ctx)


def _scenario_paragraph(m: dict[str, Any]) -> str:
    s = m.get("scenario") or {}
    grid, agents, market = s.get("grid", {}), s.get("agents", {}), s.get("market", {})
    hh, evs, cs = agents.get("households", {}), agents.get("evs", {}), agents.get("community_storage", {})
    feeder = grid.get("kind", "?")
    if feeder == "simbench":
        feeder = f"SimBench {grid.get('simbench_code', '')}"
    duration_h = (m.get("duration_s") or s.get("duration_s") or 0) / 3600
    ledger = market.get("ledger", "?")
    ledger_txt = ("smart contracts on a local Anvil chain" if ledger == "chain"
                  else "the pure-Python reference ledger")
    return (
        f"**{m.get('scenario_name', '?')}** simulates {duration_h:g} h from {m.get('start_time', '?')} "
        f"on the {feeder} feeder with {hh.get('count', '?')} households "
        f"({100 * float(hh.get('pv', {}).get('share', 0)):.0f} % with rooftop PV, "
        f"{100 * float(hh.get('battery', {}).get('share', 0)):.0f} % of those with a home battery), "
        f"{evs.get('count', '?')} EVs and {cs.get('count', '?')} community batteries. "
        f"They trade every {int(market.get('interval_s', 900)) // 60} min in a uniform-price "
        f"double auction settled on {ledger_txt}; the DSO keeps voltages within "
        f"[{grid.get('vm_min_pu', '?')}, {grid.get('vm_max_pu', '?')}] p.u. and lines below "
        f"{grid.get('max_loading_percent', '?')} % by curtailing trades. "
        f"Tariffs: retail {market.get('retail_price_per_mwh', '?')}, feed-in "
        f"{market.get('feed_in_price_per_mwh', '?')} per MWh."
    )


def _fmt(k: dict[str, Any], name: str, fmt: str, scale: float = 1.0) -> str:
    v = k.get(name)
    return "—" if v is None else fmt.format(float(v) * scale)


if ctx is not None and ctx.manifest is not None:
    m = ctx.manifest
    status = m.get("status")
    if m.get("study") == "resilience":
        st.info("This folder holds a resilience study (`twin resilience`): see the Resilience "
                "page. Its KPIs:")
        st.dataframe(pd.DataFrame([{"kpi": key, "value": v} for key, v in (ctx.kpis or {}).items()
                                   if isinstance(v, int | float)]), hide_index=True, key="study_kpis")
        st.stop()
    if m.get("kind") == "game":
        st.info("This folder holds a cooperative game (`game:` scenario): see the Game page for "
                "the coalitions and the Shapley split. Its KPIs:")
        st.dataframe(pd.DataFrame([{"kpi": key, "value": v} for key, v in (ctx.kpis or {}).items()
                                   if isinstance(v, int | float)]), hide_index=True, key="game_kpis")
        st.stop()
    if status == "complete":
        st.success(f"Run complete: {(m.get('duration_s') or 0) / 3600:g} h simulated.", icon=":material/check_circle:")
    elif status == "running":
        st.info(f"Run still running (tables so far cover up to t = {m.get('stopped_at_time_s')} s); "
                "reload to see more.")
    else:
        st.error(f"Run {status}: {m.get('error') or 'no error recorded'} "
                 f"(stopped at t = {m.get('stopped_at_time_s')} s). The pages show what was "
                 "written before it stopped.")
    st.markdown(_scenario_paragraph(m))

    k = ctx.kpis or {}
    if not k:
        st.warning("kpis.json not written (the run stopped before its end); KPI cards are empty.")
    tokens = k.get("tokens_conserved")
    cols = st.columns(4)
    cols[0].metric("Energy traded", _fmt(k, "energy_traded_kwh", "{:.1f} kWh"),
                   help=f"{int(k.get('trades', 0))} trades on the local market")
    cols[1].metric("Mean clearing price", _fmt(k, "mean_price_per_mwh", "{:.2f} /MWh"),
                   help="volume-weighted over all trades")
    cols[2].metric("Self-sufficiency", _fmt(k, "self_sufficiency", "{:.1f} %", 100),
                   help="share of the feeder's consumption not imported from upstream "
                        "(1 − grid import / consumption; kpis.json self_sufficiency)")
    cols[3].metric("Curtailed by DSO", _fmt(k, "curtailed_kwh", "{:.1f} kWh"))
    cols = st.columns(4)
    cols[0].metric("Min voltage", _fmt(k, "vm_min_pu", "{:.4f} p.u."))
    cols[1].metric("Max voltage", _fmt(k, "vm_max_pu", "{:.4f} p.u."))
    cols[2].metric("Max line loading", _fmt(k, "max_line_loading_percent", "{:.1f} %"))
    cols[3].metric("Energy not served", _fmt(k, "energy_not_served_kwh", "{:.1f} kWh"),
                   help="from a resilience study; — when this run has none")
    cols = st.columns(4)
    cols[0].metric("Tokens", "—" if tokens is None else ("conserved" if tokens == 1.0 else "check failed"),
                   help="minted = balances + escrow + recorded debt, on the ledger's own books")
    cols[1].metric("Trades", _fmt(k, "trades", "{:,.0f}"), help=_fmt(k, "orders", "{:,.0f} orders"))
    cols[2].metric("Local market share", _fmt(k, "local_market_share", "{:.1f} %", 100),
                   help="share of the participants' metered consumption bought on the local "
                        "market (kpis.json local_market_share)")
    cols[3].metric("Wall time", _fmt(k, "wall_time_s", "{:.1f} s"))
    if tokens is not None and tokens != 1.0:
        st.error(f"Token audit failed: {m.get('tokens')}")

    bus_rows = td.table_rows(folder=ctx.folder, name="bus")
    if bus_rows:
        st.subheader("Bus voltages over the day")
        bus = td.read_table(folder=ctx.folder, name="bus", columns=("time_s", "vm_pu"))
        band = bus.groupby("time_s")["vm_pu"].agg(["min", "mean", "max"]).reset_index()
        band["hour"] = dashui.hours(seconds=band["time_s"])
        long = band.melt(id_vars="hour", value_vars=["min", "mean", "max"], var_name="over buses",
                         value_name="vm_pu")
        grid = ctx.scenario.get("grid", {})
        limits = [float(v) for v in (grid.get("vm_min_pu"), grid.get("vm_max_pu")) if v is not None]
        charts.show(spec=charts.lines(data=long, x="hour", y="vm_pu", color="over buses",
                                      x_title="time since start (h)", y_title="voltage (pu)",
                                      hlines=limits, height=320), key="vm_band")
    else:
        dashui.no_data(what="bus voltages (bus.parquet)", folder=ctx.folder,
                       hint="The run wrote no power-flow results yet.")

    with st.expander("All KPIs, timings and provenance"):
        st.json({"kpis": k, "timings_s": m.get("timings_s"), "tokens": m.get("tokens"),
                 "package_version": m.get("package_version"), "git_sha": m.get("git_sha"),
                 "chain": m.get("chain"), "scenario_file": m.get("scenario_file")},
                expanded=False)
