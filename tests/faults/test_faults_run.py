"""`twin run` with faults: a lateral fault with a tie, a 2 h island holding its own market.

Four hours of the faults demo (17:00-21:00): the lateral line 39 faults at 17:00 (the tie
closes 5 minutes later, repaired after 30 minutes) and the upstream grid is lost 18:00-20:00.
Checked on the results folder: the grid-forming battery is the island's slack (its power in
the power flow = the island's balance + losses), its state of charge follows what it
delivered, meters and settlements agree, tokens are conserved, the island book traded, and
the reliability KPIs read what happened.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from twin.cli import main

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("faults")
    data = yaml.safe_load((ROOT / "scenarios" / "faults_demo.yaml").read_text())
    data.update(name="faults_e2e", start="2016-06-15T17:00:00Z", duration_s=4 * 3600)
    data["market"]["ledger"] = "reference"  # the demo's grid faults (its data and chain
    f = data["faults"]                      # faults have tests of their own)
    del f["data"], f["chain"]
    data["agents"]["community_storage"]["count"] = 1  # one battery holds the whole island here
    f["lines"] = [{"element": 39, "at_s": [0], "repair": {"mean_s": 1800}}]
    f["upstream"] = [{"start_s": 3600, "duration_s": 7200}]
    f["devices"] = [{"kind": "charger_outage", "target": "ev_2", "at_s": [0], "repair": {"mean_s": 3600}}]
    path = tmp / "faults.yaml"
    path.write_text(yaml.safe_dump(data))
    assert main(["run", str(path), "--out", str(tmp / "out"), "--no-progress"]) == 0
    return tmp / "out"


def _t(out: Path, name: str):  # type: ignore[no-untyped-def]
    return pq.read_table(out / f"{name}.parquet").to_pandas()


def test_island_physics_and_battery(run: Path) -> None:
    isl, fg = _t(run, "islands"), _t(run, "fault_grid").set_index("time_s")
    assert sorted(isl.interval) == list(range(4, 12)) and (isl.island == 1).all()
    for r in isl.itertuples():
        g = fg.loc[r.time_s]
        # the battery is the island's slack: the balance it was given plus the losses
        assert g.grid_forming_p_mw == pytest.approx(r.gf_p_mw + g.line_pl_mw, abs=2e-4)
        assert g.ext_grid_p_mw == pytest.approx(0.0, abs=1e-9)
    agents = _t(run, "agents")
    agents["interval"] = agents.time_s // 900
    sto = agents[agents.kind == "storage"].set_index("interval")
    cap_wh = 100_000.0
    eta = np.sqrt(0.92)
    for r in isl.itertuples():
        e0 = sto.soc[r.interval - 1] * cap_wh
        e1 = sto.soc[r.interval] * cap_wh
        delivered = r.gf_p_mw * 0.25 * 1e6
        assert e0 - e1 == pytest.approx(delivered / eta if delivered > 0 else delivered * eta, abs=1e-6)
        assert sto.metered_wh[r.interval] == round(-r.gf_p_mw * 0.25 * 1e6)


def test_meters_settlements_tokens_and_market(run: Path) -> None:
    agents, s = _t(run, "agents"), _t(run, "settlements")
    agents["interval"] = agents.time_s // 900
    m = agents.set_index(["interval", "device_id"]).metered_wh
    for r in s.itertuples():
        assert r.metered_wh == m[(r.interval, r.device_id)]  # what was settled is what was metered
    assert not s.duplicated(["interval", "device_id"]).any()
    manifest = json.loads((run / "manifest.json").read_text())
    assert manifest["status"] == "complete" and manifest["tokens"]["conserved"]
    im = _t(run, "island_market")
    assert (im[im.island == 1].trades > 0).any()
    trades = _t(run, "trades")
    assert not trades.empty
    events = _t(run, "faults")
    assert {"fault", "isolate", "tie_close", "tie_open", "repair", "upstream_loss", "upstream_restore",
            "device_fault", "device_repair"} <= set(events.kind)


def test_reliability_kpis(run: Path) -> None:
    k = json.loads((run / "kpis.json").read_text())
    intr = _t(run, "interruptions")
    # the tie restores the lateral after 5 minutes: only those minutes count for it
    first = intr.iloc[0]
    assert first.end_s - first.time_s == 300 and first.customers_off > 0
    assert k["mttr_line_min"] == pytest.approx(30.0) and k["mttr_upstream_min"] == pytest.approx(120.0)
    assert k["mttr_charger_outage_min"] == pytest.approx(60.0)
    assert k["saidi_min"] > 0 and k["saifi"] > 0 and k["customers_interrupted"] >= first.customers_off
    assert k["energy_not_served_kwh"] >= k["energy_not_served_faults_kwh"] > 0
    assert k["island_energy_traded_kwh"] > 0 and k["island_trades"] > 0
    assert k["island_survival_min"] == pytest.approx(120.0)
    assert k["tokens_conserved"] == 1.0


def test_twin_compare_reads_the_same_reliability_kpis(run: Path) -> None:
    """One definition: the KPIs ``twin compare`` computes from the folder are kpis.json's."""
    from twin.compare import DEFAULT_PRICING, run_kpis
    from twin.kpis.reliability import RELIABILITY_COLUMNS
    from twin.scenario import scenario_from_dict

    k = json.loads((run / "kpis.json").read_text())
    scenario = scenario_from_dict(json.loads((run / "manifest.json").read_text())["scenario"])
    got = run_kpis(run, scenario, pricing=DEFAULT_PRICING)
    shown = [c for c in RELIABILITY_COLUMNS if c in k]
    assert {"saidi_min", "island_trades", "mttr_line_min"} <= set(shown)
    assert {c: got[c] for c in shown} == pytest.approx({c: k[c] for c in shown})
