"""The results folder's tables and their columns (:data:`SCHEMAS`): the core tables here,
plus each market service's (:mod:`twin.services`) and the fault tables
(:mod:`twin.faults.tables`). Re-exported by :mod:`twin.results`."""

from __future__ import annotations

import pyarrow as pa

from twin.faults.tables import fault_tables
from twin.services.registry import service_tables

__all__ = ["SCHEMAS"]

_i64 = pa.int64()
_f64 = pa.float64()
_str = pa.string()

#: The tables of the results folder (shared/DESIGN.md) and their columns.
_CORE_SCHEMAS: dict[str, pa.Schema] = {
    "bus": pa.schema(
        [("time_s", _i64), ("bus", _i64), ("vm_pu", _f64), ("va_degree", _f64),
         ("p_mw", _f64), ("q_mvar", _f64),
         # three-phase runs (grid.phases: 3; vm_pu is then the worst phase); null otherwise
         ("vm_a_pu", _f64), ("vm_b_pu", _f64), ("vm_c_pu", _f64), ("vuf_percent", _f64)]
    ),
    "grid": pa.schema(
        [("time_s", _i64), ("ext_grid_p_mw", _f64), ("load_p_mw", _f64), ("sgen_p_mw", _f64),
         ("line_pl_mw", _f64), ("vm_min_pu", _f64),
         ("vm_max_pu", _f64), ("max_loading_percent", _f64),
         # DER grid-support functions (twin/grid/der_runtime.py) and the OLTC (-1: none)
         ("der_q_mvar", _f64), ("der_curtailed_mw", _f64), ("oltc_tap", _i64),
         # three-phase runs: the highest voltage-unbalance factor, %; null otherwise
         ("vuf_max_percent", _f64)]
    ),
    # grid.opendss.regulators: deck -- each RegControl's tap after the interval's solve
    "regulators": pa.schema([("time_s", _i64), ("regulator", _str), ("tap", _i64), ("tap_pu", _f64)]),
    "line": pa.schema(
        [("time_s", _i64), ("line", _i64), ("loading_percent", _f64), ("p_from_mw", _f64),
         ("q_from_mvar", _f64), ("pl_mw", _f64),
         # three-phase runs (loading_percent is then the highest phase); null otherwise
         ("loading_a_percent", _f64), ("loading_b_percent", _f64), ("loading_c_percent", _f64),
         ("p_a_from_mw", _f64), ("p_b_from_mw", _f64), ("p_c_from_mw", _f64)]
    ),
    "orders": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("order_id", _i64), ("device_id", _i64),
         ("owner", _i64), ("side", _str), ("energy_wh", _i64), ("price_per_mwh", _i64)]
    ),
    "trades": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("trade_id", _i64), ("buy_order_id", _i64),
         ("sell_order_id", _i64), ("buyer_device", _i64), ("seller_device", _i64),
         ("cleared_wh", _i64), ("energy_wh", _i64), ("curtailed_wh", _i64),
         ("price_per_mwh", _i64), ("creator", _i64), ("created_s", _i64)]
    ),
    "settlements": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("device_id", _i64), ("owner", _i64),
         ("traded_wh", _i64), ("metered_wh", _i64), ("imbalance_wh", _i64),
         ("trade_amount", _i64), ("imbalance_amount", _i64), ("debt", _i64)]
    ),
    "market": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("price_per_mwh", _i64), ("volume_wh", _i64),
         ("n_orders", _i64), ("n_trades", _i64), ("curtailed_wh", _i64)]
    ),
    "agents": pa.schema(
        [("time_s", _i64), ("agent", _str), ("kind", _str), ("device_id", _i64), ("bus", _i64),
         ("soc", _f64), ("p_mw", _f64), ("metered_wh", _i64), ("load_wh", _f64),
         ("pv_available_wh", _f64), ("pv_wh", _f64), ("bought_wh", _f64), ("sold_wh", _f64)]
    ),
    "chain": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("tx_hash", _str), ("block", _i64),
         ("gas_used", _i64), ("function", _str)]
    ),
    "dso": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("checks", _i64), ("converged", pa.bool_()),
         ("violations_found", _i64), ("violations_remaining", _i64), ("overvoltage", _i64),
         ("undervoltage", _i64), ("overload", _i64), ("curtailed_trades", _i64),
         ("curtailed_wh", _i64), ("vm_min_pu", _f64), ("vm_max_pu", _f64),
         ("max_loading_percent", _f64),
         # three-phase runs: buses above the unbalance limit after the check, highest VUF
         ("unbalance", _i64), ("vuf_max_percent", _f64),
         # grid.tariff: the DSO's network fee of the interval and what it would collect on
         # the final trades (recorded agent-side, not settled by the market)
         ("network_fee_per_mwh", _f64), ("network_fee_amount", _f64)]
    ),
    # hardware in the loop (twin hil serve): per device and step, client writes, deadline misses
    "hil": pa.schema(
        [("time_s", _i64), ("unit_id", _i64), ("available_w", _f64), ("w", _f64), ("var", _f64),
         ("v", _f64), ("hz", _f64), ("w_max_w", _f64), ("w_set_w", _f64), ("q_mode", _str),
         ("in_service", pa.bool_()), ("state", _str), ("reverted", _str)]
    ),
    "hil_writes": pa.schema(
        [("time_s", _f64), ("wall_time", _f64), ("client", _str), ("unit_id", _i64),
         ("address", _i64), ("count", _i64), ("exception_code", _i64), ("points", _str)]
    ),
    "hil_deadlines": pa.schema([("time_s", _i64), ("lateness_s", _f64), ("deadline_wall", _f64)]),
    # agents (twin/agents): TSO demand-response calls, upstream-grid signals; VPP Shapley split
    "events": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("kind", _str), ("agent", _str), ("value", _f64),
         ("detail", _str)]
    ),
    "vpp": pa.schema(
        [("agent", _str), ("device_id", _i64), ("standalone_value", _f64), ("shapley_value", _f64),
         ("half_width", _f64), ("payout", _i64)]
    ),
    # forecasts (twin/agents/forecast.py, agents.forecast): per interval and target ("load",
    # "pv", "vpp_net_load" in kW, feeder totals; "price" in currency/MWh) forecast vs actual
    "forecasts": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("target", _str), ("forecast", _f64),
         ("actual", _f64), ("method", _str)]
    ),
    # cooperative games (twin run on a `game:` scenario, twin/market/game.py); money in currency
    "game_coalitions": pa.schema(
        [("coalition", _str), ("size", _i64), ("feasible", pa.bool_()), ("price_per_mwh", _f64),
         ("cost", _f64), ("revenue", _f64), ("value", _f64)]
    ),
    "game_dispatch": pa.schema(
        [("coalition", _str), ("unit", _str), ("p_mw", _f64), ("bid_per_mwh", _f64),
         ("cost", _f64), ("profit", _f64)]
    ),
    "game_units": pa.schema(
        [("unit", _str), ("grand_p_mw", _f64), ("grand_profit", _f64), ("shapley_value", _f64),
         ("energy_wh", _i64), ("revenue", _i64), ("transfer", _i64)]
    ),
    # superadditivity and core under each valuation (game.valuation; twin/market/game_properties.py)
    "game_checks": pa.schema(
        [("valuation", _str), ("played", pa.bool_()), ("grand_value", _f64), ("superadditive", pa.bool_()),
         ("n_violations", _i64), ("worst_gap", _f64), ("worst_pair", _str), ("core_nonempty", pa.bool_()),
         ("least_core_epsilon", _f64), ("shapley_in_core", pa.bool_()), ("shapley_max_excess", _f64),
         ("blocking_coalition", _str)]
    ),
    # the consortium's bid curves and price (the seed paper's Fig. 7; twin/market/game_paper.py):
    # one row per (total, unit), and the curve's segments with the unit that sets the price
    "game_price_curve": pa.schema(
        [("total_mwh", _f64), ("unit", _str), ("p_mw", _f64), ("bid_per_mwh", _f64),
         ("price_per_mwh", _f64), ("is_setter", pa.bool_())]
    ),
    "game_price_segments": pa.schema(
        [("segment", _i64), ("from_mwh", _f64), ("to_mwh", _f64), ("setter", _str),
         ("setter_at_max", pa.bool_()), ("price_from_per_mwh", _f64), ("price_to_per_mwh", _f64)]
    ),
    # DSO security check of every coalition's dispatch on game.grid (twin/market/game_security.py);
    # coalition "" is the reference (background only); value = market_value, or 0 when rejected
    "game_security": pa.schema(
        [("coalition", _str), ("size", _i64), ("feasible_dispatch", pa.bool_()), ("secure", pa.bool_()),
         ("converged", pa.bool_()), ("vm_min_pu", _f64), ("vm_max_pu", _f64),
         ("max_line_loading_percent", _f64), ("max_trafo_loading_percent", _f64),
         ("voltage_violations", _i64), ("overloaded_branches", _i64), ("ext_grid_p_mw", _f64),
         ("energy_mwh", _f64), ("market_value", _f64), ("value", _f64), ("reason", _str)]
    ),
}
#: Every results table: the core ones above plus each market service's (twin/services).
SCHEMAS: dict[str, pa.Schema] = {**_CORE_SCHEMAS, **service_tables(), **fault_tables()}
