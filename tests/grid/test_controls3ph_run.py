"""A three-phase run with frequency-watt and the gang-operated OLTC (grid.phases: 3), and
their scenario errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from twin.scenario import ScenarioError, load_scenario

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "scenarios/regression/lv_unbalanced_voltvar/scenario.yaml"


def _write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_over_frequency_curtails_pv_and_the_oltc_steps_in_a_three_phase_run(tmp_path: Path) -> None:
    from twin.grid.feeders import build_feeder
    from twin.run import run_scenario

    text = BASE.read_text().replace("volt_watt: {}}", "volt_watt: {}, freq_watt: {}}")
    text = text.replace("count: 55", "count: 24").replace("count: 20", "count: 0")
    # perfect forecasts: the DSO's planned schedule is what the agents dispatch
    text = text.replace("    count: 24\n", "    count: 24\n    forecast_error: 0.0\n")
    text = text.replace("  vuf_max_percent: 2.0\n", "  vuf_max_percent: 2.0\n"
                        "  oltc: {v_set_pu: 1.0, delay_s: 0, control_phase: max}\n")
    text = text.replace("agents:\n", "agents:\n  tso:\n    frequency: {source: series, series_hz: [50.0, 50.536]}\n")
    sc = load_scenario(_write(tmp_path, text)).model_copy(update={"duration_s": 2 * 900})
    out = run_scenario(sc, out_dir=tmp_path / "run", progress=False)
    grid = pq.read_table(tmp_path / "run" / "grid.parquet").to_pandas().sort_values("time_s")
    regs = pq.read_table(tmp_path / "run" / "regulators.parquet").to_pandas()
    # phase voltages high at noon: the changer (no delay) raises the HV tap after the first solve
    assert grid.oltc_tap.tolist()[0] == 0 and grid.oltc_tap.tolist()[1] > 0
    assert set(regs.regulator) == {"grid.oltc"} and regs.tap.tolist() == grid.oltc_tap.tolist()
    # the DSO checked interval 1 at the grid's moved tap (mosaik `taps`): nothing curtailed, so
    # its state is the cleared schedule's, and its phase voltages are the grid's (1e-9 pu)
    dso = pq.read_table(tmp_path / "run" / "dso.parquet").to_pandas().sort_values("time_s")
    assert dso.checks.iloc[1] >= 1 and dso.curtailed_wh.iloc[1] == 0
    for col in ("vm_min_pu", "vm_max_pu", "vuf_max_percent"):
        assert dso[col].iloc[1] == pytest.approx(grid[col].iloc[1], abs=1e-9), col
    # 50.536 Hz: 0.5 Hz beyond the dead band at 5 % droop takes 0.2 pu of each PV's rating,
    # down to 0: sum(min(available, 0.2 kWp)) over the PV (volt-watt is idle, voltages <= 1.05)
    feeder = build_feeder(scenario=sc, rng=np.random.default_rng(sc.seed))
    agents = pq.read_table(tmp_path / "run" / "agents.parquet").to_pandas()
    hh = agents[(agents.time_s == 900) & (agents.kind == "household")]
    kwp = feeder.household_pv_kwp[hh.agent.str.removeprefix("household_").astype(int).to_numpy()]
    avail_mw = hh.pv_available_wh.to_numpy() * 4e-6
    cut = grid.der_curtailed_mw.to_numpy()
    assert cut[0] == pytest.approx(0.0, abs=1e-12) and grid.vm_max_pu.iloc[1] < 1.06
    assert cut[1] == pytest.approx(np.minimum(avail_mw, 0.2 * kwp / 1000.0).sum(), abs=1e-9)
    assert cut[1] > 0.5 * grid.sgen_p_mw.iloc[1] and out.kpis["curtailed_kwh"] >= 0


def test_bad_oltc_and_phase_settings_name_the_field(tmp_path: Path) -> None:
    oltc = "  vuf_max_percent: 2.0\n"
    cases = [  # (scenario, the line added after vuf_max_percent, the field path named)
        (BASE, "  oltc: {control_phase: d}\n", "grid.oltc.control_phase"),
        (ROOT / "scenarios/lv_unbalanced_balanced.yaml", "  oltc: {control_phase: a}\n", "grid.oltc.control_phase"),
        (ROOT / "scenarios/ieee13_opendss.yaml", "  oltc: {}\n", "grid.oltc"),
        (BASE, "  oltc: {delay_s: -1}\n", "grid.oltc.delay_s"),
    ]
    for k, (src, line, path) in enumerate(cases):
        text = src.read_text().replace("deck: decks/", f"deck: {ROOT}/scenarios/decks/")
        anchor = oltc if oltc in text else "  vuf_max_percent: 3.0\n"
        assert anchor in text
        with pytest.raises(ScenarioError) as exc:
            load_scenario(_write(tmp_path, text.replace(anchor, anchor + line), f"bad_oltc_{k}.yaml"))
        assert path in [q for q, _ in exc.value.errors], (k, exc.value.errors)
