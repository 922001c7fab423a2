"""On-chain market at scale: device-signed orders relayed in batches vs one tx per order.

One fresh Anvil, ``PARTICIPANTS`` distinct owner accounts, one device each with its own
secp256k1 key registered by the DSO. Measured in this one run:

* **batched, end to end**: for each of ``INTERVALS`` intervals, ``ORDERS`` orders are signed
  by their device keys (EIP-712), relayed by the operator in ``placeSignedOrders`` txs of
  ``CHUNK`` orders (default: sized by gas), cleared (book sorted off-chain, verified on chain), and settled on
  meter readings signed by each device key (``settleSigned``); every receipt is checked.
  orders/s = orders / wall time of all of that; latency of an order = signing of its chunk
  -> its receipt; gas per order of placeSignedOrders, first vs last interval (flat?).
* **naive**: the same kind of order, one ``placeOrders`` web3 ``transact`` per order from
  the owner's own account, waiting for each receipt.
* **clearing gas** of one interval with 100 / 1,000 / 3,000 orders (at most 16 per device), cleared in bounded
  ``clearChunk`` transactions each capped at 30 M gas (a chunk above the cap would fail):
  total and per order (flat?), and the largest transaction against a 36 M mainnet block.
  Then the interval's settlement on meter readings, in bounded ``settleChunk``
  transactions (trades paid by trade id, then readings by device id) under the same cap:
  gas per chunk and the largest transaction.
* **Anvil memory** (RSS) over the long batched run.
* **client CPU vs Anvil CPU** per order over the batched run (user + system time of this
  process and of the node's), the rate Anvil's CPU alone allows, blocks per interval and
  Anvil's CPU for one empty block after set-up and at the end: its work per block, which
  grows with every storage slot the chain ever wrote (Anvil 1.7.1 rebuilds the state root
  from all of them at each block), and Anvil's CPU per order by phase (placing, clearing,
  settling with pruning). ``--ab``: after one warm-up interval, intervals in ABBA order, A
  with each placement block mined when its receipt is awaited, B with it mined on a thread
  while the client signs the next chunk (``TxClient.mine_ahead``, as ``twin run``);
  ``--ab-chunks``: A with the fixed chunk counts of before (300 orders, 500 ids / 1,000
  trades, 2,000 trades / 250 readings), B with every chunk sized by gas (twin.chain.gas_size).
* **the node as ``twin run`` runs it** (default): Anvil mining on demand (``--no-mining``:
  the client sends its queued transactions as one batch and mines the block), settled
  intervals freed and the node compacted now and then; ``--automine`` (a block per
  transaction on arrival) and ``--no-prune`` give the bench's path of before.
* **where the time goes** in the batched run: signing (EIP-712, device keys), sending the
  raw transactions (``eth_sendRawTransaction``: with automine the node executes the block
  before it answers), waiting for and decoding receipts, clearing, settlement.

The run's accounts are their own keys (from a seed), funded by the node's public dev key,
and every transaction is signed client-side and sent raw — the path ``twin run`` uses — so
``--node hardhat`` runs the same on Hardhat's node (npm ``hardhat`` 2.x, clearing sizes
100 and 1,000 only). Medians over intervals; the last line is ``key=value`` pairs.
``python bench/chain.py [--quick] [--node anvil|hardhat] [--chunk N] [--bond-wh N] [--ab | --ab-chunks]
[--automine] [--no-prune]``
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import psutil
from web3 import HTTPProvider, Web3

from twin.chain.anvil import AnvilNode
from twin.chain.hardhat import HardhatNode
from twin.chain.keys import ANVIL_DEV_KEY, TxKey, derive_keys
from twin.chain.ledger import ChainLedger, PendingOrders
from twin.market.signing import DeviceKey, SignedOrder
from twin.market.types import Device, DeviceKind, OrderIntent, Side
from twin.market.units import payment
from twin.scenario import MarketSpec

QUICK = "--quick" in sys.argv
NODE = sys.argv[sys.argv.index("--node") + 1] if "--node" in sys.argv else "anvil"
PARTICIPANTS = 210
INTERVALS = (9 if "--ab" in " ".join(sys.argv) else 6) if QUICK else (33 if "--ab" in " ".join(sys.argv) else 30)
ORDERS = 2000
#: orders per placeSignedOrders transaction (``--chunk N``); by default sized by gas as twin run
#: does (ChainLedger.signed_order_chunk: 80 % of the block at the gas an order took so far)
CHUNK = int(sys.argv[sys.argv.index("--chunk") + 1]) if "--chunk" in sys.argv else 0
#: the fixed counts of before chunks were sized by gas (--ab's arm A)
FIXED = {"chunk": 300, "clear_chunk_orders": 500, "clear_chunk_trades": 1000,
         "settle_chunk_trades": 2000, "settle_chunk_devices": 250}
NAIVE = 100 if QUICK else 300
#: A/B in one run: intervals in ABBA order (Anvil's work per block grows with the chain, so
#: both arms see the same state on average), A with the fixed chunk counts of before (FIXED),
#: B with every chunk sized by gas; medians of each arm reported
AB = "--ab-chunks" in sys.argv
#: --ab: the same ABBA order, A without and B with each placement block mined on a thread
#: while the client signs the next chunk (TxClient.mine_ahead, on a node mining on demand)
AB_AHEAD = "--ab" in sys.argv
#: as twin run (unless --no-prune), each settled interval's storage is freed (pruneInterval) and
#: the node restarted without the freed slots every ChainLedger.compact_after_slots of them, so
#: Anvil's work per block (its state root over every slot ever written) stays flat
PRUNE = "--no-prune" not in sys.argv and NODE == "anvil"
#: --automine: Anvil mines each transaction on arrival (one block per transaction), as before
#: this bench followed twin run; by default the node mines on demand (``--no-mining``), as
#: ``twin run``'s own Anvil: the client sends its queued transactions as one batch and mines one
#: block when it waits for a receipt
AUTOMINE = "--automine" in sys.argv
MAX_ORDERS = 16  # EnergyMarket.MAX_ORDERS: orders per device and interval
CLEAR_SIZES = (100, 1000, 3000) if NODE == "anvil" else (100, 1000)  # <= PARTICIPANTS * MAX_ORDERS
MAINNET_BLOCK_GAS = 36_000_000
CHUNK_TX_GAS = 30_000_000  # gas cap of every clearing transaction
PARAMS = {"interval_s": 900, "retail_price_per_mwh": 250_000_000, "feed_in_price_per_mwh": 80_000_000}
#: imbalance collateral per device: by default the scenario default, as ``twin run`` posts it
#: (market.imbalance_collateral_intervals at the device's rating, at least
#: market.imbalance_collateral_wh); ``--bond-wh N``: N Wh at retail for every device (0: none)
BOND_WH = (int(sys.argv[sys.argv.index("--bond-wh") + 1]) if "--bond-wh" in sys.argv
           else MarketSpec().imbalance_collateral_wh)
PARAMS["imbalance_bond"] = payment(BOND_WH, PARAMS["retail_price_per_mwh"])
PARAMS["bond_intervals"] = 0 if "--bond-wh" in sys.argv else MarketSpec().imbalance_collateral_intervals


def _cpu(p: psutil.Process | None) -> float:
    """CPU seconds (user + system) of a process so far; 0 without one (an external node)."""
    if p is None:
        return 0.0
    t = p.cpu_times()
    return float(t.user + t.system)


def _block_cpu_ms(led: ChainLedger, anvil: psutil.Process | None, n: int = 20) -> float:
    """Anvil's CPU for one empty block (``evm_mine``), ms: its per-block work, which grows
    with the chain's state (Anvil hashes every storage slot into the state root each block)."""
    if anvil is None:
        return float("nan")
    a = _cpu(anvil)
    for _ in range(n):
        led.tx.rpc("evm_mine", [])
    return (_cpu(anvil) - a) / n * 1000


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Market:
    def __init__(self, led: ChainLedger, devices: list[Device], keys: dict[int, DeviceKey]) -> None:
        self.led, self.devices, self.keys = led, devices, keys
        self.nonce: dict[tuple[int, int], int] = {}

    def intents(self, rng: np.random.Generator, interval: int, n: int) -> list[OrderIntent]:
        sellers = {d.device_id for d in self.devices if rng.random() < 0.45}
        out = []
        count: dict[int, int] = {}
        for _ in range(n):
            d = self.devices[int(rng.integers(len(self.devices)))]
            while count.get(d.device_id, 0) >= MAX_ORDERS:  # the contract's per-device cap
                d = self.devices[int(rng.integers(len(self.devices)))]
            count[d.device_id] = count.get(d.device_id, 0) + 1
            out.append(
                OrderIntent(
                    device_id=d.device_id,
                    interval=interval,
                    side=Side.SELL if d.device_id in sellers else Side.BUY,
                    energy_wh=int(rng.integers(1, 1000)),
                    price_per_mwh=int(rng.integers(40, 160)) * 1_000_000,
                )
            )
        return out

    def sign(self, intents: list[OrderIntent]) -> list[SignedOrder]:
        out = []
        for it in intents:
            key = (it.device_id, it.interval)
            self.nonce[key] = self.nonce.get(key, 0) + 1
            out.append(
                self.keys[it.device_id].sign_order(it, nonce=self.nonce[key], domain=self.led.domain)
            )
        return out


