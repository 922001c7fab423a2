"""Sweeps that run: local pool vs Dask, the results store, resume after a kill, failure isolation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from tests.sweep._specs import write_spec
from twin.cli import main
from twin.sweep import load_sweep, open_dataset, read_kpis, run_sweep

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow
PV = "agents.households.pv.share"


def _kpis(out: Path) -> dict[str, dict[str, float]]:
    rows = read_kpis(out).to_pylist()
    return {r["run_id"]: {k: v for k, v in r.items() if k not in {"wall_s", "wall_time_s"}}
            for r in rows}


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tmp = tmp_path_factory.mktemp("local")
    spec = write_spec(tmp)
    result = run_sweep(load_sweep(spec), out_dir=tmp / "out", workers=2, progress=False)
    assert result.failed == [], result.kpis.to_pylist()
    return spec, tmp / "out"


def test_results_store(local: tuple[Path, Path]) -> None:
    _, out = local
    kpis = read_kpis(out)
    assert kpis.num_rows == 4
    assert kpis.column_names[:6] == ["run_id", PV, "seed", "status", "error", "wall_s"]
    assert set(kpis.column("status").to_pylist()) == {"complete"}
    assert "energy_traded_kwh" in kpis.column_names
    bus = open_dataset(out, "bus")
    assert {"run_id", PV, "seed", "vm_pu"} <= set(bus.schema.names)
    table = bus.to_table()
    assert set(table.column("run_id").to_pylist()) == set(kpis.column("run_id").to_pylist())
    high = bus.to_table(filter=ds.field(PV) > 0.5)
    assert set(high.column(PV).to_pylist()) == {0.7}
    assert 0 < high.num_rows < table.num_rows


def test_dask_local_cluster_gives_identical_kpis(local: tuple[Path, Path], tmp_path: Path) -> None:
    spec, out = local
    result = run_sweep(load_sweep(spec), out_dir=tmp_path / "dask", dask_local=2, progress=False)
    assert result.failed == []
    assert _kpis(tmp_path / "dask") == _kpis(out)


def test_resume_skips_complete_and_redoes_corrupt(local: tuple[Path, Path]) -> None:
    spec, out = local
    again = run_sweep(load_sweep(spec), out_dir=out, workers=2, progress=False)
    assert again.ran == [] and len(again.skipped) == 4
    victim = sorted(p for p in (out / "runs").iterdir())[0]
    data = (victim / "bus.parquet").read_bytes()
    (victim / "bus.parquet").write_bytes(data[: len(data) // 2])  # footer gone
    with pytest.raises(ValueError, match="unreadable Parquet"):
        open_dataset(out, "bus")
    third = run_sweep(load_sweep(spec), out_dir=out, workers=2, progress=False)
    assert third.ran == [victim.name]
    pq.read_metadata(victim / "bus.parquet")


def _started(out: Path) -> dict[str, str]:
    """run id -> started_at of every complete run."""
    done = {}
    for m in (out / "runs").glob("*/manifest.json"):
        manifest = json.loads(m.read_text())
        if manifest.get("status") == "complete":
            done[m.parent.name] = manifest["started_at"]
    return done


def test_killed_sweep_resumes_exactly_the_missing_runs(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, parameters={PV: [0.2, 0.4, 0.6]})
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "twin.cli", "sweep", str(spec), "--out", str(out),
                             "--workers", "1", "--no-progress"], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 240
    while not _started(out) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    time.sleep(3)  # the orphaned run gets SIGTERM with its forkserver and stops
    before = _started(out)
    assert 1 <= len(before) < 6
    result = run_sweep(load_sweep(spec), out_dir=out, workers=2, progress=False)
    assert sorted(result.skipped) == sorted(before)
    assert len(result.ran) == 6 - len(before) and not set(result.ran) & set(before)
    after = _started(out)
    assert len(after) == 6 and all(after[r] == before[r] for r in before)  # none ran twice


def test_crashing_variant_is_isolated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a node nobody listens on passes validation and fails when the chain ledger opens
    spec = write_spec(tmp_path, parameters={"market.ledger": ["reference", "chain"]}, seeds=1,
                      set={"chain.rpc_url": "http://127.0.0.1:9"})
    out = tmp_path / "out"
    assert main(["sweep", str(spec), "--out", str(out), "--no-progress"]) == 1
    rows = {r["market.ledger"]: r for r in read_kpis(out).to_pylist()}
    assert rows["reference"]["status"] == "complete"
    assert rows["chain"]["status"] == "failed" and "127.0.0.1:9" in rows["chain"]["error"]
    assert "failed" in capsys.readouterr().out
    assert main(["sweep", str(spec), "--out", str(out), "--no-progress", "--allow-failures"]) == 0


def test_hanging_run_times_out(tmp_path: Path) -> None:
    spec = write_spec(tmp_path, parameters={PV: [0.5]}, seeds=1, timeout_s=0.5)
    result = run_sweep(load_sweep(spec), out_dir=tmp_path / "out", workers=1, progress=False)
    rec = next(iter(result.records.values()))
    assert rec["status"] == "timeout" and "timeout of 0.5 s" in rec["error"]
    assert rec["wall_s"] < 30
