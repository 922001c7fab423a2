"""Replay a finished town day's market in one process: its orders and meter readings (from a
results folder of ``twin run`` on the reference ledger) through the market step
(:class:`twin.market.step.MarketStep`, daily signing, 1 in 8 orders off the day's plan) and a
results recorder, as the market adapter feeds them; CPU time (``time.process_time``) of the
steps. The market's cost alone, without the grid, the agents and mosaik, and less disturbed
by a loaded machine than a whole run's wall time.

``python bench/market_replay.py RUN_DIR [--root TREE]`` (``--root``: import ``twin`` from another
source tree, e.g. an older commit's ``git archive``, for an A/B); last line ``key=value``.
Set ``GRIDTWIN_SIGN_WORKERS=0`` to keep every signature in this process.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[1])
    args = ap.parse_args()
    sys.path.insert(0, str(args.root.resolve()))
    import numpy as np
    import pyarrow.parquet as pq

    import twin.market.rows as rows_mod
    from twin.market.daily_signers import DailySigners
    from twin.market.reference import ReferenceLedger
    from twin.market.signing import Domain
    from twin.market.step import MarketLog, MarketStep
    from twin.market.types import Device, DeviceKind, OrderIntent, Side
    from twin.results import RunRecorder

    block = getattr(rows_mod, "RowBlock", ())
    o = pq.read_table(args.run_dir / "orders.parquet").to_pydict()
    s = pq.read_table(args.run_dir / "settlements.parquet",
                      columns=["interval", "device_id", "owner", "metered_wh"]).to_pydict()
    owners = dict(zip(s["device_id"], s["owner"], strict=True))
    orders_by: dict[int, list[OrderIntent]] = {}
    for k, d, side, wh, p in zip(o["interval"], o["device_id"], o["side"], o["energy_wh"],
                                 o["price_per_mwh"], strict=True):
        orders_by.setdefault(k, []).append(OrderIntent(
            device_id=d, interval=k, side=Side.BUY if side == "buy" else Side.SELL, energy_wh=wh,
            price_per_mwh=p))
    metered: dict[int, dict[int, int]] = {}
    for k, d, m in zip(s["interval"], s["device_id"], s["metered_wh"], strict=True):
        metered.setdefault(k, {})[d] = m
    n_int = max(metered) + 1

    def planner(rng: range) -> tuple[np.ndarray, ...]:
        rows = [it for k in rng for it in orders_by.get(k, [])]
        d = np.array([it.device_id for it in rows], np.int64)
        kk = np.array([it.interval for it in rows], np.int64)
        e = np.array([it.energy_wh for it in rows], np.int64)
        e = np.where((d * 7 + kk * 13) % 8 == 0, e + 1, e)  # 1 in 8 leaves the plan: amended
        return (d, kk, np.array([it.side == Side.BUY for it in rows], bool), e,
                np.array([it.price_per_mwh for it in rows], np.int64))

    led = ReferenceLedger(interval_s=900, retail_price_per_mwh=300_000_000,
                          feed_in_price_per_mwh=80_000_000,
                          domain=Domain(chain_id=1, verifying_contract="0x" + "11" * 20,
                                        salt=b"\x01" * 32))
    for d in sorted(owners):
        led.register_device(Device(device_id=d, owner=owners[d], kind=DeviceKind.PV, bus=1,
                                   capacity_w=10**7))
    for a in {*owners.values(), 1}:
        led.deposit(a, 10**13)
    signers = DailySigners(seed=7, device_ids=sorted(owners), per_day=96, planner=planner)
    signers.bind(led)
    with tempfile.TemporaryDirectory(prefix="replay-") as tmp:
        rec = RunRecorder(Path(tmp))
        step = MarketStep(ledger=led, interval_s=900, n_intervals=n_int, log=MarketLog(),
                          signers=signers)
        gc.collect()
        gc.freeze()
        cpu = []
        w0 = time.perf_counter()
        for k in range(n_int):
            t0 = time.process_time()
            res = step.step(k, orders_interval=k + 1, orders=orders_by.get(k + 1, []),
                            curtailments=[], metered_wh=metered.get(k), metered_interval=k)
            for table, r in res.rows.items():
                if block and isinstance(r, block):
                    rec.add_columns(table, r.columns, n=len(r))
                else:
                    rec.add(table, r)
            gc.collect()  # as the market adapter does after each step
            gc.freeze()
            cpu.append(time.process_time() - t0)
        wall = time.perf_counter() - w0
    n_trades = sum(len(led.trades(k)) for k in range(n_int + 1))
    print(f"root={args.root} intervals={n_int} steps_cpu_s={sum(cpu):.2f} wall_s={wall:.1f} "
          f"median_step_ms={1000 * float(np.median(cpu)):.0f} trades={n_trades}")


if __name__ == "__main__":
    main()
