"""The agents' books follow the power delivered per HIL step (``twin hil serve``, real Modbus).

The small HIL scenario at midday in July (PV producing) runs under mosaik as fast as
possible. A pysunspec2 client on 127.0.0.1 acts at fixed twin times: the HIL adapter's step
is wrapped so that the client's Modbus requests run right after the HIL step at those
times (the real step, the real server; the wrapper only makes the timing deterministic).
Over interval 1 (300-600 s, 30-s HIL steps) the controller curtails household_0's PV to
50 % of its rating for the second half (steps 450-570) and commands the community battery
to discharge 20 kW over the same half. Interval 1 settles at 600 s:

* the household's settled reading is the agents' planned reading plus the integral of
  (dispatched - delivered) PV over the HIL steps (within 1 Wh: readings are whole Wh);
  its ``agents`` row shows the delivered energy: ``pv_wh`` the integral of the PV's 701
  ``W`` over the HIL steps, ``metered_wh`` the settled reading;
* the battery's 713 ``WHAvail`` (its state of charge in Wh, 10 Wh resolution) read over
  Modbus falls by 20 kW x 30 s per step while commanded, and at 600 s (the agents' books,
  interval 2's start) it is the agents' planned state of charge less the extra energy
  discharged through the one-way efficiency (within 10 Wh); its ``agents`` row shows that
  state of charge and the delivered net energy.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import sunspec2.modbus.client as ss

from twin.agents.delivered import (
    apply_ev_delta,
    apply_storage_delta,
    corrected_readings,
    delivered_columns,
)
from twin.agents.model import FeederModel
from twin.grid.feeders import build_feeder
from twin.hil import twin_side
from twin.hil.books import BookedElement, DeliveredBook, IntervalBooks
from twin.hil.serve import serve
from twin.scenario import load_scenario

SCENARIO = Path(__file__).resolve().parent / "data" / "hil_e2e.yaml"
PV, BAT = 1, 2
HOUR_S = 3600.0


class Controller:
    """A pysunspec2 client acting at given twin times (after the HIL step at that time)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self._dev: dict[int, Any] = {}
        self.wh: dict[int, float] = {}  # twin time -> battery 713 WHAvail (Wh), over Modbus
        self.pv_w = 0.0

    def dev(self, unit: int) -> Any:
        if unit not in self._dev:
            d = ss.SunSpecModbusClientDeviceTCP(slave_id=unit, ipaddr="127.0.0.1", ipport=self.port,
                                                timeout=2)
            d.scan()
            self._dev[unit] = d
        return self._dev[unit]

    def at(self, t: int) -> None:
        if 300 <= t <= 600:
            cap = self.dev(BAT).DERStorageCapacity[0]
            cap.read()
            self.wh[t] = float(cap.WHAvail.cvalue)
        if t == 420:  # in force from the step at 450: the second half of interval 1
            m, rtg = self.dev(PV).DERMeasureAC[0], self.dev(PV).DERCapacity[0]
            m.read()
            rtg.read()
            self.pv_w = float(m.W.cvalue)  # half of what it produces now, as % of WMax
            pv = self.dev(PV).DERCtlAC[0]
            pv.WMaxLimPct.cvalue, pv.WMaxLimPctEna.cvalue = 50.0 * self.pv_w / float(rtg.WMaxRtg.cvalue), 1
            pv.write()
            bat = self.dev(BAT).DERCtlAC[0]
            bat.WSetMod.cvalue, bat.WSet.cvalue, bat.WSetEna.cvalue = 1, 20_000, 1
            bat.write()
        if t == 570:  # lifted from the step at 600 (interval 2)
            pv = self.dev(PV).DERCtlAC[0]
            pv.WMaxLimPctEna.cvalue = 0
            pv.WMaxLimPctEna.write()
            bat = self.dev(BAT).DERCtlAC[0]
            bat.WSetEna.cvalue = 0
            bat.WSetEna.write()

    def close(self) -> None:
        for d in self._dev.values():
            d.close()


