"""The foundation dashboard page renders on a run folder, and explains a missing one."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from twin.results import RunRecorder, write_json_atomic

APP = str(Path(__file__).resolve().parents[2] / "dashboards" / "app.py")


def _fixture_run(tmp_path: Path) -> Path:
    rec = RunRecorder(tmp_path)
    rec.add("bus", [{"time_s": t, "bus": b, "vm_pu": 1.0 - 0.01 * b, "va_degree": 0.0,
                     "p_mw": 0.0, "q_mvar": 0.0} for t in (0, 900) for b in range(3)])
    rec.flush()
    write_json_atomic({"scenario_name": "fx", "status": "complete", "seed": 1,
                       "scenario_hash": "ab" * 32}, tmp_path / "manifest.json")
    write_json_atomic({"energy_traded_kwh": 12.5, "mean_price_per_mwh": 150.0, "vm_min_pu": 0.98,
                       "vm_max_pu": 1.0, "curtailed_kwh": 0.0, "trades": 4.0,
                       "max_line_loading_percent": 40.0, "tokens_conserved": 1.0,
                       "wall_time_s": 1.0}, tmp_path / "kpis.json")
    return tmp_path


def test_page_renders_kpis_and_voltage_chart(tmp_path, monkeypatch):
    monkeypatch.setenv("TWIN_RUN_DIR", str(_fixture_run(tmp_path)))
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    labels = {m.label: m.value for m in at.metric}
    assert labels["Energy traded"] == "12.5 kWh" and labels["Tokens"] == "conserved"
    assert any("Bus voltages" in h.value for h in at.subheader)


@pytest.mark.parametrize("status", ["missing", "interrupted"])
def test_missing_or_partial_folder_gives_a_message(tmp_path, monkeypatch, status):
    if status == "interrupted":
        write_json_atomic({"status": "interrupted", "error": "Ctrl-C", "stopped_at_time_s": 900},
                          tmp_path / "manifest.json")
    monkeypatch.setenv("TWIN_RUN_DIR", str(tmp_path))
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    if status == "missing":
        assert "manifest.json missing" in at.error[0].value
    else:
        assert "interrupted" in at.warning[0].value
