"""market.services.ancillary: bad input gives scenario errors with field paths, and the
reference ledger's own checks (the contract's errors, tests/e2e/test_ancillary_run.py runs
it on Anvil)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests._quickstart import QUICKSTART
from twin.market import errors as e
from twin.market.types import DSO_ACCOUNT
from twin.scenario import ScenarioError, load_scenario, scenario_from_dict
from twin.services.ancillary.rules import PPM, AncillaryLedger, regulation_amounts

FIELD = "market.services.ancillary"


def _data(**anc: Any) -> dict[str, Any]:
    data = load_scenario(QUICKSTART).model_dump(mode="json")
    data["duration_s"] = 3600
    data["agents"]["vpp"]["members"] = 5
    data["market"]["services"]["ancillary"] = {"enabled": True, "requested_kw": 40, **anc}
    return data


def _errors(data: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(ScenarioError) as exc:
        scenario_from_dict(data)
    return dict(exc.value.errors)


def test_a_valid_section_loads_and_each_bad_field_is_named(tmp_path: Path) -> None:
    assert scenario_from_dict(_data()).market.services.ancillary.enabled  # type: ignore[attr-defined]
    errs = _errors(_data(capacity_price_per_mw_h=-1, performance_price_per_mw=-0.5))
    assert f"{FIELD}.capacity_price_per_mw_h" in errs and f"{FIELD}.performance_price_per_mw" in errs
    assert f"{FIELD}.requested_kw" in _errors(_data(requested_kw=None))
    # no VPP to offer the headroom
    no_vpp = _data()
    no_vpp["agents"]["vpp"]["members"] = 0
    assert "VPP" in _errors(no_vpp)["agents.vpp.members"]
    # no capable resource: no storage, EV or flexible load
    none = _data()
    none["agents"]["community_storage"]["count"] = 0
    none["agents"]["evs"]["count"] = 0
    assert "without any capable resource" in _errors(none)[f"{FIELD}.enabled"]
    # a signal file that does not exist, with the wrong length or the wrong columns
    path = f"{FIELD}.signal.file"
    assert "does not exist" in _errors(_data(signal={"file": str(tmp_path / "nope.csv")}))[path]
    short = tmp_path / "short.csv"
    short.write_text("signal\n" + "0.1\n" * 59)  # an hour at 60 s needs 60
    assert "59 values" in _errors(_data(signal={"file": str(short)}))[path]
    cols = tmp_path / "cols.csv"
    cols.write_text("time_s,value\n" + "".join(f"{60 * i},0.1\n" for i in range(60)))
    assert "column 'signal'" in _errors(_data(signal={"file": str(cols)}))[path]
    good = tmp_path / "good.csv"
    good.write_text("time_s,signal\n" + "".join(f"{60 * i},{(-1) ** i * 0.5}\n" for i in range(60)))
    assert scenario_from_dict(_data(signal={"file": str(good)}))
    assert f"{FIELD}.signal.step_s" in _errors(_data(signal={"step_s": 70}))


def test_reference_ledger_pays_once_and_checks_like_the_contract() -> None:
    led = AncillaryLedger(owners={5: 3, 6: 4}, payer=DSO_ACCOUNT, interval_s=900,
                          capacity_price_per_mw_h=40_000_000, performance_price_per_mw=2_000_000)
    paid = led.settle(sender=DSO_ACCOUNT, interval=1, devices=[5, 6], capacity_w=[15_000, 10_001],
                      mileage_w=[34_893, 0], score_ppm=[PPM, 987_654])
    assert [p.owner for p in paid] == [3, 4]
    # 15 kW for a quarter hour at 40 per MW-h = 0.15; 34.893 MW... of mileage at 2 = 0.069786
    assert (paid[0].capacity_amount, paid[0].performance_amount) == (150_000, 69_786)
    assert (paid[1].capacity_amount, paid[1].performance_amount) == regulation_amounts(
        capacity_w=10_001, mileage_w=0, score_ppm=987_654, interval_s=900,
        capacity_price_per_mw_h=40_000_000, performance_price_per_mw=2_000_000)
    assert led.paid == sum(p.amount for p in paid)
    with pytest.raises(e.AlreadySettled):
        led.settle(sender=DSO_ACCOUNT, interval=1, devices=[], capacity_w=[], mileage_w=[], score_ppm=[])
    with pytest.raises(e.NotDSO):
        led.settle(sender=3, interval=2, devices=[], capacity_w=[], mileage_w=[], score_ppm=[])
    with pytest.raises(e.BadAmount):
        led.settle(sender=DSO_ACCOUNT, interval=2, devices=[5], capacity_w=[1], mileage_w=[1],
                   score_ppm=[PPM + 1])
    with pytest.raises(e.UnknownDevice):
        led.settle(sender=DSO_ACCOUNT, interval=3, devices=[9], capacity_w=[1], mileage_w=[1],
                   score_ppm=[PPM])
    with pytest.raises(e.BadPrice):
        AncillaryLedger(owners={}, payer=DSO_ACCOUNT, interval_s=900, capacity_price_per_mw_h=-1,
                        performance_price_per_mw=0)


def test_reserve_product_needs_a_capable_resource_and_names_each_bad_field() -> None:
    ok = _data(reserve={"enabled": True, "requested_kw": 20, "activated_intervals": [1]})
    ok["agents"]["community_storage"]["count"] = 1
    rs = scenario_from_dict(ok).market.services.ancillary.reserve  # type: ignore[attr-defined]
    assert rs.enabled and rs.activated_intervals == [1]
    no_storage = _data(reserve={"enabled": True, "requested_kw": 20})
    no_storage["agents"]["community_storage"]["count"] = 0
    assert "without any capable resource" in _errors(no_storage)[f"{FIELD}.reserve.enabled"]
    assert f"{FIELD}.reserve.energy_price_per_mwh" in _errors(
        _data(reserve={"enabled": True, "requested_kw": 20, "energy_price_per_mwh": -1}))
    errs = _errors(_data(reserve={"enabled": True, "requested_kw": None, "storage_share": 0,
                                  "activated_intervals": [3, 4]}))
    assert f"{FIELD}.reserve.requested_kw" in errs and f"{FIELD}.reserve.enabled" in errs
    assert "past the run" in errs[f"{FIELD}.reserve.activated_intervals"]  # an hour: 4 intervals
    alone = _data(reserve={"enabled": True, "requested_kw": 20})
    alone["market"]["services"]["ancillary"]["enabled"] = False  # reserve without the service
    assert "part of the ancillary service" in _errors(alone)[f"{FIELD}.enabled"]


def test_reference_ledger_pays_reserve_capacity_and_activated_energy_once() -> None:
    led = AncillaryLedger(owners={5: 3, 6: 4}, payer=DSO_ACCOUNT, interval_s=900,
                          capacity_price_per_mw_h=40_000_000, performance_price_per_mw=2_000_000,
                          reserve_capacity_price_per_mw_h=10_000_000, reserve_energy_price_per_mwh=150_000_000)
    paid = led.settle_reserve(sender=DSO_ACCOUNT, interval=1, devices=[5, 6], capacity_w=[20_000, 7],
                              energy_wh=[4_999, 0])
    # 20 kW held a quarter hour at 10 per MW-h = 0.05; 4.999 kWh at 150 per MWh = 0.74985;
    # 7 W: 7 x 900 x 10 / 3600 = 17.5 micro-units, floored
    assert [(p.owner, p.capacity_amount, p.energy_amount) for p in paid] == [(3, 50_000, 749_850), (4, 17, 0)]
    assert led.paid == 50_000 + 749_850 + 17
    # regulation of the same interval is settled apart; the reserve only once
    led.settle(sender=DSO_ACCOUNT, interval=1, devices=[], capacity_w=[], mileage_w=[], score_ppm=[])
    with pytest.raises(e.AlreadySettled):
        led.settle_reserve(sender=DSO_ACCOUNT, interval=1, devices=[], capacity_w=[], energy_wh=[])
    with pytest.raises(e.NotDSO):
        led.settle_reserve(sender=3, interval=2, devices=[], capacity_w=[], energy_wh=[])
    with pytest.raises(e.BadReadings):
        led.settle_reserve(sender=DSO_ACCOUNT, interval=2, devices=[5], capacity_w=[1], energy_wh=[])
    with pytest.raises(e.UnknownDevice):
        led.settle_reserve(sender=DSO_ACCOUNT, interval=2, devices=[9], capacity_w=[1], energy_wh=[1])
