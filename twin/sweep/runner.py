"""Run one variant in its own process, with a timeout; return its record. Used by every backend.

:func:`execute_task` runs in the sweep process (local pool: one thread per worker) or in a
Dask worker. The run itself is a child process forked from a forkserver that preloaded the
simulation stack (:mod:`twin.sweep.child`), so starting a run costs milliseconds, not the
seconds of importing pandapower, mosaik and web3. Where multiprocessing may not start
children (a daemonic Dask worker), the child is ``python -m twin.sweep.child`` instead.

A run that hangs past ``timeout_s`` gets SIGTERM (the run flushes its tables, stops its Anvil),
then SIGKILL for its whole process group after a grace period.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twin.results import write_json_atomic

__all__ = ["RECORD_FILE", "RunRecord", "RunTask", "execute_task", "warm_up"]

RECORD_FILE = "sweep_run.json"
#: Seconds between SIGTERM and SIGKILL of a run's process group.
GRACE_S = 10.0
_POLL_S = 0.2
_ctx_lock = threading.Lock()
_warm = False


@dataclass(frozen=True)
class RunTask:
    run_id: str
    run_dir: str
    scenario: dict[str, Any]
    timeout_s: float
    scenario_path: str | None = None
    #: what the child runs: ``run`` (twin run) or ``resilience`` (twin resilience)
    command: str = "run"
    #: the variant's scenario digest: a run folder already complete for it is final (never rerun)
    digest: str | None = None


@dataclass
class RunRecord:
    """What the sweep knows of one run (``runs/<run_id>/sweep_run.json``)."""

    run_id: str
    status: str  # complete | failed | timeout | killed | interrupted
    error: str | None
    wall_s: float
    started_at: str
    finished_at: str
    exit_code: int | None
    host: str
    isolation: str  # forkserver | subprocess
    worker: str | None = None  # the Dask worker's name (None in the local pool)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _forkserver() -> Any:
    """The forkserver context, its server started (and the simulation stack imported) once."""
    from multiprocessing import forkserver

    global _warm
    with _ctx_lock:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(["twin.sweep.child"])
        forkserver.ensure_running()
        if not _warm:  # the server serves its first fork only once the preload is imported
            p = ctx.Process(target=_noop, name="twin-sweep-warm-up")
            p.start()
            p.join()
            _warm = True
        return ctx


def _noop() -> None:
    """Target of the warm-up fork."""


def warm_up() -> None:
    """Start this process's forkserver now, so no run's wall time or timeout pays the imports."""
    if not multiprocessing.current_process().daemon:
        _forkserver()


class _Child:
    """A started run process: forkserver Process or subprocess.Popen, one interface."""

    def __init__(self, run_dir: str) -> None:
        if multiprocessing.current_process().daemon:  # e.g. a Dask worker with daemon=True
            self.isolation = "subprocess"
            self._popen: subprocess.Popen[bytes] | None = subprocess.Popen(
                [sys.executable, "-m", "twin.sweep.child", run_dir], start_new_session=True,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.pid = self._popen.pid
            self._proc: Any = None
        else:
            from twin.sweep import child

            self.isolation = "forkserver"
            self._popen = None
            self._proc = _forkserver().Process(target=child._forked_main, args=(run_dir,),
                                               name=f"twin-run-{Path(run_dir).name}")
            self._proc.start()
            self.pid = self._proc.pid

    def wait(self, timeout: float) -> int | None:
        """Exit code, or None while still running after ``timeout`` seconds."""
        if self._popen is not None:
            try:
                return self._popen.wait(timeout)
            except subprocess.TimeoutExpired:
                return None
        self._proc.join(timeout)
        return self._proc.exitcode  # type: ignore[no-any-return]

    def signal_group(self, sig: int) -> None:
        # the child called setsid() first thing: its pid is its process group (it, Anvil, solc)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.pid, sig)

    def stop(self) -> int | None:
        self.signal_group(signal.SIGTERM)
        code = self.wait(GRACE_S)
        self.signal_group(signal.SIGKILL)  # Anvil and friends, even when the run itself ended
        return code if code is not None else self.wait(GRACE_S)


def _error_text(run_dir: Path) -> str | None:
    try:
        head = (run_dir / "error.txt").read_text().split("\n\n")[0]
    except OSError:
        return None
    text = " ".join(head.split())
    return text[:400] + (" ..." if len(text) > 400 else "")


def _manifest_status(run_dir: Path) -> tuple[str | None, str | None]:
    try:
        m = json.loads((run_dir / "manifest.json").read_text())
    except (OSError, ValueError):
        return None, None
    return m.get("status"), m.get("error")


def _dask_worker_name() -> str | None:
    """The name of the Dask worker running this task, if any (without importing Dask)."""
    distributed = sys.modules.get("distributed")
    if distributed is None:
        return None
    try:
        return str(distributed.get_worker().name)
    except ValueError:  # not in a worker's task
        return None


def _final_record(run_dir: Path, digest: str | None) -> dict[str, Any] | None:
    """The record of a run folder that is complete and valid for ``digest``, else None."""
    from twin.sweep.store import check_run, read_record

    if digest is None or not (run_dir / RECORD_FILE).is_file():
        return None
    rec = read_record(run_dir)
    if rec is None or rec.get("status") != "complete" or check_run(run_dir, digest) is not None:
        return None
    return rec


def execute_task(task: RunTask, *, cancel: threading.Event | None = None) -> dict[str, Any]:
    """Run ``task`` in a fresh process into a clean ``task.run_dir``; return its record as a dict.

    Never raises for a failing run: the failure is the record's ``status`` and ``error``.
    """
    run_dir = Path(task.run_dir)
    final = _final_record(run_dir, task.digest)
    if final is not None:  # e.g. recomputed by Dask after a worker died: leave it as it is
        return final
    if run_dir.exists():
        shutil.rmtree(run_dir)  # a previous incomplete attempt leaves nothing behind
    run_dir.mkdir(parents=True)
    write_json_atomic({"run_id": task.run_id, "scenario": task.scenario,
                       "scenario_path": task.scenario_path, "command": task.command}, run_dir / "task.json")
    warm_up()
    started = datetime.now(UTC).isoformat()
    t0 = time.perf_counter()
    child = _Child(str(run_dir))
    deadline = t0 + task.timeout_s
    code: int | None = None
    status: str | None = None
    error: str | None = None
    while code is None:
        code = child.wait(_POLL_S)
        if code is not None:
            break
        if cancel is not None and cancel.is_set():
            code = child.stop()
            status, error = "interrupted", "the sweep was interrupted"
        elif time.perf_counter() > deadline:
            code = child.stop()
            status, error = "timeout", f"exceeded the per-run timeout of {task.timeout_s:g} s"
    child.signal_group(signal.SIGKILL)  # nothing of this run outlives it
    wall_s = time.perf_counter() - t0
    manifest_status, manifest_error = _manifest_status(run_dir)
    if status is None:
        if code == 0 and manifest_status == "complete":
            status = "complete"
        elif code is not None and code < 0:
            status = "killed"
            error = f"killed by signal {-code}"
        else:
            status = "failed"
            error = _error_text(run_dir) or manifest_error or f"exit code {code}, manifest status {manifest_status}"
    record = RunRecord(run_id=task.run_id, status=status, error=error, wall_s=round(wall_s, 3),
                       started_at=started, finished_at=datetime.now(UTC).isoformat(),
                       exit_code=code, host=socket.gethostname(), isolation=child.isolation,
                       worker=_dask_worker_name())
    write_json_atomic(record.to_dict(), run_dir / RECORD_FILE)
    return record.to_dict()
