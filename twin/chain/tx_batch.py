"""Many requests in one round trip: :class:`twin.chain.tx.TxClient`'s batched reads.

A population's set-up sends one transaction per account (``approve``, ``deposit``) and the
audits read two views per account; asked one at a time, 1,000 households cost ~10,000 HTTP
round trips. Here the same JSON-RPC requests go out as batches (one HTTP post each, answers
matched by id): the senders' nonces before a pipelined group, every receipt of a group (one
block mined between reads on a node that mines on demand), and views of many accounts. The
answers are the same as one request at a time. Batches are used over the client's raw HTTP
session without a retry policy (a flaky chain's proxy sees one request at a time).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import requests

if TYPE_CHECKING:
    from web3.contract import Contract

    from twin.chain.tx import Pending, RetryPolicy

__all__ = ["BATCH_MAX", "BatchRpc", "BlockAhead"]

#: Requests per JSON-RPC batch (one HTTP post).
BATCH_MAX = 1000


class BlockAhead:
    """One ``evm_mine`` in flight on a thread of its own (its own HTTP session), so the
    client's work overlaps the node's execution of the block; :meth:`join` waits for it and
    returns the node's answer (an error as ``{"error": ...}``)."""

    _session: requests.Session | None = None  # one keep-alive session for every such block

    def __init__(self, url: str, timeout_s: float) -> None:
        self.answer: dict[str, Any] = {"error": {"message": "the block was not mined"}}
        self._thread = threading.Thread(target=self._mine, args=(url, timeout_s), daemon=True)
        self._thread.start()

    def _mine(self, url: str, timeout_s: float) -> None:
        if BlockAhead._session is None:
            BlockAhead._session = requests.Session()
            BlockAhead._session.trust_env = False
        try:
            resp = BlockAhead._session.post(
                url, json={"jsonrpc": "2.0", "id": 0, "method": "evm_mine", "params": []},
                timeout=timeout_s)
            self.answer = dict(resp.json())
        except (requests.RequestException, ValueError) as exc:
            self.answer = {"error": {"message": f"evm_mine: the node at {url} did not answer: {exc}"}}

    def join(self) -> dict[str, Any]:
        self._thread.join()
        return self.answer


