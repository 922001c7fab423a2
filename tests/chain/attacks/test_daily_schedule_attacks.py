"""Daily signing on chain (DailySchedules.sol, twin/chain/ledger_daily.py): on a real Anvil,
in lockstep with the reference ledger (same domain, the same signed objects relayed to both),
scheduled orders place the same orders and every attack is refused with the same decoded
error: an altered order or schedule, a forged Merkle proof, another device's schedule, a
stale revision, a broken or altered amendment, a replay on another day, another run's
signatures, a revoked device. The root and hashStruct kept on chain equal eth_abi's."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from eth_abi import encode
from eth_abi.packed import encode_packed
from eth_utils import keccak

import twin.chain.ledger_daily as ledger_daily
from tests.chain._helpers import FEED_IN, RETAIL
from tests.market.test_signing_daily import INTERVAL_S, _orders, _plan
from twin.chain.anvil import AnvilNode
from twin.chain.compile import CompiledContracts
from twin.chain.ledger import ChainLedger
from twin.market import errors as e
from twin.market.daily_signers import DailySigners
from twin.market.reference import ReferenceLedger
from twin.market.schedule_merkle import schedule_roots
from twin.market.signing import Domain
from twin.market.signing_batch import sign_rows
from twin.market.signing_daily import (
    ROW_LEN_SCHEDULE,
    BrokenAmendment,
    SignedAmendment,
    StaleSchedule,
    WrongDay,
    schedule_row,
)
from twin.market.types import Device, DeviceKind

Pair = tuple[ReferenceLedger, ChainLedger, DailySigners]


@pytest.fixture
def pair(anvil: AnvilNode, compiled: CompiledContracts) -> Iterator[Pair]:
    snap = anvil.rpc("evm_snapshot")
    try:
        chain = ChainLedger.deploy(anvil.web3(), compiled=compiled, interval_s=INTERVAL_S,
                                   retail_price_per_mwh=RETAIL, feed_in_price_per_mwh=FEED_IN,
                                   gate_lead_s=0)
        ref = ReferenceLedger(interval_s=INTERVAL_S, retail_price_per_mwh=RETAIL,
                              feed_in_price_per_mwh=FEED_IN, gate_lead_s=0, domain=chain.domain)
        for led in (ref, chain):
            for d in (11, 12, 13):
                led.register_device(Device(device_id=d, owner=d - 9, kind=DeviceKind.PV, bus=d,
                                           capacity_w=2_000))
                led.deposit(d - 9, 100_000_000)
        signers = DailySigners(seed=1, device_ids=[11, 12, 13], per_day=2, planner=_plan)
        signers.bind(ref)
        signers.bind(chain)
        yield ref, chain, signers
    finally:
        anvil.rpc("evm_revert", snap)


def _lockstep(ref: ReferenceLedger, chain: ChainLedger) -> Callable[..., Any]:
    """Relay the same orders to both ledgers: the same placed orders, or the same error
    (``expect``: the error both must raise)."""
    def place(orders: list[Any], expect: type[Exception] | None = None, **kw: Any) -> Any:
        try:
            want = ref.place_scheduled_orders(orders, **kw)
        except e.MarketError as exc:
            assert expect is not None and type(exc) is expect, exc
            with pytest.raises(expect) as info:
                chain.place_scheduled_orders(orders, **kw)
            assert info.value == exc, (str(info.value), str(exc))
            return None
        assert expect is None, f"the reference placed what should fail with {expect.__name__}"
        got = chain.place_scheduled_orders(orders, **kw)
        assert got == want
        return got
    return place


def test_scheduled_orders_on_chain_equal_the_reference_and_attacks_fail(
        pair: Pair, monkeypatch: pytest.MonkeyPatch) -> None:
    ref, chain, signers = pair
    place = _lockstep(ref, chain)
    dom = chain.domain
    first = signers.sign_orders(_orders(0), domain=dom)
    assert [o.energy_wh for o in place(first)] == [500, 400]
    # the root and hashStruct the contract keeps are eth_abi's, byte for byte
    grid = first[0].schedule.orders
    leaves = [keccak(encode_packed(["uint64", "int64", "int64", "int64", "int64"], [k, *map(int, grid[k])]))
              for k in range(2)]
    root = keccak(leaves[0] + leaves[1])
    head = keccak(keccak(text="Schedule(uint64 device,uint64 day,uint64 revision,bytes32 orders)")
                  + encode(["uint64", "uint64", "uint64", "bytes32"], [11, 0, 0, root]))
    assert chain.schedule_of(11) == (0, 0, root[:20] + bytes(12), head)  # the root's top 160 bits
    place(first[:1], e.ReplayedNonce)  # the same slot again under the same revision
    forged = dataclasses.replace(first[0], intent=dataclasses.replace(first[0].intent, energy_wh=900))
    place([forged], e.BadSignature)  # the relayer alters the order
    # another device's schedule relayed with a device's order
    place([dataclasses.replace(first[1], schedule=first[0].schedule)], e.BadSignature)
    # a forged proof: the leaf of a slot the device never signed, with made-up siblings
    real = ledger_daily.schedule_proof
    monkeypatch.setattr(ledger_daily, "schedule_proof",
                        lambda levels, slot: [keccak(p) for p in real(levels, slot)])
    got = chain.place_scheduled_orders([dataclasses.replace(
        first[0], intent=dataclasses.replace(first[0].intent, interval=1))], strict=False)
    assert got == [] and [type(r.error) for r in chain.rejected] == [e.BadSignature]
    monkeypatch.setattr(ledger_daily, "schedule_proof", real)
    # the device revises interval 1: the new revision places, the old one is stale
    for led in (ref, chain):
        led.set_time(now_s=1)
        assert led.clear(0).volume_wh == 400
    old = first[0]
    rev = signers.sign_orders(_orders(1, sell_wh=700), domain=dom)
    assert isinstance(rev[0].schedule, SignedAmendment) and rev[0].schedule.slot == 1
    assert [o.energy_wh for o in place(rev)] == [700, 400]
    place([dataclasses.replace(old, intent=dataclasses.replace(old.intent, interval=1))], StaleSchedule)
    (nxt,) = signers.sign_orders(_orders(1, sell_wh=800)[:1], domain=dom)  # revision 2
    (nxt3,) = signers.sign_orders(_orders(1, sell_wh=900)[:1], domain=dom)  # revision 3
    altered = dataclasses.replace(nxt.schedule, values=(0, 0, 850, 90_000_000))
    place([dataclasses.replace(nxt, intent=dataclasses.replace(nxt.intent, energy_wh=850),
                               schedule=altered)], e.BadSignature)
    place([nxt3], BrokenAmendment)  # a link withheld
    assert [o.energy_wh for o in place([nxt])] == [800]
    assert [o.energy_wh for o in place([nxt3])] == [900]
    assert chain.schedule_of(11)[:2] == (0, 3)
    # day 1: yesterday's schedule is refused for today's interval (a replay on another day)
    for led in (ref, chain):
        led.set_time(now_s=INTERVAL_S + 1)
        led.clear(1)
    place([dataclasses.replace(rev[0], intent=dataclasses.replace(rev[0].intent, interval=2))], WrongDay)
    # another run's signatures (same seed and keys, another salt) are worthless here
    other = DailySigners(seed=1, device_ids=[11, 12, 13], per_day=2).sign_orders(
        _orders(2), domain=Domain(chain_id=dom.chain_id, verifying_contract=dom.verifying_contract,
                                  salt=b"\x02" * 32))
    place(other, e.BadSignature)
    # a revision the contract cannot keep (2**32 and up), validly signed: refused alike
    today_first = signers.sign_orders(_orders(2), domain=dom)[1]
    s0 = today_first.schedule
    root = schedule_roots(np.asarray([s0.orders]))[0]
    (sig,) = sign_rows(dom, schedule_row(s0.device_id, s0.day, 2**32, root), ROW_LEN_SCHEDULE,
                       signers.keys[s0.device_id]._secret)
    place([dataclasses.replace(today_first, schedule=dataclasses.replace(
        s0, revision=2**32, signature=sig))], e.BadSignature)
    for led in (ref, chain):
        led.revoke_device(11)
    today = signers.sign_orders(_orders(2), domain=dom)
    place(today[:1], e.DeviceRevoked)
    # a batch with good and bad orders: the same placed and rejected on both
    altered = dataclasses.replace(today[1], intent=dataclasses.replace(today[1].intent, energy_wh=401))
    assert [o.energy_wh for o in place([*today, altered], strict=False)] == [400]
    assert [(r.index, r.error) for r in chain.rejected] == [(r.index, r.error) for r in ref.rejected]
    assert [r.index for r in chain.rejected] == [0, 2]


def test_daily_readings_true_up_on_chain_as_the_reference(pair: Pair) -> None:
    """The day's signed readings, verified once per device on chain, true up the intervals
    settled on the relayed readings exactly as the reference ledger does; an altered batch
    and a replayed batch are refused with the same error."""
    ref, chain, signers = pair
    dom = chain.domain
    place = _lockstep(ref, chain)
    place(signers.sign_orders(_orders(0), domain=dom))
    relayed = {11: -500, 12: 400, 13: 0}  # what the operator relays
    for k, truth in ((0, {11: -450, 12: 400, 13: 30}), (1, {11: -1, 12: 2, 13: 0})):
        signers.record_readings(interval=k, metered_wh=truth)  # what the meters signed
    for led in (ref, chain):
        led.set_time(now_s=1)
        led.clear(0)
        led.set_time(now_s=INTERVAL_S + 1)
    assert chain.settle_relayed(0, relayed) == ref.settle_relayed(0, relayed)
    batches = signers.daily_readings(day=0, domain=dom)
    wh = batches[0].metered_wh.copy()
    wh[0] = -2_000  # the relayer claims device 11 delivered more
    forged = [dataclasses.replace(batches[0], metered_wh=wh), *batches[1:]]
    with pytest.raises(e.BadSignature) as want:
        ref.true_up_daily(forged)
    with pytest.raises(e.BadSignature) as got:
        chain.true_up_daily(forged)
    assert got.value == want.value
    want_tu = ref.true_up_daily(batches)
    assert [(t.interval, t.device_id, t.delta_wh) for t in want_tu] == [(0, 11, 50), (0, 13, 30)]
    assert chain.true_up_daily(batches) == want_tu
    assert chain.balances([1, 2, 3, 4]) == [ref.balance(a) for a in (1, 2, 3, 4)]
    for led in (ref, chain):
        with pytest.raises(e.ERRORS["AlreadyTruedUp"]):
            led.true_up_daily(batches[:1])
