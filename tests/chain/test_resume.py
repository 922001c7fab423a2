"""Crash and resume on the chain side: a checkpoint written with ``anvil_dumpState``
survives a SIGKILL of Anvil, and a new Anvil loaded from it continues the same market —
same contracts, balances, orders, trades (logs included) and block numbers; nothing lost or
doubled, and the next interval trades on."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from tests.chain.conftest import FEED_IN, INTERVAL_S, RETAIL, setup_market
from twin.chain.anvil import AnvilError, AnvilNode
from twin.chain.compile import CompiledContracts
from twin.chain.ledger import ChainLedger
from twin.market.types import OrderIntent, Side

pytestmark = pytest.mark.chain


def test_checkpoint_survives_sigkill_and_resumes(
    tmp_path: Path, compiled: CompiledContracts
) -> None:
    state = tmp_path / "chain_state.json"
    with AnvilNode(accounts=10) as node:
        led = ChainLedger.deploy(
            node.web3(), compiled=compiled, interval_s=INTERVAL_S,
            retail_price_per_mwh=RETAIL, feed_in_price_per_mwh=FEED_IN,
        )  # fmt: skip
        setup_market(led)
        led.place_orders(
            [OrderIntent(12, 0, Side.BUY, 1000, 120_000_000),
             OrderIntent(13, 0, Side.SELL, 800, 90_000_000)]
        )  # fmt: skip
        cleared = led.clear(0)
        led.settle(0, {12: 800, 13: -800})
        node.checkpoint_state(state)
        before = {
            "block": led.w3.eth.block_number,
            "balances": [led.balance(a) for a in range(8)],
            "wallets": [led.wallet(a) for a in range(8)],
            "supply": led.total_supply(),
        }
        led.place_orders([OrderIntent(14, 1, Side.BUY, 10, 1)])  # after the checkpoint: lost
        assert node._proc is not None
        node._proc.send_signal(signal.SIGKILL)
        node._proc.wait()
    with AnvilNode(accounts=10, load_state=state) as node2:
        led2 = ChainLedger(
            node2.web3(), compiled=compiled, addresses=led.addresses(),
            deploy_block=led.deploy_block,
        )  # fmt: skip
        assert led2.w3.eth.block_number == before["block"]
        assert [led2.balance(a) for a in range(8)] == before["balances"]
        assert [led2.wallet(a) for a in range(8)] == before["wallets"]
        assert led2.total_supply() == before["supply"]
        assert led2.interval_status(0) == "settled"
        assert led2.trades(0) == list(cleared.trades)  # logs came back with the blocks
        assert led2.orders(1) == []  # the order sent after the checkpoint is not there
        led2.place_orders(
            [OrderIntent(12, 1, Side.BUY, 500, 120_000_000),
             OrderIntent(13, 1, Side.SELL, 500, 90_000_000)]
        )  # fmt: skip
        assert [t.trade_id for t in led2.clear(1).trades] == [2]  # ids continue, none doubled


def test_missing_state_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(AnvilError, match="no chain state to load"):
        AnvilNode(load_state=tmp_path / "nope.json").start()
