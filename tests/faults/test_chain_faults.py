"""A flaky chain with fixed fault schedules, on a real Anvil behind the real fault-injecting
proxy: the market's books come out exactly as the reference ledger's (no transaction lost or
executed twice), every incident is recorded with its recovery, and a resent transaction is
never executed twice."""

from __future__ import annotations

import math
import time

import pytest
import requests
from eth_utils import keccak

from twin.chain.anvil import AnvilNode
from twin.chain.compile import compile_contracts
from twin.chain.ledger import ChainLedger
from twin.chain.tx import ChainOutage
from twin.faults.chain_faults import faulty, proxied_web3
from twin.faults.comm_spec import ChainFaultsSpec, GasSpikeSpec, OutageWindowSpec
from twin.market.reference import ReferenceLedger
from twin.market.types import Device, DeviceKind, OrderIntent, Side

pytestmark = pytest.mark.chain

PARAMS = {"interval_s": 900, "retail_price_per_mwh": 250_000_000,
          "feed_in_price_per_mwh": 80_000_000}


def _market_day(led: object, n: int) -> None:
    """Register, fund, and run ``n`` intervals of orders, clearing and settlement."""
    led.set_time(0)  # type: ignore[attr-defined]
    for a in range(2, 6):
        led.register_device(Device(device_id=10 + a, owner=a, kind=DeviceKind.PV, bus=a,  # type: ignore[attr-defined]
                                   capacity_w=11_000))
        led.deposit(a, 10_000_000)  # type: ignore[attr-defined]
    led.deposit(1, 5_000_000)  # type: ignore[attr-defined]
    for k in range(n):
        led.set_time(k * 900)  # type: ignore[attr-defined]
        led.place_orders([  # type: ignore[attr-defined]
            OrderIntent(device_id=12, interval=k + 1, side=Side.SELL, energy_wh=800 + k,
                        price_per_mwh=90_000_000),
            OrderIntent(device_id=13, interval=k + 1, side=Side.BUY, energy_wh=600,
                        price_per_mwh=200_000_000),
            OrderIntent(device_id=14, interval=k + 1, side=Side.BUY, energy_wh=500 + k,
                        price_per_mwh=150_000_000)])
        led.clear(k + 1)  # type: ignore[attr-defined]
        if k >= 1:
            led.settle(k, {12: -700, 13: 650, 14: 400 + k})  # type: ignore[attr-defined]


def test_drops_delays_restart_and_outage_leave_the_books_of_the_reference() -> None:
    # the faults are in simulated time: a 4-minute outage costs the test no 4 wall minutes
    spec = ChainFaultsSpec(drop_rate=0.15, delay_rate=0.15, delay_s=0.4, resend_after_s=0.8,
                           restarts_s=[900], outages=[OutageWindowSpec(start_s=1800, duration_s=240)],
                           gas_spikes=[GasSpikeSpec(start_s=900, duration_s=0.5, factor=5)],
                           deadline_s=300)
    compiled = compile_contracts()
    ref = ReferenceLedger(**PARAMS)
    _market_day(ref, 4)
    proxies: list = []
    with AnvilNode(accounts=8, automine=False) as node, proxied_web3(node, spec, seed=3, skip_before_s=-1,
                                                     holder=proxies) as w3:
        inner = ChainLedger.deploy(w3, compiled=compiled, **PARAMS)
        # as twin.run_ledger: settled intervals pruned, the node compacted behind the proxy too
        inner.prune_settled, inner.compact_node, inner.compact_after_slots = True, node.compact, 1
        led = faulty(inner, spec, proxies[0])
        t0 = time.monotonic()
        _market_day(led, 4)
        assert time.monotonic() - t0 < 60
        assert led.compactions == 2  # after the settlements of intervals 2 and 3 (pruning 1, 2)
        assert [r["interval"] for r in led.tx_table()
                if r["function"] == "EnergyMarket.pruneInterval"] == [1, 2]
        assert led.tx.batching  # pipelined sends go out as batches through the proxy
        for a in range(0, 6):
            assert led.balance(a) == ref.balance(a), a
        for k in range(1, 4):
            assert led.interval_status(k) == ref.interval_status(k)
        # every recorded transaction executed exactly once: each sender's nonce = its count
        sent: dict[str, int] = {}
        for t in led.tx.transactions:
            addr = led.tx.address_of(t.sender)
            sent[addr] = sent.get(addr, 0) + 1
        for addr, count in sent.items():
            assert w3.eth.get_transaction_count(addr) == count, addr
        log = led.drain_fault_log(time_s=0, interval=0, final=True)
        kinds = {r["kind"] for r in log["chain_incidents"]}
        assert {"restart", "outage", "dropped_tx", "delayed_tx", "gas_spike"} <= kinds
        for r in log["chain_incidents"]:
            assert math.isfinite(r["duration_s"]) and r["duration_s"] >= 0
        outage = next(r for r in log["chain_incidents"] if r["kind"] == "outage")
        assert 240 <= outage["duration_s"] < 250  # the twin waited it out (simulated)
        lat = log["tx_latency"]
        assert lat and all(r["latency_s"] > 0 for r in lat) and max(r["sends"] for r in lat) > 1
        # a mined transaction sent again as the same bytes is refused: it cannot run twice
        before = led.balance(2)
        raw = led.tx.rpc("eth_getRawTransactionByHash", [led.tx.transactions[-1].tx_hash])["result"]
        assert "0x" + keccak(hexstr=raw).hex() == led.tx.transactions[-1].tx_hash
        again = requests.post(  # straight to the node, past the proxy
            node.url, json={"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction",
                            "params": [raw]}, timeout=10).json()
        assert "nonce too low" in again["error"]["message"].lower()
        assert led.balance(2) == before


def test_an_outage_beyond_the_deadline_raises_a_resumable_chain_outage() -> None:
    spec = ChainFaultsSpec(outages=[OutageWindowSpec(start_s=900, duration_s=20)], deadline_s=1.0,
                           resend_after_s=0.5)
    proxies: list = []
    with AnvilNode(accounts=8, automine=False) as node, proxied_web3(node, spec, seed=1, skip_before_s=-1,
                                                     holder=proxies) as w3:
        led = faulty(ChainLedger.deploy(w3, compiled=compile_contracts(), **PARAMS), spec, proxies[0])
        led.set_time(0)
        led.deposit(2, 1000)
        # outside the fault window the twin talks to the node itself; inside it, to the proxy
        assert proxies[0].clock.url() == node.url
        with pytest.raises(ChainOutage, match="deadline_s") as info:
            led.set_time(900)
        assert getattr(info.value, "resumable", False)
        assert proxies[0].clock.url() == proxies[0].url
        rows = led.drain_fault_log(time_s=900, interval=1, final=True)["chain_incidents"]
        assert [r["kind"] for r in rows] == ["outage"]
