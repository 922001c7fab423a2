"""Where runs execute: a local pool (one thread per worker, each run its own process) or Dask.

Both yield run records as runs finish. Dask runs :func:`~twin.sweep.runner.execute_task` on
the workers, so the results folder must be on a file system every worker sees.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from typing import Any

from twin.sweep.runner import RunTask, execute_task

__all__ = ["failed_record", "run_dask", "run_local"]


def failed_record(task: RunTask, error: str, status: str = "failed") -> dict[str, Any]:
    """A record for a run whose executor itself failed (worker lost, disk full, ...)."""
    now = datetime.now(UTC).isoformat()
    return {"run_id": task.run_id, "status": status, "error": error, "wall_s": None,
            "started_at": None, "finished_at": now, "exit_code": None, "host": None,
            "isolation": None}


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


def run_dask(tasks: Sequence[RunTask], *, scheduler: str | None = None,
             local_workers: int | None = None) -> Iterator[dict[str, Any]]:
    """Run ``tasks`` on the Dask cluster at ``scheduler``, or on a LocalCluster of
    ``local_workers`` single-threaded worker processes started (and closed) here."""
    import dask
    from distributed import Client, LocalCluster
    from distributed import as_completed as dask_completed

    cluster = None
    # non-daemonic workers may start processes, so runs fork from a warm forkserver
    with dask.config.set({"distributed.worker.daemon": False}):
        if scheduler is None:
            cluster = LocalCluster(n_workers=local_workers or 1, threads_per_worker=1,
                                   processes=True, dashboard_address=None)
        client = Client(cluster if cluster is not None else scheduler)
    try:
        futures = {}
        for t in tasks:
            f = client.submit(execute_task, t, key=f"twin-run-{t.run_id}-{uuid.uuid4().hex[:8]}",
                              pure=False, retries=0)
            futures[f.key] = (f, t)
        for fut in dask_completed([f for f, _ in futures.values()]):
            task = futures[fut.key][1]
            try:
                yield fut.result()
            except Exception as exc:  # e.g. KilledWorker: the run died with its worker
                yield failed_record(task, f"{type(exc).__name__}: {exc}")
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
