"""Anvil's start flags bound its memory and keep its cost flat in the chain's length."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import twin.chain.anvil
from tests.chain._helpers import INTERVAL_S, PARAMS, mapping_slot
from twin.chain.anvil import (
    BLOCK_HASH_HISTORY,
    KEEP_HEADER_BLOCKS,
    KEEP_STATES,
    KEEP_TX_BLOCKS,
    AnvilNode,
)
from twin.chain.compile import CompiledContracts
from twin.chain.ledger import ChainLedger
from twin.market.audit import token_audit
from twin.market.signing import DeviceKey
from twin.market.types import Device, DeviceKind, OrderIntent, Side


def test_anvil_prunes_states_and_writes_its_state_once(tmp_path: Path) -> None:
    state = tmp_path / "chain_state.json"
    with AnvilNode(accounts=2, dump_state=state) as node:
        assert node._proc is not None
        args = [str(a) for a in node._proc.args]  # type: ignore[union-attr]
        assert args[args.index("--prune-history") + 1] == str(KEEP_STATES) == "16"
        assert "--dump-state" not in args  # Anvil would also dump the whole chain every 60 s
        # old blocks' transactions and receipts leave memory; automine unless asked otherwise
        assert args[args.index("--transaction-block-keeper") + 1] == str(KEEP_TX_BLOCKS)
        assert "--no-mining" not in args
        w3 = node.web3()
        tx = w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": w3.eth.accounts[1], "value": 1})
        w3.eth.wait_for_transaction_receipt(tx, timeout=30)  # automine answers before the block is in
        assert not state.exists()  # nothing written while the run goes on
    doc = json.loads(state.read_text())  # written once at stop, complete JSON
    assert doc["best_block_number"] == 1 and node.dump_error is None
    with AnvilNode(accounts=2, load_state=state) as again:
        assert again.web3().eth.block_number == 1


def test_a_state_at_rest_is_gzipped_without_call_traces_and_loads(tmp_path: Path) -> None:
    state = tmp_path / "chain_state.json.gz"
    with AnvilNode(accounts=2, dump_state=state) as node:
        w3 = node.web3()
        tx = w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": w3.eth.accounts[1], "value": 7})
        w3.eth.wait_for_transaction_receipt(tx, timeout=30)  # mined and traced before the dump
        raw = bytes.fromhex(str(node.rpc("anvil_dumpState"))[2:])
        assert b'"traces":[{' in gzip.decompress(raw).replace(b" ", b"")  # Anvil keeps them
    doc = json.loads(gzip.decompress(state.read_bytes()))
    assert doc["best_block_number"] == 1 and doc["transactions"]
    assert all(t["info"]["traces"] == [] for t in doc["transactions"])
    with AnvilNode(accounts=2, load_state=state) as again:
        w3 = again.web3()
        assert w3.eth.block_number == 1 and w3.eth.get_transaction_receipt(tx)["status"] == 1
        assert w3.eth.get_balance(w3.eth.accounts[1]) == 10**24 + 7
    assert not list(tmp_path.glob(".anvil-load-*"))  # the unpacked copy is gone


def _two_devices(led: ChainLedger) -> None:
    """Devices 10 (a buyer, account 2) and 11 (a seller, account 3), both funded."""
    for d in (10, 11):
        led.register_device(Device(device_id=d, owner=d - 8, kind=DeviceKind.PV, bus=0,
                                   capacity_w=20_000))
    for a in (2, 3):
        led.deposit(a, 10**12)


def _trade_one_pair(led: ChainLedger, *, interval: int) -> None:
    """Device 10 buys 1 kWh from device 11 in ``interval``, cleared."""
    led.place_orders([
        OrderIntent(device_id=10, interval=interval, side=Side.BUY, energy_wh=1000,
                    price_per_mwh=200_000_000),
        OrderIntent(device_id=11, interval=interval, side=Side.SELL, energy_wh=1000,
                    price_per_mwh=100_000_000)])
    led.clear(interval=interval)


def test_a_pruning_run_restarts_its_anvil_without_the_freed_slots(compiled: CompiledContracts) -> None:
    """The twin's runs free each settled interval's storage (pruneInterval) and now and then
    restart their own Anvil without the zeroed slots it still walks at every block
    (AnvilNode.compact): same URL, blocks, logs and balances; the block clock is pinned again."""
    with AnvilNode(accounts=4, automine=False) as node:
        led = ChainLedger.deploy(node.web3(), compiled=compiled, **PARAMS)
        led.prune_settled, led.compact_node, led.compact_after_slots = True, node.compact, 1
        _two_devices(led)
        url = node.url
        for k in range(4):  # step k: settle k, orders and clearing of k + 1 (as MarketStep)
            led.set_time(now_s=k * INTERVAL_S)
            if k:
                block = led.w3.eth.block_number
                assert len(led.settle(k, {10: 900, 11: -1000})) == 2
                assert led.w3.eth.block_number == block + 1  # the prune shares the block
                assert led.compactions == k - 1 and node.url == url and led.now_s == k * INTERVAL_S
            _trade_one_pair(led, interval=k + 1)
        assert [led.interval_status(k) for k in (1, 2, 3, 4)] == ["settled"] * 3 + ["cleared"]
        assert len(led.orders(3)) == 2  # the logs of the kept blocks survive a restart
        assert token_audit(led, accounts=range(4), minted=2 * 10**12)["conserved"]
        doc = json.loads(gzip.decompress(bytes.fromhex(str(node.rpc("anvil_dumpState"))[2:])))
        storage = {k.lower(): v for k, v in doc["accounts"].items()}[led.market.address.lower()]["storage"]
        live = {int(k, 16) for k, v in storage.items() if int(v, 16)}
        # two orders a slot (pair id >> 1): pairs 0, 1 (ids 1..3, intervals 1, 2: pruned) are free,
        # pair 2 holds id 5 (interval 3) beside the freed id 4
        assert not live & {mapping_slot(i, 4) for i in (0, 1)}
        assert mapping_slot(2, 4) in live
        assert live >= {mapping_slot(i, 4) for i in (3, 4)}  # ids 7, 8: interval 4's, still open


def test_pruning_frees_orders_whose_logs_left_the_receipt_window(compiled: CompiledContracts) -> None:
    """A settlement that comes more than the node's receipt window (KEEP_TX_BLOCKS) after
    the interval's orders still frees them all: their ids come from the book the ledger
    cleared, not from the OrdersPlaced logs the node dropped."""
    with AnvilNode(accounts=4, automine=False, keep_tx_blocks=4) as node:
        led = ChainLedger.deploy(node.web3(), compiled=compiled, **PARAMS)
        led.prune_settled, led.tx.log_window_blocks = True, node.keep_tx_blocks
        _two_devices(led)
        for k in range(3):  # step k: settle k, orders and clearing of k + 1
            led.set_time(now_s=k * INTERVAL_S)
            if k == 2:  # a delay of many blocks between interval 1's orders and its pruning
                node.rpc("anvil_mine", hex(12))
            if k:
                led.settle(k, {10: 900, 11: -1000})
            if k < 2:
                _trade_one_pair(led, interval=k + 1)
        assert led.orders(1) == []  # their logs are out of the window
        assert [r["interval"] for r in led.tx_table() if r["function"] == "EnergyMarket.pruneInterval"] == [1]
        doc = json.loads(gzip.decompress(bytes.fromhex(str(node.rpc("anvil_dumpState"))[2:])))
        storage = {k.lower(): v for k, v in doc["accounts"].items()}[led.market.address.lower()]["storage"]
        words = {int(k, 16): int(v, 16) for k, v in storage.items()}
        # two orders a slot (pair id >> 1): interval 1's ids 1, 2 are freed (pair 0; pair 1's low
        # half), interval 2's ids 3, 4 (settled last) kept (pair 1's high half, pair 2's low)
        assert not words.get(mapping_slot(0, 4)) and words[mapping_slot(1, 4)] & (2**128 - 1) == 0
        assert words[mapping_slot(1, 4)] >> 128 and words[mapping_slot(2, 4)] & (2**128 - 1)


def test_a_state_dump_keeps_only_the_recent_block_headers(tmp_path: Path, monkeypatch: Any) -> None:
    """Blocks older than KEEP_HEADER_BLOCKS (1,024; 8 here) whose transactions Anvil dropped
    leave the dump (it no longer grows with the chain); the chain goes on from the same head."""
    assert KEEP_HEADER_BLOCKS >= 4 * KEEP_TX_BLOCKS
    monkeypatch.setattr(twin.chain.anvil, "KEEP_HEADER_BLOCKS", 8)
    with AnvilNode(accounts=2, automine=True, keep_tx_blocks=4) as node:
        w3 = node.web3()
        w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": w3.eth.accounts[1], "value": 5})
        node.rpc("anvil_mine", hex(20))
        head = node.rpc("eth_getBlockByNumber", "latest", False)
        raw = json.loads(gzip.decompress(bytes.fromhex(str(node.rpc("anvil_dumpState"))[2:])))
        state = node.checkpoint_state(tmp_path / "state.json")
    doc = json.loads(state.read_text())
    numbers = sorted(int(b["header"]["number"], 16) for b in doc["blocks"])
    assert doc["best_block_number"] == 21 and numbers == [0, *range(21 - 8, 22)]
    # EIP-2935's block-hash ring (a slot a block, walked at every block) is left out too
    ring = {k.lower(): v for k, v in raw["accounts"].items()}[BLOCK_HASH_HISTORY]
    assert len(ring["storage"]) >= 20
    assert not {k.lower(): v for k, v in doc["accounts"].items()}[BLOCK_HASH_HISTORY]["storage"]
    with AnvilNode(accounts=2, load_state=state, automine=False) as again:
        assert again.rpc("eth_getBlockByNumber", "latest", False)["hash"] == head["hash"]
        again.rpc("evm_mine")
        assert again.rpc("eth_getBlockByNumber", "latest", False)["parentHash"] == head["hash"]
        w3 = again.web3()
        assert w3.eth.get_balance(w3.eth.accounts[1]) == 10**24 + 5


def test_signed_order_blocks_are_mined_ahead_in_order(compiled: CompiledContracts) -> None:
    """On a node mining on demand, ``submit_signed_orders`` sends its transaction and mines
    its block on a thread (TxClient.mine_ahead) while the client works on; any later request
    waits for that block, so confirmation order and reads are as before: one block a batch."""
    with AnvilNode(accounts=4, automine=False) as node:
        led = ChainLedger.deploy(node.web3(), compiled=compiled, **PARAMS)
        _two_devices(led)
        keys = {d: DeviceKey.from_seed(d) for d in (10, 11)}
        for d, k in keys.items():
            led.set_device_signer(d, k.address)
        signed = [keys[d].sign_order(
            OrderIntent(device_id=d, interval=1, side=Side.BUY if d == 10 else Side.SELL,
                        energy_wh=100 * n, price_per_mwh=150_000_000), nonce=n, domain=led.domain)
            for n in (1, 2, 3) for d in (10, 11)]
        block = int(led.tx.rpc("eth_blockNumber", [])["result"], 16)
        placed = []
        for k, ahead in ((0, True), (2, True), (4, False)):
            led.tx.blocks_ahead = ahead
            pending = led.submit_signed_orders(signed[k:k + 2])
            assert (led.tx._ahead is not None) == ahead  # its block is being mined
            placed += led.confirm(pending)
            assert led.tx._ahead is None
        assert int(led.tx.rpc("eth_blockNumber", [])["result"], 16) == block + 3
        assert [(o.order_id, o.device_id, o.energy_wh) for o in placed] == [
            (k + 1, 10 + k % 2, 100 * (k // 2 + 1)) for k in range(6)]
        assert led.tx.rpc("evm_mine", []).get("result") is not None  # nothing left in flight
