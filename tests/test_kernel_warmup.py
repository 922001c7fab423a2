"""The suite's numba warm-up list (tests/_kernel_warmup.py) is consistent with its module list."""

from __future__ import annotations

import _kernel_warmup as warmup


def test_every_warm_up_test_runs_in_the_kernel_tail() -> None:
    # a warm-up test outside the kernel modules would run before the wait, compiling twice
    outside = [t for t in warmup.WARM_TESTS if not warmup.is_kernel_module(t)]
    assert outside == []
    assert len(set(warmup.WARM_TESTS)) == len(warmup.WARM_TESTS)
    assert not warmup.is_kernel_module("tests/chain/test_equivalence.py::test_random_books_match_reference")


def test_an_xdist_worker_stops_waiting_when_the_warm_up_is_done_or_dead(tmp_path, monkeypatch) -> None:
    import subprocess
    import sys
    import time

    state = tmp_path / "state"
    monkeypatch.setenv(warmup.ENV_STATE, str(state))
    monkeypatch.setenv(warmup.ENV_CHILD, "1")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        state.write_text(f"pid {proc.pid}\n")
        assert warmup._pid_running(proc.pid)
        warmup.child_done()  # what the warm-up process does at its end
        t0 = time.monotonic()
        warmup._wait_worker(state)
        assert time.monotonic() - t0 < 1
    finally:
        proc.kill()
        proc.wait()
    state.write_text(f"pid {proc.pid}\n")  # ended without marking the file: not waited for
    assert not warmup._pid_running(proc.pid)
    warmup._wait_worker(state)
    lines = state.read_text().split("\n")
    assert lines[0] == f"pid {proc.pid}" and lines[1].startswith("waited ")
    warmup._wait_worker(tmp_path / "none")  # no warm-up in this session: returns at once
