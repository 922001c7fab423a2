"""Results folder: atomic writes, schema checks, partial runs stay readable."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest

from twin.results import SCHEMAS, RunRecorder, read_table, write_json_atomic


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
    st = rec.stream("hil_writes", batch_rows=3)
    rows = [{"time_s": float(i), "wall_time": 0.0, "client": "127.0.0.1:1", "unit_id": 1, "address": 40000,
             "count": 1, "exception_code": 0, "points": "x"} for i in range(10)]
    for r in rows:
        rec.add("hil_writes", [r])
    assert not (tmp_path / "hil_writes.parquet").exists()
    rec.close()
    f = pq.ParquetFile(tmp_path / "hil_writes.parquet")
    assert f.metadata.num_rows == 10 and st.row_groups == f.metadata.num_row_groups == 4
    assert not list(tmp_path.glob(".*.part"))
