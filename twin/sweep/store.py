"""The sweep results store: ``DIR/runs/<run_id>/`` run folders, ``DIR/kpis.parquet``, one dataset per table.

* ``DIR/sweep.json``: the spec, the swept parameter paths and every variant (run id, values, seed).
* ``DIR/runs/<run_id>/``: the run's results folder (manifest.json, kpis.json, Parquet tables)
  plus ``sweep_run.json`` (status, error, wall time, host) and ``run.log``.
* ``DIR/kpis.parquet``: one row per run: ``run_id``, every swept parameter (column named by its
  field path), ``seed``, ``status``, ``error``, ``wall_s`` and every KPI.
* :func:`open_dataset` gives one table of every run as a single ``pyarrow.dataset.Dataset`` with
  ``run_id``, the parameters and ``seed`` as columns. They are not copied into the files: each
  run's file is a fragment whose partition expression carries them, so filters on parameters
  skip whole runs. Every footer is checked first; a corrupt file is named, not skipped.

All files are written atomically (temporary file + rename).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from twin.lifecycle import effective_status
from twin.results import SCHEMAS, check_table, read_parquet, write_json_atomic, write_table_atomic

__all__ = [
    "KPIS_FILE",
    "PLAN_FILE",
    "RUNS",
    "check_run",
    "kpi_rows",
    "open_dataset",
    "read_kpis",
    "read_record",
    "write_kpis",
    "write_plan",
]

RUNS = "runs"
KPIS_FILE = "kpis.parquet"
PLAN_FILE = "sweep.json"
_FIXED = ("run_id", "seed", "status", "error", "wall_s")


def check_run(run_dir: Path, digest: str) -> str | None:
    """Why the run in ``run_dir`` is not complete and valid for scenario ``digest`` (None if it is).

    Complete means: manifest status ``complete`` for this very scenario, readable kpis.json,
    and every table the manifest lists present and intact (footer and page checksums).
    """
    try:
        manifest = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return "no readable manifest.json"
    status = effective_status(manifest)
    if status != "complete":
        return f"manifest status is {status!r}"
    if manifest.get("scenario_hash") != digest:
        return "manifest is for another scenario"
    try:
        kpis = json.loads((run_dir / "kpis.json").read_text())
    except (OSError, ValueError):
        return "no readable kpis.json"
    if not isinstance(kpis, dict):
        return "kpis.json is not a mapping"
    for table in manifest.get("tables", []):
        problem = check_table(run_dir / f"{table}.parquet")
        if problem is not None:
            return problem
    return None


def read_record(run_dir: Path) -> dict[str, Any] | None:
    from twin.sweep.runner import RECORD_FILE

    try:
        rec = json.loads((run_dir / RECORD_FILE).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) else None


def write_plan(out: Path, *, spec: dict[str, Any], parameters: Sequence[str],
               variants: Iterable[dict[str, Any]]) -> None:
    write_json_atomic({"spec": spec, "parameters": list(parameters), "variants": list(variants)},
                      out / PLAN_FILE)


#: Statuses that do not change any more within one sweep (rows are cached once they have one).
FINAL = frozenset({"complete", "failed", "timeout", "killed", "invalid"})


def kpi_rows(out: Path, variants: Iterable[Any],
             cache: dict[str, dict[str, Any]] | None = None,
             settled: set[str] | frozenset[str] = frozenset()) -> list[dict[str, Any]]:
    """One row per variant (run id, parameters, seed, status, error, wall time, KPIs).

    ``cache`` (run id -> row) spares re-validating, at every rewrite, the runs in ``settled``
    (those that will not run again in this sweep).
    """
    rows = []
    for v in variants:
        if cache is not None and v.run_id in cache:
            rows.append(cache[v.run_id])
            continue
        run_dir = out / RUNS / v.run_id
        rec = read_record(run_dir) or {}
        reason = check_run(run_dir, v.digest)
        status = "complete" if reason is None else rec.get("status", "pending")
        if status == "complete" and reason is not None:
            status = "invalid"
        row: dict[str, Any] = {"run_id": v.run_id, **v.params, "seed": v.seed, "status": status,
                               "error": None if status == "complete" else rec.get("error") or reason,
                               "wall_s": rec.get("wall_s")}
        try:
            kpis = json.loads((run_dir / "kpis.json").read_text())
        except (OSError, ValueError):
            kpis = {}
        row |= {k: float(x) for k, x in kpis.items() if k not in row and isinstance(x, int | float)}
        if cache is not None and status in FINAL and v.run_id in settled:
            cache[v.run_id] = row
        rows.append(row)
    return rows


def _column(values: list[Any]) -> pa.Array:
    if any(isinstance(x, float) for x in values) and all(
            x is None or (isinstance(x, int | float) and not isinstance(x, bool)) for x in values):
        values = [None if x is None else float(x) for x in values]
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if x is None else json.dumps(x) for x in values], pa.string())


def write_kpis(out: Path, rows: list[dict[str, Any]], *, parameters: Sequence[str]) -> pa.Table:
    """Write ``DIR/kpis.parquet``: fixed columns and parameters first, then KPIs sorted by name."""
    kpi_names = sorted({k for r in rows for k in r} - set(_FIXED) - set(parameters))
    names = ["run_id", *parameters, "seed", "status", "error", "wall_s", *kpi_names]
    cols = {n: _column([r.get(n) for r in rows]) for n in names}
    for n in ("wall_s", *kpi_names):
        if pa.types.is_null(cols[n].type) or pa.types.is_integer(cols[n].type):
            cols[n] = cols[n].cast(pa.float64())
    if pa.types.is_null(cols["error"].type):
        cols["error"] = cols["error"].cast(pa.string())
    table = pa.table(cols)
    write_table_atomic(table, out / KPIS_FILE)
    return table


def read_kpis(out: Path) -> pa.Table:
    """``DIR/kpis.parquet`` (one row per run); a clear error when missing or corrupt."""
    path = Path(out) / KPIS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no kpis.parquet; is this a `twin sweep` folder?")
    return read_parquet(path)


def _scalar_expr(name: str, value: Any, typ: pa.DataType) -> ds.Expression:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ds.field(name).is_null()
    return ds.field(name) == pa.scalar(value, typ)


def open_dataset(out: Path, table: str, *, status: str | None = "complete") -> ds.Dataset:
    """One results ``table`` (``bus``, ``trades``, ...) of every run with ``status`` as one dataset.

    Columns: the table's own, then ``run_id``, every swept parameter and ``seed``. Raises
    ValueError naming every file whose Parquet footer does not validate.
    """
    out = Path(out)
    if table not in SCHEMAS:
        raise KeyError(f"unknown results table '{table}' (known: {sorted(SCHEMAS)})")
    index = read_kpis(out)
    params = json.loads((out / PLAN_FILE).read_text())["parameters"]
    keys = ["run_id", *params, "seed"]
    key_fields = [index.schema.field(k) for k in keys]
    schema = pa.schema(list(SCHEMAS[table]) + key_fields)
    fmt = ds.ParquetFileFormat(default_fragment_scan_options=ds.ParquetFragmentScanOptions(
        page_checksum_verification=True))
    fs = pafs.LocalFileSystem()
    fragments, bad = [], []
    for row in index.to_pylist():
        if status is not None and row["status"] != status:
            continue
        path = out / RUNS / row["run_id"] / f"{table}.parquet"
        if not path.is_file():
            continue  # a run that stopped before writing this table
        try:
            pq.read_metadata(path)
        except (OSError, pa.ArrowInvalid) as exc:
            bad.append(f"{path}: {exc}")
            continue
        expr = _scalar_expr(keys[0], row[keys[0]], key_fields[0].type)
        for k, f in zip(keys[1:], key_fields[1:], strict=True):
            expr = expr & _scalar_expr(k, row[k], f.type)
        fragments.append(fmt.make_fragment(str(path), filesystem=fs, partition_expression=expr))
    if bad:
        raise ValueError(f"{len(bad)} unreadable Parquet file(s):\n" + "\n".join(bad))
    return ds.FileSystemDataset(fragments, schema, fmt, fs)
