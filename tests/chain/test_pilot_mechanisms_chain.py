"""The pilot mechanisms on chain equal their references (hypothesis, real Anvil, one snapshot
per example): GreenTokenExchange vs GreenExchange, ChargerTariffs vs ChargerTariffs,
GreenCurrency vs GreenCurrency — result for result, error for error, money for money."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from tests.chain._helpers import both_call, devices, module_ledger, reverted
from twin.chain.anvil import AnvilNode
from twin.chain.clients import ChainWallets
from twin.chain.compile import CompiledContracts
from twin.chain.ledger import ChainLedger
from twin.market import errors as e
from twin.market.types import DSO_ACCOUNT, OPERATOR_ACCOUNT, Device, DeviceKind
from twin.market.wallets import Wallets
from twin.services.charger_tariffs.chain import ChainChargerTariffs
from twin.services.charger_tariffs.rules import CONTRACT_WALLET, ChargerTariffs
from twin.services.green_currency.chain import ChainGreenCurrency
from twin.services.green_currency.rules import DR, RENEWABLE, GreenCurrency
from twin.services.green_exchange.chain import ChainGreenExchange
from twin.services.green_exchange.rules import GreenExchange

pytestmark = pytest.mark.chain
#: device -> (owner, kind)
DEVICES = {40: (2, DeviceKind.PV), 41: (3, DeviceKind.PV), 42: (4, DeviceKind.LOAD),
           43: (5, DeviceKind.LOAD), 44: (6, DeviceKind.STORAGE), 45: (6, DeviceKind.EV),
           46: (7, DeviceKind.EV)}  # fmt: skip
ACCOUNTS = range(1, 8)
SLOW = settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _devices() -> dict[int, Device]:
    return devices(DEVICES, bus=0)


def _register(led: ChainLedger) -> None:
    for dev in _devices().values():
        led.register_device(dev)


@pytest.fixture(scope="module")
def base(anvil: AnvilNode, compiled: CompiledContracts) -> Iterator[tuple[AnvilNode, ChainLedger]]:
    yield from module_ledger(anvil, compiled, setup=_register)


def _money(led: ChainLedger, cash: dict[int, int]) -> tuple[ChainWallets, Wallets]:
    """The same wallets on chain (minted) and in the reference (chain's balance + cash)."""
    chain, ref = ChainWallets(led), Wallets()
    for a in [*ACCOUNTS, OPERATOR_ACCOUNT]:
        ref.mint(a, led.wallet(a) + cash.get(a, 0))
        if cash.get(a):
            chain.mint(a, cash[a])
    return chain, ref


# ------------------------------------------------------------------ green-token exchange
_readings = st.lists(
    st.tuples(st.sampled_from([*DEVICES, 99]), st.one_of(st.integers(-4000, -900),
                                                         st.integers(-899, 3000))),
    max_size=6,
).map(lambda rows: sorted(dict(rows).items()) if len(rows) % 3 else rows)  # mostly ascending
_exchange_ops = st.lists(
    st.one_of(
        st.tuples(st.just("meters"), st.integers(0, 2), _readings, st.sampled_from([1, 2, 250])),
        st.tuples(st.just("sell"), st.sampled_from(ACCOUNTS), st.integers(-1, 4)),
        st.tuples(st.just("buy"), st.sampled_from(ACCOUNTS), st.integers(-1, 4)),
        st.tuples(st.just("redeem"), st.sampled_from([*DEVICES, 99]), st.sampled_from(ACCOUNTS),
                  st.integers(0, 3)),
        st.tuples(st.just("transfer"), st.sampled_from(ACCOUNTS), st.sampled_from(ACCOUNTS),
                  st.integers(0, 3)),
    ),
    max_size=14,
)  # fmt: skip


@st.composite
def _exchange_scenario(draw: st.DrawFn) -> list[tuple]:
    """A coherent day (injection, sales to the DSO, purchases, redemption), then random ops."""
    ops: list[tuple] = []
    for k in range(draw(st.integers(1, 2))):
        ranges = {DeviceKind.PV: (-3500, -1000), DeviceKind.LOAD: (800, 3000)}
        rows = {d: draw(st.integers(*ranges.get(kind, (-300, 3000))))
                for d, (_, kind) in DEVICES.items()}  # fmt: skip
        ops.append(("meters", k, sorted(rows.items()), draw(st.sampled_from([2, 250]))))
    ops += [("sell", a, draw(st.integers(1, 2))) for a in (2, 3)]
    ops += [("buy", a, draw(st.integers(1, 2))) for a in (4, 5)]
    ops += [("redeem", d, DEVICES[d][0], draw(st.integers(1, 2))) for d in (42, 43)]
    return ops + draw(_exchange_ops)


@SLOW
@example(  # the DSO (account 1) with a negative amount: BadAmount before SelfTrade, as the
    # chain client refuses it before sending; zero: SelfTrade first, as the contract
    ops=[("sell", 1, -1), ("buy", 1, -1), ("sell", 1, 0), ("buy", 1, 0), ("sell", 2, -1)],
    prices=(164, 217), dso_cash=10**8)
@given(
    ops=_exchange_scenario(),
    prices=st.tuples(st.integers(1, 300), st.integers(1, 300)),
    dso_cash=st.sampled_from([150_000, 10**8, 10**8]),
)
def test_green_exchange_matches_reference(
    base: tuple[AnvilNode, ChainLedger], ops: list[tuple], prices: tuple[int, int], dso_cash: int
) -> None:
    anvil, led = base
    with reverted(anvil):
        cash = {DSO_ACCOUNT: dso_cash} | {a: 400_000 for a in range(2, 8)}
        wallets, money = _money(led, cash)
        buy, sell = sorted(p * 1_000_000 for p in prices)  # the DSO never buys above its sell price
        ref = GreenExchange(devices=_devices(), money=money, buy_price_per_mwh=buy,
                            sell_price_per_mwh=sell)  # fmt: skip
        ex = ChainGreenExchange.deploy(led, buy_price_per_mwh=buy, sell_price_per_mwh=sell)
        for op in ops:
            if op[0] == "meters":
                both_call(ref, ex, "record_meters", op[1], op[2], chain_kw={"chunk": op[3]})
            elif op[0] in ("sell", "buy"):
                both_call(ref, ex, op[0], op[1], op[2])
            elif op[0] == "redeem":
                both_call(ref, ex, "redeem", op[1], op[3], sender=op[2])
            else:
                both_call(ref, ex, "transfer", op[1], op[2], op[3])
        for a in ACCOUNTS:
            assert ex.balance_of(a) == ref.balance_of(a)
            assert wallets.balance_of(a) == money.balance_of(a)
        for d in DEVICES:
            assert ex.carry_wh(d) == ref.carry_wh(d)
            assert ex.uncovered_wh(d) == ref.uncovered_wh(d)
            assert ex.green_supplied_wh(d) == ref.green_supplied_wh(d)
        got = (ex.minted, ex.redeemed, ex.total_supply, ex.delivered_wh, ex.paid, ex.received)
        assert got == (ref.minted, ref.redeemed, ref.total_supply, ref.delivered_wh, ref.paid,
                       ref.received)  # fmt: skip
        assert int(led.token.functions.balanceOf(ex.contract.address).call()) == 0
        event(f"tokens redeemed: {bool(ref.redeemed)}, sold: {bool(ref.paid)}")


def test_green_exchange_roles_and_bad_input(snap: ChainLedger) -> None:
    with pytest.raises(e.BadPrice) as info:
        ChainGreenExchange.deploy(snap, buy_price_per_mwh=0, sell_price_per_mwh=10**8)
    assert info.value.pre_send
    ex = ChainGreenExchange.deploy(snap, buy_price_per_mwh=10**8, sell_price_per_mwh=10**8)
    with pytest.raises(e.NotDSO) as not_dso:
        ex.record_meters(0, [(40, -5000)], sender=2)
    assert not_dso.value.values == {"account": 2} and "green exchange" in str(not_dso.value)
    with pytest.raises(e.BadReadings):  # a chunked list is dry-run first: nothing is recorded
        ex.record_meters(0, [(40, -5000), (41, -5000), (40, -5000)], chunk=1)
    assert ex.minted == 0
    with pytest.raises(e.BadAmount) as bad:
        ex.sell(2, -3)
    assert bad.value.pre_send
    for trade in (ex.sell, ex.buy):  # the DSO is the counterparty: no trade with itself
        with pytest.raises(e.SelfTrade) as self_trade:
            trade(DSO_ACCOUNT, 1)
        assert self_trade.value.values == {"account": DSO_ACCOUNT}
    # a market rate: only the DSO moves the prices, within the same bounds as the constructor
    with pytest.raises(e.NotDSO):
        ex.set_prices(5 * 10**7, 6 * 10**7, sender=2)
    with pytest.raises(e.BadPrice):
        ex.set_prices(0, 6 * 10**7)
    ex.set_prices(5 * 10**7, 6 * 10**7)
    assert (ex._uint("buyPricePerMwh"), ex._uint("sellPricePerMwh")) == (5 * 10**7, 6 * 10**7)


# ------------------------------------------------------------------ shared-charger tariffs
_charger_ops = st.lists(
    st.one_of(
        st.tuples(st.just("tariff"), st.sampled_from([45, 46, 42, 99]), st.sampled_from([6, 7]),
                  st.integers(-1, 600).map(lambda p: p * 1_000_000)),
        st.tuples(st.just("deposit"), st.sampled_from(ACCOUNTS), st.integers(-1, 900_000)),
        st.tuples(st.just("withdraw"), st.sampled_from(ACCOUNTS), st.integers(-1, 900_000)),
        st.tuples(st.just("start"), st.sampled_from([45, 46]), st.sampled_from(ACCOUNTS),
                  st.integers(-1, 6000)),
        st.tuples(st.just("end"), st.integers(0, 3), st.integers(-10, 7000),
                  st.sampled_from([DSO_ACCOUNT, DSO_ACCOUNT, 6])),
    ),
    max_size=16,
)  # fmt: skip


@st.composite
def _charger_scenario(draw: st.DrawFn) -> tuple[tuple[int, int], list[tuple]]:
    """Bounds; tariffs, escrow, sessions, a tariff change, the sessions ended; random ops."""
    lo, hi = draw(st.integers(0, 200)), draw(st.integers(200, 500))
    price = st.integers(lo, hi).map(lambda p: p * 10**6)
    ops: list[tuple] = [("tariff", c, DEVICES[c][0], draw(price)) for c in (45, 46)]
    ops += [("deposit", a, draw(st.integers(700_000, 1_000_000))) for a in (2, 3)]
    ops += [("start", c, a, draw(st.integers(1, 1500))) for c, a in ((45, 2), (46, 3))]
    ops.append(("tariff", 45, 6, draw(price)))
    ops += [("end", k, draw(st.integers(0, 1500)), DSO_ACCOUNT) for k in (0, 1)]
    ops.append(("start", 45, 3, draw(st.integers(1, 1500))))
    return (lo, hi), ops + draw(_charger_ops)


@SLOW
@given(scenario=_charger_scenario())
def test_charger_tariffs_match_reference(
    base: tuple[AnvilNode, ChainLedger], scenario: tuple[tuple[int, int], list[tuple]]
) -> None:
    anvil, led = base
    bounds, ops = scenario
    with reverted(anvil):
        wallets, money = _money(led, {a: 1_000_000 for a in range(2, 8)})
        lo, hi = (b * 1_000_000 for b in bounds)
        ref = ChargerTariffs(devices=_devices(), money=money, tariff_min_per_mwh=lo,
                             tariff_max_per_mwh=hi)  # fmt: skip
        ct = ChainChargerTariffs.deploy(led, tariff_min_per_mwh=lo, tariff_max_per_mwh=hi)
        ended = 0
        for op in ops:
            if op[0] == "tariff":
                both_call(ref, ct, "set_tariff", op[1], op[3], sender=op[2])
            elif op[0] in ("deposit", "withdraw"):
                both_call(ref, ct, op[0], op[1], op[2])
            elif op[0] == "start":
                both_call(ref, ct, "start_session", op[1], op[3], driver=op[2])
            else:
                ended += both_call(ref, ct, "end_session", op[1], op[2], sender=op[3]) is not None
        for c in (45, 46):
            assert ct.tariff(c) == ref.tariff(c)
            assert ct.open_session(c) == ref.open_session(c)
        for a in ACCOUNTS:
            assert ct.escrow(a) == ref.escrow(a)
            assert wallets.balance_of(a) == money.balance_of(a)
        assert ct.holdings == ref.holdings == money.balance_of(CONTRACT_WALLET)
        event(f"sessions paid: {min(ended, 2)}")


def test_charger_tariff_change_applies_to_later_sessions_only(snap: ChainLedger) -> None:
    wallets = ChainWallets(snap)
    wallets.mint(2, 5_000_000)
    ct = ChainChargerTariffs.deploy(snap, tariff_min_per_mwh=10**8, tariff_max_per_mwh=5 * 10**8)
    ct.set_tariff(45, 2 * 10**8, sender=6)
    ct.deposit(2, 3_000_000)
    s = ct.start_session(45, 10_000, driver=2)
    ct.set_tariff(45, 4 * 10**8, sender=6)
    owner_before = wallets.balance_of(6)
    done = ct.end_session(s.session_id, 7_250)
    assert (done.price_per_mwh, done.amount) == (2 * 10**8, 1_450_000)
    assert wallets.balance_of(6) - owner_before == 1_450_000
    assert ct.start_session(45, 1000, driver=2).price_per_mwh == 4 * 10**8
    with pytest.raises(e.ChargerBusy):
        ct.start_session(45, 1000, driver=3)
    with pytest.raises(e.NotDSO):
        ct.end_session(1, 10, sender=2)
    with pytest.raises(e.BadPrice):
        ChainChargerTariffs.deploy(snap, tariff_min_per_mwh=5, tariff_max_per_mwh=4)


# ------------------------------------------------------------------------ green currency
_awards = st.lists(
    st.tuples(st.sampled_from([*DEVICES, 99]), st.integers(-1, 5000)), max_size=5
).map(lambda rows: sorted(dict(rows).items()) if len(rows) % 3 else rows)
_currency_ops = st.lists(
    st.one_of(
        st.tuples(st.just("reward"), st.sampled_from([RENEWABLE, DR]), st.integers(0, 2), _awards,
                  st.sampled_from([1, 250]), st.sampled_from([OPERATOR_ACCOUNT] * 3 + [4])),
        st.tuples(st.just("transfer"), st.sampled_from(ACCOUNTS), st.sampled_from(ACCOUNTS),
                  st.integers(-1, 10**6)),
        st.tuples(st.just("approve"), st.sampled_from(ACCOUNTS), st.sampled_from(ACCOUNTS),
                  st.integers(0, 10**6)),
        st.tuples(st.just("transfer_from"), st.sampled_from(ACCOUNTS), st.sampled_from(ACCOUNTS),
                  st.sampled_from(ACCOUNTS), st.integers(0, 10**6)),
        st.tuples(st.just("burn"), st.sampled_from(ACCOUNTS), st.integers(-1, 10**6)),
    ),
    max_size=14,
)  # fmt: skip


@st.composite
def _currency_scenario(draw: st.DrawFn) -> list[tuple]:
    """Renewable and DR awards by the operator, a payment between holders; random ops."""
    ops: list[tuple] = []
    for reason in (RENEWABLE, DR):
        rows = draw(st.dictionaries(st.sampled_from(sorted(DEVICES)), st.integers(0, 5000),
                                    min_size=1))  # fmt: skip
        ops.append(("reward", reason, 0, sorted(rows.items()), draw(st.sampled_from([2, 250])),
                    OPERATOR_ACCOUNT))  # fmt: skip
    ops.append(("transfer", draw(st.sampled_from(ACCOUNTS)), 7, draw(st.integers(1, 10**5))))
    return ops + draw(_currency_ops)


@SLOW
@given(ops=_currency_scenario(), rates=st.tuples(st.integers(0, 3 * 10**6), st.integers(0, 3 * 10**6)))
def test_green_currency_matches_reference(
    base: tuple[AnvilNode, ChainLedger], ops: list[tuple], rates: tuple[int, int]
) -> None:
    anvil, led = base
    with reverted(anvil):
        ref = GreenCurrency(devices=_devices(), tokens_per_kwh_renewable=rates[0],
                            tokens_per_kwh_dr=rates[1])  # fmt: skip
        gc = ChainGreenCurrency.deploy(led, tokens_per_kwh_renewable=rates[0],
                                       tokens_per_kwh_dr=rates[1])  # fmt: skip
        for op in ops:
            if op[0] == "reward":
                method = "reward_renewable" if op[1] == RENEWABLE else "reward_dr"
                both_call(ref, gc, method, op[2], op[3], sender=op[5], chain_kw={"chunk": op[4]})
            else:  # transfer, approve, transfer_from, burn: the op's arguments as they are
                both_call(ref, gc, op[0], *op[1:])
        for a in ACCOUNTS:
            assert gc.balance_of(a) == ref.balance_of(a)
            for b in ACCOUNTS:
                assert gc.allowance(a, b) == ref.allowance(a, b)
        for d in DEVICES:
            for reason in (RENEWABLE, DR):
                assert gc.carry(reason, d) == ref.carry(reason, d)
        assert (gc.minted, gc.burned, gc.total_supply) == (ref.minted, ref.burned, ref.total_supply)
        event(f"minted: {bool(ref.minted)}")
