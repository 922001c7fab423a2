"""grid.opendss.regulators / capacitors: deck -- the deck's RegControls and CapControls act
inside a three-phase run (grid simulator and DSO check), against OpenDSS's own control loop on
the same loads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml

from twin.grid.snapshot3ph import PhaseSnapshot
from twin.scenario import ScenarioError, load_scenario

dss = pytest.importorskip("dss")
ROOT = Path(__file__).resolve().parents[2]
DECK = ROOT / "scenarios" / "decks" / "13Bus" / "IEEE13Nodeckt.dss"
# taps back at 1.0 after the deck's own solve: the run's regulators have to find [9, 6, 9] themselves
RESET = tuple(f"Transformer.Reg{k}.Taps=[1.0 1.0]" for k in (1, 2, 3))
# CapControls on the deck's two capacitors (it has none): both open in the first solve
CAPCTL = ("New CapControl.cc1 Capacitor=Cap1 element=Line.692675 terminal=1 type=kvar ptratio=1 ctratio=1 "
          "ONsetting=500 OFFsetting=-50",
          "New CapControl.cc2 Capacitor=Cap2 element=Line.684611 terminal=2 type=voltage ptratio=20 "
          "ONsetting=109 OFFsetting=113")


def _scenario(tmp_path: Path, **opendss: Any) -> Path:
    d = yaml.safe_load((ROOT / "scenarios" / "ieee13_opendss.yaml").read_text())
    d["grid"]["opendss"] = {"deck": str(DECK), "commands": [*RESET, *CAPCTL], "regulators": "deck",
                            "capacitors": "deck", **opendss}
    d["duration_s"] = 2 * 900
    d["agents"]["households"]["forecast_error"] = 0.0  # the DSO plans what the agents dispatch
    p = tmp_path / "ieee13_regs.yaml"
    p.write_text(yaml.safe_dump(d))
    return p


def _opendss(snap: PhaseSnapshot, p_bus: np.ndarray, q_bus: np.ndarray) -> tuple[list[int], np.ndarray]:
    """OpenDSS from taps 1.0 with controls on and the agents' per-phase loads added: taps, voltages."""
    f = snap.feeder
    ctx = dss.DSS.NewContext()
    ctx.AllowChangeDir = False
    cmds = [f'redirect "{DECK}"', *RESET, *CAPCTL]
    for k, p in zip(*np.nonzero((p_bus != 0) | (q_bus != 0)), strict=True):
        kv = f.node_vbase_kv[f.node_of[k, p]]
        cmds.append(f"new load.x{k}_{p} bus1={f.bus_names[k]}.{p + 1} phases=1 kv={kv:.9g} "
                    f"kw={p_bus[k, p] * 1e3:.12g} kvar={q_bus[k, p] * 1e3:.12g} model=1 vminpu=0.5 vmaxpu=2")
    for cmd in (*cmds, "set tolerance=1e-12", "set maxiterations=1000", "solve"):
        ctx.Text.Command = cmd
    ckt = ctx.ActiveCircuit
    assert ckt.Solution.Converged
    taps = []
    for name in ("reg1", "reg2", "reg3"):
        ckt.Transformers.Name = name
        ckt.Transformers.Wdg = 2
        taps.append(round((ckt.Transformers.Tap - 1.0) / 0.00625))
    for name in ("cap1", "cap2"):
        ckt.Capacitors.Name = name
        taps.append(int(sum(ckt.Capacitors.States)))
    vm = np.full((f.n_bus, 3), np.nan)
    for k, name in enumerate(f.bus_names):
        ckt.SetActiveBus(name)
        for nd, v in zip(ckt.ActiveBus.Nodes, ckt.ActiveBus.puVmagAngle[0::2], strict=False):
            vm[k, nd - 1] = v
    return taps, vm


