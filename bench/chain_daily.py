"""Daily signing on chain against per-interval signed orders: gas and Anvil CPU per placed order.

One fresh Anvil (default limits), one market, two populations of ``DEVICES`` devices with
their own keys, each device ordering once per interval (buy or sell, random energy and price):

* **A, per-interval signing**: every order signed by its device (EIP-712 ``Order``) and
  relayed in ``placeSignedOrders`` (one ecrecover an order);
* **B, daily signing**: each device signs its day's schedule once (a Merkle root,
  ``Schedule``), planned from the same orders, with ``--amend F`` (default 0.1) of its orders
  changed intraday (a signed one-slot ``Amendment`` each); the operator relays each order
  with its leaf's proof in ``relaySchedules`` (library DailySchedules: no ecrecover an order;
  one per schedule and amendment).

Anvil and client CPU are means over the intervals after the first (psutil's clock ticks are
10 ms). Intervals run A and B in ABBA order on the same chain (Anvil's work per block grows with the
chain's state, so both arms see it alike). Reported per arm: gas per placed order (all of the
arm's placement transactions, so B's schedule signatures are in its first interval: median
over the later intervals, and the first interval's own figure), Anvil CPU per order (user +
system time of the node), client CPU per order (signing, proofs, encoding, decoding). Then
settlement of one interval: per-interval signed readings (``settleSigned``, one ecrecover a
device) against relayed readings (``settle_relayed``) plus the day's ``trueUpDaily`` share.
The last line is ``key=value`` pairs.

``python bench/chain_daily.py [--quick] [--devices N] [--amend F]``
"""

from __future__ import annotations

import statistics
import sys

import numpy as np
import psutil

from twin.chain.anvil import AnvilNode
from twin.chain.keys import ANVIL_DEV_KEY, TxKey, derive_keys
from twin.chain.ledger import ChainLedger
from twin.market.daily_signers import DailySigners
from twin.market.device_signers import DeviceSigners
from twin.market.types import Device, DeviceKind, OrderIntent, Side

QUICK = "--quick" in sys.argv
DEVICES = int(sys.argv[sys.argv.index("--devices") + 1]) if "--devices" in sys.argv else 100
AMEND = float(sys.argv[sys.argv.index("--amend") + 1]) if "--amend" in sys.argv else 0.1
INTERVALS = 8 if QUICK else 24
OWNERS = 100  # device owners (accounts funded by the node's dev key), devices spread over them
INTERVAL_S = 900
PER_DAY = 86_400 // INTERVAL_S
PARAMS = {"interval_s": INTERVAL_S, "retail_price_per_mwh": 250_000_000,
          "feed_in_price_per_mwh": 80_000_000}


def _cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def _orders(ids: list[int], k: int, *, changed: bool = False) -> list[OrderIntent]:
    """Each device's order of interval ``k`` (the planned one, or its intraday change)."""
    out = []
    for d in ids:
        r = np.random.default_rng([d, k, int(changed)])
        out.append(OrderIntent(device_id=d, interval=k, side=Side.BUY if d % 2 else Side.SELL,
                               energy_wh=int(r.integers(100, 2_000)),
                               price_per_mwh=int(r.integers(50, 250)) * 1_000_000))
    return out


def _changed(d: int, k: int) -> bool:
    return bool(np.random.default_rng([d, k, 7]).random() < AMEND)


