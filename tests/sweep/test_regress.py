"""`twin regress`: goldens pass, a perturbed golden fails naming the KPI; shipped cases are valid."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.sweep._specs import BASE
from twin.cli import main
from twin.regress import GOLDEN_FILE, load_cases

ROOT = Path(__file__).resolve().parents[2]


def test_shipped_cases_have_goldens() -> None:
    cases, problems = load_cases(ROOT / "scenarios" / "regression")
    assert problems == []
    names = {c.name for c in cases}
    assert {"quickstart_reference", "quickstart_chain"} <= names
    for c in cases:
        assert not [k for k in c.golden if "wall" in k], f"{c.name}: timings are not regression KPIs"
        if c.command == "run":
            assert "energy_traded_kwh" in c.golden and "tokens_conserved" in c.golden
        else:
            assert {"cases", "upstream_cases"} <= set(c.golden), c.name


@pytest.mark.slow
def test_regress_passes_then_fails_on_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    case = tmp_path / "cases" / "tiny"
    case.mkdir(parents=True)
    (case / "scenario.yaml").write_text(yaml.safe_dump(BASE))
    args = [str(tmp_path / "cases"), "--out", str(tmp_path / "out"), "--workers", "1"]
    assert main(["regress", *args]) == 1  # no golden yet
    assert main(["regress", *args, "--update"]) == 0
    assert "metered_consumption_kwh: added" in capsys.readouterr().out
    assert main(["regress", *args]) == 0
    assert "regress: ok" in capsys.readouterr().out
    golden = json.loads((case / GOLDEN_FILE).read_text())
    golden["kpis"]["metered_consumption_kwh"]["expected"] *= 1.5
    (case / GOLDEN_FILE).write_text(json.dumps(golden))
    assert main(["regress", *args]) == 1
    out = capsys.readouterr()
    assert "DRIFT" in out.out
    assert "metered_consumption_kwh drift" in out.err
    shutil.rmtree(tmp_path / "out")


def test_case_command_comes_from_the_golden_file(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2] / "scenarios" / "regression"
    cases, problems = load_cases(root)
    assert not problems
    commands = {c.name: c.command for c in cases}
    assert commands["resilience_study"] == "resilience"
    assert commands["quickstart_reference"] == "run"
    bad = tmp_path / "bad_case"
    shutil.copytree(root / "quickstart_reference", bad)
    (bad / GOLDEN_FILE).write_text(json.dumps({"command": "simulate", "kpis": {}}))
    _, problems = load_cases(tmp_path)
    assert problems == [f"bad_case/{GOLDEN_FILE}: command: 'simulate' is not one of run, resilience"]
