"""Attacks of issue #19 on curtailment and the order book, on a real node and in the reference.

* The DSO curtails trades to earn from them: the curtailed seller is paid the curtailed energy
  at the trade's price by the DSO, a buyer pays at most the trade's price for curtailed energy
  it consumes anyway, and a seller earns nothing for curtailed energy it injects anyway — the
  DSO's balance never rises from curtailing, the seller is whole, value is conserved.
* ``curtailBatch``: an interval's curtailments in one (chunked) transaction, all or none.
* Free 1 Wh order spam: orders below the market's ``min_order_wh`` are refused (OrderTooSmall).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from pydantic import ValidationError

from tests._orders import buy, cleared, sell
from tests.chain._helpers import FEED_IN, INTERVAL_S, RETAIL
from tests.chain.conftest import setup_market
from twin.chain.ledger import ChainLedger
from twin.market import errors as e
from twin.market.ledger import Ledger
from twin.market.reference import ReferenceLedger
from twin.market.types import DSO_ACCOUNT
from twin.market.units import payment
from twin.scenario import MarketSpec

pytestmark = pytest.mark.chain

ACCOUNTS = range(8)
PRICE = 105_000_000  # cleared(): (13 <- 14, 1500 Wh), (12 <- 14, 1000 Wh) at this price


def _conserved(led: Ledger) -> None:
    balances = [led.balance(a) for a in ACCOUNTS]
    assert led.market_holdings() == sum(b.free + b.locked for b in balances)
    assert led.total_supply() == led.market_holdings() + sum(led.wallet(a) for a in ACCOUNTS)


def test_dso_gains_nothing_from_curtailing(ledger: Ledger) -> None:
    cleared(ledger)
    t13, t12 = (t.trade_id for t in ledger.trades(0))
    free0 = {a: ledger.balance(a).free + ledger.balance(a).locked for a in (DSO_ACCOUNT, 2, 3, 4)}
    ledger.curtail_batch([(t13, 500), (t12, 0)])  # 1000 Wh off each trade, one transaction
    # buyer 13 consumes its curtailed 1000 Wh anyway, buyer 12 (flexible) does not; seller
    # 14 injects 300 Wh of its curtailed 2000 Wh anyway
    rows = {r.device_id: r for r in ledger.settle(0, {12: 0, 13: 1500, 14: -800})}
    after = {a: ledger.balance(a).free + ledger.balance(a).locked for a in free0}
    delta = {a: after[a] - free0[a] for a in free0}
    cut = payment(1000, PRICE)
    assert delta[4] == payment(2500, PRICE)  # the seller is whole: its cleared trades in full
    assert rows[14].imbalance_amount == 0  # ... and earns nothing for injecting curtailed energy
    assert delta[3] == -(payment(500, PRICE) + cut)  # buyer 13: the trade price, not retail
    assert delta[2] == 0  # buyer 12 took nothing and pays nothing
    assert delta[DSO_ACCOUNT] == -cut <= 0  # the DSO paid for the curtailment it asked for
    _conserved(ledger)


def test_curtailing_to_sell_retail_earns_the_dso_nothing(ledger: Ledger) -> None:
    cleared(ledger)
    dso0 = ledger.balance(DSO_ACCOUNT).free
    ledger.curtail_batch([(t.trade_id, 0) for t in ledger.trades(0)])
    ledger.settle(0, {12: 1000, 13: 1500, 14: 0})  # both buyers consume as traded
    assert ledger.balance(DSO_ACCOUNT).free == dso0  # retail is never charged for curtailed energy
    _conserved(ledger)


def test_curtail_batch_is_all_or_none_and_chunked(ledger: Ledger) -> None:
    cleared(ledger)
    t13, t12 = (t.trade_id for t in ledger.trades(0))
    before = ledger.trades(0)
    with pytest.raises(e.CurtailIncrease) as caught:  # the second entry fails: nothing changes
        ledger.curtail_batch([(t13, 100), (t12, 1001)])
    assert caught.value.values == {"trade": t12, "current": 1000, "requested": 1001}
    assert ledger.trades(0) == before
    kw = {"chunk": 2} if isinstance(ledger, ChainLedger) else {}
    n0 = len(ledger.tx.transactions) if isinstance(ledger, ChainLedger) else 0
    got = ledger.curtail_batch([(t13, 1200), (t13, 700), (t12, 400)], **kw)
    assert [(t.trade_id, t.energy_wh) for t in got] == [(t13, 1200), (t13, 700), (t12, 400)]
    assert [t.energy_wh for t in ledger.trades(0)] == [700, 400]
    if isinstance(ledger, ChainLedger):
        sent = ledger.tx.transactions[n0:]
        assert [r.function for r in sent] == ["EnergyMarket.curtailBatch"] * 2
        assert all(r.gas_used < 200_000 for r in sent)


@pytest.fixture(params=["reference", "chain"])
def min_ledger(request: pytest.FixtureRequest) -> Callable[[int], Ledger]:
    deploy = request.getfixturevalue("deploy") if request.param == "chain" else None

    def make(min_wh: int) -> Ledger:
        if deploy is None:
            return setup_market(ReferenceLedger(interval_s=INTERVAL_S, retail_price_per_mwh=RETAIL,
                                                feed_in_price_per_mwh=FEED_IN, min_order_wh=min_wh))
        return setup_market(deploy(min_order_wh=min_wh))

    return make


def test_one_wh_order_spam_is_refused(min_ledger: Callable[[int], Ledger]) -> None:
    led = min_ledger(100)
    assert led.min_order_wh == 100
    with pytest.raises(e.OrderTooSmall) as caught:
        led.place_orders([buy(12, 100, PRICE, 2), buy(12, 1, PRICE, 2)])
    assert caught.value.values == {"device": 12, "min_wh": 100, "energy": 1}
    assert led.orders(2) == []  # the batch is refused whole
    placed = led.place_orders([buy(12, 100, PRICE, 2), sell(14, 250, PRICE, 2)])
    assert [o.energy_wh for o in placed] == [100, 250]


def test_min_order_wh_is_validated() -> None:
    with pytest.raises(ValidationError, match="min_order_wh"):
        MarketSpec(min_order_wh=0)
    assert MarketSpec().min_order_wh == 1
