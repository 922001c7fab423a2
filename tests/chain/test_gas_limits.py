"""Learned gas limits (twin/chain/tx.py): several pipelined transactions share a block, a
revert inside a shared block is decoded exactly, and an out-of-gas from a too-small limit is
never a market error (resent with the block's limit, or a loud ChainRevert naming it)."""

from __future__ import annotations

import pytest

from twin.chain.ledger import ChainLedger
from twin.chain.tx import ChainRevert
from twin.market import errors as e

pytestmark = pytest.mark.chain


def _withdraw(led: ChainLedger, amount: int, what: str):  # type: ignore[no-untyped-def]
    return led.tx.send(led.market, "withdraw", [amount], sender=2, purpose=what)


def test_pipelined_sends_share_blocks_and_decode_exactly(chain_ledger: ChainLedger) -> None:
    led, tx = chain_ledger, chain_ledger.tx
    tx.receipt(_withdraw(led, 1, "learn"))  # first call: estimated once, then learned
    fn = next(k for k in tx._gas_learned if k.endswith(".withdraw"))
    limit = tx.gas_limit(fn, tx.encode(led.market, "withdraw", [1]))
    assert limit < tx.block_gas_limit // 10
    pend = [_withdraw(led, 1, f"small {k}") for k in range(6)]
    blocks = [int(tx.receipt(p)["blockNumber"], 16) for p in pend]
    assert len(set(blocks)) < len(blocks), f"one transaction per block: {blocks}"
    # the second fails only because the first ran before it, in the same batch
    a, b = _withdraw(led, 6_000_000, "first"), _withdraw(led, 6_000_000, "second")
    tx.receipt(a)
    with pytest.raises(e.InsufficientBalance) as err:
        tx.receipt(b)
    assert err.value.values["available"] == 10_000_000 - 7 - 6_000_000


def test_out_of_gas_is_resent_or_named(chain_ledger: ChainLedger,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    led, tx = chain_ledger, chain_ledger.tx
    monkeypatch.setattr(tx, "gas_limit", lambda fn, data: 30_000)  # too small for withdraw
    p = _withdraw(led, 5, "withdraw 5")
    monkeypatch.undo()
    tx.receipt(p)  # out of gas, nothing sent after it: resent with the block's limit
    rows = [t for t in tx.transactions if t.purpose == "withdraw 5"]
    assert [t.status for t in rows] == [0, 1]
    monkeypatch.setattr(tx, "gas_limit", lambda fn, data: 30_000)
    p = _withdraw(led, 6, "withdraw 6")
    _withdraw(led, 7, "withdraw 7")  # sent after it: no resend
    monkeypatch.undo()
    with pytest.raises(ChainRevert, match=r"withdraw 6 .*OutOfGas") as err:
        tx.receipt(p)
    assert not isinstance(err.value, e.MarketError)
    assert err.value.name == "OutOfGas"