def main() -> None:
    a_ids = [1000 + i for i in range(DEVICES)]
    b_ids = [5000 + i for i in range(DEVICES)]

    def plan(ks: range) -> tuple[np.ndarray, ...]:
        rows = [(o.device_id, o.interval, o.side == Side.BUY, o.energy_wh, o.price_per_mwh)
                for k in ks for o in _orders(b_ids, k)]
        return tuple(np.array(c) for c in zip(*rows, strict=True))

    with AnvilNode(accounts=1) as node:
        anvil = psutil.Process(node._proc.pid)  # type: ignore[union-attr]
        me = psutil.Process()
        led = ChainLedger.deploy(node.web3(), keys=derive_keys("bench/chain_daily.py", OWNERS + 2),
                                 funder=TxKey.from_hex(ANVIL_DEV_KEY), **PARAMS)
        devices = [Device(device_id=d, owner=2 + i % OWNERS, kind=DeviceKind.PV, bus=i, capacity_w=20_000_000)
                   for i, d in enumerate(a_ids + b_ids)]
        led.register_devices(devices)
        for a in range(2, OWNERS + 2):
            led.deposit(a, 10**13)
        per = DeviceSigners(seed=1, device_ids=a_ids)
        daily = DailySigners(seed=2, device_ids=b_ids, per_day=PER_DAY, planner=plan)
        per.bind(led)
        daily.bind(led)
        gas: dict[str, list[float]] = {"A": [], "B": []}
        anv: dict[str, list[float]] = {"A": [], "B": []}
        cli: dict[str, list[float]] = {"A": [], "B": []}
        for k in range(1, INTERVALS + 1):
            arms = "AB" if k % 4 in (1, 0) else "BA"
            for arm in arms:
                n_tx = len(led.tx.transactions)
                c0, a0 = _cpu(me), _cpu(anvil)
                if arm == "A":
                    placed = led.place_signed_orders(per.sign_orders(_orders(a_ids, k), domain=led.domain))
                else:
                    its = [o if not _changed(o.device_id, k) else _orders([o.device_id], k, changed=True)[0]
                           for o in _orders(b_ids, k)]
                    placed = led.place_scheduled_orders(daily.sign_orders(its, domain=led.domain))
                dc, da = _cpu(me) - c0, _cpu(anvil) - a0
                g = sum(t.gas_used for t in led.tx.transactions[n_tx:])
                assert len(placed) == DEVICES, (arm, len(placed))
                gas[arm].append(g / DEVICES)
                anv[arm].append(da / DEVICES * 1000)
                cli[arm].append(dc / DEVICES * 1000)
        # settlement: interval 1 on device-signed readings (one ecrecover a device), interval
        # 2 on relayed readings (provisional), then the day's signed batches true them up
        led.set_time(now_s=INTERVAL_S + 1)
        for kk in range(1, INTERVALS + 1):
            led.clear(kk)
        led.set_time(now_s=(INTERVALS + 1) * INTERVAL_S + 1)
        metered = {d: (-500 if d % 2 == 0 else 500) for d in a_ids + b_ids}
        n_tx = len(led.tx.transactions)
        readings = per.sign_readings(interval=1, metered_wh={d: metered[d] for d in a_ids},
                                     domain=led.domain)
        readings += daily.sign_readings(interval=1, metered_wh={d: metered[d] for d in b_ids},
                                        domain=led.domain)
        led.settle_signed(1, sorted(readings, key=lambda r: r.device_id))
        settle_signed = sum(t.gas_used for t in led.tx.transactions[n_tx:]) / (2 * DEVICES)
        n_tx = len(led.tx.transactions)
        led.settle_relayed(2, metered)
        settle_relayed = sum(t.gas_used for t in led.tx.transactions[n_tx:]) / (2 * DEVICES)
        daily.record_readings(interval=2, metered_wh={d: metered[d] for d in b_ids})
        n_tx = len(led.tx.transactions)
        c0 = _cpu(anvil)
        led.true_up_daily(daily.daily_readings(day=0, domain=led.domain))
        true_up = sum(t.gas_used for t in led.tx.transactions[n_tx:]) / DEVICES
        true_up_cpu = (_cpu(anvil) - c0) / DEVICES * 1000

    def med(xs: list[float]) -> float:
        return statistics.median(xs)

    def mean(xs: list[float]) -> float:  # CPU: psutil's 10 ms ticks, so the mean over intervals
        return statistics.fmean(xs)

    print(f"devices per arm {DEVICES}, intervals {INTERVALS} (ABBA), amended share of B's orders {AMEND}")
    for arm, name in (("A", "per-interval signed orders"), ("B", "daily schedules (Merkle proofs)")):
        print(f"{arm} {name}: gas/order median {med(gas[arm][1:]):,.0f} (first interval "
              f"{gas[arm][0]:,.0f}), Anvil CPU/order {mean(anv[arm][1:]):.3f} ms (first "
              f"{anv[arm][0]:.3f}), client CPU/order {mean(cli[arm][1:]):.3f} ms (first {cli[arm][0]:.3f})")
    print(f"settlement gas per device-interval: signed readings {settle_signed:,.0f}, relayed "
          f"{settle_relayed:,.0f}; trueUpDaily per device-day {true_up:,.0f} gas, Anvil CPU "
          f"{true_up_cpu:.2f} ms (its B devices' one relayed interval of {PER_DAY})")
    ga, gb = med(gas["A"][1:]), med(gas["B"][1:])
    aa, ab = mean(anv["A"][1:]), mean(anv["B"][1:])
    print(f"gas_per_order_signed={ga:.0f} gas_per_order_daily={gb:.0f} gas_daily_x_signed={gb / ga:.3f} "
          f"anvil_ms_per_order_signed={aa:.3f} anvil_ms_per_order_daily={ab:.3f} "
          f"anvil_daily_x_signed={ab / aa:.3f} first_interval_gas_per_order_daily={gas['B'][0]:.0f} "
          f"settle_gas_signed={settle_signed:.0f} settle_gas_relayed={settle_relayed:.0f} "
          f"true_up_gas_per_device_day={true_up:.0f}")


if __name__ == "__main__":
    main()
