"""One system frequency: the TSO's ``agents.tso.frequency`` is what frequency-watt in the grid
and the HIL devices read; the old per-interval keys say what to write instead."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import mesa
import numpy as np
import pytest

from twin.agents.tso import TSOAgent
from twin.cosim.grid_sim import GridSim
from twin.grid.controlled_pf import DerDevice
from twin.grid.der_functions import DerFunctions, FrequencyWatt
from twin.hil.core import HILBank
from twin.hil.device import DeviceSpec
from twin.hil.twin_side import HILCoupling, MirroredDevice
from twin.scenario import ScenarioError, scenario_from_dict

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "grid"))
from _lvnets import lv_feeder

INTERVAL_S = 900


def _tso(frequency: dict[str, Any], n_intervals: int = 4) -> TSOAgent:
    spec = scenario_from_dict({"name": "f", "agents": {"tso": {"frequency": frequency}}}).agents.tso
    model = mesa.Model(rng=3)
    model.n_intervals = n_intervals  # type: ignore[attr-defined]
    return TSOAgent(model, spec=spec, interval_s=INTERVAL_S, retail=0, dr_price=0)


def test_old_keys_name_what_to_write_instead() -> None:
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict({"name": "f", "agents": {"tso": {"frequency_hz": [50.0, 50.2],
                                                            "nominal_frequency_hz": 60}}})
    errors = dict(info.value.errors)
    assert "source: series, series_hz" in errors["agents.tso.frequency_hz"]
    assert "agents.tso.frequency.nominal_hz" in errors["agents.tso.nominal_frequency_hz"]
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict({"name": "f", "agents": {"tso": {"frequency": {"source": "series"}}}})
    assert [p for p, _ in info.value.errors] == ["agents.tso.frequency.series_hz"]
    with pytest.raises(ScenarioError) as info:
        scenario_from_dict({"name": "f", "agents": {"tso": {"frequency": {"series_hz": [50.1]}}}})
    assert "set source: series" in dict(info.value.errors)["agents.tso.frequency.series_hz"]


def test_series_nominal_and_synthetic_sources() -> None:
    tso = _tso({"source": "series", "series_hz": [50.0, 50.3]})
    assert [tso.system_frequency_hz(t) for t in (0, 899, 900, 1800, 2700 + 450)] == [50.0, 50.0, 50.3, 50.0, 50.3]
    assert _tso({"source": "nominal", "nominal_hz": 60}).system_frequency_hz(1234) == 60.0
    syn = _tso({"std_hz": 0.05})
    f = np.array([syn.system_frequency_hz(t) for t in range(0, 4 * INTERVAL_S, 7)])
    assert 0.01 < f.std() < 0.2 and abs(f.mean() - 50.0) < 0.1
    assert syn.system_frequency_hz(100) == _tso({"std_hz": 0.05}).system_frequency_hz(100)  # seeded


def test_grid_droop_and_hil_devices_read_the_same_frequency() -> None:
    tso = _tso({"source": "series", "series_hz": [50.0, 50.5]}, n_intervals=2)
    # the grid: frequency-watt of six PV inverters acts in the over-frequency interval only
    net = lv_feeder(6, pv_kw=35.0)
    fn = DerFunctions(s_rated_mva=0.0385, p_rated_mw=0.035, freq_watt=FrequencyWatt(response_time_s=0.0))
    sim = GridSim()

    class Rows:
        def __init__(self) -> None:
            self.rows: list[dict[str, Any]] = []

        def add(self, name: str, rows: list[dict[str, Any]]) -> None:
            if name == "grid":
                self.rows += rows

        def add_columns(self, name: str, columns: dict[str, Any], *, n: int | None = None) -> None:
            pass  # bus / line columns: not what this test reads

    rec = Rows()
    sim.init("Grid-0", net=net, recorder=rec, interval_s=INTERVAL_S,
             der_devices=[DerDevice("sgen", i, fn) for i in range(6)], frequency_hz=tso.system_frequency_hz)
    power = {"load_p_mw": net.load.p_mw.to_numpy(), "load_q_mvar": net.load.q_mvar.to_numpy(),
             "sgen_p_mw": net.sgen.p_mw.to_numpy(), "sgen_q_mvar": np.zeros(len(net.sgen)),
             "storage_p_mw": np.zeros(0)}
    for k in range(2):
        sim.step(INTERVAL_S * k, {"grid": {"element_power": {"agents": power}}}, 2 * INTERVAL_S)
    nominal, over = (r["der_curtailed_mw"] for r in rec.rows)
    # droop 5 %: (50.5 - 50.036) / 2.5 of the 35 kW rating withheld per inverter
    assert nominal == 0.0 and over == pytest.approx(6 * 0.035 * (0.5 - 0.036) / 2.5, rel=1e-6)
    # the HIL devices: SunSpec 701 Hz is the same value at the same time
    pv = DeviceSpec(unit_id=1, name="pv", kind="pv_inverter", nameplate_w=10_000)
    hil = HILCoupling(HILBank([pv]), [MirroredDevice(spec=pv, agent="household_0", table="sgen", row=0,
                                                     bus=1, bus_pos=0)],
                      frequency_hz=tso.system_frequency_hz)
    for t, hz in ((0, 50.0), (INTERVAL_S + 30, 50.5)):
        hil.step(now_s=t, dt_s=30, power={**power, "sgen_p_mw": np.array([0.005])}, vm_pu=None)
        assert hil.bank.devices[1].get(701, "Hz") == pytest.approx(hz)
