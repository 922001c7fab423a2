"""Runs that never lose work, as real processes: SIGTERM and SIGKILL mid-run (no orphan Anvil,
the right status, readable tables, resume), a foreign folder (refused, nothing changed)."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from twin.cli import main
from twin.lifecycle import effective_status
from twin.results import SCHEMAS, read_parquet
from twin.resume import CHAIN_CHECKPOINT, CHECKPOINT

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.chain]
N_INTERVALS = 8


def _scenario(tmp: Path, name: str = "life", **changes: object) -> Path:
    data = yaml.safe_load((ROOT / "scenarios" / "quickstart.yaml").read_text())
    data.update(name=name, start="2016-06-15T08:00:00Z", duration_s=N_INTERVALS * 900, **changes)
    # small and quick to build: the processes, not the market, are tested here
    data["grid"] = {"kind": "cigre_lv"}
    data["agents"]["households"].update(count=12, profiles="synthetic")
    data["agents"]["evs"]["count"] = 3
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _twin(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "twin.cli", *args], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _wait_checkpoint(out: Path, proc: subprocess.Popen[str], steps: int) -> None:
    deadline = time.monotonic() + 120
    while _read(out / CHECKPOINT).get("market_steps", 0) < steps:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)


def _anvils_writing(out: Path) -> list[int]:
    """Anvil processes (any parent) whose command line names ``out``: orphans included."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"anvil") and str(out).encode() in b" ".join(argv):
            pids.append(int(cmdline.parent.name))
    return pids


def _no_anvil_left(out: Path) -> None:
    deadline = time.monotonic() + 15
    while _anvils_writing(out) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _anvils_writing(out), "an Anvil outlived its twin run"


def _tables_readable(out: Path) -> None:
    for name in SCHEMAS:
        read_parquet(out / f"{name}.parquet")  # page checksums verified


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.iterdir()) if p.is_file()}


def test_sigterm_is_handled_like_ctrl_c_and_a_foreign_checkpoint_is_refused(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scen, out = _scenario(tmp_path), tmp_path / "term"
    proc = _twin("run", str(scen), "--out", str(out), "--no-progress",
                 "--checkpoint-every-intervals", "1")
    _wait_checkpoint(out, proc, 2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "interrupted by SIGTERM" in err and "Traceback" not in err
    assert "Task was destroyed" not in err
    m = _read(out / "manifest.json")
    assert m["status"] == "interrupted" and m["error"] == "interrupted by SIGTERM"
    assert 0 < m["stopped_at_time_s"] < N_INTERVALS * 900
    _no_anvil_left(out)
    _tables_readable(out)
    assert oct((out / "bus.parquet").stat().st_mode & 0o777) != "0o600"  # ordinary permissions

    # a checkpoint of another run: refused naming both, nothing in the folder changed
    point = _read(out / CHECKPOINT)
    (out / CHECKPOINT).write_text(json.dumps({**point, "run_id": "0123456789abcdef"}))
    before = _digest(out)
    assert main(["run", "--resume", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "0123456789abcdef" in err and m["run_id"] in err and err.count("\n") == 1
    assert _digest(out) == before

    # --out on this folder with another scenario: refused, unless --force
    other = _scenario(tmp_path, name="other")
    assert main(["run", str(other), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "holds another run" in err and "--force" in err, err
    assert _digest(out) == before


def test_sigkill_leaves_no_orphan_shows_crashed_and_resumes(tmp_path: Path) -> None:
    scen, out = _scenario(tmp_path), tmp_path / "kill"
    proc = _twin("run", str(scen), "--out", str(out), "--no-progress",
                 "--checkpoint-every-intervals", "1")
    _wait_checkpoint(out, proc, 2)
    proc.kill()
    proc.communicate(timeout=30)
    _no_anvil_left(out)  # PR_SET_PDEATHSIG: Anvil went with its parent
    m = _read(out / "manifest.json")
    assert m["status"] == "running" and effective_status(m) == "crashed"
    _tables_readable(out)

    proc = _twin("run", "--resume", str(out), "--no-progress")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    m = _read(out / "manifest.json")
    assert m["status"] == "complete" and m["chain"]["resumed_from"]["market_steps"] >= 2
    assert m["tokens"]["conserved"] is True
    trades = read_parquet(out / "trades.parquet").to_pylist()
    ids = sorted(t["trade_id"] for t in trades)
    assert ids == list(range(1, len(ids) + 1)) and ids  # none lost, none doubled
    assert {r["interval"] for r in read_parquet(out / "market.parquet").to_pylist()} == \
        set(range(1, N_INTERVALS))  # interval 0 is before the first gate closure
    # a complete run keeps no resume checkpoint
    assert not any((out / n).exists() for n in (CHECKPOINT, *CHAIN_CHECKPOINT))
    _no_anvil_left(out)
    assert os.path.getsize(out / "chain_state.json.gz") > 0


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_dashboard_sigterm_stops_streamlit(tmp_path: Path) -> None:
    import socket

    (tmp_path / "manifest.json").write_text(json.dumps({"status": "complete"}))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = _twin("dashboard", str(tmp_path), "--port", str(port))
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.2)
    streamlit = _children(proc.pid)
    assert streamlit
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 143
    deadline = time.monotonic() + 15
    while any(map(_alive, streamlit)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(map(_alive, streamlit)), "Streamlit outlived `twin dashboard`"
