"""The ``GreenCurrency`` contract
behind the methods of :class:`~twin.services.green_currency.rules.GreenCurrency`."""

from __future__ import annotations

from collections.abc import Sequence

from web3.contract import Contract

from twin.chain.clients import READINGS_CHUNK, CheckedClient, View, not_negative
from twin.chain.ledger import ChainLedger
from twin.market.types import OPERATOR_ACCOUNT
from twin.services.green_currency.rules import DR, RENEWABLE, GreenAward, check_rates


class ChainGreenCurrency(CheckedClient):
    """:class:`~twin.services.green_currency.rules.GreenCurrency` on chain (``GreenCurrency.sol``)."""

    total_supply = View("totalSupply")
    minted = View("minted")
    burned = View("burned")

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
        not_negative(amount, "green currency: transfer")
        self._send(
            "transfer", [self.led.address_of(to), amount], sender=sender,
            purpose=f"green currency: {sender} sends {amount} to {to}",
        )  # fmt: skip

    def approve(self, owner: int, spender: int, amount: int) -> None:
        not_negative(amount, "green currency: approve")
        self._send(
            "approve", [self.led.address_of(spender), amount], sender=owner,
            purpose=f"green currency: {owner} approves {spender} for {amount}",
        )  # fmt: skip

    def transfer_from(self, spender: int, owner: int, to: int, amount: int) -> None:
        not_negative(amount, "green currency: transfer_from")
        self._send(
            "transferFrom", [self.led.address_of(owner), self.led.address_of(to), amount],
            sender=spender,
            purpose=f"green currency: {spender} moves {amount} of {owner}'s to {to}",
        )  # fmt: skip

    def burn(self, holder: int, amount: int) -> None:
        not_negative(amount, "green currency: burn")
        self._send(
            "burn", [amount], sender=holder, purpose=f"green currency: {holder} burns {amount}"
        )
