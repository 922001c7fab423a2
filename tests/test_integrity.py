"""Bad input and bad luck without a process to kill: damaged Parquet pages, a full disk,
`--out` and `--until` mistakes, crashed manifests — each one clear line, the right exit code."""

from __future__ import annotations

import errno
import json
import os
import socket
from pathlib import Path

import pyarrow as pa
import pytest
import yaml

import twin.results
from twin.cli import main
from twin.lifecycle import effective_status, process_identity
from twin.outdir import OutDirError, prepare_out_dir
from twin.results import CorruptTableError, RunRecorder, read_parquet, write_table_atomic
from twin.sweep.store import check_run

ROOT = Path(__file__).resolve().parents[1]


def _flip(path: Path, n: int = 200) -> None:
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    for i in range(mid, mid + n):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def test_a_byte_flipped_page_is_reported_by_name(tmp_path: Path) -> None:
    table = pa.table({"buy_order_id": pa.array(range(50_000), pa.int64()),
                      "price": pa.array([i * 0.5 for i in range(50_000)])})
    path = tmp_path / "trades.parquet"
    write_table_atomic(table, path)
    assert read_parquet(path).equals(table)
    _flip(path)
    with pytest.raises(CorruptTableError, match=r"trades\.parquet: corrupt table"):
        read_parquet(path)
    # the sweep/compare store does not reuse such a run: it says which file and why
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"status": "complete", "scenario_hash": "h", "tables": ["trades"]}))
    (tmp_path / "kpis.json").write_text("{}")
    assert "trades.parquet: corrupt table" in str(check_run(tmp_path, "h"))


def test_result_files_get_ordinary_permissions(tmp_path: Path) -> None:
    write_table_atomic(pa.table({"a": [1]}), tmp_path / "a.parquet")
    mask = os.umask(0)
    os.umask(mask)
    assert (tmp_path / "a.parquet").stat().st_mode & 0o777 == 0o666 & ~mask


