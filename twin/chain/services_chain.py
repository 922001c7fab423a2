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

The plumbing is shared, not repeated per contract: sending, uint views, event decoding,
minting and approvals come from :mod:`twin.chain.value` (:class:`~twin.chain.value.ChainClient`,
``mint_to``, ``approve_once``, ``negative_error``, ``pre_send_error``, ``deploy_contract``);
``_PilotClient`` adds the checked deploy and the chunked send; ``_View`` declares the
contracts' plain uint read-outs as attributes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, overload

from web3.contract import Contract

from twin.chain.ledger import ChainLedger
from twin.chain.value import (
    ChainClient,
    approve_once,
    deploy_contract,
    mint_to,
    negative_error,
    pre_send_error,
)
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
        mint_to(self.led, account=account, amount=amount)


def _not_negative(value: int, purpose: str, error: type[e.MarketError] = e.BadAmount) -> None:
    """A negative value (which the ABI cannot carry) fails pre-send with the reference's error."""
    if value < 0:
        raise negative_error(error, value, purpose=purpose)


class _View:
    """A read-only attribute: the contract's uint view ``fn()``, read on every access."""

    def __init__(self, fn: str) -> None:
        self.fn = fn

    @overload
    def __get__(self, client: None, owner: type[Any]) -> _View: ...
    @overload
    def __get__(self, client: ChainClient, owner: type[Any] | None = None) -> int: ...
    def __get__(self, client: ChainClient | None, owner: type[Any] | None = None) -> int | _View:
        return self if client is None else client._uint(self.fn)


class _PilotClient(ChainClient):
    """A pilot contract's client: deploy after the reference's checks, approvals of the
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


class ChainGreenExchange(_PilotClient):
    """:class:`~twin.market.green_exchange.GreenExchange` on chain (``GreenTokenExchange.sol``)."""

    total_supply = _View("totalSupply")
    minted = _View("minted")
    redeemed = _View("redeemed")
    delivered_wh = _View("deliveredWh")
    paid = _View("paid")
    received = _View("received")

    def __init__(self, led: ChainLedger, contract: Contract) -> None:
        super().__init__(led, contract)
        self.buy_price_per_mwh = self._uint("buyPricePerMwh")
        self.sell_price_per_mwh = self._uint("sellPricePerMwh")
        self.dso = DSO_ACCOUNT

    @classmethod
    def deploy(
        cls, led: ChainLedger, *, buy_price_per_mwh: int, sell_price_per_mwh: int
    ) -> ChainGreenExchange:
        out = cls(led, cls._deploy_checked(
            led, "GreenTokenExchange",
            check=lambda: check_prices(buy_price_per_mwh, sell_price_per_mwh),
            args=(led.token.address, led.registry.address, buy_price_per_mwh, sell_price_per_mwh),
        ))  # fmt: skip
        out._approve(DSO_ACCOUNT)
        return out

    # --- read-outs --------------------------------------------------------------------
    def balance_of(self, account: int) -> int:
        return self._uint("balanceOf", self.led.address_of(account))

    def carry_wh(self, device_id: int) -> int:
        return self._uint("carryWh", device_id)

    def uncovered_wh(self, device_id: int) -> int:
        return self._uint("uncoveredWh", device_id)

    def green_supplied_wh(self, device_id: int) -> int:
        return self._uint("greenSuppliedWh", device_id)

    # --- transactions -----------------------------------------------------------------
    def record_meters(
        self,
        interval: int,
        readings: Sequence[tuple[int, int]],
        *,
        sender: int = DSO_ACCOUNT,
        chunk: int = READINGS_CHUNK,
    ) -> list[GreenDelivery]:
        logs = self._send_chunked(
            "recordMeters", [interval], readings, sender=sender,
            purpose=f"green exchange: meters of interval {interval}", chunk=chunk,
            interval=interval,
        )  # fmt: skip
        return [
            GreenDelivery(v["interval"], v["device"], v["owner"], v["injectedWh"], v["tokens"])
            for v in self._events(logs, "GreenDelivered")
        ]

    def set_prices(self, buy_price_per_mwh: int, sell_price_per_mwh: int, *,
                   sender: int = DSO_ACCOUNT) -> None:
        """The DSO moves the token's prices (a market rate; errors as the reference)."""
        check_prices(buy_price_per_mwh, sell_price_per_mwh)
        self._send(
            "setPrices", [buy_price_per_mwh, sell_price_per_mwh], sender=sender,
            purpose=f"green exchange: prices {buy_price_per_mwh} / {sell_price_per_mwh} per MWh",
        )  # fmt: skip
        self.buy_price_per_mwh, self.sell_price_per_mwh = buy_price_per_mwh, sell_price_per_mwh

    def sell(self, account: int, tokens: int) -> int:
        _not_negative(tokens, "green exchange: sell")
        logs = self._send(
            "sell", [tokens], sender=account,
            purpose=f"green exchange: account {account} sells {tokens} tokens to the DSO",
        )  # fmt: skip
        (ev,) = self._events(logs, "Traded")
        return int(ev["amount"])

    def buy(self, account: int, tokens: int) -> int:
        _not_negative(tokens, "green exchange: buy")
        self._approve(account)
        logs = self._send(
            "buy", [tokens], sender=account,
            purpose=f"green exchange: account {account} buys {tokens} tokens from the DSO",
        )  # fmt: skip
        (ev,) = self._events(logs, "Traded")
        return int(ev["amount"])

    def transfer(self, sender: int, to: int, tokens: int) -> None:
        _not_negative(tokens, "green exchange: transfer")
        self._send(
            "transfer", [self.led.address_of(to), tokens], sender=sender,
            purpose=f"green exchange: {sender} sends {tokens} tokens to {to}",
        )  # fmt: skip

    def redeem(self, device_id: int, tokens: int, *, sender: int) -> None:
        _not_negative(tokens, "green exchange: redeem")
        self._send(
            "redeem", [device_id, tokens], sender=sender,
            purpose=f"green exchange: device {device_id} redeems {tokens} tokens",
        )  # fmt: skip


