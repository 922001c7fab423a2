"""The coupling's inputs: own dispatch of controlled devices, batteries' SOC, the frequency."""

from __future__ import annotations

import numpy as np
import pytest

from twin.agents.tso import synthetic_frequency
from twin.hil.core import HILBank
from twin.hil.device import DeviceSpec
from twin.hil.twin_side import HILCoupling, MirroredDevice
from twin.scenario import FrequencyEventSpec, FrequencySpec

PV, BAT = 1, 2


def _coupling(freq: float = 50.0) -> HILCoupling:
    pv = DeviceSpec(unit_id=PV, name="pv", kind="pv_inverter", nameplate_w=10_000)
    bat = DeviceSpec(unit_id=BAT, name="bat", kind="battery", nameplate_w=30_000, capacity_wh=100_000,
                     soc_min=0.1, soc_max=0.95)
    devices = [MirroredDevice(spec=pv, agent="household_0", table="sgen", row=0, bus=1, bus_pos=0),
               MirroredDevice(spec=bat, agent="storage_0", table="storage", row=0, bus=1, bus_pos=0)]
    return HILCoupling(HILBank([pv, bat]), devices, frequency_hz=lambda t: freq + 0.001 * t)


def _power(sgen_mw: float, storage_mw: float, **extra: object) -> dict[str, object]:
    return {"load_p_mw": np.zeros(1), "load_q_mvar": np.zeros(1), "sgen_p_mw": np.array([sgen_mw]),
            "sgen_q_mvar": np.zeros(1), "storage_p_mw": np.array([storage_mw]), **extra}


def test_a_lifted_control_gives_the_own_dispatch_at_the_next_step() -> None:
    c = _coupling()
    m = c.bank.devices[PV].map
    c.bank.write(PV, m.point(704, "WMaxLimPctEna").addr, [1, 200], client="t")  # 20 %
    # the agents applied the cap to this interval's dispatch (2 kW) and say what is free (8 kW)
    power = _power(0.002, 0.0, free_p_mw={"sgen": {"0": 0.008}}, storage_soc={"0": 0.4})
    out, rows = c.step(now_s=30, dt_s=30, power=power, vm_pu=[1.0])
    assert out["sgen_p_mw"][0] == pytest.approx(0.002)
    assert "free_p_mw" not in out and "storage_soc" not in out  # the grid gets powers only
    c.bank.write(PV, m.point(704, "WMaxLimPctEna").addr, [0], client="t")  # lifted mid-interval
    out, rows = c.step(now_s=60, dt_s=30, power=power, vm_pu=[1.0])
    assert out["sgen_p_mw"][0] == pytest.approx(0.008)  # the next HIL step: own dispatch
    assert rows[PV][1].w == pytest.approx(8_000) and rows[PV][0].hz == pytest.approx(50.06)
    assert c.bank.devices[PV].get(701, "Hz") == pytest.approx(50.06)
    assert c.bank.devices[BAT].get(802, "SoC") == pytest.approx(40.0, abs=0.1)  # the agents' SOC


def test_battery_soc_integrates_within_the_interval() -> None:
    c = _coupling()
    power = _power(0.0, -0.018, storage_soc={"0": 0.5})  # discharging 18 kW (element convention)
    c.step(now_s=0, dt_s=0, power=power, vm_pu=None)
    c.step(now_s=600, dt_s=600, power=power, vm_pu=None)  # 3 kWh of 100 kWh
    assert c.bank.devices[BAT].soc == pytest.approx(0.47, abs=1e-6)
    c.step(now_s=900, dt_s=300, power=_power(0.0, 0.0, storage_soc={"0": 0.46}), vm_pu=None)
    assert c.bank.devices[BAT].soc == pytest.approx(0.46)  # a new interval: the books' SOC


def test_synthetic_frequency_statistics_and_events() -> None:
    spec = FrequencySpec(hour_change_hz=0.0, events=[FrequencyEventSpec(start_s=1000, duration_s=60,
                                                                        delta_hz=-0.5)])
    f = synthetic_frequency(spec, duration_s=20_000, rng=np.random.default_rng(7))
    quiet = np.r_[f[:1000], f[1100:]]
    assert quiet.std() == pytest.approx(0.02, rel=0.35) and abs(quiet.mean() - 50.0) < 0.02
    lag = np.corrcoef(quiet[:-120], quiet[120:])[0, 1]  # exp(-120 / 120) = 0.37
    assert 0.15 < lag < 0.6
    assert f[1000:1060].mean() < 49.6
    again = synthetic_frequency(spec, duration_s=20_000, rng=np.random.default_rng(7))
    assert np.array_equal(f, again)  # seeded
