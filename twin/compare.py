"""``twin compare SCENARIO... --out DIR [--workers N]``: market designs side by side.

Runs every scenario through the sweep machinery (:func:`twin.sweep.backends.run_local`: one
process per run, ``workers`` at a time, per-run timeout), then computes the same KPIs for all
of them from their Parquet tables (:mod:`twin.kpis`) and writes::

    DIR/compare.parquet   one row per scenario: scenario, file, kind, ledger, mechanism, grid,
                          status, error, wall_s, run_dir, then every KPI (NaN = NA)
    DIR/compare.csv       the same rows
    DIR/compare.md        side-by-side table: one row per KPI, one column per scenario
    DIR/compare.json      KPI units and meanings, the chain pricing used, scenario order
    DIR/runs/<scenario>/  each run's results folder (+ sweep_run.json, run.log)

Resumable like a sweep: a run folder already complete for the very same scenario (same
digest, :func:`twin.sweep.store.check_run`) is not run again. Scenario names must be distinct
(they name the run folders and the columns). A failed run keeps its row (status, error) with
NA KPIs, and the command exits 1.
"""

from __future__ import annotations

import argparse
import math
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from twin.kpis.metrics import (
    KPI_COLUMNS,
    KPI_NOTES,
    SERVICE_FLOWS,
    ChainPricing,
    RunInputs,
    feeder_kpis,
    game_kpis,
)
from twin.kpis.reliability import TABLES_READ as FAULT_TABLES_READ
from twin.scenario import Scenario, ScenarioError, load_scenario
from twin.services.base import enabled_services

__all__ = ["CompareResult", "add_parser", "markdown_table", "run_compare"]

RUNS = "runs"
DEFAULT_TIMEOUT_S = 900.0
DEFAULT_PRICING = ChainPricing()
#: columns before the KPIs
INFO_COLUMNS = ("scenario", "file", "kind", "ledger", "mechanism", "services", "grid", "status",
                "error", "wall_s", "run_dir")
#: the tables the KPIs read (only those a run wrote)
_TABLES = ("grid", "bus", "agents", "market", "settlements", "trades", "chain", "game_units", "game_security",
           *SERVICE_FLOWS, *FAULT_TABLES_READ)


@dataclass
class CompareResult:
    out_dir: Path
    table: pa.Table
    wall_s: float
    ran: list[str]
    skipped: list[str]

    @property
    def failed(self) -> list[str]:
        return [n for n, s in zip(self.table.column("scenario").to_pylist(),
                                  self.table.column("status").to_pylist(), strict=True)
                if s != "complete"]


def load_scenarios(paths: Sequence[Path]) -> list[tuple[Path, Scenario]]:
    """Validate every scenario; raise one :class:`ScenarioError` listing all problems."""
    errors: list[tuple[str, str]] = []
    loaded: list[tuple[Path, Scenario]] = []
    for p in paths:
        try:
            loaded.append((Path(p), load_scenario(p)))
        except ScenarioError as exc:
            errors += [(f"{exc.source}: {path}" if path else exc.source, msg) for path, msg in exc.errors]
    seen: dict[str, Path] = {}
    for p, s in loaded:
        if s.name in seen:
            errors.append((f"{p.name}: name", f"scenario name {s.name!r} is also the name of "
                           f"{seen[s.name]}; names must be distinct"))
        seen.setdefault(s.name, p)
    if not paths:
        errors.append(("", "no scenarios given"))
    if errors:
        raise ScenarioError("twin compare", errors)
    return loaded


def _info(s: Scenario) -> dict[str, Any]:
    game = s.game is not None
    return {"kind": "game" if game else "feeder", "ledger": "reference" if game else s.market.ledger,
            "mechanism": "game" if game else s.market.mechanism,
            "services": "" if game else ",".join(enabled_services(s)),
            "grid": (s.game.grid.simbench_code if s.game.grid else "-") if s.game is not None
            else (s.grid.simbench_code if s.grid.kind == "simbench" else s.grid.kind)}


