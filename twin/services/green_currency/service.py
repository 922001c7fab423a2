"""Green-currency incentives in a scenario run: the run hooks (rules: :mod:`.rules`, chain:
:mod:`.chain`).

**Green currency** (``market.services.green_currency``, Shanghai VPP). After each settled
interval the operator mints to the owner of each buying device its renewable consumption:
the Wh it bought from PV sellers, delivered on metered injection in trade-id order
(``min(traded, injection left)``) — under the green exchange (``market.services.green_exchange``), the green kWh it redeemed —
at ``tokens_per_kwh_renewable``; and for each demand-response event the TSO called, the
metered reduction of each offering flexible device (the DR service's set,
``ServiceContext.dr_devices``: households with a flexible load, EV chargers, community
batteries) below its baseline (floor mean of its
last ``market.services.demand_response.baseline_intervals`` readings, capped at the offer)
at ``tokens_per_kwh_dr`` — whether or not the DR compensation service runs.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from twin.market.types import DeviceKind, DRCall, SettlementRow, Trade
from twin.market.units import MICRO
from twin.services.base import MarketService, ServiceContext, last_tx, spec_of
from twin.services.green_currency.rules import GreenCurrency
from twin.services.green_exchange.rules import GREEN_KINDS

if TYPE_CHECKING:
    from twin.scenario import Scenario

__all__ = ["GreenCurrencyService"]


def _chain() -> Any:
    from twin.services.green_currency.chain import ChainGreenCurrency

    return ChainGreenCurrency


class GreenCurrencyService(MarketService):
    name = "green_currency"
    tables = ("green_currency",)

    def __init__(self, ctx: ServiceContext, *, scenario: Scenario) -> None:
        super().__init__()
        self.ctx = ctx
        spec = spec_of(scenario, "green_currency")
        self.rates = (round(spec.tokens_per_kwh_renewable * MICRO),
                      round(spec.tokens_per_kwh_dr * MICRO))
        self.backend: Any = ctx.backend(
            "GreenCurrency",
            reference=lambda: GreenCurrency(devices=ctx.devices,
                                            tokens_per_kwh_renewable=self.rates[0],
                                            tokens_per_kwh_dr=self.rates[1]),
            chain=lambda: _chain().deploy(ctx.ledger, tokens_per_kwh_renewable=self.rates[0],
                                          tokens_per_kwh_dr=self.rates[1]))
        self.exchange_mode = bool(spec_of(scenario, "green_exchange").enabled)
        n = spec_of(scenario, "demand_response").baseline_intervals
        # the DR service's device set (flexible households + EVs + batteries)
        self.flexible = sorted(ctx.dr_devices or (d for d, dev in ctx.devices.items()
                                                  if dev.kind in (DeviceKind.EV, DeviceKind.STORAGE)))
        self._history: dict[int, deque[int]] = {d: deque(maxlen=n) for d in self.flexible}
        self._events: dict[int, tuple[int, Mapping[int, int]]] = {}  # interval -> (id, offers)
        self._next_event = 1

    def on_dr_call(self, call: DRCall) -> None:
        k = int(call.interval)
        self._events[k] = (self._next_event, dict(call.offers))
        self._next_event += 1

    def _renewable(self, k: int, trades: Sequence[Trade],
                   metered_wh: Mapping[int, int]) -> dict[int, int]:
        if self.exchange_mode:
            ex = self.ctx.shared.get("green_exchange")
            return dict(ex.redeemed_wh.get(k, {})) if ex is not None else {}
        devices = self.ctx.devices
        left = {d: max(0, -int(w)) for d, w in metered_wh.items()}
        out: dict[int, int] = defaultdict(int)
        for t in sorted(trades, key=lambda t: t.trade_id):
            if devices[t.seller_device].kind not in GREEN_KINDS or t.energy_wh <= 0:
                continue
            got = min(t.energy_wh, left.get(t.seller_device, 0))
            left[t.seller_device] = left.get(t.seller_device, 0) - got
            if got > 0:
                out[t.buyer_device] += got
        return dict(out)

    def on_settled(self, *, interval: int, trades: Sequence[Trade],
                   rows: Sequence[SettlementRow], metered_wh: Mapping[int, int]) -> None:
        k = interval
        if self.rates[0] > 0:
            awards = sorted(self._renewable(k, trades, metered_wh).items())
            if awards:
                self._award_rows(k, "renewable", k, self.backend.reward_renewable(k, awards))
        called = self._events.pop(k, None)
        if called is not None and self.rates[1] > 0:
            event_id, offers = called
            dr = []
            for d, offered in sorted(offers.items()):
                past = self._history.get(d)
                if not past or d not in metered_wh:
                    continue
                base = sum(past) // len(past)
                cut = min(max(base - int(metered_wh[d]), 0), int(offered))
                if cut > 0:
                    dr.append((d, cut))
            if dr:
                self._award_rows(k, "dr", event_id, self.backend.reward_dr(event_id, dr))
        for d in self.flexible:
            if d in metered_wh:
                self._history[d].append(int(metered_wh[d]))

    def _award_rows(self, k: int, reason: str, ref: int, awards: Sequence[Any]) -> None:
        tx = last_tx(self.backend)
        for a in awards:
            self.record("green_currency", {
                "time_s": k * self.ctx.interval_s, "interval": k, "reason": reason, "ref": ref,
                "device_id": a.device_id, "owner": a.owner, "energy_wh": a.energy_wh,
                "amount": a.amount, "tx_hash": tx})
