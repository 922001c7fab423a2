"""What ``twin run --rpc-url URL`` needs of an external Ethereum node, checked before the
run starts so a default node ends in one clear line (exit 2), not a traceback mid-deploy."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from twin.errors import TwinError

__all__ = ["NodeRequirementError", "check_rpc_node"]

#: The gas of the twin's largest transactions (twin.chain.ledger: ``tx_gas``).
TX_GAS = 200_000_000


class NodeRequirementError(TwinError):
    """The node at ``--rpc-url`` cannot run the twin's market (a bad input: exit 2)."""


def _rpc(url: str, method: str, params: list[Any]) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        doc = json.loads(resp.read())
    if "error" in doc:
        raise NodeRequirementError(f"--rpc-url {url}: {method} failed: {doc['error']}")
    return doc["result"]


def check_rpc_node(url: str, *, accounts: int, tx_gas: int = TX_GAS) -> None:
    """Raise :class:`NodeRequirementError` naming every requirement the node misses."""
    try:
        _rpc(url, "eth_chainId", [])
        gas_limit = int(_rpc(url, "eth_getBlockByNumber", ["latest", False])["gasLimit"], 16)
        unlocked = len(_rpc(url, "eth_accounts", []) or [])
    except (OSError, urllib.error.URLError, ValueError, KeyError, TypeError) as exc:
        raise NodeRequirementError(f"--rpc-url {url}: no Ethereum JSON-RPC answer ({exc})") from exc
    problems = []
    if gas_limit < tx_gas:
        problems.append(f"its block gas limit is {gas_limit:,}, the twin sends transactions of up "
                        f"to {tx_gas:,} gas (anvil --gas-limit 1000000000)")
    if unlocked < accounts:
        problems.append(f"it unlocks {unlocked} account(s), this scenario needs {accounts} "
                        f"(anvil --accounts {accounts})")
    if problems:
        raise NodeRequirementError(f"--rpc-url {url}: the node cannot run this scenario: "
                                   + "; ".join(problems)
                                   + " — or leave out --rpc-url and the twin starts its own Anvil")
