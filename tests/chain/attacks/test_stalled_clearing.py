"""#19: an operator that stops in the middle of a chunked clearing (uniform or CDA) cannot keep
escrow locked.

Past the interval's reclaim deadline (its gate + one interval) a clearing whose matching walk
is unfinished (nothing priced, nothing released) is voided by the first owner who reclaims,
exactly like an interval never cleared; one whose walk is over has fixed trades, which stand:
anyone may then finish it. Performed on a real Anvil, compared with the reference ledger."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests._orders import buy, sell
from tests.chain.conftest import FEED_IN, INTERVAL_S, RETAIL, setup_market
from twin.chain.chunks import plan_clearing
from twin.chain.ledger import ChainLedger
from twin.market import errors as e
from twin.market.cda import continuous_double_auction
from twin.market.clearing import match_orders, sort_book
from twin.market.reference import ReferenceLedger
from twin.market.types import OPERATOR_ACCOUNT
from twin.market.units import payment

pytestmark = pytest.mark.chain


def _reference() -> ReferenceLedger:
    return setup_market(ReferenceLedger(interval_s=INTERVAL_S, retail_price_per_mwh=RETAIL,
                                        feed_in_price_per_mwh=FEED_IN))


def _first_chunk(led: ChainLedger, interval: int, n_orders: int, *, whole: bool = False) -> None:
    """The operator sends one chunk, then stops: the plan's first chunk (one order per side),
    or (``whole``) every id but no trade priced (max_trades 0)."""
    orders = led.orders(interval)
    bids, asks = sort_book(orders)
    if whole:
        bid_ids, ask_ids = [o.order_id for o in bids], [o.order_id for o in asks]
    else:
        plan = plan_clearing(bids, asks, n_trades=len(match_orders(orders).fills), chunk_orders=2,
                             chunk_trades=1)
        bid_ids, ask_ids = list(plan[0].bid_ids), list(plan[0].ask_ids)
    led._transact(led.market, "clearChunk", [interval, n_orders, 0, bid_ids, ask_ids, 0],
                  sender=OPERATOR_ACCOUNT, purpose="one chunk, then the operator stops")


def _same_money(chain: ChainLedger, ref: ReferenceLedger) -> None:
    for a in range(8):
        assert chain.balance(a) == ref.balance(a), a
    assert chain.market_holdings() == ref.market_holdings()


def test_owners_reclaim_from_a_clearing_stopped_mid_walk(chain_ledger: ChainLedger) -> None:
    chain, ref = chain_ledger, _reference()
    chain.prune_settled = True  # as the twin's runs: the void interval is freed (#24)
    book = [buy(12, 1000, 150_000_000, interval=2), buy(13, 1000, 140_000_000, interval=2),
            buy(14, 1000, 130_000_000, interval=2), sell(15, 1000, 100_000_000, interval=2),
            sell(16, 1000, 110_000_000, interval=2), sell(17, 1000, 120_000_000, interval=2)]
    for led in (chain, ref):
        led.place_orders(book)
    chain.wait_for_gate(2)
    _first_chunk(chain, 2, len(book))  # one pair matched, the walk paused: then the operator stops
    assert chain.interval_status(2) == "clearing"
    assert chain.market.functions.tradeCount().call() == 1
    bids = [o.order_id for o in chain.orders(2) if o.side.name == "BUY"]
    deadline = chain.reclaim_after_s(2)
    for led in (chain, ref):
        led.set_time(deadline)
        with pytest.raises(e.NotReclaimable):  # the operator still has time
            led.reclaim(2, bids[:1])
        led.set_time(deadline + 1)
        for account, oid in zip((2, 3, 4), bids, strict=True):
            led.reclaim(account, [oid])
            if led is chain and account == 2:  # escrow still held: not freed yet
                assert chain._send_void_prunes() == [] and len(chain._void_unpruned) == 1
        assert led.interval_status(2) == "void"
        with pytest.raises(e.AlreadyCleared):  # the stopped clearing can never resume
            led.clear(2)
    _same_money(chain, ref)  # every bid's escrow back, nothing paid, nothing created
    assert chain.market.functions.clearingInterval().call() == 0
    assert chain.market.functions.tradeCount().call() == 0  # the unpriced match is dropped
    nxt = [buy(12, 500, 150_000_000, interval=5), sell(15, 500, 100_000_000, interval=5)]
    for led in (chain, ref):
        led.place_orders(nxt)
    assert chain.clear(5) == ref.clear(5)  # the next interval clears, same trade ids
    voided = [o.order_id for o in chain.orders(2)]
    for led in (chain, ref):
        led.set_time(6 * INTERVAL_S)
        led.settle(5, {12: 500, 15: -500})
    _same_money(chain, ref)
    # every escrow back: the next settlement freed the void interval's orders (one call)
    assert [r["interval"] for r in chain.tx_table()
            if r["function"] == "EnergyMarket.pruneInterval"] == [2]
    assert [chain._provisional_market.functions.orders(i).call()[4] for i in voided] == [0] * 6
    assert chain.interval_status(2) == "void" and not chain._void_unpruned


def test_a_finished_walk_stands_and_anyone_may_finish_it(chain_ledger: ChainLedger) -> None:
    chain, ref = chain_ledger, _reference()
    book = [buy(12, 1000, 150_000_000, interval=2), sell(15, 600, 100_000_000, interval=2),
            sell(16, 1000, 200_000_000, interval=2)]
    for led in (chain, ref):
        led.place_orders(book)
    chain.wait_for_gate(2)
    _first_chunk(chain, 2, len(book), whole=True)  # walk over (price fixed), no trade priced yet
    assert chain._provisional_market.functions.clearingProgress(2).call()[2] is True
    bid = next(o.order_id for o in chain.orders(2) if o.side.name == "BUY")
    deadline = chain.reclaim_after_s(2)
    for led in (chain, ref):
        led.set_time(deadline)
        with pytest.raises(e.NotOperator):  # until the deadline only the operator clears
            led.clear(2, sender=3)
        led.set_time(deadline + 1)
    with pytest.raises(e.NotReclaimable):  # the matched trade stands: no reclaim
        chain.reclaim(2, [bid])
    got = chain.clear(2, sender=3)  # a stranger finishes the stalled clearing
    assert got == ref.clear(2, sender=3) and len(got.trades) == 1
    assert chain.interval_status(2) == "cleared"
    _same_money(chain, ref)


def test_a_cda_clearing_stopped_mid_way_is_voided_and_every_bid_gets_back_what_it_holds(
        deploy: Callable[..., ChainLedger]) -> None:
    """CDA: a clearing stopped with orders still to take is voided by the first reclaim past
    the deadline, like a uniform one. Each bid gets back what it still holds: a bid filled on
    arrival the money its fills kept (the rest came back when it was filled), a bid filled
    while resting what its node kept, a resting, the matching (paused mid-sweep) or an untaken
    bid all of its escrow; the market ends where the reference, which never cleared, does.
    A CDA clearing that took every order (only resting bids' releases left) stands."""
    chain = setup_market(deploy(mechanism="cda"))
    ref = setup_market(ReferenceLedger(interval_s=INTERVAL_S, retail_price_per_mwh=RETAIL,
                                       feed_in_price_per_mwh=FEED_IN, mechanism="cda"))
    m = 1_000_000
    book = [sell(15, 1000, 100 * m, interval=2),  # 1 rests
            buy(12, 600, 150 * m, interval=2),    # 2 filled on arrival at 100
            buy(13, 1000, 120 * m, interval=2),   # 3 fills 400 at 100, rests 600 ...
            sell(16, 600, 80 * m, interval=2),    # 4 ... and is filled resting (popped)
            buy(14, 500, 130 * m, interval=2),    # 5 rests
            sell(17, 200, 90 * m, interval=2),    # 6 fills 200 of 5 (5 rests partly filled)
            sell(16, 100, 140 * m, interval=2),   # 7 rests
            sell(17, 100, 145 * m, interval=2),   # 8 rests
            buy(12, 300, 200 * m, interval=2),    # 9 sweeps 7, then the budget is out
            buy(13, 100, 100 * m, interval=2)]   # 10 never taken
    for led in (chain, ref):
        led.place_orders(book)
    chain.wait_for_gate(2)
    steps = continuous_double_auction(chain.orders(2)).steps
    ids, hints = [s.order_id for s in steps[:9]], [s.hint for s in steps[:9]]
    chain._transact(chain.market, "clearCda", [2, 10, 0, ids, hints, 5], sender=OPERATOR_ACCOUNT,
                    purpose="five fills, then the operator stops")
    assert chain.interval_status(2) == "clearing" and len(chain.trades(2)) == 5
    deadline = chain.reclaim_after_s(2)
    bids = {o.order_id: o.owner for o in chain.orders(2) if o.side.name == "BUY"}
    for led in (chain, ref):
        led.set_time(deadline)
        with pytest.raises(e.NotReclaimable):
            led.reclaim(3, [3])
        led.set_time(deadline + 1)
        for oid, owner in bids.items():
            led.reclaim(owner, [oid])
        led.reclaim(2, [2])  # a second reclaim returns nothing more
        assert led.interval_status(2) == "void"
    back = {ev["args"]["orderId"]: ev["args"]["amount"] for ev in chain.market.events.EscrowReleased().get_logs(
        from_block=chain.tx.transactions[-len(bids) - 1].block)}
    pay = payment
    assert back == {2: pay(600, 100 * m), 3: pay(400, 100 * m) + pay(600, 120 * m), 5: pay(500, 130 * m),
                    9: pay(300, 200 * m), 10: pay(100, 100 * m)}  # held: kept by fills / all
    with pytest.raises(e.AlreadyCleared):
        chain._transact(chain.market, "clearCda", [2, 10, 14, ids[5:], hints[5:], 50],
                        sender=OPERATOR_ACCOUNT, purpose="the stopped clearing cannot resume")
    _same_money(chain, ref)  # every token of escrow back; nothing paid, nothing created
    # interval 5: both bids taken, one resting bid's release left when the operator stops
    for led in (chain, ref):
        led.place_orders([buy(12, 100, 150 * m, interval=5), buy(13, 100, 140 * m, interval=5)])
    chain.wait_for_gate(5)
    steps = continuous_double_auction(chain.orders(5)).steps
    chain._transact(chain.market, "clearCda", [5, 2, 0, [s.order_id for s in steps], [s.hint for s in steps], 1],
                    sender=OPERATOR_ACCOUNT, purpose="all taken, then the operator stops")
    chain.set_time(chain.reclaim_after_s(5) + 1)
    ref.set_time(chain.reclaim_after_s(5) + 1)
    with pytest.raises(e.NotReclaimable):  # every order taken: the clearing stands
        chain.reclaim(2, [steps[0].order_id])
    chain._transact(chain.market, "clearCda", [5, 2, 2, [], [], 10], sender=4,
                    purpose="a stranger finishes the stalled clearing")
    ref.clear(5, sender=4)
    assert chain.interval_status(5) == ref.interval_status(5) == "cleared"
    _same_money(chain, ref)
