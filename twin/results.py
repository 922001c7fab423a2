"""The results folder: Arrow schemas, atomic Parquet writing, manifest, reading back.

A run folder holds ``manifest.json``, ``kpis.json`` and one Parquet file per table
(long format, one row per time and element). Every file is written to a temporary name
in the same folder and renamed into place, so a reader never sees a half-written file and
a killed run leaves the last complete version of each table. :class:`RunRecorder` keeps
the rows of a running simulation; at checkpoints it appends their new rows as row groups
(:mod:`twin.parquet_append`), published atomically too.

Integrity: Parquet pages carry CRC checksums (``write_page_checksum``) and
:func:`read_parquet` verifies them, so a damaged table raises :class:`CorruptTableError`
naming the file instead of returning wrong numbers. Before a flush, :meth:`RunRecorder.flush`
checks the free space against an estimate of what it will write; a full disk
(:class:`DiskFull`) leaves every table already written as it was. Result files get the
ordinary permissions of new files (``0666`` minus the umask).
"""

from __future__ import annotations

import errno
import json
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from twin.errors import TwinError
from twin.parquet_append import AppendedParquet
from twin.results_schemas import SCHEMAS

__all__ = [
    "SCHEMAS",
    "CorruptTableError",
    "DiskFull",
    "RunRecorder",
    "StreamedTable",
    "check_table",
    "read_json",
    "read_parquet",
    "read_table",
    "write_json_atomic",
    "write_table_atomic",
]


