"""dso.policy: envelopes in a feeder day: the cleared trades and the households' physical
export stay within the envelopes the DSO published before the orders were placed."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np

from twin.agents.model import FeederModel
from twin.grid.feeders import build_feeder
from twin.market.types import Side, Trade
from twin.scenario import load_scenario, scenario_from_dict

from ._market import clear

SCENARIO = Path(__file__).resolve().parents[2] / "scenarios" / "pv_overvoltage_envelopes.yaml"


def test_cleared_trades_and_exports_stay_within_envelopes() -> None:
    data = load_scenario(SCENARIO).model_dump(mode="json")
    data.update(start="2016-06-15T11:00:00Z", duration_s=2 * 3600)  # the PV peak
    s = scenario_from_dict(data)
    model = FeederModel(scenario=s, feeder=build_feeder(s), rng=np.random.default_rng(s.seed))
    assert model.envelopes is not None
    trades: list[Trade] = []
    prices: list[int] = []
    binding = 0
    published = {}
    for k in range(s.n_intervals):
        out = model.step_interval(interval=k, trades=trades, price_history=list(prices))
        assert not out.curtailments  # policy "envelopes": nothing is curtailed afterwards
        if k in published:  # physical export of the PV meters within the published limit
            for dev, wh in out.metered_wh.items():
                lim = published[k].export_wh.get(dev)
                if lim is not None and dev in model._hh_index:
                    assert -wh <= lim + 1, (k, dev, wh, lim)
        if k + 1 < s.n_intervals:
            pub = published[k + 1] = model.envelopes.published[k + 1]
            caps = {d.device_id: d.capacity_w for d in model.devices}
            binding += sum(wh < caps[d] * s.market.interval_s // 3600 for d, wh in pub.export_wh.items())
            for o in out.orders:
                lim = pub.limit_wh(o.device_id, o.side)
                assert lim is None or o.energy_wh <= lim
        trades, price = clear(out.orders, interval=k + 1, first_trade_id=1 + 10_000 * k)
        prices.append(price)
        sold: dict[int, int] = defaultdict(int)
        bought: dict[int, int] = defaultdict(int)
        for t in trades:
            sold[t.seller_device] += t.energy_wh
            bought[t.buyer_device] += t.energy_wh
        if k + 1 < s.n_intervals:
            pub = published[k + 1]
            for side, done in ((Side.SELL, sold), (Side.BUY, bought)):
                for d, wh in done.items():
                    lim = pub.limit_wh(d, side)
                    assert lim is None or wh <= lim, (k, d, side, wh, lim)
    assert binding > 0  # the feeder binds at noon: the envelopes are below capacity
    assert model.envelopes.capped  # and some orders were capped to them
