"""#19 liveness: chunks sent at once (pipelined) behind one that reverted cannot run.

Each chunked clearing / settlement call names the cursor position it follows; behind a chunk
that reverted (here: it ran out of a learned gas limit that was too small, while the later
chunks were already sent) every later one reverts ``CursorMismatch`` instead of verifying ids
(settling readings) from the wrong place, which used to leave the interval unresumable until
its reclaim deadline. Nothing is half-applied, and the ledger's own sender resumes from the
cursor: the interval clears and settles as the reference ledger's. Performed on a real Anvil."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest

from tests._orders import buy, sell
from tests.chain.conftest import FEED_IN, INTERVAL_S, RETAIL, setup_market
from twin.chain.chunks import plan_clearing, plan_settlement
from twin.chain.ledger import ChainLedger
from twin.chain.tx import ChainRevert
from twin.market import errors as e
from twin.market.clearing import match_orders, sort_book
from twin.market.reference import ReferenceLedger
from twin.market.types import OPERATOR_ACCOUNT

pytestmark = pytest.mark.chain

BOOK = [buy(12, 1000, 150_000_000, interval=2), buy(13, 800, 140_000_000, interval=2),
        buy(14, 900, 120_000_000, interval=2), sell(15, 700, 100_000_000, interval=2),
        sell(16, 1200, 110_000_000, interval=2), sell(17, 600, 130_000_000, interval=2)]
METERED = {12: 950, 13: 800, 14: 100, 15: -700, 16: -1100, 17: -600}


def _starve_next(led: ChainLedger, fn: str) -> Callable[[], int]:
    """The next ``fn`` transaction gets a gas limit far too small (as a limit learned from
    smaller chunks would be): it runs out of gas after the later chunks were sent."""
    real = led.tx.gas_limit
    starved = [0]

    def gas_limit(name: str, data: str) -> int:
        if name == f"EnergyMarket.{fn}" and not starved[0]:
            starved[0] = 1
            return 40_000
        return real(name, data)

    led.tx.gas_limit = gas_limit  # type: ignore[method-assign]
    return lambda: starved[0]


def _pipeline(led: ChainLedger, fn: str, calls: list[list[Any]], ats: list[int]) -> None:
    """Send ``calls`` at once; the first runs out of gas, every later one reverts
    CursorMismatch (decoded, naming the position it expected and the cursor's, 0)."""
    _starve_next(led, fn)
    pending = [led._send(led.market, fn, args, sender=OPERATOR_ACCOUNT, purpose=f"{fn} {k}")
               for k, args in enumerate(calls)]
    with pytest.raises(ChainRevert, match="OutOfGas"):
        led._finish(pending[0])
    for at, p in zip(ats[1:], pending[1:], strict=True):
        with pytest.raises(e.CursorMismatch) as info:
            led._finish(p)
        assert info.value.values == {"interval": 2, "expected": at, "actual": 0}


def _same_money(chain: ChainLedger, ref: ReferenceLedger) -> None:
    assert [chain.balance(a) for a in range(8)] == [ref.balance(a) for a in range(8)]
    assert chain.market_holdings() == ref.market_holdings()


def test_pipelined_chunks_behind_a_reverted_one_revert_and_the_sender_resumes(
        chain_ledger: ChainLedger) -> None:
    chain = chain_ledger
    ref = setup_market(ReferenceLedger(interval_s=INTERVAL_S, retail_price_per_mwh=RETAIL,
                                       feed_in_price_per_mwh=FEED_IN))
    for led in (chain, ref):
        led.place_orders(BOOK)
    chain.wait_for_gate(2)
    orders = chain.orders(2)
    bids, asks = sort_book(orders)
    n_trades = len(match_orders(orders).fills)
    plan = plan_clearing(bids, asks, n_trades=n_trades, chunk_orders=2, chunk_trades=1)
    assert len(plan) >= 5
    _pipeline(chain, "clearChunk", [[2, len(orders), c.at, list(c.bid_ids), list(c.ask_ids),
                                     c.max_trades] for c in plan], [c.at for c in plan])
    # nothing half-applied: the interval is open, no trade, no cursor, no escrow moved
    assert chain.interval_status(2) == "open"
    assert chain.market.functions.tradeCount().call() == 0
    assert chain._provisional_market.functions.clearingProgress(2).call() == [0, 0, False, 0, 0]
    _same_money(chain, ref)

    # the ledger's own pipelined sender, its first chunk starved again: it resumes by itself
    starved = _starve_next(chain, "clearChunk")
    got = chain.clear(2, chunk_orders=2, chunk_trades=1)
    ref.set_time(chain.now_s)
    expected = ref.clear(2)
    assert starved() and chain.interval_status(2) == "cleared"
    untimed = lambda ts: [dataclasses.replace(t, created_s=0) for t in ts]  # noqa: E731
    assert untimed(got.trades) == untimed(expected.trades) and len(got.trades) == n_trades
    assert (got.price_per_mwh, got.volume_wh) == (expected.price_per_mwh, expected.volume_wh)
    failed = [t for t in chain.transactions if t.function == "EnergyMarket.clearChunk"
              and t.status == 0]
    assert len(failed) == 2 * len(plan)  # twice: the starved chunk and every one behind it
    _same_money(chain, ref)

    # settlement, the same way: a trade chunk starved, the rest refused, then resumed
    for led in (chain, ref):
        led.set_time(3 * INTERVAL_S)
    devices = sorted(METERED)
    splan = plan_settlement(n_trades=n_trades, n_readings=len(devices), chunk_trades=1,
                            chunk_devices=2)
    _pipeline(chain, "settleChunk",
              [[2, c.at, c.max_trades, devices[c.start:c.stop],
                [METERED[d] for d in devices[c.start:c.stop]], c.last] for c in splan],
              [c.at for c in splan])
    assert chain.interval_status(2) == "cleared"  # not even "settling": nothing ran
    assert chain._provisional_market.functions.settlementProgress(2).call() == [0, 0, 0]
    starved = _starve_next(chain, "settleChunk")
    chain.prune_settled = True  # as the twin's runs: the next settlement frees interval 2
    rows = chain.settle(2, METERED, chunk_trades=1, chunk_devices=2)
    assert starved() and rows == ref.settle(2, METERED)
    assert chain.interval_status(2) == "settled"
    _same_money(chain, ref)  # conservation: every token where the reference has it

    # pruning: parts free the trades in order; the first part starved, the later ones that
    # free trades revert CursorMismatch (else the last part would free the trade range and
    # strand the earlier trades), and the reverted parts are sent again
    ids = [o.order_id for o in orders]
    trade_ids = [t.trade_id for t in got.trades]
    chain.gas_sizes.learn("prune", items=100, gas_used=21_000 + 100 * 2_000_000)  # 12 a part
    nxt = [buy(12, 500, 150_000_000, interval=5), sell(15, 500, 100_000_000, interval=5)]
    for led in (chain, ref):
        led.place_orders(nxt)
    got = chain.clear(5)
    ref.set_time(chain.now_s)
    assert untimed(got.trades) == untimed(ref.clear(5).trades)
    starved = _starve_next(chain, "pruneInterval")
    for led in (chain, ref):
        led.set_time(6 * INTERVAL_S)
    assert chain.settle(5, {12: 500, 15: -500}) == ref.settle(5, {12: 500, 15: -500})
    prunes = [t for t in chain.transactions if t.function == "EnergyMarket.pruneInterval"]
    assert starved() and len(prunes) >= 6, [(t.status, t.purpose) for t in prunes]
    n = len(prunes) // 2  # every part reverted once (the first starved), then sent again
    assert [t.status for t in prunes] == [0] * n + [1] * n
    assert all(t.purpose.endswith("(again)") for t in prunes[n:])
    assert [chain._provisional_market.functions.orders(i).call()[4] for i in ids] == [0] * 6
    assert [chain.market.functions.trades(t).call() for t in trade_ids] == [[0, 0, 0, 0]] * len(
        trade_ids)
    _same_money(chain, ref)


def test_cda_calls_behind_a_reverted_one_revert_and_the_clearing_runs_again(
        deploy: Callable[..., ChainLedger]) -> None:
    """The continuous double auction's ``clearCda`` calls name their cursor position (orders
    taken + fills) too: the first starved, the rest refused, then the ledger runs it again."""
    chain = setup_market(deploy(mechanism="cda"))
    ref = setup_market(ReferenceLedger(interval_s=INTERVAL_S, retail_price_per_mwh=RETAIL,
                                       feed_in_price_per_mwh=FEED_IN, mechanism="cda"))
    book = [dataclasses.replace(o, interval=0) for o in BOOK]
    for led in (chain, ref):
        led.place_orders(book)
    starved = _starve_next(chain, "clearCda")
    got = chain.clear(0, chunk_orders=1)
    ref.set_time(chain.now_s)
    expected = ref.clear(0)
    calls = [t for t in chain.transactions if t.function == "EnergyMarket.clearCda"]
    n = len(calls) // 2  # once refused (the first starved, every later one CursorMismatch)
    assert starved() and n >= 6 and [t.status for t in calls] == [0] * n + [1] * n
    untimed = lambda ts: [dataclasses.replace(t, created_s=0) for t in ts]  # noqa: E731
    assert untimed(got.trades) == untimed(expected.trades) and got.trades
    _same_money(chain, ref)
