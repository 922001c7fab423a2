"""#19: imbalance debt is collectable. Each device posts an imbalance bond (two intervals
at its registered rating at the retail price, at least a floor: twin.market.bond) from its
owner's free balance with its first order; withdraw cannot take it, settlement draws on it
for the imbalance the free balance does not cover, and it comes back (``releaseBond``) only
once the device's last ordered interval is settled. The attack "withdraw everything, then
consume" now pays the DSO. A meter that never delivers its reading does not lock the bond
forever: past the true-up deadline anyone makes the estimate final. Performed on a real Anvil
and on the reference ledger, with the same numbers."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests._orders import buy, sell
from tests.chain.conftest import setup_market
from twin.chain.ledger import ChainLedger
from twin.market import errors as e
from twin.market.audit import token_audit
from twin.market.device_signers import DeviceSigners
from twin.market.reference import MARK_STEPS, ReferenceLedger
from twin.market.types import DSO_ACCOUNT, Balance, Device, DeviceKind
from twin.market.units import payment

pytestmark = pytest.mark.chain

DEPOSITS = 6 * 10_000_000 + 5_000_000  # setup_market's


EXPIRY_S = 4 * 900  # true-up deadline: four intervals after the interval's end


def _bonded_ledgers(deploy: Callable[..., ChainLedger]) -> tuple[ChainLedger, ReferenceLedger]:
    """A market on chain whose devices post two intervals at their rating, at least 1,500 Wh,
    at 250/MWh (an 11 kW device: 5,500 Wh), estimates expiring four intervals after their
    interval, and the reference ledger with the terms the chain reads back."""
    chain = deploy(imbalance_bond=payment(1500, 250_000_000), bond_intervals=2, true_up_expiry_s=EXPIRY_S)
    t = chain.bond_terms
    ref = ReferenceLedger(interval_s=chain.interval_s, retail_price_per_mwh=chain.retail_price_per_mwh,
                          feed_in_price_per_mwh=chain.feed_in_price_per_mwh, imbalance_bond=t.floor,
                          bond_intervals=t.intervals, true_up_expiry_s=t.true_up_expiry_s)
    assert (t.intervals, t.true_up_expiry_s) == (2, EXPIRY_S)
    return chain, ref


def test_withdraw_then_settle_pays_the_dso_from_the_bond(deploy: Callable[..., ChainLedger]) -> None:
    chain, ref = _bonded_ledgers(deploy)
    chain.operator_is_agent = False
    bond = payment(2 * 2750, 250_000_000)  # two intervals of an 11 kW device at retail
    for led in (chain, ref):
        setup_market(led)
        assert led.bond_of(led.device(17)) == bond
        signers = DeviceSigners(seed="collateral", device_ids=range(12, 18))
        signers.bind(led)
        led.withdraw(6, 10_000_000 - bond + 1)  # device 16's owner keeps less than a bond
        placed = led.place_signed_orders(signers.sign_orders(
            [sell(17, 1000, 90_000_000, interval=2), buy(12, 1000, 120_000_000, interval=2),
             sell(16, 500, 90_000_000, interval=2)], domain=led.domain), strict=False)
        assert [o.device_id for o in placed] == [17, 12]
        assert isinstance(led.rejected[0].error, e.InsufficientBalance)  # no bond, no order
        assert led.balance(7) == Balance(free=10_000_000 - bond, locked=0, debt=0, bond=bond)
        led.clear(2)
        led.withdraw(7, 10_000_000 - bond)  # the attack: take every free token out first ...
        with pytest.raises(e.InsufficientBalance):
            led.withdraw(7, 1)  # ... but not the bond
        with pytest.raises(e.BondLocked):  # nor by releasing it: interval 2 is not settled
            led.release_bond(7, 17)
        led.set_time(3 * led.interval_s)
        dso_before = led.balance(DSO_ACCOUNT).free
        # device 17 sold 1000 Wh but consumed 2000 Wh: 3000 Wh imbalance at retail, of which
        # its trade money pays part and its bond the rest
        rows = led.settle_signed(2, signers.sign_readings(
            interval=2, metered_wh={12: 1000, 17: 2000}, domain=led.domain))
        sale, due = payment(1000, 105_000_000), payment(3000, led.retail_price_per_mwh)
        row = next(r for r in rows if r.device_id == 17)
        assert (row.imbalance_amount, row.debt) == (-due, 0)
        assert led.balance(DSO_ACCOUNT).free == dso_before + due  # the DSO is paid in full
        assert led.balance(7) == Balance(free=0, locked=0, debt=0, bond=bond - (due - sale))
        with pytest.raises(e.NotDeviceOwner):
            led.release_bond(2, 17)
        led.release_bond(7, 17)  # settled: what is left of the bond comes back
        assert led.balance(7) == Balance(free=bond - (due - sale), locked=0, debt=0, bond=0)
        with pytest.raises(e.BondLocked):  # once
            led.release_bond(7, 17)
        led.withdraw(7, bond - (due - sale))
        audit = token_audit(led, accounts=range(8), minted=DEPOSITS)
        assert audit["conserved"] and audit["debt"] == 0, audit
    assert [chain.balance(a) for a in range(8)] == [ref.balance(a) for a in range(8)]


def test_bond_tops_up_and_releases_only_when_every_interval_is_final(
        deploy: Callable[..., ChainLedger]) -> None:
    """Intervals settled out of order, an empty interval, a voided one and a provisional
    settlement: the bond is released only once every interval up to the device's last
    ordered one is final and its estimate is trued up; a drawn bond refills from the
    owner's free balance at its next settlement. Same numbers on both ledgers."""
    chain, ref = _bonded_ledgers(deploy)
    chain.operator_is_agent = False
    bond = payment(2 * 2750, 250_000_000)  # two intervals of an 11 kW device at retail
    for led in (chain, ref):
        setup_market(led)
        signers = DeviceSigners(seed="collateral", device_ids=range(12, 18))
        signers.bind(led)

        def read(interval: int, wh: dict[int, int], _led: object = led, _s: DeviceSigners = signers) -> list:
            return _s.sign_readings(interval=interval, metered_wh=wh, domain=_led.domain)  # type: ignore[attr-defined]

        placed = led.place_signed_orders(signers.sign_orders(
            [o for k in (2, 3, 4, 6) for o in (sell(17, 1000, 90_000_000, interval=k),
                                               buy(12, 1000, 120_000_000, interval=k))],
            domain=led.domain))  # interval 5: no order at all
        assert led.balance(7).bond == bond  # one bond for all of device 17's intervals
        for k in (2, 3, 4):
            led.clear(k)
        led.withdraw(7, led.balance(7).free)  # the attack, before any settlement
        led.set_time(7 * led.interval_s)  # past interval 6's reclaim deadline: its buyer voids it
        led.reclaim(2, [o.order_id for o in placed if o.interval == 6 and o.side.name == "BUY"])
        sale, due = payment(1000, 105_000_000), payment(3000, led.retail_price_per_mwh)
        led.settle_signed(3, read(3, {12: 1000, 17: 2000}))  # interval 3 before interval 2
        assert led.balance(7) == Balance(free=0, locked=0, debt=0, bond=bond - (due - sale))
        with pytest.raises(e.BondLocked) as locked:  # the last ordered interval (6) is void
            led.release_bond(7, 17)  # and 3 is settled, but 2 is not
        assert locked.value.values == {"device": 17, "interval": 2}
        led.deposit(7, 700_000)
        led.settle_signed(2, read(2, {12: 1000, 17: -1000}))  # on schedule: the sale money ...
        assert led.balance(7) == Balance(free=700_000 + sale - (due - sale), locked=0, debt=0, bond=bond)
        # ... and the deposit refill the bond; interval 4 settles device 17 on an estimate
        led.settle_signed(4, read(4, {12: 1000}), estimated_wh={17: -1000})
        with pytest.raises(e.BondLocked) as locked:  # 2-4 settled, 5 empty, 6 void: the estimate
            led.release_bond(7, 17)
        assert locked.value.values == {"device": 17, "interval": 6}
        led.true_up_signed(read(4, {17: -1000})[0])
        free = led.balance(7).free
        led.release_bond(7, 17)
        assert led.balance(7) == Balance(free=free + bond, locked=0, debt=0, bond=0)
        audit = token_audit(led, accounts=range(8), minted=DEPOSITS + 700_000)
        assert audit["conserved"] and audit["debt"] == 0, audit
    assert [chain.balance(a) for a in range(8)] == [ref.balance(a) for a in range(8)]


