"""IEEE 1547 ride-through and trip over Modbus with pysunspec2 (708 HV trip, 703 enter service).

A controller adopts an HV trip curve set (must trip, may trip, momentary cessation) through
708 curve 2, the grid simulator (the twin's step inputs) raises the voltage, and 701 read
with pysunspec2 must show: ride-through inside the must-trip curve's time, a trip after it
(FAULT, disconnected, the AC_OVER_VOLT alarm), re-entry after 703's delay, and momentary
cessation (connected, standby) that resumes at the next step without any delay.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sunspec2.modbus.modbus import ModbusClientException

from tests.hil.test_conformance import PV, Lab, setattr_cvalue

AC_OVER_VOLT = 1 << 10  # 701 Alrm bit
FAULT, STARTING, RUNNING, STANDBY = 6, 2, 3, 7


@pytest.fixture
def lab() -> Iterator[Lab]:
    lab = Lab()
    try:
        yield lab
    finally:
        lab.close()


def _adopt_hv(lab: Lab, groups: dict[str, list[tuple[float, float]]]) -> None:
    hv = lab.dev(PV).DERTripHV[0]
    crv = hv.Crv[1]  # curve 2
    for grp, pts in groups.items():
        g = getattr(crv, grp)
        g.ActPt.cvalue = len(pts)
        for i, (v, t) in enumerate(pts):
            setattr_cvalue(g.Pt[i], "V", v)
            setattr_cvalue(g.Pt[i], "Tms", t)
    crv.write()
    hv.AdptCrvReq.cvalue = 2
    hv.AdptCrvReq.write()
    hv.Ena.cvalue = 1
    hv.Ena.write()
    hv.read()
    assert hv.AdptCrvRslt.cvalue == 1  # COMPLETED


CURVES = {"MustTrip": [(118.0, 0.5), (112.0, 5.0)], "MayTrip": [(111.0, 1.0)],
          "MomCess": [(116.0, 0.0)]}


def _alarm(lab: Lab) -> int:
    m = lab.dev(PV).DERMeasureAC[0]
    m.read()
    return int(m.Alrm.cvalue)


def test_hv_ride_through_then_must_trip_and_enter_service(lab: Lab) -> None:
    es = lab.dev(PV).DEREnterService[0]
    es.ESDlyTms.cvalue, es.ESRmpTms.cvalue = 30, 0
    es.write()
    _adopt_hv(lab, CURVES)
    assert lab.step(PV, avail_w=8_000)["W"] == pytest.approx(8_000, abs=10)
    # 113 % for 3 s: beyond may trip, inside the must-trip curve's 5 s -> rides through
    m = lab.step(PV, v_pu=1.13, avail_w=8_000, dt_s=3.0)
    assert m["W"] == pytest.approx(8_000, abs=10) and m["InvSt"] == RUNNING and m["ConnSt"] == 1
    assert lab.bank.devices[PV].trip.may_trip == "708"
    # 3 s more (6 s > 5 s beyond 112 %): must trip
    m = lab.step(PV, v_pu=1.13, avail_w=8_000, dt_s=3.0)
    assert m["W"] == 0 and m["ConnSt"] == 0 and m["InvSt"] == FAULT
    assert _alarm(lab) == AC_OVER_VOLT
    # back to 1.0 pu: the 30-s enter-service delay runs, the device stays out
    m = lab.step(PV, v_pu=1.0, avail_w=8_000, dt_s=20.0)
    assert m["W"] == 0 and m["InvSt"] == STARTING and m["ConnSt"] == 0
    assert lab.bank.devices[PV].get(703, "ESDlyRemTms") == 10
    m = lab.step(PV, v_pu=1.0, avail_w=8_000, dt_s=10.0)  # 30 s in the window: re-enters
    assert m["W"] == pytest.approx(8_000, abs=10) and m["InvSt"] == RUNNING and m["ConnSt"] == 1
    assert _alarm(lab) == 0


def test_hv_momentary_cessation_resumes_without_delay(lab: Lab) -> None:
    _adopt_hv(lab, CURVES)
    assert lab.step(PV, avail_w=8_000, dt_s=1.0)["W"] == pytest.approx(8_000, abs=10)  # WRmp 100 %/s
    m = lab.step(PV, v_pu=1.17, avail_w=8_000, dt_s=0.1)  # beyond 116 %: cease to energize
    assert m["W"] == 0 and m["ConnSt"] == 1 and m["InvSt"] == STANDBY and _alarm(lab) == 0
    m = lab.step(PV, v_pu=1.0, avail_w=8_000, dt_s=0.1)  # back: full output at once
    assert m["W"] == pytest.approx(8_000, abs=10) and m["InvSt"] == RUNNING
    # past the must-trip curve's 0.5 s at 118 %+ while ceased: the trip still wins
    for _ in range(6):
        m = lab.step(PV, v_pu=1.19, avail_w=8_000, dt_s=0.1)
    assert m["W"] == 0 and m["ConnSt"] == 0 and m["InvSt"] == FAULT and _alarm(lab) == AC_OVER_VOLT


def test_must_trip_inside_the_may_trip_region_is_refused(lab: Lab) -> None:
    dev = lab.bank.devices[PV]
    before = dev.get(708, "Crv[1].MustTrip.Pt[2].V")
    with pytest.raises(ModbusClientException, match="exception: 3"):  # adoption refused
        _adopt_hv(lab, {"MustTrip": [(118.0, 0.5), (110.0, 5.0)], "MayTrip": [(111.0, 1.0)],
                        "MomCess": [(116.0, 0.0)]})
    assert dev.get(708, "AdptCrvRslt") == 2
    assert dev.get(708, "Crv[1].MustTrip.Pt[2].V") == before  # the active curve is unchanged
    refused = [w for w in lab.bank.drain_writes() if w.exception_code]
    assert len(refused) == 1 and "ride-through region" in refused[0].points


def test_under_frequency_must_trip_with_the_default_curve(lab: Lab) -> None:
    es = lab.dev(PV).DEREnterService[0]
    es.ESDlyTms.cvalue, es.ESRmpTms.cvalue = 60, 0
    es.write()
    assert lab.step(PV, avail_w=8_000)["W"] == pytest.approx(8_000, abs=10)
    m = lab.step(PV, hz=48.6, avail_w=8_000, dt_s=200.0)  # below 48.75 Hz, 200 s < 300 s
    assert m["W"] == pytest.approx(8_000, abs=10) and m["Hz"] == pytest.approx(48.6)
    m = lab.step(PV, hz=48.6, avail_w=8_000, dt_s=120.0)  # 320 s > 300 s: must trip
    assert m["W"] == 0 and m["InvSt"] == FAULT and _alarm(lab) == 1 << 9  # UNDER_FREQUENCY
    m = lab.step(PV, hz=50.0, avail_w=8_000, dt_s=60.0)
    assert m["W"] == pytest.approx(8_000, abs=10) and _alarm(lab) == 0
