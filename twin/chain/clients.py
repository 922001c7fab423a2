"""The base of the market services' chain clients (``twin/services/<name>/chain.py``).

Each client rides on a :class:`~twin.chain.ledger.ChainLedger`: its transaction client
(:attr:`ChainLedger.tx`: node, accounts, sending, receipts, custom-error decoding and the
transaction table) and its settlement token. Accounts are the ledger's account indices;
money is the market's settlement token, minted by the operator where a reference simply
assumes it (revenue to distribute, an event's budget) — unless the client is made with
``mint_funds=False`` (a scenario run): then the payer's wallet must already hold the money
(withdrawn from the market), and nothing is minted. ``last_tx_hash`` is the hash of the
client's latest transaction (for result rows).

Shared here, not repeated per contract: :class:`ChainClient` (``last_tx_hash``, ``_send``,
``_uint``, ``_events``), :class:`CheckedClient` (deploy after the reference's checks,
approvals, chunked lists dry-run first), :class:`View` (a contract's uint read-out as an
attribute), :class:`ChainWallets` (the reference's :class:`~twin.market.wallets.Money` over
the settlement token), ``deploy_contract``, ``decode_events``, ``fund`` (= ``mint_to`` +
``approve_once``), ``negative_error``, ``not_negative`` and ``pre_send_error`` (the
reference's error, raised before sending).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, overload

from web3.contract import Contract

from twin.chain.abi import decode_event_logs
from twin.chain.compile import CompiledContracts
from twin.chain.ledger import ChainLedger
from twin.market import errors as e
from twin.market.types import OPERATOR_ACCOUNT

__all__ = [
    "READINGS_CHUNK",
    "ChainClient",
    "ChainWallets",
    "CheckedClient",
    "View",
    "approve_once",
    "decode_events",
    "deploy_contract",
    "fund",
    "mint_to",
    "negative_error",
    "not_negative",
    "pre_send_error",
]

#: Readings (exchange) or awards (currency) per transaction.
READINGS_CHUNK = 250

MAX_UINT = 2**256 - 1


def deploy_contract(
    led: ChainLedger,
    name: str,
    *args: Any,
    sender: int = OPERATOR_ACCOUNT,
    compiled: CompiledContracts | None = None,
) -> Contract:
    """Deploy one compiled contract (of ``compiled``, default the ledger's) from ``sender``
    (its gas is recorded in the transaction table); a constructor revert raises ChainRevert."""
    art = (compiled or led.compiled)[name]
    return led.tx.deploy(name, art.abi, art.bytecode, list(args), sender=sender)


def decode_events(
    led: ChainLedger, contract: Contract, logs: Sequence[Mapping[str, Any]], name: str
) -> list[dict[str, Any]]:
    """Decode the ``name`` events ``contract`` emitted (addresses -> account indices)."""
    return decode_event_logs(contract, logs, name, account_of=led.account_of)


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
            led.token, "approve", [spender.address, MAX_UINT], sender=account,
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



class ChainWallets:
    """Settlement-token wallets as :class:`~twin.market.wallets.Money` (plus ``mint``)."""

    def __init__(self, led: ChainLedger) -> None:
        self.led = led

    def balance_of(self, account: int) -> int:
        return self.led.wallet(account)

    def transfer(self, sender: int, to: int, amount: int) -> None:
        self.led.transact_logs(
            self.led.token, "transfer", [self.led.address_of(to), amount], sender=sender,
            purpose=f"wallet: {sender} pays {amount} to {to}",
        )  # fmt: skip

    def mint(self, account: int, amount: int) -> None:
        """The operator mints settlement tokens to the account's wallet."""
        mint_to(self.led, account=account, amount=amount)


def not_negative(value: int, purpose: str, error: type[e.MarketError] = e.BadAmount) -> None:
    """A negative value (which the ABI cannot carry) fails pre-send with the reference's error."""
    if value < 0:
        raise negative_error(error, value, purpose=purpose)


class View:
    """A read-only attribute: the contract's uint view ``fn()``, read on every access."""

    def __init__(self, fn: str) -> None:
        self.fn = fn

    @overload
    def __get__(self, client: None, owner: type[Any]) -> View: ...
    @overload
    def __get__(self, client: ChainClient, owner: type[Any] | None = None) -> int: ...
    def __get__(self, client: ChainClient | None, owner: type[Any] | None = None) -> int | View:
        return self if client is None else client._uint(self.fn)


class CheckedClient(ChainClient):
    """A service contract's client: deploy after the reference's checks, approvals of the
    settlement token, chunked lists."""

    def __init__(self, led: ChainLedger, contract: Contract) -> None:
        self.led = led
        self.contract = contract
        self._approved: set[int] = set()

    @staticmethod
    def _deploy_checked(
        led: ChainLedger, name: str, *, check: Callable[[], None], args: Sequence[Any]
    ) -> Contract:
        """Deploy ``name`` once ``check`` (the reference's) passes; its error is raised
        pre-send."""
        try:
            check()
        except e.MarketError as exc:
            raise pre_send_error(exc, purpose=f"deploy {name}") from None
        return deploy_contract(led, name, *args)

    def _approve(self, account: int) -> None:
        approve_once(self.led, account=account, spender=self.contract, approved=self._approved)

    def _send_chunked(
        self,
        fn: str,
        head: list[Any],
        rows: Sequence[tuple[int, int]],
        *,
        sender: int,
        purpose: str,
        chunk: int,
        interval: int | None = None,
    ) -> list[dict[str, Any]]:
        """``_mark``, then ``fn(*head, ids, values)`` in chunks of ``chunk`` rows; the logs of
        every chunk."""
        self._mark()
        if chunk <= 0:
            raise ValueError("chunk must be > 0")
        led, contract = self.led, self.contract
        ids = [r[0] for r in rows]
        values = [r[1] for r in rows]
        if len(rows) > chunk:  # dry run of the whole list: fail before sending anything
            led.tx.dry_run(contract, fn, [*head, ids, values], sender=sender, purpose=purpose)
        logs: list[dict[str, Any]] = []
        for start in range(0, max(len(rows), 1), chunk):
            logs += led.transact_logs(
                contract, fn, [*head, ids[start : start + chunk], values[start : start + chunk]],
                sender=sender, interval=interval, purpose=purpose,
            )  # fmt: skip
        return logs