def test_a_mark_far_behind_is_moved_in_bounded_steps(deploy: Callable[..., ChainLedger]) -> None:
    """releaseBond moves the final-interval mark over at most MARK_STEPS intervals (its reads
    stay far below a block); a mark further behind is moved by anyone with advance_final."""
    chain, ref = _bonded_ledgers(deploy)
    far = MARK_STEPS + 100
    for led in (chain, ref):
        setup_market(led)
        led.place_orders([sell(17, 1000, 90_000_000, interval=far), buy(12, 1000, 120_000_000, interval=far)])
        led.clear(far)
        led.set_time((far + 1) * led.interval_s)
        led.settle(far, {12: 1000, 17: -1000})
        with pytest.raises(e.BondLocked) as locked:  # 0 .. MARK_STEPS - 1 passed, then stopped
            led.release_bond(7, 17)
        assert locked.value.values == {"device": 17, "interval": MARK_STEPS}
        assert led.final_mark() == 0  # the reverted call kept nothing
        assert led.advance_final(MARK_STEPS, sender=3) == MARK_STEPS
        led.release_bond(7, 17)
        assert led.final_mark() == far + 1 and led.balance(7).bond == 0
    assert [chain.balance(a) for a in range(8)] == [ref.balance(a) for a in range(8)]


