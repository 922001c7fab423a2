"""The pilot scenarios (scenarios/pilots/): each validates and runs a short horizon, through
``twin compare`` (the sweep runner, two workers), and each shows the mechanism it is about.

One ``twin compare`` of all pilots, shortened to a few hours around the pilot's action
(midday for PV trading, the evening for EV charging and demand response), is shared by the
tests of this module.
"""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from twin.cli import main
from twin.kpis.metrics import KPI_COLUMNS
from twin.scenario import ScenarioError, load_scenario, scenario_from_dict

ROOT = Path(__file__).resolve().parents[2]
PILOTS = ROOT / "scenarios" / "pilots"

#: pilot -> (start hour, hours) of its short test window on its own day
WINDOWS = {
    "brooklyn_microgrid": (10, 3),
    "scanergy": (10, 3),
    "tennet_ev": (18, 4),
    "share_and_charge": (17, 3),
    "shekou": (7, 3),
    "shanghai_vpp": (16, 4),
    "wuhan_consortium": (0, 1),
    "rwa_vpp": (10, 3),
    "israel_microgrid": (7, 3),
}


def _short(name: str, tmp: Path) -> Path:
    """The pilot with its test window as a YAML file in ``tmp``."""
    data = yaml.safe_load((PILOTS / f"{name}.yaml").read_text())
    hour, hours = WINDOWS[name]
    if "game" not in data:
        start = datetime.fromisoformat(str(data.get("start", "2016-06-15T00:00:00Z")).replace("Z", "+00:00"))
        data["start"] = start.replace(hour=hour).isoformat()
        data["duration_s"] = hours * 3600
    scenario_from_dict(data, source=name)  # still valid
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("pilots")
    files = [_short(n, tmp) for n in sorted(WINDOWS)]
    out = tmp / "compare"
    code = main(["compare", *map(str, files), "--out", str(out), "--workers", "2"])
    rows = {r["scenario"]: r for r in pq.read_table(out / "compare.parquet").to_pylist()}
    kpis = {n: json.loads((out / "runs" / n / "kpis.json").read_text()) for n in rows
            if (out / "runs" / n / "kpis.json").is_file()}
    return {"code": code, "out": out, "rows": rows, "kpis": kpis, "files": files}


def test_every_pilot_file_is_listed_and_valid() -> None:
    assert sorted(p.stem for p in PILOTS.glob("*.yaml")) == sorted(WINDOWS)
    readme = (PILOTS / "README.md").read_text()
    for name in WINDOWS:
        s = load_scenario(PILOTS / f"{name}.yaml")
        assert s.name == name
        assert f"## {name}" in readme, f"README.md has no section for {name}"
        if s.game is None:  # every feeder pilot is on a SimBench feeder with its profiles
            assert s.grid.kind == "simbench" and s.agents.households.profiles == "simbench"
            assert s.duration_s == 86_400 and s.market.interval_s == 900


def test_every_pilot_runs_and_conserves_tokens(compared: dict[str, Any]) -> None:
    rows = compared["rows"]
    assert set(rows) == set(WINDOWS)
    failed = {n: r["error"] for n, r in rows.items() if r["status"] != "complete"}
    assert not failed
    assert compared["code"] == 0
    for name, k in compared["kpis"].items():
        assert k["tokens_conserved"] == 1.0, name
        r = rows[name]  # energy on the market or through a service
        assert r["energy_traded_kwh"] + (r["service_energy_kwh"] if r["kind"] == "feeder" else 0) > 0, name


def test_compare_table_has_every_kpi(compared: dict[str, Any]) -> None:
    out, rows = compared["out"], compared["rows"]
    for name, r in rows.items():
        assert set(KPI_COLUMNS) <= set(r), name
        if r["kind"] == "feeder":
            assert 0 <= r["self_sufficiency"] <= 1 and r["peak_import_kw"] > 0, name
            assert 0 <= r["fairness_gini"] <= 1 and r["participants"] >= 1, name
        # gas exactly where there is a chain
        assert math.isnan(r["gas_per_kwh"]) == (r["ledger"] != "chain"), name
    md = (out / "compare.md").read_text()
    assert all(n in md for n in rows) and "fairness_gini" in md and "NA" in md
    assert (out / "compare.csv").read_text().count("\n") == len(rows) + 1


