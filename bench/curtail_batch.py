"""DSO curtailments of one interval: one transaction per trade vs ``curtailBatch`` (chunked).

``N`` trades (N buyers each matched with one seller, 100 Wh each) on a fresh Anvil with
default limits; each trade curtailed to 50 Wh once per ``ChainLedger.curtail`` (one
transaction each, the DSO's path before #24 item 5) and once with ``curtail_batch`` (chunks of
``CURTAIL_CHUNK``), on two identical markets; the resulting trades and balances must agree.
``--quick``: N = 40. The last line holds the headline figures.
"""

from __future__ import annotations

import argparse
import time

from twin.chain.anvil import AnvilNode
from twin.chain.ledger import ChainLedger
from twin.chain.ledger_clearing import CURTAIL_CHUNK
from twin.market.types import Device, DeviceKind, OrderIntent, Side

PARAMS = {"interval_s": 900, "retail_price_per_mwh": 250_000_000, "feed_in_price_per_mwh": 80_000_000}
OWNERS = 8


def _market(node: AnvilNode, n: int) -> ChainLedger:
    led = ChainLedger.deploy(node.web3(), **PARAMS)
    devices = [Device(device_id=100 + k, owner=2 + k % OWNERS, kind=DeviceKind.PV, bus=k,
                      capacity_w=10_000) for k in range(2 * n)]
    led.register_devices(devices)
    for a in range(2, 2 + OWNERS):
        led.deposit(a, 100_000_000)
    led.deposit(1, 100_000_000)
    led.place_orders([OrderIntent(device_id=100 + k, interval=0, side=Side.BUY, energy_wh=100,
                                  price_per_mwh=200_000_000) for k in range(n)]
                     + [OrderIntent(device_id=100 + n + k, interval=0, side=Side.SELL, energy_wh=100,
                                    price_per_mwh=100_000_000) for k in range(n)])
    led.clear(0)
    return led


def _run(led: ChainLedger, batch: bool) -> tuple[int, int, float, list[object]]:
    plan = [(t.trade_id, 50) for t in led.trades(0)]
    n0 = len(led.transactions)
    t0 = time.perf_counter()
    if batch:
        led.curtail_batch(plan)
    else:
        for tid, wh in plan:
            led.curtail(tid, wh)
    wall = time.perf_counter() - t0
    sent = led.transactions[n0:]
    state = [led.trades(0), [led.balance(a) for a in range(2 + OWNERS)]]
    return len(sent), sum(r.gas_used for r in sent), wall, state


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--trades", type=int, default=None)
    args = ap.parse_args()
    n = args.trades or (40 if args.quick else 300)
    with AnvilNode(accounts=2 + OWNERS) as node:  # two identical markets on one node
        one = _run(_market(node, n), batch=False)
        many = _run(_market(node, n), batch=True)
    assert one[3] == many[3], "per-trade and batched curtailment disagree"
    print(f"trades={n} chunk={CURTAIL_CHUNK}")
    print(f"per trade: {one[0]} tx, {one[1]:,} gas, {one[2]:.2f} s")
    print(f"batched:   {many[0]} tx, {many[1]:,} gas, {many[2]:.2f} s")
    print(f"trades={n} tx_before={one[0]} tx_after={many[0]} gas_per_trade_before={one[1] // n} "
          f"gas_per_trade_after={many[1] // n} wall_before_s={one[2]:.2f} wall_after_s={many[2]:.2f} "
          f"x_speedup={one[2] / many[2]:.1f}")


if __name__ == "__main__":
    main()