def test_deck_regulators_act_in_the_run_as_opendss(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from twin.run import run_scenario

    solves: list[tuple[PhaseSnapshot, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    state = PhaseSnapshot._state

    def spy(self: PhaseSnapshot, res: Any, p_bus: np.ndarray, q_bus: np.ndarray) -> Any:
        out = state(self, res, p_bus, q_bus)
        solves.append((self, self.taps.copy(), p_bus.copy(), q_bus.copy(), out.vm_abc_pu))
        return out

    monkeypatch.setattr(PhaseSnapshot, "_state", spy)  # records what each solve put on the deck
    sc = load_scenario(_scenario(tmp_path))
    run_scenario(sc, out_dir=tmp_path / "run", progress=False)
    regs = pq.read_table(tmp_path / "run" / "regulators.parquet").to_pandas()
    bus = pq.read_table(tmp_path / "run" / "bus.parquet").to_pandas()
    assert list(regs.regulator[:5]) == ["reg1", "reg2", "reg3", "cc1", "cc2"]
    assert sorted(set(regs.time_s)) == [0, 900]
    first = list(regs.tap[regs.time_s == 0])  # the capacitors' rows: steps in service
    assert first[3:] == [0, 0]
    # both the grid simulator's and the DSO's snapshots regulate; each one's first solve (from taps
    # 0) against OpenDSS with the same per-phase loads: same taps, voltages to 1e-6 p.u.
    firsts = {id(s): x for x in reversed(solves) for s in [x[0]]}
    assert len(firsts) == 2
    for snap, taps, p_bus, q_bus, vm in firsts.values():
        ref_taps, ref_vm = _opendss(snap, p_bus, q_bus)
        assert taps.tolist() == ref_taps == first
        assert np.array_equal(np.isnan(vm), np.isnan(ref_vm))
        assert np.nanmax(np.abs(vm - ref_vm)) < 1e-6
    # the bus table's first rows are one of those OpenDSS-checked solves (the grid simulator's)
    b0 = bus[bus.time_s == 0].sort_values("bus")[["vm_a_pu", "vm_b_pu", "vm_c_pu"]].to_numpy()
    assert any(np.allclose(b0, x[4], rtol=0, atol=1e-12, equal_nan=True) for x in firsts.values())
    # quasi-static: the later solves start from the taps an earlier one ended on, never from 0 again
    assert all(x[1].tolist() != [0, 0, 0, 1, 1] for x in solves if firsts[id(x[0])] is not x)
    # the DSO's check of interval 1 starts from the grid's taps (mosaik `taps`) and regulates as
    # the grid's solve does: with nothing curtailed its voltages are the grid's (1e-9 pu)
    grid = pq.read_table(tmp_path / "run" / "grid.parquet").to_pandas().sort_values("time_s")
    dso = pq.read_table(tmp_path / "run" / "dso.parquet").to_pandas().sort_values("time_s")
    assert dso.checks.iloc[1] >= 1 and dso.curtailed_wh.iloc[1] == 0
    for col in ("vm_min_pu", "vm_max_pu", "vuf_max_percent"):
        assert dso[col].iloc[1] == pytest.approx(grid[col].iloc[1], abs=1e-9), col

def test_unsupported_regcontrol_setting_is_a_scenario_error(tmp_path: Path) -> None:
    p = _scenario(tmp_path, commands=[*RESET, "RegControl.Reg2.vlimit=125"])
    with pytest.raises(ScenarioError) as exc:
        load_scenario(p)
    err = dict(exc.value.errors)
    assert "RegControl.reg2.vlimit='125'" in err["grid.opendss.regulators"]
    assert "not supported" in err["grid.opendss.regulators"]
    with pytest.raises(ScenarioError) as exc:
        load_scenario(_scenario(tmp_path, commands=[*RESET, "set controlmode=off"]))
    assert "contradicts 'set controlmode=off'" in dict(exc.value.errors)["grid.opendss.regulators"]
    with pytest.raises(ScenarioError) as exc:  # a band narrower than one 0.75 V tap step would hunt
        load_scenario(_scenario(tmp_path, commands=[*RESET, "RegControl.Reg2.band=0.5"]))
    assert ("regulators['reg2'].band_v: 0.5 V is narrower than one tap step (0.75 V"
            in dict(exc.value.errors)["grid.opendss.regulators"])


def test_capcontrol_problems_are_scenario_errors(tmp_path: Path) -> None:
    timed = [*RESET, *CAPCTL, "CapControl.cc2.type=time", "CapControl.cc2.ONsetting=8", "CapControl.cc2.OFFsetting=18"]
    assert load_scenario(_scenario(tmp_path, commands=timed)).grid.opendss is not None  # time of day: modelled
    with pytest.raises(ScenarioError) as exc:
        load_scenario(_scenario(tmp_path, commands=[*timed, "CapControl.cc2.OFFsetting=30"]))
    assert "cc2'].off_value: a time control's setting is an hour of day" in dict(exc.value.errors)[
        "grid.opendss.capacitors"]
    with pytest.raises(ScenarioError) as exc:
        load_scenario(_scenario(tmp_path, commands=list(RESET)))
    assert "has no CapControl" in dict(exc.value.errors)["grid.opendss.capacitors"]
