"""Provisional settlement on estimated meter readings and the true-up on chain (library
ProvisionalSettlement behind EnergyMarket's fallback), on a real Anvil node: a fixed schedule
of lost, late and duplicated readings settles to the reference ledger's numbers, and after the
true-ups to the fault-free run's books; true-ups count once; tokens are conserved."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from tests.chain._helpers import (
    FEED_IN,
    INTERVAL_S,
    RETAIL,
    mapping_slot,
    slot_constants,
    storage_word,
)
from twin.chain.ledger import ChainLedger
from twin.faults.comm_spec import DataFaultsSpec, PollingSpec
from twin.faults.meter_data import MeterDataFaults
from twin.market.device_signers import DeviceSigners
from twin.market.errors import (
    AlreadyTruedUp,
    BadOrderList,
    BadSignature,
    NotProvisional,
    NotSettled,
    UnknownTrade,
)
from twin.market.provisional import MeterDesk
from twin.market.reference import ReferenceLedger
from twin.market.step import MarketLog, MarketStep
from twin.market.types import Device, DeviceKind, OrderIntent, Side

pytestmark = pytest.mark.chain

DEVICES = {10 + k: 2 + k % 6 for k in range(8)}  # device -> owner
ACCOUNTS = range(0, 8)
SEED = 7
N = 5
SPEC = DataFaultsSpec(loss_rate=0.25, poll_failure_rate=0.3, delay_rate=0.2, delay_s=1200,
                      duplicate_rate=0.3, backfill_delay_s=600,
                      polling=PollingSpec(retries=2, retry_interval_s=60, deadline_s=300))


def _setup(led: Any, signers: DeviceSigners) -> int:
    for d, owner in DEVICES.items():
        led.register_device(Device(device_id=d, owner=owner, kind=DeviceKind.PV, bus=0,
                                   capacity_w=20_000))
    for a in range(1, 8):
        led.deposit(a, 10**12)
    signers.bind(led)
    return 7 * 10**12


def _run(led: Any, spec: DataFaultsSpec | None) -> tuple[int, list[dict], list[dict], list[dict]]:
    """``N`` market steps of seeded orders and readings (the same with and without faults)."""
    rng = np.random.default_rng(SEED)
    signers = DeviceSigners(seed=SEED, device_ids=DEVICES)
    minted = _setup(led, signers)
    desk = MeterDesk(estimate="schedule") if spec else None
    step = MarketStep(ledger=led, interval_s=INTERVAL_S, n_intervals=N, log=MarketLog(),
                      signers=signers, desk=desk)
    faults = MeterDataFaults(spec, seed=SEED, interval_s=INTERVAL_S, n_intervals=N) if spec else None
    rows: dict[str, list[dict]] = {"trueups": [], "provisional": [], "settlements": []}
    for k in range(N):  # the last step collects every reading still on its way
        metered = {d: int(rng.integers(-4000, 4000)) for d in DEVICES}
        orders = [OrderIntent(device_id=d, interval=k + 1, side=Side(int(rng.integers(0, 2))),
                              energy_wh=int(rng.integers(1, 3000)),
                              price_per_mwh=int(rng.integers(50, 400)) * 1_000_000)
                  for d in DEVICES if rng.random() < 0.7]
        kw: dict = {"metered_wh": metered, "metered_interval": k}
        if faults is not None:
            msg, _ = faults.deliver(k, metered)
            kw = {"metered_wh": msg["metered_wh"], "metered_interval": k,
                  "expected": msg["expected"], "late": msg["late"]}
        res = step.step(k, orders_interval=k + 1, orders=orders, curtailments=[], **kw)
        for t in rows:
            rows[t] += [{c: v for c, v in r.items() if c != "time_s"} for r in res.rows.get(t, [])]
    return minted, rows["trueups"], rows["provisional"], rows["settlements"]


def _books(led: Any) -> list[tuple[int, int, int]]:
    return [(led.balance(a).free, led.balance(a).locked, led.balance(a).debt) for a in ACCOUNTS]


def _reference() -> ReferenceLedger:
    return ReferenceLedger(interval_s=INTERVAL_S, retail_price_per_mwh=RETAIL,
                           feed_in_price_per_mwh=FEED_IN)


def test_chain_true_up_equals_reference_and_fault_free_books(
        deploy: Callable[..., ChainLedger]) -> None:
    chain = deploy()
    chain.prune_settled = True  # as the twin's runs: true-ups of pruned intervals still work
    minted, trueups, prov, settled = _run(chain, SPEC)
    ref = _reference()
    _, ref_trueups, ref_prov, ref_settled = _run(ref, SPEC)
    assert prov and trueups, "the schedule must settle provisionally and true up"
    assert (prov, trueups, settled) == (ref_prov, ref_trueups, ref_settled)
    assert _books(chain) == _books(ref)
    clean = _reference()
    _run(clean, None)
    assert _books(chain) == _books(clean)  # after the true-ups: the fault-free books
    assert chain.provisional() == ref.provisional() == {}
    assert chain.total_supply() == minted
    assert sorted(r["interval"] for r in chain.tx_table() if r["function"] == "EnergyMarket.pruneInterval") == [1, 2, 3]
    # a late or duplicated reading never counts twice; only estimates are trued up
    t = trueups[0]
    with pytest.raises(AlreadyTruedUp):
        chain.true_up(t["interval"], t["device_id"], t["metered_wh"])
    real = next(r for r in settled if (r["interval"], r["device_id"]) not in
                {(p["interval"], p["device_id"]) for p in prov})
    with pytest.raises(NotProvisional):
        chain.true_up(real["interval"], real["device_id"], real["metered_wh"])


def test_chain_true_up_refuses_a_reading_the_device_did_not_sign(
        deploy: Callable[..., ChainLedger]) -> None:
    chain = deploy()
    signers = DeviceSigners(seed=SEED, device_ids=DEVICES)
    _setup(chain, signers)
    chain.place_signed_orders(signers.sign_orders(
        [OrderIntent(device_id=10, interval=1, side=Side.BUY, energy_wh=1000, price_per_mwh=200_000_000),
         OrderIntent(device_id=11, interval=1, side=Side.SELL, energy_wh=1000, price_per_mwh=100_000_000)],
        domain=chain.domain))
    chain.clear(interval=1)
    chain.set_time(now_s=2 * INTERVAL_S)
    readings = signers.sign_readings(interval=1, metered_wh={10: 900}, domain=chain.domain)
    rows = chain.settle_signed(1, readings, estimated_wh={11: -1000})
    assert [r.device_id for r in rows] == [10, 11] and chain.provisional() == {(1, 11): -1000}
    # the log fell out of the node's receipt window: an estimate the caller names is read
    # from storage (a resumed run names its meter desk's open estimates)
    logs, chain._logs = chain._logs, lambda *a, **k: []
    try:
        assert chain.provisional() == {}
        assert chain.provisional(also=[(1, 11), (1, 10), (2, 11)]) == {(1, 11): -1000}
    finally:
        del chain._logs
    assert chain._logs == logs
    forged = signers.sign_readings(interval=1, metered_wh={10: -1200}, domain=chain.domain)[0]
    with pytest.raises(BadSignature):  # device 10's key signed it, not device 11's
        chain.true_up_signed(type(forged)(device_id=11, interval=1, metered_wh=-1200,
                                          signature=forged.signature))
    real = signers.sign_readings(interval=1, metered_wh={11: -1200}, domain=chain.domain)[0]
    tu = chain.true_up_signed(real)
    assert (tu.estimated_wh, tu.metered_wh, tu.delta_wh) == (-1000, -1200, -200)
    assert tu.amount == 200 * FEED_IN // 1_000_000 and chain.provisional() == {}


def test_library_slot_constants_match_energy_markets_storage(
        deploy: Callable[..., ChainLedger]) -> None:
    """The libraries reach the market's storage by slot number (MarketSlots): each constant must
    hold what EnergyMarket's getter of that variable reads (a variable added above it moves it)."""
    slot = slot_constants("MarketSlots.sol")
    chain = deploy()
    signers = DeviceSigners(seed=SEED, device_ids=DEVICES)
    _setup(chain, signers)
    chain.place_signed_orders(signers.sign_orders(
        [OrderIntent(device_id=10, interval=1, side=Side.BUY, energy_wh=1000, price_per_mwh=200_000_000),
         OrderIntent(device_id=11, interval=1, side=Side.SELL, energy_wh=1000, price_per_mwh=100_000_000),
         OrderIntent(device_id=12, interval=2, side=Side.SELL, energy_wh=1000, price_per_mwh=100_000_000)],
        domain=chain.domain))
    chain.clear(interval=1)
    chain.set_time(now_s=2 * INTERVAL_S)
    m, at = chain.market, mapping_slot
    zero = b"\0" * 32

    def chunk(device: int, wh: int, v: int, last: bool) -> None:
        paid, read, _ = chain._provisional_market.functions.settlementProgress(1).call()
        chain._transact(chain._provisional_market, "settleProvisionalChunk",
                        [1, paid + read, 2**64, [device], [wh], [zero], [zero], [v], last],
                        sender=0, purpose="test")

    def word(s: int) -> int:
        return storage_word(chain.w3, m.address, s)

    assert word(at(1, slot["SETTLE_CURSORS"])) == 0
    chunk(10, 900, 1, False)  # half a settlement: the cursor holds paid 1, last device 10
    cursor = word(at(1, slot["SETTLE_CURSORS"]))
    assert (cursor & (2**32 - 1), cursor >> 104 & (2**64 - 1)) == (1, 10)
    assert chain._provisional_market.functions.settlementProgress(1).call() == [1, 1, 10]
    chunk(11, -1000, 0, True)
    assert chain.provisional() == {(1, 11): -1000}
    owner = int(chain.address_of(DEVICES[11]), 16)
    assert word(slot["OPERATOR"]) == int(m.functions.operator().call(), 16)
    assert word(at(owner, slot["ACCOUNTS"])) == m.functions.accounts(chain.address_of(DEVICES[11])).call()[0]
    assert word(at(0, slot["ORDERS"])) >> 128 & (2**30 - 1) == 10  # order 1: pair 0's high half
    assert chain._provisional_market.functions.orders(1).call()[0] == 10
    order3 = word(at(1, slot["ORDERS"])) >> 128  # pair 1: orders 2 (interval 1) and 3 (interval 2)
    assert order3 >> 30 & (2**28 - 1) == 2 and word(at(1, slot["ORDERS"])) >> 30 & (2**28 - 1) == 1
    info = word(at(11, slot["DEVICE_OWNERS"]))  # DeviceInfo: owner, last ordered interval, bonded
    assert (info & (2**160 - 1), info >> 160 & (2**64 - 1), info >> 224 & 1) == (owner, 1, 1)
    assert word(at(1, slot["TRADES"])) & (2**64 - 1) == m.functions.trades(1).call()[0]
    assert word(at(1, slot["INTERVALS"])) & 0xFF == m.functions.intervals(1).call()[0] == 2
    assert word(at(11, at(1, slot["POSITIONS"]))) & (2**96 - 1) == 2**96 - 1000  # int96 -1000
    assert word(at(11, at(1, slot["INJECTED"]))) == m.functions.injectedWh(1, 11).call() == 1000
    assert word(slot["MECHANISM"]) & 0xFF == m.functions.mechanism().call()
    assert word(at(11, at(1, slot["USAGE"]))) >> 64 & (2**64 - 1) == m.functions.usage(1, 11).call()[1] == 1000
    # pruning frees every per-interval slot; the interval stays settled and its estimate open
    prune = chain._provisional_market

    def pruned(interval: int, ids: list[int], devices: list[int], trades: range) -> None:
        chain._transact(prune, "pruneInterval", [interval, ids, devices, trades.start, trades.stop],
                        sender=0, purpose="test")

    with pytest.raises(NotSettled):
        pruned(2, [], [], range(0))
    with pytest.raises(BadOrderList):
        pruned(1, [1, 2, 3], [], range(0))  # order 3 is not of interval 1
    with pytest.raises(UnknownTrade):
        pruned(1, [], [], range(1, 3))  # interval 1 has trade 1 only
    freed = [at(0, slot["ORDERS"]), at(1, slot["TRADES"])] + [
        at(d, at(1, slot[v])) + k for d in (10, 11) for v in ("USAGE", "POSITIONS", "INJECTED")
        for k in range(1 + (v == "POSITIONS"))] + [at(1, slot["INTERVALS"]) + 1]  # its trade range
    assert sum(word(s) != 0 for s in freed) == 8
    pruned(1, [1, 2], [10, 11], range(1, 2))
    assert [word(s) for s in freed] == [0] * len(freed)
    assert word(at(1, slot["ORDERS"])) == order3 << 128  # order 2's half freed, order 3 (interval 2) kept
    assert chain.interval_status(1) == "settled" and chain.provisional() == {(1, 11): -1000}
    pruned(1, [1, 2], [10, 11], range(0))  # again: nothing left to free, nothing refused
    tu = chain.true_up(1, 11, -1200)  # the traded energy kept in the estimate's record
    assert (tu.estimated_wh, tu.delta_wh, tu.amount) == (-1000, -200, 200 * FEED_IN // 1_000_000)
