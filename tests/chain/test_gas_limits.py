"""Sends on a node that mines on demand (twin/chain/tx.py ``mine_on_demand``, the twin's own
Anvil runs ``--no-mining``): pipelined transactions go out as one JSON-RPC batch and share
the one block mined for them, a revert inside a shared block is decoded exactly, an
out-of-gas from a learned limit is never a market error, and nothing is left in the node's
pool (so the shared node's evm_revert cannot replay a leftover into the next test)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from tests.chain.conftest import setup_market
from twin.chain.anvil import AnvilNode
from twin.chain.ledger import ChainLedger
from twin.chain.tx import ChainRevert
from twin.market import errors as e

pytestmark = pytest.mark.chain


@pytest.fixture
def led(anvil: AnvilNode, deploy: Callable[..., ChainLedger]) -> Iterator[ChainLedger]:
    """A set-up market on the session node switched to mining on demand (inside the test's
    snapshot); automine is back on, with an empty pool, before the snapshot is reverted."""
    anvil.rpc("evm_setAutomine", False)
    try:
        ledger = deploy()
        assert ledger.tx.mine_on_demand and ledger.tx.batching
        setup_market(ledger)
        yield ledger
        pool = anvil.rpc("txpool_status")
        assert int(pool["pending"], 16) == int(pool["queued"], 16) == 0, pool
    finally:
        anvil.rpc("evm_setAutomine", True)


def _withdraw(led: ChainLedger, amount: int, what: str):  # type: ignore[no-untyped-def]
    return led.tx.send(led.market, "withdraw", [amount], sender=2, purpose=what)


def test_pipelined_sends_share_one_block_and_decode_exactly(led: ChainLedger) -> None:
    tx = led.tx
    tx.receipt(_withdraw(led, 1, "learn"))  # first call: estimated once, then learned
    fn = next(k for k in tx._gas_learned if k.endswith(".withdraw"))
    assert tx.gas_limit(fn, tx.encode(led.market, "withdraw", [1])) < tx.block_gas_limit // 10
    pend = [_withdraw(led, 1, f"small {k}") for k in range(6)]
    receipts = [tx.receipt(p) for p in pend]
    assert len({r["blockNumber"] for r in receipts}) == 1  # one batch, one block
    assert [int(r["transactionIndex"], 16) for r in receipts] == list(range(6))
    # the second fails only because the first ran before it, in the same block
    a, b = _withdraw(led, 6_000_000, "first"), _withdraw(led, 6_000_000, "second")
    tx.receipt(a)
    with pytest.raises(e.InsufficientBalance) as err:
        tx.receipt(b)
    assert err.value.values["available"] == 10_000_000 - 7 - 6_000_000
    assert tx.transactions[-1].block == tx.transactions[-2].block


def test_out_of_gas_is_resent_or_named(led: ChainLedger, monkeypatch: pytest.MonkeyPatch) -> None:
    tx = led.tx
    monkeypatch.setattr(tx, "gas_limit", lambda fn, data: 30_000)  # too small for withdraw
    p = _withdraw(led, 5, "withdraw 5")
    monkeypatch.undo()
    tx.receipt(p)  # out of gas, nothing sent after it: resent with the block's limit
    assert [t.status for t in tx.transactions if t.purpose == "withdraw 5"] == [0, 1]
    monkeypatch.setattr(tx, "gas_limit", lambda fn, data: 30_000)
    p = _withdraw(led, 6, "withdraw 6")
    q = _withdraw(led, 7, "withdraw 7")  # sent after it: no resend
    monkeypatch.undo()
    with pytest.raises(ChainRevert, match=r"withdraw 6 .*OutOfGas") as err:
        tx.receipt(p)
    assert not isinstance(err.value, e.MarketError)
    assert err.value.name == "OutOfGas"
    tx.receipt(q)


def test_setup_reads_nonces_receipts_and_views_in_batches(
        led: ChainLedger, monkeypatch: pytest.MonkeyPatch) -> None:
    """deposit_many's per-account sends take their nonces from one batch (or count on from
    the sender's last send) and their receipts from batches (a few HTTP posts, not several per account); the batched views equal the
    one-by-one views; a revert in a batch of receipts raises its decoded error."""
    tx = led.tx
    assert tx._session is not None
    posts: list[tuple[str, int]] = []
    real_post = tx._session.post

    def counted(*args, **kw):  # type: ignore[no-untyped-def]
        body = kw.get("json")
        posts.append((body[0]["method"], len(body)) if isinstance(body, list) else (body["method"], 1))
        return real_post(*args, **kw)

    accounts = list(range(2, 10))
    monkeypatch.setattr(tx._session, "post", counted)
    led.deposit_many({a: 1_000 + a for a in accounts})
    monkeypatch.undo()
    # one at a time, that is >= 4 posts per account (2 nonces, 2 receipts); here 16 in all,
    # whatever the number of accounts
    assert len(posts) <= 2 * len(accounts), str(posts)
    # nonces: read in batches or counted on from the sender's last send, never one by one
    assert all(n > 1 for m, n in posts if m == "eth_getTransactionCount"), str(posts)
    assert ("eth_getTransactionReceipt", len(accounts)) in posts
    assert led.wallets(accounts) == [led.wallet(a) for a in accounts]
    assert led.balances(accounts) == [led.balance(a) for a in accounts]
    assert led.balance(9).free == 1_009
    a, b = _withdraw(led, 6_000_000, "first"), _withdraw(led, 6_000_000, "second")
    with pytest.raises(e.InsufficientBalance, match="second"):
        tx.receipts([a, b])
    assert [t.status for t in tx.transactions[-2:]] == [1, 0]
