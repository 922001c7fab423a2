"""The transaction client: raw JSON-RPC to the node, sending, receipts, revert decoding and
the transaction log.

:class:`TxClient` is what every chain-side module sends through (the market ledger
:mod:`twin.chain.ledger`, the service clients :mod:`twin.chain.clients`). Transactions are
signed here with each account's own key (:mod:`twin.chain.keys`: a run's keys come from its
seed) and sent raw (``eth_sendRawTransaction``, EIP-1559 fees paid by the sender) over one
keep-alive HTTP session; no account on the node needs to be unlocked. Without explicit keys the
client signs for the node's listed accounts with the keys of the standard development mnemonic
(Anvil's and Hardhat's default accounts). Every transaction — deployments
included — is recorded in :attr:`TxClient.transactions` (hash, block, gas, function,
interval), which feeds the results ``chain`` table and ``gas_per_kwh``.

A revert raises the same :class:`~twin.market.errors.MarketError` subclass the reference
raises, decoded from the custom error of any compiled contract, with the transaction's
purpose in the message; other reverts (token errors, panics, out of gas) raise
:class:`ChainRevert`; a node that stops answering raises :class:`ChainUnavailable`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, replace
from typing import Any, cast

import requests
from eth_abi import encode as abi_encode
from eth_utils import to_checksum_address
from web3 import HTTPProvider, Web3
from web3.contract import Contract

from twin.chain.abi import ErrorTable, abi_type, encode_call, function_spec
from twin.chain.compile import CompiledContracts
from twin.chain.keys import TxKey, dev_key, sign_eip1559
from twin.chain.tx_batch import BatchRpc
from twin.chain.tx_funding import Funding
from twin.chain.tx_types import (
    ChainOutage,
    ChainRevert,
    ChainUnavailable,
    Pending,
    RetryPolicy,
    TxRecord,
    already_there,
    refused,
)
from twin.market import errors as e

__all__ = ["ChainOutage", "ChainRevert", "ChainUnavailable", "Pending", "RetryPolicy", "TxClient",
           "TxRecord"]

#: Gas of an eth_call dry run (a call, not bound by a block).
DRY_RUN_GAS = 200_000_000
#: Gas limit of a block on a standard chain (and Anvil's default): no transaction exceeds it.
BLOCK_GAS = 30_000_000
#: A function's gas limit once one of its calls has a receipt: GAS_MARGIN x the most gas it
#: used (scaled up by calldata size for a longer call) + GAS_FLOOR, capped at the block's
#: limit; seeded by one eth_estimateGas at a function's first call, then from receipts.
GAS_MARGIN = 2.0
GAS_FLOOR = 100_000
#: blocks mined on demand while waiting for one receipt before waiting as for a node that
#: mines by itself (a transaction the node keeps out of its blocks is then reported)
MAX_MINES = 64


class TxClient(Funding, BatchRpc):
    """Sending to and reading from one node (see the module docstring)."""

    def __init__(self, w3: Web3, *, compiled: CompiledContracts, accounts: Sequence[str] | None = None,
                 tx_gas: int = BLOCK_GAS, gas_price: int = 0,
                 keys: Sequence[TxKey] | None = None, learn_gas: bool = True) -> None:
        self.w3 = w3
        #: signed transactions waiting to go out in one JSON-RPC batch (sent before any other
        #: request); only on a node that mines on demand (:attr:`mine_on_demand`)
        self._queue: list[Pending] = []
        self._queued_nonce: dict[int, int] = {}
        #: a sender's next nonce without a lookup: read in one batch before a pipelined group
        #: (prefetch_nonces), or counted on from its last send on a node that mines on demand
        #: (only this client's transactions reach its blocks); dropped when a send is refused
        self._nonce_hint: dict[int, int] = {}
        self._seq = 0
        self._last_nonce = 0
        self.retry: RetryPolicy | None = None  # set by twin.faults.chain_faults
        self.compiled = compiled
        self.gas_price = gas_price
        #: account index -> signing key (explicit keys, else the dev mnemonic's, derived lazily)
        self._keys: dict[int, TxKey] = dict(enumerate(keys or ()))
        if keys:
            self.accounts = [k.address for k in keys]
        else:
            self.accounts = [to_checksum_address(a) for a in (accounts or w3.eth.accounts)]
        self._dev_keys = not keys
        self._index = {a.lower(): i for i, a in enumerate(self.accounts)}
        self._names: dict[str, str] = {}
        # Raw JSON-RPC over one keep-alive session that ignores proxy environment variables
        # (requests re-reads them on every call: ~0.5 ms each); other providers go via web3.
        self._session: requests.Session | None = None
        self._url = ""
        self._rpc_id = 0
        self.rpc_timeout_s = 300.0
        if isinstance(w3.provider, HTTPProvider) and w3.provider.endpoint_uri:
            self._url = str(w3.provider.endpoint_uri)
            self._session = requests.Session()
            self._session.trust_env = False
        self.transactions: list[TxRecord] = []
        self._drained = 0
        #: (number, hash) of the block of the latest receipt read
        self.last_block: tuple[int, str] = (0, "")
        self._fn_specs: dict[tuple[str, str], tuple[bytes, list[str]]] = {}
        self.errors = ErrorTable([compiled[n].abi for n in compiled.artifacts])
        #: custom error name -> rewrites its decoded values (e.g. block times -> market clock)
        self.error_hooks: dict[str, Callable[[dict[str, Any]], None]] = {}
        self.chain_id = int(w3.eth.chain_id)
        latest = self.rpc("eth_getBlockByNumber", ["latest", False]).get("result") or {}
        self.block_gas_limit = int(latest.get("gasLimit", hex(BLOCK_GAS)), 16)
        #: gas limit of every transaction: the smaller of the request and the block's limit
        self.tx_gas = min(tx_gas, self.block_gas_limit)
        #: the node mines only when asked (Anvil ``--no-mining``, the twin's own node): the
        #: client batches its sends and mines one block when it waits for a receipt, so every
        #: transaction sent since the last block shares the next one (deterministically, and
        #: nothing is left in the node's pool). On a node mining on arrival (automine, the
        #: tests' shared node with its evm_snapshot/evm_revert, Hardhat, an external node)
        #: each transaction is sent alone with the full limit, as before.
        self.mine_on_demand = self._session is not None and self._automine_off()
        #: per-function gas limits learned from receipts (GAS_MARGIN, only when mining on
        #: demand): several transactions fit a block; False: every transaction gets ``tx_gas``
        self.learn_gas = learn_gas and self.mine_on_demand
        #: the node keeps only its last N blocks' receipts and logs (set by whoever started
        #: it with ``--transaction-block-keeper N``): event reads scan those blocks only
        self.log_window_blocks: int | None = None
        self._gas_learned: dict[str, tuple[int, float]] = {}  # fn -> (max gas, max gas/byte)
        self._base_fee = int(latest.get("baseFeePerGas", "0x0"), 16)
        self._sends_since_fee = 0
        #: wei paid in fees by all transactions sent (gasUsed x effectiveGasPrice)
        self.fees_wei = 0
        #: a flaky chain's answer (faults.chain): retries, resends, incidents, latencies
        self.incidents: list[dict[str, Any]] = []  # kind, start, end (monotonic), attempts, method
        self.latencies: list[dict[str, Any]] = []  # tx_hash, function, interval, latency_s, sends
        self._next_nonce: dict[int, int] = {}
        #: block time every transaction's block gets (unix s; None: the node's own clock).
        #: Set on nodes whose clock cannot be frozen (Hardhat): each send first pins the
        #: next block's timestamp with ``evm_setNextBlockTimestamp``.
        self.pinned_time: int | None = None

    # --- keys ---------------------------------------------------------------------------
    def key_of(self, account: int) -> TxKey:
        key = self._keys.get(account)
        if key is None:
            address = self.address_of(account)
            key = dev_key(account) if self._dev_keys else None
            if key is None or key.address != address:
                raise ValueError(
                    f"no signing key for account {account} ({address}): pass keys= (the run's "
                    "keys) or use a dev node whose accounts are the standard mnemonic's")
            self._keys[account] = key
        return key

    def _max_fee(self) -> int:
        """maxFeePerGas: twice the latest base fee (+1 gwei), refreshed every 32 sends."""
        self._sends_since_fee += 1
        if self._sends_since_fee >= 32:
            self._sends_since_fee = 0
            head = self.rpc("eth_getBlockByNumber", ["latest", False]).get("result") or {}
            self._base_fee = int(head.get("baseFeePerGas", "0x0"), 16)
        return max(self.gas_price, 2 * self._base_fee + 10**9)

    def sign(self, tx: dict[str, Any], *, sender: int, value: int = 0,
             nonce: int | None = None) -> tuple[str, str]:
        """Sign ``tx`` (to, data, gas) for ``sender``: ``(raw hex, tx hash)``; the nonce is the
        node's pending count of the sender (robust to reverts of the chain's state) unless
        given (a caller pipelining many transactions of one sender counts them itself)."""
        key = self.key_of(sender)
        to = tx.get("to")
        hint = self._nonce_hint.pop(sender, None)  # any send of the sender drops its hint
        if nonce is None:
            nonce = self._queued_nonce.get(sender)
        if nonce is None and self.retry is not None:  # our own count (see below): no round trip
            nonce = self._next_nonce.get(sender)
        if nonce is None:
            nonce = hint if hint is not None else self._pending_nonce(key.address)
        if self.retry is not None:  # a dropped tx is not pending on the node: count our own
            nonce = max(nonce, self._next_nonce.get(sender, 0))
            self._next_nonce[sender] = nonce + 1
        self._last_nonce = nonce
        if self.batching:  # the node mines only what this client sends: count on from here
            self._nonce_hint[sender] = nonce + 1
        raw, tx_hash = sign_eip1559(
            key, chain_id=self.chain_id, nonce=nonce, max_priority_fee=0,
            max_fee=self._max_fee(), gas=int(tx["gas"], 16), to=str(to) if to else None,
            value=value, data=bytes.fromhex(str(tx["data"])[2:]))
        return "0x" + raw.hex(), tx_hash

    # --- accounts and names -------------------------------------------------------------
    def address_of(self, account: int) -> str:
        if account == -1 and -1 in self._keys:
            return self._keys[-1].address
        if not 0 <= account < len(self.accounts):
            raise ValueError(
                f"account index {account} has no chain account (node has {len(self.accounts)}); "
                "start Anvil with more accounts"
            )
        return self.accounts[account]

    def account_of(self, address: str) -> int | str:
        return self._index.get(address.lower(), address)

    def track(self, name: str, contract: Contract) -> None:
        """Name a contract in the transaction table."""
        self._names[contract.address] = name

    # --- the transaction log ------------------------------------------------------------
    def drain(self) -> list[dict[str, Any]]:
        """Rows of the transactions sent since the last call (for streaming the chain table)."""
        rows = [asdict(t) for t in self.transactions[self._drained :]]
        self._drained = len(self.transactions)
        return rows

    def table(self) -> list[dict[str, Any]]:
        """Every transaction as a row (tx_hash, block, gas_used, function, interval, ...)."""
        return [asdict(t) for t in self.transactions]

    def relabel_last(self, *, interval: int) -> None:
        """Set the interval of the latest transaction (known only from its events)."""
        self.transactions[-1] = replace(self.transactions[-1], interval=interval)

    # --- JSON-RPC -------------------------------------------------------------------------
    def rpc(self, method: str, params: list[Any]) -> dict[str, Any]:
        if self.retry is None:
            if self._queue:
                self.flush()
            return self._rpc_once(method, params)
        clock = self.retry
        t0, attempts, pause = clock.now(), 0, 0.02
        while True:
            attempts += 1
            try:
                if self._queue:  # kept queued until the node took the batch
                    self.flush()
                out = self._rpc_once(method, params)
            except ChainUnavailable as exc:
                if clock.now() - t0 > self.retry.deadline_s:
                    self.incidents.append({"kind": "unreachable", "start": t0, "end": float("nan"),
                                           "attempts": attempts, "method": method})
                    raise ChainOutage(
                        f"the chain node at {self._url} stayed unreachable for more than "
                        f"faults.chain.deadline_s ({self.retry.deadline_s:g} s) during {method}; "
                        "the run stops here and can be resumed (twin run --resume)") from exc
                clock.sleep(pause)
                pause = min(pause * 2, clock.max_pause_s)
                continue
            if attempts > 1:
                self.incidents.append({"kind": "unreachable", "start": t0, "end": clock.now(),
                                       "attempts": attempts, "method": method})
            return out

    def _rpc_once(self, method: str, params: list[Any]) -> dict[str, Any]:
        self._join_ahead()  # a block mined ahead (mine_ahead) is in before any request
        if self._session is None:
            return cast(dict[str, Any], self.w3.provider.make_request(method, params))  # type: ignore[arg-type]
        self._rpc_id += 1
        body: dict[str, Any] = {
            "jsonrpc": "2.0", "id": self._rpc_id, "method": method, "params": params,
        }  # fmt: skip
        try:
            resp = self._session.post(self._url, json=body, timeout=self.rpc_timeout_s)
            resp.raise_for_status()
            return cast(dict[str, Any], resp.json())
        except (requests.RequestException, ValueError) as exc:
            raise ChainUnavailable(
                f"the chain node at {self._url} stopped answering during {method} "
                f"(was Anvil killed?): {exc}"
            ) from exc

    def _automine_off(self) -> bool:
        """True on an Anvil that mines on demand (``anvil_getAutomine`` false); nodes without
        the method (Hardhat, production clients) mine by themselves."""
        out = self._rpc_once("anvil_getAutomine", [])
        return out.get("result") is False

    @property
    def batching(self) -> bool:
        """Sends go out as JSON-RPC batches, mined by the client (see ``mine_on_demand``); not
        with pinned block times. Under a retry policy a batch the node did not answer is sent
        again (the same signed bytes: each transaction executes once at most)."""
        return self.mine_on_demand and self.pinned_time is None and self._session is not None

    def set_endpoint(self, url: str) -> None:
        """Send the raw JSON-RPC requests to ``url`` from now on (a flaky chain's proxy or,
        outside its faults, the node itself: twin.faults.chain_faults)."""
        if self._session is not None:
            self._url = url

    @property
    def http_headers(self) -> Any:
        """The headers every raw JSON-RPC request carries (None: requests go through web3)."""
        return self._session.headers if self._session is not None else None

    def flush(self) -> None:
        """Send the queued signed transactions as one JSON-RPC batch; a refused one raises
        its decoded error with its purpose."""
        queue, self._queue = self._queue, []
        self._queued_nonce.clear()
        if not queue:
            return
        try:
            answers = self._post_batch([("eth_sendRawTransaction", [p.raw]) for p in queue],
                                       what=f"{len(queue)} eth_sendRawTransaction (was Anvil killed?)")
        except ChainUnavailable:
            if self.retry is not None:  # sent again with the next request (nonces: sign())
                self._queue = queue + self._queue
            raise
        for p, answer in zip(queue, answers, strict=True):
            if "error" in answer and not (self.retry is not None and already_there(answer["error"])):
                self._nonce_hint.clear()
                self.raise_revert(answer["error"], purpose=p.purpose, tx_hash=None,
                                  error_context=p.error_context, sent=True)

    def gas_limit(self, fn: str, data: str) -> int:
        """The gas limit of a call of ``fn`` (``Contract.function``) with calldata ``data``:
        learned from its receipts (GAS_MARGIN), ``tx_gas`` before the first one."""
        if not self.learn_gas:
            return self.tx_gas
        learned = self._gas_learned.get(fn)
        if learned is None:
            return self.tx_gas
        g_max, per_byte = learned
        n_bytes = max(1, (len(data) - 2) // 2)
        return min(self.tx_gas, int(GAS_MARGIN * max(g_max, per_byte * n_bytes)) + GAS_FLOOR)

    def _estimate_gas(self, fn: str, call: dict[str, Any]) -> None:
        """Seed a function's gas from one ``eth_estimateGas`` (its first call, so that a
        pipelined batch of a new function already shares blocks); a call the node cannot
        estimate (it would revert now) leaves it at the block's limit."""
        out = self.rpc("eth_estimateGas", [call])
        if "error" not in out and "result" in out:
            self._learn_gas(fn, str(call["data"]), int(out["result"], 16))

    def _learn_gas(self, fn: str, data: str, gas_used: int) -> None:
        n_bytes = max(1, (len(data) - 2) // 2)
        g_max, per_byte = self._gas_learned.get(fn, (0, 0.0))
        self._gas_learned[fn] = (max(g_max, gas_used), max(per_byte, gas_used / n_bytes))

    def spec(self, contract: Contract, fn: str) -> tuple[bytes, list[str]]:
        """Selector and input types of ``contract.fn`` (cached)."""
        key = (contract.address, fn)
        spec = self._fn_specs.get(key)
        if spec is None:
            spec = function_spec(cast(list[dict[str, Any]], contract.abi), fn)
            self._fn_specs[key] = spec
        return spec

    def encode(self, contract: Contract, fn: str, args: Sequence[Any]) -> str:
        """Calldata by eth_abi directly (web3's encode_abi costs ~5 ms a call)."""
        return encode_call(self.spec(contract, fn), args)

    # --- sending ----------------------------------------------------------------------------
    def send(
        self,
        contract: Contract,
        fn: str,
        args: Sequence[Any],
        *,
        sender: int,
        purpose: str,
        interval: int | None = None,
        error_context: Any = None,
        calldata: str | None = None,
    ) -> Pending:
        """Send a transaction without waiting for its receipt (:meth:`receipt` waits)."""
        fname = f"{self._names.get(contract.address, contract.address)}.{fn}"
        data = calldata if calldata is not None else self.encode(contract, fn, args)
        if self.learn_gas and fname not in self._gas_learned:
            self._estimate_gas(fname, {"from": self.address_of(sender), "to": contract.address,
                                       "data": data})
        tx = {
            "from": self.address_of(sender),
            "to": contract.address,
            "data": data,
            "gas": hex(self.gas_limit(fname, data)),
        }
        return self._send_raw(tx, fn=fname, sender=sender, purpose=purpose, interval=interval,
                              error_context=error_context)

    def _send_raw(self, tx: dict[str, Any], *, fn: str, sender: int, purpose: str,
                  interval: int | None, error_context: Any) -> Pending:
        t0 = time.perf_counter()
        batching = self.batching
        if batching and self._queue and sum(int(q.tx["gas"], 16) for q in self._queue) + int(
                tx["gas"], 16) > self.block_gas_limit:
            # a batch fits one block (the block mined for it takes what fits)
            self.flush()
        raw, tx_hash = self.sign(tx, sender=sender)
        self._seq += 1
        t_clock = self.retry.now() if self.retry is not None else 0.0
        if batching:
            # queued: sent with the next request (one batch), its nonce counted here
            p = Pending(tx=tx, tx_hash=tx_hash, t0=t0, fn=fn, sender=sender, purpose=purpose,
                        interval=interval, error_context=error_context, raw=raw, seq=self._seq,
                        t_clock=t_clock)
            self._queue.append(p)
            self._queued_nonce[sender] = self._last_nonce + 1
            return p
        if self.pinned_time is not None:  # a node whose block clock follows the wall clock
            pin = self.rpc("evm_setNextBlockTimestamp", [self.pinned_time])
            if "error" in pin:
                raise ChainRevert("SetTimeFailed", dict(pin["error"]), purpose=purpose)
        sent = self.rpc("eth_sendRawTransaction", [raw])
        if "error" in sent and not (self.retry is not None and already_there(sent["error"])):
            self.raise_revert(sent["error"], purpose=purpose, tx_hash=None,
                              error_context=error_context, sent=True)
        return Pending(tx=tx, tx_hash=tx_hash, t0=t0, fn=fn, sender=sender,
                       purpose=purpose, interval=interval, error_context=error_context, raw=raw,
                       seq=self._seq, t_clock=t_clock)

    def receipt(self, p: Pending) -> dict[str, Any]:
        """Wait for the receipt, record the transaction; a revert raises its decoded error."""
        return self._take_receipt(p, self._wait(p.tx_hash, pending=p))

    def _take_receipt(self, p: Pending, receipt: dict[str, Any]) -> dict[str, Any]:
        """Record a mined transaction from its receipt; a revert raises its decoded error."""
        tx, tx_hash, purpose, error_context = p.tx, p.tx_hash, p.purpose, p.error_context
        wall_ms = (time.perf_counter() - p.t0) * 1000
        status = int(receipt["status"], 16)
        block = int(receipt["blockNumber"], 16)
        self.last_block = (block, str(receipt["blockHash"]))
        self.fees_wei += int(receipt["gasUsed"], 16) * int(receipt.get("effectiveGasPrice", "0x0"), 16)
        self.transactions.append(TxRecord(
            tx_hash=tx_hash, block=block, gas_used=int(receipt["gasUsed"], 16), function=p.fn,
            interval=p.interval, sender=p.sender, status=status, purpose=purpose,
            wall_ms=wall_ms))
        gas_used, gas_limit = int(receipt["gasUsed"], 16), int(tx["gas"], 16)
        if status == 1:
            self._learn_gas(p.fn, str(tx["data"]), gas_used)
            return receipt
        if gas_limit < self.tx_gas and gas_used >= gas_limit - gas_limit // 64:
            return self._out_of_gas(p, gas_used=gas_used)
        if gas_used >= gas_limit - gas_limit // 64:  # the full limit was not enough
            raise ChainRevert("OutOfGas", {"gas_limit": gas_limit, "gas_used": gas_used},
                              purpose=f"{purpose} (too big for one transaction)", tx_hash=tx_hash)
        self.raise_revert(self._revert_of(receipt, tx), purpose=purpose, tx_hash=tx_hash,
                          error_context=error_context)
        raise AssertionError("unreachable")  # raise_revert raises

    def _out_of_gas(self, p: Pending, *, gas_used: int) -> dict[str, Any]:
        """A transaction that ran out of its learned gas limit (never a market error): sent
        again with the full limit when nothing was sent after it, else a loud ChainRevert."""
        self._gas_learned[p.fn] = (self.tx_gas, 0.0)  # this function gets the full limit now
        if p.seq != self._seq:
            raise ChainRevert(
                "OutOfGas", {"gas_limit": int(p.tx["gas"], 16), "gas_used": gas_used},
                purpose=f"{p.purpose} (its learned gas limit was too small and later "
                "transactions were already sent; rerun, or set learn_gas=False)",
                tx_hash=p.tx_hash)
        tx = {**p.tx, "gas": hex(self.tx_gas)}
        again = self._send_raw(tx, fn=p.fn, sender=p.sender, purpose=p.purpose,
                               interval=p.interval, error_context=p.error_context)
        return self.receipt(again)

    def _revert_of(self, receipt: Mapping[str, Any], tx: dict[str, Any]) -> dict[str, Any]:
        """The revert (message, data) of a mined failed transaction, exactly: the first of
        its block is replayed on the state before the block at the block's time (gate
        closure); a later one is traced, as the block ran it."""
        block = int(receipt["blockNumber"], 16)
        if int(receipt.get("transactionIndex", "0x0"), 16) > 0:
            trace = self.rpc("debug_traceTransaction", [receipt["transactionHash"],
                                                        {"tracer": "callTracer"}])
            frame = trace.get("result")
            if isinstance(frame, dict) and "error" in frame:
                return {"message": frame["error"], "data": frame.get("output", "0x")}
        head = self.rpc("eth_getBlockByNumber", [hex(block), False]).get("result") or {}
        overrides = {"time": head["timestamp"]} if "timestamp" in head else {}
        replay = self.rpc("eth_call", [tx, hex(block - 1), {}, overrides])
        return cast(dict[str, Any], replay.get("error") or {
            "message": "reverted (replay succeeded: state changed in the same block)"})

    def transact_logs(self, contract: Contract, fn: str, args: Sequence[Any], *, sender: int,
                      purpose: str, interval: int | None = None) -> list[dict[str, Any]]:
        """Send one transaction to any contract, wait, return its receipt's raw logs (a revert
        raises the decoded custom error)."""
        pending = self.send(contract, fn, args, sender=sender, purpose=purpose, interval=interval)
        return cast(list[dict[str, Any]], self.receipt(pending)["logs"])

    def dry_run(self, contract: Contract, fn: str, args: Sequence[Any], *, sender: int,
                purpose: str) -> None:
        """Run the call as ``eth_call`` (gas not bound by a block); a revert raises its
        decoded error before anything is sent."""
        tx = {"from": self.address_of(sender), "to": contract.address,
              "data": self.encode(contract, fn, args), "gas": hex(DRY_RUN_GAS)}
        out = self.rpc("eth_call", [tx, "latest"])
        if "error" in out:
            self.raise_revert(out["error"], purpose=purpose, tx_hash=None, error_context=None)

    def call(self, contract: Contract, fn: str, args: Sequence[Any]) -> bytes:
        """The raw return data of a view call (a revert raises its decoded error)."""
        r = self.rpc("eth_call", [{"to": contract.address, "data": self.encode(contract, fn, args)},
                                  "latest"])
        if "error" in r:
            self.raise_revert(r["error"], purpose=f"reading {fn}", tx_hash=None, error_context=None)
        return bytes.fromhex(str(r["result"])[2:])

    def deploy(self, name: str, abi: list[dict[str, Any]], bytecode: str, args: Sequence[Any], *,
               sender: int) -> Contract:
        """Deploy a contract (its gas is recorded as ``<name>.constructor``); a failed
        constructor raises ChainRevert."""
        ctor = [i for i in abi if i.get("type") == "constructor"]
        types = [abi_type(inp) for i in ctor for inp in i["inputs"]]
        data = bytecode if bytecode.startswith("0x") else "0x" + bytecode
        data += abi_encode(types, list(args)).hex() if types else ""
        tx = {"from": self.address_of(sender), "data": data, "gas": hex(self.tx_gas)}
        pending = self._send_raw(tx, fn=f"{name}.constructor", sender=sender,
                                 purpose=f"deploy {name}", interval=None, error_context=None)
        try:
            receipt = self.receipt(pending)
        except (ChainRevert, e.MarketError) as exc:
            raise ChainRevert("DeployFailed", {"contract": name}, purpose=f"deploy {name}",
                              tx_hash=pending.tx_hash) from exc
        address = receipt.get("contractAddress")
        if not address:
            raise ChainRevert("DeployFailed", {"contract": name}, purpose=f"deploy {name}",
                              tx_hash=pending.tx_hash)
        contract = self.w3.eth.contract(address=to_checksum_address(address), abi=abi)
        self.track(name, contract)
        return contract

    def _wait(self, tx_hash: str, pending: Pending | None = None) -> dict[str, Any]:
        policy = self.retry if pending is not None and pending.raw else None
        now = policy.now if policy is not None else time.monotonic
        start = now()
        deadline = start + (policy.deadline_s if policy is not None else 120.0)
        pause = 0.0002
        # under a retry policy the pause moves the policy's clock (no sleep on a node mining
        # on demand: a transaction missing after a block is dropped, delayed or lost, and
        # waits for its resend), up to an eighth of resend_after_s
        cap = max(0.01, policy.resend_after_s / 8) if policy is not None else 0.01
        sleep = policy.sleep if policy is not None and self.mine_on_demand else time.sleep
        sends, last_send = 1, start
        mined = 0
        mined_since_pause = False
        while now() < deadline:
            r = self.rpc("eth_getTransactionReceipt", [tx_hash])
            if r.get("result"):
                if policy is not None and pending is not None:
                    self._record_latency(pending, sends=sends, start=start)
                return cast(dict[str, Any], r["result"])
            if self.mine_on_demand and (mined < MAX_MINES if policy is None
                                        else not mined_since_pause and (
                                            mined == 0 or self._pool_pending())):
                # one block of what the pool holds (everything sent since the last block, up
                # to the block's gas limit), then read the receipt again
                out = self.rpc("evm_mine", [])
                if "error" in out:
                    raise ChainRevert("MineFailed", dict(out["error"]), purpose="mining a block",
                                      tx_hash=tx_hash)
                mined += 1
                mined_since_pause = True
                continue
            if policy is not None and pending is not None and (
                    now() - last_send > policy.resend_after_s):
                # the same signed bytes again: the node takes it once at most (same nonce)
                self.rpc("eth_sendRawTransaction", [pending.raw])  # "already known" is fine
                sends, last_send = sends + 1, now()
            sleep(pause)
            mined_since_pause = False
            pause = min(pause * 2, cap)
        if policy is not None:
            self.incidents.append({"kind": "no_receipt", "start": start, "end": float("nan"),
                                   "attempts": sends, "method": "eth_getTransactionReceipt"})
            raise ChainOutage(f"no receipt for {tx_hash} within faults.chain.deadline_s "
                              f"({policy.deadline_s:g} s) after {sends} sends; the run stops "
                              "here and can be resumed (twin run --resume)")
        raise ChainRevert(
            "NoReceipt", {"tx": tx_hash}, purpose="waiting for receipt", tx_hash=tx_hash
        )

    def _pool_pending(self) -> bool:
        """The node's pool holds a transaction it can mine now: under a retry policy a block
        is mined again only then (no empty blocks while a dropped or delayed transaction
        waits for its resend, so the blocks do not depend on how long the wait took)."""
        status = self.rpc("txpool_status", []).get("result") or {}
        return int(str(status.get("pending", "0x1")), 16) > 0

    def _record_latency(self, p: Pending, *, sends: int, start: float) -> None:
        assert self.retry is not None
        now = self.retry.now()
        self.latencies.append({"tx_hash": p.tx_hash, "function": p.fn, "interval": p.interval,
                               "latency_s": now - p.t_clock, "sends": sends, "sent": p.t_clock})
        if sends > 1:
            self.incidents.append({"kind": "resent_tx", "start": start, "end": now,
                                   "attempts": sends, "method": p.fn})

    # --- reverts ------------------------------------------------------------------------
    def raise_revert(self, error: Mapping[str, Any], *, purpose: str, tx_hash: str | None,
                     error_context: Any, sent: bool = False) -> None:
        """Raise the decoded revert: the reference's MarketError for a market rule (its
        purpose refined by ``error_context(exc)``), else ChainRevert (``sent``: the node
        refused the transaction at sending, :func:`~twin.chain.tx_types.refused`)."""
        exc = self.revert_error(error, purpose=purpose, tx_hash=tx_hash, error_context=error_context)
        if sent and isinstance(exc, ChainRevert) and exc.name == "Revert":
            exc = refused(exc, node=self._url, chain_id=self.chain_id, rpc=self._rpc_once)
        raise exc

    def revert_error(self, error: Mapping[str, Any], *, purpose: str, tx_hash: str | None,
                     error_context: Any) -> Exception:
        """The decoded revert (``raise_revert``) as an exception object."""
        data = error.get("data")
        if isinstance(data, dict):  # some nodes nest it
            data = data.get("data")
        name, values = "Revert", {"message": error.get("message", "")}
        if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
            decoded = self.errors.decode(bytes.fromhex(data[2:]))
            if decoded is not None:
                name, raw, types = decoded
                values = {f: (self.account_of(v) if t == "address" else v)
                          for (f, v), t in zip(raw.items(), types, strict=True)}
                hook = self.error_hooks.get(name)
                if hook is not None:
                    hook(values)
        if name in e.ERRORS:
            exc = e.ERRORS[name](**values)
            if error_context is not None:
                purpose = error_context(exc)
            exc.purpose = purpose
            exc.tx_hash = tx_hash
            exc.args = (str(exc),)
            return exc
        return ChainRevert(name, values, purpose=purpose, tx_hash=tx_hash)

