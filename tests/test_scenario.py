"""Scenario validation: every error is reported at once, with file name and field path."""

from __future__ import annotations

from pathlib import Path

import pytest

from twin.cli import main
from twin.scenario import ScenarioError, load_scenario, scenario_from_dict

ROOT = Path(__file__).resolve().parent.parent


def test_quickstart_is_valid_and_sized_as_promised():
    s = load_scenario(ROOT / "scenarios" / "quickstart.yaml")
    assert s.n_intervals == 96 and s.market.interval_s == 900
    assert 30 <= s.agents.households.count <= 60
    assert s.agents.evs.count == 10 and s.agents.community_storage.count >= 1
    assert s.digest() == load_scenario(ROOT / "scenarios" / "quickstart.yaml").digest()


def test_every_error_listed_with_path_and_file():
    bad = {
        "name": "bad name",
        "bogus": 1,
        "agents": {"households": {"count": -1, "pv": {"share": 2.0, "colour": "red"}}},
        "market": {"interval_s": "soon"},
        "grid": {"vm_min_pu": -1},
    }
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict(bad, source="bad.yaml")
    paths = {p for p, _ in info.value.errors}
    assert paths == {
        "name", "bogus", "agents.households.count", "agents.households.pv.share",
        "agents.households.pv.colour", "market.interval_s", "grid.vm_min_pu",
    }
    text = str(info.value)
    assert "bad.yaml: bogus: unknown field" in text
    assert all(line.startswith("bad.yaml: ") for line in text.splitlines()[1:])


@pytest.mark.parametrize(
    ("data", "path", "needle"),
    [
        ({"grid": {"vm_min_pu": 1.1, "vm_max_pu": 1.0}}, "grid", "vm_min_pu"),
        ({"market": {"feed_in_price_per_mwh": 500}}, "market", "feed_in_price_per_mwh"),
        ({"duration_s": 1000}, "duration_s", "multiple of market.interval_s"),
        ({"grid": {"simbench_code": "1-LV-semiurb9--0-sw"}}, "grid.simbench_code", "semiurb4"),
        ({"agents": {"households": {"pv": {"kwp_min": 9, "kwp_max": 3}}}}, "agents.households.pv", "kwp_min"),
        ({"market": {"signing": "daily", "ledger": "reference", "interval_s": 6300},
          "duration_s": 6300}, "market", "dividing a day"),
        ({"market": {"signing": "daily", "ledger": "reference"},
          "faults": {"data": {"loss_rate": 0.01}}}, "market.signing", "faults.data"),
    ],
)
def test_cross_field_rules(data, path, needle):
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict({"name": "x", **data}, source="s.yaml")
    (got_path, msg), = info.value.errors
    assert got_path == path and needle in msg


def test_cross_field_errors_come_with_field_errors_in_one_pass():
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict({"name": "x", "duration_s": 1000, "seed": -1,
                            "agents": {"households": {"count": -3}}}, source="s.yaml")
    assert {p for p, _ in info.value.errors} == {"seed", "agents.households.count", "duration_s"}


def test_not_a_mapping_and_bad_yaml(tmp_path):
    with pytest.raises(ScenarioError, match="top level must be a mapping"):
        scenario_from_dict([1, 2], source="l.yaml")
    f = tmp_path / "broken.yaml"
    f.write_text("name: [unclosed\n")
    with pytest.raises(ScenarioError, match=r"broken\.yaml: not valid YAML"):
        load_scenario(f)
    with pytest.raises(ScenarioError, match="file not found"):
        load_scenario(tmp_path / "missing.yaml")


def test_cli_exit_code_2_lists_every_error(tmp_path, capsys):
    f = tmp_path / "typo.yaml"
    f.write_text("name: t\nagents:\n  evs: {count: -3}\nmarket: {intervl_s: 900}\n")
    assert main(["run", str(f), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "typo.yaml: agents.evs.count" in err and "typo.yaml: market.intervl_s: unknown field" in err
    assert not (tmp_path / "out").exists()
    assert main(["validate", str(ROOT / "scenarios" / "quickstart.yaml")]) == 0


def test_an_opendss_scenario_digest_follows_the_deck_content_not_the_checkout_path(
        tmp_path: Path) -> None:
    import shutil

    from twin.scenario import load_scenario

    here = load_scenario("scenarios/ieee13_opendss.yaml").digest()
    for name in ("one", "two"):
        shutil.copytree("scenarios/decks", tmp_path / name / "decks")
        shutil.copy("scenarios/ieee13_opendss.yaml", tmp_path / name)
    one = tmp_path / "one" / "ieee13_opendss.yaml"
    assert load_scenario(one).digest() == here
    assert load_scenario(tmp_path / "two" / "ieee13_opendss.yaml").digest() == here
    # a redirected file is part of the deck: editing it is another scenario
    codes = tmp_path / "one" / "decks" / "13Bus" / "IEEELineCodes.DSS"
    codes.write_text(codes.read_text() + "\n! edited\n")
    assert load_scenario(one).digest() != here
