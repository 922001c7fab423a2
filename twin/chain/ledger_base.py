"""The base of the chain market ledger: its state, the transaction plumbing (through
:class:`~twin.chain.tx.TxClient`), the clock, accounts, devices, money and read-outs.

:class:`~twin.chain.ledger.ChainLedger` adds deployment, orders, clearing, curtailment and
settlement (see its module docstring for the rules both halves follow).
"""

from __future__ import annotations

import gzip
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from eth_utils import to_checksum_address
from web3 import Web3
from web3.contract import Contract

from twin.chain.abi import EventCodec, decode_static
from twin.chain.anvil import compact_state
from twin.chain.compile import CONTRACTS, CompiledContracts, compile_contracts
from twin.chain.gas_size import GasSizer
from twin.chain.keys import TxKey
from twin.chain.tx import ChainRevert, Pending, TxClient, TxRecord
from twin.market import errors as e
from twin.market.bond import BondTerms
from twin.market.ledger import IntervalStatus, MarketParameters
from twin.market.mechanisms import CHAIN_CODE, Mechanism
from twin.market.signing import Domain, Rejection
from twin.market.types import (
    OPERATOR_ACCOUNT,
    Balance,
    Device,
    Order,
    Trade,
)

__all__ = [
    "CLEARING_PROGRESS",
    "CLEAR_CHUNK_ORDERS",
    "CLEAR_CHUNK_TRADES",
    "INTERVAL_STATE",
    "SETTLE_CHUNK_DEVICES",
    "SETTLE_CHUNK_TRADES",
    "STATUS",
    "UINT64",
    "LedgerBase",
    "freeze_clock",
]

UINT64 = 2**64
_MAX_UINT = 2**256 - 1
#: Bound of one clearing transaction (orders verified and matched / trades priced) before the
#: run's first receipt of one, chosen so a chunk stays far below a 30 M block gas limit (see
#: bench/chain.py); from then on a chunk is sized by gas (twin.chain.gas_size).
CLEAR_CHUNK_ORDERS = 500
CLEAR_CHUNK_TRADES = 1000
#: Default bound of one settlement transaction (trades paid / meter readings settled), chosen
#: so a chunk stays far below a 30 M block gas limit (see bench/chain.py).
SETTLE_CHUNK_TRADES = 2000
SETTLE_CHUNK_DEVICES = 250
#: Output types of EnergyMarket.intervals(k) and clearingProgress(k).
INTERVAL_STATE = ("uint8", "uint96", "uint64", "uint32", "uint32", "uint64", "uint32", "uint32")
CLEARING_PROGRESS = ("uint256", "uint256", "bool", "uint256", "uint256")
STATUS: tuple[IntervalStatus, ...] = ("open", "cleared", "settled", "clearing", "settling", "void")



