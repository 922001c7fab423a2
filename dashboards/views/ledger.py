"""Ledger: blocks, transactions and gas per interval, token balances and the token audit,
certificates issued and retired, demand-response events and payouts, tokenized assets and
their distributions, and any other value-service table; every figure traces back to its
transaction hash (a ``tx_hash`` column in every table, hover text on the charts, and a look-up
of one hash across all ledger tables).

Lazy: the sections are tabs that run only when opened (``st.tabs(on_change="rerun")``), so the
first render reads ``chain.parquet`` alone; the summary counts come from Parquet footers.
Value tables (``twin.results.SCHEMAS``: ``dr_events``, ``dr_payouts``, ``certificates``,
``asset_distributions``, ``asset_claims``; other services' tables such as ``green_exchange``,
``charger_tariffs``, ``charging_sessions``, ``green_currency``, whatever their columns) are
shown when the run wrote them, with a "not in this run" message otherwise. Money columns are
micro-units (shown /1e6).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import charts
import dashui
import pandas as pd
import streamlit as st
import twindash as td

from twin.services.registry import table_pages

ctx = dashui.run_context()
#: account id -> agent names (twindash.account_names)
NAMES: dict[int, str] = td.account_names(folder=ctx.folder) if ctx is not None else {}
dashui.page_header(title="Ledger", ctx=ctx)

MICRO = td.MICRO
#: Service tables with a section of their own below.
_OWN_SECTIONS = {"certificates", "dr_events", "dr_payouts", "asset_distributions", "asset_claims",
                 "regulation", "regulation_intervals"}
#: Tables of market services (twin/services/registry.py) beyond the ones with a section of
#: their own (any columns), and the VPP's.
_OTHER_TABLES = [*((t, what) for t, what in table_pages().items() if t not in _OWN_SECTIONS),
                 ("vpp", "VPP coalition revenue shares (Shapley values and payouts)")]
#: Every table that can carry a ``tx_hash`` (the hash look-up searches them all).
_HASHED = ["chain", "certificates", "dr_events", "dr_payouts", "asset_distributions",
           "asset_claims", "regulation", "regulation_intervals", *(name for name, _ in _OTHER_TABLES)]
_SECTIONS = ["Transactions and gas", "Token balances", "Certificates", "Demand response",
             "Tokenized assets", "Frequency regulation", "Other services", "Look up a hash"]


def _absent(*, folder: Any, name: str, what: str, service: str) -> bool:
    """Say so and return True when table ``name`` is absent or empty."""
    rows = td.table_rows(folder=folder, name=name)
    if rows:
        return False
    state = "is empty" if rows == 0 else "is absent"
    dashui.no_data(what=what, folder=folder,
                   hint=f"Not in this run: {name}.parquet {state} (the scenario does not use "
                        f"{service}, or the run was made before it existed).")
    return True


def _money(df: pd.DataFrame, *columns: str) -> pd.DataFrame:
    """Micro-unit columns -> currency (copies)."""
    out = df.copy()
    for c in columns:
        if c in out.columns:
            out[c] = out[c] / MICRO
    return out


def _traced(df: pd.DataFrame) -> str:
    """How the rows of ``df`` link to the chain (a phrase for a heading)."""
    if "tx_hash" not in df.columns:
        return ""
    if df["tx_hash"].fillna("").astype(str).str.len().gt(0).any():
        return ", each with its tx_hash"
    return "; no tx_hash: the reference ledger has no transactions"


#: columns that hold market account ids (shown with the agent names next to them)
_ACCOUNT_COLUMNS = ("owner", "holder", "account", "payer", "driver", "issuer", "poster", "seller",
                    "buyer", "sender")


def _table(df: pd.DataFrame, *, key: str, height: int = 240) -> None:
    """A table whose tx_hash column comes first (the link to the chain), with the agent name of
    every account column."""
    df = df.copy()
    for c in [c for c in _ACCOUNT_COLUMNS if c in df.columns]:
        df.insert(df.columns.get_loc(c) + 1, f"{c} agent",
                  df[c].map(lambda a: NAMES.get(int(a), "") if pd.notna(a) else ""))
    cols = (["tx_hash"] if "tx_hash" in df.columns else []) + [c for c in df.columns if c != "tx_hash"]
    st.dataframe(df[cols], hide_index=True, height=height, key=key)


def _transactions(folder: Any) -> None:
    tx = td.read_table(folder=folder, name="chain")
    if tx is None or tx.empty:
        dashui.no_data(what="chain transactions (chain.parquet)", folder=folder,
                       hint="Runs on the chain ledger record every transaction there.")
        return
    market_tx = tx[tx["interval"].notna()]
    c = st.columns(4)
    c[0].metric("Transactions", f"{len(tx):,}",
                help=f"{len(tx) - len(market_tx)} at setup (deployment, minting)")
    c[1].metric("Blocks", f"{tx['block'].nunique():,}",
                help=f"blocks {int(tx['block'].min())}–{int(tx['block'].max())}")
    c[2].metric("Gas used", f"{tx['gas_used'].sum() / 1e6:,.1f} M")
    c[3].metric("Gas per market interval",
                f"{market_tx.groupby('interval')['gas_used'].sum().mean() / 1e6:,.2f} M"
                if len(market_tx) else "—")

    st.subheader("Blocks, transactions and gas per interval")
    per = (market_tx.groupby(["interval", "function"])
           .agg(gas_used=("gas_used", "sum"), transactions=("tx_hash", "count"),
                blocks=("block", "nunique"), first_tx=("tx_hash", "first")).reset_index())
    if not per.empty:
        per["gas (M)"] = per["gas_used"] / 1e6
        charts.show(spec=charts.bars(data=per, x="interval", y="gas (M)", color="function",
                                     x_kind="ordinal", height=340,
                                     tooltip=["transactions", "blocks", "first_tx"]),
                    key="gas_per_interval")
        st.caption("Hover a bar for its transactions and the hash of the first; the table "
                   "below lists every hash.")
    by_fn = (tx.groupby("function").agg(transactions=("tx_hash", "count"),
                                        gas_total=("gas_used", "sum"),
                                        gas_mean=("gas_used", "mean"))
             .sort_values("gas_total", ascending=False).reset_index())
    st.dataframe(by_fn, hide_index=True, key="gas_by_function")

    st.markdown("**Transactions** (filter, then copy a hash to look it up on the restored "
                "chain or in the *Look up a hash* tab)")
    f1, f2 = st.columns(2)
    functions = sorted(tx["function"].unique())
    fn = f1.multiselect("Function", options=functions, default=[], key="ledger_fn")
    intervals = ["all", "setup", *sorted(int(k) for k in market_tx["interval"].unique())]
    which = f2.selectbox("Interval", options=intervals, key="ledger_interval")
    shown = tx
    if fn:
        shown = shown[shown["function"].isin(fn)]
    if which == "setup":
        shown = shown[shown["interval"].isna()]
    elif which != "all":
        shown = shown[shown["interval"] == which]
    _table(shown[["time_s", "interval", "block", "function", "gas_used", "tx_hash"]],
           key="tx_table", height=260)


def _balances(folder: Any) -> None:
    audit = (ctx.manifest or {}).get("tokens") if ctx is not None else None
    if isinstance(audit, dict):
        ok = audit.get("conserved")
        (st.success if ok else st.error)(
            f"Token audit: {'conserved' if ok else 'NOT conserved'} — minted "
            f"{audit.get('minted', 0) / MICRO:,.2f}, total supply {audit.get('total_supply', 0) / MICRO:,.2f}, "
            f"held by the market contract (escrow and balances) {audit.get('market_holdings', 0) / MICRO:,.2f}, "
            f"in wallets {audit.get('wallets', 0) / MICRO:,.2f}, recorded debt {audit.get('debt', 0) / MICRO:,.2f}.")
    settle = td.read_table(folder=folder, name="settlements",
                           columns=("time_s", "interval", "owner", "trade_amount", "imbalance_amount"))
    if settle is None or settle.empty:
        dashui.no_data(what="settlements (settlements.parquet)", folder=folder,
                       hint="Balances change only when an interval is settled.")
        return
    initial = float(ctx.scenario.get("market", {}).get("initial_balance", 0)) if ctx else 0.0
    flow = settle.assign(delta=(settle["trade_amount"] + settle["imbalance_amount"]) / MICRO)
    per_t = flow.groupby(["time_s", "owner"])["delta"].sum().unstack(fill_value=0.0).cumsum()
    balances = per_t + initial
    balances.index = dashui.hours(seconds=balances.index)
    top = balances.iloc[-1].sort_values()
    pick = sorted(set(list(top.index[:5]) + list(top.index[-5:])))
    long = balances[pick].reset_index().melt(id_vars="time_s", var_name="account",
                                             value_name="balance")
    long["account"] = long["account"].map(lambda a: NAMES.get(int(a), f"account {a}"))
    charts.show(spec=charts.lines(data=long, x="time_s", y="balance", color="account",
                                  x_title="time since start (h)", y_title="balance (currency)", height=320),
                key="balances")
    st.caption(f"Participants start with {initial:g}; the five accounts that lost most and the "
               "five that gained most. Balances include escrow held for open bids.")

    st.markdown("**One account's balance, interval by interval, with the settlement "
                "transactions that moved it**")
    accounts = sorted(int(a) for a in flow["owner"].unique())
    account = st.selectbox("Account", options=accounts, key="ledger_account",
                           format_func=lambda a: f"{NAMES.get(a, 'account')} ({a})",
                           index=accounts.index(int(top.index[0])) if int(top.index[0]) in accounts else 0)
    mine = (flow[flow["owner"] == account].groupby("interval")
            .agg(time_s=("time_s", "first"), change=("delta", "sum")).reset_index())
    mine["balance"] = initial + mine["change"].cumsum()
    tx = td.read_table(folder=folder, name="chain", columns=("interval", "function", "tx_hash"))
    if tx is not None and not tx.empty:
        settle_tx = (tx[tx["function"].str.contains("settle", case=False)]
                     .groupby("interval")["tx_hash"].agg(", ".join))
        mine["settlement tx_hash"] = mine["interval"].map(settle_tx)
    st.dataframe(mine, hide_index=True, height=220, key="account_table")


def _certificates(folder: Any) -> None:
    if _absent(folder=folder, name="certificates", what="green certificates (issued and retired)",
               service="market.services.certificates"):
        return
    cert = td.read_table(folder=folder, name="certificates")
    n = cert["count"] if "count" in cert.columns else pd.Series(1, index=cert.index)
    action = cert["action"].astype(str) if "action" in cert.columns else pd.Series("issued", index=cert.index)
    c = st.columns(4)
    issued, retired = int(n[action == "issued"].sum()), int(n[action == "retired"].sum())
    c[0].metric("Certificates issued", f"{issued:,}")
    c[1].metric("Retired", f"{retired:,}")
    c[2].metric("Outstanding", f"{issued - retired:,}")
    if "delivered_wh" in cert.columns:
        c[3].metric("Green energy certified",
                    f"{cert.loc[action == 'issued', 'delivered_wh'].sum() / 1000:,.1f} kWh")
    x = "interval" if "interval" in cert.columns else "time_s"
    per = (cert.assign(certificates=n, action=action).groupby([x, "action"])
           .agg(certificates=("certificates", "sum"),
                **({"first_tx": ("tx_hash", "first")} if "tx_hash" in cert.columns else {}))
           .reset_index())
    charts.show(spec=charts.bars(data=per, x=x, y="certificates", color="action", x_kind="ordinal",
                                 height=300, tooltip=[c for c in ("first_tx",) if c in per.columns]),
                key="cert_chart")
    st.markdown(f"**Certificate transactions** ({len(cert):,} rows)")
    _table(cert, key="cert_table")


def _demand_response(folder: Any) -> None:
    if not _absent(folder=folder, name="dr_events", what="demand-response events (dr_events.parquet)",
                   service="market.services.demand_response"):
        ev = _money(td.read_table(folder=folder, name="dr_events"), "budget", "paid", "refund",
                    "price_per_mwh")
        c = st.columns(4)
        c[0].metric("Events posted", f"{len(ev):,}")
        if "paid" in ev.columns:
            c[1].metric("Paid out", f"{ev['paid'].sum():,.2f}",
                        help=f"of a budget of {ev['budget'].sum():,.2f}" if "budget" in ev.columns else None)
        if "reduction_wh" in ev.columns and "target_wh" in ev.columns:
            c[2].metric("Reduction delivered", f"{ev['reduction_wh'].sum() / 1000:,.1f} kWh",
                        help=f"target {ev['target_wh'].sum() / 1000:,.1f} kWh")
        if "status" in ev.columns:
            c[3].metric("Settled", f"{int((ev['status'] == 'settled').sum())} of {len(ev)}")
        measures = [m for m in ("target_wh", "committed_wh", "reduction_wh") if m in ev.columns]
        if measures and "event_id" in ev.columns:
            long = ev.melt(id_vars=[c for c in ("event_id", "interval", "status", "paid", "tx_hash")
                                    if c in ev.columns],
                           value_vars=measures, var_name="measure", value_name="wh")
            long["kWh"] = long["wh"] / 1000
            spec = charts.bars(data=long, x="event_id", y="kWh", color="measure", x_kind="ordinal",
                               height=300, tooltip=[c for c in ("interval", "status", "paid", "tx_hash")
                                                    if c in long.columns])
            spec["layer"][0]["encoding"]["xOffset"] = {"field": "measure"}
            charts.show(spec=spec, key="dr_chart")
        st.markdown(f"**Demand-response events** ({len(ev):,})")
        _table(ev, key="dr_events_table", height=200)
    if not _absent(folder=folder, name="dr_payouts", what="demand-response payouts (dr_payouts.parquet)",
                   service="market.services.demand_response"):
        pay = _money(td.read_table(folder=folder, name="dr_payouts"), "amount")
        st.markdown(f"**Payouts per participant** ({len(pay):,} rows{_traced(pay)})")
        _table(pay, key="dr_payouts_table", height=200)
    if not _absent(folder=folder, name="events", what="demand-response calls and grid events "
                   "of the agents (events.parquet)", service="agents.tso / grid events"):
        ev = td.read_table(folder=folder, name="events")
        st.markdown(f"**Demand-response calls and grid events seen by the agents** ({len(ev):,}; "
                    "off-chain signals, no tx_hash)")
        st.dataframe(ev, hide_index=True, height=200, key="agent_events_table")


def _assets(folder: Any) -> None:
    if not _absent(folder=folder, name="asset_distributions",
                   what="tokenized-asset revenue distributions (asset_distributions.parquet)",
                   service="market.services.assets"):
        dist = _money(td.read_table(folder=folder, name="asset_distributions"), "revenue", "amount")
        c = st.columns(3)
        c[0].metric("Tokenized assets", f"{dist['asset'].nunique() if 'asset' in dist.columns else '—'}")
        if "amount" in dist.columns:
            c[1].metric("Distributed to holders", f"{dist['amount'].sum():,.2f}")
        if "revenue" in dist.columns:
            c[2].metric("Revenue of the assets", f"{dist['revenue'].sum():,.2f}")
        x = "interval" if "interval" in dist.columns else "time_s"
        if "amount" in dist.columns:
            per = (dist.groupby([x, "asset"] if "asset" in dist.columns else [x])
                   .agg(amount=("amount", "sum"),
                        **({"first_tx": ("tx_hash", "first")} if "tx_hash" in dist.columns else {}))
                   .reset_index())
            charts.show(spec=charts.bars(data=per, x=x, y="amount", x_kind="ordinal", height=300,
                                         color="asset" if "asset" in per.columns else None,
                                         y_title="distributed (currency)",
                                         tooltip=[c for c in ("first_tx",) if c in per.columns]),
                        key="asset_chart")
        st.markdown(f"**Distributions** ({len(dist):,} rows)")
        _table(dist, key="asset_dist_table", height=200)
    if not _absent(folder=folder, name="asset_claims", what="tokenized-asset claims (asset_claims.parquet)",
                   service="market.services.assets"):
        claims = _money(td.read_table(folder=folder, name="asset_claims"), "amount")
        st.markdown(f"**Claims by holders** ({len(claims):,} rows)")
        _table(claims, key="asset_claims_table", height=200)


def _regulation(folder: Any) -> None:
    """Frequency regulation (market.services.ancillary): capacity offered and procured per
    interval, the precision score, the payments and the VPP's revenue by stream."""
    if _absent(folder=folder, name="regulation_intervals",
               what="frequency regulation (regulation_intervals.parquet)",
               service="market.services.ancillary"):
        return
    iv = _money(td.read_table(folder=folder, name="regulation_intervals"), "capacity_amount",
                "performance_amount")
    kpis = td.read_json(path=Path(folder) / "kpis.json") or {}
    step_h = float(iv["time_s"].diff().dropna().min()) / 3600.0 if len(iv) > 1 else 0.25
    c = st.columns(4)
    c[0].metric("Capacity procured", f"{iv['procured_w'].sum() / 1e6 * step_h:,.2f} MW·h",
                help="procured capacity × interval length, summed over the run")
    c[1].metric("Paid", f"{(iv['capacity_amount'] + iv['performance_amount']).sum():,.2f}",
                help=f"capacity {iv['capacity_amount'].sum():,.2f}, performance "
                     f"{iv['performance_amount'].sum():,.2f} (currency)")
    settled = iv[iv["status"] == "settled"] if "status" in iv.columns else iv
    c[2].metric("Mean precision score", f"{settled['score'].mean():.3f}" if len(settled) else "—")
    shares = {s: kpis.get(f"revenue_share_{s}") for s in ("market", "demand_response", "ancillary")}
    if all(v is not None for v in shares.values()):
        c[3].metric("Revenue split (market / DR / regulation)",
                    " / ".join(f"{100 * float(v):.0f} %" for v in shares.values()))
    iv["hour"] = iv["time_s"] / 3600.0
    long = iv.melt(id_vars=["hour", "status"], value_vars=["requested_w", "offered_w", "procured_w"],
                   var_name="capacity", value_name="w")
    long["kW"] = long["w"] / 1000.0
    charts.show(spec=charts.lines(data=long, x="hour", y="kW", color="capacity", height=300,
                                  x_title="hour since start (h)", y_title="regulation capacity (kW)",
                                  tooltip=["status"]), key="reg_capacity_chart")
    iv["paid"] = iv["capacity_amount"] + iv["performance_amount"]
    charts.show(spec=charts.bars(data=iv, x="interval", y="paid", x_kind="ordinal", height=260,
                                 x_title="market interval (index)", y_title="regulation paid (currency)", tooltip=["score", "status"]),
                key="reg_paid_chart")
    st.markdown(f"**Regulation per interval** ({len(iv):,} rows{_traced(iv)})")
    _table(iv, key="reg_intervals_table", height=200)
    if not _absent(folder=folder, name="regulation", what="regulation payments (regulation.parquet)",
                   service="market.services.ancillary"):
        pay = _money(td.read_table(folder=folder, name="regulation"), "capacity_amount",
                     "performance_amount", "amount")
        st.markdown(f"**Payments per resource** ({len(pay):,} rows{_traced(pay)})")
        _table(pay, key="reg_table", height=200)