def test_brooklyn_trades_on_chain(compared: dict[str, Any]) -> None:
    r = compared["rows"]["brooklyn_microgrid"]
    assert r["ledger"] == "chain" and r["mechanism"] == "uniform"
    assert r["gas_per_kwh"] > 0 and r["chain_cost_per_kwh"] > 0


def test_tennet_pays_ev_owners_for_paused_charging(compared: dict[str, Any]) -> None:
    k = compared["kpis"]["tennet_ev"]
    assert k["dr_events"] > 0 and k["dr_paid"] > 0
    # owners' income from DR: the pay less the non-delivery penalties kept from their bonds
    assert k["dr_penalties"] > 0
    assert compared["rows"]["tennet_ev"]["service_income"] == pytest.approx(
        k["dr_paid"] - k["dr_penalties"])
    # home batteries (households.battery.dr) commit beside the EVs and are paid
    run = compared["out"] / "runs" / "tennet_ev"
    agents = pq.read_table(run / "agents.parquet").to_pandas()
    batteries = set(agents[(agents["kind"] == "household") & agents["soc"].notna()]["device_id"])
    evs = set(agents[agents["kind"] == "ev"]["device_id"])
    payouts = pq.read_table(run / "dr_payouts.parquet").to_pandas()
    assert batteries and set(payouts["device_id"]) & batteries and set(payouts["device_id"]) & evs
    assert payouts[payouts["device_id"].isin(batteries)]["amount"].sum() > 0


def test_rwa_vpp_distributes_storage_revenue_to_token_holders(compared: dict[str, Any]) -> None:
    k, r = compared["kpis"]["rwa_vpp"], compared["rows"]["rwa_vpp"]
    assert k["asset_revenue_distributed"] > 0
    # 15 storage systems x 4 investors are participants besides the 40 meters' owners
    assert r["participants"] >= 60


def test_rwa_vpp_earns_from_frequency_regulation_and_splits_revenue_by_stream(
        compared: dict[str, Any]) -> None:
    """The pilot's third stream (the paper: ~48 / 32 / 20 % market / regulation / DR): the
    TSO procures regulation from the VPP every interval of the window and pays it."""
    k, r = compared["kpis"]["rwa_vpp"], compared["rows"]["rwa_vpp"]
    assert k["anc_capacity_mw_h"] > 0 and k["ancillary_revenue"] > 0
    assert r["ancillary_revenue"] == k["ancillary_revenue"]  # a twin compare row
    shares = [k[f"revenue_share_{s}"] for s in ("market", "demand_response", "ancillary")]
    assert abs(sum(shares) - 1) < 1e-9 and k["revenue_share_ancillary"] > 0


def test_rwa_vpp_storage_keeps_a_dr_reserve_and_is_paid_for_dr(tmp_path: Path) -> None:
    """The evening's first DR calls (15:00 UTC): the storage systems held their DR reserve
    until then, commit what they can deliver and are paid on their metered reduction."""
    data = yaml.safe_load((PILOTS / "rwa_vpp.yaml").read_text())
    data["start"], data["duration_s"] = "2016-06-15T14:45:00+00:00", 3600
    sc = scenario_from_dict(data, source="rwa_vpp")
    reserve = sc.agents.community_storage.dr_reserve_soc
    assert reserve > sc.agents.community_storage.soc_min
    bad = {**data, "agents": {**data["agents"], "community_storage": {
        **data["agents"]["community_storage"], "dr_reserve_soc": 0.99}}}
    with pytest.raises(ScenarioError, match=r"agents\.community_storage: dr_reserve_soc .* soc_max"):
        scenario_from_dict(bad)
    out = tmp_path / "run"
    assert main(["run", str(_write(tmp_path, data)), "--out", str(out)]) == 0
    k = json.loads((out / "kpis.json").read_text())
    events = pq.read_table(out / "dr_events.parquet").to_pandas()
    payouts = pq.read_table(out / "dr_payouts.parquet").to_pandas()
    agents = pq.read_table(out / "agents.parquet").to_pandas()
    assert k["dr_events"] >= 1 and k["dr_paid"] > 0 and k["dr_reduction_kwh"] > 0
    storage = agents[agents["kind"] == "storage"]
    first = int(events["interval"].min())
    before = storage[storage["time_s"] < first * sc.market.interval_s]
    assert len(before) and (before["soc"] >= reserve - 1e-9).all()  # not sold below the reserve
    paid = payouts[payouts["amount"] > 0]
    assert set(paid["device_id"]) <= set(storage["device_id"])
    assert paid["amount"].sum() == events["paid"].sum() == round(k["dr_paid"] * 1_000_000)
    # a commitment never exceeds what the battery could deliver at its power limit
    cap_wh = sc.agents.community_storage.power_kw * 1000 * sc.market.interval_s / 3600
    assert (payouts["committed_wh"] <= cap_wh).all()


