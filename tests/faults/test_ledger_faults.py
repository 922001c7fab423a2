"""Market invariants under random grid-fault schedules, on the reference ledger.

Random line faults, repairs and upstream losses (the run's SimPy fault processes) split a
small feeder into the grid's part, islands held by a battery and dead parts; the run's market
step clears one book per island (``books``), the outage's curtailments zero the trades of
devices without supply (or split into different islands since clearing) and dead meters
read 0. Whatever the schedule: tokens are conserved
exactly, every interval's trades balance (energy bought = sold, per book), trades never cross
books, each (interval, device) is settled once and a second settlement is refused.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.faults._nets import lateral_net
from twin.faults.plan import FaultState, _Graph, books_of, fault_plan, islands
from twin.faults.spec import FaultsSpec
from twin.market import errors as e
from twin.market.audit import token_audit
from twin.market.reference import ReferenceLedger
from twin.market.step import Curtailment, MarketLog, MarketStep
from twin.market.types import Device, DeviceKind, OrderIntent, Side

IT = 900
N = 10  # intervals
NET = lateral_net()
GRAPH = _Graph.of(NET)
GF_BUS = np.array([3])
# one device per LV bus (bus position = device id), owners 2..7; device 3 is the battery
DEVICES = [Device(device_id=b, owner=b + 1, kind=DeviceKind.STORAGE if b == 3 else DeviceKind.PV, bus=b,
                  capacity_w=20_000) for b in range(1, 7)]
CAP_WH = 20_000 * IT // 3600

faults = st.lists(st.tuples(st.integers(0, 4), st.integers(0, N * IT - 1), st.integers(60, 4 * IT)),
                  max_size=4)
upstream = st.one_of(st.none(), st.tuples(st.integers(0, N * IT - 1), st.integers(60, 5 * IT)))


def _plan(line_faults, up) -> list[FaultState]:
    spec = FaultsSpec.model_validate({
        "lines": [{"element": el, "at_s": [t], "repair": {"mean_s": r}} for el, t, r in line_faults],
        "upstream": [{"start_s": up[0], "duration_s": up[1]}] if up else []})
    plan = fault_plan(spec, net=NET, rng=np.random.default_rng(0), duration_s=N * IT, interval_s=IT,
                      n_households=0, n_evs=0, gf_bus=GF_BUS)
    return plan.states


@settings(max_examples=40, deadline=None)
@given(faults, upstream, st.integers(0, 2**32 - 1))
@example([(1, 2 * IT, 3 * IT)], (IT, 6 * IT), 7)  # a lateral fault inside an upstream loss
def test_tokens_energy_and_single_settlement_hold_under_random_faults(line_faults, up, seed) -> None:
    states = _plan(line_faults, up)
    rng = np.random.default_rng(seed)
    ledger = ReferenceLedger(interval_s=IT, retail_price_per_mwh=300_000_000, feed_in_price_per_mwh=80_000_000)
    minted = 0
    for d in DEVICES:
        ledger.deposit(d.owner, 10**12)
        ledger.register_device(d)
        minted += 10**12
    ledger.deposit(1, 10**12)  # the DSO
    minted += 10**12
    step = MarketStep(ledger=ledger, interval_s=IT, n_intervals=N, log=MarketLog())
    dev_bus = {d.device_id: d.device_id for d in DEVICES}
    trades_of: dict[int, list] = {}
    books_at: dict[int, dict[int, int] | None] = {}
    settled: list[tuple[int, int]] = []
    for k in range(N):
        st_k = states[k]
        isl = islands(GRAPH, st_k, GF_BUS)
        books = None if st_k.topology_normal else books_of(isl, dev_bus, market="per_island")
        alive = {d for d in dev_bus if isl.bus_island[dev_bus[d]] >= 0}
        # the outage's answer: trades of devices without supply are curtailed, dead meters read 0
        where = books_of(isl, dev_bus, market="per_island")
        cuts = [Curtailment(trade_id=t.trade_id, energy_wh=0) for t in trades_of.get(k, [])
                if t.buyer_device not in alive or t.seller_device not in alive
                or where.get(t.buyer_device) != where.get(t.seller_device)]
        metered = {d: (int(rng.integers(-CAP_WH, CAP_WH + 1)) if d in alive else 0) for d in dev_bus}
        orders = [OrderIntent(device_id=d, interval=k + 1, side=Side(int(rng.integers(0, 2))),
                              energy_wh=int(rng.integers(1, CAP_WH + 1)),
                              price_per_mwh=int(rng.integers(80, 301)) * 1_000_000)
                  for d in dev_bus if rng.random() < 0.8] if k + 1 < N else []
        res = step.step(k, orders_interval=k + 1 if k + 1 < N else None, orders=orders, curtailments=cuts,
                        metered_wh=metered, metered_interval=k, books=books)
        trades_of[k + 1] = res.trades
        books_at[k + 1] = books
        for row in res.rows.get("settlements", []):
            settled.append((row["interval"], row["device_id"]))
            assert row["imbalance_wh"] == row["metered_wh"] - row["traded_wh"]
        if res.rows.get("settlements"):
            assert sum(r["traded_wh"] for r in res.rows["settlements"]) == 0  # bought = sold
        for t in res.trades:  # trades never cross island books
            if books is not None:
                assert books[t.buyer_device] == books[t.seller_device]
        for r in res.rows.get("island_market", []):
            mine = [t for t in res.trades if books and books[t.buyer_device] == r["island"]]
            assert r["volume_wh"] == sum(t.cleared_wh for t in mine)
        if k >= 1:
            with pytest.raises(e.AlreadySettled):
                ledger.settle(interval=k, metered_wh=metered)
    assert max(Counter(settled).values(), default=1) == 1  # no double settlement
    audit = token_audit(ledger, accounts=range(8), minted=minted)
    assert audit["conserved"], audit


def test_islands_clear_on_their_own_books_with_their_own_price() -> None:
    """Two books at once: the grid's part (lateral B) and the battery's island cannot trade."""
    ledger = ReferenceLedger(interval_s=IT, retail_price_per_mwh=300_000_000, feed_in_price_per_mwh=80_000_000)
    for d in DEVICES:
        ledger.deposit(d.owner, 10**12)
        ledger.register_device(d)
    books = {1: 0, 2: 0, 5: 0, 3: 1, 4: 1}  # device 6 has no book (no supply)
    ledger.set_books(1, books)
    ledger.place_orders([
        OrderIntent(device_id=1, interval=1, side=Side.SELL, energy_wh=500, price_per_mwh=100_000_000),
        OrderIntent(device_id=2, interval=1, side=Side.BUY, energy_wh=500, price_per_mwh=150_000_000),
        OrderIntent(device_id=3, interval=1, side=Side.SELL, energy_wh=400, price_per_mwh=200_000_000),
        OrderIntent(device_id=4, interval=1, side=Side.BUY, energy_wh=400, price_per_mwh=280_000_000),
        OrderIntent(device_id=6, interval=1, side=Side.BUY, energy_wh=400, price_per_mwh=300_000_000),
    ])
    c = ledger.clear(1)
    pairs = {(t.seller_device, t.buyer_device): t.price_per_mwh for t in c.trades}
    assert set(pairs) == {(1, 2), (3, 4)}  # 6 (no supply) and cross-book matches excluded
    assert pairs[(1, 2)] != pairs[(3, 4)]  # each island its own uniform price
    assert c.volume_wh == 900
