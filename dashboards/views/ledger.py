"""Ledger: blocks, transactions and gas per interval, token balances and the token audit,
certificates, demand-response payouts and tokenized assets; every figure traces back to its
transaction hash."""

from __future__ import annotations

import dashui
import pandas as pd
import plotly.express as px
import streamlit as st
import twindash as td

ctx = dashui.run_context()
dashui.page_header(title="Ledger", ctx=ctx)

MICRO = td.MICRO

#: Optional ledger tables (written once the market grows these features), with what they are.
_EXTRAS = [
    ("certificates", "green certificates (issued and retired)"),
    ("events", "demand-response calls and grid events"),
    ("dr_events", "demand-response payouts"),
    ("vpp", "VPP coalition revenue shares (Shapley values and payouts)"),
    ("assets", "tokenized assets"),
    ("asset_distributions", "tokenized-asset revenue distributions"),
]

if ctx is not None:
    chain_info = (ctx.manifest or {}).get("chain") or {}
    if chain_info.get("ledger") == "reference":
        st.info("This run used the pure-Python reference ledger: no blocks or transactions. "
                "Token balances and the audit below come from its books.")
    elif chain_info:
        st.markdown(f"Chain id **{chain_info.get('chain_id')}**, state file "
                    f"`{chain_info.get('state_file')}` (`anvil --load-state` restores it for an "
                    "audit). Contracts:")
        st.dataframe(pd.DataFrame([{"contract": k, "address": v}
                                   for k, v in (chain_info.get("contracts") or {}).items()]),
                     hide_index=True, key="contracts")

    tx = td.read_table(folder=ctx.folder, name="chain")
    if tx is None or tx.empty:
        dashui.no_data(what="chain transactions (chain.parquet)", folder=ctx.folder,
                       hint="Runs on the chain ledger record every transaction there.")
    else:
        tx["phase"] = tx["interval"].map(lambda k: "setup" if pd.isna(k) else "market")
        c = st.columns(4)
        c[0].metric("Transactions", f"{len(tx):,}")
        c[1].metric("Blocks", f"{tx['block'].nunique():,}",
                    help=f"blocks {int(tx['block'].min())}–{int(tx['block'].max())}")
        c[2].metric("Gas used", f"{tx['gas_used'].sum() / 1e6:,.1f} M")
        c[3].metric("Gas per market interval",
                    f"{tx.loc[tx['phase'] == 'market'].groupby('interval')['gas_used'].sum().mean() / 1e6:,.2f} M"
                    if (tx["phase"] == "market").any() else "—")

        st.subheader("Gas and transactions per interval")
        per = (tx[tx["phase"] == "market"].groupby(["interval", "function"])
               .agg(gas_used=("gas_used", "sum"), transactions=("tx_hash", "count"),
                    first_tx=("tx_hash", "first")).reset_index())
        if not per.empty:
            fig = px.bar(per, x="interval", y="gas_used", color="function",
                         hover_data=["transactions", "first_tx"])
            fig.update_layout(height=340, margin={"t": 10, "b": 10},
                              legend={"orientation": "h", "y": 1.1})
            st.plotly_chart(fig, width="stretch", key="gas_per_interval")
        by_fn = (tx.groupby("function").agg(transactions=("tx_hash", "count"),
                                            gas_total=("gas_used", "sum"),
                                            gas_mean=("gas_used", "mean"))
                 .sort_values("gas_total", ascending=False).reset_index())
        st.dataframe(by_fn, hide_index=True, key="gas_by_function")

        st.markdown("**Transactions** (filter, then copy a hash to look it up on the restored chain)")
        f1, f2 = st.columns(2)
        functions = sorted(tx["function"].unique())
        fn = f1.multiselect("Function", options=functions, default=[], key="ledger_fn")
        intervals = ["all", "setup", *sorted(int(k) for k in tx["interval"].dropna().unique())]
        which = f2.selectbox("Interval", options=intervals, key="ledger_interval")
        shown = tx
        if fn:
            shown = shown[shown["function"].isin(fn)]
        if which == "setup":
            shown = shown[shown["phase"] == "setup"]
        elif which != "all":
            shown = shown[shown["interval"] == which]
        st.dataframe(shown[["time_s", "interval", "block", "function", "gas_used", "tx_hash"]],
                     hide_index=True, height=260, key="tx_table")

    st.subheader("Token balances")
    audit = (ctx.manifest or {}).get("tokens")
    if isinstance(audit, dict):
        ok = audit.get("conserved")
        (st.success if ok else st.error)(
            f"Token audit: {'conserved' if ok else 'NOT conserved'} — minted "
            f"{audit.get('minted', 0) / MICRO:,.2f}, total supply {audit.get('total_supply', 0) / MICRO:,.2f}, "
            f"held by the market contract (escrow and balances) {audit.get('market_holdings', 0) / MICRO:,.2f}, "
            f"in wallets {audit.get('wallets', 0) / MICRO:,.2f}, recorded debt {audit.get('debt', 0) / MICRO:,.2f}.")
    settle = td.read_table(folder=ctx.folder, name="settlements",
                           columns=("time_s", "owner", "trade_amount", "imbalance_amount"))
    if settle is None or settle.empty:
        dashui.no_data(what="settlements (settlements.parquet)", folder=ctx.folder,
                       hint="Balances change only when an interval is settled.")
    else:
        market_cfg = ctx.scenario.get("market", {})
        initial = float(market_cfg.get("initial_balance", 0))
        flow = settle.assign(delta=(settle["trade_amount"] + settle["imbalance_amount"]) / MICRO)
        per_t = flow.groupby(["time_s", "owner"])["delta"].sum().unstack(fill_value=0.0).cumsum()
        balances = per_t + initial
        balances.index = dashui.hours(seconds=balances.index)
        top = balances.iloc[-1].sort_values()
        pick = list(top.index[:5]) + list(top.index[-5:])
        long = balances[sorted(set(pick))].reset_index().melt(id_vars="time_s", var_name="account",
                                                             value_name="balance")
        fig = px.line(long, x="time_s", y="balance", color="account",
                      labels={"time_s": "hour", "balance": "balance (currency)"})
        fig.update_layout(height=320, margin={"t": 10, "b": 10})
        st.plotly_chart(fig, width="stretch", key="balances")
        st.caption(f"Participants start with {initial:g}; the five accounts that lost most and the five "
                   "that gained most. Balances include escrow held for open bids.")

    st.subheader("Certificates, demand response and tokenized assets")
    for name, what in _EXTRAS:
        df = td.read_table(folder=ctx.folder, name=name)
        if df is None or df.empty:
            dashui.no_data(what=what, folder=ctx.folder,
                           hint=f"({name}.parquet {'is empty' if df is not None else 'is absent'}; "
                                "it is filled when the scenario uses them.)")
            continue
        st.markdown(f"**{what[0].upper() + what[1:]}** ({len(df)} rows"
                    f"{', each with its tx_hash' if 'tx_hash' in df.columns else ''})")
        st.dataframe(df, hide_index=True, height=200, key=f"extra_{name}")