def _write(tmp: Path, data: dict[str, Any]) -> Path:
    path = tmp / f"{data['name']}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_scanergy_pays_green_surplus_in_tokens(compared: dict[str, Any]) -> None:
    k, r = compared["kpis"]["scanergy"], compared["rows"]["scanergy"]
    assert r["services"] == "green_exchange" and k["trades"] == 0  # no P2P auction
    assert k["green_tokens_minted"] > 0 and k["green_exchange_dso_paid"] > 0
    # the tokens sold to the DSO are the prosumers' only revenue (feed-in tariff 0)
    assert r["prosumer_revenue"] == pytest.approx(k["green_exchange_dso_paid"])


def test_scanergy_token_trades_at_a_market_rate(compared: dict[str, Any]) -> None:
    ex = pq.read_table(compared["out"] / "runs" / "scanergy" / "green_exchange.parquet").to_pandas()
    sold = ex[ex["action"] == "sold"]
    assert len(ex[ex["action"] == "priced_buy"]) > 0
    assert sold["price_per_mwh"].nunique() > 1  # the DSO moved the rate during the window
    # every sale paid at the rate posted then: amount = payment(tokens kWh, price)
    assert (sold["amount"] == sold["energy_wh"] * sold["price_per_mwh"] // 1_000_000).all()


def test_israel_microgrid_forecasts_certifies_and_trades(compared: dict[str, Any]) -> None:
    k, r = compared["kpis"]["israel_microgrid"], compared["rows"]["israel_microgrid"]
    assert r["mechanism"] == "uniform" and k["trades"] > 0
    assert 0 < k["forecast_nmae_pv"] < 1 and math.isfinite(k["forecast_nmae_load"])  # gbm forecasts
    assert k["certificates_issued"] > 0 and k["certificates_retired"] == k["certificates_issued"]


def test_share_and_charge_drivers_pay_hosts_on_chain(compared: dict[str, Any]) -> None:
    k, r = compared["kpis"]["share_and_charge"], compared["rows"]["share_and_charge"]
    assert r["ledger"] == "chain" and k["charging_sessions"] > 0 and k["charging_paid"] > 0
    assert r["service_energy_kwh"] >= k["charging_energy_kwh"]


def test_share_and_charge_drivers_choose_among_owner_priced_chargers(compared: dict[str, Any]) -> None:
    run = compared["out"] / "runs" / "share_and_charge"
    tariffs = pq.read_table(run / "charger_tariffs.parquet").to_pandas()
    sessions = pq.read_table(run / "charging_sessions.parquet").to_pandas()
    assert tariffs.groupby("charger")["price_per_mwh"].first().nunique() > 1  # hosts' own prices
    paid = sessions[sessions["status"] == "paid"]
    assert len(paid) and not set(paid["driver"]) & set(paid["owner"])  # visiting drivers
    for _, g in paid.sort_values("interval").groupby("driver"):  # one car: one session at a time
        assert (g["interval"].to_numpy()[1:] > g["end_interval"].to_numpy()[:-1]).all()


def test_shekou_buyers_get_green_certificates(compared: dict[str, Any]) -> None:
    k, r = compared["kpis"]["shekou"], compared["rows"]["shekou"]
    assert r["mechanism"] == "cda"
    assert k["certified_renewable_kwh"] > 0 and k["certificates_retired"] == k["certificates_issued"]


def test_shanghai_vpp_forecasts_and_rewards(compared: dict[str, Any]) -> None:
    k = compared["kpis"]["shanghai_vpp"]
    assert k["green_currency_minted"] > 0 and k["dr_events"] > 0
    assert math.isfinite(k["forecast_nmae_load"]) and math.isfinite(k["forecast_nmae_pv"])


def test_wuhan_game_maps_what_exists(compared: dict[str, Any]) -> None:
    r = compared["rows"]["wuhan_consortium"]
    assert r["kind"] == "game"
    assert r["prosumer_revenue"] == pytest.approx(r["consumer_cost"])  # the buyer pays the units
    assert 0 <= r["fairness_gini"] <= 1 and r["participants"] == 3
    assert math.isnan(r["self_sufficiency"])  # no prosumers: nothing to be self-sufficient in
    # the DSO security check runs the grand coalition's dispatch on SimBench 1-HV-urban
    assert r["voltage_violations"] == 0 and r["peak_import_kw"] > 0


def test_compare_again_on_two_pilots_reuses_the_runs(compared: dict[str, Any],
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    files = [f for f in compared["files"] if f.stem in {"tennet_ev", "wuhan_consortium"}]
    out = compared["out"]
    assert main(["compare", *map(str, files), "--out", str(out), "--workers", "2"]) == 0
    captured = capsys.readouterr()
    assert "2 already complete, 0 to run" in captured.err
    table = pq.read_table(out / "compare.parquet")
    assert table.column("scenario").to_pylist() == ["tennet_ev", "wuhan_consortium"]
    assert "| tennet_ev | wuhan_consortium |" in captured.out


def test_bad_input_names_the_fields(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # a DR pilot on a feeder without flexible devices, an asset the feeder lacks
    data = yaml.safe_load((PILOTS / "tennet_ev.yaml").read_text())
    data["agents"]["evs"]["count"] = 0
    data["agents"]["community_storage"]["count"] = 0
    data["agents"]["households"]["battery"] = {"share": 0.0}  # no home batteries answering DR
    with pytest.raises(ScenarioError, match=r"market\.services\.demand_response\.enabled"):
        scenario_from_dict(data)
    rwa = yaml.safe_load((PILOTS / "rwa_vpp.yaml").read_text())
    rwa["agents"]["community_storage"]["count"] = 12
    with pytest.raises(ScenarioError) as err:
        scenario_from_dict(rwa)
    assert all(f"market.services.assets.{i}.asset" in str(err.value) for i in (12, 13, 14))
    # a VPP of 25 PV plants on 20 PV participants would silently shrink: an error instead
    short_pv = yaml.safe_load((PILOTS / "rwa_vpp.yaml").read_text())
    short_pv["agents"]["households"]["pv"]["share"] = 0.5
    with pytest.raises(ScenarioError, match=r"vpp\.members \(25\) exceeds the 20 PV households"):
        scenario_from_dict(short_pv)
    # twin compare lists every problem of every file and runs nothing
    bad = tmp_path / "rwa_vpp.yaml"
    bad.write_text(yaml.safe_dump(rwa))
    twin_ = tmp_path / "twin.yaml"
    twin_.write_text(yaml.safe_dump(yaml.safe_load((PILOTS / "wuhan_consortium.yaml").read_text())))
    dup = tmp_path / "dup.yaml"
    dup.write_text(twin_.read_text())
    assert main(["compare", str(bad), str(twin_), str(dup), "--out", str(tmp_path / "out")]) == 2
    err_text = capsys.readouterr().err
    assert "market.services.assets.14.asset" in err_text
    assert "names must be distinct" in err_text
    assert not (tmp_path / "out").exists()


def test_a_failing_run_keeps_its_row_and_fails_the_command(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    # participants with (almost) no money cannot escrow their first bids: the run fails
    broke = {"name": "broke", "start": "2016-06-15T18:00:00Z", "duration_s": 3600,
             "grid": {"kind": "cigre_lv"},
             "agents": {"households": {"count": 10, "profiles": "synthetic"}, "evs": {"count": 5}},
             "market": {"ledger": "reference", "initial_balance": 0.001}}
    (tmp_path / "broke.yaml").write_text(yaml.safe_dump(broke))
    out = tmp_path / "out"
    code = main(["compare", str(tmp_path / "broke.yaml"), str(PILOTS / "wuhan_consortium.yaml"),
                 "--out", str(out), "--workers", "2"])
    assert code == 1
    rows = {r["scenario"]: r for r in pq.read_table(out / "compare.parquet").to_pylist()}
    assert rows["wuhan_consortium"]["status"] == "complete"
    assert rows["broke"]["status"] == "failed" and "InsufficientBalance" in rows["broke"]["error"]
    assert all(math.isnan(rows["broke"][k]) for k in KPI_COLUMNS)
    assert "twin: compare: broke:" in capsys.readouterr().err