def test_a_reading_that_never_comes_frees_the_bond_after_the_deadline(
        deploy: Callable[..., ChainLedger]) -> None:
    """Device 17's meter never delivers interval 2's reading: it is settled on the operator's
    estimate (500 Wh of the 1,000 Wh it sold, so its owner pays the DSO the shortfall). Its
    bond stays locked until the true-up deadline (the interval's end + the expiry) has passed;
    then anyone makes the estimate final, no true-up can follow, the DSO keeps what the
    estimate said and the owner gets the whole bond back. A 2 kW device of the same owner
    posts the floor (two intervals of it are only 1,000 Wh). Same numbers on both ledgers."""
    chain, ref = _bonded_ledgers(deploy)
    chain.operator_is_agent = False
    big, floor = payment(2 * 2750, 250_000_000), payment(1500, 250_000_000)
    deadline = 3 * 900 + EXPIRY_S
    for led in (chain, ref):
        setup_market(led)
        led.register_device(Device(device_id=18, owner=7, kind=DeviceKind.PV, bus=7, capacity_w=2_000))
        assert (led.bond_of(led.device(17)), led.bond_of(led.device(18))) == (big, floor)
        signers = DeviceSigners(seed="collateral", device_ids=range(12, 19))
        signers.bind(led)
        led.place_signed_orders(signers.sign_orders(
            [sell(17, 1000, 90_000_000, interval=2), buy(12, 1000, 120_000_000, interval=2),
             sell(18, 400, 200_000_000, interval=2)], domain=led.domain))  # 18: unmatched
        assert led.balance(7).bond == big + floor  # each device's own bond
        led.clear(2)
        led.set_time(3 * 900)
        dso = led.balance(DSO_ACCOUNT).free
        led.settle_signed(2, signers.sign_readings(interval=2, metered_wh={12: 1000}, domain=led.domain),
                          estimated_wh={17: -500})
        shortfall = payment(500, led.retail_price_per_mwh)
        assert led.balance(DSO_ACCOUNT).free == dso + shortfall
        led.release_bond(7, 18)  # interval 2 settled, no estimate of device 18: the floor back
        with pytest.raises(e.BondLocked):  # the estimate waits for its true-up
            led.release_bond(7, 17)
        led.set_time(deadline)
        with pytest.raises(e.TrueUpOpen) as early:  # not before the deadline has passed
            led.finalize_estimate(2, 17, sender=3)
        assert early.value.values == {"device": 17, "interval": 2, "deadline": deadline, "time": deadline}
        led.set_time(deadline + 1)
        with pytest.raises(e.TrueUpExpired):  # the late reading no longer counts
            led.true_up_signed(signers.sign_readings(interval=2, metered_wh={17: 0}, domain=led.domain)[0])
        assert led.finalize_estimate(2, 17, sender=3) == -500  # anyone, here another owner
        with pytest.raises(e.NotProvisional):
            led.finalize_estimate(2, 17, sender=3)
        assert led.provisional() == {}
        free = led.balance(7).free
        led.release_bond(7, 17)
        assert led.balance(7) == Balance(free=free + big, locked=0, debt=0, bond=0)
        assert led.balance(DSO_ACCOUNT).free == dso + shortfall  # what the estimate said
        audit = token_audit(led, accounts=range(8), minted=DEPOSITS)
        assert audit["conserved"] and audit["debt"] == 0, audit
    assert [chain.balance(a) for a in range(8)] == [ref.balance(a) for a in range(8)]