def _read_tables(run_dir: Path) -> dict[str, pa.Table]:
    from twin.results import read_parquet  # page checksums verified: a damaged table is named

    return {n: read_parquet(run_dir / f"{n}.parquet") for n in _TABLES
            if (run_dir / f"{n}.parquet").is_file()}


def run_kpis(run_dir: Path, scenario: Scenario, *, pricing: ChainPricing) -> dict[str, float]:
    """The compared KPIs of one finished run folder."""
    tables = _read_tables(run_dir)
    if scenario.game is not None:
        return game_kpis(tables)
    return feeder_kpis(tables, inputs=RunInputs.of(scenario), pricing=pricing)


def run_compare(paths: Sequence[Path], *, out_dir: Path, workers: int,
                timeout_s: float = DEFAULT_TIMEOUT_S, pricing: ChainPricing = DEFAULT_PRICING,
                echo: Callable[[str], None] | None = None) -> CompareResult:
    """Run (or reuse) every scenario and write the comparison; raises ScenarioError on bad input."""
    from twin.sweep.backends import run_local
    from twin.sweep.runner import RunTask
    from twin.sweep.store import check_run

    say = echo or (lambda m: print(m, file=sys.stderr))
    loaded = load_scenarios(paths)
    out = Path(out_dir).resolve()
    (out / RUNS).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    reasons = {s.name: check_run(out / RUNS / s.name, s.digest()) for _, s in loaded}
    skipped = [name for name, why in reasons.items() if why is None]
    for name, why in reasons.items():
        if why is not None and (out / RUNS / name / "manifest.json").is_file():
            say(f"[compare] {name}: not reused ({why}); running it again")
    tasks = [RunTask(run_id=s.name, run_dir=str(out / RUNS / s.name), scenario=s.model_dump(mode="json"),
                     timeout_s=timeout_s, scenario_path=str(p.resolve()))
             for p, s in loaded if s.name not in skipped]
    say(f"[compare] {len(loaded)} scenario(s), {len(skipped)} already complete, {len(tasks)} to run "
        f"on {min(workers, max(len(tasks), 1))} worker(s)")
    records: dict[str, dict[str, Any]] = {}
    for rec in run_local(tasks, workers=workers, cancel=threading.Event()) if tasks else ():
        records[rec["run_id"]] = rec
        wall = f"{rec['wall_s']:.1f} s" if rec.get("wall_s") is not None else "-"
        err = f"  ({rec['error']})" if rec.get("error") else ""
        say(f"[compare] {rec['run_id']} {rec['status']} {wall}{err}")
    rows = []
    for p, s in loaded:
        run_dir = out / RUNS / s.name
        rec = records.get(s.name) or _old_record(run_dir)
        status = "complete" if s.name in skipped else rec.get("status", "failed")
        row: dict[str, Any] = {"scenario": s.name, "file": str(p), **_info(s), "status": status,
                               "error": rec.get("error"), "wall_s": rec.get("wall_s"),
                               "run_dir": f"{RUNS}/{s.name}"}
        kpis = dict.fromkeys(KPI_COLUMNS, math.nan)
        if status == "complete":
            try:
                kpis.update(run_kpis(run_dir, s, pricing=pricing))
            except (OSError, ValueError, KeyError, pa.ArrowInvalid) as exc:
                row.update(status="failed", error=f"KPIs: {exc}; run the same `twin compare` "
                           "again to rerun it")
        rows.append(row | {k: float(kpis[k]) for k in KPI_COLUMNS})
    table = _to_table(rows)
    _write(out, table, pricing=pricing)
    return CompareResult(out_dir=out, table=table, wall_s=time.perf_counter() - t0,
                         ran=list(records), skipped=skipped)


def _old_record(run_dir: Path) -> dict[str, Any]:
    from twin.sweep.store import read_record

    return read_record(run_dir) or {}


