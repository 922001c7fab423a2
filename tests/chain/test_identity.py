"""Device identity on both ledgers: EIP-712 signed orders and meter readings, forged,
tampered and replayed ones rejected with the same custom error; malformed orders rejected
before sending; a failed transaction never booked."""

from __future__ import annotations

from typing import Any

import pytest

from tests._orders import buy, sell
from tests._orders import cleared as _cleared
from tests._orders import raises as _raises
from twin.chain.ledger import ChainLedger
from twin.market import errors as e
from twin.market.signing import ZERO_ADDRESS, DeviceKey, SignedOrder
from twin.market.types import Balance, Device, DeviceKind, Side
from twin.market.units import DEVICE_LIMIT, ENERGY_MAX_WH, INTERVAL_LIMIT, PRICE_MAX, payment

pytestmark = pytest.mark.chain
KEYS = {d: DeviceKey.from_seed(d) for d in range(12, 18)}






def _keyed(led: Any) -> Any:
    for d, k in KEYS.items():
        led.set_device_signer(d, k.address)
    return led


def test_signed_orders_keep_device_identity(ledger: Any) -> None:
    _keyed(ledger)
    assert ledger.device_signer(12) == KEYS[12].address
    signed = [
        KEYS[12].sign_order(buy(12, 2000, 120_000_000), nonce=1, domain=ledger.domain),
        KEYS[12].sign_order(buy(12, 500, 110_000_000), nonce=2, domain=ledger.domain),
        KEYS[14].sign_order(sell(14, 2500, 90_000_000), nonce=7, domain=ledger.domain),
    ]
    orders = ledger.place_signed_orders(signed)
    assert [(o.order_id, o.owner, o.side, o.device_id) for o in orders] == [
        (1, 2, Side.BUY, 12), (2, 2, Side.BUY, 12), (3, 4, Side.SELL, 14),
    ]  # fmt: skip
    assert ledger.orders(0) == orders
    esc = payment(2000, 120_000_000) + payment(500, 110_000_000)
    assert ledger.balance(2) == Balance(free=10_000_000 - esc, locked=esc, debt=0)
    clearing = ledger.clear(0)
    assert clearing.volume_wh == 2500


def test_pipelined_group_checked_once(chain_ledger: ChainLedger) -> None:
    """A group relayed in several submit_signed_orders calls (bench/chain.py's pipeline):
    checked once up front, the same orders booked; a malformed group is refused unsent."""
    led = _keyed(chain_ledger)
    signed = [KEYS[12].sign_order(buy(12, 100, 120_000_000), nonce=1, domain=led.domain),
              KEYS[14].sign_order(sell(14, 100, 90_000_000), nonce=1, domain=led.domain)]
    sent = len(led.transactions)
    err = _raises(e.IntervalClosed, lambda: led.check_signed_group(
        [so.intent for so in signed] + [buy(12, 1, 1, interval=-1)]), interval=-1)
    assert err.pre_send and len(led.transactions) == sent
    led.check_signed_group([so.intent for so in signed])
    first, second = (led.submit_signed_orders([so], checked=True) for so in signed)
    orders = led.confirm(first) + led.confirm(second)
    assert [(o.device_id, o.side) for o in orders] == [(12, Side.BUY), (14, Side.SELL)]
    assert led.orders(0) == orders


def test_forged_tampered_replayed_orders(ledger: Any) -> None:
    _keyed(ledger)
    dom = ledger.domain
    good = KEYS[13].sign_order(sell(13, 100, 90_000_000), nonce=5, domain=dom)
    forged = KEYS[14].sign_order(sell(13, 100, 90_000_000), nonce=5, domain=dom)
    _raises(e.BadSignature, lambda: ledger.place_signed_orders([forged]), device=13)
    tampered = SignedOrder(intent=sell(13, 101, 90_000_000), nonce=5, signature=good.signature)
    _raises(e.BadSignature, lambda: ledger.place_signed_orders([tampered]), device=13)
    high_s = bytearray(good.signature)
    high_s[32] |= 0x80  # s above n/2: malleable form, refused
    _raises(
        e.BadSignature,
        lambda: ledger.place_signed_orders(
            [SignedOrder(intent=good.intent, nonce=5, signature=bytes(high_s))]
        ),
        device=13,
    )
    ledger.place_signed_orders([good])
    _raises(
        e.ReplayedNonce, lambda: ledger.place_signed_orders([good]), device=13, interval=0, nonce=5
    )
    older = KEYS[13].sign_order(sell(13, 1, 90_000_000), nonce=4, domain=dom)
    _raises(
        e.ReplayedNonce, lambda: ledger.place_signed_orders([older]), device=13, interval=0, nonce=4
    )
    # the same nonce is fine in another interval; a batch must raise its nonces itself
    ledger.place_signed_orders(
        [KEYS[13].sign_order(sell(13, 1, 90_000_000, interval=1), nonce=5, domain=dom)]
    )
    twice = KEYS[15].sign_order(buy(15, 1, 1), nonce=1, domain=dom)
    _raises(
        e.ReplayedNonce,
        lambda: ledger.place_signed_orders([twice, twice]),
        device=15,
        interval=0,
        nonce=1,
    )
    ledger.set_device_signer(16, ZERO_ADDRESS)  # no key bound: cannot sign for it
    _raises(
        e.BadSignature,
        lambda: ledger.place_signed_orders(
            [KEYS[16].sign_order(buy(16, 1, 1), nonce=1, domain=dom)]
        ),
        device=16,
    )
    ledger.revoke_device(17)
    _raises(
        e.DeviceRevoked,
        lambda: ledger.place_signed_orders(
            [KEYS[17].sign_order(buy(17, 1, 1), nonce=1, domain=dom)]
        ),
        device=17,
    )
    _raises(e.NotDSO, lambda: ledger.set_device_signer(12, KEYS[13].address, sender=2), account=2)
    # nothing failed was booked; the first of ``twice`` was (a failing order skips itself only)
    assert [o.device_id for o in ledger.orders(0)] == [13, 15]
    assert ledger.balance(5) == Balance(free=10_000_000 - payment(1, 1), locked=payment(1, 1), debt=0)


