"""The value layer on chain: the Solidity ``AssetToken``, ``GreenCertificate`` and
``DemandResponse`` behind the same methods (names, arguments, results, errors) as their
pure-Python references in :mod:`twin.market.assets`, :mod:`twin.market.certificates` and
:mod:`twin.market.demand_response`.

Each client rides on a :class:`~twin.chain.ledger.ChainLedger` (its node, accounts, error
decoding and transaction table). Accounts are the ledger's account indices; money is the
market's settlement token, minted by the operator where a reference simply assumes it
(revenue to distribute, an event's budget) — unless the client is made with
``mint_funds=False`` (a scenario run, twin/market/value_services.py): then the payer's
wallet must already hold the money (withdrawn from the market), and nothing is minted.
``last_tx_hash`` is the hash of the client's latest transaction (for result rows).

The helpers are public because the pilot clients (:mod:`twin.chain.services_chain`) use them
too: ``ChainClient`` (``last_tx_hash``, ``_send``, ``_uint``, ``_events``),
``deploy_contract``, ``decode_events``, ``fund`` (= ``mint_to`` + ``approve_once``),
``negative_error`` and ``pre_send_error`` (the reference's error, raised before sending).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from typing import Any, cast

from eth_abi import decode as abi_decode
from eth_utils import keccak
from web3.contract import Contract

from twin.chain.compile import CompiledContracts
from twin.chain.ledger import ChainLedger, ChainRevert, _abi_type
from twin.market import errors as e
from twin.market.demand_response import DREvent, DRPayout
from twin.market.types import DSO_ACCOUNT, OPERATOR_ACCOUNT
from twin.market.units import payment

__all__ = [
    "ChainAssetToken",
    "ChainCertificates",
    "ChainClient",
    "ChainDemandResponse",
    "approve_once",
    "decode_events",
    "deploy_contract",
    "fund",
    "mint_to",
    "negative_error",
    "pre_send_error",
]

_MAX_UINT = 2**256 - 1


def deploy_contract(
    led: ChainLedger,
    name: str,
    *args: Any,
    sender: int = OPERATOR_ACCOUNT,
    compiled: CompiledContracts | None = None,
) -> Contract:
    """Deploy one compiled contract (of ``compiled``, default the ledger's) from ``sender``;
    a constructor revert raises ChainRevert."""
    art = (compiled or led.compiled)[name]
    factory = led.w3.eth.contract(abi=art.abi, bytecode=art.bytecode)
    tx_hash = factory.constructor(*args).transact(
        {"from": led.address_of(sender), "gas": led.tx_gas, "gasPrice": led.gas_price}
    )
    receipt = led.w3.eth.wait_for_transaction_receipt(tx_hash)
    if receipt["status"] != 1 or receipt["contractAddress"] is None:
        raise ChainRevert("DeployFailed", {"contract": name}, purpose=f"deploy {name}")
    contract = led.w3.eth.contract(address=receipt["contractAddress"], abi=art.abi)
    led.track(name, contract)
    return contract


def decode_events(
    led: ChainLedger, contract: Contract, logs: Sequence[Mapping[str, Any]], name: str
) -> list[dict[str, Any]]:
    """Decode the ``name`` events ``contract`` emitted (addresses -> account indices)."""
    abi = cast(list[dict[str, Any]], contract.abi)
    (item,) = [i for i in abi if i.get("type") == "event" and i.get("name") == name]
    inputs = item["inputs"]
    topic0 = "0x" + keccak(text=f"{name}({','.join(_abi_type(i) for i in inputs)})").hex()
    indexed = [i for i in inputs if i["indexed"]]
    plain = [i for i in inputs if not i["indexed"]]
    out = []
    for log in logs:
        topics = [str(t) for t in log["topics"]]
        if str(log["address"]).lower() != contract.address.lower() or topics[:1] != [topic0]:
            continue
        values: dict[str, Any] = {}
        for spec, topic in zip(indexed, topics[1:], strict=True):
            values[spec["name"]] = abi_decode([_abi_type(spec)], bytes.fromhex(topic[2:]))[0]
        decoded = abi_decode([_abi_type(i) for i in plain], bytes.fromhex(str(log["data"])[2:]))
        values |= {spec["name"]: v for spec, v in zip(plain, decoded, strict=True)}
        for spec in inputs:
            if spec["type"] == "address":
                values[spec["name"]] = led.account_of(values[spec["name"]])
        out.append(values)
    return out


def mint_to(led: ChainLedger, *, account: int, amount: int) -> None:
    """The operator mints ``amount`` settlement tokens to the account's wallet."""
    led.transact_logs(
        led.token, "mint", [led.address_of(account), amount], sender=OPERATOR_ACCOUNT,
        purpose=f"mint {amount} to account {account}",
    )  # fmt: skip


def approve_once(led: ChainLedger, *, account: int, spender: Contract, approved: set[int]) -> None:
    """The account approves ``spender`` for all its settlement tokens, unless it is already
    in ``approved`` (the caller's record, updated here)."""
    if account not in approved:
        led.transact_logs(
            led.token, "approve", [spender.address, _MAX_UINT], sender=account,
            purpose=f"account {account} approves {spender.address}",
        )  # fmt: skip
        approved.add(account)


def fund(
    led: ChainLedger,
    *,
    account: int,
    amount: int,
    spender: Contract,
    approved: set[int],
    mint: bool = True,
) -> None:
    """Operator mints ``amount`` to the account's wallet (unless ``mint`` is False); the
    account approves ``spender``."""
    if mint and amount > 0:
        mint_to(led, account=account, amount=amount)
    approve_once(led, account=account, spender=spender, approved=approved)


class ChainClient:
    """Base of the contract clients: ``led`` and ``contract``, ``last_tx_hash``, and the
    shared ways to send to and read from the contract."""

    led: ChainLedger
    contract: Contract
    _tx_mark: int = 0

    def _mark(self) -> None:
        self._tx_mark = len(self.led.transactions)

    @property
    def last_tx_hash(self) -> str:
        """Hash of the latest transaction sent since the last ``_mark`` ('' if none)."""
        txs = self.led.transactions
        return txs[-1].tx_hash if len(txs) > self._tx_mark else ""

    def _send(
        self, fn: str, args: list[Any], *, sender: int, purpose: str, interval: int | None = None
    ) -> list[dict[str, Any]]:
        """``_mark``, then one transaction to the contract; its receipt's raw logs."""
        self._mark()
        return self.led.transact_logs(
            self.contract, fn, args, sender=sender, purpose=purpose, interval=interval
        )

    def _uint(self, fn: str, *args: Any) -> int:
        """The contract's view ``fn(*args)`` as an int."""
        return int(getattr(self.contract.functions, fn)(*args).call())

    def _events(self, logs: Sequence[Mapping[str, Any]], name: str) -> list[dict[str, Any]]:
        """The ``name`` events of the contract in ``logs``, decoded."""
        return decode_events(self.led, self.contract, logs, name)


def pre_send_error(exc: e.MarketError, *, purpose: str) -> e.MarketError:
    """``exc`` (the reference's error) marked as raised by a check before anything was sent."""
    exc.purpose = purpose
    exc.pre_send = True
    exc.args = (str(exc),)
    return exc


def negative_error(exc: type[e.MarketError], value: int, *, purpose: str) -> e.MarketError:
    """The reference's error for a negative value the ABI cannot carry, raised pre-send."""
    return pre_send_error(exc(value), purpose=purpose)


class ChainAssetToken(ChainClient):
    """:class:`~twin.market.assets.AssetLedger` on chain (``AssetToken.sol``)."""

    def __init__(self, led: ChainLedger, contract: Contract, *, mint_funds: bool = True) -> None:
        self.led = led
        self.mint_funds = mint_funds
        self.contract = contract
        self.asset_id = int(contract.functions.assetId().call())
        self.total_shares = int(contract.functions.totalShares().call())
        self._approved: set[int] = set()

    @classmethod
    def deploy(
        cls, led: ChainLedger, *, asset_id: int, issuer: int, total_shares: int,
        mint_funds: bool = True,
    ) -> ChainAssetToken:
        if total_shares <= 0:
            raise negative_error(e.BadAmount, total_shares, purpose=f"deploy asset {asset_id}")
        return cls(
            led,
            deploy_contract(
                led, "AssetToken", led.token.address, asset_id, led.address_of(issuer), total_shares
            ),
            mint_funds=mint_funds,
        )

    @property
    def distributed(self) -> int:
        return int(self.contract.functions.distributed().call())

    def shares(self, holder: int) -> int:
        return int(self.contract.functions.sharesOf(self.led.address_of(holder)).call())

    def transfer(self, sender: int, to: int, shares: int) -> None:
        if shares < 0:
            raise negative_error(e.BadAmount, shares, purpose="asset transfer")
        self._mark()
        self.led.transact_logs(
            self.contract, "transfer", [self.led.address_of(to), shares], sender=sender,
            purpose=f"asset {self.asset_id}: {sender} transfers {shares} shares to {to}",
        )  # fmt: skip

    def distribute(self, amount: int, *, payer: int = OPERATOR_ACCOUNT) -> None:
        """Revenue paid in by ``payer`` (the operator mints it to the payer first, unless
        ``mint_funds`` is False)."""
        if amount < 0:
            raise negative_error(e.BadAmount, amount, purpose="asset distribute")
        self._mark()
        fund(
            self.led, account=payer, amount=amount, spender=self.contract,
            approved=self._approved, mint=self.mint_funds,
        )  # fmt: skip
        self.led.transact_logs(
            self.contract, "distribute", [amount], sender=payer,
            purpose=f"asset {self.asset_id}: distribute {amount}",
        )  # fmt: skip

    def claimable(self, holder: int) -> int:
        return int(self.contract.functions.claimable(self.led.address_of(holder)).call())

    def claimed(self, holder: int) -> int:
        return int(self.contract.functions.claimed(self.led.address_of(holder)).call())

    def claim(self, holder: int) -> int:
        self._mark()
        logs = self.led.transact_logs(
            self.contract, "claim", [], sender=holder,
            purpose=f"asset {self.asset_id}: account {holder} claims",
        )  # fmt: skip
        (ev,) = decode_events(self.led, self.contract, logs, "RevenueClaimed")
        return int(ev["amount"])


class ChainCertificates(ChainClient):
    """:class:`~twin.market.certificates.CertificateLedger` on chain (``GreenCertificate.sol``).

    ``issue`` reads trades and metered delivery from the market itself: certificates exist
    only for what the chain settled."""

    def __init__(self, led: ChainLedger, contract: Contract) -> None:
        self.led = led
        self.contract = contract

    @classmethod
    def deploy(cls, led: ChainLedger) -> ChainCertificates:
        return cls(led, deploy_contract(led, "GreenCertificate", led.market.address))

    @property
    def minted(self) -> int:
        return int(self.contract.functions.minted().call())

    @property
    def retired(self) -> int:
        return int(self.contract.functions.retired().call())

    def outstanding(self) -> int:
        return self.minted - self.retired

    def balance_of(self, holder: int, vintage: int) -> int:
        return int(self.contract.functions.balanceOf(self.led.address_of(holder), vintage).call())

    def issue(
        self, interval: int, *, max_trades: int = 500, sender: int = OPERATOR_ACCOUNT
    ) -> dict[int, int]:
        """Mint the settled interval's certificates, ``max_trades`` trades per transaction;
        returns owner -> certificates, like the reference."""
        minted: dict[int, int] = defaultdict(int)
        done = False
        self._mark()
        while not done:
            logs = self.led.transact_logs(
                self.contract, "issue", [interval, max_trades], sender=sender, interval=interval,
                purpose=f"issue certificates of interval {interval}",
            )  # fmt: skip
            for ev in decode_events(self.led, self.contract, logs, "TransferSingle"):
                minted[ev["to"]] += ev["value"]
            done = bool(decode_events(self.led, self.contract, logs, "Issued")[0]["done"])
        return dict(minted)

    def transfer(self, sender: int, to: int, vintage: int, amount: int) -> None:
        if amount < 0:
            raise negative_error(e.BadAmount, amount, purpose="certificate transfer")
        self._mark()
        self.led.transact_logs(
            self.contract, "safeTransferFrom",
            [self.led.address_of(sender), self.led.address_of(to), vintage, amount, b""],
            sender=sender, purpose=f"certificates: {sender} sends {amount} of {vintage} to {to}",
        )  # fmt: skip

    def retire(self, holder: int, vintage: int, amount: int) -> None:
        if amount < 0:
            raise negative_error(e.BadAmount, amount, purpose="certificate retire")
        self._mark()
        self.led.transact_logs(
            self.contract, "retire", [vintage, amount], sender=holder,
            purpose=f"certificates: {holder} retires {amount} of {vintage}",
        )  # fmt: skip


class ChainDemandResponse(ChainClient):
    """:class:`~twin.market.demand_response.DemandResponseLedger` on chain
    (``DemandResponse.sol``): posters (TSO, DSO) post events, the DSO records meters and
    settles, device owners commit."""

    def __init__(self, led: ChainLedger, contract: Contract, *, mint_funds: bool = True) -> None:
        self.led = led
        self.contract = contract
        self.mint_funds = mint_funds
        self.baseline_n = int(contract.functions.baselineN().call())
        self._approved: set[int] = set()
        self._interval: dict[int, int] = {}  # event id -> interval (tags its transactions)

    @classmethod
    def deploy(
        cls, led: ChainLedger, *, baseline_n: int = 4, posters: Collection[int] = (DSO_ACCOUNT,),
        mint_funds: bool = True,
    ) -> ChainDemandResponse:
        if baseline_n <= 0:
            raise ValueError("baseline_n must be > 0")
        addrs = [led.address_of(p) for p in sorted(posters)]
        return cls(
            led,
            deploy_contract(
                led, "DemandResponse", led.token.address, led.registry.address, addrs, baseline_n
            ),
            mint_funds=mint_funds,
        )

    @property
    def escrow(self) -> int:
        return int(self.contract.functions.escrow().call())

    def post_event(
        self, *, event_id: int, poster: int, interval: int, target_wh: int, price_per_mwh: int
    ) -> DREvent:
        budget = payment(target_wh, price_per_mwh) if target_wh > 0 and price_per_mwh > 0 else 0
        self._mark()
        fund(
            self.led, account=poster, amount=budget, spender=self.contract,
            approved=self._approved, mint=self.mint_funds,
        )  # fmt: skip
        try:
            logs = self.led.transact_logs(
                self.contract, "postEvent", [event_id, interval, target_wh, price_per_mwh],
                sender=poster, interval=interval, purpose=f"post DR event {event_id}",
            )  # fmt: skip
        except e.BadAmount as exc:  # the ABI's uint256 shows a negative target as 2**256 - x
            if exc.values["amount"] >= 2**255:
                raise negative_error(e.BadAmount, target_wh, purpose=exc.purpose or "") from None
            raise
        (ev,) = decode_events(self.led, self.contract, logs, "EventPosted")
        self._interval[event_id] = interval
        return DREvent(event_id, poster, interval, ev["targetWh"], ev["price"], ev["budget"])

    def commit(self, *, event_id: int, device_id: int, owner: int, reduction_wh: int) -> None:
        self._mark()
        self.led.transact_logs(
            self.contract, "commit", [event_id, device_id, reduction_wh], sender=owner,
            interval=self._interval.get(event_id), purpose=f"DR event {event_id}: device {device_id} commits {reduction_wh} Wh",
        )  # fmt: skip

    def record_meter(self, device_id: int, interval: int, metered_wh: int) -> None:
        self.record_meters(interval, {device_id: metered_wh})

    def record_meters(self, interval: int, metered_wh: Mapping[int, int]) -> None:
        """Readings of one interval, all devices in one transaction (none: nothing sent)."""
        if not metered_wh:
            return
        devices = sorted(metered_wh)
        self._mark()
        self.led.transact_logs(
            self.contract, "recordMeters", [interval, devices, [metered_wh[d] for d in devices]],
            sender=DSO_ACCOUNT, interval=interval,
            purpose=f"DR meters of interval {interval} ({len(devices)} devices)",
        )  # fmt: skip

    def baseline_wh(self, device_id: int, interval: int) -> int:
        return int(self.contract.functions.baselineWh(device_id, interval).call())

    def settle_event(
        self, event_id: int, metered_wh: Mapping[int, int]
    ) -> tuple[list[DRPayout], int]:
        devices = sorted(metered_wh)
        self._mark()
        logs = self.led.transact_logs(
            self.contract, "settleEvent", [event_id, devices, [metered_wh[d] for d in devices]],
            sender=DSO_ACCOUNT, interval=self._interval.get(event_id),
            purpose=f"settle DR event {event_id}",
        )  # fmt: skip
        payouts = sorted(
            (
                DRPayout(
                    event_id,
                    v["device"],
                    v["owner"],
                    v["baselineWh"],
                    v["meteredWh"],
                    v["reductionWh"],
                    v["amount"],
                )
                for v in decode_events(self.led, self.contract, logs, "Compensated")
            ),
            key=lambda p: p.device_id,
        )
        (settled,) = decode_events(self.led, self.contract, logs, "EventSettled")
        return payouts, int(settled["refund"])
