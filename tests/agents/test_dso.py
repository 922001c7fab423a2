"""DSO security check and curtailment on small crafted feeders and on the quickstart."""

from __future__ import annotations

import numpy as np
import pandapower as pp
import pytest

from twin.agents.dso import DSOAgent, Effect
from twin.agents.model import FeederModel
from twin.grid.feeders import build_feeder
from twin.market.types import Side, Trade
from twin.scenario import GridSpec

from ._market import run_day
from .conftest import scenario

MW_PER_WH = 4 / 1e6  # 15-min interval
PV, EV, HOUSE = 10, 20, 30


class _Model:
    """Enough of a Mesa model for one agent."""

    def __init__(self) -> None:
        import mesa

        self.model = mesa.Model(rng=np.random.default_rng(0))


def _weak_feeder() -> object:
    """ext grid -- 400 m of thin cable -- bus 1 with a PV system and an EV charger."""
    net = pp.create_empty_network()
    b0, b1 = pp.create_bus(net, vn_kv=0.4), pp.create_bus(net, vn_kv=0.4)
    pp.create_ext_grid(net, bus=b0, vm_pu=1.0)
    pp.create_line(net, from_bus=b0, to_bus=b1, length_km=0.4, std_type="NAYY 4x50 SE")
    pp.create_load(net, bus=b0, p_mw=0.0, name="house")  # buyer, inflexible
    pp.create_load(net, bus=b1, p_mw=0.0, name="ev")
    pp.create_sgen(net, bus=b1, p_mw=0.0, name="pv")
    return net


def _dso(net: object) -> DSOAgent:
    return DSOAgent(_Model().model, net=net, grid=GridSpec(kind="cigre_lv"))


def _effects() -> tuple[object, object]:
    def seller(device: int) -> list[Effect]:
        return [("sgen", 0, -MW_PER_WH)] if device == PV else []

    def buyer(device: int) -> list[Effect]:
        return [("load", 1, -MW_PER_WH)] if device == EV else []

    return seller, buyer


def _trade(tid: int, buyer: int, seller: int, wh: int) -> Trade:
    return Trade(trade_id=tid, interval=3, buy_order_id=tid, sell_order_id=tid, buyer_device=buyer,
                 seller_device=seller, cleared_wh=wh, energy_wh=wh, price_per_mwh=100)


def _check(dso: DSOAgent, trades: list[Trade], *, pv_mw: float, ev_mw: float,
           prices: dict[tuple[int, Side], int] | None = None):  # type: ignore[no-untyped-def]
    seller, buyer = _effects()
    prices = prices or {}
    return dso.check(
        trades=trades,
        element_p_mw={"load": np.array([0.0, ev_mw]), "sgen": np.array([pv_mw]), "storage": np.zeros(0)},
        element_q_mvar={"load": np.zeros(2), "sgen": np.zeros(1), "storage": np.zeros(0)},
        seller_effects=seller, buyer_effects=buyer,  # type: ignore[arg-type]
        limit_price=lambda device, side: prices.get((device, side), 0),
    )


def test_overvoltage_from_pv_export_is_curtailed_least_cost_first() -> None:
    dso = _dso(_weak_feeder())
    # 60 kW PV at the end of the line, sold in three trades (15 kWh = 60 kW * 15 min)
    trades = [_trade(1, HOUSE, PV, 5000), _trade(2, HOUSE, PV, 5000), _trade(3, HOUSE, PV, 5000)]
    res = _check(dso, trades, pv_mw=0.06, ev_mw=0.0)
    assert res.found.overvoltage > 0
    assert not res.remaining.any
    assert res.state.vm_max_pu <= dso.vm_max_pu
    assert res.curtailments and all(c.reason == "overvoltage" for c in res.curtailments)
    new = {c.trade_id: c.energy_wh for c in res.curtailments}
    assert all(0 <= e < 5000 for e in new.values())
    # same seller price everywhere: ties by trade id, so trade 1 goes first
    assert 1 in new and (len(new) == 1 or new[1] == 0)
    assert res.curtailed_wh == sum(5000 - e for e in new.values())
    assert res.checks < 12  # galloping + bisection, not one power flow per step