def main() -> None:
    rng = np.random.default_rng(11)
    devices = [
        Device(device_id=1000 + k, owner=2 + k, kind=DeviceKind.PV, bus=k, capacity_w=20_000_000)
        for k in range(PARTICIPANTS)
    ]
    keys = {d.device_id: DeviceKey.from_seed(d.device_id) for d in devices}
    if NODE not in ("anvil", "hardhat"):
        raise SystemExit(f"--node must be anvil or hardhat, got {NODE!r}")
    node_cm = AnvilNode(accounts=1, automine=AUTOMINE) if NODE == "anvil" else HardhatNode()
    with node_cm as node:
        proc = getattr(node, "_proc", None)
        pid = proc.pid if proc is not None else 0
        w3 = node.web3() if isinstance(node, AnvilNode) else Web3(HTTPProvider(node.url))
        led = ChainLedger.deploy(w3, keys=derive_keys("bench/chain.py", PARTICIPANTS + 2),
                                 funder=TxKey.from_hex(ANVIL_DEV_KEY), **PARAMS)
        t0 = time.perf_counter()
        for d in devices:
            led.register_device(d)
            led.set_device_signer(d.device_id, keys[d.device_id].address)
            led.deposit(d.owner, 10**12)
        led.deposit(1, 10**12)
        setup_s = time.perf_counter() - t0
        m = Market(led, devices, keys)
        rss0 = _rss_mb(pid) if NODE == "anvil" else float("nan")
        #: CPU of the Anvil processes a compaction replaced (--prune), counted in the node's
        gone_cpu = [0.0]  # before each restart
        if PRUNE:  # as twin run: settled intervals freed, the node compacted now and then
            led.prune_settled = True

            def compact() -> None:
                gone_cpu[0] += _cpu(psutil.Process(node._proc.pid))
                node.compact()

            led.compact_node = compact

        # --- batched, end to end ------------------------------------------------------
        per_interval_rate, latencies_ms, place_gas, clear_gas, settle_gas, rss = [], [], [], [], [], []
        total_orders, total_s = 0, 0.0
        loads: list[float] = []
        spent = dict.fromkeys(("sign", "send", "confirm", "clear", "settle"), 0.0)
        me = psutil.Process()

        def anvil_cpu() -> float:
            return gone_cpu[0] + _cpu(psutil.Process(node._proc.pid)) if pid else 0.0

        anvil = psutil.Process(pid) if pid else None
        block_ms_start = _block_cpu_ms(led, anvil)
        cpu_client = cpu_anvil = 0.0
        blocks: list[int] = []
        per_interval_cpu: list[tuple[float, float]] = []  # client, Anvil
        #: Anvil CPU by phase: placing (execution, blocks, receipts), clearing, settling (and
        #: pruning and compaction when on)
        anvil_phase = dict.fromkeys(("place", "clear", "settle"), 0.0)
        arm_rate: dict[str, list[float]] = {"A": [], "B": [], "W": []}
        arm_cpu: dict[str, list[float]] = {"A": [0.0, 0.0], "B": [0.0, 0.0], "W": [0.0, 0.0]}
        arm_blocks: dict[str, list[int]] = {"A": [], "B": [], "W": []}
        for i in range(INTERVALS):
            intents = m.intents(rng, i, ORDERS)
            n_tx = len(led.transactions)
            block0 = led.w3.eth.block_number
            # --ab: A with the fixed chunk counts of before, B with every chunk sized by gas
            # ABBA: both arms see the same growth; with an A/B the first interval (every
            # device's first order, cold storage) is a warm-up of neither arm ("W")
            ab = AB or AB_AHEAD
            arm = "W" if ab and i == 0 else "A" if ab and (i - 1) % 4 in (0, 3) else "B"
            led.tx.blocks_ahead = arm == "B" or not AB_AHEAD
            fixed = (AB and arm == "A") or bool(CHUNK)
            for k, v in FIXED.items():
                if k != "chunk":
                    setattr(led, k, v if AB and arm == "A" else None)
            c0, a0 = _cpu(me), anvil_cpu()
            t_start = time.perf_counter()
            led.check_signed_group(intents)  # the whole interval's batch checked once
            # Pipelined: sign chunk k while the node executes chunk k-1, confirm k-1 (a chunk
            # out of gas is split and resent before any later nonce of its devices), send k.
            in_flight: list[tuple[float, PendingOrders]] = []
            c = 0
            while c < ORDERS:
                tc = time.perf_counter()
                size = (CHUNK or FIXED["chunk"]) if fixed else led.signed_order_chunk(intents[c:])
                signed = m.sign(intents[c : c + size])
                c += size
                ts = time.perf_counter()
                spent["sign"] += ts - tc
                if in_flight:
                    tp, p = in_flight.pop(0)
                    led.confirm(p)
                    latencies_ms += [(time.perf_counter() - tp) * 1000] * p.n
                tf = time.perf_counter()
                spent["confirm"] += tf - ts
                in_flight.append((tc, led.submit_signed_orders(signed, checked=True)))
                spent["send"] += time.perf_counter() - tf
            tf = time.perf_counter()
            for tp, p in in_flight:
                led.confirm(p)
                latencies_ms += [(time.perf_counter() - tp) * 1000] * p.n
            tc = time.perf_counter()
            spent["confirm"] += tc - tf
            a_placed = anvil_cpu()
            clearing = led.clear(i)
            spent["clear"] += time.perf_counter() - tc
            a_cleared = anvil_cpu()
            traded = {t.buyer_device for t in clearing.trades} | {t.seller_device for t in clearing.trades}
            net: dict[int, int] = dict.fromkeys(traded, 0)
            for t in clearing.trades:
                net[t.buyer_device] += t.energy_wh
                net[t.seller_device] -= t.energy_wh
            tc = time.perf_counter()
            readings = [
                keys[d].sign_reading(device_id=d, interval=i, metered_wh=w + int(rng.integers(-50, 50)),
                                     domain=led.domain)
                for d, w in net.items()
            ]
            led.settle_signed(i, readings)
            spent["settle"] += time.perf_counter() - tc
            dt = time.perf_counter() - t_start
            dc, da = _cpu(me) - c0, anvil_cpu() - a0
            for ph, v in (("place", a_placed - a0), ("clear", a_cleared - a_placed),
                          ("settle", a0 + da - a_cleared)):
                anvil_phase[ph] += v
            cpu_client += dc
            cpu_anvil += da
            per_interval_cpu.append((dc, da))
            arm_rate[arm].append(ORDERS / dt)
            arm_cpu[arm][0] += dc
            arm_cpu[arm][1] += da
            blocks.append(led.w3.eth.block_number - block0)
            arm_blocks[arm].append(blocks[-1])
            txs = led.transactions[n_tx:]
            assert all(t.status == 1 for t in txs)
            total_orders += ORDERS
            total_s += dt
            per_interval_rate.append(ORDERS / dt)
            place_gas.append(sum(t.gas_used for t in txs if t.function.endswith("placeSignedOrders")) / ORDERS)
            clear_gas.append(sum(t.gas_used for t in txs if t.function.startswith("EnergyMarket.clear")))
            settle_gas.append(sum(t.gas_used for t in txs if ".settle" in t.function))
            loads.append(os.getloadavg()[0])
            rss.append(_rss_mb(node._proc.pid) if NODE == "anvil" else float("nan"))
        anvil = psutil.Process(node._proc.pid) if pid else None
        block_ms_end = _block_cpu_ms(led, anvil)
        for k in FIXED:  # the clearing sizes below: chunks sized by gas
            if k != "chunk":
                setattr(led, k, None)
        per_item = {k: led.gas_sizes.model(k) for k in (
            "order", "clear_id", "clear_trade", "settle_trade", "settle_reading_signed")}
        rate = statistics.median(per_interval_rate)
        lat = np.array(latencies_ms)

        # --- naive: one signed raw transaction per order from the owner's own key ----------
        naive_ivl = INTERVALS + 1
        intents = m.intents(rng, naive_ivl, NAIVE)
        t0 = time.perf_counter()
        for it in intents:
            owner = led.device(it.device_id).owner
            led.tx.receipt(led.tx.send(
                led.market, "placeOrders",
                [[(it.device_id, it.interval, int(it.side), it.energy_wh, it.price_per_mwh)]],
                sender=owner, purpose="bench: one order"))
        naive_rate = NAIVE / (time.perf_counter() - t0)

        # --- clearing gas by book size: bounded chunks under a 30 M gas cap per tx --------
        clear_by_size: dict[int, tuple[int, int, int, int]] = {}  # n -> total, max chunk, chunks, trades
        settle_by_size: dict[int, list[int]] = {}  # n -> gas of each settlement tx
        readings_by_size: dict[int, int] = {}
        led.tx_gas = CHUNK_TX_GAS  # a chunk over the cap would revert out of gas: the bound is enforced
        for k, n in enumerate(CLEAR_SIZES):
            ivl = INTERVALS + 10 + k
            led.tx_gas = 200_000_000
            led.place_signed_orders(m.sign(m.intents(rng, ivl, n)), chunk_size=CHUNK)
            led.tx_gas = CHUNK_TX_GAS
            n_tx = len(led.transactions)
            cleared = led.clear(ivl)
            gas = [t.gas_used for t in led.transactions[n_tx:]]
            assert all(t.status == 1 for t in led.transactions[n_tx:])
            clear_by_size[n] = (sum(gas), max(gas), len(gas), len(cleared.trades))
            net_wh: dict[int, int] = {}
            for t in cleared.trades:
                net_wh[t.buyer_device] = net_wh.get(t.buyer_device, 0) + t.energy_wh
                net_wh[t.seller_device] = net_wh.get(t.seller_device, 0) - t.energy_wh
            metered = {d: w + int(rng.integers(-50, 50)) for d, w in net_wh.items()}
            n_tx = len(led.transactions)
            led.settle(ivl, metered)  # chunked under the same 30 M cap per tx
            assert all(t.status == 1 for t in led.transactions[n_tx:])
            assert led.interval_status(ivl) == "settled"
            settle_by_size[n] = [t.gas_used for t in led.transactions[n_tx:]]
            readings_by_size[n] = len(metered)
        block_gas = int(led.w3.eth.get_block("latest")["gasLimit"])
        client = w3.client_version

    load = float(np.mean(loads))
    print(f"node: {NODE} ({client}); load average during the run {load:.1f} (2 cores); {PARTICIPANTS} participant accounts with one "
          f"keyed device each; setup {setup_s:.1f} s")
    print(f"batched: {INTERVALS} intervals x {ORDERS} signed orders (chunks of {CHUNK or 'by gas'}), "
          f"sign+place+clear+settle(signed readings), receipts checked")
    print(f"  orders/s end to end (signing pipelined with execution): median {rate:,.0f} (min {min(per_interval_rate):,.0f}, "
          f"overall {total_orders / total_s:,.0f})")
    print(f"  order latency (sign -> receipt of its chunk): p50 {np.percentile(lat, 50):.0f} ms, "
          f"p99 {np.percentile(lat, 99):.0f} ms")
    print(f"  gas/order placeSignedOrders: first interval {place_gas[0]:,.0f}, last {place_gas[-1]:,.0f}, "
          f"median {statistics.median(place_gas):,.0f}")
    print(f"  clear gas/interval median {statistics.median(clear_gas):,.0f}; "
          f"settleSigned gas/interval median {statistics.median(settle_gas):,.0f}")
    print("  where the time goes: " + ", ".join(
        f"{k} {v:.1f} s ({v / total_s:.0%})" for k, v in spent.items()))
    print(f"  CPU per order: client {cpu_client / total_orders * 1e3:.3f} ms, Anvil "
          f"{cpu_anvil / total_orders * 1e3:.3f} ms (Anvil {cpu_anvil / (cpu_anvil + cpu_client):.0%} of "
          f"the two); Anvil alone caps the rate at {total_orders / cpu_anvil:,.0f} orders/s"
          if cpu_anvil else "  CPU per order: client "
          f"{cpu_client / total_orders * 1e3:.3f} ms (node not measured)")
    if cpu_anvil:
        print("  Anvil CPU per order by phase: " + ", ".join(
            f"{k} {v / total_orders * 1e3:.3f} ms" for k, v in anvil_phase.items()))
    med_c = statistics.median(c for c, _ in per_interval_cpu) / ORDERS * 1e3
    med_a = statistics.median(a for _, a in per_interval_cpu) / ORDERS * 1e3
    print(f"  median interval's CPU per order: client {med_c:.3f} ms, Anvil {med_a:.3f} ms")
    print(f"  blocks per interval {statistics.median(blocks):.0f}; Anvil CPU of an empty block "
          f"{block_ms_start:.1f} ms after setup -> {block_ms_end:.1f} ms after {total_orders:,} orders "
          "(the state root hashes every storage slot, each block)")
    if AB or AB_AHEAD:
        for a, label in ((("A", "fixed chunk counts"), ("B", "chunks sized by gas")) if AB else
                         (("A", "each block mined when its receipt is awaited"),
                          ("B", "each placement block mined ahead, on a thread"))):
            print(f"  A/B {a} ({label}): median {statistics.median(arm_rate[a]):,.0f} orders/s, "
                  f"{statistics.median(arm_blocks[a]):.0f} blocks per interval, "
                  f"CPU per order client {arm_cpu[a][0] / (len(arm_rate[a]) * ORDERS) * 1e3:.3f} ms, "
                  f"Anvil {arm_cpu[a][1] / (len(arm_rate[a]) * ORDERS) * 1e3:.3f} ms")
    print(f"  Anvil RSS: {rss0:.0f} MB after setup -> {rss[len(rss) // 2]:.0f} MB mid -> {rss[-1]:.0f} MB "
          f"after {total_orders:,} orders")
    print(f"naive one transact per order: {naive_rate:,.0f} orders/s -> batched is {rate / naive_rate:.1f}x")
    print("chunks sized by gas (80 % of the block), gas per item learned in the batched run: "
          + ", ".join(f"{k} {v[0]:,.0f} (+{v[1]:,.0f} dear part)" for k, v in per_item.items() if v))
    print("clearing in chunks (sized by gas, "
          f"tx gas cap {CHUNK_TX_GAS:,}; block limit here {block_gas:,}, mainnet {MAINNET_BLOCK_GAS:,}):")
    for n, (g, g_max, n_chunks, n_trades) in clear_by_size.items():
        print(f"  clear {n:>6,} orders ({n_trades:,} trades): {g:>13,} gas in {n_chunks} tx "
              f"({g / n:,.0f}/order); largest tx {g_max:,} = {g_max / MAINNET_BLOCK_GAS:.0%} of a 36 M block")
        sg = settle_by_size[n]
        print(f"    then settle ({readings_by_size[n]} readings) in {len(sg)} tx: {sum(sg):,} gas total, "
              f"per chunk [{', '.join(f'{g / 1e6:.1f}M' for g in sg)}]; largest tx {max(sg):,} = "
              f"{max(sg) / MAINNET_BLOCK_GAS:.0%} of a 36 M block")
    kv = {
        "node": NODE,
        "orders_per_s": round(rate),
        "naive_orders_per_s": round(naive_rate),
        "speedup": round(rate / naive_rate, 1),
        "p50_ms": round(float(np.percentile(lat, 50)), 1),
        "p99_ms": round(float(np.percentile(lat, 99)), 1),
        "gas_per_order": round(statistics.median(place_gas)),
        "gas_per_order_first": round(place_gas[0]),
        "gas_per_order_last": round(place_gas[-1]),
        **{f"clear_gas_{n}": g[0] for n, g in clear_by_size.items()},
        **{f"clear_gas_per_order_{n}": round(g[0] / n) for n, g in clear_by_size.items()},
        **{f"clear_max_tx_gas_{n}": g[1] for n, g in clear_by_size.items()},
        **{f"settle_gas_{n}": sum(g) for n, g in settle_by_size.items()},
        **{f"settle_max_tx_gas_{n}": max(g) for n, g in settle_by_size.items()},
        **{f"settle_chunks_{n}": len(g) for n, g in settle_by_size.items()},
        **{f"time_{k}_s": round(v, 1) for k, v in spent.items()},
        "client_cpu_ms_per_order": round(cpu_client / total_orders * 1e3, 3),
        "anvil_cpu_ms_per_order": round(cpu_anvil / total_orders * 1e3, 3) if cpu_anvil else "na",
        "client_cpu_ms_per_order_median": round(med_c, 3),
        "anvil_cpu_ms_per_order_median": round(med_a, 3) if cpu_anvil else "na",
        "anvil_cap_orders_per_s": round(total_orders / cpu_anvil) if cpu_anvil else "na",
        **{f"anvil_{k}_ms_per_order": round(v / total_orders * 1e3, 3) if cpu_anvil else "na"
           for k, v in anvil_phase.items()},
        "automine": int(AUTOMINE),
        "load": round(load, 1),
        "blocks_per_interval": round(statistics.median(blocks)),
        "anvil_block_ms_start": round(block_ms_start, 1) if cpu_anvil else "na",
        "anvil_block_ms_end": round(block_ms_end, 1) if cpu_anvil else "na",
        **({f"ab_{a}_orders_per_s": round(statistics.median(arm_rate[a])) for a in "AB"}
           if AB or AB_AHEAD else {}),
        **({f"ab_{a}_blocks_per_interval": round(statistics.median(arm_blocks[a])) for a in "AB"}
           if AB or AB_AHEAD else {}),
        **({f"ab_{a}_{who}_cpu_ms_per_order": round(arm_cpu[a][j] / (len(arm_rate[a]) * ORDERS) * 1e3, 3)
            for a in "AB" for j, who in enumerate(("client", "anvil"))} if AB or AB_AHEAD else {}),
        "anvil_rss_mb_start": round(rss0) if NODE == "anvil" else "na",
        "anvil_rss_mb_end": round(rss[-1]) if NODE == "anvil" else "na",
        "prune": int(PRUNE), "compactions": led.compactions,
        "participants": PARTICIPANTS,
        "chunk": CHUNK,
        "bond_wh": BOND_WH, "bond_intervals": PARAMS["bond_intervals"],
    }
    print(" ".join(f"{k}={v}" for k, v in kv.items()))


if __name__ == "__main__":
    main()
