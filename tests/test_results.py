"""Results folder: atomic writes, schema checks, partial runs stay readable."""

from __future__ import annotations

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
