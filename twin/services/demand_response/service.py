"""Demand response in a scenario run: the run hooks (rules: :mod:`.rules`, chain: :mod:`.chain`).

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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from twin.market.types import DSO_ACCOUNT, DeviceKind, DRCall, SettlementRow, Trade
from twin.market.units import payment
from twin.services.base import MarketService, ServiceContext, last_tx
from twin.services.demand_response.rules import DemandResponseLedger

__all__ = ["DemandResponseService"]

FLEXIBLE = frozenset({DeviceKind.EV, DeviceKind.STORAGE})


def _chain() -> Any:
    from twin.services.demand_response.chain import ChainDemandResponse

    return ChainDemandResponse


@dataclass
class _Posted:
    event_id: int
    interval: int
    target_wh: int
    price_per_mwh: int
    budget: int
    commits: dict[int, int]
    tx_hash: str
    bonds: dict[int, int]


class DemandResponseService(MarketService):
    name = "demand_response"
    tables = ("dr_events", "dr_payouts")

    def __init__(self, ctx: ServiceContext, *, baseline_intervals: int, penalty_bps: int = 0) -> None:
        super().__init__()
        self.ctx = ctx
        self.backend: Any = ctx.backend(
            "DemandResponse",
            reference=lambda: DemandResponseLedger(
                baseline_n=baseline_intervals, posters={DSO_ACCOUNT}, devices=ctx.ledger.device,
                interval_s=ctx.interval_s, clock=lambda: ctx.ledger.now_s, penalty_bps=penalty_bps),
            chain=lambda: _chain().deploy(ctx.ledger, baseline_n=baseline_intervals,
                                          posters=(DSO_ACCOUNT,), mint_funds=False,
                                          penalty_bps=penalty_bps))
        self.flexible = sorted(ctx.dr_devices or (d for d, dev in ctx.devices.items()
                                                  if dev.kind in FLEXIBLE))
        self._calls: list[DRCall] = []
        self._posted: dict[int, _Posted] = {}  # by interval
        self._next_id = 1

    def on_dr_call(self, call: DRCall) -> None:
        self._calls.append(call)

    def on_settled(self, *, interval: int, trades: Sequence[Trade],
                   rows: Sequence[SettlementRow], metered_wh: Mapping[int, int]) -> None:
        readings = {d: int(metered_wh[d]) for d in self.flexible if d in metered_wh}
        posted = self._posted.pop(interval, None)
        if posted is not None:
            self._settle(posted, readings)
        self.backend.record_meters(interval, readings)
        calls, self._calls = self._calls, []
        for call in calls:
            self._post(call)

    def _post(self, call: DRCall) -> None:
        led, rail = self.ctx.ledger, self.ctx.rail
        event_id, self._next_id = self._next_id, self._next_id + 1
        k, target, price = int(call.interval), int(call.requested_wh), int(call.price_per_mwh)
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
        tx = last_tx(self.backend)
        commits: dict[int, int] = {}
        bonds: dict[int, int] = {}
        left = target  # offers are filled in device order up to the target and device caps
        for device, wh in sorted(call.offers.items()):
            cap = self.ctx.devices[device].capacity_w * self.ctx.interval_s // 3600
            take = min(int(wh), left, cap)
            if take < 1:
                continue
            owner = self.ctx.devices[device].owner
            bond = self.backend.bond_of(take, price)
            if bond > led.balance(owner).free:  # cannot post the non-delivery bond
                continue
            rail.withdraw(owner, bond)
            self.backend.commit(event_id=event_id, device_id=device, owner=owner, reduction_wh=take)
            rail.pay_in("DemandResponse", owner, bond)
            commits[device], bonds[device] = take, bond
            left -= take
        self._posted[k] = _Posted(event_id, k, target, price, budget, commits, tx, bonds)

    def _settle(self, p: _Posted, readings: Mapping[int, int]) -> None:
        payouts, refund = self.backend.settle_event(p.event_id, readings)
        tx = last_tx(self.backend)
        rail = self.ctx.rail
        time_s = p.interval * self.ctx.interval_s
        for po in payouts:  # pay, plus the bond less the non-delivery penalty
            rail.pay_out("DemandResponse", po.owner, po.amount + p.bonds.get(po.device_id, 0) - po.penalty)
            self.record("dr_payouts", {
                "time_s": time_s, "interval": p.interval, "event_id": p.event_id,
                "device_id": po.device_id, "owner": po.owner,
                "committed_wh": p.commits.get(po.device_id, 0), "baseline_wh": po.baseline_wh,
                "metered_wh": po.metered_wh, "reduction_wh": po.reduction_wh,
                "amount": po.amount, "penalty": po.penalty, "tx_hash": tx})
        rail.pay_out("DemandResponse", DSO_ACCOUNT, refund + sum(po.penalty for po in payouts))
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
