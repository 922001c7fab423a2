"""Attacks of issue #19 on the market's order flow, clearing, debt and escrow, performed on a
real node as ``twin run`` sets the market up (device keys bound, the operator no one's order
agent), each shown to fail; the reference refuses the same with the same error."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests._orders import buy, sell
from tests.chain.conftest import setup_market
from twin.chain.anvil import AnvilNode
from twin.chain.ledger import ChainLedger
from twin.market import errors as e
from twin.market.device_signers import DeviceSigners
from twin.market.reference import ReferenceLedger
from twin.market.signing import DeviceKey
from twin.market.types import DSO_ACCOUNT, OPERATOR_ACCOUNT, Balance
from twin.market.units import payment

pytestmark = pytest.mark.chain

Led = ChainLedger | ReferenceLedger


def _run_like(led: Led) -> DeviceSigners:
    setup_market(led)
    signers = DeviceSigners(seed="attack", device_ids=range(12, 18))
    signers.bind(led)
    return signers


def _reference(led: ChainLedger, **kw: str) -> ReferenceLedger:
    return ReferenceLedger(interval_s=led.interval_s, retail_price_per_mwh=led.retail_price_per_mwh,
                           feed_in_price_per_mwh=led.feed_in_price_per_mwh, **kw)  # type: ignore[arg-type]


@pytest.fixture
def run_ledger(deploy: Callable[..., ChainLedger]) -> ChainLedger:
    led = deploy()
    led.operator_is_agent = False
    return led


def test_an_order_at_the_gate_cannot_block_the_clearing(deploy: Callable[..., ChainLedger]) -> None:
    """A free 1 Wh order sent at the gate used to change the book under the operator's
    clearing plan (BookChanged / BadOrderList): now no path clears before the gate closed,
    and after it no order can arrive."""
    for mechanism in ("uniform", "cda"):
        chain = deploy(mechanism=mechanism)
        chain.operator_is_agent = False
        for led in (chain, _reference(chain, mechanism=mechanism)):
            signers = _run_like(led)
            led.place_signed_orders(signers.sign_orders(
                [sell(14, 1000, 90_000_000, interval=2), buy(12, 1000, 120_000_000, interval=2)],
                domain=led.domain))
            gate = led.gate_s(2)
            led.set_time(gate)  # the attacker's order, at the gate: still accepted ...
            led.place_signed_orders(signers.sign_orders([sell(15, 1, 1, interval=2)],
                                                        domain=led.domain))
            paths: list[dict[str, int]] = [{}]
            if isinstance(led, ChainLedger) and mechanism == "uniform":
                paths.append({"chunk_orders": 1, "chunk_trades": 1})  # clearChunk
            for kw in paths:  # ... but no clearing path starts while the gate is open
                with pytest.raises(e.GateOpen) as caught:
                    led.clear(2, wait=False, **kw)  # type: ignore[call-arg]
                assert caught.value.values == {"interval": 2, "gate": gate, "time": gate}
            assert led.interval_status(2) == "open"
            clearing = led.clear(2)  # one second after the gate: the book is final
            assert led.now_s == gate + 1
            assert clearing.volume_wh == 1000
            with pytest.raises(e.IntervalClosed):  # too late for anyone now
                led.place_signed_orders(signers.sign_orders([sell(16, 1, 1, interval=2)],
                                                            domain=led.domain))


def test_a_relayed_or_unfunded_order_cannot_void_the_operators_batch(run_ledger: ChainLedger) -> None:
    """One signed order of the batch relayed ahead of it, and an owner who withdrew first:
    each fails alone and is reported; the rest of the batch is placed."""
    for led in (run_ledger, _reference(run_ledger)):
        signers = _run_like(led)
        batch = signers.sign_orders([
            sell(14, 1000, 90_000_000, interval=3), buy(12, 800, 120_000_000, interval=3),
            buy(13, 500, 130_000_000, interval=3), sell(15, 400, 95_000_000, interval=3),
        ], domain=led.domain)
        [ahead] = led.place_signed_orders([batch[1]], sender=5)  # front-run by account 5
        assert ahead.device_id == 12
        led.withdraw(3, 10_000_000)  # device 13's owner empties its balance first
        placed = led.place_signed_orders(batch, strict=False)
        assert [o.device_id for o in placed] == [14, 15]
        assert [(r.index, type(r.error).__name__, r.error.values) for r in led.rejected] == [
            (1, "ReplayedNonce", {"device": 12, "interval": 3, "nonce": 1}),
            (2, "InsufficientBalance", {"account": 3, "needed": payment(500, 130_000_000),
                                        "available": 0}),
        ]  # fmt: skip
        assert [o.device_id for o in led.orders(3)] == [12, 14, 15]
        # strict relaying (the twin's own agents): the same report, raised after placing
        again = signers.sign_orders([sell(16, 100, 95_000_000, interval=3),
                                     buy(13, 100, 130_000_000, interval=3)], domain=led.domain)
        with pytest.raises(e.InsufficientBalance):
            led.place_signed_orders(again)
        assert [o.device_id for o in led.orders(3)] == [12, 14, 15, 16]


def test_the_device_key_cancels_its_unrelayed_orders(run_ledger: ChainLedger) -> None:
    for led in (run_ledger, _reference(run_ledger)):
        signers = _run_like(led)
        key = signers.key(13)
        signed = key.sign_order(sell(13, 500, 90_000_000, interval=3), nonce=3, domain=led.domain)
        with pytest.raises(e.BadSignature):  # only the device's own key can cancel
            led.cancel_orders(DeviceKey.from_seed("operator").sign_cancel(
                device_id=13, interval=3, nonce=3, domain=led.domain))
        led.cancel_orders(key.sign_cancel(device_id=13, interval=3, nonce=3, domain=led.domain))
        assert led.place_signed_orders([signed], strict=False) == []
        assert type(led.rejected[0].error) is e.ReplayedNonce
        with pytest.raises(e.ReplayedNonce):  # a cancellation cannot be replayed either
            led.cancel_orders(key.sign_cancel(device_id=13, interval=3, nonce=2, domain=led.domain))
        later = key.sign_order(sell(13, 500, 90_000_000, interval=3), nonce=4, domain=led.domain)
        assert len(led.place_signed_orders([later])) == 1


def test_debt_blocks_withdrawals_and_buys_and_is_paid_from_credits(run_ledger: ChainLedger) -> None:
    """Withdraw everything, then consume: the unpaid imbalance is a debt that blocks the
    account's withdrawals and buy orders and is paid to the DSO from its next credits."""
    for led in (run_ledger, _reference(run_ledger)):
        signers = _run_like(led)
        led.place_signed_orders(signers.sign_orders(
            [sell(17, 1000, 90_000_000, interval=2), buy(12, 1000, 120_000_000, interval=2)],
            domain=led.domain))
        led.clear(2)
        led.withdraw(7, 10_000_000)  # device 17's owner takes all its money out first
        led.set_time(3 * led.interval_s)
        dso_before = led.balance(DSO_ACCOUNT).free
        # device 17 sold 1000 Wh but consumed 2000 Wh: 3000 Wh imbalance at retail
        rows = led.settle_signed(2, signers.sign_readings(
            interval=2, metered_wh={12: 1000, 17: 2000}, domain=led.domain))
        sale = payment(1000, 105_000_000)  # the uniform price of 120 and 90
        due = payment(3000, led.retail_price_per_mwh)
        row = next(r for r in rows if r.device_id == 17)
        # the trade money was credited before the imbalance charge: it pays part of it
        assert row.debt == due - sale
        assert led.balance(7) == Balance(free=0, locked=0, debt=due - sale)
        with pytest.raises(e.InDebt) as caught:
            led.withdraw(7, 1)
        assert caught.value.values == {"account": 7, "debt": due - sale}
        with pytest.raises(e.InDebt):
            led.place_signed_orders(signers.sign_orders([buy(17, 10, 100_000_000, interval=5)],
                                                        domain=led.domain))
        led.deposit(7, 100_000)  # a deposit pays the debt first
        assert led.balance(7) == Balance(free=0, locked=0, debt=due - sale - 100_000)
        led.deposit(7, 10_000_000)
        assert led.balance(7) == Balance(free=10_000_000 - (due - sale - 100_000), locked=0, debt=0)
        assert led.balance(DSO_ACCOUNT).free == dso_before + due
        led.withdraw(7, 1)  # paid: free again


