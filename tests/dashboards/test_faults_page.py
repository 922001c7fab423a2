"""The Resilience page on a `twin run` with faults: cards, charts with unit-titled axes, events."""

from __future__ import annotations

from pathlib import Path

import pytest
from dashboard_fixtures import make_run
from streamlit.testing.v1 import AppTest

from twin.kpis.reliability import COMPARED_NOTES
from twin.results import RunRecorder, write_json_atomic

APP = str(Path(__file__).resolve().parents[2] / "dashboards" / "app.py")


def test_resilience_page_shows_the_runs_faults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path / "faulted")
    rec = RunRecorder(run)
    rec.add("faults", [
        {"time_s": 900.0, "interval": 1, "kind": "fault", "element_kind": "line", "element": 2, "fault_id": 1,
         "fault_kind": "line"},
        {"time_s": 2700.0, "interval": 3, "kind": "repair", "element_kind": "line", "element": 2, "fault_id": 1,
         "fault_kind": "line"}])
    rec.add("interruptions", [{"time_s": 900.0, "end_s": 2700.0, "interval": 1, "customers_off": 2,
                               "new_interruptions": 2, "ens_wh": 500.0, "dead_buses": 2}])
    rec.add("outages", [{"time_s": t, "interval": t // 900, "customers_shed": 1, "customers_total": 5,
                         "new_interruptions": int(t == 3600), "ens_wh": 100.0, "pv_curtailed_wh": 0.0,
                         "dead_buses": 0, "island_buses": 6, "islands": 1} for t in (3600, 4500)])
    rec.add("islands", [{"time_s": t, "interval": t // 900, "island": 1, "buses": 6, "customers": 5,
                         "demand_mw": 0.02, "generation_mw": 0.0, "gf_p_mw": 0.015, "gf_soc": 0.8 - t / 1e5,
                         "shed_classes": 1, "collapsed": False, "pv_curtailed_mw": 0.0} for t in (3600, 4500)])
    rec.add("island_market", [{"time_s": t, "interval": t // 900, "island": 1, "devices": 5, "trades": 3,
                               "volume_wh": 700, "price_per_mwh": 190_000_000} for t in (3600, 4500)])
    rec.close()
    write_json_atomic({"saidi_min": 12.0, "saifi": 0.6, "energy_not_served_faults_kwh": 0.7,
                       "island_survival_min": 30.0, "island_energy_traded_kwh": 1.4, "mttr_line_min": 30.0,
                       "data_acquisition_rate": 0.99, "market_availability": 1.0},
                      run / "kpis.json")
    monkeypatch.setenv("TWIN_RUN_DIR", str(run))
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page("views/resilience.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Faults in this run" in [h.value for h in at.subheader]
    cards = {m.label: m for m in at.metric}
    assert cards["SAIDI"].value == "12.0 min" and cards["Data acquisition"].value == "99.00%"
    # each card's help is the KPI's one definition (twin/kpis/reliability.py)
    assert cards["SAIDI"].help == COMPARED_NOTES["saidi_min"]
    assert cards["Tx latency p99"].value == "—"
    specs = [c.proto.spec for c in at.get("vega_lite_chart")]
    assert len(specs) == 4
    for title in ("customers off (count)", "grid-forming battery power, supplied (kW)",
                  "grid-forming battery state of charge (%)", "book clearing price (currency/MWh)",
                  "time since start (h)"):
        assert any(title in s for s in specs), title
    assert len(at.dataframe) == 1
