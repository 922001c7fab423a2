"""``ChainLedger``: the :class:`~twin.market.ledger.Ledger` protocol over the Solidity
contracts, through web3.py.

Same method semantics and return types as :class:`~twin.market.reference.ReferenceLedger`;
results are read back from the transactions' event logs. Account index ``i`` is the node's
``i``-th unlocked account (Anvil's). Each participant, when its first device is registered
or it first deposits, approves the market for its tokens and the operator as its order
agent (``EnergyMarket.setAgent``), so one ``placeOrders`` transaction carries a whole
interval's orders while every order keeps its device owner as owner and escrow payer.

A revert raises the same :class:`~twin.market.errors.MarketError` subclass the reference
raises, decoded from the custom error, with the transaction's purpose in the message; other
reverts (token errors, panics, out of gas) raise :class:`ChainRevert`. Every transaction is
recorded in :attr:`ChainLedger.transactions` (hash, block, gas, function, interval).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import keccak, to_checksum_address
from web3 import Web3
from web3.contract import Contract

from twin.chain.compile import CONTRACTS, CompiledContracts, compile_contracts
from twin.errors import TwinError
from twin.market import errors as e
from twin.market.clearing import match_orders
from twin.market.ledger import IntervalStatus
from twin.market.types import (
    DSO_ACCOUNT,
    OPERATOR_ACCOUNT,
    Balance,
    Clearing,
    Device,
    DeviceKind,
    Order,
    OrderIntent,
    SettlementRow,
    Side,
    Trade,
)

__all__ = ["ChainLedger", "ChainRevert", "TxRecord"]

_UINT64 = 2**64
_MAX_UINT = 2**256 - 1
_STATUS: tuple[IntervalStatus, ...] = ("open", "cleared", "settled")


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


@dataclass(frozen=True, slots=True)
class TxRecord:
    """One sent transaction, for the results ``chain`` table."""

    tx_hash: str
    block: int
    gas_used: int
    function: str  # Contract.function
    interval: int | None
    sender: int
    status: int  # 1 ok, 0 reverted
    purpose: str
    wall_ms: float  # send -> receipt, as seen by the client


@dataclass(frozen=True, slots=True)
class _Event:
    name: str
    indexed: tuple[tuple[str, str], ...]
    data: tuple[tuple[str, str], ...]


def _abi_type(item: dict[str, Any]) -> str:
    t = str(item["type"])
    if t.startswith("tuple"):
        inner = ",".join(_abi_type(c) for c in item["components"])
        return f"({inner}){t[5:]}"
    return t


class ChainLedger:
    """The market on chain (see the module docstring)."""

    def __init__(
        self,
        w3: Web3,
        *,
        addresses: Mapping[str, str],
        compiled: CompiledContracts | None = None,
        accounts: Sequence[str] | None = None,
        deploy_block: int = 0,
        tx_gas: int = 200_000_000,
        gas_price: int = 0,
    ) -> None:
        """Attach to already deployed contracts (``deploy`` creates them)."""
        self.w3 = w3
        self.compiled = compiled or compile_contracts()
        self._accounts = [to_checksum_address(a) for a in (accounts or w3.eth.accounts)]
        self._index = {a.lower(): i for i, a in enumerate(self._accounts)}
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
        self._names = {
            c.address: n
            for n, c in (
                ("SettlementToken", self.token),
                ("DeviceRegistry", self.registry),
                ("EnergyMarket", self.market),
            )
        }
        self.deploy_block = deploy_block
        self.tx_gas = tx_gas
        self.gas_price = gas_price
        self.chain_id: int = w3.eth.chain_id
        self.transactions: list[TxRecord] = []
        self._drained = 0
        self._interval_s = int(self.market.functions.intervalS().call())
        self._retail = int(self.market.functions.retailPricePerMwh().call())
        self._feed_in = int(self.market.functions.feedInPricePerMwh().call())
        self._devices: dict[int, Device] = {}
        self._prepared: set[int] = set()
        self._events: dict[bytes, _Event] = {}
        self._event_topics: dict[str, str] = {}
        for item in self.compiled["EnergyMarket"].abi:
            if item["type"] == "event":
                sig = f"{item['name']}({','.join(_abi_type(i) for i in item['inputs'])})"
                topic = keccak(text=sig)
                self._events[topic] = _Event(
                    name=item["name"],
                    indexed=tuple(
                        (i["name"], _abi_type(i)) for i in item["inputs"] if i["indexed"]
                    ),
                    data=tuple(
                        (i["name"], _abi_type(i)) for i in item["inputs"] if not i["indexed"]
                    ),
                )
                self._event_topics[item["name"]] = "0x" + topic.hex()
        self._fn_specs: dict[tuple[str, str], tuple[bytes, list[str]]] = {}
        self._errors: dict[bytes, tuple[str, list[str], list[str]]] = {}
        for name in CONTRACTS:
            for item in self.compiled[name].abi:
                if item["type"] == "error":
                    types = [_abi_type(i) for i in item["inputs"]]
                    sel = keccak(text=f"{item['name']}({','.join(types)})")[:4]
                    self._errors[sel] = (item["name"], [i["name"] for i in item["inputs"]], types)

    @classmethod
    def deploy(
        cls,
        w3: Web3,
        *,
        interval_s: int,
        retail_price_per_mwh: int,
        feed_in_price_per_mwh: int,
        compiled: CompiledContracts | None = None,
        accounts: Sequence[str] | None = None,
        tx_gas: int = 200_000_000,
        gas_price: int = 0,
    ) -> ChainLedger:
        """Deploy SettlementToken, DeviceRegistry and EnergyMarket (operator = account 0,
        DSO = account 1) and return a ledger over them."""
        if interval_s <= 0 or retail_price_per_mwh < 0 or feed_in_price_per_mwh < 0:
            raise ValueError("interval_s must be > 0 and tariffs >= 0")
        compiled = compiled or compile_contracts()
        accts = [to_checksum_address(a) for a in (accounts or w3.eth.accounts)]
        if len(accts) < 2:
            raise ValueError("the chain needs at least 2 accounts (operator, DSO)")
        operator, dso = accts[OPERATOR_ACCOUNT], accts[DSO_ACCOUNT]

        def _deploy(name: str, *args: Any) -> tuple[str, int]:
            art = compiled[name]
            factory = w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
            tx_hash = factory.constructor(*args).transact(
                {"from": operator, "gas": tx_gas, "gasPrice": gas_price}
            )
            receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
            if receipt["status"] != 1 or receipt["contractAddress"] is None:
                raise ChainRevert(
                    "DeployFailed",
                    {"contract": name},
                    purpose=f"deploy {name}",
                    tx_hash=tx_hash.hex(),
                )
            return str(receipt["contractAddress"]), int(receipt["blockNumber"])

        token, first_block = _deploy("SettlementToken", operator)
        registry, _ = _deploy("DeviceRegistry", dso)
        market, _ = _deploy(
            "EnergyMarket",
            token,
            registry,
            operator,
            interval_s,
            retail_price_per_mwh,
            feed_in_price_per_mwh,
        )
        return cls(
            w3,
            addresses={
                "SettlementToken": token,
                "DeviceRegistry": registry,
                "EnergyMarket": market,
            },
            compiled=compiled,
            accounts=accts,
            deploy_block=first_block,
            tx_gas=tx_gas,
            gas_price=gas_price,
        )

    # --- facade for the manifest --------------------------------------------------------
    def abis(self) -> dict[str, list[dict[str, Any]]]:
        return self.compiled.abis()

    def addresses(self) -> dict[str, str]:
        return dict(self._addresses)

    def address_of(self, account: int) -> str:
        if not 0 <= account < len(self._accounts):
            raise ValueError(
                f"account index {account} has no chain account (node has {len(self._accounts)}); "
                "start Anvil with more accounts"
            )
        return self._accounts[account]

    def account_of(self, address: str) -> int | str:
        return self._index.get(address.lower(), address)

    def drain_tx_log(self) -> list[dict[str, Any]]:
        """Rows of the transactions sent since the last call (for streaming the chain table)."""
        rows = [asdict(t) for t in self.transactions[self._drained :]]
        self._drained = len(self.transactions)
        return rows

    def tx_table(self) -> list[dict[str, Any]]:
        """Every transaction as a row (tx_hash, block, gas_used, function, interval, ...)."""
        return [asdict(t) for t in self.transactions]

    # --- parameters -------------------------------------------------------------------
    @property
    def interval_s(self) -> int:
        return self._interval_s

    @property
    def retail_price_per_mwh(self) -> int:
        return self._retail

    @property
    def feed_in_price_per_mwh(self) -> int:
        return self._feed_in

    # --- transactions ------------------------------------------------------------------
    def _rpc(self, method: str, params: list[Any]) -> dict[str, Any]:
        return cast(dict[str, Any], self.w3.provider.make_request(method, params))  # type: ignore[arg-type]

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
    ) -> list[tuple[str, dict[str, Any]]]:
        """Send one transaction, wait for its receipt, return its decoded market events.

        On revert: replay it as a call on the state before it, decode the custom error and
        raise it with ``purpose`` (``error_context(err)`` may refine the purpose)."""
        tx = {
            "from": self.address_of(sender),
            "to": contract.address,
            "data": self._encode(contract, fn, args),
            "gas": hex(self.tx_gas),
            "gasPrice": hex(self.gas_price),
        }
        t0 = time.perf_counter()
        sent = self._rpc("eth_sendTransaction", [tx])
        if "error" in sent:
            self._raise_revert(
                sent["error"], purpose=purpose, tx_hash=None, error_context=error_context
            )
        tx_hash = sent["result"]
        receipt = self._receipt(tx_hash)
        wall_ms = (time.perf_counter() - t0) * 1000
        status = int(receipt["status"], 16)
        block = int(receipt["blockNumber"], 16)
        self.transactions.append(
            TxRecord(
                tx_hash=tx_hash,
                block=block,
                gas_used=int(receipt["gasUsed"], 16),
                function=f"{self._names[contract.address]}.{fn}",
                interval=interval,
                sender=sender,
                status=status,
                purpose=purpose,
                wall_ms=wall_ms,
            )
        )
        if status != 1:
            replay = self._rpc(
                "eth_call", [{k: v for k, v in tx.items() if k != "gasPrice"}, hex(block - 1)]
            )
            err = replay.get("error") or {
                "message": "reverted (replay succeeded: state changed in the same block)"
            }
            self._raise_revert(err, purpose=purpose, tx_hash=tx_hash, error_context=error_context)
        return self._decode_logs(receipt["logs"])

    def _encode(self, contract: Contract, fn: str, args: Sequence[Any]) -> str:
        """Calldata by eth_abi directly (web3's encode_abi costs ~5 ms a call)."""
        key = (contract.address, fn)
        spec = self._fn_specs.get(key)
        if spec is None:
            abi = cast(list[dict[str, Any]], contract.abi)
            (item,) = [i for i in abi if i.get("type") == "function" and i.get("name") == fn]
            types = [_abi_type(i) for i in item["inputs"]]
            spec = (keccak(text=f"{fn}({','.join(types)})")[:4], types)
            self._fn_specs[key] = spec
        return "0x" + (spec[0] + abi_encode(spec[1], list(args))).hex()

    def _receipt(self, tx_hash: str) -> dict[str, Any]:
        for _ in range(6000):
            r = self._rpc("eth_getTransactionReceipt", [tx_hash])
            if r.get("result"):
                return cast(dict[str, Any], r["result"])
            time.sleep(0.01)
        raise ChainRevert(
            "NoReceipt", {"tx": tx_hash}, purpose="waiting for receipt", tx_hash=tx_hash
        )

    def _raise_revert(
        self, error: dict[str, Any], *, purpose: str, tx_hash: str | None, error_context: Any
    ) -> None:
        data = error.get("data")
        if isinstance(data, dict):  # some nodes nest it
            data = data.get("data")
        name, values = "Revert", {"message": error.get("message", "")}
        if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
            raw = bytes.fromhex(data[2:])
            sel, body = raw[:4], raw[4:]
            if sel in self._errors:
                name, fields, types = self._errors[sel]
                decoded = abi_decode(types, body)
                values = {
                    f: (self.account_of(v) if t == "address" else v)
                    for f, t, v in zip(fields, types, decoded, strict=True)
                }
            elif sel == bytes.fromhex("08c379a0"):
                name, values = "Error", {"reason": abi_decode(["string"], body)[0]}
            elif sel == bytes.fromhex("4e487b71"):
                name, values = "Panic", {"code": hex(abi_decode(["uint256"], body)[0])}
        if name in e.ERRORS:
            exc = e.ERRORS[name](**values)
            if error_context is not None:
                purpose = error_context(exc)
            exc.purpose = purpose
            exc.tx_hash = tx_hash
            exc.args = (str(exc),)
            raise exc
        raise ChainRevert(name, values, purpose=purpose, tx_hash=tx_hash)

    def _decode_logs(self, logs: Sequence[Mapping[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
        out: list[tuple[str, dict[str, Any]]] = []
        market = self.market.address.lower()
        for log in logs:
            if str(log["address"]).lower() != market or not log["topics"]:
                continue
            topics = [bytes.fromhex(str(t)[2:]) for t in log["topics"]]
            ev = self._events.get(topics[0])
            if ev is None:
                continue
            values: dict[str, Any] = {}
            for (name, typ), topic in zip(ev.indexed, topics[1:], strict=True):
                values[name] = abi_decode([typ], topic)[0]
            data = bytes.fromhex(str(log["data"])[2:])
            decoded = abi_decode([t for _, t in ev.data], data)
            for (name, typ), v in zip(ev.data, decoded, strict=True):
                values[name] = self.account_of(v) if typ == "address" else v
            out.append((ev.name, values))
        return out

    def _logs(
        self, events: Sequence[str], *, topic1: int | None = None, topic2: int | None = None
    ) -> list[tuple[str, dict[str, Any]]]:
        topics: list[Any] = [[self._event_topics[n] for n in events]]
        topics.append(None if topic1 is None else "0x" + topic1.to_bytes(32, "big").hex())
        topics.append(None if topic2 is None else "0x" + topic2.to_bytes(32, "big").hex())
        while topics and topics[-1] is None:
            topics.pop()
        r = self._rpc(
            "eth_getLogs",
            [
                {
                    "address": self.market.address,
                    "fromBlock": hex(self.deploy_block),
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
        if account != OPERATOR_ACCOUNT:
            self._transact(
                self.market,
                "setAgent",
                [self.address_of(OPERATOR_ACCOUNT), True],
                sender=account,
                purpose=f"prepare account {account}: operator as order agent",
            )
        self._prepared.add(account)

    # --- devices ----------------------------------------------------------------------
    def register_device(self, device: Device, *, sender: int | None = None) -> None:
        if not 0 <= device.device_id < _UINT64:
            raise ValueError(f"device_id {device.device_id} does not fit uint64")
        if not 0 <= device.capacity_w < 2**48 or not 0 <= device.bus < 2**32:
            raise ValueError(
                f"device {device.device_id}: capacity_w must fit uint48 and bus uint32"
            )
        owner = self.address_of(device.owner)
        self._prepare(device.owner)
        self._transact(
            self.registry,
            "register",
            [device.device_id, owner, int(device.kind), device.bus, device.capacity_w],
            sender=DSO_ACCOUNT if sender is None else sender,
            purpose=f"register_device: device {device.device_id}",
        )
        self._devices[device.device_id] = device

    def revoke_device(self, device_id: int, *, sender: int | None = None) -> None:
        if not 0 <= device_id < _UINT64:
            raise e.UnknownDevice(device_id, purpose="revoke_device")
        self._transact(
            self.registry,
            "revoke",
            [device_id],
            sender=DSO_ACCOUNT if sender is None else sender,
            purpose=f"revoke_device: device {device_id}",
        )

    def _device_record(self, device_id: int) -> tuple[Device | None, int]:
        if not 0 <= device_id < _UINT64:
            return None, 0
        owner, kind, status, bus, cap = self.registry.functions.get(device_id).call()
        if status == 0:
            return None, 0
        dev = Device(
            device_id=device_id,
            owner=cast(int, self.account_of(owner)),
            kind=DeviceKind(kind),
            bus=bus,
            capacity_w=cap,
        )
        return dev, int(status)

    def device(self, device_id: int) -> Device:
        if device_id in self._devices:
            return self._devices[device_id]
        dev, _ = self._device_record(device_id)
        if dev is None:
            raise e.UnknownDevice(device_id)
        self._devices[device_id] = dev
        return dev

    def is_revoked(self, device_id: int) -> bool:
        dev, status = self._device_record(device_id)
        if dev is None:
            raise e.UnknownDevice(device_id)
        return status == 2

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

    # --- orders -----------------------------------------------------------------------
    def place_orders(
        self, intents: Sequence[OrderIntent], *, sender: int | None = None
    ) -> list[Order]:
        """Place a batch atomically in one transaction (see the module docstring)."""
        if not intents:
            return []
        for it in intents:
            if not 0 <= it.device_id < _UINT64:
                raise e.UnknownDevice(
                    it.device_id,
                    purpose=f"place_orders: order for device {it.device_id} interval {it.interval}",
                )
            if not 0 <= it.interval < _UINT64:
                raise ValueError(f"interval {it.interval} does not fit uint64")
        if sender is None:
            owners = set()
            for it in intents:
                try:
                    owners.add(self.device(it.device_id).owner)
                except e.UnknownDevice:
                    owners.add(-1)
            sender = owners.pop() if len(owners) == 1 and -1 not in owners else OPERATOR_ACCOUNT
        intervals = {it.interval for it in intents}
        interval = next(iter(intervals)) if len(intervals) == 1 else None
        args = [
            [
                (it.device_id, it.interval, int(it.side), it.energy_wh, it.price_per_mwh)
                for it in intents
            ]
        ]

        def context(exc: e.MarketError) -> str:
            dev = exc.values.get("device")
            ivl = exc.values.get("interval")
            for it in intents:
                if (dev is None or it.device_id == dev) and (ivl is None or it.interval == ivl):
                    return f"place_orders: order for device {it.device_id} interval {it.interval}"
            return f"place_orders: batch of {len(intents)} orders"

        events = self._transact(
            self.market, "placeOrders", args, sender=sender, interval=interval,
            purpose=f"place_orders: batch of {len(intents)} orders", error_context=context,
        )  # fmt: skip
        return [self._order(v) for name, v in events if name == "OrderPlaced"]

    def _order(self, v: Mapping[str, Any]) -> Order:
        return Order(
            order_id=v["orderId"],
            device_id=v["device"],
            owner=cast(int, v["owner"]),
            interval=v["interval"],
            side=Side(v["side"]),
            energy_wh=v["energyWh"],
            price_per_mwh=v["price"],
        )

    # --- clearing ---------------------------------------------------------------------
    def clear(self, interval: int, *, sender: int | None = None) -> Clearing:
        """Sort the interval's book off-chain, let the contract verify and match it."""
        result = match_orders(self.orders(interval))
        return self.submit_clearing(
            interval, bid_ids=result.bid_ids, ask_ids=result.ask_ids, sender=sender
        )

    def submit_clearing(
        self,
        interval: int,
        *,
        bid_ids: Sequence[int],
        ask_ids: Sequence[int],
        sender: int | None = None,
    ) -> Clearing:
        """Send ``clear`` with explicit sorted id lists (the contract verifies them)."""
        events = self._transact(
            self.market, "clear", [interval, list(bid_ids), list(ask_ids)],
            sender=OPERATOR_ACCOUNT if sender is None else sender, interval=interval,
            purpose=f"clear: interval {interval} ({len(bid_ids)} bids, {len(ask_ids)} asks)",
        )  # fmt: skip
        trades = tuple(self._trade(v) for name, v in events if name == "TradeMatched")
        cleared = next(v for name, v in events if name == "Cleared")
        return Clearing(
            interval=interval,
            price_per_mwh=cleared["price"],
            volume_wh=cleared["volumeWh"],
            trades=trades,
        )

    @staticmethod
    def _trade(v: Mapping[str, Any]) -> Trade:
        return Trade(
            trade_id=v["tradeId"],
            interval=v["interval"],
            buy_order_id=v["buyOrder"],
            sell_order_id=v["sellOrder"],
            buyer_device=v["buyerDevice"],
            seller_device=v["sellerDevice"],
            cleared_wh=v["energyWh"],
            energy_wh=v["energyWh"],
            price_per_mwh=v["price"],
        )

    # --- DSO curtailment --------------------------------------------------------------
    def curtail(self, trade_id: int, energy_wh: int, *, sender: int | None = None) -> Trade:
        if not 0 <= trade_id < _UINT64:
            raise e.UnknownTrade(trade_id, purpose=f"curtail: trade {trade_id}")
        events = self._transact(
            self.market, "curtail", [trade_id, energy_wh],
            sender=DSO_ACCOUNT if sender is None else sender,
            purpose=f"curtail: trade {trade_id} to {energy_wh} Wh",
        )  # fmt: skip
        curtailed = next(v for name, v in events if name == "Curtailed")
        matched = self._logs(["TradeMatched"], topic1=trade_id)
        trade = self._trade(matched[0][1])
        self.transactions[-1] = _with_interval(self.transactions[-1], curtailed["interval"])
        return Trade(**{**asdict(trade), "energy_wh": curtailed["newWh"]})

    # --- settlement -------------------------------------------------------------------
    def settle(
        self, interval: int, metered_wh: Mapping[int, int], *, sender: int | None = None
    ) -> list[SettlementRow]:
        devices = sorted(metered_wh)
        for d in devices:
            if not 0 <= d < _UINT64:
                raise e.UnknownDevice(d, purpose=f"settle: interval {interval}")
        events = self._transact(
            self.market, "settle", [interval, devices, [metered_wh[d] for d in devices]],
            sender=OPERATOR_ACCOUNT if sender is None else sender, interval=interval,
            purpose=f"settle: interval {interval} ({len(devices)} meter readings)",
        )  # fmt: skip
        return [
            SettlementRow(
                interval=v["interval"],
                device_id=v["device"],
                owner=cast(int, v["owner"]),
                traded_wh=v["tradedWh"],
                metered_wh=v["meteredWh"],
                imbalance_wh=v["imbalanceWh"],
                trade_amount=v["tradeAmount"],
                imbalance_amount=v["imbalanceAmount"],
                debt=v["debt"],
            )
            for name, v in events
            if name == "Settled"
        ]

    # --- read-outs --------------------------------------------------------------------
    def balance(self, account: int) -> Balance:
        free, locked, debt = self.market.functions.balanceOf(self.address_of(account)).call()
        return Balance(free=free, locked=locked, debt=debt)

    def wallet(self, account: int) -> int:
        return int(self.token.functions.balanceOf(self.address_of(account)).call())

    def orders(self, interval: int) -> list[Order]:
        return [self._order(v) for _, v in self._logs(["OrderPlaced"], topic2=interval)]

    def trades(self, interval: int) -> list[Trade]:
        trades: dict[int, Trade] = {}
        for name, v in self._logs(["TradeMatched", "Curtailed"], topic2=interval):
            if name == "TradeMatched":
                trades[v["tradeId"]] = self._trade(v)
            else:
                t = trades[v["tradeId"]]
                trades[t.trade_id] = Trade(**{**asdict(t), "energy_wh": v["newWh"]})
        return [trades[k] for k in sorted(trades)]

    def interval_status(self, interval: int) -> IntervalStatus:
        state = self.market.functions.intervals(interval).call()
        return _STATUS[state[0]]

    def total_supply(self) -> int:
        return int(self.token.functions.totalSupply().call())

    def market_holdings(self) -> int:
        return int(self.token.functions.balanceOf(self.market.address).call())


def _with_interval(rec: TxRecord, interval: int) -> TxRecord:
    return TxRecord(**{**asdict(rec), "interval": interval})