def test_owners_reclaim_escrow_the_operator_never_cleared(run_ledger: ChainLedger) -> None:
    for led in (run_ledger, _reference(run_ledger)):
        signers = _run_like(led)
        [bid] = led.place_signed_orders(signers.sign_orders([buy(12, 2000, 150_000_000, interval=2)],
                                                            domain=led.domain))
        escrow = payment(2000, 150_000_000)
        assert led.balance(2).locked == escrow
        deadline = led.reclaim_after_s(2)
        led.set_time(deadline)
        with pytest.raises(e.NotReclaimable) as caught:  # the operator still has time
            led.reclaim(2, [bid.order_id])
        assert caught.value.values == {"interval": 2, "deadline": deadline, "time": deadline}
        with pytest.raises(e.NotDeviceOwner):  # nobody reclaims another owner's escrow
            led.reclaim(3, [bid.order_id])
        led.set_time(deadline + 1)  # the operator stopped: the owner takes its money back
        led.reclaim(2, [bid.order_id])
        assert led.balance(2) == Balance(free=10_000_000, locked=0, debt=0)
        assert led.interval_status(2) == "void"
        led.reclaim(2, [bid.order_id])  # once only
        assert led.balance(2) == Balance(free=10_000_000, locked=0, debt=0)
        with pytest.raises(e.AlreadyCleared):  # a void interval never clears ...
            led.clear(2, sender=OPERATOR_ACCOUNT)
        with pytest.raises(e.NotCleared):  # ... nor settles
            led.settle_signed(2, signers.sign_readings(interval=2, metered_wh={12: 0},
                                                       domain=led.domain))
        cleared = led.place_signed_orders(signers.sign_orders(
            [buy(12, 10, 100_000_000, interval=4)], domain=led.domain))
        led.clear(4)
        with pytest.raises(e.NotReclaimable):  # a cleared interval's escrow is the clearing's
            led.reclaim(2, [cleared[0].order_id])


def test_a_signature_of_one_run_is_worthless_in_the_next(
    anvil: AnvilNode, deploy: Callable[..., ChainLedger]
) -> None:
    """Same seed, same keys, fresh chain: same chain id and same market address; the
    per-deployment salt still makes the EIP-712 domain differ."""
    snap = anvil.rpc("evm_snapshot")
    first = deploy()
    first.operator_is_agent = False
    signers = _run_like(first)
    order = signers.sign_orders([sell(14, 1000, 90_000_000, interval=3)], domain=first.domain)
    assert anvil.rpc("evm_revert", snap) is True  # the next run, from the same state
    second = deploy()
    second.operator_is_agent = False
    _run_like(second)
    assert second.market.address == first.market.address
    assert second.domain.chain_id == first.domain.chain_id
    assert second.domain.salt != first.domain.salt
    with pytest.raises(e.BadSignature):
        second.place_signed_orders(order)
