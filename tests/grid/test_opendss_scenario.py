"""grid.kind: opendss -- a deck in a scenario (OpenDSS as referee), the phase checks before a
run, a short run end to end; weighted phase draws."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from twin.grid.opendss_grid import deck_feeder, element_map_net
from twin.grid.phase_spec import PhaseConnectionSpec, assign_phases
from twin.grid.snapshot3ph import PhaseSnapshot
from twin.scenario import ScenarioError, load_scenario

dss = pytest.importorskip("dss")
ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "scenarios" / "ieee13_opendss.yaml"


def _opendss_vm(deck: str, commands: tuple[str, ...], extra: list[str], bus_names: tuple[str, ...]) -> np.ndarray:
    ctx = dss.DSS.NewContext()
    ctx.AllowChangeDir = False
    ctx.Text.Command = f'redirect "{deck}"'
    for cmd in (*commands, *extra, "set tolerance=1e-12", "set maxiterations=1000", "solve"):
        ctx.Text.Command = cmd
    ckt = ctx.ActiveCircuit
    assert ckt.Solution.Converged
    out = np.full((len(bus_names), 3), np.nan)
    for k, name in enumerate(bus_names):
        ckt.SetActiveBus(name)
        for nd, vm in zip(ckt.ActiveBus.Nodes, ckt.ActiveBus.puVmagAngle[0::2], strict=False):
            out[k, nd - 1] = vm
    return out


def test_deck_rows_on_their_phases_match_opendss() -> None:
    """The element map's rows, solved with the deck's own loads, against OpenDSS with the same loads."""
    spec = load_scenario(SCENARIO).grid.opendss
    assert spec is not None and Path(spec.deck).is_absolute()  # resolved against the scenario file
    feeder = deck_feeder(spec)
    net = element_map_net(feeder)
    assert list(net.bus.name) == list(feeder.bus_names) and "Line.684611" in set(net.line.name)
    rows = {int(b): k for k, b in enumerate(net.load.bus)}
    b611, b671 = feeder.bus_index("611"), feeder.bus_index("671")
    phase = {"load": np.full(len(net.load), 3), "sgen": np.zeros(0, np.int64), "storage": np.zeros(0, np.int64)}
    phase["load"][rows[b611]] = 2  # bus 611 has phase c only
    snap = PhaseSnapshot(net, phase=phase, network=feeder)
    p = np.zeros(len(net.load))
    p[rows[b611]], p[rows[b671]] = 0.02, 0.09  # 20 kW on 611.c; 90 kW split over 671's three phases
    st = snap.solve(load_p_mw=p, load_q_mvar=0.2 * p, sgen_p_mw=np.zeros(0), sgen_q_mvar=np.zeros(0),
                    storage_p_mw=np.zeros(0))
    extra = ["new load.x611 bus1=611.3 phases=1 kv=2.4018 kw=20 kvar=4 model=1 vminpu=0.5 vmaxpu=2",
             "new load.x671 bus1=671 phases=3 kv=4.16 kw=90 kvar=18 model=1 vminpu=0.5 vmaxpu=2"]
    ref = _opendss_vm(spec.deck, spec.commands, extra, feeder.bus_names)
    assert st.vm_abc_pu is not None
    assert np.array_equal(np.isnan(st.vm_abc_pu), np.isnan(ref))
    assert np.nanmax(np.abs(st.vm_abc_pu - ref)) < 1e-6
    with pytest.raises(ValueError, match=r"phase a on bus '611', which has phases c"):
        PhaseSnapshot(net, phase={**phase, "load": np.where(np.arange(len(net.load)) == rows[b611], 0, 3)},
                      network=feeder)


def _errors(tmp_path: Path, old: str, new: str) -> list[tuple[str, str]]:
    text = SCENARIO.read_text().replace(old, new)
    assert text != SCENARIO.read_text()
    p = tmp_path / "ieee13_opendss.yaml"
    p.write_text(text.replace("deck: decks/", f"deck: {SCENARIO.parent}/decks/"))
    with pytest.raises(ScenarioError) as exc:
        load_scenario(p)
    return exc.value.errors


def test_phase_a_bus_lacks_is_a_scenario_error(tmp_path: Path) -> None:
    err = dict(_errors(tmp_path, "households: random", "households: a"))
    msg = err["grid.phase_connection.households"]
    assert "'611' (phases c)" in msg and "'646' (phases bc)" in msg
    err = dict(_errors(tmp_path, "pv: {a: 0.2, b: 0.2, c: 0.6}", "pv: {a: 0, b: 1}"))
    assert "'611' (phases c)" in err["grid.phase_connection.pv"]
    err = dict(_errors(tmp_path, "pv: {a: 0.2, b: 0.2, c: 0.6}", "pv: {a: -1, b: 1}"))
    assert "phase weights a: Input should be greater than or equal to 0" in err["grid.phase_connection.pv"]
    err = dict(_errors(tmp_path, "pv: {a: 0.2, b: 0.2, c: 0.6}", "pv: {a: 0}"))
    assert "sum to more than 0" in err["grid.phase_connection.pv"]
    err = dict(_errors(tmp_path, "IEEE13Nodeckt.dss", "nosuch.dss"))
    assert "not found" in err["grid.opendss.deck"]
    err = dict(_errors(tmp_path, "phases: 3", "phases: 1"))
    assert "grid.phases" in err


def test_opendss_scenario_runs_with_the_per_phase_check(tmp_path: Path) -> None:
    from twin.run import run_scenario

    sc = load_scenario(SCENARIO)
    # dso.policy both: the per-phase envelopes run on the deck (its own loads in), then the check
    sc = sc.model_copy(update={"duration_s": 2 * 900, "dso": sc.dso.model_copy(update={"policy": "both"})})
    out = run_scenario(sc, out_dir=tmp_path / "run", progress=False)
    bus = pq.read_table(tmp_path / "run" / "bus.parquet").to_pandas()
    dso = pq.read_table(tmp_path / "run" / "dso.parquet").to_pandas()
    b611 = bus[bus.bus == 10]  # '611': phase c only
    assert b611.vm_a_pu.isna().all() and b611.vm_c_pu.notna().all()
    assert dso.checks.sum() > 0 and dso.vuf_max_percent.max() > 0.5
    assert out.kpis["vm_phase_max_pu"] > 1.06  # the regulated bus rg60, as OpenDSS has it
    # nothing binds on this deck at noon: the envelopes are the devices' capacities (no PV held back)
    assert out.kpis["limited_pv_kwh"] == 0 and out.kpis["voltage_violations"] == 0


def test_weighted_phase_draws_are_seeded_and_follow_the_weights() -> None:
    spec = PhaseConnectionSpec(households={"a": 0.5, "b": 0.3, "c": 0.2}, pv={"b": 1.0})  # type: ignore[arg-type]
    n = 20_000
    kw = {"n_households": n, "pv_household": np.arange(n), "battery_household": np.zeros(0, np.int64),
          "ev_household": np.zeros(0, np.int64), "n_storage": 0}
    a = assign_phases(spec, rng=np.random.default_rng(5), **kw)
    b = assign_phases(spec, rng=np.random.default_rng(5), **kw)
    assert np.array_equal(a["household"], b["household"])
    share = np.bincount(a["household"], minlength=3) / n
    np.testing.assert_allclose(share, [0.5, 0.3, 0.2], atol=0.015)
    assert (a["pv"] == 1).all()
    mask = np.zeros((n, 3), bool)
    mask[:, 2] = True
    mask[: n // 2, 0] = True  # half the buses have a and c, half only c
    m = assign_phases(spec, rng=np.random.default_rng(5), household_phases=mask, **{**kw, "pv_household": np.zeros(0, np.int64)})
    hh = m["household"]
    assert mask[np.arange(n), hh].all()
    np.testing.assert_allclose((hh[: n // 2] == 0).mean(), 0.5 / 0.7, atol=0.02)
