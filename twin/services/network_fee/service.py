"""The network fee in a scenario run: the run hooks (rules: :mod:`.rules`, chain: :mod:`.chain`).

After the settlement of interval ``k`` every device that bought on the local market owes the
DSO's published fee of ``k`` (``grid.tariff``) on the energy its trades delivered: its owner
withdraws the fee from its free market balance (as far as it goes) and pays it to the DSO's
wallet. One ``network_fees`` row per buying device and interval (status ``paid``, or
``short`` when the free balance did not cover the whole fee).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from twin.market.tariffs import NetworkTariff
from twin.market.types import DSO_ACCOUNT, SettlementRow, Trade
from twin.services.base import MarketService, RailMoney, ServiceContext, last_tx
from twin.services.network_fee.rules import NetworkFeeLedger, fees_due

if TYPE_CHECKING:
    from twin.scenario import Scenario

__all__ = ["NetworkFeeService"]


def _chain() -> Any:
    from twin.services.network_fee.chain import ChainNetworkFee

    return ChainNetworkFee


class NetworkFeeService(MarketService):
    name = "network_fee"
    tables = ("network_fees",)

    def __init__(self, ctx: ServiceContext, *, scenario: Scenario) -> None:
        super().__init__()
        self.ctx = ctx
        self.tariff = NetworkTariff.of(scenario)
        self.backend: Any = ctx.backend(
            "NetworkFee",
            reference=lambda: NetworkFeeLedger(money=RailMoney(ctx, "NetworkFee"), dso=DSO_ACCOUNT),
            chain=lambda: _chain()(ctx.ledger, dso=DSO_ACCOUNT))

    def on_settled(self, *, interval: int, trades: Sequence[Trade],
                   rows: Sequence[SettlementRow], metered_wh: Mapping[int, int]) -> None:
        fee = self.tariff.fee_per_mwh(interval)
        for due in fees_due(trades, devices=self.ctx.devices, fee_per_mwh=fee):
            amount = min(due.amount, int(self.ctx.ledger.balance(due.payer).free))
            tx = ""
            if amount > 0:
                self.ctx.rail.withdraw(due.payer, amount)
                self.backend.pay(due.payer, amount)
                tx = last_tx(self.backend)
            self.record("network_fees", {
                "time_s": interval * self.ctx.interval_s, "interval": interval,
                "device_id": due.device_id, "payer": due.payer, "energy_wh": due.energy_wh,
                "fee_per_mwh": due.fee_per_mwh, "due": due.amount, "amount": amount,
                "status": "paid" if amount == due.amount else "short", "tx_hash": tx})
