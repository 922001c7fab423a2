"""Meter-data faults on the reference ledger: provisional settlement on estimates, true-ups,
duplicates and late readings never counted twice, tokens conserved (property tests over
random seeded fault schedules), and the books after true-up equal the fault-free run's."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twin.faults.comm_spec import BurstSpec, DataFaultsSpec, PollingSpec
from twin.faults.meter_data import MeterDataFaults
from twin.market.device_signers import DeviceSigners
from twin.market.errors import BadSignature
from twin.market.provisional import AlreadyTruedUp, MeterDesk, NotProvisional
from twin.market.reference import ReferenceLedger
from twin.market.step import MarketLog, MarketStep
from twin.market.types import DSO_ACCOUNT, Device, DeviceKind, OrderIntent, Side

INTERVAL_S = 900
DEVICES = {10 + k: 2 + k % 6 for k in range(8)}  # device -> owner
ACCOUNTS = range(0, 8)


def _ledger(signers: DeviceSigners | None) -> tuple[ReferenceLedger, int]:
    led = ReferenceLedger(interval_s=INTERVAL_S, retail_price_per_mwh=300_000_000,
                          feed_in_price_per_mwh=80_000_000)
    for d, owner in DEVICES.items():
        led.register_device(Device(device_id=d, owner=owner, kind=DeviceKind.PV, bus=0,
                                   capacity_w=20_000))
    minted = 0
    for a in range(1, 8):  # funded well: no settlement runs into debt
        led.deposit(a, 10**12)
        minted += 10**12
    if signers is not None:
        signers.bind(led)
    return led, minted


def _books(led: ReferenceLedger) -> list[tuple[int, int, int]]:
    return [(led.balance(a).free, led.balance(a).locked, led.balance(a).debt) for a in ACCOUNTS]


def _run(spec: DataFaultsSpec | None, *, seed: int, n: int, signed: bool = True
         ) -> tuple[ReferenceLedger, int, MeterDesk | None, list[dict]]:
    """``n`` market steps of random orders and meter readings (drawn from ``seed`` alone, so
    the faulted and the fault-free run trade and meter the same)."""
    rng = np.random.default_rng(seed)
    signers = DeviceSigners(seed=seed, device_ids=DEVICES) if signed else None
    led, minted = _ledger(signers)
    desk = MeterDesk(estimate="schedule" if seed % 2 else "last") if spec else None
    step = MarketStep(ledger=led, interval_s=INTERVAL_S, n_intervals=n, log=MarketLog(),
                      signers=signers, desk=desk)
    faults = MeterDataFaults(spec, seed=seed, interval_s=INTERVAL_S, n_intervals=n) if spec else None
    trueups: list[dict] = []
    for k in range(n):
        metered = {d: int(rng.integers(-4000, 4000)) for d in DEVICES}
        orders = [OrderIntent(device_id=d, interval=k + 1, side=Side(int(rng.integers(0, 2))),
                              energy_wh=int(rng.integers(1, 3000)),
                              price_per_mwh=int(rng.integers(50, 400)) * 1_000_000)
                  for d in DEVICES if rng.random() < 0.7]
        kw: dict = {"metered_wh": metered, "metered_interval": k}
        if faults is not None:
            msg, _rows = faults.deliver(k, metered)
            kw = {"metered_wh": msg["metered_wh"], "metered_interval": k,
                  "expected": msg["expected"], "late": msg["late"]}
        res = step.step(k, orders_interval=k + 1, orders=orders, curtailments=[], **kw)
        trueups += res.rows.get("trueups", [])
    return led, minted, desk, trueups


def _conserved(led: ReferenceLedger, minted: int) -> None:
    assert led.total_supply() == minted
    assert all(led.balance(a).free >= 0 and led.balance(a).locked >= 0 for a in ACCOUNTS)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31), loss=st.floats(0, 0.5), poll=st.floats(0, 0.9),
       delay=st.floats(0, 0.5), delay_s=st.integers(1, 4000), dup=st.floats(0, 0.5),
       backfill=st.integers(0, 3000), burst=st.booleans())
def test_random_data_faults_conserve_tokens_and_true_up_to_the_fault_free_books(
        seed: int, loss: float, poll: float, delay: float, delay_s: int, dup: float,
        backfill: int, burst: bool) -> None:
    spec = DataFaultsSpec(loss_rate=loss, poll_failure_rate=poll, delay_rate=delay,
                          delay_s=delay_s, duplicate_rate=dup, backfill_delay_s=backfill,
                          bursts=[BurstSpec(start_s=2 * INTERVAL_S, duration_s=2 * INTERVAL_S,
                                            devices=[11, 12])] if burst else [],
                          polling=PollingSpec(retries=3, retry_interval_s=60, deadline_s=300))
    n = 8
    led, minted, desk, trueups = _run(spec, seed=seed, n=n)
    _conserved(led, minted)
    keys = [(t["interval"], t["device_id"]) for t in trueups]
    assert len(keys) == len(set(keys)), "a reading was trued up twice"
    assert desk is not None and not desk.open_estimates  # every reading arrived by the end
    assert not led.provisional()
    clean, _clean_minted, _, _ = _run(None, seed=seed, n=n)
    assert _books(led) == _books(clean)  # true-ups close exactly on the fault-free books


def test_lost_for_good_readings_stay_provisional_and_conserve() -> None:
    spec = DataFaultsSpec(loss_rate=0.3, backfill_delay_s=None, duplicate_rate=0.3)
    led, minted, desk, _trueups = _run(spec, seed=7, n=6, signed=False)
    _conserved(led, minted)
    assert desk is not None and desk.open_estimates and led.provisional()
    assert set(led.provisional()) == set(desk.open_estimates)


def test_true_up_once_only_and_only_for_provisional(ledger: ReferenceLedger) -> None:
    led = ledger
    led.place_orders([OrderIntent(device_id=12, interval=0, side=Side.SELL, energy_wh=1000,
                                  price_per_mwh=100_000_000),
                      OrderIntent(device_id=13, interval=0, side=Side.BUY, energy_wh=1000,
                                  price_per_mwh=200_000_000)])
    led.clear(0)
    led.settle(0, {12: -1000}, estimated_wh={13: 1000})
    assert led.provisional() == {(0, 13): 1000}
    with pytest.raises(NotProvisional):
        led.true_up(0, 12, -900)
    dso_before = led.balance(DSO_ACCOUNT).free
    tu = led.true_up(0, 13, 1500)  # 500 Wh more imported than estimated: owner pays retail
    assert (tu.delta_wh, tu.amount) == (500, -125_000)
    assert led.balance(DSO_ACCOUNT).free == dso_before + 125_000
    with pytest.raises(AlreadyTruedUp):
        led.true_up(0, 13, 1500)


def test_true_up_signed_needs_the_device_key(ledger: ReferenceLedger) -> None:
    led = ledger
    signers = DeviceSigners(seed=1, device_ids=[12, 13])
    signers.bind(led)
    led.clear(0)
    led.settle(0, {}, estimated_wh={13: 100})
    forged = DeviceSigners(seed=2, device_ids=[13]).sign_readings(
        interval=0, metered_wh={13: 300}, domain=led.domain)[0]
    with pytest.raises(BadSignature):
        led.true_up_signed(forged)
    real = signers.sign_readings(interval=0, metered_wh={13: 300}, domain=led.domain)[0]
    assert led.true_up_signed(real).delta_wh == 200


def test_acquisition_rate_reads_the_loss_rate_within_sampling_error() -> None:
    spec = DataFaultsSpec(loss_rate=0.01, poll_failure_rate=0.05)
    faults = MeterDataFaults(spec, seed=3, interval_s=INTERVAL_S)
    rows = [r for k in range(96) for r in faults.deliver(k, {d: 100 for d in range(100)})[1]]
    rate = np.mean([r["acquired"] for r in rows])
    sigma = np.sqrt(0.01 * 0.99 / len(rows))
    assert abs(rate - 0.99) < 3 * sigma