def test_a_drawn_bond_tops_up_before_the_next_order(deploy: Callable[..., ChainLedger]) -> None:
    """A bond drawn at settlement refills from the owner's free balance at the device's first
    order of its next interval (after the order's own escrow), partly if free falls short:
    the owner cannot trade on while its bond stays drawn and its free balance has money."""
    chain, ref = _bonded_ledgers(deploy)
    chain.operator_is_agent = False
    bond = payment(2 * 2750, 250_000_000)  # two intervals of device 17 (11 kW) at retail
    for led in (chain, ref):
        setup_market(led)
        signers = DeviceSigners(seed="collateral", device_ids=range(12, 18))
        signers.bind(led)
        led.place_signed_orders(signers.sign_orders(
            [sell(17, 1000, 90_000_000, interval=2), buy(12, 1000, 120_000_000, interval=2)], domain=led.domain))
        led.clear(2)
        led.withdraw(7, led.balance(7).free)
        led.set_time(3 * led.interval_s)
        led.settle_signed(2, signers.sign_readings(interval=2, metered_wh={12: 1000, 17: 2000}, domain=led.domain))
        short = payment(3000, led.retail_price_per_mwh) - payment(1000, 105_000_000)
        assert led.balance(7) == Balance(free=0, locked=0, debt=0, bond=bond - short)
        led.deposit(7, short // 2)
        led.place_signed_orders(signers.sign_orders([sell(17, 500, 90_000_000, interval=4)], domain=led.domain))
        assert led.balance(7) == Balance(free=0, locked=0, debt=0, bond=bond - short + short // 2)
        led.deposit(7, short + 50_000)  # the rest of the shortfall, once: two orders in interval 5
        led.place_signed_orders(signers.sign_orders(
            [sell(17, 300, 90_000_000, interval=5), sell(17, 200, 95_000_000, interval=5)], domain=led.domain))
        assert led.balance(7) == Balance(free=short + 50_000 - (short - short // 2), locked=0, debt=0, bond=bond)
    assert [chain.balance(a) for a in range(8)] == [ref.balance(a) for a in range(8)]
