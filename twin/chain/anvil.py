"""Anvil lifecycle: start the pinned ``node_modules`` Anvil on a free loopback port, or use
an external RPC URL; always stop what we started.

>>> with AnvilNode(accounts=64, dump_state=out / "chain_state.json") as node:  # doctest: +SKIP
...     w3 = node.web3()
"""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from web3 import HTTPProvider, Web3

from twin.errors import TwinError
from twin.lifecycle import die_with_parent

__all__ = ["KEEP_STATES", "KEEP_TX_BLOCKS", "AnvilError", "AnvilNode", "anvil_binary", "compact_state"]

_FIX = "run `make setup` (or `npm install` in the project root) to install the pinned Anvil (@foundry-rs/anvil)"


#: block states Anvil keeps in memory (``--prune-history``). Each is a full copy-on-write
#: state: 512 of them held ~1 GB per simulated day of the quickstart; revert decoding and
#: ``eth_call`` at ``latest`` need only the last one.
KEEP_STATES = 16
#: blocks whose transactions and receipts Anvil keeps in memory (``--transaction-block-keeper``).
#: It kept them all: its memory and every state dump (each checkpoint) grew with the chain, so
#: a checkpoint cost grew by the day. The twin reads only recent blocks (receipts, the logs of
#: the intervals in play); 256 blocks are ~21 h of the quickstart at 3 transactions per interval.
KEEP_TX_BLOCKS = 256
#: a state dump keeps the headers of its last this many blocks (and the genesis block): older
#: blocks, whose transactions Anvil already dropped, were a growing part of every checkpoint
#: and compaction (about 1.6 kB a block, ~290 blocks a simulated day of the quickstart: half
#: of a dump by day 17). The twin reads only recent blocks; BLOCKHASH reaches back 256.
KEEP_HEADER_BLOCKS = 1024
#: EIP-2935's system contract (Prague): every block writes its parent's hash into a ring of
#: 8,191 storage slots. Nothing of the twin reads it (BLOCKHASH is served by the node), but
#: Anvil walks its slots at every block like any others: 5,034 slots (day 17 of the
#: quickstart) cost 8.5 ms of Anvil CPU per empty block against 3.3 ms without them.
BLOCK_HASH_HISTORY = "0x0000f90827f1c53a10cb7a02335b175320002935"


class AnvilError(TwinError):
    """Anvil is missing, failed to start, or the RPC endpoint does not answer."""


def anvil_binary(node_modules: Path | None = None) -> Path:
    """Path of the Anvil binary: TWIN_ANVIL, ``node_modules`` (no npm shim when the real
    binary is there, no download) or PATH (twin/tools.py)."""
    from twin.tools import ToolMissing, find_anvil

    try:
        return find_anvil(node_modules)
    except ToolMissing as exc:
        raise AnvilError(str(exc)) from exc


def compact_state(data: bytes) -> bytes:
    """A state dump (``anvil_dumpState`` JSON) without the call traces of its transactions.

    Traces are ~70 % of a dump (every internal call of every past transaction) and nothing
    reads them back: a loaded chain keeps its accounts, code, storage, blocks, receipts and
    logs (what ``twin run --resume`` replays from); only ``debug_trace*`` of a transaction
    mined before the dump has nothing left to show.

    Storage slots holding zero are left out too: Anvil keeps a slot reset to zero (a pruned
    interval's, ``pruneInterval``) as an entry that it still walks at every block, while a
    state loaded without them has none (:meth:`AnvilNode.compact`).

    The block-hash history contract's ring (:data:`BLOCK_HASH_HISTORY`) is left out too: a
    compacted node starts it again from empty.

    Blocks older than the last :data:`KEEP_HEADER_BLOCKS` that hold no transaction any more
    (Anvil dropped them, ``--transaction-block-keeper``) are left out, so a dump stops growing
    with the chain; a loaded chain keeps its block number and the recent blocks' hashes."""
    doc = json.loads(data)
    blocks, best = doc.get("blocks"), doc.get("best_block_number")
    if isinstance(blocks, list) and isinstance(best, int):
        doc["blocks"] = [b for b in blocks if not _old_empty_block(b, best)]
    for tx in doc.get("transactions") or []:
        info = tx.get("info") if isinstance(tx, dict) else None
        if isinstance(info, dict) and info.get("traces"):
            info["traces"] = []
    for address, account in (doc.get("accounts") or {}).items():
        storage = account.get("storage") if isinstance(account, dict) else None
        if storage and str(address).lower() == BLOCK_HASH_HISTORY:
            account["storage"] = {}
        elif storage:  # a slot set back to zero (a pruned interval) is no slot at all
            account["storage"] = {k: v for k, v in storage.items() if int(v, 16) != 0}
    return json.dumps(doc, separators=(",", ":")).encode()


