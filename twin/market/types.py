"""Market records shared by the reference ledger (pure Python) and the on-chain ledger.

All quantities are integers in the units of :mod:`twin.market.units`. Accounts are small
integers (``account`` index): 0 is the market operator, 1 the DSO, 2.. the participants;
the chain ledger maps each index to one Anvil account.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum

__all__ = [
    "DSO_ACCOUNT",
    "OPERATOR_ACCOUNT",
    "Balance",
    "Clearing",
    "Device",
    "DeviceKind",
    "Order",
    "OrderIntent",
    "SettlementRow",
    "Side",
    "Trade",
]

OPERATOR_ACCOUNT = 0
DSO_ACCOUNT = 1


class Side(IntEnum):
    """Order side; the values are the ones the contract uses."""

    BUY = 0
    SELL = 1


class DeviceKind(IntEnum):
    """Kind of a registered device (one metering point); values match the contract."""

    LOAD = 0  # household meter without generation
    PV = 1  # household meter with PV (prosumer)
    EV = 2  # separately metered EV charger
    STORAGE = 3  # community battery
    GENERATOR = 4  # dispatchable generator


@dataclass(frozen=True, slots=True)
class Device:
    """A metering point registered by the DSO."""

    device_id: int
    owner: int
    kind: DeviceKind
    bus: int
    capacity_w: int  # max power; per-interval energy cap = capacity_w * interval_s // 3600


@dataclass(frozen=True, slots=True)
class OrderIntent:
    """What an agent wants to place; the ledger assigns the order id."""

    device_id: int
    interval: int
    side: Side
    energy_wh: int
    price_per_mwh: int  # limit price


@dataclass(frozen=True, slots=True)
class Order:
    """An accepted order."""

    order_id: int
    device_id: int
    owner: int
    interval: int
    side: Side
    energy_wh: int
    price_per_mwh: int


@dataclass(frozen=True, slots=True)
class Trade:
    """A matched pair at the interval's uniform price; ``energy_wh`` is after curtailment.

    Like the seed paper's trade ticket (creator, creation time, parties, energy, price) it
    carries its **creator**, the account that initiated it -- the owner of the later of its
    two orders (either side may initiate: its order met the one already in the book) -- and
    its **creation time** ``created_s``, the market clock when it was matched (the clearing;
    on chain the timestamp of the block that emitted it, minus the market start). ``-1``:
    not known (a trade built outside a ledger)."""

    trade_id: int
    interval: int
    buy_order_id: int
    sell_order_id: int
    buyer_device: int
    seller_device: int
    cleared_wh: int
    energy_wh: int
    price_per_mwh: int
    creator: int = -1
    created_s: int = -1

    @property
    def curtailed_wh(self) -> int:
        return self.cleared_wh - self.energy_wh


@dataclass(frozen=True, slots=True)
class Clearing:
    """Outcome of one interval's uniform-price double auction."""

    interval: int
    price_per_mwh: int  # 0 when nothing matched
    volume_wh: int
    trades: tuple[Trade, ...]


@dataclass(frozen=True, slots=True)
class SettlementRow:
    """One device's settlement for one interval (money signed: + received, - paid)."""

    interval: int
    device_id: int
    owner: int
    traded_wh: int  # net market position: bought - sold (load convention)
    metered_wh: int  # consumption positive, injection negative
    imbalance_wh: int  # metered - traded
    trade_amount: int  # net money from trades (+ seller receives, - buyer pays)
    imbalance_amount: int  # net money with the DSO for the imbalance
    debt: int  # part of this row's charges that could not be paid from free balance
    # (owed by the owner when imbalance_wh > 0, by the DSO when imbalance_wh < 0);
    # imbalance_amount is what actually moved, so the owner's side of the row is exact.


@dataclass(frozen=True, slots=True)
class Balance:
    """An account's balances inside the market (micro-units)."""

    free: int
    locked: int  # buyer escrow
    debt: int  # unpaid settlement charges (a counter: no tokens back it)
    bond: int = 0  # imbalance collateral of the account's devices (withdraw cannot take it)


@dataclass(frozen=True, slots=True)
class DRCall:
    """A demand-response call for ``interval`` as it travels from the agents to the market
    (a mosaik attribute): the TSO's request and price, and the reductions the flexible
    devices offer (Wh by device id, filled in device order up to the request)."""

    interval: int
    requested_wh: int
    price_per_mwh: int  # compensation, micro-units per MWh
    offers: Mapping[int, int] = field(default_factory=dict)
