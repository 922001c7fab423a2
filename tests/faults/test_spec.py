"""Bad fault input: scenario errors with field paths before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from twin.cli import main
from twin.scenario import ScenarioError, load_scenario, scenario_from_dict

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "scenarios" / "faults_demo.yaml"


def _demo(**faults: object) -> dict:
    """The demo day on the reference ledger (its chain section needs a chain)."""
    data = yaml.safe_load(DEMO.read_text())
    data["market"]["ledger"] = "reference"
    data["faults"].pop("chain")
    data["faults"].update(faults)
    return data


def _errors(data: dict) -> dict[str, str]:
    with pytest.raises(ScenarioError) as exc:
        scenario_from_dict(data, source="demo.yaml")
    return dict(exc.value.errors)


def test_demo_is_valid_and_keeps_other_digests() -> None:
    s = scenario_from_dict(_demo())
    assert s.faults is not None and s.faults.reconfiguration.allowed and s.faults.data is not None
    full = load_scenario(DEMO)  # the whole demo, on chain with its outage and island books
    assert full.market.ledger == "chain" and full.faults is not None
    assert full.faults.islands.market == "per_island" and full.faults.data is not None
    assert full.faults.chain is not None and full.faults.chain.outages[0].duration_s == 300
    q = load_scenario(ROOT / "scenarios" / "quickstart.yaml")
    assert q.faults is None and '"faults"' not in q.canonical_json()


def test_negative_repair_and_missing_timing_name_their_fields() -> None:
    errs = _errors(_demo(lines=[{"element": 39, "at_s": [100], "repair": {"mean_s": -5}},
                                {"element": 39}]))
    assert "faults.lines.0.repair.mean_s" in errs and "greater than 0" in errs["faults.lines.0.repair.mean_s"]
    assert any(k.startswith("faults.lines.1") and "rate_per_day" in v for k, v in errs.items())


def test_devices_that_do_not_exist() -> None:
    errs = _errors(_demo(devices=[{"kind": "inverter_trip", "target": "household_99", "at_s": [0]},
                                  {"kind": "charger_outage", "target": "household_1", "at_s": [0]}]))
    assert "does not exist (40 household agents)" in errs["faults.devices[0].target"]
    assert "ev_<i>" in errs["faults.devices[1].target"]


def test_island_trading_needs_a_grid_forming_unit_on_either_ledger() -> None:
    data = _demo()
    del data["faults"]["data"]  # islands only
    data["agents"]["community_storage"]["count"] = 0
    data["market"]["ledger"] = "chain"
    errs = _errors(data)
    assert "needs a grid-forming unit" in errs["faults.islands.grid_forming"]
    assert "faults.islands.market" not in errs  # island books clear on chain too
    data["faults"]["islands"]["market"] = "none"  # no island trading demanded: fine
    assert scenario_from_dict(data).faults.islands.market == "none"


def test_targets_missing_from_the_feeder_fail_validate_and_run(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    data = _demo(lines=[{"element": 99, "at_s": [100]}], transformers=[{"element": 3, "at_s": [100]}])
    data["faults"]["reconfiguration"]["ties"] = [{"from_bus": 39, "to_bus": 500, "like_line": 41}]
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "faults.lines[0].element: no line 99 in the feeder (it has 42: 0..41)" in err
    assert "faults.transformers[0].element: no trafo 3" in err
    assert "faults.reconfiguration.ties[0].to_bus: no bus 500" in err
    assert main(["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    assert "no line 99" in capsys.readouterr().err


def test_grid_faults_need_the_balanced_engine() -> None:
    data = _demo()
    data["grid"]["phases"] = 3
    assert "grid.phases: 1" in _errors(data)["faults"]