class LedgerBase(MarketParameters):
    """State and plumbing of :class:`~twin.chain.ledger.ChainLedger`."""

    def __init__(
        self,
        w3: Web3,
        *,
        addresses: Mapping[str, str],
        compiled: CompiledContracts | None = None,
        accounts: Sequence[str] | None = None,
        deploy_block: int = 0,
        tx_gas: int = 30_000_000,
        gas_price: int = 0,
        clear_chunk_orders: int | None = None,
        clear_chunk_trades: int | None = None,
        settle_chunk_trades: int | None = None,
        settle_chunk_devices: int | None = None,
        tx: TxClient | None = None,
        keys: Sequence[TxKey] | None = None,
        operator_is_agent: bool = True,
    ) -> None:
        """Attach to already deployed contracts (``deploy`` creates them); ``tx``: the
        transaction client to send through (default: a new one over ``w3``). The chunk sizes
        (``clear_chunk_*``, ``settle_chunk_*``): fixed counts per transaction; None (default):
        sized by gas (:attr:`gas_sizes`), the module's constants until a first receipt."""
        self.clear_chunk_orders = clear_chunk_orders
        #: whether each account makes the operator its order agent (``setAgent``) when it is
        #: first funded; ``twin run`` turns this off: orders there are device-signed and relayed,
        #: so the operator holds no spending rights over anyone's escrow
        self.operator_is_agent = operator_is_agent
        self.clear_chunk_trades = clear_chunk_trades
        self.settle_chunk_trades = settle_chunk_trades
        self.settle_chunk_devices = settle_chunk_devices
        self.w3 = w3
        self.compiled = compiled or (tx.compiled if tx is not None else compile_contracts())
        #: the transaction client (node, accounts, sending, receipts, errors, tx log)
        self.tx = tx or TxClient(w3, compiled=self.compiled, accounts=accounts, tx_gas=tx_gas,
                                 gas_price=gas_price, keys=keys)
        self._addresses = {name: to_checksum_address(a) for name, a in addresses.items()}
        self.token: Contract = w3.eth.contract(
            address=self._addresses["SettlementToken"], abi=self.compiled["SettlementToken"].abi
        )
        self.registry: Contract = w3.eth.contract(
            address=self._addresses["DeviceRegistry"], abi=self.compiled["DeviceRegistry"].abi
        )
        self.market: Contract = w3.eth.contract(
            address=self._addresses["EnergyMarket"], abi=self.compiled["EnergyMarket"].abi
        )
        for name, c in (("SettlementToken", self.token), ("DeviceRegistry", self.registry),
                        ("EnergyMarket", self.market)):
            self.tx.track(name, c)
        self.deploy_block = deploy_block
        #: signed orders the last place_signed_orders / confirm skipped, with their errors
        self.rejected: list[Rejection] = []
        self.last_rejected: list[Rejection] = []
        self.tx_gas = self.tx.tx_gas
        #: chunk sizes by gas: per-item gas of each chunked call, learned from its receipts
        #: (twin.chain.gas_size); explicit chunk sizes (arguments, clear_chunk_* ...) win
        self.gas_sizes = GasSizer(gas_limit=min(self.tx.tx_gas, self.tx.block_gas_limit))
        self.gas_price = self.tx.gas_price
        self.chain_id: int = w3.eth.chain_id
        self._interval_s = int(self.market.functions.intervalS().call())
        self._retail = int(self.market.functions.retailPricePerMwh().call())
        self._feed_in = int(self.market.functions.feedInPricePerMwh().call())
        code = int(self.market.functions.mechanism().call())
        by_code = {c: m for m, c in CHAIN_CODE.items()}
        if code not in by_code:
            raise ValueError(f"EnergyMarket.mechanism() is {code}, unknown to this client")
        self.mechanism: Mechanism = by_code[code]
        #: address of the linked CdaMatching library (known when this ledger deployed it)
        self.cda_library: str | None = None
        self._market_start = int(self.market.functions.marketStart().call())
        self._gate_lead_s = int(self.market.functions.gateLeadS().call())
        self._min_order_wh = int(self.market.functions.minOrderWh().call())
        self._bond_terms = BondTerms.unpack(int(self.market.functions.bondTerms().call()),
                                            retail_price_per_mwh=self._retail)
        self._clock_set: int | None = None  # the last set_time (block time may lag it)
        self._frozen = False
        self._pin_each_tx = False
        self._devices: dict[int, Device] = {}
        self._block_times: dict[str, int] = {}  # block hash -> market clock (trade tickets)
        self._prepared: set[int] = set()
        # Orders this ledger placed, by interval: clear() uses them when the on-chain
        # counts agree (no eth_getLogs over the whole chain, whose cost grows with its length).
        # Each cache entry carries the (block number, block hash) of the transaction that
        # last wrote it and is used only while that block is still on the chain (a test's
        # evm_revert or a reorg invalidates it).
        self._book: dict[int, tuple[list[Order], tuple[int, str]]] = {}
        # devices with an order placed here, by interval (not yet cleared): a device's first
        # order of an interval costs more gas (twin.chain.gas_size sizes chunks by it)
        self._ordering: dict[int, set[int]] = {}
        self._cleared_trades: dict[int, tuple[dict[int, Trade], tuple[int, str]]] = {}
        #: Free each settled interval's storage (``pruneInterval``) at the next settlement: the
        #: twin's runs set it (twin.run_ledger), so the market's storage, and with it Anvil's
        #: work per block, stays flat over the horizon (issue #24).
        self.prune_settled = False
        # intervals settled here, not yet pruned: (interval, first trade, trades, orders,
        # settle block)
        self._unpruned: list[tuple[int, int, int, int, tuple[int, str]]] = []
        self._prune_slots: dict[str, int] = {}  # tx hash of a sent prune -> slots it frees
        # the book of each interval this ledger cleared, kept until it is pruned: its order
        # ids when their OrdersPlaced logs left the node's receipt window (KEEP_TX_BLOCKS)
        self._pruning_book: dict[int, tuple[list[Order], tuple[int, str]]] = {}
        # intervals voided by a reclaim here: (interval, block), freed at a settlement once
        # every buy order's escrow is reclaimed (IntervalPruning)
        self._void_unpruned: list[tuple[int, tuple[int, str]]] = []
        #: The twin's own Anvil: restart it without the freed slots (AnvilNode.compact) once
        #: pruning freed ``compact_after_slots`` of them (Anvil still walks a zeroed slot at
        #: every block; twin.run_ledger sets it). None: never.
        self.compact_node: Callable[[], None] | None = None
        self.compact_after_slots = 20_000
        self._freed_slots = 0
        self.compactions = 0
        self.domain = Domain(chain_id=self.chain_id, verifying_contract=self.market.address,
                             salt=bytes(self.market.functions.salt().call()))
        # ProvisionalSettlement and DailySchedules run on the market's storage (its fallback): their events are the market's
        self._market_events = EventCodec(self.compiled["EnergyMarket"].abi + [
            i for lib in ("ProvisionalSettlement", "DailySchedules")
            for i in self.compiled[lib].abi if i["type"] == "event"],
                                         address=self.market.address,
                                         with_block=frozenset({"TradeMatched"}))  # trade tickets
        for name in ("GateClosed", "GateOpen", "NotReclaimable"):
            self.tx.error_hooks[name] = self._gate_closed_values
        for name in ("TrueUpExpired", "TrueUpOpen"):
            self.tx.error_hooks[name] = self._deadline_values

    def _gate_closed_values(self, values: dict[str, Any]) -> None:
        """A GateClosed / GateOpen / NotReclaimable revert's block times -> seconds since the
        market's start."""
        for key in ("gate", "deadline", "time"):
            if key in values:
                values[key] -= self._market_start

    def _deadline_values(self, values: dict[str, Any]) -> None:
        """A TrueUpExpired / TrueUpOpen revert's block times -> seconds since the market's
        start (a deadline of 0, "never", stays 0)."""
        if values.get("deadline"):
            values["deadline"] -= self._market_start
        if "time" in values:
            values["time"] -= self._market_start

    def track(self, name: str, contract: Contract) -> None:
        """Name another contract (value layer) in the transaction table."""
        self.tx.track(name, contract)

    # --- facade for the manifest and the service clients --------------------------------
    def abis(self) -> dict[str, list[dict[str, Any]]]:
        """ABIs of the deployed market contracts (for the manifest)."""
        return {name: self.compiled[name].abi for name in CONTRACTS}

    def addresses(self) -> dict[str, str]:
        return dict(self._addresses)

    def address_of(self, account: int) -> str:
        return self.tx.address_of(account)

    @property
    def operator(self) -> int | str:
        """The market's operator (an account index when it is one of the run's)."""
        return self.account_of(self.market.functions.operator().call())

    @property
    def pending_operator(self) -> int | str | None:
        addr = self.market.functions.pendingOperator().call()
        return None if int(addr, 16) == 0 else self.account_of(addr)

    def transfer_operator(self, next_operator: int, *, sender: int) -> None:
        """Step one of handing over the operator role (``EnergyMarket.transferOperator``)."""
        self.transact_logs(self.market, "transferOperator", [self.address_of(next_operator)],
                           sender=sender, purpose=f"name account {next_operator} operator")

    def accept_operator(self, *, sender: int) -> None:
        """Step two: the named successor takes the role (``EnergyMarket.acceptOperator``)."""
        self.transact_logs(self.market, "acceptOperator", [], sender=sender,
                           purpose=f"account {sender} accepts the operator role")

    def account_of(self, address: str) -> int | str:
        return self.tx.account_of(address)

    @property
    def transactions(self) -> list[TxRecord]:
        """Every transaction sent through this ledger's client (deployments included)."""
        return self.tx.transactions

    def drain_tx_log(self) -> list[dict[str, Any]]:
        """Rows of the transactions sent since the last call (for streaming the chain table)."""
        return self.tx.drain()

    def tx_table(self) -> list[dict[str, Any]]:
        """Every transaction as a row (tx_hash, block, gas_used, function, interval, ...)."""
        return self.tx.table()

    def transact_logs(self, contract: Contract, fn: str, args: Sequence[Any], *, sender: int,
                      purpose: str, interval: int | None = None) -> list[dict[str, Any]]:
        """Send one transaction to any contract, wait, return its receipt's raw logs."""
        return self.tx.transact_logs(contract, fn, args, sender=sender, purpose=purpose,
                                     interval=interval)

    # --- parameters -------------------------------------------------------------------
    @property
    def market_start(self) -> int:
        """Chain time (unix seconds) at which interval 0's delivery starts."""
        return self._market_start

    # --- clock ------------------------------------------------------------------------
    def _block_now_s(self) -> int:
        head = self._rpc("eth_getBlockByNumber", ["latest", False])["result"]
        return int(head["timestamp"], 16) - self._market_start

    @property
    def now_s(self) -> int:
        """The market clock: seconds since the start of interval 0's delivery (the time the
        next block gets, as far as this ledger moved it)."""
        block = self._block_now_s()
        return block if self._clock_set is None else max(block, self._clock_set)

    def set_time(self, now_s: int) -> None:
        """Move the chain's clock forward to ``now_s`` seconds since the market's start: the
        next blocks get timestamp marketStart + now_s (the clock stays frozen there)."""
        current = self.now_s
        if now_s < current:
            raise ValueError(
                f"set_time: now_s={now_s} is before the chain's clock ({current} s); "
                "time only moves forward"
            )
        if not self._frozen:
            self._pin_each_tx = not freeze_clock(self.w3)
            self._frozen = True
        r = self._rpc("evm_setNextBlockTimestamp", [self._market_start + now_s])
        if "error" in r:
            exc = ChainRevert("SetTimeFailed", dict(r["error"]), purpose=f"set_time: {now_s} s")
            if r["error"].get("code") == -32601:  # the node lacks the method
                exc.args = (f"set_time: {now_s} s: the node at {self.tx._url or 'the RPC URL'} "
                            f"lacks evm_setNextBlockTimestamp ({r['error'].get('message')}), which "
                            "the twin needs to move the simulated clock (Anvil and Hardhat have it)",)
            raise exc
        if self._pin_each_tx:  # e.g. Hardhat: every block of the step gets the step's time
            self.tx.pinned_time = self._market_start + now_s
        self._clock_set = now_s

    def _compact_node(self) -> None:
        """Restart the node without its zeroed slots (``compact_node``), then pin its block
        clock again where this ledger set it (a restarted Anvil follows the wall clock)."""
        assert self.compact_node is not None
        self.compact_node()
        self.compactions += 1
        self._freed_slots = 0
        self._frozen = False
        if self._clock_set is not None:
            clock, self._clock_set = self._clock_set, None
            self.set_time(clock)

    def force_time(self, now_s: int) -> None:
        """``set_time`` without the forward-only check against this ledger's own clock (the
        chain may have gone back behind it, e.g. by ``evm_revert``; the node still refuses a
        time before its latest block)."""
        self._clock_set = None
        self.set_time(now_s)

    def gate_s(self, interval: int) -> int:
        """Last clock time at which orders for ``interval`` are accepted."""
        return max(self._market_start + interval * self._interval_s - self._gate_lead_s, 0) - (
            self._market_start
        )

    # --- transactions (through self.tx) ------------------------------------------------
    @property
    def _last_block(self) -> tuple[int, str]:
        return self.tx.last_block

    def _rpc(self, method: str, params: list[Any]) -> dict[str, Any]:
        return self.tx.rpc(method, params)

    def _transact(
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
    ) -> list[tuple[str, dict[str, Any]]]:
        """Send one transaction, wait for its receipt, return its decoded market events.

        On revert: replay it as a call on the state before it, decode the custom error and
        raise it with ``purpose`` (``error_context(err)`` may refine the purpose)."""
        return self._finish(
            self._send(
                contract, fn, args, sender=sender, purpose=purpose, interval=interval,
                error_context=error_context, calldata=calldata,
            )
        )  # fmt: skip

    def _send(
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
        return self.tx.send(contract, fn, args, sender=sender, purpose=purpose,
                            interval=interval, error_context=error_context, calldata=calldata)

    def _finish(self, p: Pending, *, kind: str | None = None, items: int = 0, extras: int = 0,
                ) -> list[tuple[str, dict[str, Any]]]:
        """Wait for ``p``'s receipt, return its decoded market events; ``kind``: a chunk of
        ``items`` items (``extras`` dear parts) whose gas teaches :attr:`gas_sizes`."""
        receipt = self.tx.receipt(p)
        if kind is not None:
            self.gas_sizes.learn(kind, items=items, extras=extras,
                                 gas_used=int(receipt["gasUsed"], 16))
        return self._decode_logs(receipt["logs"])

    def _chunk_size(self, kind: str, default: int) -> int:
        """Items the next ``kind`` chunk carries: sized by gas (:attr:`gas_sizes`, under the
        smaller of the client's gas limit and the node's block gas limit)."""
        self.gas_sizes.gas_limit = min(self.tx.tx_gas, self.tx.block_gas_limit)
        return self.gas_sizes.size(kind, default)

    def _decode_logs(self, logs: Sequence[Mapping[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        return self._market_events.decode(logs, self.account_of)

    def _logs_from_block(self) -> int:
        """First block an event read scans: the deployment, or on a node that keeps only its
        last ``tx.log_window_blocks`` blocks' receipts (the twin's Anvil,
        ``--transaction-block-keeper``) the first of those: older blocks hold no logs any
        more, and scanning them cost time growing with the chain."""
        window = self.tx.log_window_blocks
        if window is None:
            return int(self.deploy_block)
        return max(int(self.deploy_block), self.tx.last_block[0] - window)

    def _logs(
        self, events: Sequence[str], *, topic1: int | None = None, topic2: int | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        topics: list[Any] = [[self._market_events.topics[n] for n in events]]
        topics.append(None if topic1 is None else "0x" + topic1.to_bytes(32, "big").hex())
        topics.append(None if topic2 is None else "0x" + topic2.to_bytes(32, "big").hex())
        while topics and topics[-1] is None:
            topics.pop()
        r = self._rpc(
            "eth_getLogs",
            [
                {
                    "address": self.market.address,
                    "fromBlock": hex(self._logs_from_block()),
                    "toBlock": "latest",
                    "topics": topics,
                }
            ],
        )
        if "error" in r:
            raise ChainRevert("GetLogsFailed", dict(r["error"]), purpose="reading events")
        return self._decode_logs(r["result"])

    # --- accounts ------------------------------------------------------------------------
    def _prepare(self, account: int) -> None:
        """Approve the market for the account's tokens and the operator as its order agent."""
        if account in self._prepared:
            return
        self._transact(
            self.token,
            "approve",
            [self.market.address, _MAX_UINT],
            sender=account,
            purpose=f"prepare account {account}: approve market",
        )
        if account != OPERATOR_ACCOUNT and self.operator_is_agent:
            self._transact(
                self.market,
                "setAgent",
                [self.address_of(OPERATOR_ACCOUNT), True],
                sender=account,
                purpose=f"prepare account {account}: operator as order agent",
            )
        self._prepared.add(account)

    def _canonical(self, mark: tuple[int, str]) -> bool:
        """Is the block a cache entry was written in still on the chain?"""
        r = self._rpc("eth_getBlockByNumber", [hex(mark[0]), False])
        return bool(r.get("result")) and r["result"]["hash"] == mark[1]

    # --- money ------------------------------------------------------------------------
    def deposit(self, account: int, amount: int) -> None:
        """Operator mints ``amount`` to the account's wallet; the account deposits it."""
        if amount <= 0:
            raise e.BadAmount(amount, purpose=f"deposit: account {account}")
        self._prepare(account)
        self._transact(
            self.token,
            "mint",
            [self.address_of(account), amount],
            sender=OPERATOR_ACCOUNT,
            purpose=f"deposit: mint {amount} to account {account}",
        )
        self._transact(
            self.market,
            "deposit",
            [amount],
            sender=account,
            purpose=f"deposit: account {account} deposits {amount}",
        )

    def withdraw(self, account: int, amount: int) -> None:
        if amount <= 0:
            raise e.BadAmount(amount, purpose=f"withdraw: account {account}")
        self._transact(
            self.market,
            "withdraw",
            [amount],
            sender=account,
            purpose=f"withdraw: account {account} withdraws {amount}",
        )

    # --- read-outs --------------------------------------------------------------------
    def _view(
        self, contract: Contract, fn: str, args: Sequence[Any], out: Sequence[str]
    ) -> tuple[Any, ...]:
        """``eth_call`` of a view with static outputs over the raw session (a tenth of the
        time of web3's ``.call()``, which the audits and tests call thousands of times)."""
        return decode_static(out, self.tx.call(contract, fn, args))

    def balance(self, account: int) -> Balance:
        free, locked, debt, bond = self._view(
            self.market, "accounts", [self.address_of(account)], ("uint256",) * 4
        )
        return Balance(free=free, locked=locked, debt=debt, bond=bond)

    def wallet(self, account: int) -> int:
        return int(self._view(self.token, "balanceOf", [self.address_of(account)], ("uint256",))[0])

    def balances(self, accounts: Sequence[int]) -> list[Balance]:
        """:meth:`balance` of many accounts, read in JSON-RPC batches."""
        raw = self.tx.call_many(self.market, "accounts", [[self.address_of(a)] for a in accounts])
        out = []
        for r in raw:
            free, locked, debt, bond = decode_static(("uint256",) * 4, r)
            out.append(Balance(free=free, locked=locked, debt=debt, bond=bond))
        return out

    def wallets(self, accounts: Sequence[int]) -> list[int]:
        """:meth:`wallet` of many accounts, read in JSON-RPC batches."""
        raw = self.tx.call_many(self.token, "balanceOf", [[self.address_of(a)] for a in accounts])
        return [int(decode_static(("uint256",), r)[0]) for r in raw]

    def checkpoint_state(self, path: Path) -> int:
        """Write the node's whole chain state (``anvil_dumpState`` without call traces, the
        format ``anvil --load-state`` reads; gzipped when ``path`` ends in ``.gz``, which
        ``AnvilNode(load_state=)`` unpacks) to ``path`` atomically; return its block number."""
        block = int(self._rpc("eth_blockNumber", [])["result"], 16)
        r = self._rpc("anvil_dumpState", [])
        if "error" in r:
            raise ChainRevert("DumpStateFailed", dict(r["error"]), purpose="checkpoint")
        raw = bytes.fromhex(str(r["result"])[2:])
        data = compact_state(gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw)
        if path.suffix == ".gz":  # fast level: a checkpoint is written every few seconds
            data = gzip.compress(data, compresslevel=1)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        return block

    def interval_status(self, interval: int) -> IntervalStatus:
        return STATUS[self._view(self.market, "intervals", [interval], ("uint8",))[0]]

    def total_supply(self) -> int:
        return int(self._view(self.token, "totalSupply", [], ("uint256",))[0])

    def market_holdings(self) -> int:
        return int(self._view(self.token, "balanceOf", [self.market.address], ("uint256",))[0])



def freeze_clock(w3: Web3) -> bool:
    """Stop the node's block clock following the wall clock; False if the node cannot
    (Anvil can; on other nodes, e.g. Hardhat, ``set_time`` then pins each transaction's
    block time instead, which needs blocks that may share a timestamp)."""
    r = w3.provider.make_request("anvil_setBlockTimestampInterval", [0])  # type: ignore[arg-type]
    return "error" not in r


def _memo(fn: Callable[[int], bool]) -> Callable[[int], bool]:
    seen: dict[int, bool] = {}

    def call(x: int) -> bool:
        if x not in seen:
            seen[x] = fn(x)
        return seen[x]

    return call