class ChainChargerTariffs(_PilotClient):
    """:class:`~twin.market.charger_tariffs.ChargerTariffs` on chain (``ChargerTariffs.sol``)."""

    def __init__(self, led: ChainLedger, contract: Contract) -> None:
        super().__init__(led, contract)
        self.tariff_min_per_mwh = self._uint("tariffMin")
        self.tariff_max_per_mwh = self._uint("tariffMax")
        self.meter_operator = DSO_ACCOUNT

    @classmethod
    def deploy(
        cls, led: ChainLedger, *, tariff_min_per_mwh: int, tariff_max_per_mwh: int
    ) -> ChainChargerTariffs:
        return cls(led, cls._deploy_checked(
            led, "ChargerTariffs",
            check=lambda: check_bounds(tariff_min_per_mwh, tariff_max_per_mwh),
            args=(led.token.address, led.registry.address, tariff_min_per_mwh, tariff_max_per_mwh),
        ))  # fmt: skip

    # --- read-outs --------------------------------------------------------------------
    def tariff(self, charger: int) -> int | None:
        is_set, price = self.contract.functions.tariffs(charger).call()
        return int(price) if is_set else None

    def escrow(self, driver: int) -> tuple[int, int]:
        addr = self.led.address_of(driver)
        return self._uint("freeOf", addr), self._uint("lockedOf", addr)

    @property
    def holdings(self) -> int:
        return int(self.led.token.functions.balanceOf(self.contract.address).call())

    def session(self, session_id: int) -> ChargingSession:
        _not_negative(session_id, "charger tariffs: session", e.UnknownSession)
        if session_id >= self._uint("sessionCount"):
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
        self._send(
            "setTariff", [charger, price_per_mwh], sender=sender,
            purpose=f"charger {charger}: owner {sender} sets tariff {price_per_mwh}",
        )  # fmt: skip

    def deposit(self, driver: int, amount: int) -> None:
        _not_negative(amount, "charger tariffs: deposit")
        self._approve(driver)
        self._send(
            "deposit", [amount], sender=driver,
            purpose=f"charger tariffs: driver {driver} deposits {amount}",
        )  # fmt: skip

    def withdraw(self, driver: int, amount: int) -> None:
        _not_negative(amount, "charger tariffs: withdraw")
        self._send(
            "withdraw", [amount], sender=driver,
            purpose=f"charger tariffs: driver {driver} withdraws {amount}",
        )  # fmt: skip

    def start_session(self, charger: int, max_wh: int, *, driver: int) -> ChargingSession:
        logs = self._send(
            "startSession", [charger, max_wh], sender=driver,
            purpose=f"charger {charger}: driver {driver} starts a session (max {max_wh} Wh)",
        )  # fmt: skip
        (ev,) = self._events(logs, "SessionStarted")
        return ChargingSession(
            session_id=int(ev["sessionId"]), charger=int(ev["charger"]), owner=int(ev["owner"]),
            driver=int(ev["driver"]), price_per_mwh=int(ev["price"]), max_wh=int(ev["maxWh"]),
            locked=int(ev["locked"]), open=True, metered_wh=0, amount=0,
        )  # fmt: skip

    def end_session(
        self, session_id: int, metered_wh: int, *, sender: int = DSO_ACCOUNT
    ) -> ChargingSession:
        _not_negative(session_id, "charger tariffs: end session", e.UnknownSession)
        self._send(
            "endSession", [session_id, metered_wh], sender=sender,
            purpose=f"charger tariffs: end session {session_id} at {metered_wh} Wh",
        )  # fmt: skip
        return self.session(session_id)