class BatchRpc:
    """The batched reads of :class:`twin.chain.tx.TxClient` (a mixin: it uses the client's
    session, ``rpc``, ``flush`` and ``receipt``)."""

    _session: requests.Session | None
    _url: str
    _rpc_id: int
    _queue: list[Pending]
    _nonce_hint: dict[int, int]
    _queued_nonce: dict[int, int]
    retry: RetryPolicy | None
    rpc_timeout_s: float
    mine_on_demand: bool

    if TYPE_CHECKING:  # provided by TxClient
        def rpc(self, method: str, params: list[Any]) -> dict[str, Any]: ...
        def flush(self) -> None: ...
        def address_of(self, account: int) -> str: ...
        def receipt(self, p: Pending) -> dict[str, Any]: ...
        def _take_receipt(self, p: Pending, receipt: dict[str, Any]) -> dict[str, Any]: ...
        def encode(self, contract: Contract, fn: str, args: Sequence[Any]) -> str: ...
        def raise_revert(self, error: Mapping[str, Any], *, purpose: str, tx_hash: str | None,
                         error_context: Any) -> None: ...

    _ahead: BlockAhead | None = None
    #: False: :meth:`mine_ahead` does nothing (the block is mined when a receipt is awaited)
    blocks_ahead = True

    def mine_ahead(self) -> bool:
        """On a node mining on demand (raw session, no retry policy): send the queued
        transactions now and mine their block on a thread while the caller goes on (e.g.
        signs the next batch); every later request first waits for that block (so receipts
        and reads see it, in order). False, and nothing done, otherwise (the block is mined
        when a receipt is awaited, as always)."""
        if not (self.blocks_ahead and self.mine_on_demand and self.batch_reads and self._queue):
            return False
        self.flush()
        self._ahead = BlockAhead(self._url, self.rpc_timeout_s)
        return True

    def _join_ahead(self) -> None:
        """Wait for the block :meth:`mine_ahead` started, if any; its failure raises."""
        ahead, self._ahead = self._ahead, None
        if ahead is not None:
            from twin.chain.tx import ChainRevert

            out = ahead.join()
            if "error" in out:
                raise ChainRevert("MineFailed", dict(out["error"]), purpose="mining a block ahead",
                                  tx_hash=None)

    @property
    def batch_reads(self) -> bool:
        """Requests may go out as JSON-RPC batches (the raw session, no retry policy)."""
        return self._session is not None and self.retry is None

    def rpc_many(self, calls: Sequence[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
        """The answers of ``(method, params)`` requests, in order: JSON-RPC batches of up to
        :data:`BATCH_MAX`, or one at a time where batches are not used."""
        if self._queue:
            self.flush()
        if not self.batch_reads:
            return [self.rpc(m, p) for m, p in calls]
        out: list[dict[str, Any]] = []
        for start in range(0, len(calls), BATCH_MAX):
            part = calls[start:start + BATCH_MAX]
            out += self._post_batch(part, what=f"{len(part)} requests ({part[0][0]}, ...)")
        return out

    def _post_batch(self, calls: Sequence[tuple[str, list[Any]]], *, what: str) -> list[dict[str, Any]]:
        """One JSON-RPC batch of ``(method, params)`` requests over the raw session: the
        answers in order (a missing one as an error); ChainUnavailable naming ``what`` if the
        node does not answer."""
        from twin.chain.tx import ChainUnavailable

        assert self._session is not None
        self._join_ahead()
        first = self._rpc_id + 1
        self._rpc_id += len(calls)
        body: list[dict[str, Any]] = [{"jsonrpc": "2.0", "id": first + i, "method": m, "params": p}
                for i, (m, p) in enumerate(calls)]
        try:
            resp = self._session.post(self._url, json=body, timeout=self.rpc_timeout_s)
            resp.raise_for_status()
            answers = {int(a["id"]): a for a in resp.json()}
        except (requests.RequestException, ValueError, TypeError, KeyError) as exc:
            raise ChainUnavailable(
                f"the chain node at {self._url} stopped answering during a batch of {what}: {exc}"
            ) from exc
        return [answers.get(first + i, {"error": {"message": "no answer in the batch"}})
                for i in range(len(calls))]

    def prefetch_nonces(self, senders: Iterable[int]) -> None:
        """Read the pending nonce of every sender not already counted, in one batch: the
        pipelined sends that follow need no lookup each (a hint is used once, by the
        sender's next transaction; any send of the sender drops it)."""
        todo = [s for s in dict.fromkeys(senders)
                if s not in self._queued_nonce and s not in self._nonce_hint]
        if len(todo) < 2 or not self.batch_reads:
            return
        answers = self.rpc_many([("eth_getTransactionCount", [self.address_of(s), "pending"])
                                 for s in todo])
        for s, a in zip(todo, answers, strict=True):
            if "result" in a:
                self._nonce_hint[s] = int(a["result"], 16)

    def await_receipts(self, tx_hashes: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The receipts of sent transactions read in batches, one block mined between reads
        on a node that mines on demand; a hash missing from the result has no receipt yet."""
        from twin.chain.tx import MAX_MINES, ChainRevert

        got: dict[str, dict[str, Any]] = {}
        todo = list(dict.fromkeys(tx_hashes))
        for _ in range(len(todo) + MAX_MINES):
            answers = self.rpc_many([("eth_getTransactionReceipt", [h]) for h in todo])
            for h, a in zip(todo, answers, strict=True):
                if a.get("result"):
                    got[h] = a["result"]
            todo = [h for h in todo if h not in got]
            if not todo or not self.mine_on_demand:
                break
            out = self.rpc("evm_mine", [])
            if "error" in out:
                raise ChainRevert("MineFailed", dict(out["error"]), purpose="mining a block",
                                  tx_hash=todo[0])
        return got

    def receipts(self, pending: Sequence[Pending]) -> list[dict[str, Any]]:
        """:meth:`receipt` of every pending transaction, in order (the first revert raises),
        with the receipts read in batches where batches are used."""
        if not self.batch_reads or len(pending) < 2:
            return [self.receipt(p) for p in pending]
        got = self.await_receipts([p.tx_hash for p in pending])
        return [self._take_receipt(p, got[p.tx_hash]) if p.tx_hash in got else self.receipt(p)
                for p in pending]

    def call_many(self, contract: Contract, fn: str, args: Sequence[Sequence[Any]]) -> list[bytes]:
        """The raw return data of the view ``fn`` for each argument list (:meth:`call`), read
        in batches; the first revert raises its decoded error."""
        answers = self.rpc_many([("eth_call", [{"to": contract.address,
                                                "data": self.encode(contract, fn, a)}, "latest"])
                                 for a in args])
        for r in answers:
            if "error" in r:
                self.raise_revert(r["error"], purpose=f"reading {fn}", tx_hash=None,
                                  error_context=None)
        return [bytes.fromhex(str(r["result"])[2:]) for r in answers]
