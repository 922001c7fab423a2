"""Anvil's start flags bound its memory and keep its cost flat in the chain's length."""

from __future__ import annotations

import json
from pathlib import Path

from twin.chain.anvil import KEEP_STATES, KEEP_TX_BLOCKS, AnvilNode


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
        w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": w3.eth.accounts[1], "value": 1})
        assert not state.exists()  # nothing written while the run goes on
    doc = json.loads(state.read_text())  # written once at stop, complete JSON
    assert doc["best_block_number"] == 1 and node.dump_error is None
    with AnvilNode(accounts=2, load_state=state) as again:
        assert again.web3().eth.block_number == 1


def test_a_state_at_rest_is_gzipped_without_call_traces_and_loads(tmp_path: Path) -> None:
    import gzip

    state = tmp_path / "chain_state.json.gz"
    with AnvilNode(accounts=2, dump_state=state) as node:
        w3 = node.web3()
        tx = w3.eth.send_transaction({"from": w3.eth.accounts[0], "to": w3.eth.accounts[1], "value": 7})
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
