"""Daily signing (market.signing: daily, twin/market/signing_daily.py): a device's day
schedule and daily readings batch are EIP-712 messages eth_account signs byte for byte the
same; on the reference ledger a relayer cannot forge or alter a scheduled order or a daily
reading, and a replayed, stale, other-day or other-run schedule, a replayed batch and a
revoked device are refused."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from eth_abi.packed import encode_packed
from eth_account import Account
from eth_utils import keccak

from twin.market import errors as e
from twin.market.daily_signers import DailySigners
from twin.market.reference import ReferenceLedger
from twin.market.signing import Domain
from twin.market.signing_daily import (
    BrokenAmendment,
    SignedAmendment,
    SignedDailyReadings,
    StaleSchedule,
    WrongDay,
    schedule_hash,
)
from twin.market.types import Device, DeviceKind, OrderIntent, Side

DAY_S = 86_400
INTERVAL_S = DAY_S // 2  # two intervals a day: days change within a short test
_DOMAIN_TYPE = [
    {"name": "name", "type": "string"}, {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"}, {"name": "verifyingContract", "type": "address"},
    {"name": "salt", "type": "bytes32"},
]


def encode_abi_words(*xs: int) -> bytes:
    return b"".join(x.to_bytes(32, "big") for x in xs)


def _typed(dom: Domain, kind: str, fields: list[tuple[str, str]], msg: dict[str, object]) -> dict[str, object]:
    return {"types": {"EIP712Domain": _DOMAIN_TYPE,
                      kind: [{"name": n, "type": t} for n, t in fields]},
            "primaryType": kind,
            "domain": {"name": "gridtwin EnergyMarket", "version": "1", "chainId": dom.chain_id,
                       "verifyingContract": dom.verifying_contract, "salt": dom.salt},
            "message": msg}


def test_schedule_and_daily_readings_equal_eth_account() -> None:
    dom = Domain(chain_id=31337, verifying_contract=Account.create().address, salt=bytes(range(32)))
    signers = DailySigners(seed=5, device_ids=[3], per_day=4)
    it = OrderIntent(device_id=3, interval=6, side=Side.SELL, energy_wh=1234, price_per_mwh=-7)
    (so,) = signers.sign_orders([it], domain=dom)
    grid = so.schedule.orders
    # orders: the Merkle root of the 4 slots' leaves keccak256(abi.encodePacked(slot, 4 x int64))
    leaves = [keccak(encode_packed(["uint64"] + ["int64"] * 4, [k, *map(int, grid[k])])) for k in range(4)]
    root = keccak(keccak(leaves[0] + leaves[1]) + keccak(leaves[2] + leaves[3]))
    assert schedule_hash(grid) == root
    secret = signers.key(3)._secret
    ref = Account.sign_typed_data(secret, full_message=_typed(
        dom, "Schedule", [("device", "uint64"), ("day", "uint64"), ("revision", "uint64"),
                          ("orders", "bytes32")],
        {"device": 3, "day": 1, "revision": 0, "orders": root}))
    assert so.schedule.signature == ref.signature and so.nonce == 1
    # the device changes its mind for slot 3 (interval 7): one signed slot amendment, chained
    # to the schedule's hashStruct, eth_account's signature byte for byte
    (am,) = signers.sign_orders([OrderIntent(device_id=3, interval=7, side=Side.BUY,
                                             energy_wh=50, price_per_mwh=2**62)], domain=dom)
    prior = keccak(keccak(text="Schedule(uint64 device,uint64 day,uint64 revision,bytes32 orders)")
                   + encode_abi_words(3, 1, 0) + root)
    a = am.schedule
    assert isinstance(a, SignedAmendment) and (a.revision, a.slot, a.prior) == (1, 3, prior)
    ref = Account.sign_typed_data(secret, full_message=_typed(
        dom, "Amendment", [("device", "uint64"), ("day", "uint64"), ("revision", "uint64"),
                           ("slot", "uint64"), ("buyEnergy", "int64"), ("buyPrice", "int64"),
                           ("sellEnergy", "int64"), ("sellPrice", "int64"), ("prior", "bytes32")],
        {"device": 3, "day": 1, "revision": 1, "slot": 3, "buyEnergy": 50, "buyPrice": 2**62,
         "sellEnergy": 0, "sellPrice": 0, "prior": prior}))
    assert a.signature == ref.signature and am.nonce == 2
    # two slots amended at once: a chain of two links, each order relayed with the latest
    two = signers.sign_orders([OrderIntent(device_id=3, interval=k, side=Side.SELL, energy_wh=9,
                                           price_per_mwh=1) for k in (4, 5)], domain=dom)
    assert two[0].schedule is two[1].schedule and two[0].amends == two[1].amends
    (link,) = two[0].amends
    assert (link.revision, link.slot, link.prior) == (2, 0, keccak(a.row()))
    assert (two[0].schedule.revision, two[0].schedule.prior) == (3, keccak(link.row()))
    for k, wh in enumerate([5, -6, 0, 2**40]):
        signers.record_readings(interval=4 + k, metered_wh={3: wh})
    (batch,) = signers.daily_readings(day=1, domain=dom)
    packed = encode_packed(["int64"] * 4, [5, -6, 0, 2**40])
    ref = Account.sign_typed_data(secret, full_message=_typed(
        dom, "DailyReadings", [("device", "uint64"), ("day", "uint64"), ("readings", "bytes32")],
        {"device": 3, "day": 1, "readings": keccak(packed)}))
    assert batch.signature == ref.signature
    with pytest.raises(ValueError, match="device 3 has two orders on one side of interval 7"):
        signers.sign_orders([it.__class__(device_id=3, interval=7, side=Side.BUY, energy_wh=w,
                                          price_per_mwh=9) for w in (1, 2)], domain=dom)


@pytest.fixture
def market() -> tuple[ReferenceLedger, DailySigners]:
    led = ReferenceLedger(interval_s=INTERVAL_S, retail_price_per_mwh=250_000_000,
                          feed_in_price_per_mwh=80_000_000, gate_lead_s=0,
                          domain=Domain(chain_id=1, verifying_contract=Account.create().address,
                                        salt=b"\x01" * 32))
    for d in (11, 12, 13):
        led.register_device(Device(device_id=d, owner=d - 9, kind=DeviceKind.PV, bus=d,
                                   capacity_w=2_000))
        led.deposit(d - 9, 100_000_000)
    signers = DailySigners(seed=1, device_ids=[11, 12, 13], per_day=DAY_S // INTERVAL_S,
                           planner=_plan)  # the devices' day-ahead plans
    signers.bind(led)
    return led, signers


def _plan(ks: range) -> tuple[np.ndarray, ...]:
    """Both devices plan today's orders of every interval (device 11 selling 500 Wh)."""
    rows = [(o.device_id, o.interval, o.side == Side.BUY, o.energy_wh, o.price_per_mwh)
            for k in ks for o in _orders(k)]
    return tuple(np.array(c) for c in zip(*rows, strict=True))


