"""The dashboards on a damaged run: a byte-flipped table is named as corrupt (not shown as
"no results yet" or read with wrong numbers), a `running` manifest whose process is gone is
shown as crashed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from dashboard_fixtures import make_run
from streamlit.testing.v1 import AppTest

from twin.lifecycle import process_identity

APP = str(Path(__file__).resolve().parents[2] / "dashboards" / "app.py")


def test_corrupt_table_and_crashed_run_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path / "run")
    path = run / "trades.parquet"
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 200] = bytes(b ^ 0xFF for b in data[mid:mid + 200])
    path.write_bytes(bytes(data))
    manifest = json.loads((run / "manifest.json").read_text())
    gone = {**process_identity(), "start_ticks": -1}  # this pid, but not the process that wrote it
    manifest.update(status="running", process=gone)
    (run / "manifest.json").write_text(json.dumps(manifest))
    os.utime(run / "manifest.json")

    monkeypatch.setenv("TWIN_RUN_DIR", str(run))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, [e.value for e in at.exception]
    errors = " | ".join(e.value for e in at.error)
    assert f"{path}: corrupt table" in errors
    assert "Run crashed" in errors
