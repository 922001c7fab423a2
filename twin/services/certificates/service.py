"""Green certificates in a scenario run: the run hooks (rules: :mod:`.rules`, chain: :mod:`.chain`).

**Certificates.** After the settlement of ``k``, the interval's renewable trades (PV
sellers, energy after curtailment) are certified on metered delivery (``min(traded,
metered injection)``, the seller's Wh remainder carried to its next trade, never rounded
up): one certificate per kWh, vintage ``k``, to the trade's buyer. On chain the contract
reads the settled market itself; a reference ledger computes the same allocation (the
per-trade rows) and the run stops if the chain ever disagrees. Each buyer then retires from
the new vintage what brings its retirements to ``floor(received so far * retire_share)``
(never more than the vintage gave it, as ``retire_share <= 1``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twin.market.types import SettlementRow, Trade
from twin.services.base import MarketService, ServiceContext, last_tx
from twin.services.certificates.rules import CertificateLedger

__all__ = ["CertificateService"]


def _chain() -> Any:
    from twin.services.certificates.chain import ChainCertificates

    return ChainCertificates


class CertificateService(MarketService):
    name = "certificates"
    tables = ("certificates",)

    def __init__(self, ctx: ServiceContext, *, retire_share: float) -> None:
        super().__init__()
        self.ctx = ctx
        self.retire_share = retire_share
        self.ref = CertificateLedger()  # the allocation (per-trade rows) on both ledgers
        self._received: dict[int, int] = {}  # holder -> certificates received so far
        self._retired: dict[int, int] = {}  # holder -> retired so far
        # the chain contract reads the settled market itself; the reference allocation is
        # computed on both ledgers and must agree with it
        self.chain: Any = ctx.backend("GreenCertificate", reference=lambda: None,
                                      chain=lambda: _chain().deploy(ctx.ledger))

    def on_settled(self, *, interval: int, trades: Sequence[Trade],
                   rows: Sequence[SettlementRow], metered_wh: Mapping[int, int]) -> None:
        if not trades:
            return
        minted = self.ref.issue(interval, trades, metered_wh, self.ctx.devices)
        delivered = [d for d in self.ref.last_issue if d.delivered_wh > 0]
        if not delivered:
            return
        backend = self.ref
        if self.chain is not None:
            got = self.chain.issue(interval)
            if got != minted:
                raise RuntimeError(f"certificates of interval {interval}: the chain minted "
                                   f"{got}, the reference allocation {minted}")
            backend = self.chain
        tx = last_tx(backend)
        time_s = interval * self.ctx.interval_s
        for d in delivered:
            self.record("certificates", {
                "time_s": time_s, "interval": interval, "vintage": interval, "action": "issued",
                "trade_id": d.trade_id, "seller_device": d.seller_device, "seller": d.seller,
                "buyer_device": d.buyer_device, "holder": d.buyer,
                "delivered_wh": d.delivered_wh, "count": d.count, "tx_hash": tx})
        for holder, n in sorted(minted.items()):
            self._received[holder] = got_so_far = self._received.get(holder, 0) + n
            r = int(got_so_far * self.retire_share) - self._retired.get(holder, 0)
            if r <= 0:
                continue
            self._retired[holder] = self._retired.get(holder, 0) + r
            if self.chain is not None:
                self.chain.retire(holder, interval, r)
            self.ref.retire(holder, interval, r)
            self.record("certificates", {
                "time_s": time_s, "interval": interval, "vintage": interval, "action": "retired",
                "trade_id": None, "seller_device": None, "seller": None, "buyer_device": None,
                "holder": holder, "delivered_wh": 0, "count": r, "tx_hash": last_tx(backend)})

    def kpis(self) -> dict[str, float]:
        return {"certificates_outstanding": float(self.ref.outstanding())}
