"""Where a placed order's gas goes: one ``placeSignedOrders`` transaction of ``bench/chain.py``'s
market, traced opcode by opcode on Anvil (``--steps-tracing``).

Set-up as ``bench/chain.py`` (210 keyed devices, the default bond, 2,000 random orders an
interval): 1,200 of an interval's orders are placed in chunks of 100, then the next ``N``
(default 40, ``--orders N``) in one transaction, which is traced (``debug_traceTransaction``
struct logs; a traced chunk of 300 would be ~800,000 steps). Intervals 0 and 1. Per order:
storage writes by their EIP-2929/2200 cost (20,000: a new slot; 2,900: the first write of an
existing slot in the transaction; 100: a warm rewrite), reads (2,100 cold, 100 warm; depth 2 is
the registry), events, the two STATICCALLs (registry, ecrecover) and the rest of the execution;
"intrinsic" is the gas used that no step shows (calldata, the 21,000 base, the cold registry
account). The last line is ``key=value`` pairs (interval 1).
``python bench/chain_gas_breakdown.py [--orders N]``
"""

from __future__ import annotations

import collections
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import chain as bench

from twin.chain.anvil import AnvilNode, _free_port, anvil_binary
from twin.chain.keys import ANVIL_DEV_KEY, TxKey, derive_keys
from twin.chain.ledger import ChainLedger
from twin.market.signing import DeviceKey
from twin.market.types import Device, DeviceKind

N = int(sys.argv[sys.argv.index("--orders") + 1]) if "--orders" in sys.argv else 40
CALLS = ("CALL", "STATICCALL", "DELEGATECALL")


def breakdown(logs: list[dict[str, Any]]) -> tuple[collections.Counter[str], collections.Counter[tuple[str, int]]]:
    """Gas by opcode (a call's own cost only: its callee's steps are counted as steps) and the
    count of each (SSTORE|SLOAD, cost) pair."""
    ops: collections.Counter[str] = collections.Counter()
    kinds: collections.Counter[tuple[str, int]] = collections.Counter()
    for k, s in enumerate(logs):
        cost = int(s["gasCost"])
        if s["op"] in CALLS:
            nxt = logs[k + 1] if k + 1 < len(logs) else None
            if nxt is not None and nxt["depth"] > s["depth"]:
                cost = 0  # a contract call: its steps follow
            elif nxt is not None:
                cost = int(s["gas"]) - int(nxt["gas"])  # a precompile: what it took
        ops[s["op"]] += cost
        if s["op"] in ("SSTORE", "SLOAD"):
            kinds[(f"{s['op']}@{s['depth']}", cost)] += 1
    return ops, kinds


def main() -> None:
    rng = np.random.default_rng(11)
    devices = [Device(device_id=1000 + k, owner=2 + k, kind=DeviceKind.PV, bus=k, capacity_w=20_000_000)
               for k in range(bench.PARTICIPANTS)]
    keys = {d.device_id: DeviceKey.from_seed(d.device_id) for d in devices}
    port = _free_port()
    proc = subprocess.Popen([str(anvil_binary()), "--host", "127.0.0.1", "--port", str(port), "--accounts", "1",
                             "--steps-tracing"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    headline: dict[str, int] = {}
    try:
        with AnvilNode(rpc_url=f"http://127.0.0.1:{port}") as node:
            led = ChainLedger.deploy(node.web3(), keys=derive_keys("bench/chain.py", bench.PARTICIPANTS + 2),
                                     funder=TxKey.from_hex(ANVIL_DEV_KEY), **bench.PARAMS)
            for d in devices:  # as bench/chain.py (one transaction each)
                led.register_device(d)
                led.set_device_signer(d.device_id, keys[d.device_id].address)
                led.deposit(d.owner, 10**12)
            market = bench.Market(led, devices, keys)
            for i in range(2):
                signed = market.sign(market.intents(rng, i, bench.ORDERS))
                for c in range(0, 1200, 100):
                    led.confirm(led.submit_signed_orders(signed[c : c + 100]))
                n0 = len(led.transactions)
                pending = led.submit_signed_orders(signed[1200 : 1200 + N])
                led.confirm(pending)
                gas = led.transactions[n0].gas_used
                h = pending.tx.tx_hash
                trace = led.tx.rpc("debug_traceTransaction", [h if isinstance(h, str) else "0x" + bytes(h).hex(),
                                                              {"disableMemory": True, "disableStorage": True}])
                ops, kinds = breakdown(trace["result"]["structLogs"])
                steps = sum(ops.values())
                sstore = sum(v for op, v in ops.items() if op == "SSTORE")
                sload = ops["SLOAD"]
                logs = sum(v for op, v in ops.items() if op.startswith("LOG"))
                calls = sum(ops[op] for op in CALLS)
                rest = steps - sstore - sload - logs - calls
                print(f"interval {i}: {N} orders in one placeSignedOrders, {gas:,} gas = {gas / N:,.0f} per order")
                for name, v in (("SSTORE", sstore), ("SLOAD", sload), ("LOG", logs), ("calls (ecrecover)", calls),
                                ("other execution", rest), ("intrinsic (calldata, base)", gas - steps)):
                    print(f"  {name:28s} {v / N:>8,.0f} per order")
                for (op, cost), n in sorted(kinds.items()):
                    print(f"    {op} cost {cost:>6,}: {n / N:5.2f} per order")
                headline = {"gas_per_order": round(gas / N), "sstore_per_order": round(sstore / N),
                            "sload_per_order": round(sload / N), "log_per_order": round(logs / N),
                            "calls_per_order": round(calls / N), "other_exec_per_order": round(rest / N),
                            "intrinsic_per_order": round((gas - steps) / N),
                            "cold_sloads_per_order_x100": round(100 * sum(
                                n for (op, c), n in kinds.items() if op.startswith("SLOAD") and c == 2100) / N)}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    print(f"orders={N} " + " ".join(f"{k}={v}" for k, v in headline.items()))


if __name__ == "__main__":
    main()
