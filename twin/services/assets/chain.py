"""The ``AssetToken`` contract
behind the methods of :class:`~twin.services.assets.rules.AssetLedger`."""

from __future__ import annotations

from web3.contract import Contract

from twin.chain.clients import ChainClient, decode_events, deploy_contract, fund, negative_error
from twin.chain.ledger import ChainLedger
from twin.market import errors as e
from twin.market.types import OPERATOR_ACCOUNT


class ChainAssetToken(ChainClient):
    """:class:`~twin.services.assets.rules.AssetLedger` on chain (``AssetToken.sol``)."""

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
