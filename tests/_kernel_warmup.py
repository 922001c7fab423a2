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

# test modules that compile or load numba kernels (run last, after the warm-up): every grid
# test module and the three elsewhere that solve power flows
KERNEL_PREFIX = "tests/grid/"
KERNEL_MODULES: tuple[str, ...] = (
    "tests/agents/test_tso_frequency.py",
    "tests/dashboards/test_hosting_page.py",
    "tests/market/test_game_security.py",
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


def start(root: Path, nodeids: set[str], *, whole_modules: bool) -> None:
    """Start the background warm-up for the collected tests among :data:`WARM_TESTS`;
    ``whole_modules``: the session collected whole modules (a listed test missing from a
    collected module was then renamed, and the summary says so)."""
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
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--no-header",
           f"--basetemp={work / 'tmp'}", *wanted]
    _state["t0"] = time.monotonic()
    _state["log"] = log
    # niced while the kernel-free tests run: it takes what they leave of the second core
    _state["proc"] = subprocess.Popen(cmd, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, preexec_fn=lambda: os.nice(10))


def wait() -> None:
    """Block until the warm-up process has finished (once; a no-op without one)."""
    proc = _state.get("proc")
    if proc is None or "waited" in _state:
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
        line = ("kernel warm-up: not waited for" if waited is None else
                f"kernel warm-up: {waited[1]:.0f} s in the background, the tests waited {waited[0]:.0f} s")
    stale = _state.get("stale")
    if stale:
        line = f"{line or 'kernel warm-up'}; not found (renamed? update WARM_TESTS in " \
               f"tests/_kernel_warmup.py): {', '.join(stale)}"
    return line
