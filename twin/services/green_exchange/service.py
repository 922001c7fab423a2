"""The green-token exchange in a scenario run: the run hooks (rules: :mod:`.rules`,
chain: :mod:`.chain`).

**Green-token exchange** (``market.services.green_exchange.enabled``, EU Scanergy). The P2P auction
takes no orders (``takes_orders = False``): every interval's empty book clears and every
meter settles against the DSO at the retail / feed-in tariffs, as without trades. After the
settlement of ``k`` the DSO records every meter reading of ``k`` on the exchange: PV surplus
mints tokens to its owner (1 per kWh, Wh carried), consumption becomes redeemable. Policy
(deterministic): every prosumer sells all its tokens to the DSO at once (as many as the
DSO's free balance pays); then every device with at least 1 kWh of uncovered consumption
— in device-id order, starting at a rotating offset ``k mod n`` so no meter always comes
first — buys as many tokens as it can redeem, the DSO's stock holds and its owner's free
market balance pays, and redeems them (green-supplied kWh). Payers withdraw exactly the
money they need from their market balance to their wallet first. With a market rate
(``rate_adjustment`` > 0) the DSO then moves both prices by
``rate_adjustment x (demand - supply) / (demand + supply)`` (demand: whole kWh of uncovered
consumption; supply: the tokens offered plus its stock), within the rate bounds, and posts
them (``set_prices``); fixed prices are the special case 0.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from twin.market.types import DSO_ACCOUNT, SettlementRow, Trade
from twin.market.units import payment
from twin.services.base import MarketService, RailMoney, ServiceContext, cash, last_tx
from twin.services.green_exchange.rules import WH_PER_TOKEN, GreenExchange

__all__ = ["GreenExchangeService", "affordable"]


def _chain() -> Any:
    from twin.services.green_exchange.chain import ChainGreenExchange

    return ChainGreenExchange


def affordable(cash: int, price_per_mwh: int) -> int:
    """Most whole kWh tokens ``cash`` pays for at ``price_per_mwh``."""
    n = cash * 10**6 // (WH_PER_TOKEN * price_per_mwh)
    while n > 0 and payment(n * WH_PER_TOKEN, price_per_mwh) > cash:
        n -= 1
    return n


class GreenExchangeService(MarketService):
    name = "green_exchange"
    tables = ("green_exchange",)
    takes_orders = False

    def __init__(self, ctx: ServiceContext, *, buy_price_per_mwh: int,
                 sell_price_per_mwh: int, rate_adjustment: float = 0.0,
                 rate_bounds: tuple[float, float] = (0.25, 4.0)) -> None:
        super().__init__()
        self.ctx = ctx
        self.buy_price = buy_price_per_mwh
        self.sell_price = sell_price_per_mwh
        self._base = (buy_price_per_mwh, sell_price_per_mwh)
        self.rate = 1.0  # the token's market rate, a multiple of the initial prices
        self.rate_adjustment, self.rate_bounds = rate_adjustment, rate_bounds
        self.backend: Any = ctx.backend(
            "GreenTokenExchange",
            reference=lambda: GreenExchange(
                devices=ctx.devices, money=RailMoney(ctx, "GreenTokenExchange"),
                buy_price_per_mwh=buy_price_per_mwh, sell_price_per_mwh=sell_price_per_mwh),
            chain=lambda: _chain().deploy(ctx.ledger, buy_price_per_mwh=buy_price_per_mwh,
                                          sell_price_per_mwh=sell_price_per_mwh))
        ctx.shared[self.name] = self
        self._unsold: set[int] = set()  # holders the DSO could not pay in full
        self._uncovered: dict[int, int] = defaultdict(int)  # mirror of the exchange's
        #: interval -> device -> green-supplied Wh redeemed in that interval's step
        self.redeemed_wh: dict[int, dict[int, int]] = {}

    def _row(self, k: int, action: str, device: int | None, account: int, tokens: int,
             energy_wh: int, amount: int, price: int | None = None) -> None:
        self.record("green_exchange", {
            "time_s": k * self.ctx.interval_s, "interval": k, "action": action,
            "device_id": device, "account": account, "tokens": tokens, "energy_wh": energy_wh,
            "amount": amount, "tx_hash": last_tx(self.backend),
            "price_per_mwh": self.buy_price if price is None and action == "sold"
            else self.sell_price if price is None and action == "bought" else price})

    def _reprice(self, k: int, *, supply: int, demand: int) -> None:
        """Move the token's rate by the interval's imbalance and post the new prices."""
        if self.rate_adjustment == 0 or supply + demand == 0:
            return
        lo, hi = self.rate_bounds
        self.rate = min(max(self.rate * (1 + self.rate_adjustment * (demand - supply) / (demand + supply)),
                            lo), hi)
        # whole thousandths of a currency unit per MWh: a token's (kWh's) price stays whole
        buy, sell = (max(1000, round(p * self.rate / 1000) * 1000) for p in self._base)
        if (buy, sell) == (self.buy_price, self.sell_price):
            return
        self.backend.set_prices(buy, sell, sender=DSO_ACCOUNT)
        self.buy_price, self.sell_price = buy, sell
        self._row(k, "priced_buy", None, DSO_ACCOUNT, supply, 0, 0, price=buy)
        self._row(k, "priced_sell", None, DSO_ACCOUNT, demand, 0, 0, price=sell)

    def on_settled(self, *, interval: int, trades: Sequence[Trade],
                   rows: Sequence[SettlementRow], metered_wh: Mapping[int, int]) -> None:
        k, ex, devices = interval, self.backend, self.ctx.devices
        readings = sorted((int(d), int(w)) for d, w in metered_wh.items() if d in devices)
        deliveries = ex.record_meters(k, readings)
        for d in deliveries:
            self._row(k, "minted", d.device_id, d.owner, d.tokens, d.injected_wh, 0)
        for d, w in readings:
            if w > 0:
                self._uncovered[d] += w
        sellers = sorted(({d.owner for d in deliveries} | self._unsold) - {DSO_ACCOUNT})
        if self.rate_adjustment:
            self._reprice(k, supply=ex.balance_of(DSO_ACCOUNT) + sum(ex.balance_of(o) for o in sellers),
                          demand=sum(w // WH_PER_TOKEN for w in self._uncovered.values()))
        self._unsold = set()
        for owner in sellers:
            held = n = ex.balance_of(owner)
            if n > 0:
                money = cash(self.ctx, DSO_ACCOUNT, payment(n * WH_PER_TOKEN, self.buy_price))
                n = min(n, affordable(money, self.buy_price))
            if n > 0:
                amount = ex.sell(owner, n)
                self._row(k, "sold", None, owner, n, n * WH_PER_TOKEN, amount)
            if held > n:  # the DSO could not pay for all: offered again next interval
                self._unsold.add(owner)
        stock = ex.balance_of(DSO_ACCOUNT)
        wanting = sorted(d for d, wh in self._uncovered.items() if wh >= WH_PER_TOKEN)
        if not wanting or stock == 0:
            return
        start = k % len(wanting)
        for d in wanting[start:] + wanting[:start]:
            n = min(self._uncovered[d] // WH_PER_TOKEN, stock)
            owner = devices[d].owner
            if n > 0 and owner != DSO_ACCOUNT:
                money = cash(self.ctx, owner, payment(n * WH_PER_TOKEN, self.sell_price))
                n = min(n, affordable(money, self.sell_price))
            if n <= 0 or owner == DSO_ACCOUNT:
                continue
            amount = ex.buy(owner, n)
            self._row(k, "bought", d, owner, n, n * WH_PER_TOKEN, amount)
            ex.redeem(d, n, sender=owner)
            self._row(k, "redeemed", d, owner, n, n * WH_PER_TOKEN, 0)
            self._uncovered[d] -= n * WH_PER_TOKEN
            self.redeemed_wh.setdefault(k, {})[d] = n * WH_PER_TOKEN
            stock -= n
            if stock == 0:
                break
