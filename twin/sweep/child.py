"""The process of one sweep run: ``python -m twin.sweep.child RUN_DIR`` or forked from a server.

Importing this module imports the whole simulation stack, so a forkserver that preloads it
hands every run a warm interpreter (no per-run import cost). The child makes itself a
process-group leader (the runner stops the run and its Anvil together), dies with its parent
(``PR_SET_PDEATHSIG``), turns SIGTERM into an exception so :func:`twin.run.run_scenario`
still flushes its tables and stops Anvil, and writes any error to ``error.txt``.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import signal
import sys
import traceback
from pathlib import Path
from typing import Any

import mosaik  # noqa: F401  (preloaded for the forked runs)

import twin.agents.model
import twin.grid.feeders  # noqa: F401
from twin.run import run_scenario
from twin.runtime import configure
from twin.scenario import scenario_from_dict

__all__ = ["TASK_FILE", "Terminated", "main"]

TASK_FILE = "task.json"
ERROR_FILE = "error.txt"
LOG_FILE = "run.log"
_PR_SET_PDEATHSIG = 1


class Terminated(Exception):
    """SIGTERM from the sweep runner (per-run timeout, Ctrl-C of the sweep, or parent death)."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated("stopped by SIGTERM")


def _die_with_parent() -> None:
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _one_thread() -> None:
    """Sweeps parallelize over runs (one per core): no numba thread pool per run."""
    with contextlib.suppress(ImportError, ValueError, RuntimeError):
        import numba

        numba.set_num_threads(1)


def main(run_dir: str) -> int:
    """Run the task in ``run_dir/task.json``; 0 when the run completed."""
    with contextlib.suppress(OSError):
        os.setsid()
    _die_with_parent()
    signal.signal(signal.SIGTERM, _on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the sweep decides when a run stops
    configure()  # the run's process: numba layer (inherited environment) and malloc tuning
    _one_thread()
    out = Path(run_dir)
    log = os.open(out / LOG_FILE, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 1)
    os.dup2(log, 2)
    try:
        task = json.loads((out / TASK_FILE).read_text())
        scenario = scenario_from_dict(task["scenario"], source=task["run_id"])
        if task.get("command", "run") == "resilience":
            _run_resilience(scenario, out)
        else:
            run_scenario(scenario, out_dir=out, scenario_path=task.get("scenario_path"),
                         progress=False)
    except BaseException as exc:  # the record must say why, whatever it was
        tb = "".join(traceback.format_exception(exc)[-6:])
        (out / ERROR_FILE).write_text(f"{type(exc).__name__}: {exc}\n\n{tb}")
        return 1
    return 0


def _run_resilience(scenario: Any, out: Path) -> None:
    """``twin resilience`` in a run folder, with a manifest so the runner sees it complete."""
    from datetime import UTC, datetime

    from twin.results import write_json_atomic
    from twin.studies.resilience_cli import run_resilience

    run_resilience(scenario, out, progress=False)
    write_json_atomic({"scenario_name": scenario.name, "scenario_hash": scenario.digest(),
                       "command": "resilience", "status": "complete",
                       "finished_at": datetime.now(UTC).isoformat()}, out / "manifest.json")


def _forked_main(run_dir: str) -> None:
    """Target of a forkserver process: exit with main's code (finalizers run)."""
    sys.exit(main(run_dir))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
