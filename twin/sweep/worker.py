"""Dask workers that keep the twin warm, and the check that they see the sweep folder.

A worker started with plain ``dask worker ADDRESS`` is a daemonic process: multiprocessing
refuses it children, so each run used to be a fresh ``python -m twin.sweep.child`` that paid
every import (pandapower, mosaik, web3, numba's kernel cache) again. :func:`warm_worker` lets
the worker start its run processes and starts its forkserver, which imports the simulation
stack once; every run is then a fork of that warm interpreter, as in the local pool.

It runs on each worker in one of two ways (both are idempotent):

* from the client: :func:`twin.sweep.backends.connect_dask` registers :class:`WarmTwin`, so even
  workers started as ``dask worker ADDRESS`` get warm before the first run;
* as a preload: ``dask worker ADDRESS --preload twin.sweep.worker`` warms the worker when it
  starts (before any sweep connects).

:func:`probe_folder` runs on every worker before anything runs: it reads a probe file the
sweep wrote into its output folder, so a worker on a host that does not mount that folder at
the same path is named, with its host and the path, instead of failing run by run.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from distributed.diagnostics.plugin import WorkerPlugin

__all__ = ["WarmTwin", "dask_setup", "probe_folder", "warm_worker"]

_lock = threading.Lock()
_warm_s: float | None = None


def _allow_children() -> None:
    """Let this (daemonic) worker process start processes of its own.

    multiprocessing refuses children to a process whose ``daemon`` flag is set; the flag has
    no other effect inside the process itself (the nanny that started it keeps its own copy
    and still stops it). The runs' forkserver dies with the worker, and the runs die with
    the forkserver (``PR_SET_PDEATHSIG`` in :mod:`twin.sweep.child`).
    """
    proc = multiprocessing.current_process()
    if proc.daemon:
        try:
            proc.daemon = False
        except AssertionError:  # a started process object: set the flag it is read from
            proc._config["daemon"] = False  # type: ignore[attr-defined]


def warm_worker() -> dict[str, Any]:
    """Make this process ready for sweep runs; the first call pays the imports, later ones nothing.

    Sets the runtime options the ``twin`` command sets (numba threading layer, malloc), then
    starts the forkserver that preloads :mod:`twin.sweep.child` and forks once from it.
    """
    global _warm_s
    with _lock:
        if _warm_s is None:
            from twin.runtime import configure
            from twin.sweep.runner import warm_up

            t0 = time.perf_counter()
            _allow_children()
            configure()
            warm_up()
            _warm_s = time.perf_counter() - t0
        return {"pid": os.getpid(), "host": socket.gethostname(), "warm_s": round(_warm_s, 3)}


class WarmTwin(WorkerPlugin):
    """Worker plugin: :func:`warm_worker` on every worker, present and future.

    ``setup`` runs the warm-up in a thread, so the worker keeps answering the scheduler
    (heartbeats) for the seconds the imports take.
    """

    name = "twin-sweep-warm"
    idempotent = True

    async def setup(self, worker: Any) -> None:
        await asyncio.get_running_loop().run_in_executor(None, warm_worker)


def dask_setup(worker: Any) -> None:
    """``dask worker ADDRESS --preload twin.sweep.worker``: warm this worker when it starts.

    The imports run in a thread (the worker joins its scheduler meanwhile); a run that
    arrives first waits for the forkserver they start.
    """
    _allow_children()
    threading.Thread(target=warm_worker, name="twin-sweep-warm", daemon=True).start()


def probe_folder(path: str, token: str) -> dict[str, Any]:
    """On a worker: can it read ``path`` (a probe file holding ``token``) and write beside it?

    Returns ``{"host", "cwd", "problem"}``; ``problem`` is None when the worker sees the very
    file the sweep wrote (not merely a folder of the same name on another host).
    """
    probe = Path(path)
    problem: str | None = None
    try:
        text = probe.read_text()
    except FileNotFoundError:
        problem = f"{probe} does not exist there"
    except OSError as exc:
        problem = f"cannot read {probe}: {exc.strerror or exc}"
    else:
        if text != token:
            problem = f"{probe} there is another file than the one this sweep wrote"
    if problem is None:
        mine = probe.with_name(f"{probe.name}.{socket.gethostname()}.{os.getpid()}")
        try:
            mine.write_text(token)
        except OSError as exc:
            problem = f"cannot write in {probe.parent}: {exc.strerror or exc}"
        finally:
            with contextlib.suppress(OSError):
                mine.unlink()
    return {"host": socket.gethostname(), "cwd": os.getcwd(), "problem": problem}
