"""A second EVM: the quickstart through ``twin run --rpc-url`` on Hardhat's node (npm
``hardhat`` 2.x from ``node_modules``, ``--hostname 127.0.0.1``) gives the same orders,
trades, settlements and market rows as on Anvil and as the reference ledger."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from twin.chain.hardhat import HardhatNode
from twin.chain.keys import ANVIL_DEV_KEY
from twin.cli import main

pytestmark = pytest.mark.chain

ROOT = Path(__file__).resolve().parents[2]


def _scenario(tmp_path: Path, ledger: str) -> Path:
    data = yaml.safe_load((ROOT / "scenarios" / "quickstart.yaml").read_text())
    data.update(name=f"hh-{ledger}", start="2016-06-15T10:00:00Z", duration_s=3 * 900)
    data["market"]["ledger"] = ledger
    path = tmp_path / f"hh-{ledger}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_quickstart_on_hardhat_equals_anvil_and_reference(tmp_path: Path) -> None:
    runs = {}
    with HardhatNode() as node:  # Hardhat's public dev account 0 funds the run (Anvil's key)
        out = tmp_path / "hardhat"
        assert main(["run", str(_scenario(tmp_path, "chain")), "--out", str(out), "--no-progress",
                     "--rpc-url", node.url, "--funder-key", ANVIL_DEV_KEY]) == 0
        runs["hardhat"] = out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["chain"]["rpc_url"] == node.url and manifest["chain"]["chain_id"] == 31337
    for ledger, name in (("chain", "anvil"), ("reference", "reference")):
        runs[name] = tmp_path / name
        assert main(["run", str(_scenario(tmp_path, ledger)), "--out", str(runs[name]),
                     "--no-progress"]) == 0
    for table in ("orders", "trades", "settlements", "market"):
        hardhat = pq.read_table(runs["hardhat"] / f"{table}.parquet")
        assert hardhat.num_rows > 0, table
        for other in ("anvil", "reference"):
            assert hardhat.equals(pq.read_table(runs[other] / f"{table}.parquet")), (table, other)