def _to_table(rows: list[dict[str, Any]]) -> pa.Table:
    fields = [(c, pa.float64() if c == "wall_s" else pa.string()) for c in INFO_COLUMNS]
    fields += [(k, pa.float64()) for k in KPI_COLUMNS]
    return pa.Table.from_pylist(rows, schema=pa.schema(fields))


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "NA"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, float):
        if value == int(value) and abs(value) < 1e12:
            return f"{int(value):,}"
        return f"{value:,.4g}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def markdown_table(table: pa.Table) -> str:
    """KPI rows x scenario columns, with the unit/meaning of each KPI."""
    rows = table.to_pylist()
    head = ["KPI", *(r["scenario"] for r in rows), "unit / meaning"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for info in ("mechanism", "ledger", "grid", "status", "wall_s"):
        lines.append("| " + " | ".join([info, *(_fmt(r[info]) for r in rows), ""]) + " |")
    for k in KPI_COLUMNS:
        lines.append("| " + " | ".join([k, *(_fmt(r[k]) for r in rows), KPI_NOTES[k]]) + " |")
    return "\n".join(lines)


def _write(out: Path, table: pa.Table, *, pricing: ChainPricing) -> None:
    import pyarrow.csv as pacsv

    from twin.results import write_json_atomic, write_table_atomic

    write_table_atomic(table, out / "compare.parquet")
    tmp = out / ".compare.csv.tmp"
    pacsv.write_csv(table, tmp)
    tmp.replace(out / "compare.csv")
    notes = ["", "NA: not applicable. gas_per_kwh / chain_cost_per_kwh are NA on the reference ledger "
             "(no chain, no gas); chain cost at "
             f"{pricing.gas_price_gwei:g} gwei per gas and {pricing.native_price:g} currency per "
             "native coin. Game scenarios have no feeder: grid KPIs are NA. Definitions: "
             "twin/kpis/metrics.py.", ""]
    tmp_md = out / ".compare.md.tmp"
    tmp_md.write_text("# twin compare\n\n" + markdown_table(table) + "\n" + "\n".join(notes))
    tmp_md.replace(out / "compare.md")
    write_json_atomic({"kpis": KPI_NOTES, "order": table.column("scenario").to_pylist(),
                       "chain_pricing": {"gas_price_gwei": pricing.gas_price_gwei,
                                         "native_price": pricing.native_price}},
                      out / "compare.json")


def add_parser(sub: Any) -> None:
    c = sub.add_parser("compare", help="run scenarios in parallel and compare the same KPIs side by side")
    c.add_argument("scenarios", type=Path, nargs="+", metavar="SCENARIO", help="scenario YAML files")
    c.add_argument("--out", type=Path, required=True, help="comparison folder (compare.*, runs/)")
    c.add_argument("--workers", type=int, default=None, help="runs at a time (default: CPUs)")
    c.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                   help="per-run timeout")
    c.add_argument("--gas-price-gwei", type=float, default=ChainPricing.gas_price_gwei,
                   help="gas price for chain_cost_per_kwh (default: %(default)s)")
    c.add_argument("--native-price", type=float, default=ChainPricing.native_price,
                   help="currency units per native coin (ETH) for chain_cost_per_kwh (default: %(default)s)")
    c.set_defaults(handler=_cmd_compare)


def _cmd_compare(args: argparse.Namespace) -> int:
    from twin.sweep.orchestrate import default_workers

    if args.workers is not None and args.workers < 1:
        print("twin: error: --workers needs at least 1", file=sys.stderr)
        return 2
    pricing = ChainPricing(gas_price_gwei=args.gas_price_gwei, native_price=args.native_price)
    try:
        result = run_compare(args.scenarios, out_dir=args.out, workers=args.workers or default_workers(),
                             timeout_s=args.timeout, pricing=pricing)
    except ScenarioError as exc:
        print(f"twin: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"\ntwin: compare interrupted; run the same command again to resume ({args.out})",
              file=sys.stderr)
        return 130
    print(markdown_table(result.table))
    print(f"\ncompare: {result.table.num_rows} scenario(s) in {result.wall_s:.1f} s -> "
          f"{result.out_dir}/compare.md, compare.parquet, compare.csv")
    for name, err in zip(result.table.column("scenario").to_pylist(),
                         result.table.column("error").to_pylist(), strict=True):
        if name in result.failed:
            print(f"twin: compare: {name}: {err}", file=sys.stderr)
    return 1 if result.failed else 0
