"""Crash and resume on the chain side: a checkpoint written with ``anvil_dumpState``
survives a SIGKILL of Anvil, and a new Anvil loaded from it continues the same market —
same contracts, balances, orders, trades (logs included) and block numbers; nothing lost or
doubled, and the next interval trades on. A chunked clearing or settlement that stopped
midway is finished by running it again (from the contract's cursor), with the reference
result."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

import twin.resume
import twin.run
from tests._procs import anvil_children
from tests._quickstart import QUICKSTART
from tests.chain.conftest import FEED_IN, INTERVAL_S, RETAIL, setup_market
from twin.chain.anvil import AnvilError, AnvilNode
from twin.chain.chunks import plan_clearing, plan_settlement
from twin.chain.compile import CompiledContracts
from twin.chain.ledger import ChainLedger
from twin.cli import main
from twin.market import errors as e
from twin.market.clearing import match_orders
from twin.market.reference import ReferenceLedger
from twin.market.types import OPERATOR_ACCOUNT, OrderIntent, Side
from twin.resume import CHECKPOINT, ResumeError, load_resume_point

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


# --- an interrupted chunk sequence is resumed, never left half done --------------------------

BOOK = [
    OrderIntent(12, 0, Side.BUY, 500, 150_000_000),
    OrderIntent(12, 0, Side.BUY, 400, 120_000_000),
    OrderIntent(13, 0, Side.BUY, 700, 140_000_000),
    OrderIntent(13, 0, Side.BUY, 300, 100_000_000),
    OrderIntent(14, 0, Side.BUY, 600, 130_000_000),
    OrderIntent(14, 0, Side.BUY, 200, 90_000_000),
    OrderIntent(15, 0, Side.SELL, 450, 80_000_000),
    OrderIntent(15, 0, Side.SELL, 350, 110_000_000),
    OrderIntent(16, 0, Side.SELL, 800, 95_000_000),
    OrderIntent(17, 0, Side.SELL, 300, 70_000_000),
    OrderIntent(17, 0, Side.SELL, 500, 125_000_000),
]
METERED = {12: 850, 13: 1000, 14: 600, 15: -800, 16: -800, 17: -750}


def _reference() -> ReferenceLedger:
    ref = ReferenceLedger(
        interval_s=INTERVAL_S, retail_price_per_mwh=RETAIL, feed_in_price_per_mwh=FEED_IN
    )
    setup_market(ref)
    ref.place_orders(BOOK)
    return ref


def _operator_sends(led: ChainLedger, fn: str, *args: Any) -> None:
    """The operator process sends one chunk itself, then 'dies' (no ledger bookkeeping)."""
    data = getattr(led.market.functions, fn)(*args)._encode_transaction_data()
    raw, tx = led.tx.sign({"to": led.market.address, "data": data, "gas": hex(30_000_000)},
                          sender=OPERATOR_ACCOUNT)  # signed raw, outside the ledger's books
    assert "error" not in led.tx.rpc("eth_sendRawTransaction", [raw])
    assert led.w3.eth.wait_for_transaction_receipt(tx)["status"] == 1


@pytest.mark.parametrize("done", [1, 4, 8])  # mid-walk, after the walk, mid-pricing
def test_interrupted_chunked_clearing_resumes(
    done: int, deploy: Callable[..., ChainLedger]
) -> None:
    led = deploy()
    setup_market(led)
    orders = led.place_orders(BOOK)
    ref = _reference()
    result = match_orders(orders)
    by_id = {o.order_id: o for o in orders}
    plan = plan_clearing(
        [by_id[i] for i in result.bid_ids], [by_id[i] for i in result.ask_ids],
        n_trades=len(result.fills), chunk_orders=2, chunk_trades=1,
    )  # fmt: skip
    assert len(plan) > done
    led.wait_for_gate(0)
    for c in plan[:done]:
        _operator_sends(led, "clearChunk", 0, len(orders), c.at, list(c.bid_ids),
                        list(c.ask_ids), c.max_trades)  # fmt: skip
    assert led.interval_status(0) == "clearing"
    later = [OrderIntent(12, 1, Side.BUY, 10, 100_000_000)]
    led.place_orders(later)
    ref.place_orders(later)
    with pytest.raises(e.ClearingInProgress):  # the stuck interval blocks every other one
        led.clear(1)
    with pytest.raises(e.IntervalClosed):
        led.place_orders([OrderIntent(15, 0, Side.SELL, 10, 1_000_000)])
    ref.set_time(led.now_s)  # the operator waited for interval 1's gate trying to clear it
    expected = ref.clear(0)
    got = led.clear(0, chunk_orders=3, chunk_trades=2)  # run again, other chunk sizes
    # every trade once, same price, volume and ids; a trade's time is its own block's (the
    # chunks sent before the stop ran one interval earlier than the rest)
    untimed = lambda ts: [dataclasses.replace(t, created_s=0) for t in ts]  # noqa: E731
    assert untimed(got.trades) == untimed(expected.trades)
    assert (got.price_per_mwh, got.volume_wh) == (expected.price_per_mwh, expected.volume_wh)
    assert untimed(led.trades(0)) == untimed(ref.trades(0))
    assert [led.balance(a) for a in range(8)] == [ref.balance(a) for a in range(8)]
    assert led._provisional_market.functions.clearingProgress(0).call() == [0, 0, False, 0, 0]
    assert led.clear(1).volume_wh == 0  # the next interval clears again


@pytest.mark.parametrize("done", [1, 3, 6])  # paying trades, after paying, mid-readings
def test_interrupted_chunked_settlement_resumes(
    done: int, deploy: Callable[..., ChainLedger]
) -> None:
    led = deploy()
    setup_market(led)
    led.place_orders(BOOK)
    led.clear(0)
    ref = _reference()
    ref.clear(0)
    expected = ref.settle(0, METERED)
    n_trades = len(led.trades(0))
    devices = sorted(METERED)
    plan = plan_settlement(
        n_trades=n_trades, n_readings=len(devices), chunk_trades=2, chunk_devices=1
    )
    assert len(plan) > done
    for c in plan[:done]:
        _operator_sends(led, "settleChunk", 0, c.at, c.max_trades, devices[c.start : c.stop],
                        [METERED[d] for d in devices[c.start : c.stop]], c.last)  # fmt: skip
    assert led.interval_status(0) == "settling"
    with pytest.raises(e.SettlementInProgress):  # trades are frozen once settling began
        led.curtail(1, 0)
    with pytest.raises(e.MissingMeterReading):  # resuming still needs every reading
        led.settle(0, {d: w for d, w in METERED.items() if d != 17}, chunk_devices=2)
    rows = led.settle(0, METERED, chunk_trades=3, chunk_devices=2)
    assert rows == expected  # every device once, earlier chunks' rows included
    assert led.interval_status(0) == "settled"
    assert [led.balance(a) for a in range(8)] == [ref.balance(a) for a in range(8)]
    with pytest.raises(e.AlreadySettled):
        led.settle(0, METERED)


# --- twin run --resume: a run whose Anvil was SIGKILLed continues to the same result --------


def _run_scenario_yaml(tmp_path: Path) -> Path:
    data = yaml.safe_load(QUICKSTART.read_text())
    data.update(name="resume", start="2016-06-15T10:00:00Z", duration_s=8 * 900)
    data["market"]["ledger"] = "chain"
    path = tmp_path / "resume.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _table(out: Path, name: str, key: str) -> list[dict[str, Any]]:
    rows = pq.read_table(out / f"{name}.parquet").to_pylist()
    return sorted(rows, key=lambda r: (r["interval"], r[key]))


@pytest.mark.slow
def test_twin_run_resume_after_anvil_sigkill(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(twin.run, "CHECKPOINT_WALL_S", 0.0)  # a checkpoint at every step
    yaml_path = _run_scenario_yaml(tmp_path)
    full, cut = tmp_path / "full", tmp_path / "cut"
    assert main(["run", str(yaml_path), "--out", str(full), "--no-progress"]) == 0

    # Anvil dies right after the first checkpoint that holds 4 market steps: synchronously,
    # inside the run, so a loaded machine cannot let the run finish first.
    others = anvil_children()  # e.g. the session's node: not ours to kill
    write = twin.resume.write_checkpoint

    def write_then_kill(**kw: Any) -> None:
        write(**kw)
        if json.loads((cut / CHECKPOINT).read_text())["market_steps"] >= 4:
            (pid,) = anvil_children() - others
            os.kill(pid, signal.SIGKILL)

    # the stopped run's Anvil and the resumed one keep the logs of their last 6 blocks only
    # (KEEP_TX_BLOCKS in a long run): the replay answers the early intervals from the tables
    monkeypatch.setitem(AnvilNode.__init__.__kwdefaults__, "keep_tx_blocks", 6)
    with monkeypatch.context() as m:
        m.setattr(twin.resume, "write_checkpoint", write_then_kill)
        m.setattr(twin.resume.ChainCheckpointer, "GAP_X", 0.0)
        m.setattr(twin.resume.ChainCheckpointer, "FORCED_GAP_X", 0.0)
        code = main(["run", str(yaml_path), "--out", str(cut), "--no-progress"])
    stopped = json.loads((cut / "manifest.json").read_text())
    assert code == 1 and stopped["status"] == "failed"
    point = json.loads((cut / CHECKPOINT).read_text())
    assert point["market_steps"] >= 4

    with AnvilNode(accounts=1, load_state=cut / point["state_file"]) as node:  # logs gone
        assert not node.rpc("eth_getLogs", {"fromBlock": "0x0", "toBlock": "0x10"})
    assert main(["run", "--resume", str(cut), "--no-progress"]) == 0
    manifest = json.loads((cut / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["chain"]["resumed_from"]["market_steps"] == point["market_steps"]
    assert manifest["tokens"]["conserved"] is True
    # Every order, trade and settlement exactly as in the run that never stopped: none lost,
    # none doubled (trade ids are the chain's, consecutive).
    for name, key in (("orders", "order_id"), ("trades", "trade_id"),
                      ("settlements", "device_id")):  # fmt: skip
        got, want = _table(cut, name, key), _table(full, name, key)
        assert got == want, name
    trade_ids = [r["trade_id"] for r in _table(cut, "trades", "trade_id")]
    assert trade_ids == list(range(1, len(trade_ids) + 1)) and trade_ids
    txs = pq.read_table(cut / "chain.parquet").to_pylist()
    assert len({t["tx_hash"] for t in txs}) == len(txs)  # no transaction twice in the table
    # every settled interval but the last is pruned, the one settled just before the
    # checkpoint included (at the first settlement after the resume)
    pruned = sorted(t["interval"] for t in txs if t["function"] == "EnergyMarket.pruneInterval")
    settled = sorted({r["interval"] for r in _table(full, "settlements", "device_id")})
    assert pruned == settled[:-1] == sorted(
        t["interval"] for t in pq.read_table(full / "chain.parquet").to_pylist()
        if t["function"] == "EnergyMarket.pruneInterval")
    assert json.loads((cut / "kpis.json").read_text())["energy_traded_kwh"] == pytest.approx(
        json.loads((full / "kpis.json").read_text())["energy_traded_kwh"]
    )


def test_resume_refuses_what_it_cannot_continue(tmp_path: Path) -> None:
    with pytest.raises(ResumeError, match="no readable manifest"):
        load_resume_point(tmp_path)
    (tmp_path / "manifest.json").write_text(
        json.dumps({"status": "failed", "chain": {"ledger": "other"}, "scenario": {}})
    )
    with pytest.raises(ResumeError, match="only chain and reference-ledger runs"):
        load_resume_point(tmp_path)
    (tmp_path / "manifest.json").write_text(  # reference runs resume too (resume_reference)
        json.dumps({"status": "failed", "chain": {"ledger": "reference"}, "scenario": {}})
    )
    with pytest.raises(ResumeError, match="before its first checkpoint"):
        load_resume_point(tmp_path)
    (tmp_path / "manifest.json").write_text(
        json.dumps({"status": "failed", "chain": {"ledger": "chain"}, "scenario": {}})
    )
    with pytest.raises(ResumeError, match="before its first checkpoint"):
        load_resume_point(tmp_path)
    assert main(["run", "--resume", str(tmp_path), "--no-progress"]) == 2