def test_no_violation_no_curtailment() -> None:
    dso = _dso(_weak_feeder())
    trades = [_trade(1, HOUSE, PV, 1000), _trade(2, EV, PV, 1000)]
    res = _check(dso, trades, pv_mw=0.008, ev_mw=0.004)
    assert not res.found.any and res.curtailments == [] and res.curtailed_wh == 0 and res.checks == 1


def test_undervoltage_from_ev_curtails_buy_trades_by_price() -> None:
    dso = _dso(_weak_feeder())
    # 3 EV purchases from the inflexible house meter; EV at 60 kW on the weak line
    trades = [_trade(1, EV, HOUSE, 5000), _trade(2, EV, HOUSE, 5000), _trade(3, EV, HOUSE, 5000)]
    res = _check(dso, trades, pv_mw=0.0, ev_mw=0.06)
    assert res.found.undervoltage > 0 and not res.remaining.any
    assert all(c.reason == "undervoltage" for c in res.curtailments)
    assert res.state.vm_min_pu >= dso.vm_min_pu


def test_nothing_to_curtail_reports_remaining() -> None:
    dso = _dso(_weak_feeder())
    trades = [_trade(1, HOUSE, 99, 1000)]  # neither side flexible
    res = _check(dso, trades, pv_mw=0.06, ev_mw=0.0)
    assert res.found.overvoltage > 0 and res.remaining.overvoltage > 0 and res.curtailments == []


def test_least_cost_order_uses_limit_prices() -> None:
    dso = _dso(_weak_feeder())
    pv2 = PV + 1  # a second PV meter on the same sgen row, with a lower reservation price

    def seller(device: int) -> list[Effect]:
        return [("sgen", 0, -MW_PER_WH)] if device in (PV, pv2) else []

    prices = {(PV, Side.SELL): 90, (pv2, Side.SELL): 50}
    trades = [_trade(1, HOUSE, PV, 5000), _trade(2, HOUSE, pv2, 5000)]
    res = dso.check(
        trades=trades,
        element_p_mw={"load": np.zeros(2), "sgen": np.array([0.04]), "storage": np.zeros(0)},
        element_q_mvar={"load": np.zeros(2), "sgen": np.zeros(1), "storage": np.zeros(0)},
        seller_effects=seller, buyer_effects=lambda device: [],
        limit_price=lambda device, side: prices.get((device, side), 0),
    )
    assert res.found.overvoltage and not res.remaining.any
    new = {c.trade_id: c.energy_wh for c in res.curtailments}
    assert 2 in new  # the cheaper seller first
    assert 1 not in new or new[2] == 0


@pytest.mark.parametrize("vm_max_pu", [1.027])
def test_model_curtails_only_when_violated(vm_max_pu: float) -> None:
    s = scenario(grid__vm_max_pu=vm_max_pu, duration_s=44 * 900)
    model = FeederModel(scenario=s, feeder=build_feeder(s), rng=np.random.default_rng(s.seed))
    outs = run_day(model, s.n_intervals)
    rows = [o.dso_rows[0] for o in outs]
    assert any(r["curtailed_wh"] > 0 for r in rows), "expected midday overvoltage"
    for o, r in zip(outs, rows, strict=True):
        if r["violations_found"] == 0:
            assert r["curtailed_wh"] == 0 and o.curtailments == []
        else:
            assert r["violations_remaining"] <= r["violations_found"]
        cut = {c.trade_id: c.energy_wh for c in o.curtailments}
        for t in o.trades:
            if t.trade_id in cut:
                assert t.energy_wh == cut[t.trade_id] < t.cleared_wh
        assert sum(t.curtailed_wh for t in o.trades) == r["curtailed_wh"]
