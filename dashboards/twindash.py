"""Read-only data access for the dashboards: folder detection, cached and lazy table reads.

Nothing here writes. Every read is cached by ``st.cache_data`` under the file's path *and*
its modification stamp (mtime, size), so a table rewritten by a running ``twin run`` is
read again, and an unchanged one never is. Tables are read lazily: only the columns a page
asks for (column projection) and only the rows its filter keeps (pyarrow dataset filters,
pushed down to Parquet row groups). Page checksums are verified on every read: a damaged
table is reported on the page by its file name (:func:`corrupt_tables`), never shown as
missing or read with wrong numbers.

Folder kinds (detected from the contents, in this order):

* **compare** — ``compare.parquet`` (``twin compare``; one row per scenario) and
  ``runs/<scenario>/`` run folders;
* **sweep** — ``kpis.parquet`` and/or ``runs/<run_id>/`` (``twin sweep``); each folder
  below ``runs/`` is a run folder;
* **run** — otherwise ``manifest.json`` (``twin run``, ``twin hil serve``) or ``cases.parquet``
  (``twin resilience``).

Tables the dashboards read beyond the ones in :data:`twin.results.SCHEMAS` (written by other
parts of the twin when they exist; each page says so when they are absent):

* resilience (``twin resilience``, a folder of its own without manifest): ``cases`` and
  ``steps`` (shapes in ``views/resilience.py``);
* ledger extras: ``events`` and ``vpp`` (``twin.results.SCHEMAS``), ``certificates``,
  ``dr_events``, ``assets``, ``asset_distributions`` (any columns; a ``tx_hash`` column links
  rows to their transaction). Absent or empty: the Ledger page says so.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import streamlit as st

__all__ = [
    "MICRO",
    "FolderKind",
    "Stamp",
    "corrupt_tables",
    "folder_kind",
    "list_runs",
    "read_json",
    "read_table",
    "report_corrupt",
    "stamp",
    "table_columns",
    "table_rows",
    "table_values",
]

#: Prices are micro-units per MWh and amounts micro-units of currency (twin/market/units.py).
MICRO = 1_000_000

FolderKind = Literal["run", "sweep", "compare", "missing"]
#: (path, mtime_ns, size): the cache key of one file's current version; None when absent.
Stamp = tuple[str, int, int]

_CACHE_ENTRIES = 256


def stamp(path: Path) -> Stamp | None:
    """The cache key of ``path`` as it is now, or None when it does not exist."""
    try:
        st_ = os.stat(path)
    except OSError:
        return None
    return (str(path), st_.st_mtime_ns, st_.st_size)


def folder_kind(*, folder: Path) -> FolderKind:
    """``run``, ``sweep``, ``compare`` or ``missing``, from what the folder holds."""
    folder = Path(folder)
    if (folder / "compare.parquet").is_file():
        return "compare"  # checked before the sweep: a compare folder has runs/ too
    if (folder / "kpis.parquet").is_file() or (folder / "runs").is_dir():
        return "sweep"  # checked first: a sweep may keep a manifest of its own
    if ((folder / "manifest.json").is_file() or (folder / "cases.parquet").is_file()
            or (folder / "feeder_hosting.parquet").is_file()):
        return "run"  # a run, a resilience study (cases.parquet, ...) or a hosting study
    return "missing"


def run_kind(*, folder: Path) -> Literal["game", "resilience", "hosting", "feeder"]:
    """What a run folder holds: a cooperative game, a resilience or hosting study, or a feeder run."""
    folder = Path(folder)
    if (folder / "feeder_hosting.parquet").is_file() and not (folder / "manifest.json").is_file():
        return "hosting"  # twin hosting --out: lanes, feeder_hosting, bus_hosting, kpis.json
    if (folder / "cases.parquet").is_file() and not (folder / "manifest.json").is_file():
        return "resilience"  # twin resilience --out: cases, steps, kpis.json, no manifest
    manifest = read_json(path=folder / "manifest.json")
    if isinstance(manifest, dict):
        if manifest.get("kind") == "game":
            return "game"
        if manifest.get("study") == "resilience":
            return "resilience"
    return "feeder"


def account_names(*, folder: Path) -> dict[int, str]:
    """Market account -> the agents it owns (``household_3``; ``household_3+ev_1`` for an owner
    of several devices), from the ``agents`` and ``settlements`` tables; 0 is the operator,
    1 the DSO. Accounts without a device (asset investors) are absent."""
    names: dict[int, str] = {0: "operator", 1: "DSO"}
    agents = read_table(folder=folder, name="agents", columns=("agent", "device_id"))
    owners = read_table(folder=folder, name="settlements", columns=("device_id", "owner"))
    if agents is None or owners is None or agents.empty or owners.empty:
        return names
    agent_of = agents.drop_duplicates("device_id").set_index("device_id")["agent"]
    pairs = owners.drop_duplicates("device_id")
    by_owner: dict[int, list[str]] = {}
    for d, o in zip(pairs["device_id"], pairs["owner"], strict=True):
        if d in agent_of.index:
            by_owner.setdefault(int(o), []).append(str(agent_of[d]))
    names.update({o: "+".join(sorted(a)) for o, a in by_owner.items() if o not in names})
    return names


def list_runs(*, sweep_dir: Path) -> list[str]:
    """Run ids of a sweep (``kpis.parquet``'s ``run_id``) or a comparison (``compare.parquet``'s
    ``scenario``), in that table's order, plus any other folder under ``runs/``."""
    ids: list[str] = []
    for name, column in (("kpis", "run_id"), ("compare", "scenario")):
        key = stamp(Path(sweep_dir) / f"{name}.parquet")
        try:
            if key is not None and column in table_columns(key=key):
                ids = [str(v) for v in _read(key=key, columns=(column,), filters=())[column]]
                break
        except (pa.ArrowInvalid, OSError):
            continue
    runs = Path(sweep_dir) / "runs"
    if runs.is_dir():
        seen = set(ids)
        ids += sorted(p.name for p in runs.iterdir() if p.is_dir() and p.name not in seen)
    return ids