def _orders(k: int, sell_wh: int = 500) -> list[OrderIntent]:
    return [OrderIntent(device_id=11, interval=k, side=Side.SELL, energy_wh=sell_wh,
                        price_per_mwh=90_000_000),
            OrderIntent(device_id=12, interval=k, side=Side.BUY, energy_wh=400,
                        price_per_mwh=200_000_000)]


def test_scheduled_orders_forged_stale_replayed_refused(market: tuple[ReferenceLedger, DailySigners]) -> None:
    led, signers = market
    dom = led.domain
    first = signers.sign_orders(_orders(0), domain=dom)
    assert len(led.place_scheduled_orders(first)) == 2
    # the same slot again under the same revision: the nonce floor refuses it
    with pytest.raises(e.ReplayedNonce):
        led.place_scheduled_orders(first[:1])
    # the relayer alters the order (or the schedule it relays): not what the device signed
    forged = dataclasses.replace(first[0], intent=dataclasses.replace(first[0].intent, energy_wh=900))
    with pytest.raises(e.BadSignature):
        led.place_scheduled_orders([forged])
    grid = first[0].schedule.orders.copy()
    grid[1, 2] = 1_500  # interval 1's sell slot, same signature
    sched = dataclasses.replace(first[0].schedule, orders=grid, revision=1)
    with pytest.raises(e.BadSignature):
        led.place_scheduled_orders([dataclasses.replace(
            first[0], intent=dataclasses.replace(first[0].intent, interval=1, energy_wh=1_500),
            schedule=sched)])
    # the device revises interval 1: the new revision places, the old one is stale from then on
    led.set_time(now_s=1)
    led.clear(0)
    old = first[0]  # revision 0's schedule: 500 Wh planned in interval 1
    rev = signers.sign_orders(_orders(1, sell_wh=700), domain=dom)
    # 11 changed its mind (a revision signed), 12 orders as planned (no new signature)
    assert rev[0].schedule.revision == 1 and rev[1].schedule is first[1].schedule
    assert isinstance(rev[0].schedule, SignedAmendment) and rev[0].schedule.slot == 1
    assert (signers.n_signed["schedules"], signers.n_signed["amendments"]) == (2, 1)
    assert [o.energy_wh for o in led.place_scheduled_orders(rev)] == [700, 400]
    stale = dataclasses.replace(old, intent=dataclasses.replace(old.intent, interval=1))
    assert stale.intent.energy_wh == 500  # what revision 0 said
    with pytest.raises(StaleSchedule):
        led.place_scheduled_orders([stale])
    # an amendment altered by the relayer (another slot value under its signature) is not
    # what the device signed; a link withheld breaks the chain of the next one
    am = rev[0].schedule
    assert isinstance(am, SignedAmendment)
    (nxt,) = signers.sign_orders(_orders(1, sell_wh=800)[:1], domain=dom)  # revision 2, slot 1
    (nxt3,) = signers.sign_orders(_orders(1, sell_wh=900)[:1], domain=dom)  # revision 3, slot 1
    altered = dataclasses.replace(nxt.schedule, values=(0, 0, 850, 90_000_000))
    with pytest.raises(e.BadSignature):
        led.place_scheduled_orders([dataclasses.replace(
            nxt, intent=dataclasses.replace(nxt.intent, energy_wh=850), schedule=altered)])
    with pytest.raises(BrokenAmendment):
        led.place_scheduled_orders([nxt3])
    assert [o.energy_wh for o in led.place_scheduled_orders([nxt])] == [800]
    with pytest.raises(e.ReplayedNonce):  # the same amended slot again
        led.place_scheduled_orders([nxt])
    assert [o.energy_wh for o in led.place_scheduled_orders([nxt3])] == [900]
    # day 1: yesterday's schedule is refused for today's interval
    led.set_time(now_s=INTERVAL_S + 1)
    led.clear(1)
    with pytest.raises(WrongDay):
        led.place_scheduled_orders([dataclasses.replace(
            rev[0], intent=dataclasses.replace(rev[0].intent, interval=2))])
    # another run (same seed and keys, another domain salt): worthless here
    other = DailySigners(seed=1, device_ids=[11, 12, 13], per_day=2).sign_orders(
        _orders(2), domain=Domain(chain_id=1, verifying_contract=dom.verifying_contract,
                                  salt=b"\x02" * 32))
    with pytest.raises(e.BadSignature):
        led.place_scheduled_orders(other)
    led.revoke_device(11)
    today = signers.sign_orders(_orders(2), domain=dom)
    with pytest.raises(e.DeviceRevoked):
        led.place_scheduled_orders(today[:1])
    assert len(led.place_scheduled_orders(today[1:])) == 1