def _old_empty_block(block: Any, best: int) -> bool:
    try:
        number = int(block["header"]["number"], 16)
    except (KeyError, TypeError, ValueError):
        return False
    return 0 < number < best - KEEP_HEADER_BLOCKS and not block.get("transactions")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rpc(url: str, method: str, params: list[Any], timeout: float = 2.0) -> Any:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        doc = json.loads(resp.read())
    if "error" in doc:
        raise AnvilError(f"{method} failed: {doc['error']}")
    return doc["result"]


class AnvilNode:
    """A running chain: a child Anvil process (default) or an external ``rpc_url``.

    Use as a context manager; ``stop()`` is idempotent and runs on normal exit, errors and
    ``KeyboardInterrupt``. With ``dump_state`` ``stop()`` writes the final chain state (blocks,
    logs) there, atomically, over RPC before stopping Anvil (``anvil --load-state`` restores
    it); a failure is kept in ``dump_error``.
    """

    def __init__(
        self,
        *,
        accounts: int = 64,
        balance_eth: int = 1_000_000,
        dump_state: Path | None = None,
        load_state: Path | None = None,
        rpc_url: str | None = None,
        gas_limit: int | None = None,
        chain_id: int | None = None,
        startup_timeout_s: float = 20.0,
        log_file: Path | None = None,
        node_modules: Path | None = None,
        keep_states: int | None = KEEP_STATES,
        keep_tx_blocks: int | None = KEEP_TX_BLOCKS,
        automine: bool = True,
    ) -> None:
        self.accounts = accounts
        self.balance_eth = balance_eth
        self.dump_state = Path(dump_state) if dump_state is not None else None
        self.load_state = Path(load_state) if load_state is not None else None
        self.external = rpc_url is not None
        self.gas_limit = gas_limit
        self.chain_id_override = chain_id
        self.startup_timeout_s = startup_timeout_s
        self.log_file = log_file
        self.node_modules = node_modules
        self.keep_states = keep_states
        self.keep_tx_blocks = keep_tx_blocks
        #: False: ``--no-mining``, blocks are mined on demand (``evm_mine``): the twin's
        #: transaction client then sends in batches and mines one block per batch
        #: (twin.chain.tx.TxClient.mine_on_demand)
        self.automine = automine
        self.url: str = rpc_url or ""
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._log: Any = None
        self._stderr: Any = None
        #: why the final state could not be written at stop() (None: written or not asked)
        self.dump_error: str | None = None
        self._unpacked: Path | None = None  # a .gz load_state unpacked for --load-state
        self._same_port: int | None = None  # compact(): the restart keeps the node's URL

    # --- lifecycle --------------------------------------------------------------------
    def start(self) -> AnvilNode:
        if self.external:
            self._wait_ready(self.url, proc=None)
            return self
        if self._proc is not None:
            return self
        binary = anvil_binary(self.node_modules)
        last_error = ""
        for _attempt in range(3):  # the free port may be taken between probe and bind
            self.port = self._same_port or _free_port()
            self.url = f"http://127.0.0.1:{self.port}"
            cmd = [
                str(binary),
                "--host", "127.0.0.1",
                "--port", str(self.port),
                "--accounts", str(self.accounts),
                "--balance", str(self.balance_eth),
            ]  # fmt: skip
            # Standard limits: the default 30 M gas block, EIP-170 code size, EIP-1559 fees
            if self.gas_limit is not None:
                cmd += ["--gas-limit", str(self.gas_limit)]
            if self.keep_states is not None:
                # Keep this many recent block states in memory (blocks, receipts and logs are
                # all kept): beyond its default of 256 Anvil writes old states to disk, which
                # makes every later transaction slower. Revert decoding needs only the last one.
                cmd += ["--prune-history", str(self.keep_states)]
            if self.keep_tx_blocks is not None:
                cmd += ["--transaction-block-keeper", str(self.keep_tx_blocks)]
            if not self.automine:
                cmd += ["--no-mining"]
            if self.chain_id_override is not None:
                cmd += ["--chain-id", str(self.chain_id_override)]
            if self.load_state is not None:
                if not self.load_state.is_file():
                    raise AnvilError(f"no chain state to load at {self.load_state}")
                cmd += ["--load-state", str(self._plain_state(self.load_state))]
            if self.dump_state is not None:
                # No `--dump-state`: with it Anvil also dumps the whole chain every 60 s
                # (a cost that grows with the chain); stop() writes it once over RPC instead.
                self.dump_state.parent.mkdir(parents=True, exist_ok=True)
            self._log = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL
            self._stderr = tempfile.TemporaryFile()  # not a pipe: a full pipe would block Anvil
            try:
                self._proc = subprocess.Popen(
                    cmd,
                    stdout=self._log,
                    stderr=self._stderr,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # Ctrl-C in the terminal reaches us, we stop Anvil
                    preexec_fn=die_with_parent,  # and it dies with us, even on kill -9
                )
            except OSError as exc:
                raise AnvilError(f"cannot start {binary}: {exc}; {_FIX}") from exc
            try:
                self._wait_ready(self.url, proc=self._proc)
                return self
            except AnvilError as exc:
                last_error = str(exc)
                self.stop()
        raise AnvilError(f"Anvil did not start: {last_error}")

    def _plain_state(self, path: Path) -> Path:
        """``--load-state`` reads plain JSON: a ``.gz`` state is unpacked to a temporary file
        (removed at stop)."""
        if path.suffix != ".gz":
            return path
        fd, tmp = tempfile.mkstemp(prefix=".anvil-load-", suffix=".json", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(gzip.decompress(path.read_bytes()))
        self._unpacked = Path(tmp)
        return self._unpacked

    def _wait_ready(self, url: str, *, proc: subprocess.Popen[bytes] | None) -> None:
        deadline = time.monotonic() + self.startup_timeout_s
        while True:
            if proc is not None and proc.poll() is not None:
                err = ""
                if self._stderr is not None:
                    self._stderr.seek(0)
                    err = self._stderr.read().decode(errors="replace")
                raise AnvilError(f"Anvil exited with code {proc.returncode}: {err.strip()[-2000:]}")
            try:
                _rpc(url, "eth_chainId", [], timeout=1.0)
                return
            except (OSError, urllib.error.URLError, AnvilError, ValueError) as exc:
                if time.monotonic() > deadline:
                    raise AnvilError(
                        f"no answer from {url} within {self.startup_timeout_s} s: {exc}"
                    ) from exc
                time.sleep(0.05)

    def restart(self) -> str:
        """A node restart with state reload: dump the state, stop, start a new node from it
        (a new port; the mempool is lost); return the new URL (twin.faults.rpc_proxy)."""
        self._reload("restart", same_port=False)
        return self.url

    def compact(self) -> None:
        """Restart the node on the same URL from its own state without the storage slots
        that were set back to zero (:func:`compact_state`): Anvil's work per block grows with
        every slot an account ever had, zero or not (bench/horizon.py: about 1.7 us per slot
        per block), so a long run that frees its settled intervals (``pruneInterval``) calls
        this now and then to keep that work flat. Blocks, receipts, logs, nonces and block
        numbers stay; the caller re-pins its block clock (the node's is the wall clock again)
        and must have nothing in the node's pool."""
        self._reload("compact", same_port=True)

    def _reload(self, why: str, *, same_port: bool) -> None:
        """Dump the state (zero slots left out), stop, start a new node from it (on the same
        port if ``same_port``); the dump is gone afterwards."""
        if self.external:
            raise AnvilError(f"cannot {why} an external node")
        where = self.dump_state.parent if self.dump_state is not None else Path(tempfile.gettempdir())
        state = where / f".{why}_state_{os.getpid()}.json"
        self.checkpoint_state(state)
        keep, self.dump_state = self.dump_state, None
        try:
            self.stop()
        finally:
            self.dump_state = keep
        self.load_state = state
        if same_port:
            self._same_port = self.port
        try:
            self.start()
        finally:
            state.unlink(missing_ok=True)  # loaded at start; nothing left in the run folder
            self.load_state = self._same_port = None

    def stop(self, timeout_s: float = 15.0) -> None:
        """Stop the child Anvil (SIGTERM, so ``--dump-state`` is written; SIGKILL if stuck)."""
        proc, self._proc = self._proc, None
        if proc is not None and self.dump_state is not None and proc.poll() is None:
            try:  # atomic: a failed write (full disk) leaves the last good state in place
                self.checkpoint_state(self.dump_state)
            except (OSError, AnvilError, ValueError) as exc:
                self.dump_error = f"{type(exc).__name__}: {exc}"
        if proc is not None:
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        proc.kill()
                    proc.wait(timeout=5)
        if self._unpacked is not None:
            self._unpacked.unlink(missing_ok=True)
            self._unpacked = None
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
        if self._stderr is not None:
            self._stderr.close()
        self._log = self._stderr = None

    def __enter__(self) -> AnvilNode:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __del__(self) -> None:  # last resort: never leave an orphan Anvil
        with contextlib.suppress(Exception):
            self.stop(timeout_s=2.0)

    # --- clients ----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self.external or (self._proc is not None and self._proc.poll() is None)

    def web3(self, *, timeout_s: float = 120.0) -> Web3:
        """A web3 client (HTTP keep-alive session) for this node."""
        if not self.url:
            raise AnvilError("node is not started")
        return Web3(HTTPProvider(self.url, request_kwargs={"timeout": timeout_s}))

    def rpc(self, method: str, *params: Any) -> Any:
        """One raw JSON-RPC call (e.g. ``evm_snapshot``)."""
        return _rpc(self.url, method, list(params), timeout=60.0)

    def checkpoint_state(self, path: Path) -> Path:
        """Write the chain's current state (``anvil_dumpState``: accounts, code, storage,
        blocks and logs; no call traces: :func:`compact_state`) to ``path`` atomically, in
        the JSON format ``--load-state`` reads (gzipped when ``path`` ends in ``.gz``).

        Unlike ``dump_state`` (written when Anvil stops), this survives a SIGKILL of Anvil:
        a run calls it at each checkpoint, and ``AnvilNode(load_state=path)`` continues
        from there (same contract addresses, balances, orders, trades and block numbers)."""
        raw = bytes.fromhex(str(self.rpc("anvil_dumpState"))[2:])
        data = compact_state(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
        path = Path(path)
        if path.suffix == ".gz":  # a state at rest: ~6x smaller; load_state unpacks it
            data = gzip.compress(data, compresslevel=6)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)  # e.g. a full disk: the last checkpoint stays
            raise
        return path
