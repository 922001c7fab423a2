"""What ``twin run --rpc-url URL`` needs of an external Ethereum node, checked before the
run starts so a default node ends in one clear line (exit 2), not a traceback mid-deploy."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from twin.errors import TwinError

__all__ = ["NodeRequirementError", "check_rpc_node"]

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


def check_rpc_node(url: str, *, funder: str, need_wei: int) -> None:
    """Raise :class:`NodeRequirementError` unless the node answers and ``funder`` (the address
    of ``--funder-key``) can pay ``need_wei`` of gas money to the run's accounts. Nothing else
    is assumed of the node: the twin signs every transaction itself."""
    try:
        _rpc(url, "eth_chainId", [])
        _rpc(url, "eth_getBlockByNumber", ["latest", False])
        balance = int(_rpc(url, "eth_getBalance", [funder, "latest"]), 16)
    except (OSError, urllib.error.URLError, ValueError, KeyError, TypeError) as exc:
        raise NodeRequirementError(f"--rpc-url {url}: no Ethereum JSON-RPC answer ({exc})") from exc
    if balance < need_wei:
        raise NodeRequirementError(
            f"--rpc-url {url}: the funder key's account {funder} holds {balance} wei, the run's "
            f"accounts need {need_wei} wei of gas money (pass a funded --funder-key or set "
            "TWIN_FUNDER_KEY)")
