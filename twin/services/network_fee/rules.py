"""The network fee in integers: who owes what for one interval, and the reference payment.

Each buying device owes ``payment(bought_wh, fee_per_mwh)`` (:func:`twin.market.units.payment`,
the market's one rounding rule) on the energy its trades of the interval delivered (after
curtailment); the fee is the DSO's published one for that interval
(:class:`twin.market.tariffs.NetworkTariff`). The owner pays what its free market balance
holds, at most that; the rest is recorded as short (no debt is booked).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from twin.market import errors as e
from twin.market.types import Device, Trade
from twin.market.units import payment
from twin.market.wallets import Money

__all__ = ["FeeDue", "NetworkFeeLedger", "fees_due"]


@dataclass(frozen=True, slots=True)
class FeeDue:
    device_id: int
    payer: int
    energy_wh: int
    fee_per_mwh: int
    amount: int


def fees_due(trades: Sequence[Trade], *, devices: Mapping[int, Device],
             fee_per_mwh: int) -> list[FeeDue]:
    """The fee each buying device owes for one interval's trades, in device-id order."""
    if fee_per_mwh < 0:
        raise ValueError(f"network fee: fee_per_mwh must be >= 0, got {fee_per_mwh}")
    bought: dict[int, int] = {}
    for t in trades:
        if t.energy_wh > 0:
            bought[t.buyer_device] = bought.get(t.buyer_device, 0) + t.energy_wh
    return [FeeDue(device_id=d, payer=devices[d].owner, energy_wh=wh, fee_per_mwh=fee_per_mwh,
                   amount=payment(wh, fee_per_mwh))
            for d, wh in sorted(bought.items()) if payment(wh, fee_per_mwh) > 0]


class NetworkFeeLedger:
    """Reference: the payer's wallet pays the DSO's wallet through ``money``."""

    def __init__(self, *, money: Money, dso: int) -> None:
        self.money = money
        self.dso = dso
        self.collected = 0

    def pay(self, payer: int, amount: int) -> None:
        if amount < 0:
            raise e.BadAmount(amount, purpose=f"network fee of account {payer}")
        if amount:
            self.money.transfer(payer, self.dso, amount)
            self.collected += amount
