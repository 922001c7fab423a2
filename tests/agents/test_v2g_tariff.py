"""V2G EVs (agents.evs.v2g) and the DSO's local network tariff (grid.tariff)."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from twin.agents.model import AGENT_ROW_COLUMNS, FeederModel, IntervalOutput
from twin.grid.feeders import build_feeder
from twin.market.types import OrderIntent, Side, Trade
from twin.market.units import MICRO, WH_PER_MWH, price_from_per_mwh

from ._market import run_day
from .conftest import scenario

OTHER = 10_000  # a counterparty device outside the feeder (no physical effect)


def _fill_all(orders: list[OrderIntent], *, interval: int, price: int, first_id: int) -> list[Trade]:
    """Every order of ``interval`` fully matched against an outside counterparty."""
    out = []
    for n, o in enumerate(o for o in orders if o.interval == interval):
        buyer, seller = (o.device_id, OTHER) if o.side == Side.BUY else (OTHER, o.device_id)
        out.append(Trade(trade_id=first_id + n, interval=interval, buy_order_id=0, sell_order_id=0,
                         buyer_device=buyer, seller_device=seller, cleared_wh=o.energy_wh,
                         energy_wh=o.energy_wh, price_per_mwh=price))
    return out


def _drive_v2g(model: FeederModel, price: int) -> list[IntervalOutput]:
    """A day in which every order clears at ``price`` (high: every EV with slack sells)."""
    outs: list[IntervalOutput] = []
    trades: list[Trade] = []
    next_id = 1
    for k in range(model.n_intervals):
        out = model.step_interval(interval=k, trades=trades, price_history=[price] * (k + 1))
        outs.append(out)
        trades = _fill_all(out.orders, interval=k + 1, price=price, first_id=next_id)
        next_id += len(trades)
    return outs


def _ev_rows(outs: list[IntervalOutput]) -> dict[str, np.ndarray]:
    rows = [r for o in outs for r in o.agent_rows if r["kind"] == "ev"]
    T = len(outs)
    return {c: np.array([r[c] for r in rows]).reshape(T, -1) for c in AGENT_ROW_COLUMNS}


@pytest.fixture(scope="module")
def v2g_day() -> tuple[FeederModel, list[IntervalOutput]]:
    s = scenario(agents__evs__v2g=True, agents__evs__count=8, agents__evs__v2g_wear_per_mwh=0.0)
    model = FeederModel(scenario=s, feeder=build_feeder(s), rng=np.random.default_rng(s.seed))
    retail = price_from_per_mwh(s.market.retail_price_per_mwh)
    return model, _drive_v2g(model, retail)


def test_v2g_sells_but_departure_need_is_met(v2g_day: tuple[FeederModel, list[IntervalOutput]]) -> None:
    model, outs = v2g_day
    ev = model.evs
    r = _ev_rows(outs)
    T = len(outs)
    assert r["battery_discharge_wh"].sum() > 1000  # V2G really happened
    assert np.allclose(r["sold_wh"].sum(), r["battery_discharge_wh"].sum())  # followed the trades
    need, plugged = r["remaining_need_wh"], r["plugged"]
    for e in range(ev.n):
        for k in range(T - 1):
            if plugged[k, e] and not plugged[k + 1, e] and ev.departure_k[e, k] == k + 1:
                assert need[k, e] <= 1.0, (e, k, need[k, e])


def test_v2g_respects_power_soc_and_one_side(v2g_day: tuple[FeederModel, list[IntervalOutput]]) -> None:
    model, outs = v2g_day
    ev, spec = model.evs, model.scenario.agents.evs
    r = _ev_rows(outs)
    dis, chg = r["battery_discharge_wh"], r["battery_charge_wh"]
    assert (dis <= ev.cap_wh[None, :] + 1e-9).all() and (chg <= ev.cap_wh[None, :] + 1e-9).all()
    assert not ((dis > 0) & (chg > 0)).any()  # never both in one interval
    assert (r["soc"] >= 0).all() and (r["soc"] <= 1 + 1e-12).all()
    assert (r["soc"][dis > 0] >= spec.v2g_soc_min - 1e-9).all()
    assert not ((dis > 0) & ~r["plugged"]).any()
    # metering: consumption positive, charge - discharge
    assert np.abs(r["metered_wh"] - (chg - dis)).max() <= 0.5
    # round trip: the battery loses dis / eta for dis delivered (energy balance per interval)
    soc = r["soc"]
    for k in range(1, len(outs)):
        same = r["plugged"][k] & r["plugged"][k - 1] & ~ev.arrives[:, k]
        delta = (soc[k] - soc[k - 1]) * ev.battery_wh
        assert np.allclose(delta[same], (chg[k] - dis[k] / spec.v2g_efficiency)[same], atol=1e-6)
    # one side per device and interval in the orders
    for o in outs:
        sides = defaultdict(set)
        for x in o.orders:
            sides[x.device_id].add(x.side)
        assert all(len(v) == 1 for v in sides.values())


def test_v2g_sale_is_curtailed_like_other_injections() -> None:
    s = scenario(agents__evs__v2g=True, agents__evs__v2g_wear_per_mwh=0.0)
    model = FeederModel(scenario=s, feeder=build_feeder(s), rng=np.random.default_rng(1))
    k = 4  # 01:00, cars are home
    run_day(model, k)
    sellable = model.evs.sellable_wh(k)
    e = int(np.argmax(sellable))
    assert sellable[e] >= 100
    dev = int(model.evs.device_id[e])
    assert model._seller_effects(dev)  # a curtailment candidate like PV and batteries
    cut = Trade(trade_id=1, interval=k, buy_order_id=1, sell_order_id=2, buyer_device=OTHER,
                seller_device=dev, cleared_wh=int(sellable[e]), energy_wh=40, price_per_mwh=1)
    out = model.step_interval(interval=k, trades=[cut], price_history=[])
    assert out.metered_wh[dev] == -40  # dispatch follows the final (curtailed) trade
    # a (crafted) overvoltage: the DSO curtails the EV's sale
    s2 = scenario(agents__evs__v2g=True, grid__vm_max_pu=1.0 + 1e-9)
    model = FeederModel(scenario=s2, feeder=build_feeder(s2), rng=np.random.default_rng(1))
    run_day(model, k)
    t = Trade(trade_id=1, interval=k, buy_order_id=1, sell_order_id=2, buyer_device=OTHER,
              seller_device=dev, cleared_wh=int(sellable[e]), energy_wh=int(sellable[e]), price_per_mwh=1)
    out = model.step_interval(interval=k, trades=[t], price_history=[])
    if out.dso_rows[0]["violations_found"]:
        assert [c.trade_id for c in out.curtailments] == [1]
        assert out.metered_wh[dev] == -out.trades[0].energy_wh  # idle when cut to nothing


def _fingerprint(outs: list[IntervalOutput]) -> list[str]:
    """Everything an interval produces, as text (NaN-safe)."""
    fp: list[object] = []
    for o in outs:
        fp += [o.orders, o.trades, o.curtailments, o.metered_wh, o.event_rows]
        fp += [{c: v.tolist() for c, v in o.agent_columns.items()}]
        fp += [{t: o.element_p_mw[t].tolist() for t in ("load", "sgen", "storage")}]
        fp += [o.dso_rows]
    return [repr(x) for x in fp]


@pytest.mark.parametrize("strategy", ["truthful", "roth_erev"])
def test_v2g_off_and_zero_tariff_change_nothing(strategy: str) -> None:
    """V2G off (whatever its parameters) and an all-zero tariff give the default's results."""
    base = scenario(agents__strategy=strategy)
    off = scenario(agents__strategy=strategy, agents__evs__v2g=False, agents__evs__v2g_efficiency=0.5,
                   agents__evs__v2g_soc_min=0.6, grid__tariff__peak_start_hour=3.0)
    runs = []
    for s in (base, off):
        model = FeederModel(scenario=s, feeder=build_feeder(s), rng=np.random.default_rng(s.seed))
        runs.append(_fingerprint(run_day(model, 40)))
    assert runs[0] == runs[1]


