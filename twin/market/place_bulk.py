"""The reference ledger's order checks column-wise, for the batch where none can fail.

A market step of the town places ~10,000 signed orders, one per device, each checked one by
one (:meth:`twin.market.reference.ReferenceLedger._check_order`: ~20 dict look-ups, the
owner's running balance). When a batch has what makes those checks order-independent --
every signature already verified (the daily schedules'), one order per device, no order or
nonce of any of its (device, interval) pairs in the ledger yet, no owner in debt (buyers) or
with a drawn bond to refill, and every owner's bonds plus escrows within its free balance --
every check passes whatever the order, and its effects are sums: this module checks the
batch with numpy and books it at once, with exactly the state the one-by-one path leaves
(same order ids, escrows, bonds, nonces, counters). Any batch that does not qualify, or in
which a single order fails a check, returns ``None`` and goes through the one-by-one path,
which then reports every rejection as before. The range limits (energy, minimum, price,
interval, nonce) are the one table of :mod:`twin.market.limits` both paths check.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from twin.market.limits import order_columns, order_limits, range_codes
from twin.market.signing import ZERO_ADDRESS
from twin.market.types import Order, OrderIntent, Side
from twin.market.units import WH_PER_MWH

if TYPE_CHECKING:  # pragma: no cover
    from twin.market.reference_daily import ReferenceDaily

__all__ = ["place_bulk"]

_BUY, _SELL = Side.BUY, Side.SELL


def place_bulk(led: ReferenceDaily, intents: Sequence[OrderIntent], nonces: Sequence[int],
               verdict: Sequence[Any], sender: int | None) -> list[Order] | None:
    """Book ``intents`` (each with its signed ``nonces`` and the signer ``verdict`` of
    :meth:`place_scheduled_orders`: an address, or an error) when no check can fail; else
    ``None`` (nothing changed)."""
    n = len(intents)
    if n == 0 or sender is not None or any(type(v) is not str for v in verdict):
        return None
    devices, revoked, signers = led._devices, led._revoked, led._signers
    d = np.fromiter((it.device_id for it in intents), np.int64, n)
    if np.unique(d).size != n:
        return None
    try:
        devs = [devices[x] for x in d.tolist()]
    except KeyError:
        return None
    if revoked and any(x in revoked for x in d.tolist()):
        return None
    if any(v == ZERO_ADDRESS or signers.get(it.device_id) != v
           for it, v in zip(intents, verdict, strict=True)):
        return None
    # the range limits of the one-by-one path (twin.market.limits): any failing -> one by one
    limits = order_limits(led._min_order_wh)
    cols = order_columns(intents, nonces, limits)
    if any(c.dtype != np.int64 for c in cols.values()) or range_codes(cols, limits).any():
        return None
    k, wh, price, nonce = cols["interval"], cols["energy_wh"], cols["price_per_mwh"], cols["nonce"]
    buy = np.fromiter((it.side == _BUY for it in intents), bool, n)
    if int(wh.max()) * int(price.max()) >= 2**63:  # escrows stay exact in int64
        return None
    status, now = led._status, led._now_s
    for kk in np.unique(k).tolist():
        if status.get(kk, "open") != "open" or now > led.gate_s(kk):
            return None
    keys = list(zip(d.tolist(), k.tolist(), strict=True))
    # nothing of these (device, interval) pairs in the ledger yet: nonce floor 0, no orders,
    # nothing used on either side
    state_nonces, n_orders, used = led._nonces, led._n_orders, led._used
    if any(key in state_nonces or key in n_orders for key in keys):
        return None
    if used and any((x, kk, s) in used for x, kk in keys for s in (_BUY, _SELL)):
        return None
    interval_s = led._interval_s
    cap = np.fromiter((dev.capacity_w * interval_s // 3600 for dev in devs), np.int64, n)
    if (wh > cap).any():
        return None
    sides = [_BUY if b else _SELL for b in buy.tolist()]
    envelope = led._envelope
    if envelope:
        for key, s, w in zip(keys, sides, wh.tolist(), strict=True):
            env = envelope.get((key[0], key[1], s))
            if env is not None and w > env:
                return None
    # money: each owner's bonds plus escrows within its free balance, in any order
    owners = [dev.owner for dev in devs]
    info = led._device_info
    terms = led._bond_terms
    last_bonded = [info.get(x, (0, False)) for x in d.tolist()]
    bond = np.fromiter((0 if bonded else led.bond_of(dev)
                        for (_, bonded), dev in zip(last_bonded, devs, strict=True)), np.int64, n)
    need = np.where(buy, wh * price // WH_PER_MWH, 0)
    uniq, owner_ix = np.unique(np.array(owners, np.int64), return_inverse=True)
    owner_ix = owner_ix.reshape(-1)
    total = np.zeros(uniq.size, np.int64)
    np.add.at(total, owner_ix, bond + need)
    accounts, short = led._accounts, led._bond_short
    buyers = set(np.unique(owner_ix[buy]).tolist())
    for j, o in enumerate(uniq.tolist()):
        acc = accounts[o]
        if short.get(o, 0) > 0 or total[j] > acc.free or (j in buyers and acc.debt > 0):
            return None
    # every check passes: book the batch as _place would
    batch_info = {}
    any_bond = terms.any_bond
    for x, kk, (last, bonded) in zip(d.tolist(), k.tolist(), last_bonded, strict=True):
        if not bonded or (any_bond and last < kk):
            batch_info[x] = (max(last, kk), True)
    led._batch_orders.clear()
    led._batch_info.clear()
    led._batch_bond.clear()
    led._batch_fill.clear()
    first_id = led._next_order
    ids = range(first_id, first_id + n)
    # Order's fields in order (map, positional: ~10,000 an interval)
    placed = list(map(Order, ids, d.tolist(), owners, k.tolist(), sides, wh.tolist(), price.tolist()))
    state_nonces.update(zip(keys, nonce.tolist(), strict=True))
    n_orders.update(dict.fromkeys(keys, 1))
    used.update(zip(((x, kk, s) for (x, kk), s in zip(keys, sides, strict=True)), wh.tolist(),
                    strict=True))
    info.update(batch_info)
    bond_by = np.zeros(uniq.size, np.int64)
    np.add.at(bond_by, owner_ix, bond)
    esc_by = np.zeros(uniq.size, np.int64)
    np.add.at(esc_by, owner_ix, need)
    for o, b, x in zip(uniq.tolist(), bond_by.tolist(), esc_by.tolist(), strict=True):
        acc = accounts[o]
        if b:
            led._batch_bond[o] += b
            acc.free -= b
            acc.bond += b
        acc.free -= x
        acc.locked += x
    led._batch_info.update(batch_info)
    orders = led._orders
    orders.update(zip(ids, placed, strict=True))
    by_interval = led._orders_by_interval
    if np.all(k == k[0]):
        by_interval[int(k[0])].extend(ids)
    else:
        for i, kk in zip(ids, k.tolist(), strict=True):
            by_interval[kk].append(i)
    is_buy = buy.tolist()
    led._escrow.update((i, x) for i, x, b in zip(ids, need.tolist(), is_buy, strict=True) if b)
    led._next_order += n
    return placed
