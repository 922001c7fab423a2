"""Where Anvil's CPU per signed order goes: EnergyMarket variants A/B on a real Anvil.

Each variant is a scratch copy of ``twin/chain/contracts`` with one cost of the placement
path taken out of ``EnergyMarket.sol`` (compiled once, ~2 min each with solc-js, then cached
under ``.cache/solc``; never deployed by the twin):

* ``base``: as shipped;
* ``noevent``: no ``OrdersPlaced`` log (one a transaction; before 0b78a75 one ``OrderPlaced``
  an order, which the figures in the README were measured with);
* ``noecrecover``: the EIP-712 signature is not checked (no ``ecrecover`` per order);
* ``noword``: the order's 128-bit word is not stored (``OrderWords.place``);
* a commit (e.g. ``abf5272``): the contracts as they were then, for an A/B against them.

For every variant, round-robin over ``--reps`` rounds, a fresh Anvil (its default limits,
automine), 210 devices with their own keys, ``--intervals`` intervals of 2,000 device-signed
orders relayed in ``placeSignedOrders`` transactions of 400: Anvil's CPU (user + system of its
process) while it takes and mines each transaction (execution, block, state root), while it
serves the receipt a second time (its JSON with every log), the client's CPU to decode the
logs, and Anvil's CPU for one empty block at the end (its state root over all storage).
Medians over rounds; the last line is ``key=value`` pairs (``<variant>_place_ms`` and
``saved_<variant>_ms``: Anvil ms per order).
``python bench/chain_where.py [--reps N] [--intervals N] [--variants base,noevent,...]``
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil

from twin.chain.anvil import AnvilNode
from twin.chain.compile import CONTRACTS_DIR, CompiledContracts, compile_contracts
from twin.chain.keys import ANVIL_DEV_KEY, TxKey, derive_keys
from twin.chain.ledger import ChainLedger
from twin.market.signing import DeviceKey
from twin.market.types import Device, DeviceKind, OrderIntent, Side


def _arg(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


REPS = int(_arg("--reps", "2"))
INTERVALS = int(_arg("--intervals", "3"))
VARIANTS = _arg("--variants", "base,noevent,noecrecover,noword").split(",")
CHUNK, ORDERS, PARTICIPANTS, MAX_ORDERS = 400, 2000, 210, 16
#: variant -> (text in EnergyMarket.sol, its replacement)
EDITS: dict[str, list[tuple[str, str]]] = {
    "base": [],
    "noevent": [("        _emitPlaced(firstOrderId, id + 1 - firstOrderId, words);\n", "")],
    "noecrecover": [("if (signer == address(0) || _recover(structHash, o.r, o.s, o.v) != signer) {",
                     "if (signer == address(0)) {")],
    "noword": [("        OrderWords.place(id, device, interval, uint256(side), energy, price);\n", "")],
}


def _variant(name: str, scratch: Path) -> CompiledContracts:
    d = scratch / name
    shutil.copytree(CONTRACTS_DIR, d)
    (d / "compiled.json").unlink(missing_ok=True)
    if name not in EDITS:  # a commit: its contracts as they were (A/B against it)
        for sol_file in d.glob("*.sol"):
            sol_file.unlink()
        root = CONTRACTS_DIR.parents[2]
        files = subprocess.run(["git", "ls-tree", "--name-only", f"{name}:twin/chain/contracts"],
                               cwd=root, check=True, capture_output=True, text=True).stdout.split()
        for f in (f for f in files if f.endswith(".sol")):
            (d / f).write_text(subprocess.run(
                ["git", "show", f"{name}:twin/chain/contracts/{f}"], cwd=root, check=True,
                capture_output=True, text=True).stdout, encoding="utf-8")
    sol = d / "EnergyMarket.sol"
    text = sol.read_text(encoding="utf-8")
    for old, new in EDITS.get(name, []):
        if old not in text:
            raise SystemExit(f"variant {name}: EnergyMarket.sol no longer has {old.strip()!r}")
        text = text.replace(old, new)
    sol.write_text(text, encoding="utf-8")
    t0 = time.perf_counter()
    out = compile_contracts(contracts_dir=d)
    print(f"variant {name}: compiled (or cached) in {time.perf_counter() - t0:.0f} s", flush=True)
    return out


def _cpu(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def _run(compiled: CompiledContracts) -> dict[str, float]:
    """Anvil's (and the client's decoding) CPU per order, ms, on one fresh node."""
    rng = np.random.default_rng(11)
    devices = [Device(device_id=1000 + k, owner=2 + k, kind=DeviceKind.PV, bus=k,
                      capacity_w=20_000_000) for k in range(PARTICIPANTS)]
    keys = {d.device_id: DeviceKey.from_seed(d.device_id) for d in devices}
    acc = dict.fromkeys(("place", "receipt", "decode"), 0.0)
    with AnvilNode(accounts=1) as node:
        assert node._proc is not None
        anvil = psutil.Process(node._proc.pid)
        led = ChainLedger.deploy(
            node.web3(), keys=derive_keys("bench/chain_where.py", PARTICIPANTS + 2),
            funder=TxKey.from_hex(ANVIL_DEV_KEY), compiled=compiled, interval_s=900,
            retail_price_per_mwh=250_000_000, feed_in_price_per_mwh=80_000_000)
        for d in devices:
            led.register_device(d)
            led.set_device_signer(d.device_id, keys[d.device_id].address)
            led.deposit(d.owner, 10**12)
        nonce: dict[tuple[int, int], int] = {}
        gas = 0
        for i in range(INTERVALS):
            sellers = {d.device_id for d in devices if rng.random() < 0.45}
            count: dict[int, int] = {}
            signed = []
            for _ in range(ORDERS):
                d = devices[int(rng.integers(PARTICIPANTS))]
                while count.get(d.device_id, 0) >= MAX_ORDERS:
                    d = devices[int(rng.integers(PARTICIPANTS))]
                count[d.device_id] = count.get(d.device_id, 0) + 1
                key = (d.device_id, i)
                nonce[key] = nonce.get(key, 0) + 1
                it = OrderIntent(device_id=d.device_id, interval=i,
                                 side=Side.SELL if d.device_id in sellers else Side.BUY,
                                 energy_wh=int(rng.integers(1, 1000)),
                                 price_per_mwh=int(rng.integers(40, 160)) * 1_000_000)
                signed.append(keys[d.device_id].sign_order(it, nonce=nonce[key], domain=led.domain))
            for c in range(0, ORDERS, CHUNK):
                a0 = _cpu(anvil)
                p = led.submit_signed_orders(signed[c:c + CHUNK], checked=True)
                receipt = led.tx._wait(p.tx.tx_hash)
                a1 = _cpu(anvil)
                led.tx.rpc("eth_getTransactionReceipt", [p.tx.tx_hash])
                acc["place"] += a1 - a0
                acc["receipt"] += _cpu(anvil) - a1
                if int(receipt["status"], 16) != 1:
                    raise SystemExit("a placeSignedOrders transaction reverted")
                t0 = time.process_time()
                led._decode_logs(receipt["logs"])
                acc["decode"] += time.process_time() - t0
                gas = int(receipt["gasUsed"], 16)
        a0 = _cpu(anvil)
        for _ in range(20):
            led.tx.rpc("evm_mine", [])
        block_ms = (_cpu(anvil) - a0) / 20 * 1e3
    n = INTERVALS * ORDERS
    return {"place": acc["place"] / n * 1e3, "receipt": acc["receipt"] / n * 1e3,
            "decode": acc["decode"] / n * 1e3, "block_ms": block_ms, "gas": gas / CHUNK}


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="chain_where-") as tmp:
        compiled = {v: _variant(v, Path(tmp)) for v in VARIANTS}
    runs: dict[str, list[dict[str, float]]] = {v: [] for v in VARIANTS}
    for _ in range(REPS):  # round-robin: every variant sees the machine's load alike
        for v in VARIANTS:
            runs[v].append(_run(compiled[v]))
    med = {v: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for v, rs in runs.items()}
    print(f"Anvil CPU per signed order, ms (median of {REPS} rounds, {INTERVALS} x {ORDERS:,} orders "
          f"each, {CHUNK} a transaction):")
    for v, m in med.items():
        print(f"  {v:12s} execute+mine {m['place']:.3f}, receipt served again {m['receipt']:.3f}, "
              f"client decodes logs {m['decode']:.3f}; empty block at the end {m['block_ms']:.1f} ms; "
              f"last tx gas/order {m['gas']:,.0f}")
    kv: dict[str, object] = {f"{v}_place_ms": round(m["place"], 3) for v, m in med.items()}
    if "base" in med:
        kv |= {f"saved_{v}_ms": round(med["base"]["place"] - m["place"], 3)
               for v, m in med.items() if v != "base"}
        kv |= {"receipt_ms": round(med["base"]["receipt"], 3),
               "decode_ms": round(med["base"]["decode"], 3),
               "block_ms": round(med["base"]["block_ms"], 1)}
    print(" ".join(f"{k}={v}" for k, v in kv.items()))


if __name__ == "__main__":
    main()
