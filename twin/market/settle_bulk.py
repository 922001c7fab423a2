"""The reference ledger's settlement of an interval's imbalances column-wise, when no payment
can fall short.

Settling a town interval walks ~11,000 devices one by one
(:meth:`twin.market.reference_settlement.ReferenceSettlement._settle`): each device's
imbalance (metered less traded) is paid between its owner and the DSO, from free balance,
then the owner's bond, the rest as debt, and a credit first pays an account's debt. When
nothing in the interval was curtailed, no owner involved has debt or a drawn bond, every
owner's imbalance dues are within its free balance and the DSO's payouts within its own,
every payment is paid in full from free balance whatever the order: the dues are computed
with numpy and each account moves by its sums -- exactly the state and rows of the one-by-one
walk. Otherwise ``None``: the walk settles the interval as before.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import repeat
from typing import TYPE_CHECKING

import numpy as np

from twin.market.types import DSO_ACCOUNT, SettlementRow, Trade
from twin.market.units import WH_PER_MWH

if TYPE_CHECKING:  # pragma: no cover
    from twin.market.reference_settlement import ReferenceSettlement

__all__ = ["settle_bulk", "trade_sums"]


def trade_sums(led: ReferenceSettlement, trades: Sequence[Trade]
               ) -> tuple[dict[int, int], dict[int, int]] | None:
    """Pay an interval's trades column-wise (each buyer's escrow released to its seller) when
    none was curtailed and no seller's owner has debt (its credit then all goes to free
    balance): -> (net traded Wh, trade money) by device, as the one-by-one loop of
    ``_settle`` leaves them; else ``None`` (nothing changed)."""
    n = len(trades)
    if n == 0:
        return None
    e_wh = np.fromiter((t.energy_wh for t in trades), np.int64, n)
    if any(t.cleared_wh != t.energy_wh for t in trades):
        return None
    price = np.fromiter((t.price_per_mwh for t in trades), np.int64, n)
    if int(e_wh.max(initial=0)) * int(price.max(initial=0)) >= 2**62 or (e_wh < 0).any() or (price < 0).any():
        return None
    orders, accounts = led._orders, led._accounts
    buyers = np.fromiter((orders[t.buy_order_id].owner for t in trades), np.int64, n)
    sellers = np.fromiter((orders[t.sell_order_id].owner for t in trades), np.int64, n)
    if DSO_ACCOUNT in set(sellers.tolist()):
        return None
    s_uniq, s_ix = np.unique(sellers, return_inverse=True)
    if any(accounts[o].debt for o in s_uniq.tolist()):
        return None
    amount = e_wh * price // WH_PER_MWH
    b_uniq, b_ix = np.unique(buyers, return_inverse=True)
    for o, x in zip(b_uniq.tolist(), _sums(b_ix, amount, b_uniq.size), strict=True):
        accounts[o].locked -= x
    for o, x in zip(s_uniq.tolist(), _sums(s_ix, amount, s_uniq.size), strict=True):
        accounts[o].free += x
    bd = np.fromiter((t.buyer_device for t in trades), np.int64, n)
    sd = np.fromiter((t.seller_device for t in trades), np.int64, n)
    dev = np.concatenate([bd, sd])
    d_uniq, d_ix = np.unique(dev, return_inverse=True)
    net = _sums(d_ix, np.concatenate([e_wh, -e_wh]), d_uniq.size)
    money = _sums(d_ix, np.concatenate([-amount, amount]), d_uniq.size)
    keys = d_uniq.tolist()
    return dict(zip(keys, net, strict=True)), dict(zip(keys, money, strict=True))


def _sums(ix: np.ndarray, x: np.ndarray, size: int) -> list[int]:
    out = np.zeros(size, np.int64)
    np.add.at(out, ix.reshape(-1), x)
    return out.tolist()  # type: ignore[no-any-return]


def settle_bulk(led: ReferenceSettlement, interval: int, devices: Sequence[int],
                metered_wh: Mapping[int, int], net_wh: Mapping[int, int],
                money: Mapping[int, int]) -> list[SettlementRow] | None:
    """The settlement rows of ``devices`` (ascending) with every imbalance paid, or ``None``
    (nothing changed) when a payment might not be paid in full from free balance."""
    n = len(devices)
    if n == 0:
        return None
    devs = led._devices
    owners = [devs[d].owner for d in devices]
    if DSO_ACCOUNT in owners:
        return None
    m_list = [metered_wh[d] for d in devices]
    net_list = [net_wh.get(d, 0) for d in devices]
    try:
        m = np.array(m_list, np.int64)
        net = np.array(net_list, np.int64)
    except (OverflowError, TypeError, ValueError):
        return None
    imb = m - net
    retail, feed_in = led._retail, led._feed_in
    if int(np.abs(imb).max()) * max(retail, feed_in, 1) >= 2**62:  # exact in int64
        return None
    # the owner pays retail for an import, the DSO pays feed-in for an export (floor)
    owner_pays = imb > 0
    due = np.where(owner_pays, imb * retail // WH_PER_MWH,
                   np.where(imb < 0, -imb * feed_in // WH_PER_MWH, 0))
    uniq, ix = np.unique(np.array(owners, np.int64), return_inverse=True)
    ix = ix.reshape(-1)
    owed = np.zeros(uniq.size, np.int64)  # what each owner pays the DSO
    np.add.at(owed, ix, np.where(owner_pays, due, 0))
    got = np.zeros(uniq.size, np.int64)  # what the DSO pays each owner
    np.add.at(got, ix, np.where(owner_pays, 0, due))
    accounts, short = led._accounts, led._bond_short
    accs = [accounts.get(o) for o in uniq.tolist()]
    for acc, o, pay in zip(accs, uniq.tolist(), owed.tolist(), strict=True):
        if acc is None or acc.debt or short.get(o, 0) or pay > acc.free:
            return None
    dso = accounts[DSO_ACCOUNT]
    payout = int(got.sum())
    if payout > dso.free:
        return None
    # every payment in full from free balance: book the sums
    payers = set()
    for acc, o, pay, rec in zip(accs, uniq.tolist(), owed.tolist(), got.tolist(), strict=True):
        acc.free += rec - pay  # type: ignore[union-attr]
        if pay:
            payers.add(o)
    dso.free += int(owed.sum()) - payout
    if payout:
        payers.add(DSO_ACCOUNT)
    for o in payers:  # _draw's entry for every payer (zero: nothing drawn from a bond)
        short[o] += 0
    moved = np.where(owner_pays, -due, due).tolist()
    # SettlementRow's fields in order (map, positional: ~11,000 an interval)
    return list(map(SettlementRow, repeat(interval, n), devices, owners, net_list, m_list,
                    imb.tolist(), [money.get(d, 0) for d in devices], moved, repeat(0, n)))
