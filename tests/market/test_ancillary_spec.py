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
