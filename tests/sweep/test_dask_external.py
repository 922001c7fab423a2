"""Sweeps on real external Dask processes (``dask scheduler`` / ``dask worker`` on 127.0.0.1).

* plain and ``--preload twin.sweep.worker`` workers both fork runs from a warm forkserver;
* a worker killed mid-sweep: the runs it completed are not run again (folders byte- and
  mtime-identical), the sweep completes on the other worker;
* bad input before anything runs: an unreachable scheduler, workers that do not see the
  output folder (`twin sweep` in its own mount namespace, --out on a tmpfs only it sees).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sweep._specs import write_spec
from twin.cli import main
from twin.sweep import backends, load_sweep, run_sweep
from twin.sweep.procs import ExternalCluster, external_cluster, free_port
from twin.sweep.store import RUNS, read_record

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ExternalCluster]:
    logs = tmp_path_factory.mktemp("dask-logs")
    with external_cluster(0, log_dir=logs) as c:
        c.add_worker(name="w0")  # plain `dask worker ADDRESS`: warmed by the sweep's plugin
        c.add_worker(name="w1", extra=["--preload", "twin.sweep.worker"])
        c.wait(2)
        yield c


def _fingerprint(run_dir: Path) -> dict[str, tuple[int, str]]:
    return {str(p.relative_to(run_dir)): (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(run_dir.rglob("*")) if p.is_file()}


def test_bad_scheduler_is_one_line_before_anything_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(backends, "CONNECT_TIMEOUT_S", 2.0)
    address = f"tcp://127.0.0.1:{free_port()}"  # nothing listens there
    rc = main(["sweep", str(write_spec(tmp_path)), "--out", str(tmp_path / "out"),
               "--scheduler", address, "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and err[0].startswith("twin: error: cannot reach the Dask scheduler at " + address)
    assert not (tmp_path / "out" / "sweep.json").exists()
    assert list((tmp_path / "out" / RUNS).iterdir()) == []


@pytest.mark.skipif(shutil.which("unshare") is None or
                    subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0,
                    reason="needs mount namespaces (unshare -m) to give the client its own folder")
def test_workers_that_cannot_see_the_folder_are_named(cluster: ExternalCluster, tmp_path: Path) -> None:
    # `twin sweep` on "another host": its --out is on a file system (a tmpfs in its own mount
    # namespace) that no worker sees at that path
    shared = tmp_path / "shared"
    shared.mkdir()
    out = shared / "out"
    twin = Path(sys.executable).with_name("twin")
    proc = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c",
         f'mount -t tmpfs none "{shared}" && exec "$@"', "sh",
         str(twin), "sweep", str(write_spec(tmp_path)), "--out", str(out), "--scheduler",
         cluster.address, "--no-progress"], capture_output=True, text=True, timeout=120)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(err) == 1, err
    assert err[0].startswith("twin: error: Dask worker tcp://127.0.0.1:")
    assert f"cannot see the sweep folder {out}: {out}/.twin-probe-" in err[0]
    assert "on host " in err[0] and "does not exist there" in err[0]
    assert "(and 1 more worker(s))" in err[0]
    assert not out.exists()  # the workers' view: nothing was written for this sweep


def test_killed_worker_does_not_rerun_completed_runs(cluster: ExternalCluster, tmp_path: Path) -> None:
    spec = write_spec(tmp_path)
    out = tmp_path / "out"
    before: dict[str, dict[str, tuple[int, str]]] = {}
    killed: list[str] = []

    def on_line(line: str) -> None:
        if killed or " complete " not in line:
            return
        # the first completed run: fingerprint every complete folder, kill the worker that ran it
        for run_dir in (out / RUNS).iterdir():
            rec = read_record(run_dir)
            if rec is not None and rec["status"] == "complete":
                before[run_dir.name] = _fingerprint(run_dir)
        run_id = line.split()[2]
        worker = read_record(out / RUNS / run_id)["worker"]  # type: ignore[index]
        killed.append(worker)
        cluster.kill_worker(cluster.workers[int(worker[1:])])

    result = run_sweep(load_sweep(spec), out_dir=out, scheduler=cluster.address,
                       progress=False, echo=on_line)
    assert killed, "no run completed"
    assert result.failed == [], result.kpis.to_pylist()
    assert len(result.records) == 4
    assert {r["isolation"] for r in result.records.values()} == {"forkserver"}
    survivor = {"w0": "w1", "w1": "w0"}[killed[0]]
    assert sum(r["worker"] == survivor for r in result.records.values()) >= 2
    assert before, "no complete folder at the kill"
    for run_id, files in before.items():
        assert _fingerprint(out / RUNS / run_id) == files, f"{run_id} was rewritten"