def test_v2g_same_seed_identical(v2g_day: tuple[FeederModel, list[IntervalOutput]]) -> None:
    model, outs = v2g_day
    s = model.scenario
    again = FeederModel(scenario=s, feeder=build_feeder(s), rng=np.random.default_rng(s.seed))
    retail = price_from_per_mwh(s.market.retail_price_per_mwh)
    assert _fingerprint(_drive_v2g(again, retail)) == _fingerprint(outs)


# ---------------------------------------------------------------- network tariff
def test_tariff_schedule_and_wrap() -> None:
    s = scenario(grid__tariff__offpeak_fee_per_mwh=10.0, grid__tariff__peak_fee_per_mwh=40.0,
                 grid__tariff__peak_start_hour=22.0, grid__tariff__peak_end_hour=2.0)
    model = FeederModel(scenario=s, feeder=build_feeder(s), rng=np.random.default_rng(0))
    fees = [model.dso.network_fee(k) / MICRO for k in range(s.n_intervals)]
    per_hour = 3600 // s.market.interval_s
    assert fees[0] == 40.0 and fees[2 * per_hour - 1] == 40.0 and fees[2 * per_hour] == 10.0
    assert fees[22 * per_hour - 1] == 10.0 and fees[22 * per_hour] == 40.0


def test_tariff_is_published_bid_net_and_recorded() -> None:
    fee_per_mwh = 25.0
    fee = price_from_per_mwh(fee_per_mwh)
    runs = {}
    for f in (0.0, fee_per_mwh):
        s = scenario(grid__tariff__offpeak_fee_per_mwh=f, grid__tariff__peak_fee_per_mwh=f)
        model = FeederModel(scenario=s, feeder=build_feeder(s), rng=np.random.default_rng(s.seed))
        runs[f] = (model, run_day(model, 24))
    m0, o0 = runs[0.0]
    _, o1 = runs[fee_per_mwh]
    feed_in = price_from_per_mwh(m0.scenario.market.feed_in_price_per_mwh)
    # the first orders (no trades yet, same draws): every buyer bids its valuation net of the fee
    b0 = {x.device_id: x.price_per_mwh for x in o0[0].orders if x.side == Side.BUY}
    b1 = {x.device_id: x.price_per_mwh for x in o1[0].orders if x.side == Side.BUY}
    assert b0.keys() == b1.keys() and b0
    assert all(b1[d] == max(b0[d] - fee, feed_in) for d in b0 if d in m0._hh_index or d in m0._ev_index)
    s0 = {x.device_id: x.price_per_mwh for x in o0[0].orders if x.side == Side.SELL}
    s1 = {x.device_id: x.price_per_mwh for x in o1[0].orders if x.side == Side.SELL}
    assert s0 == s1  # sellers' asks unchanged
    for o in o1:
        row = o.dso_rows[0]
        assert row["network_fee_per_mwh"] == fee_per_mwh
        assert row["network_fee_amount"] == pytest.approx(
            fee * sum(t.energy_wh for t in o.trades) / WH_PER_MWH / MICRO)
    assert sum(o.dso_rows[0]["network_fee_amount"] for o in o1) > 0
    assert all(o.dso_rows[0]["network_fee_amount"] == 0 for o in o0)


def test_bad_tariff_is_a_scenario_error() -> None:
    from twin.scenario import ScenarioError

    with pytest.raises(ScenarioError, match=r"grid\.tariff\.peak_fee_per_mwh"):
        scenario(grid__tariff__peak_fee_per_mwh=-1.0)
    with pytest.raises(ScenarioError, match=r"agents\.evs\.v2g_efficiency"):
        scenario(agents__evs__v2g_efficiency=1.5)
