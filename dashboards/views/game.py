"""Game: a cooperative-game run (``game:`` scenario, e.g. the consortium generators):
the grand coalition's outcome, every coalition's value, the Shapley split among the units and,
with ``game.grid``, the DSO's security check of every coalition's dispatch.

Reads ``kpis.json`` (``game_*``), ``game_coalitions``, ``game_units``, ``game_dispatch`` and
``game_security`` (when present). Money in currency units.
"""

from __future__ import annotations

import charts
import dashui
import streamlit as st
import twindash as td

ctx = dashui.run_context()
dashui.page_header(title="Cooperative game", ctx=ctx)

if ctx is not None:
    coalitions = td.read_table(folder=ctx.folder, name="game_coalitions")
    units = td.read_table(folder=ctx.folder, name="game_units")
    if coalitions is None or units is None or coalitions.empty:
        dashui.no_data(what="a cooperative game (game_coalitions, game_units)", folder=ctx.folder,
                       hint="`twin run` on a scenario with a `game:` section writes them; this "
                            "folder holds a feeder run.")
    else:
        k = ctx.kpis or {}

        def money(name: str) -> str:
            v = k.get(name)
            return "n/a" if v is None else f"{float(v):,.2f}"

        c = st.columns(4)
        c[0].metric("Grand coalition value", money("game_grand_value"),
                    help="buyer's payment minus the units' generation cost, currency")
        c[1].metric("Clearing price", money("game_price_per_mwh") + " /MWh")
        c[2].metric("Buyer pays", money("game_buyer_payment"), help="currency")
        c[3].metric("Coalitions", f"{len(coalitions):,}")

        st.subheader("Shapley split of the grand coalition's value")
        split = units.rename(columns={"unit": "unit", "shapley_value": "Shapley value (currency)",
                                      "grand_profit": "profit in the grand coalition (currency)"})
        long = split.melt(id_vars=["unit"], value_vars=["Shapley value (currency)",
                                                        "profit in the grand coalition (currency)"],
                          var_name="share", value_name="currency")
        charts.show(spec=charts.bars(data=long, x="unit", y="currency", color="share",
                                     x_kind="nominal", x_title="generator unit",
                                     y_title="currency", height=300), key="game_split")
        st.dataframe(units.rename(columns={
            "grand_p_mw": "dispatch (MW)", "grand_profit": "profit (currency)",
            "shapley_value": "Shapley value (currency)", "energy_wh": "energy (Wh)",
            "revenue": "revenue (micro-units)", "transfer": "transfer (micro-units)"}),
            hide_index=True, key="game_units")

        st.subheader("Every coalition")
        shown = coalitions.sort_values(["size", "coalition"]).rename(columns={
            "price_per_mwh": "price (currency/MWh)", "cost": "cost (currency)",
            "revenue": "revenue (currency)", "value": "value (currency)"})
        st.dataframe(shown, hide_index=True, key="game_coalitions")

        security = td.read_table(folder=ctx.folder, name="game_security")
        if security is not None and not security.empty:
            st.subheader("DSO security check of each coalition's dispatch")
            bad = security[~security["secure"].astype(bool)]
            st.caption(f"{len(security) - len(bad)} of {len(security)} dispatches secure; a "
                       "rejected coalition's value counts as 0 in the Shapley split.")
            st.dataframe(security.rename(columns={
                "vm_min_pu": "lowest voltage (p.u.)", "vm_max_pu": "highest voltage (p.u.)",
                "max_line_loading_percent": "max line loading (%)",
                "max_trafo_loading_percent": "max transformer loading (%)",
                "ext_grid_p_mw": "upstream import (MW)", "energy_mwh": "energy (MWh)",
                "market_value": "market value (currency)", "value": "value (currency)"}),
                hide_index=True, key="game_security")
