"""The ``GreenTokenExchange`` contract
behind the methods of :class:`~twin.services.green_exchange.rules.GreenExchange`."""

from __future__ import annotations

from collections.abc import Sequence

from web3.contract import Contract

from twin.chain.clients import READINGS_CHUNK, CheckedClient, View, not_negative
from twin.chain.ledger import ChainLedger
from twin.market.types import DSO_ACCOUNT
from twin.services.green_exchange.rules import GreenDelivery, check_prices


class ChainGreenExchange(CheckedClient):
    """:class:`~twin.services.green_exchange.rules.GreenExchange` on chain (``GreenTokenExchange.sol``)."""

    total_supply = View("totalSupply")
    minted = View("minted")
    redeemed = View("redeemed")
    delivered_wh = View("deliveredWh")
    paid = View("paid")
    received = View("received")

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
        not_negative(tokens, "green exchange: sell")
        logs = self._send(
            "sell", [tokens], sender=account,
            purpose=f"green exchange: account {account} sells {tokens} tokens to the DSO",
        )  # fmt: skip
        (ev,) = self._events(logs, "Traded")
        return int(ev["amount"])

    def buy(self, account: int, tokens: int) -> int:
        not_negative(tokens, "green exchange: buy")
        self._approve(account)
        logs = self._send(
            "buy", [tokens], sender=account,
            purpose=f"green exchange: account {account} buys {tokens} tokens from the DSO",
        )  # fmt: skip
        (ev,) = self._events(logs, "Traded")
        return int(ev["amount"])

    def transfer(self, sender: int, to: int, tokens: int) -> None:
        not_negative(tokens, "green exchange: transfer")
        self._send(
            "transfer", [self.led.address_of(to), tokens], sender=sender,
            purpose=f"green exchange: {sender} sends {tokens} tokens to {to}",
        )  # fmt: skip

    def redeem(self, device_id: int, tokens: int, *, sender: int) -> None:
        not_negative(tokens, "green exchange: redeem")
        self._send(
            "redeem", [device_id, tokens], sender=sender,
            purpose=f"green exchange: device {device_id} redeems {tokens} tokens",
        )  # fmt: skip
