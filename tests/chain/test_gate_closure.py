"""Gate closure by block time: orders for interval k are accepted while the clock is at most
gate(k) = k * interval_s - gate_lead_s (seconds since the market's start); later ones revert
with ``GateClosed`` on chain and raise it in the reference, never booked. The chain's clock is
Anvil's block time, moved by ``set_time`` through ``evm_setNextBlockTimestamp``."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from web3 import Web3

from tests._orders import buy, raises, sell
from tests.chain.conftest import FEED_IN, INTERVAL_S, RETAIL, setup_market
from twin.chain.ledger import ChainLedger
from twin.market import errors as e
from twin.market.ledger import Ledger
from twin.market.reference import ReferenceLedger
from twin.market.signing import DeviceKey

pytestmark = pytest.mark.chain


def test_default_clock_opens_every_interval_and_agrees(ledger: Ledger) -> None:
    """Before any set_time the clock stands one interval before interval 0's gate."""
    assert ledger.gate_lead_s == INTERVAL_S  # type: ignore[attr-defined]
    assert ledger.now_s == -2 * INTERVAL_S  # type: ignore[attr-defined]
    assert ledger.gate_s(0) == -INTERVAL_S  # type: ignore[attr-defined]
    assert ledger.gate_s(3) == 2 * INTERVAL_S  # type: ignore[attr-defined]
    ledger.place_orders([buy(12, 100, 100_000_000, interval=0)])


def test_order_after_closure_is_rejected_and_never_booked(ledger: Ledger) -> None:
    gate = ledger.gate_s(2)  # type: ignore[attr-defined]
    assert gate == INTERVAL_S  # the gate of 2 closes when interval 1 begins
    ledger.set_time(gate)  # type: ignore[attr-defined]
    placed = ledger.place_orders([buy(12, 1000, 120_000_000, interval=2)])  # at the gate: in
    before = [ledger.balance(a) for a in range(8)]
    ledger.set_time(gate + 1)  # type: ignore[attr-defined]
    err = raises(
        e.GateClosed,
        lambda: ledger.place_orders(
            [sell(14, 500, 90_000_000, interval=3), buy(13, 1000, 130_000_000, interval=2)]
        ),
        interval=2, gate=gate, time=gate + 1,
    )  # fmt: skip
    assert "interval 2" in str(err) and "gate" in str(err)
    assert ledger.orders(2) == placed and ledger.orders(3) == []  # the whole batch is void
    assert [ledger.balance(a) for a in range(8)] == before  # no escrow taken
    clearing = ledger.clear(2)  # what made the gate still clears
    assert clearing.trades == ()


def test_chain_revert_is_on_chain_and_decoded(chain_ledger: ChainLedger) -> None:
    """No pre-send check: the contract decides by block time; the failed transaction is in
    the transaction table with status 0 and the error carries its hash."""
    led = chain_ledger
    led.set_time(led.gate_s(1) + 60)
    err = raises(
        e.GateClosed, lambda: led.place_orders([buy(12, 10, 100_000_000, interval=1)]),
        interval=1, gate=0, time=60,
    )  # fmt: skip
    assert err.pre_send is False and err.tx_hash is not None
    rec = led.transactions[-1]
    assert (rec.tx_hash, rec.status, rec.function) == (err.tx_hash, 0, "EnergyMarket.placeOrders")
    receipt = led.w3.eth.get_transaction_receipt(err.tx_hash)
    assert receipt["status"] == 0 and receipt["logs"] == []
    block = led.w3.eth.get_block(receipt["blockNumber"])
    assert block["timestamp"] == led.market_start + 60
    assert led._provisional_market.functions.gateTime(1).call() == led.market_start + 0


def test_signed_order_after_closure_reverts_and_keeps_nonce(chain_ledger: ChainLedger) -> None:
    led = chain_ledger
    key = DeviceKey.from_seed("gate-13")
    led.set_device_signer(13, key.address)
    led.set_time(led.gate_s(1))
    ok = key.sign_order(buy(13, 100, 100_000_000, interval=1), nonce=1, domain=led.domain)
    assert len(led.place_signed_orders([ok])) == 1
    led.set_time(led.gate_s(1) + 1)
    late = key.sign_order(buy(13, 100, 100_000_000, interval=1), nonce=2, domain=led.domain)
    raises(
        e.GateClosed, lambda: led.place_signed_orders([late]),
        interval=1, gate=led.gate_s(1), time=led.gate_s(1) + 1,
    )  # fmt: skip
    assert led.market.functions.usage(1, 13).call()[2] == 1  # nonce 2 not consumed
    assert len(led.orders(1)) == 1


def test_set_time_moves_block_time_forward_only(chain_ledger: ChainLedger, w3: Web3) -> None:
    led = chain_ledger
    day = 96 * INTERVAL_S
    led.set_time(day)  # a simulated day on, no waiting
    led.place_orders([buy(12, 10, 100_000_000, interval=98)])
    led.place_orders([buy(13, 10, 100_000_000, interval=98)])
    blocks = [w3.eth.get_block(r.block) for r in led.transactions[-2:]]
    assert [b["timestamp"] for b in blocks] == [led.market_start + day] * 2  # frozen clock
    assert led.now_s == day
    with pytest.raises(ValueError, match="before the chain's clock"):
        led.set_time(day - 1)
    led.set_time(day)  # the same time again is fine
    led.place_orders([buy(14, 10, 100_000_000, interval=97)])  # its gate is now: still open
    raises(
        e.GateClosed, lambda: led.place_orders([buy(15, 10, 100_000_000, interval=96)]),
        interval=96, gate=day - INTERVAL_S, time=day,
    )  # fmt: skip


@pytest.mark.parametrize("lead", [0, 300])
def test_gate_lead_is_a_parameter(lead: int, deploy: Callable[..., ChainLedger]) -> None:
    """Both ledgers with the same lead give the same acceptances and the same errors."""
    chain = setup_market(deploy(gate_lead_s=lead))
    ref = setup_market(
        ReferenceLedger(
            interval_s=INTERVAL_S, retail_price_per_mwh=RETAIL, feed_in_price_per_mwh=FEED_IN,
            gate_lead_s=lead,
        )
    )  # fmt: skip
    outcomes = []
    for led in (chain, ref):
        got = []
        led.set_time(INTERVAL_S - lead)  # type: ignore[attr-defined]
        got.append(len(led.place_orders([buy(12, 10, 100_000_000, interval=1)])))
        led.set_time(INTERVAL_S - lead + 1)  # type: ignore[attr-defined]
        try:
            led.place_orders([buy(13, 10, 100_000_000, interval=1)])
        except e.GateClosed as exc:
            got.append(exc.values)
        outcomes.append(got)
    assert (
        outcomes[0]
        == outcomes[1]
        == [1, {"interval": 1, "gate": INTERVAL_S - lead, "time": INTERVAL_S - lead + 1}]
    )


def test_reference_clock_rejects_going_back() -> None:
    ref = ReferenceLedger(
        interval_s=INTERVAL_S, retail_price_per_mwh=RETAIL, feed_in_price_per_mwh=FEED_IN
    )
    ref.set_time(5)
    with pytest.raises(ValueError, match="now_s=4 is before the market clock"):
        ref.set_time(4)
    with pytest.raises(ValueError, match="gate_lead_s"):
        ReferenceLedger(
            interval_s=INTERVAL_S, retail_price_per_mwh=RETAIL, feed_in_price_per_mwh=FEED_IN,
            gate_lead_s=-1,
        )  # fmt: skip
