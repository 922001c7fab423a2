"""`twin hil serve` in this process: failures end the run with exit 1 and a clear message."""

from __future__ import annotations

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
