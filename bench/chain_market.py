"""Chain cost of the market: gas and wall time per order, clearing and settlement.

One simulated day: ``INTERVALS`` intervals x ``ORDERS`` orders from ``PARTICIPANTS``
accounts on a fresh Anvil, all through ChainLedger (one placeOrders tx per interval), and
the same day on the ReferenceLedger, checked equal. Prints the figures measured in this run.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from twin.chain.anvil import AnvilNode
from twin.chain.ledger import ChainLedger
from twin.market.reference import ReferenceLedger
from twin.market.types import Device, DeviceKind, OrderIntent, Side

INTERVALS, ORDERS, PARTICIPANTS = 96, 60, 50
PARAMS = {
    "interval_s": 900,
    "retail_price_per_mwh": 250_000_000,
    "feed_in_price_per_mwh": 80_000_000,
}


def main() -> None:
    rng = np.random.default_rng(7)
    devices = [
        Device(
            device_id=100 + k,
            owner=2 + k,
            kind=DeviceKind.PV,
            bus=k,
            capacity_w=int(rng.integers(3_000, 15_000)),
        )
        for k in range(PARTICIPANTS)
    ]
    with AnvilNode(accounts=PARTICIPANTS + 2) as node:
        chain = ChainLedger.deploy(node.web3(), **PARAMS)
        ref = ReferenceLedger(**PARAMS)
        for led in (chain, ref):
            for d in devices:
                led.register_device(d)
                led.deposit(d.owner, 50_000_000)
            led.deposit(1, 100_000_000)
        n_setup = len(chain.transactions)
        t_place = t_clear = t_settle = 0.0
        for i in range(INTERVALS):
            sellers = {d.device_id for d in devices if rng.random() < 0.4}
            intents = []
            for _ in range(ORDERS):
                d = devices[int(rng.integers(len(devices)))]
                cap = d.capacity_w * 900 // 3600
                intents.append(
                    OrderIntent(
                        device_id=d.device_id,
                        interval=i,
                        side=Side.SELL if d.device_id in sellers else Side.BUY,
                        energy_wh=int(rng.integers(1, max(2, cap // 8))),
                        price_per_mwh=int(rng.integers(40, 160)) * 1_000_000,
                    )
                )
            t0 = time.perf_counter()
            assert chain.place_orders(intents) == ref.place_orders(intents)
            t1 = time.perf_counter()
            assert chain.clear(i) == ref.clear(i)
            t2 = time.perf_counter()
            for t in ref.trades(i)[:3]:
                assert chain.curtail(t.trade_id, t.energy_wh // 2) == ref.curtail(
                    t.trade_id, t.energy_wh // 2
                )
            metered = {d.device_id: int(rng.integers(-500, 500)) for d in devices}
            t3 = time.perf_counter()
            assert chain.settle(i, metered) == ref.settle(i, metered)
            t4 = time.perf_counter()
            t_place += t1 - t0
            t_clear += t2 - t1
            t_settle += t4 - t3
        assert chain.total_supply() == ref.total_supply()
        txs = chain.transactions[n_setup:]

        def gas(fn: str) -> list[int]:
            return [t.gas_used for t in txs if t.function == f"EnergyMarket.{fn}"]

        n_orders = INTERVALS * ORDERS
        print(
            f"{INTERVALS} intervals x {ORDERS} orders, {PARTICIPANTS} participants, Anvil {node.url}"
        )
        print(
            f"place_orders: {sum(gas('placeOrders')) / n_orders:,.0f} gas/order, {t_place / n_orders * 1000:.3f} ms/order (batch tx incl. receipt + event decoding)"
        )
        print(
            f"clear:        {statistics.mean(gas('clear')):,.0f} gas/interval (max {max(gas('clear')):,}), {t_clear / INTERVALS * 1000:.1f} ms/interval (getLogs + sort + tx)"
        )
        print(f"curtail:      {statistics.mean(gas('curtailBatch')):,.0f} gas/trade")
        print(
            f"settle:       {statistics.mean(gas('settle')):,.0f} gas/interval ({PARTICIPANTS} readings), {t_settle / INTERVALS * 1000:.1f} ms/interval"
        )
        print(
            f"chain total:  {t_place + t_clear + t_settle:.2f} s market time for the day; tx wall mean {statistics.mean(t.wall_ms for t in txs):.2f} ms"
        )


if __name__ == "__main__":
    main()