class ChainGreenCurrency(_PilotClient):
    """:class:`~twin.market.green_currency.GreenCurrency` on chain (``GreenCurrency.sol``)."""

    total_supply = _View("totalSupply")
    minted = _View("minted")
    burned = _View("burned")

    def __init__(self, led: ChainLedger, contract: Contract) -> None:
        super().__init__(led, contract)
        self.rates = (self._uint("rateRenewable"), self._uint("rateDr"))
        self.operator = OPERATOR_ACCOUNT

    @classmethod
    def deploy(
        cls, led: ChainLedger, *, tokens_per_kwh_renewable: int, tokens_per_kwh_dr: int
    ) -> ChainGreenCurrency:
        return cls(led, cls._deploy_checked(
            led, "GreenCurrency",
            check=lambda: check_rates(tokens_per_kwh_renewable, tokens_per_kwh_dr),
            args=(led.registry.address, led.address_of(OPERATOR_ACCOUNT),
                  tokens_per_kwh_renewable, tokens_per_kwh_dr),
        ))  # fmt: skip

    def balance_of(self, account: int) -> int:
        return self._uint("balanceOf", self.led.address_of(account))

    def allowance(self, owner: int, spender: int) -> int:
        return self._uint("allowance", self.led.address_of(owner), self.led.address_of(spender))

    def carry(self, reason: int, device_id: int) -> int:
        return self._uint("carry", reason, device_id)

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
        logs = self._send_chunked(
            "reward", [reason, ref], awards, sender=sender,
            purpose=f"green currency: {what} awards of {ref}", chunk=chunk, interval=interval,
        )  # fmt: skip
        return [
            GreenAward(v["reason"], v["ref"], v["device"], v["owner"], v["energyWh"], v["amount"])
            for v in self._events(logs, "Awarded")
        ]

    def transfer(self, sender: int, to: int, amount: int) -> None:
        _not_negative(amount, "green currency: transfer")
        self._send(
            "transfer", [self.led.address_of(to), amount], sender=sender,
            purpose=f"green currency: {sender} sends {amount} to {to}",
        )  # fmt: skip

    def approve(self, owner: int, spender: int, amount: int) -> None:
        _not_negative(amount, "green currency: approve")
        self._send(
            "approve", [self.led.address_of(spender), amount], sender=owner,
            purpose=f"green currency: {owner} approves {spender} for {amount}",
        )  # fmt: skip

    def transfer_from(self, spender: int, owner: int, to: int, amount: int) -> None:
        _not_negative(amount, "green currency: transfer_from")
        self._send(
            "transferFrom", [self.led.address_of(owner), self.led.address_of(to), amount],
            sender=spender,
            purpose=f"green currency: {spender} moves {amount} of {owner}'s to {to}",
        )  # fmt: skip

    def burn(self, holder: int, amount: int) -> None:
        _not_negative(amount, "green currency: burn")
        self._send(
            "burn", [amount], sender=holder, purpose=f"green currency: {holder} burns {amount}"
        )
