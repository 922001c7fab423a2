"""Pilot mechanisms' references: the green-token exchange (EU Scanergy), shared-charger
tariffs (Share&Charge), the green currency (Shanghai VPP) — identities that must hold
exactly on any sequence of operations (hypothesis), the rules, and their errors."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from twin.market import errors as e
from twin.market.types import DSO_ACCOUNT, Device, DeviceKind
from twin.market.units import payment
from twin.market.wallets import Wallets
from twin.services.charger_tariffs.rules import CONTRACT_WALLET, ChargerTariffs
from twin.services.green_currency.rules import DR, RENEWABLE, GreenCurrency
from twin.services.green_exchange.rules import WH_PER_TOKEN, GreenExchange

#: device -> (owner, kind)
DEVICES = {10: (2, DeviceKind.PV), 11: (3, DeviceKind.PV), 12: (4, DeviceKind.LOAD),
           13: (5, DeviceKind.LOAD), 14: (6, DeviceKind.STORAGE), 15: (6, DeviceKind.EV),
           16: (7, DeviceKind.EV)}  # fmt: skip
ACCOUNTS = range(1, 8)


def _devices() -> dict[int, Device]:
    return {d: Device(device_id=d, owner=o, kind=k, bus=0, capacity_w=11_000)
            for d, (o, k) in DEVICES.items()}  # fmt: skip


def _try(fn: Callable[[], object]) -> None:
    """Run an operation that may break a rule; a rule violation changes nothing."""
    try:
        fn()
    except e.MarketError:
        pass


def _wallets(each: int, *, dso_cash: int | None = None) -> Wallets:
    """Accounts 2-7 hold ``each``; the DSO ``dso_cash`` (None: no DSO wallet)."""
    money = Wallets()
    if dso_cash is not None:
        money.mint(DSO_ACCOUNT, dso_cash)
    for a in range(2, 8):
        money.mint(a, each)
    return money


# ------------------------------------------------------------------ green-token exchange
def _exchange(dso_cash: int = 10**9) -> tuple[GreenExchange, Wallets]:
    money = _wallets(5_000_000, dso_cash=dso_cash)
    ex = GreenExchange(devices=_devices(), money=money, buy_price_per_mwh=90_000_000,
                       sell_price_per_mwh=110_000_000)  # fmt: skip
    return ex, money


def test_green_tokens_whole_kwh_with_carry_never_rounded_up() -> None:
    ex, _ = _exchange()
    out = ex.record_meters(0, [(10, -1500), (12, 700), (14, -5000)])
    assert [(d.device_id, d.owner, d.injected_wh, d.tokens) for d in out] == [(10, 2, 1500, 1)]
    assert (ex.balance_of(2), ex.carry_wh(10), ex.balance_of(6)) == (1, 500, 0)  # storage: grey
    ex.record_meters(1, [(10, -499)])  # 999 Wh: still no second token
    assert (ex.balance_of(2), ex.carry_wh(10)) == (1, 999)
    ex.record_meters(2, [(10, -1)])
    assert (ex.balance_of(2), ex.carry_wh(10), ex.delivered_wh) == (2, 0, 2000)
    assert ex.uncovered_wh(12) == 700


def test_green_exchange_trades_at_fixed_prices_and_redeems_consumption() -> None:
    ex, money = _exchange()
    ex.record_meters(0, [(10, -3400), (12, 2500)])
    assert ex.sell(2, 3) == payment(3000, 90_000_000) == 270_000  # DSO buys the surplus
    assert (ex.balance_of(2), ex.balance_of(DSO_ACCOUNT)) == (0, 3)
    assert ex.buy(4, 2) == payment(2000, 110_000_000) == 220_000
    ex.redeem(12, 2, sender=4)
    assert (ex.green_supplied_wh(12), ex.uncovered_wh(12), ex.total_supply) == (2000, 500, 1)
    with pytest.raises(e.CapacityExceeded) as info:  # 500 Wh left: not a whole kWh
        ex.redeem(12, 1, sender=4)
    assert info.value.values == {"device": 12, "cap": 500, "requested": 1000}
    with pytest.raises(e.NotDeviceOwner):
        ex.redeem(12, 1, sender=5)
    with pytest.raises(e.InsufficientBalance) as info:  # DSO stock: 1 token
        ex.buy(5, 2)
    assert info.value.values == {"account": DSO_ACCOUNT, "needed": 2, "available": 1}
    assert money.balance_of(DSO_ACCOUNT) == 10**9 - 270_000 + 220_000


def test_green_exchange_at_a_market_rate() -> None:
    # the fixed prices are the special case of a rate the DSO never moves
    ex, money = _exchange()
    ex.record_meters(0, [(10, -3000)])
    with pytest.raises(e.NotDSO):
        ex.set_prices(50_000_000, 60_000_000, sender=2)
    with pytest.raises(e.BadPrice):
        ex.set_prices(0, 60_000_000)
    assert ex.sell(2, 1) == payment(1000, 90_000_000)
    ex.set_prices(45_000_000, 55_000_000)  # a token glut halves the rate
    assert ex.sell(2, 2) == payment(2000, 45_000_000)
    assert ex.buy(4, 3) == payment(3000, 55_000_000)
    assert money.balance_of(DSO_ACCOUNT) == 10**9 - 90_000 - 90_000 + 165_000


def test_green_exchange_errors() -> None:
    ex, _ = _exchange(dso_cash=100)
    with pytest.raises(e.NotDSO):
        ex.record_meters(0, [(10, -1000)], sender=4)
    ex.record_meters(0, [(10, -1000), (12, 10)])
    with pytest.raises(e.BadReadings) as info:  # a device counted twice in one interval
        ex.record_meters(0, [(13, 5), (12, 10)])
    assert info.value.values == {"position": 1}
    assert ex.uncovered_wh(13) == 0  # nothing of the rejected call was recorded
    with pytest.raises(e.UnknownDevice):
        ex.record_meters(1, [(99, -1000)])
    with pytest.raises(e.InsufficientBalance) as info:  # the DSO cannot pay 90,000
        ex.sell(2, 1)
    assert info.value.values == {"account": DSO_ACCOUNT, "needed": 90_000, "available": 100}
    with pytest.raises(e.BadAmount):
        ex.sell(2, 0)
    with pytest.raises(e.BadPrice):
        GreenExchange(devices={}, money=Wallets(), buy_price_per_mwh=0, sell_price_per_mwh=1)


_exchange_ops = st.lists(
    st.one_of(
        st.tuples(st.just("meters"), st.integers(0, 3),
                  st.dictionaries(st.sampled_from(sorted(DEVICES)), st.integers(-4000, 3000))),
        st.tuples(st.just("sell"), st.sampled_from(ACCOUNTS), st.integers(0, 5)),
        st.tuples(st.just("buy"), st.sampled_from(ACCOUNTS), st.integers(0, 5)),
        st.tuples(st.just("redeem"), st.sampled_from(sorted(DEVICES)), st.integers(0, 4)),
        st.tuples(st.just("transfer"), st.sampled_from(ACCOUNTS), st.sampled_from(ACCOUNTS),
                  st.integers(0, 3)),
    ),
    max_size=40,
)  # fmt: skip


@given(ops=_exchange_ops, dso_cash=st.integers(0, 2_000_000))
@example(ops=[("meters", 0, {11: -1000}), ("sell", 3, 1), ("sell", 1, 1)], dso_cash=180000)  # the DSO
@settings(max_examples=150, deadline=None)  # selling to itself counted a payment no one received
def test_green_exchange_identities(ops: list[tuple], dso_cash: int) -> None:
    ex, money = _exchange(dso_cash)
    total_money = money.total()
    consumed: dict[int, int] = {}
    for op in ops:
        if op[0] == "meters":
            readings = sorted(op[2].items())
            try:
                ex.record_meters(op[1], readings)
            except e.BadReadings:
                continue
            for d, w in readings:
                consumed[d] = consumed.get(d, 0) + max(w, 0)
        elif op[0] in ("sell", "buy"):
            _try(lambda o=op: getattr(ex, o[0])(o[1], o[2]))
        elif op[0] == "redeem":
            _try(lambda o=op: ex.redeem(o[1], o[2], sender=DEVICES[o[1]][0]))
        else:
            _try(lambda o=op: ex.transfer(o[1], o[2], o[3]))
    balances = sum(ex.balance_of(a) for a in ACCOUNTS)
    assert ex.total_supply == ex.minted - ex.redeemed == balances >= 0
    carries = [ex.carry_wh(d) for d in DEVICES]
    assert all(0 <= c < WH_PER_TOKEN for c in carries)
    assert WH_PER_TOKEN * ex.minted + sum(carries) == ex.delivered_wh  # green delivery, exactly
    assert money.balance_of(DSO_ACCOUNT) == dso_cash - ex.paid + ex.received
    assert money.total() == total_money  # the exchange moves money, never makes it
    for d in DEVICES:
        assert ex.uncovered_wh(d) + ex.green_supplied_wh(d) == consumed.get(d, 0)
    assert sum(ex.green_supplied_wh(d) for d in DEVICES) == WH_PER_TOKEN * ex.redeemed


# ------------------------------------------------------------------ shared-charger tariffs
def _chargers() -> tuple[ChargerTariffs, Wallets]:
    money = _wallets(3_000_000)
    ct = ChargerTariffs(devices=_devices(), money=money, tariff_min_per_mwh=100_000_000,
                        tariff_max_per_mwh=500_000_000)  # fmt: skip
    return ct, money


def test_tariff_change_applies_only_to_later_sessions() -> None:
    ct, money = _chargers()
    ct.set_tariff(15, 200_000_000, sender=6)
    ct.deposit(2, 2_000_000)
    s = ct.start_session(15, 10_000, driver=2)
    assert (s.price_per_mwh, s.locked, ct.escrow(2)) == (200_000_000, 2_000_000, (0, 2_000_000))
    ct.set_tariff(15, 400_000_000, sender=6)  # while the session runs
    done = ct.end_session(s.session_id, 7_250)
    assert (done.amount, done.open) == (payment(7_250, 200_000_000), False) == (1_450_000, False)
    assert ct.escrow(2) == (550_000, 0) and money.balance_of(6) == 3_000_000 + 1_450_000
    s2 = ct.start_session(15, 1_000, driver=2)
    assert (s2.session_id, s2.price_per_mwh, s2.locked) == (1, 400_000_000, 400_000)


def test_charger_tariff_errors() -> None:
    ct, _ = _chargers()
    with pytest.raises(e.NotACharger):
        ct.set_tariff(12, 200_000_000, sender=4)
    with pytest.raises(e.NotDeviceOwner):
        ct.set_tariff(15, 200_000_000, sender=7)
    with pytest.raises(e.TariffOutOfRange) as info:
        ct.set_tariff(15, 600_000_000, sender=6)
    assert info.value.values == {"charger": 15, "price": 600_000_000,
                                 "min_price": 100_000_000, "max_price": 500_000_000}
    with pytest.raises(e.NoTariff):
        ct.start_session(16, 1000, driver=2)
    ct.set_tariff(16, 100_000_000, sender=7)
    with pytest.raises(e.InsufficientBalance):  # no escrow yet
        ct.start_session(16, 1000, driver=2)
    ct.deposit(2, 100_000)
    s = ct.start_session(16, 1000, driver=2)
    with pytest.raises(e.ChargerBusy) as info:
        ct.start_session(16, 1000, driver=3)
    assert info.value.values == {"charger": 16, "session": s.session_id}
    with pytest.raises(e.NotDSO):
        ct.end_session(s.session_id, 10, sender=7)
    with pytest.raises(e.MeterOutOfRange):
        ct.end_session(s.session_id, 1001)
    ct.end_session(s.session_id, 1000)
    with pytest.raises(e.SessionClosed):  # paid once
        ct.end_session(s.session_id, 1000)
    with pytest.raises(e.UnknownSession):
        ct.end_session(5, 0)
    with pytest.raises(e.BadPrice):
        ChargerTariffs(devices={}, money=Wallets(), tariff_min_per_mwh=5, tariff_max_per_mwh=4)


_charger_ops = st.lists(
    st.one_of(
        st.tuples(st.just("tariff"), st.sampled_from([15, 16, 12]), st.sampled_from([6, 7]),
                  st.integers(50, 550).map(lambda p: p * 1_000_000)),
        st.tuples(st.just("deposit"), st.sampled_from(ACCOUNTS), st.integers(0, 1_500_000)),
        st.tuples(st.just("withdraw"), st.sampled_from(ACCOUNTS), st.integers(0, 1_500_000)),
        st.tuples(st.just("start"), st.sampled_from([15, 16]), st.sampled_from(ACCOUNTS),
                  st.integers(0, 8000)),
        st.tuples(st.just("end"), st.integers(0, 4), st.integers(-10, 9000)),
    ),
    max_size=40,
)  # fmt: skip


@given(ops=_charger_ops)
@settings(max_examples=150, deadline=None)
def test_charger_tariff_identities(ops: list[tuple]) -> None:
    ct, money = _chargers()
    total = money.total()
    earned: dict[int, int] = {}
    spent: dict[int, int] = {}
    for op in ops:
        if op[0] == "tariff":
            _try(lambda o=op: ct.set_tariff(o[1], o[3], sender=o[2]))
        elif op[0] in ("deposit", "withdraw"):
            _try(lambda o=op: getattr(ct, o[0])(o[1], o[2]))
        elif op[0] == "start":
            _try(lambda o=op: ct.start_session(o[1], o[3], driver=o[2]))
        else:
            try:
                s = ct.end_session(op[1], op[2])
            except e.MarketError:
                continue
            assert s.amount == payment(s.metered_wh, s.price_per_mwh) <= s.locked
            earned[s.owner] = earned.get(s.owner, 0) + s.amount
            spent[s.driver] = spent.get(s.driver, 0) + s.amount
    assert ct.holdings == sum(sum(ct.escrow(a)) for a in ACCOUNTS)
    assert ct.holdings == money.balance_of(CONTRACT_WALLET)
    assert money.total() == total  # sessions move money, never make it
    for a in ACCOUNTS:  # every driver paid exactly what its sessions' owners received
        start = 3_000_000 if a >= 2 else 0
        assert money.balance_of(a) + sum(ct.escrow(a)) == start + earned.get(a, 0) - spent.get(a, 0)


# ------------------------------------------------------------------------ green currency
def test_green_currency_awards_with_carry_and_erc20() -> None:
    gc = GreenCurrency(devices=_devices(), tokens_per_kwh_renewable=1_500_000,
                       tokens_per_kwh_dr=333)  # fmt: skip
    out = gc.reward_renewable(0, [(12, 1001), (15, 0)])
    assert [(a.owner, a.amount) for a in out] == [(4, 1_501_500), (6, 0)]
    gc.reward_dr(7, [(12, 2)])  # 2 * 333 = 666 -> 0 micro-tokens, carry 666
    gc.reward_dr(8, [(12, 2)])  # 666 + 666 = 1332 -> 1, carry 332
    assert (gc.balance_of(4), gc.carry(DR, 12), gc.carry(RENEWABLE, 12)) == (1_501_501, 332, 0)
    with pytest.raises(e.BadReadings):  # device 12 already rewarded for event 8
        gc.reward_dr(8, [(12, 5)])
    with pytest.raises(e.NotOperator):
        gc.reward_dr(9, [(12, 5)], sender=4)
    with pytest.raises(e.BadEnergy):
        gc.reward_dr(9, [(12, -5)])
    gc.approve(4, 5, 1000)
    with pytest.raises(e.AllowanceExceeded) as info:
        gc.transfer_from(5, 4, 7, 1001)
    assert info.value.values == {"owner": 4, "spender": 5, "needed": 1001, "available": 1000}
    gc.transfer_from(5, 4, 7, 400)
    gc.burn(7, 100)
    assert (gc.balance_of(7), gc.allowance(4, 5), gc.total_supply) == (300, 600, 1_501_401)


_currency_ops = st.lists(
    st.one_of(
        st.tuples(st.just("reward"), st.sampled_from([RENEWABLE, DR]), st.integers(0, 3),
                  st.dictionaries(st.sampled_from(sorted(DEVICES)), st.integers(0, 5000))),
        st.tuples(st.just("transfer"), st.sampled_from(ACCOUNTS), st.sampled_from(ACCOUNTS),
                  st.integers(0, 10**6)),
        st.tuples(st.just("burn"), st.sampled_from(ACCOUNTS), st.integers(0, 10**6)),
    ),
    max_size=30,
)  # fmt: skip


@given(rates=st.tuples(st.integers(0, 10**7), st.integers(0, 10**7)), ops=_currency_ops)
@settings(max_examples=150, deadline=None)
def test_green_currency_identities(rates: tuple[int, int], ops: list[tuple]) -> None:
    gc = GreenCurrency(devices=_devices(), tokens_per_kwh_renewable=rates[0],
                       tokens_per_kwh_dr=rates[1])  # fmt: skip
    awarded: dict[tuple[int, int], int] = {}  # (reason, device) -> Wh
    minted: dict[tuple[int, int], int] = {}
    for op in ops:
        if op[0] == "reward":
            fn = gc.reward_renewable if op[1] == RENEWABLE else gc.reward_dr
            try:
                out = fn(op[2], sorted(op[3].items()))
            except e.BadReadings:
                continue
            for a in out:
                awarded[(a.reason, a.device_id)] = awarded.get((a.reason, a.device_id), 0) + a.energy_wh
                minted[(a.reason, a.device_id)] = minted.get((a.reason, a.device_id), 0) + a.amount
        elif op[0] == "transfer":
            _try(lambda o=op: gc.transfer(o[1], o[2], o[3]))
        else:
            _try(lambda o=op: gc.burn(o[1], o[2]))
    assert gc.total_supply == gc.minted - gc.burned == sum(gc.balance_of(a) for a in ACCOUNTS)
    for (reason, dev), wh in awarded.items():  # floor with carry: exact over time
        assert 1000 * minted[(reason, dev)] + gc.carry(reason, dev) == wh * rates[reason]