def test_full_disk_keeps_written_tables_and_says_so(tmp_path: Path, monkeypatch) -> None:
    rec = RunRecorder(tmp_path)
    rec.add("market", [{"time_s": 0, "interval": 0, "price_per_mwh": 1, "volume_wh": 2,
                        "n_orders": 1, "n_trades": 1, "curtailed_wh": 0}])
    rec.flush()
    before = read_parquet(tmp_path / "market.parquet")
    rec.add("market", [{"time_s": 900, "interval": 1, "price_per_mwh": 1, "volume_wh": 2,
                        "n_orders": 1, "n_trades": 1, "curtailed_wh": 0}])

    def no_space(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(twin.results.pq, "write_table", no_space)
    with pytest.raises(twin.results.DiskFull, match=r"disk full writing .*market\.parquet"):
        rec.flush()
    assert read_parquet(tmp_path / "market.parquet").equals(before)  # still the old, valid one
    assert not list(tmp_path.glob(".*.tmp"))  # no debris
    # the free-space check refuses before writing anything
    monkeypatch.undo()
    monkeypatch.setattr(twin.results.shutil, "disk_usage",
                        lambda _p: type("U", (), {"free": 1000})())
    with pytest.raises(twin.results.DiskFull, match=r"need about .* MB, 0\.0 MB free"):
        rec.flush()


@pytest.mark.slow
def test_disk_full_at_the_end_of_a_run_fails_it_naming_the_path(tmp_path: Path, monkeypatch,
                                                                capsys) -> None:
    data = yaml.safe_load((ROOT / "scenarios" / "quickstart.yaml").read_text())
    data.update(name="full", start="2016-06-15T10:00:00Z", duration_s=3 * 900)
    data["market"]["ledger"] = "reference"
    data["grid"] = {"kind": "cigre_lv"}
    data["agents"]["households"].update(count=8, profiles="synthetic")
    scen = tmp_path / "full.yaml"
    scen.write_text(yaml.safe_dump(data))
    out = tmp_path / "out"
    real = twin.results.pq.write_table
    calls = {"n": 0}

    def fills_up(table, where, **kw):  # the first flush fits, the final one does not
        calls["n"] += 1
        if calls["n"] > len(twin.results.SCHEMAS):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(table, where, **kw)

    monkeypatch.setattr(twin.results.pq, "write_table", fills_up)
    code = main(["run", str(scen), "--out", str(out), "--no-progress",
                 "--checkpoint-every-intervals", "1"])
    err = capsys.readouterr().err
    assert code == 1 and "disk full writing" in err and str(out) in err and "Traceback" not in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["error"].startswith("disk full writing")
    for name in twin.results.SCHEMAS:
        read_parquet(out / f"{name}.parquet")  # what the checkpoint wrote is intact


def test_a_running_manifest_of_a_gone_process_is_crashed() -> None:
    me = process_identity()
    assert effective_status({"status": "running", "process": me}) == "running"
    gone = {**me, "start_ticks": (me["start_ticks"] or 0) + 1}  # same pid, another process
    assert effective_status({"status": "running", "process": gone}) == "crashed"
    elsewhere = {**me, "host": socket.gethostname() + "-other"}
    assert effective_status({"status": "running", "process": elsewhere}) == "running"
    assert effective_status({"status": "complete", "process": gone}) == "complete"


def test_out_folder_rules(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutDirError, match="is a file, not a folder"):
        prepare_out_dir(tmp_path / "file", scenario_hash="a")
    with pytest.raises(OutDirError, match="cannot write there"):
        prepare_out_dir(tmp_path / "file" / "sub", scenario_hash="a")
    (tmp_path / "notarun").mkdir()
    (tmp_path / "notarun" / "thesis.tex").write_text("x")
    for force in (False, True):  # never cleared, --force or not
        with pytest.raises(OutDirError, match="holds no twin run"):
            prepare_out_dir(tmp_path / "notarun", scenario_hash="a", force=force)
    run = tmp_path / "run"
    run.mkdir()
    (run / "manifest.json").write_text(json.dumps({"status": "complete", "scenario_hash": "a" * 64,
                                                   "run_id": "r1", "scenario_name": "one"}))
    (run / "checkpoint.json").write_text("{}")
    with pytest.raises(OutDirError, match=r"holds another run \(scenario 'one'.*--force"):
        prepare_out_dir(run, scenario_hash="b" * 64)
    assert (run / "checkpoint.json").exists()
    prepare_out_dir(run, scenario_hash="b" * 64, force=True)
    assert list(run.iterdir()) == []
    (run / "manifest.json").write_text(json.dumps({"status": "running", "scenario_hash": "a",
                                                   "process": process_identity()}))
    with pytest.raises(OutDirError, match="still writing"):
        prepare_out_dir(run, scenario_hash="a", force=True)


def test_a_complete_run_of_the_same_scenario_file_is_rerun_after_it_changed(tmp_path: Path) -> None:
    """``make demo`` after an upgrade: same file, new hash (edited, or new spec defaults)."""
    scen = tmp_path / "demo.yaml"
    scen.write_text("name: demo\n")
    run = tmp_path / "run"
    run.mkdir()

    def manifest(status: str) -> None:
        (run / "manifest.json").write_text(json.dumps({
            "status": status, "scenario_hash": "a" * 64, "run_id": "r1", "scenario_name": "demo",
            "scenario_file": str(scen), "stopped_at_time_s": 900}))
        (run / "checkpoint.json").write_text("{}")

    manifest("interrupted")  # a stopped run of the old version: kept, resume cannot continue it
    with pytest.raises(OutDirError, match="holds another run"):
        prepare_out_dir(run, scenario_hash="b" * 64, scenario_file=str(scen))
    with pytest.raises(OutDirError, match="holds another run"):  # another file: refused
        prepare_out_dir(run, scenario_hash="b" * 64, scenario_file=str(tmp_path / "x.yaml"))
    manifest("complete")
    with pytest.raises(OutDirError, match="holds another run"):
        prepare_out_dir(run, scenario_hash="b" * 64, scenario_file=str(tmp_path / "x.yaml"))
    prepare_out_dir(run, scenario_hash="b" * 64, scenario_file=str(scen))
    assert list(run.iterdir()) == []


@pytest.mark.parametrize(("argv", "needle"), [
    (["--until", "0"], "--until 0: must be a positive"),
    (["--until", "-5"], "--until -5: must be a positive"),
    (["--until", "100"], "--until 100: must be a multiple of the market interval (900 s)"),
    (["--checkpoint-every-intervals", "0"], "must be >= 1"),
])
def test_run_argument_errors_are_one_line_exit_2(tmp_path: Path, capsys, argv, needle) -> None:
    code = main(["run", str(ROOT / "scenarios" / "quickstart.yaml"), "--out",
                 str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_out_naming_a_file_is_exit_2(tmp_path: Path, capsys) -> None:
    (tmp_path / "f").write_text("x")
    assert main(["run", str(ROOT / "scenarios" / "quickstart.yaml"), "--out",
                 str(tmp_path / "f")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_version(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.startswith("gridtwin ")


def test_a_resumable_stopped_run_is_not_cleared_without_force(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text(json.dumps(
        {"status": "interrupted", "scenario_hash": "a", "stopped_at_time_s": 900}))
    (tmp_path / "checkpoint.json").write_text("{}")
    with pytest.raises(OutDirError, match="twin run --resume"):
        prepare_out_dir(tmp_path, scenario_hash="a")
    prepare_out_dir(tmp_path, scenario_hash="a", force=True)
    assert list(tmp_path.iterdir()) == []


def test_a_ctrl_c_swallowed_inside_the_world_still_interrupts_the_run() -> None:
    """mosaik's scheduler catches KeyboardInterrupt in its own coroutine and returns
    normally; the run must still stop as interrupted, never look complete."""
    import os
    import signal

    from twin.lifecycle import interrupts_not_swallowed

    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), interrupts_not_swallowed():
        try:  # what mosaik does
            os.kill(os.getpid(), signal.SIGINT)
        except KeyboardInterrupt:
            pass
    assert signal.getsignal(signal.SIGINT) is before
    with interrupts_not_swallowed():  # no Ctrl-C: nothing raised
        pass