def test_malformed_orders_rejected_before_sending(ledger: Any) -> None:
    sent = len(ledger.transactions) if isinstance(ledger, ChainLedger) else 0
    batch = [buy(12, 10, 1), buy(13, 0, 1), sell(14, 5, PRICE_MAX + 1), buy(99, 1, 1)]
    err = _raises(e.BadEnergy, lambda: ledger.place_orders(batch), device=13, energy=0)
    assert err.pre_send
    text = str(err)
    assert "rejected before sending" in text and "3 malformed of 4" in text
    assert "BadPrice(device=14" in text and "UnknownDevice(device=99)" in text
    _raises(
        e.IntervalClosed, lambda: ledger.place_orders([buy(12, 1, 1, interval=-1)]), interval=-1
    )
    # an order is stored in 128 bits (OrderWords.sol): energy, interval and device ids are bounded
    too_much = buy(12, ENERGY_MAX_WH + 1, 1)
    _raises(e.BadEnergy, lambda: ledger.place_orders([too_much]), device=12, energy=ENERGY_MAX_WH + 1)
    late = buy(12, 1, 1, interval=INTERVAL_LIMIT)
    _raises(e.IntervalClosed, lambda: ledger.place_orders([late]), interval=INTERVAL_LIMIT)
    if isinstance(ledger, ChainLedger):
        assert len(ledger.transactions) == sent  # nothing was sent


def test_malformed_order_reverts_on_chain_with_custom_error(chain_ledger: ChainLedger) -> None:
    """Bypassing the pre-send check, the contract itself reverts with the custom error."""
    led = chain_ledger
    for bad, err, values in (
        ((13, 0, 0, -5, 1), e.BadEnergy, {"device": 13, "energy": -5}),
        ((13, 0, 0, 5, PRICE_MAX + 1), e.BadPrice, {"device": 13, "price": PRICE_MAX + 1}),
        ((77, 0, 0, 5, 1), e.UnknownDevice, {"device": 77}),
        ((13, 0, 0, ENERGY_MAX_WH + 1, 1), e.BadEnergy, {"device": 13, "energy": ENERGY_MAX_WH + 1}),
        ((13, INTERVAL_LIMIT, 0, 5, 1), e.IntervalClosed, {"interval": INTERVAL_LIMIT}),
    ):
        with pytest.raises(err) as info:
            led._transact(led.market, "placeOrders", [[bad]], sender=3, purpose="raw placeOrders")
        assert info.value.values == values and info.value.tx_hash
        assert led.transactions[-1].status == 0
    assert led.orders(0) == []


def test_device_ids_below_the_limit(ledger: Any) -> None:
    """Both ledgers refuse to register a device id an order could not store (30 bits)."""
    big = Device(device_id=DEVICE_LIMIT, owner=2, kind=DeviceKind.PV, bus=0, capacity_w=1000)
    _raises(e.DeviceIdRange, lambda: ledger.register_device(big), device=DEVICE_LIMIT, limit=DEVICE_LIMIT)


def test_signed_meter_readings(ledger: Any) -> None:
    _keyed(ledger)
    _cleared(ledger)  # devices 12, 13 buy, 14 sells; price P
    dom = ledger.domain
    reading = {12: 2000, 13: 500, 14: -2500}
    good = [
        KEYS[d].sign_reading(device_id=d, interval=0, metered_wh=w, domain=dom)
        for d, w in reading.items()
    ]
    forged = KEYS[12].sign_reading(device_id=13, interval=0, metered_wh=500, domain=dom)
    _raises(e.BadSignature, lambda: ledger.settle_signed(0, [good[0], forged, good[2]]), device=13)
    stale = KEYS[14].sign_reading(device_id=14, interval=1, metered_wh=-2500, domain=dom)
    _raises(e.BadSignature, lambda: ledger.settle_signed(0, [*good[:2], stale]), device=14)
    too_much = KEYS[14].sign_reading(device_id=14, interval=0, metered_wh=-2751, domain=dom)
    _raises(
        e.MeterOutOfRange, lambda: ledger.settle_signed(0, [*good[:2], too_much]),
        device=14, cap=2750, metered=-2751,
    )  # fmt: skip
    _raises(e.NotOperator, lambda: ledger.settle_signed(0, good, sender=2), account=2)
    rows = ledger.settle_signed(0, list(reversed(good)))
    assert [r.device_id for r in rows] == [12, 13, 14]
    assert [r.metered_wh for r in rows] == [2000, 500, -2500]
    _raises(e.AlreadySettled, lambda: ledger.settle_signed(0, good), interval=0)


def test_signed_equals_unsigned_path(chain_ledger: ChainLedger) -> None:
    """Chunked, pipelined relaying books the same orders as one transaction would."""
    led = _keyed(chain_ledger)
    signed = [
        KEYS[d].sign_order(sell(d, 10 + n, 90_000_000 + n), nonce=n + 1, domain=led.domain)
        for n in range(4)
        for d in (13, 14, 15)
    ]
    orders = led.place_signed_orders(signed, chunk_size=5)
    assert [o.order_id for o in orders] == list(range(1, 13))
    assert [t.function for t in led.transactions[-3:]] == ["EnergyMarket.placeSignedOrders"] * 3
    assert led.orders(0) == orders
