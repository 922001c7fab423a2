"""Results folder: atomic writes, schema checks, partial runs stay readable."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from twin.results import SCHEMAS, RunRecorder, read_table, write_json_atomic, write_table_atomic


def test_flush_writes_every_table_with_its_schema(tmp_path):
    rec = RunRecorder(tmp_path)
    rec.add("bus", [{"time_s": 0, "bus": 1, "vm_pu": 1.0, "va_degree": 0.0, "p_mw": 0.1, "q_mvar": 0.0}])
    rec.flush()
    for name, schema in SCHEMAS.items():
        assert pq.read_schema(tmp_path / f"{name}.parquet").equals(schema), name
    assert read_table(tmp_path, "bus").num_rows == 1
    assert not list(tmp_path.glob(".*tmp"))


def test_bad_rows_name_the_table_and_keep_previous_file(tmp_path):
    rec = RunRecorder(tmp_path)
    rec.add("market", [{"time_s": 0, "interval": 0, "price_per_mwh": 1, "volume_wh": 1,
                        "n_orders": 1, "n_trades": 1, "curtailed_wh": 0}])
    rec.flush()
    rec.add("market", [{"time_s": "later"}])
    with pytest.raises(ValueError, match="results table 'market'"):
        rec.flush()
    assert read_table(tmp_path, "market").num_rows == 1  # the last good version survives
    with pytest.raises(KeyError, match="unknown results table"):
        rec.add("nope", [])


def test_read_table_errors_are_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="table 'bus' not found"):
        read_table(tmp_path, "bus")
    (tmp_path / "line.parquet").write_bytes(b"PAR1 garbage")
    with pytest.raises(ValueError, match=r"line\.parquet: corrupt table"):
        read_table(tmp_path, "line")
    write_json_atomic({"b": 1, "a": 2}, tmp_path / "x.json")
    assert (tmp_path / "x.json").read_text().startswith('{\n  "a": 2')


def test_recorder_packs_chunks_and_flushes_off_thread(tmp_path: Path) -> None:
    from twin.results import CHUNK_ROWS

    rec = RunRecorder(tmp_path)
    n = 2 * CHUNK_ROWS + 5
    rec.add("bus", ({"time_s": i, "bus": i % 7, "vm_pu": 1.0 + i * 1e-6, "va_degree": 0.0,
                     "p_mw": 0.1, "q_mvar": 0.0} for i in range(n)))
    assert rec.n_rows("bus") == n and not rec._rows["bus"]  # packed into an Arrow chunk
    assert rec.rows("bus")[CHUNK_ROWS + 1]["time_s"] == CHUNK_ROWS + 1
    rec.flush(wait=False)
    rec.add("bus", [{"time_s": n, "bus": 0, "vm_pu": 1.0, "va_degree": 0.0, "p_mw": 0.0, "q_mvar": 0.0}])
    rec.close()
    t = pq.read_table(tmp_path / "bus.parquet")
    assert t.num_rows == n + 1 and t.column("time_s").to_pylist() == list(range(n + 1))


def test_streamed_table_appears_at_close(tmp_path: Path) -> None:

    rec = RunRecorder(tmp_path)
    rows = [{"time_s": float(i), "wall_time": 0.0, "client": "127.0.0.1:1", "unit_id": 1, "address": 40000,
             "count": 1, "exception_code": 0, "points": "x"} for i in range(11)]
    rec.add("hil_writes", rows[:1])
    rec.flush()  # published with its tail before it is streamed: the streamed file replaces it
    st = rec.stream("hil_writes", batch_rows=3)
    for r in rows[1:]:
        rec.add("hil_writes", [r])
    assert pq.ParquetFile(tmp_path / "hil_writes.parquet").metadata.num_rows == 1
    rec.close()
    f = pq.ParquetFile(tmp_path / "hil_writes.parquet")
    assert f.metadata.num_rows == 11 and st.row_groups == f.metadata.num_row_groups == 4
    assert f.read().column("time_s").to_pylist() == [float(i) for i in range(11)]
    assert not list(tmp_path.glob(".*.part"))


def _bus_columns(t: int, n: int) -> dict:
    import numpy as np

    return {"time_s": t, "bus": np.arange(n), "vm_pu": 1.0 + np.arange(n) * 1e-5, "va_degree": 0.0,
            "p_mw": np.full(n, 0.1), "q_mvar": [0.0] * n}


def test_tables_are_appended_in_row_groups_and_published_with_their_tail(tmp_path: Path,
                                                                         monkeypatch) -> None:
    import twin.results

    monkeypatch.setattr(twin.results, "APPEND_MIN_ROWS", 100)
    rec = RunRecorder(tmp_path)
    rec.add_columns("bus", _bus_columns(0, 30))
    rec.flush()  # under 100 rows: published as the file's tail, kept in memory
    assert pq.ParquetFile(tmp_path / "bus.parquet").metadata.num_rows == 30 and rec._chunks["bus"]
    for k in range(1, 6):
        rec.add_columns("bus", _bus_columns(900 * k, 50))
        rec.add("bus", [{"time_s": 900 * k, "bus": 99, "vm_pu": 1.0, "va_degree": 0.0, "p_mw": 0.0,
                         "q_mvar": 0.0}])
        rec.flush(wait=k % 2 == 0)
        rec.flush()  # waits for the background write
        f = pq.ParquetFile(tmp_path / "bus.parquet", page_checksum_verification=True)
        assert f.metadata.num_rows == 30 + 51 * k == rec.n_rows("bus") == len(rec.rows("bus"))
        # 100 rows or more in memory are appended as a row group and leave memory (k even);
        # fewer are the tail, one more row group in the published file only
        assert f.metadata.num_row_groups == [1, 1, 2, 2, 3][k - 1]
        assert (not rec._chunks["bus"]) == (k % 2 == 0)
        t = f.read()
        assert t.column("time_s").to_pylist()[-1] == 900 * k and t.column("bus").to_pylist()[-1] == 99
        assert rec.rows("bus")[-1]["time_s"] == 900 * k
    assert sorted(p.name for p in tmp_path.glob(".bus*"))  # hidden A/B files while running
    rec.close()  # the last tail is appended
    assert not list(tmp_path.glob(".*")) and not rec._chunks["bus"]
    assert pq.ParquetFile(tmp_path / "bus.parquet").metadata.num_row_groups == 3
    t = read_table(tmp_path, "bus")
    assert t.num_rows == 30 + 5 * 51 and t.column("vm_pu").to_pylist()[:2] == [1.0, 1.00001]
    assert t.column("time_s").to_pylist() == [0] * 30 + [900 * k for k in range(1, 6) for _ in range(51)]
    with pytest.raises(ValueError, match=r"results table 'bus': columns do not match"):
        rec.add_columns("bus", {"time_s": 0, "bus": [1, 2], "vm_pu": ["x", "y"]})


@pytest.mark.parametrize("tail", [False, True])
def test_an_appended_table_that_cannot_be_published_keeps_the_last_version(tmp_path: Path,
                                                                           monkeypatch, tail) -> None:
    import errno

    import twin.parquet_append
    import twin.results

    monkeypatch.setattr(twin.results, "APPEND_MIN_ROWS", 10)
    rec = RunRecorder(tmp_path)
    rec.add_columns("bus", _bus_columns(0, 20))
    rec.flush()
    before = read_table(tmp_path, "bus")

    def no_space(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(twin.parquet_append.AppendedParquet, "footer", no_space)
    if tail:  # the new rows would be published as the file's tail
        monkeypatch.setattr(twin.results, "APPEND_MIN_ROWS", 100)
    rec.add_columns("bus", _bus_columns(900, 20))
    with pytest.raises(twin.results.DiskFull, match=r"bus\.parquet"):
        rec.flush()
    assert read_table(tmp_path, "bus").equals(before)  # the published file is untouched
    monkeypatch.undo()
    rec.close()  # the rows appended before the failure are published now
    assert read_table(tmp_path, "bus").column("time_s").to_pylist() == [0] * 20 + [900] * 20


def test_kpis_read_back_only_their_columns_and_sum_owners_exactly(tmp_path: Path) -> None:
    """``read_tables(columns=)`` reads a big table's KPI columns only (those its file has;
    ``orders``: its row count); the KPIs' per-owner sums are the exact integer sums."""
    import numpy as np

    from twin.kpis import read_tables
    from twin.kpis.metrics import _sum_by_owner
    from twin.kpis.run import KPI_READS

    write_table_atomic(pa.table({"time_s": [0, 900], "vm_pu": [1.0, 0.99], "p_mw": [0.1, 0.2]}),
                       tmp_path / "bus.parquet")
    write_table_atomic(pa.table({"order_id": [1, 2, 3]}), tmp_path / "orders.parquet")
    write_table_atomic(pa.table({"time_s": [0], "ext_grid_p_mw": [0.5]}), tmp_path / "grid.parquet")
    t = read_tables(tmp_path, columns=KPI_READS)
    assert t["bus"].column_names == ["vm_pu", "p_mw"]  # no phase columns in this file
    assert t["orders"].num_rows == 3 and not t["orders"].column_names
    assert t["grid"].column_names == ["time_s", "ext_grid_p_mw"]  # not in KPI_READS: whole
    rng = np.random.default_rng(1)
    owner = rng.integers(0, 50, 10_000)
    gain = rng.integers(-(1 << 40), 1 << 40, 10_000)
    want: dict[int, int] = {}
    for o, g in zip(owner.tolist(), gain.tolist(), strict=True):
        if o > 1:  # operator and DSO are not participants
            want[o] = want.get(o, 0) + g
    assert _sum_by_owner(owner, gain) == want
    big = np.array([1 << 62, 1 << 62, -(1 << 62)], dtype=np.int64)  # an int64 sum would overflow
    assert _sum_by_owner(np.array([5, 5, 5]), big) == {5: 1 << 62}
