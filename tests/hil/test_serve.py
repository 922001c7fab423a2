"""`twin hil serve` in this process: failures end the run with exit 1 and a clear message."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from twin.cli import main

SCENARIO = Path(__file__).resolve().parent / "data" / "hil_e2e.yaml"


def test_rt_strict_stops_at_the_first_deadline_miss(tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    # 30-s steps 0.3 ms apart in wall time: the twin cannot keep up, a step is soon > 100 ms late
    code = main(["hil", "serve", str(SCENARIO), "--port", "0", "--rt-factor", "0.00001",
                 "--rt-strict", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert "DeadlineMiss" in err and "--rt-strict" in err
    assert "UserWarning" not in err  # mosaik's real-time warnings are counted, not printed
    misses = pq.read_table(tmp_path / "hil_deadlines.parquet").to_pandas()
    assert len(misses) >= 1 and (misses.lateness_s > 0.1).all()


def test_a_failing_simulator_exits_1(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from twin.hil.core import HILBank

    def broken(self: HILBank, **kwargs: object) -> None:
        raise RuntimeError("device model exploded")

    monkeypatch.setattr(HILBank, "step", broken)
    code = main(["hil", "serve", str(SCENARIO), "--port", "0", "--rt-factor", "0",
                 "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 1
    assert "device model exploded" in err
    assert (tmp_path / "manifest.json").is_file()


def test_rt_factor_0_reports_its_steps_and_streams_the_tables(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["hil", "serve", str(SCENARIO), "--port", "0", "--rt-factor", "0", "--until", "600",
                 "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0
    assert "steps                20 (as fast as possible" in out  # 600 s of 30-s HIL steps
    hil = pq.read_table(tmp_path / "hil.parquet")
    assert hil.num_rows == 20 * 3  # three devices
    hz = hil.column("hz").to_numpy()  # the TSO's seeded frequency reached every device
    assert hz.std() > 0.002 and (abs(hz - 50.0) < 0.3).all()
    assert not list(tmp_path.glob(".*.part"))
    assert "hil" in json.loads((tmp_path / "manifest.json").read_text())["tables"]


def test_sigterm_ends_the_run_like_ctrl_c(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    done = threading.Event()

    def terminate() -> None:  # SIGTERM to this process once the run serves (as a lab's supervisor)
        deadline = time.monotonic() + 120
        while not (tmp_path / "hil_devices.json").is_file() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(1.0)  # a few 30-s steps (0.3 s of wall time each; the run lasts 18 s)
        if not done.is_set():
            os.kill(os.getpid(), signal.SIGTERM)

    t = threading.Thread(target=terminate)
    t.start()
    try:
        code = main(["hil", "serve", str(SCENARIO), "--port", "0", "--rt-factor", "0.01",
                     "--out", str(tmp_path)])
    finally:
        done.set()
        t.join()
    assert code == 130, capsys.readouterr().err
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["status"] == "interrupted"
    assert pq.read_table(tmp_path / "hil.parquet").num_rows >= 3  # streamed rows are in place
    assert signal.getsignal(signal.SIGTERM) is not None  # the previous handler is back
