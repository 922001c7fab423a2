"""Where runs execute: a local pool (one thread per worker, each run its own process) or Dask.

Both yield run records as runs finish. Dask runs :func:`~twin.sweep.runner.execute_task` on
the workers, so the results folder must be on a file system every worker sees.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from twin.sweep.runner import RunTask, execute_task

__all__ = ["ClusterError", "DaskCluster", "connect_dask", "failed_record", "run_dask", "run_local"]


def failed_record(task: RunTask, error: str, status: str = "failed") -> dict[str, Any]:
    """A record for a run whose executor itself failed (worker lost, disk full, ...)."""
    now = datetime.now(UTC).isoformat()
    return {"run_id": task.run_id, "status": status, "error": error, "wall_s": None,
            "started_at": None, "finished_at": now, "exit_code": None, "host": None,
            "isolation": None, "worker": None}


def run_local(tasks: Sequence[RunTask], *, workers: int,
              cancel: threading.Event) -> Iterator[dict[str, Any]]:
    """Run ``tasks`` with at most ``workers`` at a time; set ``cancel`` to stop them all."""

    def one(task: RunTask) -> dict[str, Any]:
        if cancel.is_set():
            return failed_record(task, "the sweep was interrupted", status="interrupted")
        return execute_task(task, cancel=cancel)

    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="twin-sweep")
    try:
        futures = {pool.submit(one, t): t for t in tasks}
        for fut in as_completed(futures):
            try:
                yield fut.result()
            except Exception as exc:  # an error of the machinery, not of the run
                yield failed_record(futures[fut], f"{type(exc).__name__}: {exc}")
    finally:
        cancel.set()  # a no-op after a normal end; stops running children otherwise
        pool.shutdown(wait=True, cancel_futures=True)


class ClusterError(RuntimeError):
    """The Dask cluster cannot run this sweep (unreachable, no workers, folder not shared).

    Its message is one line naming the scheduler or the worker (host) and the path.
    """


#: Seconds to wait for the scheduler to answer, and for its first worker.
CONNECT_TIMEOUT_S = 10.0
WORKERS_TIMEOUT_S = 30.0


@dataclass
class DaskCluster:
    """A connected client (and the LocalCluster it started, if any); see :func:`connect_dask`."""

    client: Any
    cluster: Any = None

    def close(self) -> None:
        """Close the client and the LocalCluster; a second call does nothing."""
        client, cluster, self.client, self.cluster = self.client, self.cluster, None, None
        if client is not None:
            client.close()
        if cluster is not None:
            cluster.close()


def connect_dask(*, scheduler: str | None, local_workers: int | None, out_dir: Path) -> DaskCluster:
    """Connect to the Dask cluster at ``scheduler`` (or start a LocalCluster of ``local_workers``
    single-threaded worker processes) and check it can run a sweep into ``out_dir``.

    Every worker must read a probe file written into ``out_dir`` and write beside it. Then
    the workers are warmed (:class:`twin.sweep.worker.WarmTwin`): their runs fork from a
    forkserver that imported the twin once. Raises :class:`ClusterError` before anything runs.
    """
    import dask
    from distributed import Client, LocalCluster

    from twin.sweep.worker import WarmTwin

    cluster = None
    # non-daemonic workers may start processes, so runs fork from a warm forkserver
    with dask.config.set({"distributed.worker.daemon": False}):
        if scheduler is None:
            cluster = LocalCluster(n_workers=local_workers or 1, threads_per_worker=1,
                                   processes=True, dashboard_address=None)
            client = Client(cluster)
        else:
            try:
                client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
            except (OSError, ValueError, TypeError) as exc:
                raise ClusterError(f"cannot reach the Dask scheduler at {scheduler} within "
                                   f"{CONNECT_TIMEOUT_S:g} s: {_one_line(exc)}") from None
    dc = DaskCluster(client=client, cluster=cluster)
    try:
        where = scheduler or "the LocalCluster"
        try:
            client.wait_for_workers(1, timeout=WORKERS_TIMEOUT_S)
        except (TimeoutError, OSError):
            raise ClusterError(f"the Dask scheduler at {where} has no workers (waited "
                               f"{WORKERS_TIMEOUT_S:g} s); start some with `dask worker {where}`") from None
        _check_folder(client, Path(out_dir))
        client.register_plugin(WarmTwin())
    except BaseException:
        dc.close()
        raise
    return dc


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _check_folder(client: Any, out: Path) -> None:
    """Every worker reads the probe this process wrote into ``out`` (same path, same file)."""
    from twin.sweep.worker import probe_folder

    token = uuid.uuid4().hex
    probe = out / f".twin-probe-{token}"
    probe.write_text(token)
    try:
        answers = client.run(probe_folder, str(probe), token, on_error="return")
    finally:
        probe.unlink(missing_ok=True)
    bad = []
    for addr, ans in sorted(answers.items()):
        if isinstance(ans, BaseException):
            bad.append(f"Dask worker {addr} cannot check {out}: {_one_line(ans)}")
        elif ans["problem"] is not None:
            bad.append(f"Dask worker {addr} on host {ans['host']} cannot see the sweep folder "
                       f"{out}: {ans['problem']} (worker cwd {ans['cwd']}); put --out on a file "
                       "system every worker mounts at the same path")
    if bad:
        more = f" (and {len(bad) - 1} more worker(s))" if len(bad) > 1 else ""
        raise ClusterError(bad[0] + more)


def run_dask(tasks: Sequence[RunTask], dask_cluster: DaskCluster) -> Iterator[dict[str, Any]]:
    """Run ``tasks`` on a connected cluster; closes it when done (or when the generator is closed).

    A future is released as soon as its record is read: a worker that dies later takes
    nothing with it that the scheduler would recompute, so a completed run is never run
    again (and :func:`~twin.sweep.runner.execute_task` leaves a complete run folder as it is).
    """
    from distributed import as_completed as dask_completed

    client = dask_cluster.client
    try:
        pending: dict[str, RunTask] = {}
        futures = []
        for t in tasks:
            f = client.submit(execute_task, t, key=f"twin-run-{t.run_id}-{uuid.uuid4().hex[:8]}",
                              pure=False, retries=0)
            pending[f.key] = t
            futures.append(f)
        completed = dask_completed(futures)
        del futures  # as_completed holds each future only until it is yielded
        for fut in completed:
            task = pending.pop(fut.key)
            try:
                rec = fut.result()
            except Exception as exc:  # e.g. KilledWorker: the run died with its workers
                rec = failed_record(task, f"{type(exc).__name__}: {exc}")
            fut.release()
            del fut
            yield rec
    finally:
        dask_cluster.close()