def _others(folder: Any) -> None:
    for name, what in _OTHER_TABLES:
        if _absent(folder=folder, name=name, what=what, service=f"the service writing {name}"):
            continue
        df = _money(td.read_table(folder=folder, name=name), "amount", "price_per_mwh", "locked",
                    "payout")
        st.markdown(f"**{what[0].upper() + what[1:]}** ({len(df):,} rows"
                    f"{_traced(df)})")
        _table(df, key=f"extra_{name}", height=200)


def _lookup(folder: Any) -> None:
    h = st.text_input("Transaction hash (0x…)", key="ledger_hash").strip().lower()
    if not h:
        st.caption("Paste a hash from any table of this page: every row of every ledger table "
                   "that carries it is listed.")
        return
    found = 0
    for name in _HASHED:
        df = td.read_table(folder=folder, name=name, filters=(("tx_hash", "==", h),))
        if df is None or "tx_hash" not in df.columns or df.empty:
            continue
        found += len(df)
        st.markdown(f"**{name}** ({len(df)})")
        st.dataframe(df, hide_index=True, key=f"hash_{name}")
    if not found:
        st.warning(f"No row of this run's ledger tables has the transaction hash {h}.")


if ctx is not None:
    chain_info = (ctx.manifest or {}).get("chain") or {}
    if chain_info.get("ledger") == "reference":
        st.info("This run used the pure-Python reference ledger: no blocks or transactions. "
                "Token balances, the audit and the value services come from its books.")
    elif chain_info:
        box = st.expander(f"Chain id {chain_info.get('chain_id')}, state file "
                          f"`{chain_info.get('state_file')}`, "
                          f"{len(chain_info.get('contracts') or {})} contracts",
                          key="ledger_contracts", on_change="rerun")
        if box.open:  # lazy: built when opened
            with box:
                st.caption("`anvil --load-state` restores the chain for an audit.")
                st.dataframe(pd.DataFrame([{"contract": k, "address": v} for k, v in
                                           (chain_info.get("contracts") or {}).items()]),
                             hide_index=True, key="contracts")
    present = {name: td.table_rows(folder=ctx.folder, name=name) or 0
               for name in ("chain", "certificates", "dr_events", "asset_distributions")}
    st.caption(" · ".join(f"{label}: {present[name]:,} rows" if present[name] else f"{label}: not in this run"
                          for name, label in (("chain", "transactions"), ("certificates", "certificates"),
                                              ("dr_events", "demand-response events"),
                                              ("asset_distributions", "asset distributions"))))
    tabs = st.tabs(_SECTIONS, key="ledger_tab", on_change="rerun")
    for tab, draw in zip(tabs, (_transactions, _balances, _certificates, _demand_response,
                                _assets, _regulation, _others, _lookup), strict=True):
        if tab.open:
            with tab:
                draw(ctx.folder)
