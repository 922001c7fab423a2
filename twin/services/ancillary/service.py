"""Frequency regulation in a scenario run: the run hooks (rules: :mod:`.rules`, chain:
:mod:`.chain`, the agents' side: :mod:`twin.agents.regulation`).

The agents model reserves each interval's regulation capacity one interval ahead and has the
resources follow the signal; its report of interval ``k`` (capacity, mileage and precision
score per resource) arrives with the meter readings of ``k`` (:meth:`on_regulation`). When
``k`` settles (:meth:`on_settled`) the DSO's account, paying for the TSO, withdraws the
interval's total from its market balance and the AncillaryServices ledger pays every
resource's owner its capacity and performance amounts. An interval the DSO cannot fund is
recorded ``unfunded`` and not paid; one without procured capacity is recorded ``none``.
The upward reserve of ``k`` (capacity held, energy activated) is settled the same way, apart
(``AncillaryServices.settleReserve``), into the table ``reserve``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twin.market.types import DSO_ACCOUNT, SettlementRow, Trade
from twin.market.units import price_from_per_mwh
from twin.services.ancillary.reserve import reserve_amounts
from twin.services.ancillary.rules import AncillaryLedger, regulation_amounts
from twin.services.base import MarketService, ServiceContext, last_tx

__all__ = ["AncillaryService"]

CONTRACT = "AncillaryServices"


def _chain() -> Any:
    from twin.services.ancillary.chain import ChainAncillary

    return ChainAncillary


class AncillaryService(MarketService):
    name = "ancillary"
    tables = ("regulation", "regulation_intervals", "reserve")

    def __init__(self, ctx: ServiceContext, *, capacity_price_per_mw_h: float,
                 performance_price_per_mw: float, reserve_capacity_price_per_mw_h: float = 0.0,
                 reserve_energy_price_per_mwh: float = 0.0) -> None:
        super().__init__()
        self.ctx = ctx
        # prices in micro-units (per MW-hour of capacity, per MW of mileage, per MWh)
        prices = {"capacity_price_per_mw_h": price_from_per_mwh(capacity_price_per_mw_h),
                  "performance_price_per_mw": price_from_per_mwh(performance_price_per_mw),
                  "reserve_capacity_price_per_mw_h": price_from_per_mwh(reserve_capacity_price_per_mw_h),
                  "reserve_energy_price_per_mwh": price_from_per_mwh(reserve_energy_price_per_mwh)}
        self.cap_price = prices["capacity_price_per_mw_h"]
        self.perf_price = prices["performance_price_per_mw"]
        self.rs_cap_price = prices["reserve_capacity_price_per_mw_h"]
        self.rs_energy_price = prices["reserve_energy_price_per_mwh"]
        owners = {d: dev.owner for d, dev in ctx.devices.items()}
        self.backend: Any = ctx.backend(
            CONTRACT,
            reference=lambda: AncillaryLedger(owners=owners, payer=DSO_ACCOUNT, interval_s=ctx.interval_s,
                                              **prices),
            chain=lambda: _chain().deploy(ctx.ledger, interval_s=ctx.interval_s, **prices))
        self._reports: dict[int, Mapping[str, Any]] = {}

    def on_regulation(self, report: Mapping[str, Any]) -> None:
        self._reports[int(report["interval"])] = report

    def on_settled(self, *, interval: int, trades: Sequence[Trade],
                   rows: Sequence[SettlementRow], metered_wh: Mapping[int, int]) -> None:
        rep = self._reports.pop(interval, None)
        if rep is None:
            return
        self._settle_regulation(interval, rep)
        if rep.get("reserve"):
            self._settle_reserve(interval, rep)

    def _settle_regulation(self, interval: int, rep: Mapping[str, Any]) -> None:
        res = [r for r in rep["resources"] if r["capacity_w"] > 0]
        time_s = interval * self.ctx.interval_s
        due = [regulation_amounts(capacity_w=r["capacity_w"], mileage_w=r["mileage_w"],
                                  score_ppm=r["score_ppm"], interval_s=self.ctx.interval_s,
                                  capacity_price_per_mw_h=self.cap_price,
                                  performance_price_per_mw=self.perf_price) for r in res]
        total = sum(c + p for c, p in due)
        procured = sum(r["capacity_w"] for r in res)
        weight = procured or 1
        iv = {"time_s": time_s, "interval": interval, "requested_w": int(rep["requested_w"]),
              "offered_w": int(rep["offered_w"]), "procured_w": procured,
              "signal_mean": float(rep["signal_mean"]),
              "score": sum(r["capacity_w"] * r["score_ppm"] for r in res) / 1e6 / weight if res else 0.0}
        if not res:
            self.record("regulation_intervals", {**iv, "capacity_amount": 0, "performance_amount": 0,
                                                 "status": "none", "tx_hash": ""})
            return
        led, rail = self.ctx.ledger, self.ctx.rail
        if led.balance(DSO_ACCOUNT).free < total:
            self.record("regulation_intervals", {**iv, "capacity_amount": 0, "performance_amount": 0,
                                                 "status": "unfunded", "tx_hash": ""})
            return
        rail.withdraw(DSO_ACCOUNT, total)
        paid = self.backend.settle(sender=DSO_ACCOUNT, interval=interval,
                                   devices=[r["device_id"] for r in res],
                                   capacity_w=[r["capacity_w"] for r in res],
                                   mileage_w=[r["mileage_w"] for r in res],
                                   score_ppm=[r["score_ppm"] for r in res])
        tx = last_tx(self.backend)
        rail.pay_in(CONTRACT, DSO_ACCOUNT, sum(p.amount for p in paid))
        by_dev = {r["device_id"]: r for r in res}
        for p in paid:
            rail.pay_out(CONTRACT, p.owner, p.amount)
            r = by_dev[p.device_id]
            self.record("regulation", {
                "time_s": time_s, "interval": interval, "device_id": p.device_id, "owner": p.owner,
                "kind": r["kind"], "capacity_w": p.capacity_w, "mileage_w": p.mileage_w,
                "score_ppm": p.score_ppm, "requested_wh": float(r["requested_wh"]),
                "delivered_wh": float(r["delivered_wh"]), "capacity_amount": p.capacity_amount,
                "performance_amount": p.performance_amount, "amount": p.amount, "tx_hash": tx})
        self.record("regulation_intervals", {
            **iv, "capacity_amount": sum(p.capacity_amount for p in paid),
            "performance_amount": sum(p.performance_amount for p in paid), "status": "settled",
            "tx_hash": tx})

    def _settle_reserve(self, interval: int, rep: Mapping[str, Any]) -> None:
        """The DSO's account pays the reserve of ``interval`` (capacity held, energy activated)."""
        res = rep["reserve"]
        time_s = interval * self.ctx.interval_s
        due = [reserve_amounts(capacity_w=r["capacity_w"], energy_wh=r["energy_wh"],
                               interval_s=self.ctx.interval_s, capacity_price_per_mw_h=self.rs_cap_price,
                               energy_price_per_mwh=self.rs_energy_price) for r in res]
        total = sum(c + w for c, w in due)
        common = {"time_s": time_s, "interval": interval, "requested_w": int(rep["reserve_requested_w"]),
                  "offered_w": int(rep["reserve_offered_w"]), "activated": bool(rep["reserve_activated"])}
        led, rail = self.ctx.ledger, self.ctx.rail
        if led.balance(DSO_ACCOUNT).free < total:
            for r in res:
                self.record("reserve", {**common, "device_id": r["device_id"], "owner": -1,
                                        "capacity_w": r["capacity_w"], "requested_wh": r["requested_wh"],
                                        "energy_wh": r["energy_wh"], "capacity_amount": 0,
                                        "energy_amount": 0, "amount": 0, "status": "unfunded",
                                        "tx_hash": ""})
            return
        rail.withdraw(DSO_ACCOUNT, total)
        paid = self.backend.settle_reserve(sender=DSO_ACCOUNT, interval=interval,
                                           devices=[r["device_id"] for r in res],
                                           capacity_w=[r["capacity_w"] for r in res],
                                           energy_wh=[r["energy_wh"] for r in res])
        tx = last_tx(self.backend)
        rail.pay_in(CONTRACT, DSO_ACCOUNT, sum(p.amount for p in paid))
        by_dev = {r["device_id"]: r for r in res}
        for p in paid:
            rail.pay_out(CONTRACT, p.owner, p.amount)
            self.record("reserve", {**common, "device_id": p.device_id, "owner": p.owner,
                                    "capacity_w": p.capacity_w,
                                    "requested_wh": float(by_dev[p.device_id]["requested_wh"]),
                                    "energy_wh": p.energy_wh, "capacity_amount": p.capacity_amount,
                                    "energy_amount": p.energy_amount, "amount": p.amount,
                                    "status": "settled", "tx_hash": tx})
