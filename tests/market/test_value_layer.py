"""Value layer references: asset revenue shares, green certificates, demand response —
conservation and rounding properties (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.market import errors as e
from twin.market.types import Device, DeviceKind, Trade
from twin.market.units import payment
from twin.services.assets.rules import AssetLedger
from twin.services.certificates.rules import CertificateLedger
from twin.services.demand_response.rules import DemandResponseLedger

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("distribute"), st.integers(1, 10**9)),
        st.tuples(st.just("transfer"), st.integers(0, 4), st.integers(0, 4), st.integers(1, 500)),
        st.tuples(st.just("claim"), st.integers(0, 4)),
    ),
    max_size=40,
)


@given(total=st.integers(1, 10**6), ops=_ops)
@settings(max_examples=150, deadline=None)
def test_asset_revenue_is_conserved_and_never_overpaid(total: int, ops: list[tuple]) -> None:
    a = AssetLedger(asset_id=1, issuer=0, total_shares=total)
    paid = 0
    n_dist = 0
    for op in ops:
        if op[0] == "distribute":
            a.distribute(op[1])
            n_dist += 1
        elif op[0] == "transfer":
            if a.shares(op[1]) >= op[3]:
                a.transfer(op[1], op[2], op[3])
        else:
            paid += a.claim(op[1])
            assert a.claim(op[1]) == 0  # no double claim
    assert sum(a.shares(h) for h in range(5)) == total
    owed = sum(a.claimable(h) for h in range(5))
    dust = a.distributed - paid - owed
    assert dust == a.dust() and 0 <= dust <= 5 + n_dist  # floor: never favours a holder


def test_asset_pro_rata_and_transfer_keeps_past_revenue() -> None:
    a = AssetLedger(asset_id=7, issuer=0, total_shares=100)
    a.transfer(0, 1, 25)
    a.distribute(1_000_000)
    a.transfer(1, 2, 25)  # 1 keeps what it earned before selling
    a.distribute(1_000_000)
    assert (a.claimable(0), a.claimable(1), a.claimable(2)) == (1_500_000, 250_000, 250_000)
    with pytest.raises(e.InsufficientBalance):
        a.transfer(1, 0, 1)


def _dev(d: int, owner: int, kind: DeviceKind) -> Device:
    return Device(device_id=d, owner=owner, kind=kind, bus=0, capacity_w=10**6)


def _trade(tid: int, buyer: int, seller: int, wh: int) -> Trade:
    return Trade(tid, 0, tid, tid + 100, buyer, seller, wh, wh, 100)


def test_certificates_only_for_metered_renewable_delivery() -> None:
    devs = {1: _dev(1, 10, DeviceKind.PV), 2: _dev(2, 20, DeviceKind.LOAD),
            3: _dev(3, 30, DeviceKind.STORAGE), 4: _dev(4, 40, DeviceKind.LOAD)}  # fmt: skip
    c = CertificateLedger()
    trades = [_trade(1, 2, 1, 1500), _trade(2, 4, 1, 1200), _trade(3, 4, 3, 5000)]
    # PV seller metered only 2100 Wh injected: 1500 to trade 1, 600 to trade 2; storage: none
    minted = c.issue(0, trades, {1: -2100, 2: 1500, 3: -5000, 4: 6200}, devs)
    assert minted == {20: 1, 40: 1} and c.minted == 2  # 1500 -> 1 (+500 carry), 500+600 -> 1
    with pytest.raises(e.AlreadySettled):
        c.issue(0, trades, {1: -2100}, devs)
    assert c.issue(1, [_trade(4, 2, 1, 900)], {1: 0}, devs) == {}  # nothing metered: none
    c.transfer(20, 21, 0, 1)
    c.retire(21, 0, 1)
    with pytest.raises(e.InsufficientBalance):
        c.retire(21, 0, 1)
    assert (c.outstanding(), c.retired) == (1, 1)


@given(
    history=st.lists(st.integers(0, 3000), min_size=0, max_size=6),
    metered=st.integers(-500, 4000),
    commit=st.integers(1, 2000),
)
@settings(max_examples=100, deadline=None)
def test_demand_response_pays_metered_reduction_within_budget(
    history: list[int], metered: int, commit: int
) -> None:
    dr = DemandResponseLedger(baseline_n=4, devices={5: Device(5, 3, DeviceKind.LOAD, 1, 10_000)},
                              interval_s=900, clock=lambda: 0)
    for k, w in enumerate(history):
        dr.record_meter(5, 10 - len(history) + k, w)
    ev = dr.post_event(event_id=1, poster=1, interval=10, target_wh=2000, price_per_mwh=500_000_000)
    dr.commit(event_id=1, device_id=5, owner=3, reduction_wh=commit)
    payouts, refund = dr.settle_event(1, {5: metered})
    (p,) = payouts
    base = sum(history[-4:]) // len(history[-4:]) if history else 0
    assert p.baseline_wh == base
    assert p.reduction_wh == min(max(base - metered, 0), commit)
    assert p.amount == payment(p.reduction_wh, 500_000_000)
    assert p.amount + refund == ev.budget and refund >= 0 and dr.escrow == 0
    with pytest.raises(e.AlreadySettled):
        dr.settle_event(1, {5: metered})
