"""The pilot mechanisms on chain: ``GreenTokenExchange``, ``ChargerTariffs`` and
``GreenCurrency`` behind the same methods (names, arguments, results, errors) as their
pure-Python references in :mod:`twin.market.green_exchange`,
:mod:`twin.market.charger_tariffs` and :mod:`twin.market.green_currency`.

Each client rides on a :class:`~twin.chain.ledger.ChainLedger` (node, accounts, error
decoding, transaction table). Money is the market's settlement token in the accounts'
wallets: :class:`ChainWallets` is the reference's :class:`~twin.market.wallets.Money` over
it. A client approves its contract for an account's settlement tokens the first time the
account pays through it (the DSO when the exchange is deployed).

Readings and awards go in transactions of at most ``chunk`` entries; when a list needs more
than one, the whole list is first dry-run as an ``eth_call`` (gas not bound by a block), so a
bad entry anywhere fails with the reference's error before anything is sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from web3.contract import Contract

from twin.chain.ledger import ChainLedger
from twin.chain.value import _Client, _events, _negative, deploy_contract
from twin.market import errors as e
from twin.market.charger_tariffs import ChargingSession, check_bounds
from twin.market.green_currency import DR, RENEWABLE, GreenAward, check_rates
from twin.market.green_exchange import GreenDelivery, check_prices
from twin.market.types import DSO_ACCOUNT, OPERATOR_ACCOUNT

__all__ = [
    "READINGS_CHUNK",
    "ChainChargerTariffs",
    "ChainGreenCurrency",
    "ChainGreenExchange",
    "ChainWallets",
]

_MAX_UINT = 2**256 - 1
_DRY_RUN_GAS = 200_000_000
#: Readings (exchange) or awards (currency) per transaction.
READINGS_CHUNK = 250


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
        self.led.transact_logs(
            self.led.token, "mint", [self.led.address_of(account), amount],
            sender=OPERATOR_ACCOUNT, purpose=f"mint {amount} to account {account}",
        )  # fmt: skip


def _approve(led: ChainLedger, account: int, spender: Contract, approved: set[int]) -> None:
    if account not in approved:
        led.transact_logs(
            led.token, "approve", [spender.address, _MAX_UINT], sender=account,
            purpose=f"account {account} approves {spender.address}",
        )  # fmt: skip
        approved.add(account)


def _chunked(
    led: ChainLedger,
    contract: Contract,
    fn: str,
    head: list[Any],
    rows: Sequence[tuple[int, int]],
    *,
    sender: int,
    purpose: str,
    chunk: int,
    interval: int | None = None,
) -> list[dict[str, Any]]:
    """Send ``fn(*head, ids, values)`` in chunks of ``chunk`` rows; logs of every chunk."""
    if chunk <= 0:
        raise ValueError("chunk must be > 0")
    ids = [r[0] for r in rows]
    values = [r[1] for r in rows]
    if len(rows) > chunk:  # dry run of the whole list: fail before sending anything
        tx = {
            "from": led.address_of(sender), "to": contract.address,
            "data": led._encode(contract, fn, [*head, ids, values]), "gas": hex(_DRY_RUN_GAS),
        }  # fmt: skip
        out = led._rpc("eth_call", [tx, "latest"])
        if "error" in out:
            led._raise_revert(out["error"], purpose=purpose, tx_hash=None, error_context=None)
    logs: list[dict[str, Any]] = []
    for start in range(0, max(len(rows), 1), chunk):
        logs += led.transact_logs(
            contract, fn, [*head, ids[start : start + chunk], values[start : start + chunk]],
            sender=sender, interval=interval, purpose=purpose,
        )  # fmt: skip
    return logs


def _uint(contract: Contract, fn: str, *args: Any) -> int:
    return int(getattr(contract.functions, fn)(*args).call())


class ChainGreenExchange(_Client):
    """:class:`~twin.market.green_exchange.GreenExchange` on chain (``GreenTokenExchange.sol``)."""

    def __init__(self, led: ChainLedger, contract: Contract) -> None:
        self.led = led
        self.contract = contract
        self.buy_price_per_mwh = _uint(contract, "buyPricePerMwh")
        self.sell_price_per_mwh = _uint(contract, "sellPricePerMwh")
        self.dso = DSO_ACCOUNT
        self._approved: set[int] = set()

    @classmethod
    def deploy(
        cls, led: ChainLedger, *, buy_price_per_mwh: int, sell_price_per_mwh: int
    ) -> ChainGreenExchange:
        try:
            check_prices(buy_price_per_mwh, sell_price_per_mwh)
        except e.BadPrice as exc:
            raise _pre_send(exc, "deploy GreenTokenExchange") from None
        c = deploy_contract(
            led, "GreenTokenExchange", led.token.address, led.registry.address,
            buy_price_per_mwh, sell_price_per_mwh,
        )  # fmt: skip
        out = cls(led, c)
        _approve(led, DSO_ACCOUNT, c, out._approved)
        return out

    # --- read-outs --------------------------------------------------------------------
    def balance_of(self, account: int) -> int:
        return _uint(self.contract, "balanceOf", self.led.address_of(account))

    @property
    def total_supply(self) -> int:
        return _uint(self.contract, "totalSupply")

    @property
    def minted(self) -> int:
        return _uint(self.contract, "minted")

    @property
    def redeemed(self) -> int:
        return _uint(self.contract, "redeemed")

    @property
    def delivered_wh(self) -> int:
        return _uint(self.contract, "deliveredWh")

    @property
    def paid(self) -> int:
        return _uint(self.contract, "paid")

    @property
    def received(self) -> int:
        return _uint(self.contract, "received")

    def carry_wh(self, device_id: int) -> int:
        return _uint(self.contract, "carryWh", device_id)

    def uncovered_wh(self, device_id: int) -> int:
        return _uint(self.contract, "uncoveredWh", device_id)

    def green_supplied_wh(self, device_id: int) -> int:
        return _uint(self.contract, "greenSuppliedWh", device_id)

    # --- transactions -----------------------------------------------------------------
    def record_meters(
        self,
        interval: int,
        readings: Sequence[tuple[int, int]],
        *,
        sender: int = DSO_ACCOUNT,
        chunk: int = READINGS_CHUNK,
    ) -> list[GreenDelivery]:
        self._mark()
        logs = _chunked(
            self.led, self.contract, "recordMeters", [interval], readings, sender=sender,
            purpose=f"green exchange: meters of interval {interval}", chunk=chunk,
            interval=interval,
        )  # fmt: skip
        return [
            GreenDelivery(v["interval"], v["device"], v["owner"], v["injectedWh"], v["tokens"])
            for v in _events(self.led, self.contract, logs, "GreenDelivered")
        ]

    def sell(self, account: int, tokens: int) -> int:
        if tokens < 0:
            raise _negative(e.BadAmount, tokens, "green exchange: sell")
        self._mark()
        logs = self.led.transact_logs(
            self.contract, "sell", [tokens], sender=account,
            purpose=f"green exchange: account {account} sells {tokens} tokens to the DSO",
        )  # fmt: skip
        (ev,) = _events(self.led, self.contract, logs, "Traded")
        return int(ev["amount"])

    def buy(self, account: int, tokens: int) -> int:
        if tokens < 0:
            raise _negative(e.BadAmount, tokens, "green exchange: buy")
        _approve(self.led, account, self.contract, self._approved)
        self._mark()
        logs = self.led.transact_logs(
            self.contract, "buy", [tokens], sender=account,
            purpose=f"green exchange: account {account} buys {tokens} tokens from the DSO",
        )  # fmt: skip
        (ev,) = _events(self.led, self.contract, logs, "Traded")
        return int(ev["amount"])

    def transfer(self, sender: int, to: int, tokens: int) -> None:
        if tokens < 0:
            raise _negative(e.BadAmount, tokens, "green exchange: transfer")
        self._mark()
        self.led.transact_logs(
            self.contract, "transfer", [self.led.address_of(to), tokens], sender=sender,
            purpose=f"green exchange: {sender} sends {tokens} tokens to {to}",
        )  # fmt: skip

    def redeem(self, device_id: int, tokens: int, *, sender: int) -> None:
        if tokens < 0:
            raise _negative(e.BadAmount, tokens, "green exchange: redeem")
        self._mark()
        self.led.transact_logs(
            self.contract, "redeem", [device_id, tokens], sender=sender,
            purpose=f"green exchange: device {device_id} redeems {tokens} tokens",
        )  # fmt: skip


class ChainChargerTariffs(_Client):
    """:class:`~twin.market.charger_tariffs.ChargerTariffs` on chain (``ChargerTariffs.sol``)."""

    def __init__(self, led: ChainLedger, contract: Contract) -> None:
        self.led = led
        self.contract = contract
        self.tariff_min_per_mwh = _uint(contract, "tariffMin")
        self.tariff_max_per_mwh = _uint(contract, "tariffMax")
        self.meter_operator = DSO_ACCOUNT
        self._approved: set[int] = set()

    @classmethod
    def deploy(
        cls, led: ChainLedger, *, tariff_min_per_mwh: int, tariff_max_per_mwh: int
    ) -> ChainChargerTariffs:
        try:
            check_bounds(tariff_min_per_mwh, tariff_max_per_mwh)
        except e.BadPrice as exc:
            raise _pre_send(exc, "deploy ChargerTariffs") from None
        c = deploy_contract(
            led, "ChargerTariffs", led.token.address, led.registry.address,
            tariff_min_per_mwh, tariff_max_per_mwh,
        )  # fmt: skip
        return cls(led, c)

    # --- read-outs --------------------------------------------------------------------
    def tariff(self, charger: int) -> int | None:
        is_set, price = self.contract.functions.tariffs(charger).call()
        return int(price) if is_set else None

    def escrow(self, driver: int) -> tuple[int, int]:
        addr = self.led.address_of(driver)
        return _uint(self.contract, "freeOf", addr), _uint(self.contract, "lockedOf", addr)

    @property
    def holdings(self) -> int:
        return int(self.led.token.functions.balanceOf(self.contract.address).call())

    def session(self, session_id: int) -> ChargingSession:
        if session_id < 0:
            raise _negative(e.UnknownSession, session_id, "charger tariffs: session")
        if session_id >= _uint(self.contract, "sessionCount"):
            raise e.UnknownSession(session_id)
        return self._session(session_id, self.contract.functions.session(session_id).call())

    def _session(self, session_id: int, s: Sequence[Any]) -> ChargingSession:
        charger, is_open, owner, driver, price, max_wh, metered, locked, amount = s
        return ChargingSession(
            session_id=session_id, charger=int(charger), owner=int(self.led.account_of(owner)),
            driver=int(self.led.account_of(driver)), price_per_mwh=int(price),
            max_wh=int(max_wh), locked=int(locked), open=bool(is_open),
            metered_wh=int(metered), amount=int(amount),
        )  # fmt: skip

    def open_session(self, charger: int) -> int | None:
        is_open, sid = self.contract.functions.openSession(charger).call()
        return int(sid) if is_open else None

    # --- transactions -----------------------------------------------------------------
    def set_tariff(self, charger: int, price_per_mwh: int, *, sender: int) -> None:
        self._mark()
        self.led.transact_logs(
            self.contract, "setTariff", [charger, price_per_mwh], sender=sender,
            purpose=f"charger {charger}: owner {sender} sets tariff {price_per_mwh}",
        )  # fmt: skip

    def deposit(self, driver: int, amount: int) -> None:
        if amount < 0:
            raise _negative(e.BadAmount, amount, "charger tariffs: deposit")
        _approve(self.led, driver, self.contract, self._approved)
        self._mark()
        self.led.transact_logs(
            self.contract, "deposit", [amount], sender=driver,
            purpose=f"charger tariffs: driver {driver} deposits {amount}",
        )  # fmt: skip

    def withdraw(self, driver: int, amount: int) -> None:
        if amount < 0:
            raise _negative(e.BadAmount, amount, "charger tariffs: withdraw")
        self._mark()
        self.led.transact_logs(
            self.contract, "withdraw", [amount], sender=driver,
            purpose=f"charger tariffs: driver {driver} withdraws {amount}",
        )  # fmt: skip

    def start_session(self, charger: int, max_wh: int, *, driver: int) -> ChargingSession:
        self._mark()
        logs = self.led.transact_logs(
            self.contract, "startSession", [charger, max_wh], sender=driver,
            purpose=f"charger {charger}: driver {driver} starts a session (max {max_wh} Wh)",
        )  # fmt: skip
        (ev,) = _events(self.led, self.contract, logs, "SessionStarted")
        return ChargingSession(
            session_id=int(ev["sessionId"]), charger=int(ev["charger"]), owner=int(ev["owner"]),
            driver=int(ev["driver"]), price_per_mwh=int(ev["price"]), max_wh=int(ev["maxWh"]),
            locked=int(ev["locked"]), open=True, metered_wh=0, amount=0,
        )  # fmt: skip

    def end_session(
        self, session_id: int, metered_wh: int, *, sender: int = DSO_ACCOUNT
    ) -> ChargingSession:
        if session_id < 0:
            raise _negative(e.UnknownSession, session_id, "charger tariffs: end session")
        self._mark()
        self.led.transact_logs(
            self.contract, "endSession", [session_id, metered_wh], sender=sender,
            purpose=f"charger tariffs: end session {session_id} at {metered_wh} Wh",
        )  # fmt: skip
        return self.session(session_id)


class ChainGreenCurrency(_Client):
    """:class:`~twin.market.green_currency.GreenCurrency` on chain (``GreenCurrency.sol``)."""

    def __init__(self, led: ChainLedger, contract: Contract) -> None:
        self.led = led
        self.contract = contract
        self.rates = (_uint(contract, "rateRenewable"), _uint(contract, "rateDr"))
        self.operator = OPERATOR_ACCOUNT

    @classmethod
    def deploy(
        cls, led: ChainLedger, *, tokens_per_kwh_renewable: int, tokens_per_kwh_dr: int
    ) -> ChainGreenCurrency:
        try:
            check_rates(tokens_per_kwh_renewable, tokens_per_kwh_dr)
        except e.BadAmount as exc:
            raise _pre_send(exc, "deploy GreenCurrency") from None
        c = deploy_contract(
            led, "GreenCurrency", led.registry.address, led.address_of(OPERATOR_ACCOUNT),
            tokens_per_kwh_renewable, tokens_per_kwh_dr,
        )  # fmt: skip
        return cls(led, c)

    @property
    def total_supply(self) -> int:
        return _uint(self.contract, "totalSupply")

    @property
    def minted(self) -> int:
        return _uint(self.contract, "minted")

    @property
    def burned(self) -> int:
        return _uint(self.contract, "burned")

    def balance_of(self, account: int) -> int:
        return _uint(self.contract, "balanceOf", self.led.address_of(account))

    def allowance(self, owner: int, spender: int) -> int:
        return _uint(
            self.contract, "allowance", self.led.address_of(owner), self.led.address_of(spender)
        )

    def carry(self, reason: int, device_id: int) -> int:
        return _uint(self.contract, "carry", reason, device_id)

    def reward_renewable(
        self,
        interval: int,
        awards: Sequence[tuple[int, int]],
        *,
        sender: int = OPERATOR_ACCOUNT,
        chunk: int = READINGS_CHUNK,
    ) -> list[GreenAward]:
        return self._reward(RENEWABLE, interval, awards, sender, chunk, interval=interval)

    def reward_dr(
        self,
        event_id: int,
        awards: Sequence[tuple[int, int]],
        *,
        sender: int = OPERATOR_ACCOUNT,
        chunk: int = READINGS_CHUNK,
    ) -> list[GreenAward]:
        return self._reward(DR, event_id, awards, sender, chunk)

    def _reward(
        self,
        reason: int,
        ref: int,
        awards: Sequence[tuple[int, int]],
        sender: int,
        chunk: int,
        *,
        interval: int | None = None,
    ) -> list[GreenAward]:
        what = "renewable consumption" if reason == RENEWABLE else "demand response"
        self._mark()
        logs = _chunked(
            self.led, self.contract, "reward", [reason, ref], awards, sender=sender,
            purpose=f"green currency: {what} awards of {ref}", chunk=chunk, interval=interval,
        )  # fmt: skip
        return [
            GreenAward(v["reason"], v["ref"], v["device"], v["owner"], v["energyWh"], v["amount"])
            for v in _events(self.led, self.contract, logs, "Awarded")
        ]

    def transfer(self, sender: int, to: int, amount: int) -> None:
        if amount < 0:
            raise _negative(e.BadAmount, amount, "green currency: transfer")
        self._mark()
        self.led.transact_logs(
            self.contract, "transfer", [self.led.address_of(to), amount], sender=sender,
            purpose=f"green currency: {sender} sends {amount} to {to}",
        )  # fmt: skip

    def approve(self, owner: int, spender: int, amount: int) -> None:
        if amount < 0:
            raise _negative(e.BadAmount, amount, "green currency: approve")
        self._mark()
        self.led.transact_logs(
            self.contract, "approve", [self.led.address_of(spender), amount], sender=owner,
            purpose=f"green currency: {owner} approves {spender} for {amount}",
        )  # fmt: skip

    def transfer_from(self, spender: int, owner: int, to: int, amount: int) -> None:
        if amount < 0:
            raise _negative(e.BadAmount, amount, "green currency: transfer_from")
        self._mark()
        self.led.transact_logs(
            self.contract, "transferFrom",
            [self.led.address_of(owner), self.led.address_of(to), amount], sender=spender,
            purpose=f"green currency: {spender} moves {amount} of {owner}'s to {to}",
        )  # fmt: skip

    def burn(self, holder: int, amount: int) -> None:
        if amount < 0:
            raise _negative(e.BadAmount, amount, "green currency: burn")
        self._mark()
        self.led.transact_logs(
            self.contract, "burn", [amount], sender=holder,
            purpose=f"green currency: {holder} burns {amount}",
        )  # fmt: skip


def _pre_send(exc: e.MarketError, purpose: str) -> e.MarketError:
    """The reference's error, raised by a check before anything was sent."""
    exc.purpose = purpose
    exc.pre_send = True
    exc.args = (str(exc),)
    return exc
