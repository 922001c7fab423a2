"""A real Dask cluster of separate processes on this host (``dask scheduler`` + ``dask worker``).

For the tests and ``bench/scale.py``: the same commands a user types on a cluster, each in
its own session (so a worker and everything it started can be killed as a group), on
127.0.0.1 and free ports. Not used by the sweep itself.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["ExternalCluster", "external_cluster", "free_port"]



def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listened on a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dask_cli() -> list[str]:
    """``dask`` of this interpreter's environment."""
    exe = Path(sys.executable).with_name("dask")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "dask"]


@dataclass
class ExternalCluster:
    address: str
    scheduler: subprocess.Popen[bytes]
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    log_dir: Path | None = None

    def add_worker(self, *, extra: Sequence[str] = (), prefix: Sequence[str] = (),
                   cwd: Path | None = None, name: str | None = None) -> subprocess.Popen[bytes]:
        """Start ``dask worker ADDRESS`` (one process, one thread); ``prefix`` wraps the command."""
        name = name or f"w{len(self.workers)}"
        cmd = [*prefix, *_dask_cli(), "worker", self.address, "--nthreads", "1", "--nworkers", "1",
               "--host", "127.0.0.1", "--no-dashboard", "--name", name, *extra]
        log = open(self.log_dir / f"{name}.log", "wb") if self.log_dir else subprocess.DEVNULL
        proc = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
        if not isinstance(log, int):
            log.close()  # the worker has its own copy
        self.workers.append(proc)
        return proc

    def wait(self, n: int, timeout_s: float = 60.0) -> None:
        """Until ``n`` workers have joined the scheduler."""
        from distributed import Client

        with Client(self.address, timeout=timeout_s) as client:
            client.wait_for_workers(n, timeout=timeout_s)

    def kill_worker(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL a worker's whole session: nanny, worker, its forkserver and runs."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def close(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in [*self.workers, self.scheduler]:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill_worker(proc)


@contextlib.contextmanager
def external_cluster(workers: int, *, extra: Sequence[str] = (), log_dir: Path | None = None,
                     timeout_s: float = 60.0) -> Iterator[ExternalCluster]:
    """A scheduler and ``workers`` plain ``dask worker`` processes; waits until all joined."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    log = open(log_dir / "scheduler.log", "wb") if log_dir else subprocess.DEVNULL
    sched = subprocess.Popen([*_dask_cli(), "scheduler", "--host", "127.0.0.1", "--port", str(port),
                              "--no-dashboard"], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             start_new_session=True)
    if not isinstance(log, int):
        log.close()
    cluster = ExternalCluster(address=address, scheduler=sched, log_dir=log_dir)
    try:
        for _ in range(workers):
            cluster.add_worker(extra=extra)
        if workers:
            cluster.wait(workers, timeout_s)
        yield cluster
    finally:
        cluster.close()
