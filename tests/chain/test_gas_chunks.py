"""Chunks sized by gas (twin/chain/gas_size.py): a relayed batch of signed orders whose
chunk runs out of gas is split and sent again, in order, and no order is lost."""

from __future__ import annotations

import pytest

from twin.chain.gas_size import GasSizer
from twin.chain.ledger import ChainLedger
from twin.market.clearing import match_orders
from twin.market.signing import DeviceKey
from twin.market.types import OrderIntent, Side

pytestmark = pytest.mark.chain


def test_sizer_fills_the_budget_from_receipts() -> None:
    s = GasSizer(gas_limit=30_000_000)
    assert s.size("order", 200) == 200 and s.take("order", [1] * 500, 200) == 200  # no receipt
    s.learn("order", items=200, gas_used=21_000 + 200 * 60_000)
    assert s.size("order", 200) == 24_000_000 // 60_000
    s.learn("order", items=400, gas_used=21_000 + 400 * 50_000)  # covers every receipt seen
    assert s.size("order", 200) == 400
    s.out_of_gas("order", items=300, gas_limit=30_000_000)  # 100k an order at least now
    assert s.size("order", 200) == 240
    assert s.fits({"order": (240, 0)}) and not s.fits({"order": (241, 0)})
    assert s.fits({"order": (1, 0), "clear_id": (1, 0)}) is None
    # an item and its dear part (a device's first order of the interval) fitted apart
    t = GasSizer(gas_limit=30_000_000)
    t.learn("order", items=100, extras=100, gas_used=21_000 + 100 * 70_000)
    t.learn("order", items=300, extras=50, gas_used=21_000 + 300 * 50_000 + 50 * 20_000)
    a, b = t.model("order") or (0, 0)
    assert a == pytest.approx(50_000) and b == pytest.approx(20_000)
    assert t.take("order", [0] * 1000, 200) == 480 and t.take("order", [1] * 1000, 200) == 342
    with pytest.raises(ValueError, match="gas_limit"):
        GasSizer(gas_limit=0)


def test_out_of_gas_chunk_is_split_and_no_order_lost(chain_ledger: ChainLedger) -> None:
    led = chain_ledger
    keys = {d: DeviceKey.from_seed(f"gas-chunks-{d}") for d in range(12, 18)}
    for d, k in keys.items():
        led.set_device_signer(d, k.address)
    intents = [
        OrderIntent(device_id=d, interval=10, side=Side.SELL if d < 15 else Side.BUY,
                    energy_wh=10 + n, price_per_mwh=(90 + n) * 1_000_000)
        for n in range(13) for d in range(12, 18)
    ]  # 78 orders, 13 per device (each device's nonces rise through the batch)
    signed = [keys[it.device_id].sign_order(it, nonce=1 + n // 6, domain=led.domain)
              for n, it in enumerate(intents)]
    led.tx.tx_gas = 2_000_000  # a small "block": the whole batch needs ~2.5 M gas
    led.gas_sizes.learn("order", items=100, gas_used=21_000 + 100 * 5_000)  # far too low
    assert led.signed_order_chunk(intents) == len(signed)  # so one chunk carries them all
    placed = led.place_signed_orders(signed)
    assert led.rejected == []
    assert [(o.device_id, o.energy_wh) for o in placed] == [
        (it.device_id, it.energy_wh) for it in intents]  # every order, in the batch's order
    assert [o.order_id for o in placed] == sorted(o.order_id for o in placed)
    assert [(o.device_id, o.energy_wh) for o in led.orders(10)] == [
        (it.device_id, it.energy_wh) for it in intents]
    txs = [t for t in led.transactions if t.function.endswith("placeSignedOrders")]
    assert txs[0].status == 0 and txs[0].gas_used >= 2_000_000 * 63 // 64  # ran out, split
    assert all(t.status == 1 for t in txs[1:]) and len(txs) >= 3
    per = led.gas_sizes.per_item("order")
    assert per is not None and per >= 2_000_000 / 78  # learned: an order costs more
    assert led.signed_order_chunk() < len(signed)


def test_clearing_out_of_gas_resumes_with_smaller_chunks(chain_ledger: ChainLedger) -> None:
    """Chunks sized by gas go one at a time: one that runs out of gas is resumed from the
    cursor with smaller chunks (none after it ran on a half-verified book)."""
    led = chain_ledger
    intents = [
        OrderIntent(device_id=d, interval=10, side=Side.SELL if d < 15 else Side.BUY,
                    energy_wh=20 + n, price_per_mwh=(80 + 3 * n + d) * 1_000_000)
        for n in range(12) for d in range(12, 18)
    ]
    for k in range(0, len(intents), 24):
        led.place_orders(intents[k : k + 24])
    expected = match_orders(led.orders(10))
    led.tx.tx_gas = 1_500_000
    led.gas_sizes.learn("clear_id", items=100, gas_used=21_000 + 100 * 1_000)  # far too low
    led.gas_sizes.learn("clear_trade", items=100, gas_used=21_000 + 100 * 1_000)
    got = led.clear(10)
    assert (got.price_per_mwh, got.volume_wh) == (expected.price_per_mwh, expected.volume_wh)
    assert len(got.trades) == len(expected.fills) > 0
    txs = [t for t in led.transactions if ".clear" in t.function]
    assert txs[0].status == 0 and txs[-1].status == 1 and len(txs) >= 3
    assert led.interval_status(10) == "cleared"
