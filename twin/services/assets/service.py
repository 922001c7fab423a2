"""Tokenized assets in a scenario run: the run hooks (rules: :mod:`.rules`, chain: :mod:`.chain`).

**Assets.** An AssetToken per tokenized agent, issued to the device owner's account and
split evenly among ``investors`` new accounts (the first ``shares % investors`` get one
more). The asset's market revenue of each interval — its settlement credit: sales on the
market plus feed-in paid by the DSO, capped by its free balance — is withdrawn by its owner
and distributed pro rata; after the last interval every holder pulls its claim.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twin.market.types import SettlementRow, Trade
from twin.services.assets.rules import AssetLedger
from twin.services.assets.spec import AssetServiceSpec
from twin.services.base import MarketService, ServiceContext, last_tx

__all__ = ["AssetService"]


def _chain() -> Any:
    from twin.services.assets.chain import ChainAssetToken

    return ChainAssetToken


class AssetService(MarketService):
    name = "assets"
    tables = ("asset_distributions", "asset_claims")

    def __init__(self, ctx: ServiceContext, *, spec: AssetServiceSpec, asset_id: int,
                 investors: list[int]) -> None:
        super().__init__()
        self.ctx = ctx
        self.agent = spec.agent
        self.asset_id = asset_id
        self.device = ctx.agent_devices[spec.agent]
        self.issuer = ctx.devices[self.device].owner
        self.contract = f"AssetToken:{spec.agent}"
        self.backend: Any = ctx.backend(
            self.contract,
            reference=lambda: AssetLedger(asset_id=asset_id, issuer=self.issuer,
                                          total_shares=spec.shares),
            chain=lambda: _chain().deploy(ctx.ledger, asset_id=asset_id, issuer=self.issuer,
                                          total_shares=spec.shares, mint_funds=False))
        base, extra = divmod(spec.shares, len(investors))
        self.holders = [self.issuer, *investors]
        self.shares = {self.issuer: 0}
        for i, inv in enumerate(investors):
            n = base + (1 if i < extra else 0)
            self.backend.transfer(self.issuer, inv, n)
            self.shares[inv] = n

    def on_settled(self, *, interval: int, trades: Sequence[Trade],
                   rows: Sequence[SettlementRow], metered_wh: Mapping[int, int]) -> None:
        revenue = sum(max(r.trade_amount, 0) + max(r.imbalance_amount, 0)
                      for r in rows if r.device_id == self.device)
        if revenue <= 0:
            return
        amount = min(revenue, self.ctx.ledger.balance(self.issuer).free)
        tx = ""
        if amount > 0:
            self.ctx.rail.withdraw(self.issuer, amount)
            self.backend.distribute(amount, payer=self.issuer)
            self.ctx.rail.pay_in(self.contract, self.issuer, amount)
            tx = last_tx(self.backend)
        self.record("asset_distributions", {
            "time_s": interval * self.ctx.interval_s, "interval": interval, "asset": self.agent,
            "asset_id": self.asset_id, "device_id": self.device, "issuer": self.issuer,
            "revenue": revenue, "amount": amount, "tx_hash": tx})

    def finish(self, *, interval: int) -> None:
        time_s = (interval + 1) * self.ctx.interval_s
        for h in self.holders:
            owed = self.backend.claimable(h)
            amount, tx = 0, ""
            if owed > 0:
                amount = self.backend.claim(h)
                self.ctx.rail.pay_out(self.contract, h, amount)
                tx = last_tx(self.backend)
            self.record("asset_claims", {
                "time_s": time_s, "asset": self.agent, "asset_id": self.asset_id, "holder": h,
                "shares": self.shares[h], "amount": amount, "tx_hash": tx})
