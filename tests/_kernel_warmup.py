"""Warm numba's disk cache on the second core while the suite's chain and agent tests run.

A fresh clone has no numba cache: the grid tests' kernels compile in the test process (about
3 minutes of the cold suite on 2 cores), one after another, while the test process is the only
busy one. :func:`start` (called by ``tests/conftest.py`` once the tests are collected) runs the
tests below in a background pytest process that writes nothing but the numba cache; the main
process runs the kernel-free modules first and waits for that process (:func:`wait`) before the
first test of a module in :data:`KERNEL_MODULES`, which then load the machine code from the
cache instead of compiling it again.

Correctness never depends on it: a kernel that is not warmed yet compiles in the test process
as before (the cache files are written atomically by numba). ``TWIN_TEST_WARMUP=0`` turns it
off, ``=1`` starts it for any session (by default only one with 200+ kernel-free tests). Each
warm-up test is the first test of the cold suite to compile some kernel signature (measured
with a ``numba:compile`` event listener), so together they warm every signature the suite
compiles in its own process; a renamed test is skipped by its node id and only costs its warming.

Under pytest-xdist (``make test`` runs ``-n 2``) the controller starts the warm-up once all
workers have collected (:func:`start`, from ``pytest_xdist_node_collection_finished``), at full
priority since both workers keep the cores busy; each worker waits for it before its first
kernel test by reading the state file the controller named in :data:`ENV_STATE` (the warm-up
process marks it done when it ends, :func:`child_done`; a dead warm-up counts as done).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO, Any

ENV_OFF = "TWIN_TEST_WARMUP"
ENV_CHILD = "TWIN_TEST_WARMUP_CHILD"
ENV_STATE = "TWIN_TEST_WARMUP_STATE"  # xdist: the state file the controller's warm-up writes

# test modules that compile or load numba kernels (run last, after the warm-up): every grid
# test module and the three elsewhere that solve power flows
KERNEL_PREFIX = "tests/grid/"
KERNEL_MODULES: tuple[str, ...] = (
    "tests/agents/test_tso_frequency.py",
    "tests/dashboards/test_hosting_page.py",
    "tests/market/test_game_security.py",
    "tests/market/test_schedule_merkle.py",  # the keccak kernel of daily signing's trees
)

# (#22: since the kernels' helpers compile once per helper, not per index/flag type, these
# tests compile 98 CPU-s instead of 137; a cold tests/grid run compiles no top-level signature
# they do not)
# the tests of the cold suite that compiled a kernel first (numba:compile listener, 2026-12-07),
# seconds of compile in each at load 9 (pandapower's own numba functions are not disk-cached
# (cache=False): test_oltc3ph[hv] compiles 12 s of them in every process and is not listed)
WARM_TESTS: tuple[str, ...] = (
    "tests/grid/test_controlled_pf.py::test_fused_lanes_equal_the_batch_path",  # 131 s
    "tests/grid/test_pf.py::test_contingency_kernel_equals_per_topology_path",  # 78 s
    "tests/grid/test_pf.py::test_bad_inputs_name_the_argument",  # 70 s
    "tests/grid/test_controls3ph_run.py::"
    "test_over_frequency_curtails_pv_and_the_oltc_steps_in_a_three_phase_run",  # 30 s
    "tests/grid/test_controlled_pf3ph.py::test_der_functions_per_phase_are_a_fixed_point_of_the_network",  # 28 s
    "tests/dashboards/test_hosting_page.py::test_data_builder",  # 27 s
    "tests/grid/test_pf.py::test_single_scenario_path_equals_batch_path_and_pandapower[case33bw]",  # 25 s
    "tests/grid/test_pf.py::test_chunked_kernel_with_zip_slack_loads_and_divergence",  # 7 s
    "tests/grid/test_controlled_pf.py::test_fixed_point_matches_pandapower_and_the_curves[volt_var]",  # 2 s
    "tests/grid/test_pf.py::test_kernel_atan2_matches_libm",  # 1 s
    "tests/market/test_schedule_merkle.py::test_numba_keccak_and_trees_equal_pycryptodome",  # 7 s at load 6
)

_state: dict[str, Any] = {}


def enabled() -> bool:
    """Whether this process may start the warm-up (not in the warm-up child, not turned off)."""
    return os.environ.get(ENV_OFF, "auto") != "0" and ENV_CHILD not in os.environ


def forced() -> bool:
    """``TWIN_TEST_WARMUP=1``: warm up whatever the session's size (for trying it out)."""
    return os.environ.get(ENV_OFF) == "1"


def is_kernel_module(nodeid: str) -> bool:
    """Whether the test ``nodeid`` belongs to a module that uses the grid kernels."""
    path = nodeid.split("::", 1)[0]
    return path.startswith(KERNEL_PREFIX) or path in KERNEL_MODULES