class CorruptTableError(ValueError):
    """A Parquet file that cannot be read back intact (bad footer, page checksum mismatch)."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(f"{path}: corrupt table ({detail})")
        self.path = Path(path)


class DiskFull(OSError, TwinError):
    """No room left for a results file; the files already written stay as they were."""

    def __init__(self, path: Path, detail: str) -> None:
        super().__init__(errno.ENOSPC, f"disk full: {detail}", str(path))
        self.path = Path(path)
        self.detail = detail

    def __str__(self) -> str:
        return f"disk full writing {self.path}: {self.detail}"


def _file_mode() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _atomic_path(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, _file_mode())  # mkstemp makes 0600; a results file is an ordinary file
    return Path(tmp)


def _disk_full(exc: OSError, path: Path) -> OSError:
    if isinstance(exc, DiskFull) or (exc.errno != errno.ENOSPC
                                     and "No space left" not in str(exc)):
        return exc
    return DiskFull(path, "no space left on the device")


def write_table_atomic(table: pa.Table, path: Path) -> None:
    """Write ``table`` as Parquet (page checksums) to ``path`` via a temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _atomic_path(path)
    try:
        pq.write_table(table, tmp, compression="zstd", write_page_checksum=True)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _disk_full(exc, path) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_json_atomic(data: Any, path: Path, *, indent: int | None = 2) -> None:
    """Write JSON (sorted keys, indented unless ``indent=None``) via a temporary file and a
    rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _atomic_path(path)
    try:
        text = json.dumps(data, indent=indent, sort_keys=True, default=str,
                          separators=None if indent is not None else (",", ":"))
        tmp.write_text(text + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise _disk_full(exc, path) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def read_parquet(path: Path, *, columns: Iterable[str] | None = None) -> pa.Table:
    """Read a Parquet file, verifying its page checksums; :class:`CorruptTableError` names it."""
    path = Path(path)
    try:
        return pq.read_table(path, columns=list(columns) if columns is not None else None,
                             page_checksum_verification=True)
    except FileNotFoundError:
        raise
    except (pa.ArrowException, OSError) as exc:
        raise CorruptTableError(path, str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from exc


def check_table(path: Path) -> str | None:
    """None when ``path`` reads back intact (every page checksum), else why not."""
    try:
        read_parquet(path)
    except CorruptTableError as exc:
        return str(exc)
    except FileNotFoundError:
        return f"{path}: missing"
    return None


def read_table(run_dir: Path, name: str) -> pa.Table:
    """Read one table of a run folder; raises a clear error when it is missing or corrupt."""
    path = Path(run_dir) / f"{name}.parquet"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: table '{name}' not found in the results folder")
    return read_parquet(path)


class StreamedTable:
    """A table appended as Parquet row groups by a background thread; memory stays flat.

    :meth:`add` only appends the rows to a buffer (the caller's thread never converts or
    writes, and does not wake the writer for every call: a real-time HIL step adds a few
    rows and a thread woken per step competes for the GIL with the Modbus server); a full
    batch (``batch_rows``) is handed to the thread at once, and the thread collects what
    is buffered every ``max_age_s`` on its own, writing each as a row group to
    ``.<name>.parquet.part`` (page checksums, zstd). :meth:`close` writes the rest and
    renames the file to ``<name>.parquet``, so the table appears complete or not at all (a
    run killed with SIGKILL leaves only the ``.part`` file).
    """

    def __init__(self, path: Path, schema: pa.Schema, *, batch_rows: int = 8192,
                 max_age_s: float = 5.0) -> None:
        self.path = Path(path)
        self.schema = schema
        self.batch_rows = batch_rows
        self.max_age_s = max_age_s
        self.part = self.path.with_name(f".{self.path.name}.part")
        self.n_rows = 0
        self.row_groups = 0
        self.error: BaseException | None = None
        self._q: queue.Queue[list[Mapping[str, Any]] | None] = queue.Queue()
        self._buf: list[Mapping[str, Any]] = []
        self._lock = threading.Lock()
        self._writer: pq.ParquetWriter | None = None
        self._thread = threading.Thread(target=self._run, name=f"results-{self.path.stem}", daemon=True)
        self._thread.start()

    def add(self, rows: Iterable[Mapping[str, Any]]) -> None:
        batch = list(rows)
        if batch:
            if self.error is not None:
                raise ValueError(f"results table '{self.path.stem}': {self.error}") from self.error
            self.n_rows += len(batch)
            with self._lock:
                self._buf.extend(batch)
                full = len(self._buf) >= self.batch_rows
                if full:
                    batch, self._buf = self._buf, []
            if full:
                self._q.put(batch)

    def _take(self) -> list[Mapping[str, Any]]:
        with self._lock:
            out, self._buf = self._buf, []
        return out

    def _write(self, rows: list[Mapping[str, Any]]) -> None:
        names = self.schema.names
        table = pa.Table.from_pylist([{k: r.get(k) for k in names} for r in rows], schema=self.schema)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.part, self.schema, compression="zstd",
                                            write_page_checksum=True)
        self._writer.write_table(table)
        self.row_groups += 1

    def _run(self) -> None:
        while True:
            try:
                item = self._q.get(timeout=self.max_age_s)
            except queue.Empty:  # the rows buffered since the last look
                item = self._take()
            try:
                if item is None:  # close
                    rest = self._take()
                    if rest or self._writer is None:
                        self._write(rest)
                    assert self._writer is not None
                    self._writer.close()
                    os.replace(self.part, self.path)
                    return
                if item:
                    self._write(item)
            except BaseException as exc:  # reported by add() / close()
                self.error = exc
                if item is None:
                    return

    def close(self, timeout_s: float = 60.0) -> None:
        """Write what is queued and put the table in place (idempotent)."""
        if self._thread.is_alive():
            self._q.put(None)
            self._thread.join(timeout_s)
        if self.error is not None:
            raise ValueError(f"results table '{self.path.stem}': rows do not match its schema "
                             f"({self.error})") from self.error


#: rows a table keeps as Python dicts before they are packed into an Arrow chunk
CHUNK_ROWS = 8192
#: rows a table gathers in memory before a flush appends them to its file as a row group;
#: until then each flush publishes them as the file's tail, encoded again (at most this many
#: rows: the cost of a flush does not grow with the rows written before it)
APPEND_MIN_ROWS = 8192


def _column(name: str, typ: pa.DataType, value: Any, n: int) -> pa.Array:
    if value is None:
        return pa.nulls(n, type=typ)
    if isinstance(value, pa.Array | pa.ChunkedArray):
        return value.cast(typ) if value.type != typ else value  # type: ignore[return-value]
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return pa.array(value.tolist(), type=typ)
        return pa.array(value, type=typ)
    if isinstance(value, list | tuple):
        return pa.array(value, type=typ)
    return pa.array([value] * n, type=typ)  # a scalar: the same value in every row


class RunRecorder:
    """Collects rows per table and writes them at checkpoints, atomically and incrementally.

    Rows come as dicts (:meth:`add`) or as columns (:meth:`add_columns`: arrays, no Python
    object per row); they are validated against :data:`SCHEMAS` when they are packed, so a
    wrong column fails loudly, naming the table. Every :data:`CHUNK_ROWS` dict rows of a
    table (and what a flush finds) are packed into an Arrow chunk. A table is *appended*
    (:class:`twin.parquet_append.AppendedParquet`): once it holds :data:`APPEND_MIN_ROWS`
    rows in memory a flush encodes them as a row group and they leave memory; fewer are
    published as the file's tail, encoded again at the next flush. Each flush publishes the
    grown file atomically. Writing costs O(rows) over the run, a flush's cost does not grow
    with the run, and memory stays under :data:`APPEND_MIN_ROWS` rows a table.
    A table put in :meth:`stream` mode is appended off the caller's thread as it goes
    (:class:`StreamedTable`) and appears at :meth:`close`. ``flush(wait=False)`` snapshots
    the tables on the caller's thread and writes them from a background thread.
    """

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = Path(out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._rows: dict[str, list[Mapping[str, Any]]] = {name: [] for name in SCHEMAS}
        self._chunks: dict[str, list[pa.Table]] = {name: [] for name in SCHEMAS}
        self._appended: dict[str, AppendedParquet] = {}
        self._dirty: set[str] = set(SCHEMAS)
        self._streams: dict[str, StreamedTable] = {}
        self._writes: queue.Queue[tuple[str, str, pa.Table | None] | None] | None = None
        self._writer: threading.Thread | None = None
        self._write_error: BaseException | None = None

    def stream(self, table: str, **options: Any) -> StreamedTable:
        """Append ``table`` incrementally from now on (rows added before are kept)."""
        if table not in SCHEMAS:
            raise KeyError(f"unknown results table '{table}' (known: {sorted(SCHEMAS)})")
        if table not in self._streams:
            st = StreamedTable(self.out_dir / f"{table}.parquet", SCHEMAS[table], **options)
            st.add(self.rows(table))
            self._rows[table] = []
            self._chunks[table] = []
            self._dirty.discard(table)
            self._streams[table] = st
            appended = self._appended.pop(table, None)
            if appended is not None:  # flushed before: the streamed file replaces it at close
                appended.abandon()
        return self._streams[table]

    def add(self, table: str, rows: Iterable[Mapping[str, Any]]) -> None:
        if table in self._streams:
            self._streams[table].add(rows)
            return
        if table not in self._rows:
            raise KeyError(f"unknown results table '{table}' (known: {sorted(SCHEMAS)})")
        buf = self._rows[table]
        before = len(buf)
        buf.extend(rows)
        if len(buf) != before:
            self._dirty.add(table)
        if len(buf) >= CHUNK_ROWS:
            self._pack(table)

    def add_columns(self, table: str, columns: Mapping[str, Any], *, n: int | None = None) -> None:
        """Add ``n`` rows given as columns: numpy/Arrow arrays or lists (one value per row),
        scalars (the same value in every row) or None (nulls); a column of the schema that
        is missing is null, keys that are not columns of the table are ignored."""
        if table not in SCHEMAS:
            raise KeyError(f"unknown results table '{table}' (known: {sorted(SCHEMAS)})")
        if n is None:
            n = next((len(v) for v in columns.values()
                      if isinstance(v, np.ndarray | list | tuple | pa.Array | pa.ChunkedArray)), 1)
        if not n:
            return
        schema = SCHEMAS[table]
        try:
            arrays = [_column(f.name, f.type, columns.get(f.name), n) for f in schema]
            lengths = {len(a) for a in arrays}
            if lengths != {n}:
                bad = [f.name for f, a in zip(schema, arrays, strict=True) if len(a) != n]
                raise ValueError(f"columns {bad} do not have {n} rows")
            chunk = pa.Table.from_arrays(arrays, schema=schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            raise ValueError(f"results table '{table}': columns do not match its schema ({exc})") from exc
        if table in self._streams:
            self._streams[table].add(chunk.to_pylist())
            return
        self._pack(table)  # dict rows added before keep their place
        self._chunks[table].append(chunk)
        self._dirty.add(table)

    def _pack(self, table: str) -> None:
        if self._rows[table]:
            self._chunks[table].append(self._arrow(table, self._rows[table]))
            self._rows[table] = []

    def n_rows(self, table: str) -> int:
        if table in self._streams:
            return self._streams[table].n_rows
        if table in self._appended and self._writes is not None:
            self._writes.join()  # its row count moves when a background append is done
        done = self._appended[table].num_rows if table in self._appended else 0
        return done + sum(c.num_rows for c in self._chunks[table]) + len(self._rows[table])

    def rows(self, table: str) -> list[Mapping[str, Any]]:
        """Every row of ``table`` (packed chunks and rows already appended to its file come
        back as dicts of the schema's columns)."""
        out: list[Mapping[str, Any]] = []
        if table in self._appended:
            if self._writes is not None:
                self._writes.join()
            done = self._appended[table].num_rows  # the file's tail is still in memory
            out = read_parquet(self.out_dir / f"{table}.parquet").slice(0, done).to_pylist()
        if not self._chunks[table] and not out:
            return self._rows[table]
        out += [r for c in self._chunks[table] for r in c.to_pylist()]
        return out + self._rows[table]

    def _arrow(self, table: str, rows: list[Mapping[str, Any]]) -> pa.Table:
        schema = SCHEMAS[table]
        try:
            # column by column (no dict per row rebuilt): about twice as fast as from_pylist
            return pa.Table.from_pydict({k: [r.get(k) for r in rows] for k in schema.names},
                                        schema=schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise ValueError(f"results table '{table}': rows do not match its schema ({exc})") from exc

    def estimate_flush_bytes(self) -> int:
        """What :meth:`flush` will write: each changed table's rows in memory (all of a
        rewritten table, the new ones of an appended one) at the size per row of its file
        on disk (or 8 bytes per value when it has none yet), plus a margin."""
        total = 1 << 20
        for name in self._dirty:
            rows = len(self._rows[name]) + sum(c.num_rows for c in self._chunks[name])
            path = self.out_dir / f"{name}.parquet"
            per_row = 8.0 * len(SCHEMAS[name])
            try:
                n_old = pq.read_metadata(path).num_rows
                if n_old:
                    per_row = path.stat().st_size / n_old
            except (OSError, pa.ArrowException):
                pass
            total += int(rows * per_row) + 4096
        return total

    def to_table(self, table: str) -> pa.Table:
        """The rows of ``table`` held in memory (all of them unless the table is appended)."""
        tail = self._arrow(table, self._rows[table])
        if not self._chunks[table]:
            return tail
        return pa.concat_tables([*self._chunks[table], tail])

    def _job(self, name: str, *, final: bool = False) -> tuple[str, str, pa.Table | None]:
        """Snapshot one changed table: ("write", an empty table), ("tail", the rows in
        memory, kept there) or ("append", the rows in memory, which now leave it)."""
        self._pack(name)  # dict rows are converted once, not at every flush
        chunks = self._chunks[name]
        if len(chunks) > 1:  # one chunk: what the next flushes concatenate stays small
            chunks[:] = [pa.concat_tables(chunks).combine_chunks()]
        table = chunks[0] if chunks else SCHEMAS[name].empty_table()
        if name not in self._appended and not table.num_rows:
            return ("write", name, table)
        if name not in self._appended:
            self._appended[name] = AppendedParquet(self.out_dir / f"{name}.parquet", SCHEMAS[name])
        if table.num_rows < APPEND_MIN_ROWS and not final:
            return ("tail", name, table)
        self._rows[name], self._chunks[name] = [], []  # the rows now live in the file
        return ("append", name, table)

    def _do(self, job: tuple[str, str, pa.Table | None]) -> None:
        kind, name, table = job
        path = self.out_dir / f"{name}.parquet"
        if kind == "write":
            assert table is not None
            write_table_atomic(table, path)
            return
        ap = self._appended[name]
        if kind == "tail":
            try:
                ap.publish(tail=table)
            except OSError as exc:
                raise _disk_full(exc, path) from exc
            return
        if table is not None and table.num_rows:
            try:
                ap.append(table)
            except BaseException as exc:
                self._chunks[name].insert(0, table)  # appended at the next flush
                if isinstance(exc, OSError):
                    raise _disk_full(exc, path) from exc
                raise
        try:
            ap.publish()
        except OSError as exc:
            raise _disk_full(exc, path) from exc

    def _write_loop(self) -> None:
        assert self._writes is not None
        while (item := self._writes.get()) is not None:
            try:
                self._do(item)
            except BaseException as exc:  # reported by the next flush
                self._write_error = exc
                self._dirty.add(item[1])
            finally:
                self._writes.task_done()
        self._writes.task_done()

    def flush(self, *, wait: bool = True, final: bool = False) -> None:
        """Write every table that changed since the last flush (appended, or its tail).

        ``wait=False``: the tables are snapshot here (immutable Arrow tables) and written by
        a background thread, in order; the next ``flush()`` (or :meth:`close`) waits for it.
        ``final``: every row in memory is appended (no tail is left to publish again).
        """
        if self._write_error is not None:
            err, self._write_error = self._write_error, None
            if isinstance(err, DiskFull):
                raise err
            raise OSError(f"writing the results tables failed: {err}") from err
        if not self._dirty:
            if wait and self._writes is not None:
                self._writes.join()
            return
        need = self.estimate_flush_bytes()
        try:
            free = shutil.disk_usage(self.out_dir).free
        except OSError:
            free = need
        if free < need:
            raise DiskFull(self.out_dir, f"the tables need about {need / 1e6:.1f} MB, "
                           f"{free / 1e6:.1f} MB free")
        names = sorted(self._dirty)
        if wait:
            if self._writes is not None:
                self._writes.join()
            for name in names:
                self._do(self._job(name, final=final))  # a table that fails stays dirty
                self._dirty.discard(name)
            return
        jobs = [self._job(name, final=final) for name in names]
        self._dirty.clear()  # a background write that fails marks its table dirty again
        if self._writer is None:
            self._writes = queue.Queue()
            self._writer = threading.Thread(target=self._write_loop, name="results-flush", daemon=True)
            self._writer.start()
        assert self._writes is not None
        for job in jobs:
            self._writes.put(job)

    def close(self) -> None:
        """The final flush: every table written, streamed tables put in place, the hidden
        files of appended tables removed."""
        errors = []
        for st in self._streams.values():
            try:
                st.close()
            except ValueError as exc:
                errors.append(exc)
        self._dirty.update(n for n in self._appended if self._chunks[n] or self._rows[n])
        self.flush(final=True)
        if self._writes is not None:
            self._writes.put(None)
            self._writes.join()
            self._writes, self._writer = None, None
        for ap in self._appended.values():
            ap.close()
        if errors:
            raise errors[0]
