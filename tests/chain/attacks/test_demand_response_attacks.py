"""Attacks of issue #19 on demand response, on a real node and in the reference alike:
a 1 W device squats a whole event (refused: a commitment is capped by the device's energy
in the interval); a commitment sent once the event interval's metering has begun (refused:
commitments close at the interval's start); a device that commits and does not deliver
(it pays a penalty from its bond to the poster)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.chain.conftest import Ledger
from twin.chain.clients import ChainWallets
from twin.chain.ledger import ChainLedger
from twin.market import errors as e
from twin.market.types import DSO_ACCOUNT, Device, DeviceKind
from twin.market.units import payment
from twin.services.demand_response.chain import ChainDemandResponse
from twin.services.demand_response.rules import DemandResponseLedger

pytestmark = pytest.mark.chain

TINY, OWNER = 40, 3  # a 4 W device of account 3: 1 Wh per 15-min interval
HONEST = 13  # account 3's 11 kW device (2,750 Wh per interval)
PRICE = 200 * 10**6
EVENT_K = 4


def _dr(led: Ledger, *, penalty_bps: int) -> Any:
    if isinstance(led, ChainLedger):
        w = ChainWallets(led)
        w.mint(DSO_ACCOUNT, 10_000_000)
        w.mint(OWNER, 10_000_000)
        return ChainDemandResponse.deploy(led, baseline_n=3, posters=(DSO_ACCOUNT,),
                                          mint_funds=False, penalty_bps=penalty_bps)
    return DemandResponseLedger(baseline_n=3, posters={DSO_ACCOUNT}, devices=led.device,
                                interval_s=led.interval_s, clock=lambda: led.now_s,
                                penalty_bps=penalty_bps)  # fmt: skip


def _wallet(led: Ledger, account: int) -> int | None:
    return ChainWallets(led).balance_of(account) if isinstance(led, ChainLedger) else None


def test_dr_squat_late_commit_and_non_delivery(ledger: Ledger) -> None:
    ledger.register_device(Device(TINY, OWNER, DeviceKind.LOAD, 3, capacity_w=4))
    dr = _dr(ledger, penalty_bps=5_000)
    for k in range(1, EVENT_K):
        dr.record_meters(k, {HONEST: 1_000, TINY: 1})
    dr.post_event(event_id=1, poster=DSO_ACCOUNT, interval=EVENT_K, target_wh=2_000,
                  price_per_mwh=PRICE)  # fmt: skip
    # squat: the 4 W device claims the whole target
    with pytest.raises(e.CapacityExceeded) as caught:
        dr.commit(event_id=1, device_id=TINY, owner=OWNER, reduction_wh=2_000)
    assert caught.value.values == {"device": TINY, "cap": 1, "requested": 2_000}
    owner_before = _wallet(ledger, OWNER)
    bond = dr.commit(event_id=1, device_id=HONEST, owner=OWNER, reduction_wh=600)
    assert bond == payment(600, PRICE) // 2 > 0
    # late: the event interval's delivery has begun
    ledger.set_time(EVENT_K * ledger.interval_s)
    with pytest.raises(e.CommitClosed) as late:
        dr.commit(event_id=1, device_id=TINY, owner=OWNER, reduction_wh=1)
    assert late.value.values["close"] == EVENT_K * ledger.interval_s
    # non-delivery: baseline 1,000 Wh, metered 800 Wh -> 200 of 600 Wh delivered
    payouts, refund = dr.settle_event(1, {HONEST: 800})
    (p,) = payouts
    assert (p.reduction_wh, p.amount) == (200, payment(200, PRICE))
    assert p.penalty == payment(400, PRICE) // 2
    assert refund == payment(2_000, PRICE) - p.amount
    assert dr.escrow == 0
    if owner_before is not None:  # on chain: the owner got its pay and bond less the penalty
        assert _wallet(ledger, OWNER) == owner_before + p.amount - p.penalty
        assert ledger.token.functions.balanceOf(dr.contract.address).call() == 0