def start(root: Path, nodeids: set[str], *, whole_modules: bool, nice: int = 10) -> None:
    """Start the background warm-up for the collected tests among :data:`WARM_TESTS`;
    ``whole_modules``: the session collected whole modules (a listed test missing from a
    collected module was then renamed, and the summary says so); ``nice``: its priority while
    the kernel-free tests run (10: it takes what a single test process leaves of the cores)."""
    wanted = [t for t in WARM_TESTS if t in nodeids]
    modules = {n.split("::", 1)[0] for n in nodeids}
    _state["stale"] = [t for t in WARM_TESTS if whole_modules and t not in nodeids
                       and t.split("::", 1)[0] in modules]
    if not wanted or "proc" in _state:
        return
    work = root / ".cache" / "kernel_warmup"
    work.mkdir(parents=True, exist_ok=True)
    log: IO[bytes] = open(work / "log.txt", "wb")
    env = dict(os.environ, **{ENV_CHILD: "1"})
    state = os.environ.get(ENV_STATE)
    if state:  # xdist: the workers wait on this file; the child marks it done
        Path(state).write_text("")
        env[ENV_STATE] = state
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-header",
           f"--basetemp={work / 'tmp'}", *wanted]
    _state["t0"] = time.monotonic()
    _state["log"] = log
    _state["proc"] = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, preexec_fn=lambda: os.nice(nice))
    if state:
        with open(state, "a") as f:
            f.write(f"pid {_state['proc'].pid}\n")


def xdist_controller(config: Any) -> bool:
    """Whether this process is a pytest-xdist controller (``-n N``, N > 0)."""
    return bool(getattr(config.option, "numprocesses", None)) and "PYTEST_XDIST_WORKER" not in os.environ


def set_up_controller(root: Path) -> None:
    """Name the state file for this session before the workers start (they inherit it)."""
    work = root / ".cache" / "kernel_warmup"
    work.mkdir(parents=True, exist_ok=True)
    state = work / f"state-{os.getpid()}"
    state.unlink(missing_ok=True)
    os.environ[ENV_STATE] = str(state)
    _state["state"] = state


def child_done() -> None:
    """In the warm-up process: mark the state file done (the workers stop waiting)."""
    state = os.environ.get(ENV_STATE)
    if state and ENV_CHILD in os.environ:
        with open(state, "a") as f:
            f.write(f"end {time.monotonic()}\ndone\n")  # one clock for all processes


def _pid_running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _wait_worker(state: Path) -> None:
    """In an xdist worker: wait until the controller's warm-up is done (once)."""
    t_wait = time.monotonic()
    while True:
        try:
            lines = state.read_text().split("\n")
        except OSError:
            return  # no warm-up in this session (a small one)
        pid = next((int(x.split()[1]) for x in lines if x.startswith("pid ")), None)
        if "done" in lines or (pid is not None and not _pid_running(pid)):
            break
        time.sleep(0.2)
    with open(state, "a") as f:
        f.write(f"waited {time.monotonic() - t_wait:.1f}\n")


def wait() -> None:
    """Block until the warm-up process has finished (once; a no-op without one)."""
    if "waited" in _state:
        return
    state = os.environ.get(ENV_STATE)
    if state and "PYTEST_XDIST_WORKER" in os.environ:
        _state["waited"] = True
        _wait_worker(Path(state))
        return
    proc = _state.get("proc")
    if proc is None:
        return
    t_wait = time.monotonic()
    try:  # from now on the tests wait for it: its full share (where the user may raise it back)
        os.setpriority(os.PRIO_PROCESS, proc.pid, 0)
    except OSError:
        pass
    proc.wait()
    _state["waited"] = (time.monotonic() - t_wait, time.monotonic() - _state["t0"])
    _state["log"].close()


def stop() -> str | None:
    """End a warm-up still running (an interrupted or filtered session); its summary line."""
    proc = _state.get("proc")
    line = None
    if proc is not None:
        if proc.poll() is None:
            proc.terminate()
            proc.wait()
        if not _state["log"].closed:
            _state["log"].close()
        waited = _state.get("waited")
        state = _state.get("state")
        if state is not None:  # xdist controller: the workers wrote their waits
            try:
                lines = state.read_text().split("\n")
                state.unlink()
            except OSError:
                lines = []
            waits = [float(x.split()[1]) for x in lines if x.startswith("waited ")]
            ends = [float(x.split()[1]) for x in lines if x.startswith("end ")]
            waited = (max(waits), (ends[0] if ends else time.monotonic()) - _state["t0"]) if waits else None
        line = ("kernel warm-up: not waited for" if waited is None else
                f"kernel warm-up: {waited[1]:.0f} s in the background, the tests waited {waited[0]:.0f} s")
    stale = _state.get("stale")
    if stale:
        line = f"{line or 'kernel warm-up'}; not found (renamed? update WARM_TESTS in " \
               f"tests/_kernel_warmup.py): {', '.join(stale)}"
    return line
