"""The value layer in a scenario run: demand response, green certificates, tokenized assets
(``market.services`` in the scenario), each on the reference or the on-chain classes.

**Demand response.** Every event the TSO calls for ``k + 1`` (at the agents' step ``k``) is
posted in the market's step ``k``, after the settlement of ``k``: the DSO withdraws the
budget ``payment(target, price)`` from its market balance and the DemandResponse ledger
escrows it; then each flexible device (households with a flexible load, EV chargers,
community batteries: ``ServiceContext.dr_devices``) commits the reduction the agents model
offers (:meth:`twin.agents.model.FeederModel.dr_offers`; households defer that much of
their flexible load). Every
step the flexible devices' meter readings are recorded (the baselines); when ``k + 1``
settles, the event settles on those readings: pay per device ``payment(min(max(baseline -
metered, 0), committed), price)`` to its owner's wallet, the rest back to the DSO's wallet.
An event the DSO cannot fund from its free balance is recorded as ``unfunded`` and not
posted; one posted for an interval past the run's end stays escrowed (row ``open``).

**Certificates.** After the settlement of ``k``, the interval's renewable trades (PV
sellers, energy after curtailment) are certified on metered delivery (``min(traded,
metered injection)``, the seller's Wh remainder carried to its next trade, never rounded
up): one certificate per kWh, vintage ``k``, to the trade's buyer. On chain the contract
reads the settled market itself; a reference ledger computes the same allocation (the
per-trade rows) and the run stops if the chain ever disagrees. Each buyer then retires from
the new vintage what brings its retirements to ``floor(received so far * retire_share)``
(never more than the vintage gave it, as ``retire_share <= 1``).

**Assets.** An AssetToken per tokenized agent, issued to the device owner's account and
split evenly among ``investors`` new accounts (the first ``shares % investors`` get one
more). The asset's market revenue of each interval — its settlement credit: sales on the
market plus feed-in paid by the DSO, capped by its free balance — is withdrawn by its owner
and distributed pro rata; after the last interval every holder pulls its claim.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twin.market.assets import AssetLedger
from twin.market.certificates import CertificateLedger
from twin.market.demand_response import DemandResponseLedger
from twin.market.services import MarketService, ServiceBuilder, ServiceContext
from twin.market.types import DSO_ACCOUNT, DeviceKind, SettlementRow, Trade
from twin.market.units import payment
from twin.scenario import AssetServiceSpec, Scenario

__all__ = ["VALUE_BUILDERS", "AssetService", "CertificateService", "DemandResponseService"]

FLEXIBLE = frozenset({DeviceKind.EV, DeviceKind.STORAGE})


def _tx(backend: Any) -> str:
    """Hash of the backend's latest transaction ('' for a reference)."""
    return str(getattr(backend, "last_tx_hash", ""))


@dataclass
class _Posted:
    event_id: int
    interval: int
    target_wh: int
    price_per_mwh: int
    budget: int
    commits: dict[int, int]
    tx_hash: str