def test_daily_readings_true_up_forged_and_replayed_refused(
        market: tuple[ReferenceLedger, DailySigners]) -> None:
    led, signers = market
    dom = led.domain
    balance = {a: led.balance(a).free for a in (2, 3, 4, 1)}
    for k in (0, 1):
        led.place_scheduled_orders(signers.sign_orders(_orders(k), domain=dom))
        led.set_time(now_s=k * INTERVAL_S + 1)
        led.clear(k)
    real = {0: {11: -500, 12: 400, 13: 100}, 1: {11: -600, 12: 400, 13: 0}}
    for k in (0, 1):
        signers.record_readings(interval=k, metered_wh=real[k])
        relayed = dict(real[k])
        if k == 1:
            relayed[13] = 300  # the operator relays a wrong value for device 13
        led.settle_relayed(k, relayed)
    batches = signers.daily_readings(day=0, domain=dom)
    forged = SignedDailyReadings(device_id=13, day=0, metered_wh=np.array([100, 900]),
                                 signature=batches[2].signature)
    with pytest.raises(e.BadSignature):
        led.true_up_daily([*batches[:2], forged])
    assert led.daily_waits(13)  # its relayed-reading settlements wait (bond kept until then)
    (tu,) = led.true_up_daily(batches)
    assert (tu.device_id, tu.interval, tu.estimated_wh, tu.metered_wh) == (13, 1, 300, 0)
    assert tu.amount == 300 * 250  # the relayed import charged at retail is paid back
    with pytest.raises(e.AlreadyTruedUp):
        led.true_up_daily(batches[2:])
    assert not led.daily_waits(13)
    # money: device 13 imported 100 Wh at retail in the end, nothing else moved for it
    assert led.balance(4).free == balance[4] - 100 * 250