@st.cache_data(max_entries=_CACHE_ENTRIES, show_spinner=False)
def _read_json_cached(key: Stamp) -> Any:
    return json.loads(Path(key[0]).read_text())


def read_json(*, path: Path) -> Any:
    """The JSON document at ``path`` (cached), or None when it is absent or unreadable."""
    key = stamp(path)
    if key is None:
        return None
    try:
        return _read_json_cached(key)
    except (OSError, ValueError):
        return None


@st.cache_data(max_entries=_CACHE_ENTRIES, show_spinner=False)
def table_columns(*, key: Stamp) -> list[str]:
    """Column names of a Parquet file, from its footer only."""
    return list(pq.read_schema(key[0]).names)


@st.cache_data(max_entries=_CACHE_ENTRIES, show_spinner=False)
def _num_rows(*, key: Stamp) -> int:
    return int(pq.ParquetFile(key[0]).metadata.num_rows)


_OPS = {
    "==": lambda f, v: f == v, "!=": lambda f, v: f != v, "<": lambda f, v: f < v,
    "<=": lambda f, v: f <= v, ">": lambda f, v: f > v, ">=": lambda f, v: f >= v,
    "in": lambda f, v: f.isin(list(v)),
}


def _expression(filters: Sequence[tuple[str, str, Any]]) -> ds.Expression | None:
    expr: ds.Expression | None = None
    for col, op, value in filters:
        term = _OPS[op](ds.field(col), value)
        expr = term if expr is None else expr & term
    return expr


_VERIFIED = ds.ParquetFileFormat(
    default_fragment_scan_options=ds.ParquetFragmentScanOptions(page_checksum_verification=True))


def report_corrupt(path: Path, error: BaseException | str) -> None:
    """Say on the page which table is damaged (once per page run and file)."""
    detail = str(error).splitlines()[0] if str(error) else type(error).__name__
    seen = st.session_state.setdefault("_corrupt_reported", set())
    if str(path) not in seen:
        seen.add(str(path))
        st.error(f"{path}: corrupt table ({detail}). Its numbers are not shown; run the "
                 "scenario again to rewrite it.", icon=":material/broken_image:")


def corrupt_tables(*, folder: Path) -> dict[str, str]:
    """The Parquet files of ``folder`` whose footer or page checksums do not verify: name ->
    what the reader said."""
    bad = {}
    for path in sorted(Path(folder).glob("*.parquet")):
        key = stamp(path)
        error = _verify(key=key) if key is not None else None
        if error is not None:
            bad[path.name] = error
    return bad


@st.cache_data(max_entries=_CACHE_ENTRIES, show_spinner=False)
def _verify(*, key: Stamp) -> str | None:
    try:
        pq.read_table(key[0], page_checksum_verification=True)
    except (pa.ArrowException, OSError) as exc:
        return str(exc)
    return None


@st.cache_data(max_entries=_CACHE_ENTRIES, show_spinner=False)
def _read(*, key: Stamp, columns: tuple[str, ...], filters: tuple[tuple[str, str, Any], ...]
          ) -> pd.DataFrame:
    dataset = ds.dataset(key[0], format=_VERIFIED)
    table: pa.Table = dataset.to_table(columns=list(columns), filter=_expression(filters))
    return table.to_pandas()


def _table_path(folder: Path, name: str) -> Path:
    return Path(folder) / f"{name}.parquet"


def table_rows(*, folder: Path, name: str) -> int | None:
    """Number of rows of table ``name`` (from the footer), None when the table is absent or
    unreadable."""
    key = stamp(_table_path(folder, name))
    if key is None:
        return None
    try:
        return _num_rows(key=key)
    except (pa.ArrowInvalid, OSError):
        return None


def read_table(*, folder: Path, name: str, columns: Sequence[str] | None = None,
               filters: Sequence[tuple[str, str, Any]] = ()) -> pd.DataFrame | None:
    """Table ``name`` of ``folder`` as a DataFrame, or None when absent or unreadable.

    ``columns``: the columns to read (those missing from the file are skipped, so a page
    keeps working on an older folder); None reads all. ``filters``: ``(column, op, value)``
    triples (op one of ``== != < <= > >= in``) combined with AND and pushed down to Parquet.
    """
    key = stamp(_table_path(folder, name))
    if key is None:
        return None
    try:
        available = table_columns(key=key)
        cols = tuple(available) if columns is None else tuple(c for c in columns if c in available)
        usable = tuple((c, op, v if op != "in" else tuple(v)) for c, op, v in filters
                       if c in available)
        return _read(key=key, columns=cols, filters=usable)
    except (pa.ArrowException, OSError) as exc:
        report_corrupt(_table_path(folder, name), exc)
        return None


def table_values(*, folder: Path, name: str, column: str) -> list[Any]:
    """Sorted distinct values of one column (e.g. the times of a table), [] when absent."""
    df = read_table(folder=folder, name=name, columns=(column,))
    if df is None or column not in df.columns:
        return []
    return sorted(df[column].dropna().unique().tolist())
