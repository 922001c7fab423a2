"""Property: no sequence of market operations creates or destroys value (hypothesis)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from twin.market.errors import MarketError
from twin.market.reference import ReferenceLedger
from twin.market.types import Device, DeviceKind, OrderIntent, Side

ACCOUNTS = range(0, 7)
DEVICES = {10 + k: 2 + k % 5 for k in range(8)}  # device -> owner (some own two)


def _check(led: ReferenceLedger, minted: int) -> None:
    holdings = sum(led.balance(a).free + led.balance(a).locked for a in ACCOUNTS)
    wallets = sum(led.wallet(a) for a in ACCOUNTS)
    assert led.market_holdings() == holdings
    assert led.total_supply() == wallets + holdings == minted
    assert all(led.balance(a).free >= 0 and led.balance(a).locked >= 0 for a in ACCOUNTS)


@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_random_operations_conserve_tokens(data: st.DataObject) -> None:
    led = ReferenceLedger(
        interval_s=data.draw(st.sampled_from([300, 900, 3600])),
        retail_price_per_mwh=data.draw(st.integers(0, 400_000_000)),
        feed_in_price_per_mwh=data.draw(st.integers(0, 200_000_000)),
    )
    for dev, owner in DEVICES.items():
        led.register_device(
            Device(
                device_id=dev,
                owner=owner,
                kind=DeviceKind.PV,
                bus=0,
                capacity_w=data.draw(st.integers(1, 20_000)),
            )
        )
    minted = 0
    for _ in range(data.draw(st.integers(1, 40))):
        op = data.draw(
            st.sampled_from(["deposit", "withdraw", "orders", "clear", "curtail", "settle"])
        )
        interval = data.draw(st.integers(0, 3))
        try:
            if op == "deposit":
                amount = data.draw(st.integers(-5, 3_000_000))
                led.deposit(data.draw(st.sampled_from(list(ACCOUNTS))), amount)
                minted += amount
            elif op == "withdraw":
                led.withdraw(
                    data.draw(st.sampled_from(list(ACCOUNTS))),
                    data.draw(st.integers(-5, 3_000_000)),
                )
            elif op == "orders":
                intents = data.draw(
                    st.lists(
                        st.builds(
                            OrderIntent,
                            device_id=st.sampled_from(list(DEVICES)),
                            interval=st.just(interval),
                            side=st.sampled_from(list(Side)),
                            energy_wh=st.integers(-1, 6000),
                            price_per_mwh=st.integers(0, 500_000_000),
                        ),
                        max_size=8,
                    )
                )
                led.place_orders(intents)
            elif op == "clear":
                led.clear(interval)
            elif op == "curtail":
                trades = led.trades(interval)
                if trades:
                    t = data.draw(st.sampled_from(trades))
                    led.curtail(t.trade_id, data.draw(st.integers(0, t.energy_wh)))
            else:
                metered = {
                    d: data.draw(st.integers(-8000, 8000))
                    for d in DEVICES
                    if data.draw(st.booleans())
                }
                for t in led.trades(interval):
                    metered.setdefault(t.buyer_device, t.energy_wh)
                    metered.setdefault(t.seller_device, -t.energy_wh)
                led.settle(interval, metered)
        except MarketError:
            pass
        _check(led, minted)
    # settling everything releases every lock of a settled or unmatched order
    for interval in range(4):
        if led.interval_status(interval) == "open":
            led.clear(interval)
        if led.interval_status(interval) == "cleared":
            led.settle(interval, {d: 0 for d in DEVICES})
    _check(led, minted)
    assert all(led.balance(a).locked == 0 for a in ACCOUNTS)