def test_bulk_placement_and_settlement_equal_one_by_one(monkeypatch: pytest.MonkeyPatch) -> None:
    """The column-wise booking (twin/market/place_bulk.py), trade payments and settlement
    (twin/market/settle_bulk.py) leave exactly the state and rows of the one-by-one walks; a
    batch with one failing order, and an interval where an owner cannot pay its import from
    free balance, go one by one."""
    import twin.market.reference_daily as rd
    import twin.market.reference_settlement as rs

    def ledger() -> tuple[ReferenceLedger, DailySigners]:
        led = ReferenceLedger(interval_s=INTERVAL_S, retail_price_per_mwh=250_000_000,
                              feed_in_price_per_mwh=80_000_000, gate_lead_s=0,
                              bond_intervals=1,
                              domain=Domain(chain_id=1, verifying_contract="0x" + "11" * 20,
                                            salt=b"\x01" * 32))
        for d in range(20, 30):  # two devices per owner
            led.register_device(Device(device_id=d, owner=d // 2, kind=DeviceKind.PV, bus=d,
                                       capacity_w=2_000))
            led.deposit(d // 2, 5_000_000_000 if d < 28 else 8_000_000)  # owner 14: little
        led.deposit(1, 10_000_000_000)  # the DSO pays for exports
        signers = DailySigners(seed=3, device_ids=range(20, 30), per_day=2)
        signers.bind(led)
        return led, signers

    def batch(k: int, wh: int) -> list[OrderIntent]:
        return [OrderIntent(device_id=d, interval=k, side=Side.BUY if d % 2 else Side.SELL,
                            energy_wh=wh + d, price_per_mwh=100_000_000 + d) for d in range(20, 30)]

    def counting(real: Any, taken: list[bool]) -> Any:
        """``real``, noting in ``taken`` whether each call took the column-wise path."""
        def counted(*a: object, **k: object) -> object:
            out = real(*a, **k)
            taken.append(out is not None)
            return out
        return counted

    states: list[Any] = []
    booked: list[bool] = []
    settled: list[bool] = []
    paid: list[bool] = []
    counted = counting(rd.place_bulk, booked)
    counted_settle = counting(rs.settle_bulk, settled)
    counted_trades = counting(rs.trade_sums, paid)

    for bulk in (True, False):
        monkeypatch.setattr(rd, "place_bulk", counted if bulk else lambda *a, **k: None)
        monkeypatch.setattr(rs, "settle_bulk", counted_settle if bulk else lambda *a, **k: None)
        monkeypatch.setattr(rs, "trade_sums", counted_trades if bulk else lambda *a, **k: None)
        led, signers = ledger()
        for k, wh in ((0, 300), (1, 5_000)):
            led.place_scheduled_orders(signers.sign_orders(batch(k, wh), domain=led.domain))
        # 25 Wh over its cap: the whole batch one by one, the bad order skipped and reported
        bad = [*batch(2, 100)[:-1], OrderIntent(device_id=29, interval=2, side=Side.BUY,
                                                energy_wh=24_001, price_per_mwh=1)]
        assert len(led.place_scheduled_orders(signers.sign_orders(bad, domain=led.domain),
                                              strict=False)) == 9
        assert isinstance(led.rejected[0].error, e.CapacityExceeded)
        rows = []
        for k in (0, 1):
            led.clear(k)
            # imports and exports; in interval 1 device 28 imports 24,000 Wh: its owner's
            # free balance cannot pay it (bond drawn)
            rows += led.settle_relayed(k, {d: (d - 25) * 1_000 if k == 0 or d != 28 else 24_000
                                           for d in range(20, 30)})
        states.append((rows, led.orders(0), led.orders(1), led.orders(2),
                       {a: led.balance(a) for a in range(10, 15)},
                       *(dict(getattr(led, f)) for f in ("_escrow", "_nonces", "_used", "_n_orders",
                                                          "_device_info", "_bond_short"))))
    assert booked == [True, True, False]  # the first two batches booked column-wise
    assert settled == [True, False]  # interval 0 column-wise, interval 1 one by one
    assert paid == [True, True]  # both intervals' trades paid column-wise
    assert states[0] == states[1]
