"""The ``GreenCertificate`` contract
behind the methods of :class:`~twin.services.certificates.rules.CertificateLedger`."""

from __future__ import annotations

from collections import defaultdict

from web3.contract import Contract

from twin.chain.clients import ChainClient, decode_events, deploy_contract, negative_error
from twin.chain.ledger import ChainLedger
from twin.market import errors as e
from twin.market.types import OPERATOR_ACCOUNT


class ChainCertificates(ChainClient):
    """:class:`~twin.services.certificates.rules.CertificateLedger` on chain (``GreenCertificate.sol``).

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
