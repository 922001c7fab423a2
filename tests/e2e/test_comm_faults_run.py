"""``twin run`` with faults, end to end: an RPC outage longer than faults.chain.deadline_s
stops the run cleanly (exit 75, manifest interrupted and resumable) and ``--resume``
completes it with every trade once and the uninterrupted run's results; scenario errors of
faults name their field paths."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from twin.cli import EXIT_CHAIN_OUTAGE, main
from twin.results import read_parquet
from twin.scenario import ScenarioError, scenario_from_dict

ROOT = Path(__file__).resolve().parents[2]
N_INTERVALS = 6


def _scenario(tmp: Path, **faults: object) -> Path:
    data = yaml.safe_load((ROOT / "scenarios" / "quickstart.yaml").read_text())
    data.update(name="faults_e2e", start="2016-06-15T10:00:00Z", duration_s=N_INTERVALS * 900,
                faults=faults)
    data["grid"] = {"kind": "cigre_lv"}
    data["agents"]["households"].update(count=8, profiles="synthetic")
    data["agents"]["evs"]["count"] = 2
    path = tmp / "faults_e2e.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_bad_fault_settings_are_scenario_errors_with_paths() -> None:
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict({"name": "x", "market": {"ledger": "reference"}, "faults": {
            "data": {"loss_rate": -0.01, "duplicate_rate": 1.5, "delay_rate": 0.1,
                     "polling": {"retries": 12, "retry_interval_s": 60, "deadline_s": 600}},
            "chain": {"drop_rate": -1, "deadline_s": 0}}})
    paths = {p for p, _ in info.value.errors}
    assert {"faults.data.loss_rate", "faults.data.duplicate_rate", "faults.chain.drop_rate",
            "faults.chain.deadline_s"} <= paths
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict({"name": "x", "market": {"ledger": "reference", "interval_s": 900},
                            "faults": {"data": {"delay_rate": 0.1, "polling": {
                                "retries": 12, "retry_interval_s": 60, "deadline_s": 600}},
                                "chain": {"outages": [{"start_s": 99999999, "duration_s": 1}]}}})
    errors = dict(info.value.errors)
    assert "cannot finish before deadline_s" in errors["faults.data.polling.retries"]
    assert "faults.data.delay_s" in errors
    assert "needs market.ledger: chain" in errors["faults.chain"]
    assert "after the run's end" in errors["faults.chain.outages.0.start_s"]
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict({"name": "x", "market": {"ledger": "reference", "interval_s": 300},
                            "faults": {"data": {"polling": {"deadline_s": 300}}}})
    assert "must end before the next interval" in dict(info.value.errors)["faults.data.polling.deadline_s"]


def _wait(out: Path, proc: subprocess.Popen[str], steps: int) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads((out / "checkpoint.json").read_text())["market_steps"] >= steps:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"no checkpoint of {steps} steps (exit {proc.poll()})")


@pytest.mark.slow
def test_reference_run_with_services_and_data_faults_resumes_to_the_uninterrupted_result(
        tmp_path: Path) -> None:
    """SIGTERM after a checkpoint, then --resume: the replay meets the checkpoint's
    fingerprint and the result equals an uninterrupted run's (services and true-ups too)."""
    scen = _scenario(tmp_path, data={"loss_rate": 0.05, "delay_rate": 0.05, "delay_s": 1200})
    data = yaml.safe_load(scen.read_text())
    data["market"].update(ledger="reference", services={
        "demand_response": {"enabled": True}, "certificates": {"enabled": True}})
    data["agents"]["tso"] = {"gap_threshold_kw": 5, "dr_price_per_mwh": 400}
    data["duration_s"] = 12 * 900
    scen.write_text(yaml.safe_dump(data))
    out, ref = tmp_path / "stopped", tmp_path / "whole"
    assert main(["run", str(scen), "--out", str(ref), "--no-progress"]) == 0
    proc = subprocess.Popen([sys.executable, "-m", "twin.cli", "run", str(scen), "--out", str(out),
                             "--no-progress", "--checkpoint-every-intervals", "1"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _wait(out, proc, 4)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "interrupted"
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "complete" and m["chain"]["resumed_from"]["market_steps"] >= 4
    a, b = (json.loads((d / "kpis.json").read_text()) for d in (out, ref))
    a.pop("wall_time_s"), b.pop("wall_time_s")
    assert a == b
    for table in ("trades", "settlements", "trueups", "dr_payouts", "certificates"):
        if (ref / f"{table}.parquet").is_file():
            assert read_parquet(out / f"{table}.parquet").equals(read_parquet(ref / f"{table}.parquet")), table


#: KPIs of the flaky chain itself (latencies, incidents: wall-clock measurements) and the
#: gas (every deployment draws its own EIP-712 salt, so the device signatures in the calldata,
#: and their zero bytes' gas, differ between any two chain runs)
_CHAIN_TIMING = ("wall_time_s", "tx_latency_", "chain_mttr_", "chain_incidents", "mttr_",
                 "gas_per_kwh", "chain_cost_per_kwh")


def _market_kpis(out: Path) -> dict[str, float]:
    kpis = json.loads((out / "kpis.json").read_text())
    return {k: v for k, v in kpis.items() if not k.startswith(_CHAIN_TIMING)}


def _rows(out: Path, table: str, skip: tuple[str, ...] = ()) -> list[dict[str, object]]:
    """A table's rows without transaction hashes and wall-clock columns, in a fixed order."""
    rows = [{k: v for k, v in r.items() if "tx" not in k and "wall" not in k and k not in skip}
            for r in read_parquet(out / f"{table}.parquet").to_pylist()]
    return sorted(rows, key=repr)


@pytest.mark.slow
@pytest.mark.chain
def test_chain_run_with_services_stopped_by_an_outage_resumes_to_the_uninterrupted_result(
        tmp_path: Path) -> None:
    """Demand response, certificates and regulation on chain, 5 % of the transactions
    dropped (resent after 0.4 s), 30 % of the readings lost and some late or duplicated: an outage past the deadline stops the run (exit 75, the
    manifest interrupted and resumable); --resume replays it on a new chain, checked at the
    checkpoint, and ends with the uninterrupted run's trades (none lost, none doubled),
    settlements, service payments and KPIs."""
    chain = {"outages": [{"start_s": 2700, "duration_s": 30}], "deadline_s": 2,
             "resend_after_s": 0.4, "drop_rate": 0.05}
    # lost, late and duplicated readings: true-ups replayed on the new chain, none sent twice
    data_faults = {"loss_rate": 0.3, "delay_rate": 0.1, "delay_s": 1200, "duplicate_rate": 0.1}
    scen = _scenario(tmp_path, chain=chain, data=data_faults)
    data = yaml.safe_load(scen.read_text())
    data["duration_s"] = 5 * 900
    data["market"].update(ledger="chain", services={
        "demand_response": {"enabled": True}, "certificates": {"enabled": True},
        "ancillary": {"enabled": True, "requested_kw": 20}})
    data["agents"]["tso"] = {"gap_threshold_kw": 5, "dr_price_per_mwh": 400}
    data["agents"]["vpp"] = {"members": 2}
    scen.write_text(yaml.safe_dump(data))
    whole_scen = tmp_path / "whole.yaml"  # the same day on a chain that never fails
    whole_scen.write_text(yaml.safe_dump({**data, "faults": {"data": data_faults}}))
    out, whole = tmp_path / "stopped", tmp_path / "whole"
    assert main(["run", str(whole_scen), "--out", str(whole), "--no-progress"]) == 0
    code = main(["run", str(scen), "--out", str(out), "--no-progress",
                 "--checkpoint-every-intervals", "1"])
    assert code == EXIT_CHAIN_OUTAGE == 75
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "interrupted" and m["resumable"] is True
    assert "chain outage" in m["error"] and m["stopped_at_time_s"] <= 2700
    point = json.loads((out / "checkpoint.json").read_text())
    assert point["ledger"] == "chain" and point["replay"] == "fresh" and point["market_steps"] >= 2
    assert main(["run", "--resume", str(out), "--no-progress"]) == 0
    m = json.loads((out / "manifest.json").read_text())
    assert m["status"] == "complete" and m["tokens"]["conserved"] is True
    assert m["chain"]["resumed_from"] == {"market_steps": point["market_steps"], "replay": "fresh"}
    tables = {p.stem for p in whole.glob("*.parquet")}
    services = {"dr_events", "dr_payouts", "certificates", "regulation", "regulation_intervals"} & tables
    assert services, sorted(tables)  # the services did pay something
    ids = sorted(t["trade_id"] for t in read_parquet(out / "trades.parquet").to_pylist())
    assert ids == list(range(1, len(ids) + 1)) and ids  # none lost, none doubled
    assert point["data_faults"]
    trueups = read_parquet(out / "trueups.parquet").to_pylist()
    assert any(r["time_s"] < point["time_s"] for r in trueups)  # replayed, not sent again
    assert any(r["time_s"] >= point["time_s"] for r in trueups)  # live after the resume
    for table in ("orders", "trades", "settlements", "provisional", "trueups", *sorted(services)):
        assert _rows(out, table) == _rows(whole, table), table
    assert _market_kpis(out) == _market_kpis(whole)
    gas = [json.loads((d / "kpis.json").read_text())["gas_per_kwh"] for d in (out, whole)]
    assert gas[0] == pytest.approx(gas[1], rel=1e-3)  # the same transactions, other signatures
    incidents = read_parquet(out / "chain_incidents.parquet").to_pylist()
    assert [r["kind"] for r in incidents].count("outage") == 1  # kept once, not replayed
    kpis = json.loads((out / "kpis.json").read_text())
    assert kpis["market_availability"] == 1.0 and kpis["tx_latency_p99_s"] > 0
