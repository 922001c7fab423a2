"""The network fee on chain: a plain transfer of the settlement token from the payer's
wallet to the DSO's (no contract of its own), recorded in the run's transaction table."""

from __future__ import annotations

from twin.chain.clients import ChainWallets
from twin.chain.ledger import ChainLedger
from twin.market import errors as e

__all__ = ["ChainNetworkFee"]


class ChainNetworkFee:
    """:class:`~twin.services.network_fee.rules.NetworkFeeLedger` over the settlement token."""

    def __init__(self, led: ChainLedger, *, dso: int) -> None:
        self.led = led
        self.dso = dso
        self.wallets = ChainWallets(led)
        self.collected = 0
        self.last_tx_hash = ""

    def pay(self, payer: int, amount: int) -> None:
        if amount < 0:
            raise e.BadAmount(amount, purpose=f"network fee of account {payer}")
        if amount:
            self.wallets.transfer(payer, self.dso, amount)
            self.collected += amount
            self.last_tx_hash = self.led.transactions[-1].tx_hash