def test_settled_energy_and_soc_follow_the_delivered_power(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    s = load_scenario(SCENARIO)
    s = s.model_copy(update={"start": s.start.replace(month=7, hour=11)})
    state: dict[str, Any] = {}
    real_step: Callable[..., Any] = twin_side.HILCoupling.step

    def step(self: twin_side.HILCoupling, **kw: Any) -> Any:
        out = real_step(self, **kw)
        if "ctl" not in state:  # the server listens once the adapter steps
            state["ctl"] = Controller(port=state["port"]())
        state["ctl"].at(int(kw["now_s"]))
        return out

    monkeypatch.setattr(twin_side.HILCoupling, "step", step)
    state["port"] = lambda: json.loads((tmp_path / "hil_devices.json").read_text())["port"]
    try:
        serve(s, out_dir=tmp_path, port=0, rt_factor=None, until_s=900,
              server_process=True)  # the server process's ordering: write -> next step
    finally:
        if "ctl" in state:
            state["ctl"].close()
    ctl: Controller = state["ctl"]

    hil = pq.read_table(tmp_path / "hil.parquet").to_pandas()
    agents = pq.read_table(tmp_path / "agents.parquet").to_pandas()
    settled = pq.read_table(tmp_path / "settlements.parquet").to_pandas()
    dt_h = 30 / HOUR_S

    # --- PV: curtailed to 50 % of its rating for half an interval
    pv = hil[(hil.unit_id == PV) & (hil.time_s >= 300) & (hil.time_s < 600)].set_index("time_s")
    assert pv.loc[450:570].w.tolist() == pytest.approx((0.5 * pv.loc[450:570].available_w).tolist(),
                                                       abs=0.01 * ctl.pv_w)  # the cap in the grid
    assert pv.loc[300:420].w.tolist() == pytest.approx(pv.loc[300:420].available_w.tolist())
    lost_wh = float(((pv.available_w - pv.w) * dt_h).sum())  # dispatched minus delivered
    assert lost_wh > 0.2 * ctl.pv_w * 150 / HOUR_S, pv[["available_w", "w"]]  # the cap bit
    hh = agents[(agents.agent == "household_0") & (agents.time_s == 300)].iloc[0]
    row = settled[(settled.interval == 1) & (settled.device_id == int(hh.device_id))]
    assert len(row) == 1, settled
    # the agents table shows what the device delivered: the PV's energy, the settled reading
    assert float(hh.pv_wh) == pytest.approx(float((pv.w * dt_h).sum()), abs=1.0)
    assert int(row.metered_wh.iloc[0]) == int(hh.metered_wh)
    # its mean power over the 300-s interval, within the reading's whole-Wh rounding
    assert float(hh.p_mw) == pytest.approx(int(hh.metered_wh) * 12 / 1e6, abs=12 / 1e6)
    # (the planned PV, sum(available_w) = pv_wh + lost_wh, is more than 0.2 x 150 s of it)
    # the settlement of interval 1 happened at its end: the market step at 600 s
    assert int(row.time_s.iloc[0]) == 300  # rows keep the interval's own time

    # --- battery: 713 SoC follows the delivered power step by step
    bat = hil[(hil.unit_id == BAT) & (hil.time_s >= 300) & (hil.time_s < 600)].set_index("time_s")
    assert bat.loc[450:570].w.tolist() == pytest.approx([20_000.0] * 5)
    cap_wh = s.agents.community_storage.capacity_kwh * 1e3
    for t in range(480, 600, 30):  # the step before's power held for 30 s
        want = ctl.wh[t - 30] - bat.w.loc[t - 30] * dt_h
        assert ctl.wh[t] == pytest.approx(want, abs=10.0), (t, ctl.wh)  # WH_SF: 10 Wh
    extra_wh = float(((bat.w - bat.available_w) * dt_h).sum())  # discharged beyond the plan
    assert extra_wh > 500.0
    st = agents[(agents.agent == "storage_0") & (agents.time_s == 300)].iloc[0]
    soc_min = s.agents.community_storage.soc_min
    # the agents' books at 600 s, as 713 reports them: the table's row shows the delivered
    assert ctl.wh[600] == pytest.approx((float(st.soc) - soc_min) * cap_wh, abs=10.0), ctl.wh
    # (the planned state of charge is extra_wh / sqrt(efficiency) > 500 Wh above it)
    # its reading: the AC energy the battery delivered (consumption +), whole Wh
    assert int(st.metered_wh) == pytest.approx(-float((bat.w * dt_h).sum()), abs=1.0)
    row = settled[(settled.interval == 1) & (settled.device_id == int(st.device_id))]
    if len(row):  # settled when it traded: the reading and the table carry the extra discharge
        assert int(row.metered_wh.iloc[0]) == int(st.metered_wh)


def test_interval_books_integrate_per_step_and_close_at_the_interval_end() -> None:
    books = IntervalBooks([BookedElement(unit_id=1, table="sgen", row=0, device_id=7),
                           BookedElement(unit_id=2, table="storage", row=0, device_id=8),
                           BookedElement(unit_id=3, table="load", row=1, device_id=9)],
                          interval_s=300)
    plan = {"sgen_p_mw": np.array([0.004]), "storage_p_mw": np.array([0.0]),
            "load_p_mw": np.array([0.0, 0.011])}
    closed = []
    for t in range(0, 300, 30):  # PV halved and battery discharging 6 kW over the 2nd half
        got = {"sgen_p_mw": np.array([0.002 if t >= 150 else 0.004]),
               "storage_p_mw": np.array([-0.006 if t >= 150 else 0.0]),
               "load_p_mw": np.array([0.0, 0.0055 if t >= 150 else 0.011])}  # EV charging halved
        closed.append(books.add(now_s=t, hold_s=30, dispatched=plan, delivered=got))
    assert closed[:-1] == [None] * 9
    last = closed[-1]
    assert last is not None
    book = DeliveredBook.decode(last.encode())  # the mosaik message round-trips
    assert book is not None and book.interval == 0
    assert book.meter_delta_wh == pytest.approx({7: 2_000 * 150 / HOUR_S, 8: -6_000 * 150 / HOUR_S,
                                                 9: -5_500 * 150 / HOUR_S})
    assert book.storage_delta_wh == pytest.approx({0: -250.0})
    assert book.ev_delta_wh == pytest.approx({1: -5_500 * 150 / HOUR_S})
    assert book.delivered_wh[1] == pytest.approx(4_000 * 150 / HOUR_S + 2_000 * 150 / HOUR_S)
    with pytest.raises(ValueError, match="interval_s"):
        IntervalBooks([], interval_s=0)


def test_books_reject_devices_and_rows_the_feeder_does_not_have() -> None:
    assert corrected_readings({1: 100, 2: -5}, {1: -49.6}) == {1: 50, 2: -5}
    with pytest.raises(ValueError, match=r"meter_delta_wh: devices \[9\]"):
        corrected_readings({1: 100}, {9: 1.0})

    s = load_scenario(SCENARIO)
    f = build_feeder(s)
    m = FeederModel(scenario=s, feeder=f, rng=np.random.default_rng(s.seed))
    row = int(f.storage_row[0])
    e0 = float(m.storage.energy_wh[0])
    soc = apply_storage_delta(m, {row: -1_000.0})  # 1 kWh more discharged (AC side)
    assert float(m.storage.energy_wh[0]) == pytest.approx(e0 - 1_000.0 / m.storage.eta)
    assert soc[row] == pytest.approx(float(m.storage.soc[0]))
    with pytest.raises(ValueError, match="storage row 999"):
        apply_storage_delta(m, {999: 1.0})
    ev_row = int(f.ev_load_row[0])
    ev0 = float(m.evs.energy_wh[0])
    apply_ev_delta(m, {ev_row: 500.0})  # the EV charged 500 Wh more than planned
    assert float(m.evs.energy_wh[0]) == pytest.approx(min(ev0 + 500.0, m.evs.battery_wh))
    with pytest.raises(ValueError, match="load row 999 is not an EV"):
        apply_ev_delta(m, {999: 1.0})


def test_agents_rows_move_to_the_delivered_energy() -> None:
    s = load_scenario(SCENARIO)
    f = build_feeder(s)
    m = FeederModel(scenario=s, feeder=f, rng=np.random.default_rng(s.seed))
    cols = m.step_interval(interval=0, trades=[], price_history=[]).agent_columns
    n_h, n_e = m.households.n, m.evs.n
    j = n_h + n_e  # the community battery's row
    hh = int(np.flatnonzero(np.asarray(f.household_sgen_row) >= 0)[0])
    row = int(f.storage_row[0])
    apply_storage_delta(m, {row: -1_000.0})
    new = delivered_columns(m, cols, interval_s=300,
                            meter_delta_wh={int(cols["device_id"][j]): -1_000.0,
                                            int(cols["device_id"][hh]): 240.4},
                            sgen_delta_wh={int(f.household_sgen_row[hh]): 240.4},
                            storage_delta_wh={row: -1_000.0}, ev_delta_wh={})
    assert new["metered_wh"][j] == cols["metered_wh"][j] - 1_000
    assert new["metered_wh"][hh] == cols["metered_wh"][hh] + 240
    assert new["p_mw"][hh] == pytest.approx(cols["p_mw"][hh] + 240.4 * 12 / 1e6)
    assert new["pv_wh"][hh] == pytest.approx(cols["pv_wh"][hh] - 240.4)
    net = new["battery_charge_wh"][j] - new["battery_discharge_wh"][j]
    assert net == pytest.approx(cols["battery_charge_wh"][j] - cols["battery_discharge_wh"][j] - 1_000.0)
    assert min(new["battery_charge_wh"][j], new["battery_discharge_wh"][j]) == 0.0
    assert new["soc"][j] == pytest.approx(float(m.storage.soc[0]))  # the books after the delta
    with pytest.raises(ValueError, match="device 99999 has no agents row"):
        delivered_columns(m, cols, interval_s=300, meter_delta_wh={99999: 1.0}, sgen_delta_wh={},
                          storage_delta_wh={}, ev_delta_wh={})
    with pytest.raises(ValueError, match="sgen row 999 is not a household's PV"):
        delivered_columns(m, cols, interval_s=300, meter_delta_wh={}, sgen_delta_wh={999: 1.0},
                          storage_delta_wh={}, ev_delta_wh={})
