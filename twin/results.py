"""The results folder: Arrow schemas, atomic Parquet writing, manifest, reading back.

A run folder holds ``manifest.json``, ``kpis.json`` and one Parquet file per table
(long format, one row per time and element). Every file is written to a temporary name
in the same folder and renamed into place, so a reader never sees a half-written file and
a killed run leaves the last complete version of each table. :class:`RunRecorder` keeps
the rows of a running simulation and rewrites the tables at checkpoints and at the end.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

__all__ = [
    "SCHEMAS",
    "RunRecorder",
    "read_json",
    "read_table",
    "write_json_atomic",
    "write_table_atomic",
]

_i64 = pa.int64()
_f64 = pa.float64()
_str = pa.string()

#: The tables of the results folder (shared/DESIGN.md) and their columns.
SCHEMAS: dict[str, pa.Schema] = {
    "bus": pa.schema(
        [("time_s", _i64), ("bus", _i64), ("vm_pu", _f64), ("va_degree", _f64),
         ("p_mw", _f64), ("q_mvar", _f64)]
    ),
    "grid": pa.schema(
        [("time_s", _i64), ("ext_grid_p_mw", _f64), ("load_p_mw", _f64), ("sgen_p_mw", _f64),
         ("line_pl_mw", _f64), ("vm_min_pu", _f64),
         ("vm_max_pu", _f64), ("max_loading_percent", _f64)]
    ),
    "line": pa.schema(
        [("time_s", _i64), ("line", _i64), ("loading_percent", _f64), ("p_from_mw", _f64),
         ("q_from_mvar", _f64), ("pl_mw", _f64)]
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
         # grid.tariff: the DSO's network fee of the interval and what it would collect on
         # the final trades (recorded agent-side, not settled by the market)
         ("network_fee_per_mwh", _f64), ("network_fee_amount", _f64)]
    ),
    # hardware in the loop (twin hil serve): per device and step, client writes, deadline misses
    "hil": pa.schema(
        [("time_s", _i64), ("unit_id", _i64), ("available_w", _f64), ("w", _f64), ("var", _f64),
         ("v", _f64), ("w_max_w", _f64), ("w_set_w", _f64), ("reverted", _str)]
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
    # value-layer services (market.services, twin/market/value_services.py); money in
    # micro-units, energy in Wh; tx_hash: the chain transaction ('' on the reference ledger)
    "dr_events": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("event_id", _i64), ("poster", _i64),
         ("target_wh", _i64), ("price_per_mwh", _i64), ("budget", _i64), ("committed_wh", _i64),
         ("n_committed", _i64), ("paid", _i64), ("refund", _i64), ("reduction_wh", _i64),
         ("status", _str), ("tx_hash", _str)]
    ),
    "dr_payouts": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("event_id", _i64), ("device_id", _i64),
         ("owner", _i64), ("committed_wh", _i64), ("baseline_wh", _i64), ("metered_wh", _i64),
         ("reduction_wh", _i64), ("amount", _i64), ("tx_hash", _str)]
    ),
    "certificates": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("vintage", _i64), ("action", _str),
         ("trade_id", _i64), ("seller_device", _i64), ("seller", _i64), ("buyer_device", _i64),
         ("holder", _i64), ("delivered_wh", _i64), ("count", _i64), ("tx_hash", _str)]
    ),
    "asset_distributions": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("asset", _str), ("asset_id", _i64),
         ("device_id", _i64), ("issuer", _i64), ("revenue", _i64), ("amount", _i64),
         ("tx_hash", _str)]
    ),
    "asset_claims": pa.schema(
        [("time_s", _i64), ("asset", _str), ("asset_id", _i64), ("holder", _i64),
         ("shares", _i64), ("amount", _i64), ("tx_hash", _str)]
    ),
    # pilot mechanisms (twin/market/pilot_services.py); money in micro-units, energy in Wh,
    # green-exchange tokens in kWh, green currency in micro-tokens
    "green_exchange": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("action", _str), ("device_id", _i64),
         ("account", _i64), ("tokens", _i64), ("energy_wh", _i64), ("amount", _i64),
         ("tx_hash", _str), ("price_per_mwh", _i64)]
    ),
    "charger_tariffs": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("charger", _i64), ("owner", _i64),
         ("price_per_mwh", _i64), ("tx_hash", _str)]
    ),
    "charging_sessions": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("end_interval", _i64), ("session_id", _i64),
         ("charger", _i64), ("owner", _i64), ("driver", _i64), ("price_per_mwh", _i64),
         ("max_wh", _i64), ("locked", _i64), ("metered_wh", _i64), ("amount", _i64),
         ("status", _str), ("tx_hash", _str)]
    ),
    "green_currency": pa.schema(
        [("time_s", _i64), ("interval", _i64), ("reason", _str), ("ref", _i64),
         ("device_id", _i64), ("owner", _i64), ("energy_wh", _i64), ("amount", _i64),
         ("tx_hash", _str)]
    ),
}


def _atomic_path(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def write_table_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` as Parquet to ``path`` via a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _atomic_path(path)
    try:
        pq.write_table(table, tmp, compression="zstd")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(data: Any, path: Path) -> None:
    """Write JSON (sorted keys, indented) via a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _atomic_path(path)
    try:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def read_table(run_dir: Path, name: str) -> pa.Table:
    """Read one table of a run folder; raises a clear error when it is missing or corrupt."""
    path = Path(run_dir) / f"{name}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: table '{name}' not found in the results folder")
    try:
        return pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ValueError(f"{path}: not a readable Parquet file ({exc})") from exc


class RunRecorder:
    """Collects rows per table and writes them atomically at checkpoints.

    Rows are validated against :data:`SCHEMAS` when they are written, so a wrong column
    fails loudly, naming the table.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._rows: dict[str, list[Mapping[str, Any]]] = {name: [] for name in SCHEMAS}
        self._dirty: set[str] = set(SCHEMAS)

    def add(self, table: str, rows: Iterable[Mapping[str, Any]]) -> None:
        if table not in self._rows:
            raise KeyError(f"unknown results table '{table}' (known: {sorted(SCHEMAS)})")
        buf = self._rows[table]
        before = len(buf)
        buf.extend(rows)
        if len(buf) != before:
            self._dirty.add(table)

    def n_rows(self, table: str) -> int:
        return len(self._rows[table])

    def rows(self, table: str) -> list[Mapping[str, Any]]:
        return self._rows[table]

    def to_table(self, table: str) -> pa.Table:
        schema = SCHEMAS[table]
        rows = self._rows[table]
        try:
            return pa.Table.from_pylist(
                [{k: r.get(k) for k in schema.names} for r in rows], schema=schema
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ValueError(f"results table '{table}': rows do not match its schema ({exc})") from exc

    def flush(self) -> None:
        """Rewrite every table that changed since the last flush."""
        for name in sorted(self._dirty):
            write_table_atomic(self.to_table(name), self.out_dir / f"{name}.parquet")
        self._dirty.clear()
