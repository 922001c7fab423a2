"""What the transaction client (:mod:`twin.chain.tx`) hands out: its errors (an unreachable
node, a revert that is not a market rule), its retry policy, the record of a sent transaction
and a transaction awaiting its receipt. Importable from :mod:`twin.chain.tx` as before."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from twin.errors import TwinError

__all__ = ["ChainOutage", "ChainRevert", "ChainUnavailable", "Pending", "RetryPolicy", "TxRecord",
           "already_there", "refused"]


class ChainUnavailable(TwinError):
    """The chain node does not answer (killed, crashed, unreachable)."""


class ChainOutage(ChainUnavailable):
    """The node stayed unreachable (or a transaction without receipt) longer than the
    retry policy's deadline (``faults.chain.deadline_s``): the run stops, resumably."""

    resumable = True  # twin run records the stop as interrupted, resumable (exit 75)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How the client rides through a flaky chain (``faults.chain``): an unreachable node is
    retried until ``deadline_s``; a transaction without a receipt after ``resend_after_s`` is
    sent again as the same signed bytes (same nonce: it can execute once only)."""

    deadline_s: float
    resend_after_s: float
    #: the clock deadlines and latencies are measured on, and a retry's pause (a flaky
    #: chain in simulated time moves its clock instead of sleeping: twin.faults.chain_faults)
    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    #: the longest pause between two attempts to reach an unreachable node
    max_pause_s: float = 0.5


class ChainRevert(TwinError):
    """A revert that is not a market rule (token error, panic, out of gas, RPC error)."""

    def __init__(
        self, name: str, values: dict[str, Any], *, purpose: str, tx_hash: str | None = None
    ) -> None:
        self.name = name
        self.values = values
        self.purpose = purpose
        self.tx_hash = tx_hash
        inner = ", ".join(f"{k}={v}" for k, v in values.items())
        super().__init__(
            f"{purpose} reverted with {name}({inner})" + (f" [tx {tx_hash}]" if tx_hash else "")
        )


def refused(exc: ChainRevert, *, node: str, chain_id: int,
            rpc: Callable[..., dict[str, Any]]) -> ChainRevert:
    """A transaction the node refused when it was sent (never mined): one line naming the
    purpose and the node, and a chain id that changed under the run (its transactions are
    signed for the chain id it started on; ``rpc`` asks the node for its chain id now)."""
    now = rpc("eth_chainId", []).get("result")
    chain_id_now = int(now, 16) if isinstance(now, str) else None
    message = exc.values.get("message", "")
    why = f"the node at {node} refused the transaction: {message}"
    if chain_id_now is not None and chain_id_now != chain_id:
        why = (f"the node at {node} changed its chain id mid-run from {chain_id} to "
               f"{chain_id_now}, so it refuses the run's transactions, signed for chain "
               f"{chain_id} ({message})")
    exc.args = (f"{exc.purpose}: {why}",)
    return exc


@dataclass(frozen=True, slots=True)
class TxRecord:
    """One sent transaction, for the results ``chain`` table."""

    tx_hash: str
    block: int
    gas_used: int
    function: str  # Contract.function (Contract.constructor for a deployment)
    interval: int | None
    sender: int
    status: int  # 1 ok, 0 reverted
    purpose: str
    wall_ms: float  # send -> receipt, as seen by the client


@dataclass(frozen=True, slots=True)
class Pending:
    """A sent transaction whose receipt has not been read yet."""

    tx: dict[str, Any]
    tx_hash: str
    t0: float
    fn: str
    sender: int
    purpose: str
    interval: int | None
    error_context: Any
    raw: str = ""  # the signed bytes (resent unchanged under a retry policy)
    seq: int = 0  # send order (an out-of-gas tx is resent only when nothing was sent after it)
    t_clock: float = 0.0  # the retry policy's clock at the send (latencies)


def already_there(error: Mapping[str, Any]) -> bool:
    """A resent signed transaction the node has already (pending or mined): not an error
    under a retry policy (the first send reached the node before its answer was lost)."""
    msg = str(error.get("message", "")).lower()
    return "already known" in msg or "nonce too low" in msg or "already imported" in msg