class DemandResponseService(MarketService):
    name = "demand_response"
    tables = ("dr_events", "dr_payouts")

    def __init__(self, ctx: ServiceContext, *, baseline_intervals: int) -> None:
        super().__init__()
        self.ctx = ctx
        if ctx.chain:
            from twin.chain.value import ChainDemandResponse

            chain = ChainDemandResponse.deploy(ctx.ledger, baseline_n=baseline_intervals,
                                               posters=(DSO_ACCOUNT,), mint_funds=False)
            ctx.rail.register("DemandResponse", chain.contract.address)
            self.backend: Any = chain
        else:
            self.backend = DemandResponseLedger(baseline_n=baseline_intervals,
                                                posters={DSO_ACCOUNT})
            ctx.rail.register("DemandResponse")
        self.flexible = sorted(ctx.dr_devices or (d for d, dev in ctx.devices.items()
                                                  if dev.kind in FLEXIBLE))
        self._calls: list[tuple[Any, dict[int, int]]] = []
        self._posted: dict[int, _Posted] = {}  # by interval
        self._next_id = 1

    def on_dr_call(self, event: Any) -> None:
        self._calls.append((event, dict(self.ctx.dr_offers(event.interval))))

    def on_settled(self, *, interval: int, trades: Sequence[Trade],
                   rows: Sequence[SettlementRow], metered_wh: Mapping[int, int]) -> None:
        readings = {d: int(metered_wh[d]) for d in self.flexible if d in metered_wh}
        posted = self._posted.pop(interval, None)
        if posted is not None:
            self._settle(posted, readings)
        self.backend.record_meters(interval, readings)
        calls, self._calls = self._calls, []
        for event, offers in calls:
            self._post(event, offers)

    def _post(self, event: Any, offers: Mapping[int, int]) -> None:
        led, rail = self.ctx.ledger, self.ctx.rail
        event_id, self._next_id = self._next_id, self._next_id + 1
        k, target, price = int(event.interval), int(event.requested_wh), int(event.price_per_mwh)
        budget = payment(target, price)
        time_s = k * self.ctx.interval_s
        if led.balance(DSO_ACCOUNT).free < budget:
            self.record("dr_events", {
                "time_s": time_s, "interval": k, "event_id": event_id, "poster": DSO_ACCOUNT,
                "target_wh": target, "price_per_mwh": price, "budget": budget, "committed_wh": 0,
                "n_committed": 0, "paid": 0, "refund": 0, "reduction_wh": 0,
                "status": "unfunded", "tx_hash": ""})
            return
        rail.withdraw(DSO_ACCOUNT, budget)
        self.backend.post_event(event_id=event_id, poster=DSO_ACCOUNT, interval=k,
                                target_wh=target, price_per_mwh=price)
        rail.pay_in("DemandResponse", DSO_ACCOUNT, budget)
        tx = _tx(self.backend)
        commits: dict[int, int] = {}
        left = target  # offers are filled in device order up to the target
        for device, wh in sorted(offers.items()):
            take = min(int(wh), left)
            if take >= 1:
                self.backend.commit(event_id=event_id, device_id=device,
                                    owner=self.ctx.devices[device].owner, reduction_wh=take)
                commits[device] = take
                left -= take
        self._posted[k] = _Posted(event_id, k, target, price, budget, commits, tx)

    def _settle(self, p: _Posted, readings: Mapping[int, int]) -> None:
        payouts, refund = self.backend.settle_event(p.event_id, readings)
        tx = _tx(self.backend)
        rail = self.ctx.rail
        time_s = p.interval * self.ctx.interval_s
        for po in payouts:
            rail.pay_out("DemandResponse", po.owner, po.amount)
            self.record("dr_payouts", {
                "time_s": time_s, "interval": p.interval, "event_id": p.event_id,
                "device_id": po.device_id, "owner": po.owner,
                "committed_wh": p.commits.get(po.device_id, 0), "baseline_wh": po.baseline_wh,
                "metered_wh": po.metered_wh, "reduction_wh": po.reduction_wh,
                "amount": po.amount, "tx_hash": tx})
        rail.pay_out("DemandResponse", DSO_ACCOUNT, refund)
        self._event_row(p, paid=sum(po.amount for po in payouts), refund=refund,
                        reduction_wh=sum(po.reduction_wh for po in payouts), status="settled")

    def finish(self, *, interval: int) -> None:
        """Events posted for an interval past the run's end stay escrowed: rows ``open``."""
        for p in sorted(self._posted.values(), key=lambda p: p.event_id):
            self._event_row(p, paid=0, refund=0, reduction_wh=0, status="open")
        self._posted.clear()

    def _event_row(self, p: _Posted, *, paid: int, refund: int, reduction_wh: int,
                   status: str) -> None:
        self.record("dr_events", {
            "time_s": p.interval * self.ctx.interval_s, "interval": p.interval,
            "event_id": p.event_id, "poster": DSO_ACCOUNT, "target_wh": p.target_wh,
            "price_per_mwh": p.price_per_mwh, "budget": p.budget,
            "committed_wh": sum(p.commits.values()), "n_committed": len(p.commits),
            "paid": paid, "refund": refund, "reduction_wh": reduction_wh, "status": status,
            "tx_hash": p.tx_hash})


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
        self.chain: Any = None
        if ctx.chain:
            from twin.chain.value import ChainCertificates

            self.chain = ChainCertificates.deploy(ctx.ledger)
            ctx.rail.register("GreenCertificate", self.chain.contract.address)

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
        tx = _tx(backend)
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
                "holder": holder, "delivered_wh": 0, "count": r, "tx_hash": _tx(backend)})

    def kpis(self) -> dict[str, float]:
        return {"certificates_outstanding": float(self.ref.outstanding())}


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
        if ctx.chain:
            from twin.chain.value import ChainAssetToken

            chain = ChainAssetToken.deploy(ctx.ledger, asset_id=asset_id, issuer=self.issuer,
                                           total_shares=spec.shares, mint_funds=False)
            ctx.rail.register(self.contract, chain.contract.address)
            self.backend: Any = chain
        else:
            self.backend = AssetLedger(asset_id=asset_id, issuer=self.issuer,
                                       total_shares=spec.shares)
            ctx.rail.register(self.contract)
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
            tx = _tx(self.backend)
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
                tx = _tx(self.backend)
            self.record("asset_claims", {
                "time_s": time_s, "asset": self.agent, "asset_id": self.asset_id, "holder": h,
                "shares": self.shares[h], "amount": amount, "tx_hash": tx})


def _build_dr(scenario: Scenario, ctx: ServiceContext, accounts: list[int]) -> list[MarketService]:
    spec = scenario.market.services.demand_response
    return [DemandResponseService(ctx, baseline_intervals=spec.baseline_intervals)]


def _build_certificates(scenario: Scenario, ctx: ServiceContext,
                        accounts: list[int]) -> list[MarketService]:
    return [CertificateService(ctx, retire_share=scenario.market.services.certificates.retire_share)]


def _build_assets(scenario: Scenario, ctx: ServiceContext,
                  accounts: list[int]) -> list[MarketService]:
    out: list[MarketService] = []
    pool = iter(accounts)
    for i, spec in enumerate(scenario.market.services.assets):
        investors = [next(pool) for _ in range(spec.investors)]
        out.append(AssetService(ctx, spec=spec, asset_id=i + 1, investors=investors))
    return out


VALUE_BUILDERS = (
    ServiceBuilder("demand_response", enabled=lambda s: s.market.services.demand_response.enabled,
                   accounts=lambda s: 0, build=_build_dr),
    ServiceBuilder("certificates", enabled=lambda s: s.market.services.certificates.enabled,
                   accounts=lambda s: 0, build=_build_certificates),
    ServiceBuilder("assets", enabled=lambda s: bool(s.market.services.assets),
                   accounts=lambda s: sum(a.investors for a in s.market.services.assets),
                   build=_build_assets),
)
