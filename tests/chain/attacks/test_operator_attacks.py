"""Attacks of issue #19 by the market operator, performed on a real node as ``twin run`` sets
the market up (device keys bound, the operator no one's order agent), each shown to fail:
trading on a victim's device, and settling a forged meter reading. The reference refuses the
same with the same error."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.chain.conftest import setup_market
from twin.chain.ledger import ChainLedger
from twin.market import errors as e
from twin.market.device_signers import DeviceSigners
from twin.market.reference import ReferenceLedger
from twin.market.signing import DeviceKey
from twin.market.types import OPERATOR_ACCOUNT, OrderIntent, Side
from twin.market.units import PRICE_MAX

pytestmark = pytest.mark.chain

VICTIM_DEVICE = 12  # account 2's PV (setup_market)


def _run_like(led: ChainLedger | ReferenceLedger) -> DeviceSigners:
    setup_market(led)
    signers = DeviceSigners(seed="attack", device_ids=range(12, 18))
    signers.bind(led)
    return signers


@pytest.fixture
def run_ledger(deploy: Callable[..., ChainLedger]) -> ChainLedger:
    led = deploy()
    led.operator_is_agent = False
    return led


def test_operator_cannot_trade_on_a_victims_device(run_ledger: ChainLedger) -> None:
    theft = OrderIntent(device_id=VICTIM_DEVICE, interval=3, side=Side.BUY, energy_wh=2000,
                        price_per_mwh=PRICE_MAX)
    ref = ReferenceLedger(interval_s=run_ledger.interval_s,
                          retail_price_per_mwh=run_ledger.retail_price_per_mwh,
                          feed_in_price_per_mwh=run_ledger.feed_in_price_per_mwh)
    for led in (run_ledger, ref):
        signers = _run_like(led)
        with pytest.raises(e.NotDeviceOwner) as caught:  # as the owner's agent: refused
            led.place_orders([theft], sender=OPERATOR_ACCOUNT)
        assert caught.value.values == {"device": VICTIM_DEVICE, "account": OPERATOR_ACCOUNT}
        forged = DeviceKey.from_seed("the operator's own key").sign_order(
            theft, nonce=1, domain=led.domain)
        with pytest.raises(e.BadSignature):  # with a signature of its own: refused
            led.place_signed_orders([forged])
        # what the device itself signed goes through, relayed by the operator
        [order] = led.place_signed_orders(signers.sign_orders(
            [OrderIntent(device_id=VICTIM_DEVICE, interval=3, side=Side.SELL, energy_wh=500,
                         price_per_mwh=100_000_000)], domain=led.domain))
        assert order.owner == 2


def test_operator_cannot_forge_a_meter_reading(run_ledger: ChainLedger) -> None:
    ref = ReferenceLedger(interval_s=run_ledger.interval_s,
                          retail_price_per_mwh=run_ledger.retail_price_per_mwh,
                          feed_in_price_per_mwh=run_ledger.feed_in_price_per_mwh)
    for led in (run_ledger, ref):
        signers = _run_like(led)
        led.place_signed_orders(signers.sign_orders([
            OrderIntent(device_id=13, interval=2, side=Side.SELL, energy_wh=1000,
                        price_per_mwh=100_000_000),
            OrderIntent(device_id=VICTIM_DEVICE, interval=2, side=Side.BUY, energy_wh=1000,
                        price_per_mwh=150_000_000)], domain=led.domain))
        led.set_time(led.gate_s(2))
        led.clear(interval=2)
        led.set_time(3 * led.interval_s)
        readings = signers.sign_readings(interval=2, metered_wh={13: -1000, VICTIM_DEVICE: 1000},
                                         domain=led.domain)
        evil = DeviceKey.from_seed("operator").sign_reading(
            device_id=VICTIM_DEVICE, interval=2, metered_wh=40_000_000, domain=led.domain)
        with pytest.raises(e.BadSignature) as caught:
            led.settle_signed(2, [evil, readings[1]])
        assert caught.value.values == {"device": VICTIM_DEVICE}
        rows = led.settle_signed(2, readings)
        assert {r.device_id: r.metered_wh for r in rows} == {13: -1000, VICTIM_DEVICE: 1000}
