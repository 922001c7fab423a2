"""Chain cost over the horizon: the quickstart on Anvil for ``DAYS`` simulated days.

One ``twin run`` of the quickstart stretched to ``DAYS`` days (plus two hours, so the last
day's end falls on a flush). While it runs we poll the rows of ``grid.parquet`` (one per
interval; the tables are flushed every 8 intervals, so a flush lands on each quarter day)
and the Anvil child's RSS:

* wall seconds per simulated day, from the quarter days: median of the first three
  (after the set-up) against the last three, and their ratio (flat = 1.0);
* a least-squares fit of cumulative wall time ``W(T) = a*T + b*T^2`` (T in days): ``b``
  near 0 means the cost per day does not grow with the chain;
* Anvil RSS at each day boundary (max), results folder size at the end, MB per day;
* transactions per block over the run (``chain.parquet``);
* CPU seconds (twin, Anvil) per simulated day, first against last quarter days (medians, as the
  wall time) and whole days (the second day against the last, compactions included): on a
  shared, loaded machine CPU time is the steadier measure (issue #24's target: the last day at
  most 1.2x the first).

* EnergyMarket's live storage slots at the end, per day (``--no-prune``: as before #24's
  pruning of settled intervals).

``--profile-dir DIR``: the twin runs under cProfile (``bench/_day_profile.py``), one profile of
its main thread per simulated day (``DIR/window-NNN.prof``, window N = day N); CPU figures then
include the profiler's overhead.

``python bench/horizon.py [--days 2] [--root OLD_TREE] [--no-prune] [--profile-dir DIR]``; last
line ``key=value``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

ROOT = Path(__file__).resolve().parents[1]
DAY_S = 86_400
QUARTER_S = DAY_S // 4  # 24 intervals of 15 min: a forced checkpoint lands on each


def _anvil_rss_mb(proc: psutil.Process) -> float:
    total = 0.0
    try:
        for child in proc.children(recursive=True):
            try:
                if "anvil" in child.name():
                    total += child.memory_info().rss / 1e6
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return total


def _cpu_s(proc: psutil.Process) -> tuple[float, float]:
    """User+system CPU seconds of (the twin, its Anvil child): on a shared, loaded machine
    wall time mostly measures the wait for a core."""
    twin = anvil = 0.0
    try:
        t = proc.cpu_times()
        twin = t.user + t.system
        # reaped children: the Anvils a compaction (AnvilNode.compact) replaced
        anvil = t.children_user + t.children_system
        for child in proc.children(recursive=True):
            try:
                c = child.cpu_times()
                if "anvil" in child.name():
                    anvil += c.user + c.system
                else:
                    twin += c.user + c.system
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return twin, anvil


def _main_thread_cpu_s(proc: psutil.Process) -> float:
    """CPU seconds of the twin's main thread (the simulation loop; the rest of the twin's
    CPU is its helper threads: table writes, numba workers)."""
    try:
        return next((t.user_time + t.system_time for t in proc.threads() if t.id == proc.pid), 0.0)
    except psutil.Error:
        return 0.0


def _market_slots(out: Path) -> int:
    """Live storage slots of EnergyMarket in the run's final chain state."""
    doc = json.loads(gzip.decompress((out / "chain_state.json.gz").read_bytes()))
    market = json.loads((out / "manifest.json").read_text())["chain"]["contracts"]["EnergyMarket"]
    acct = {k.lower(): v for k, v in doc["accounts"].items()}[market.lower()]
    return sum(1 for v in (acct.get("storage") or {}).values() if int(v, 16) != 0)


def _folder_mb(path: Path) -> float:
    """Bytes on disk: a hard link (a published table and its hidden slot) counts once."""
    seen: dict[tuple[int, int], int] = {}
    for p in path.rglob("*"):
        try:
            st = p.stat()
        except OSError:  # replaced while we look
            continue
        if p.is_file():
            seen[(st.st_dev, st.st_ino)] = st.st_size
    return sum(seen.values()) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--days", type=int, default=2)
    ap.add_argument("--scenario", default=str(ROOT / "scenarios" / "quickstart.yaml"))
    ap.add_argument("--root", default=str(ROOT), help="project tree to run (e.g. an older checkout)")
    ap.add_argument("--timeout-s", type=float, default=None,
                    help="give up after this many wall seconds (default 600 + 300 a simulated day: "
                         "a loaded 2-core machine took ~100 s a day)")
    ap.add_argument("--no-prune", action="store_true",
                    help="keep settled intervals' storage (GRIDTWIN_CHAIN_PRUNE=0): the cost before #24's fix")
    ap.add_argument("--profile-dir", default=None,
                    help="cProfile the twin's main thread, one profile per simulated day, here")
    args = ap.parse_args()
    if args.timeout_s is None:
        args.timeout_s = 600.0 + 300.0 * args.days
    doc = yaml.safe_load(Path(args.scenario).read_text())
    interval_s = int(doc["market"]["interval_s"])
    doc["duration_s"] = args.days * DAY_S + 8 * interval_s
    with tempfile.TemporaryDirectory(prefix="horizon-") as tmp:
        scen = Path(tmp) / "horizon.yaml"
        scen.write_text(yaml.safe_dump(doc))
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "twin.cli", "run", str(scen), "--out", str(out), "--no-progress"]
        if args.profile_dir:
            cmd[1:3] = [str(ROOT / "bench" / "_day_profile.py"), str(Path(args.profile_dir).resolve())]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=args.root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env={**os.environ, "PYTHONPATH": args.root,
                                     "GRIDTWIN_CHAIN_PRUNE": "0" if args.no_prune else "1"})
        ps = psutil.Process(proc.pid)
        marks: dict[int, float] = {}  # quarter day -> wall s when its end was checkpointed
        rss_at: dict[int, float] = {}
        folder_at: dict[int, float] = {}
        rss_max = 0.0
        cpu_at: dict[int, tuple[float, float]] = {}
        main_at: dict[int, float] = {}
        while proc.poll() is None:
            if time.perf_counter() - t0 > args.timeout_s:
                proc.terminate()
                proc.wait()
                raise SystemExit(f"timed out after {args.timeout_s} s; marks {marks}")
            rss = _anvil_rss_mb(ps)
            rss_max = max(rss_max, rss)
            try:  # one grid row per interval; tables are flushed every 8 intervals
                time_s = pq.read_metadata(out / "grid.parquet").num_rows * interval_s
            except (OSError, pa.ArrowException):
                time_s = -1
            q = time_s // QUARTER_S
            if time_s >= 0 and q >= 1 and q not in marks and q <= 4 * args.days:
                marks[q] = time.perf_counter() - t0
                rss_at[q] = rss
                folder_at[q] = _folder_mb(out)
                cpu_at[q] = _cpu_s(ps)
                main_at[q] = _main_thread_cpu_s(ps)
                if args.profile_dir and q % 4 == 0:
                    proc.send_signal(signal.SIGUSR1)  # the day's profile
                print(f"  t={time_s / DAY_S:5.2f} d wall={marks[q]:7.1f} s anvil={rss:6.0f} MB "
                      f"folder={folder_at[q]:6.1f} MB cpu twin={cpu_at[q][0]:7.1f} s "
                      f"(main {main_at[q]:7.1f} s) anvil={cpu_at[q][1]:7.1f} s", flush=True)
            time.sleep(0.2)
        wall = time.perf_counter() - t0
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.returncode != 0:
            raise SystemExit(f"run failed ({proc.returncode}): {err[-2000:]}")
        size_mb = _folder_mb(out)
        slots = _market_slots(out)
        chain = pq.read_table(out / "chain.parquet", columns=["block"]).column("block").to_numpy()
        tx_per_block = len(chain) / max(1, len(np.unique(chain)))
    qs = sorted(marks)
    per_q = {q: marks[q] - marks[q - 1] for q in qs if q - 1 in marks}
    if len(per_q) < 3:  # one day: three quarters after the first
        raise SystemExit(f"too few quarter-day marks: {marks}")
    # seconds per simulated day from the quarter days (the first quarter holds the set-up)
    first = 4 * float(np.median([per_q[q] for q in sorted(per_q)[:3]]))
    last = 4 * float(np.median([per_q[q] for q in sorted(per_q)[-3:]]))
    cpu_q = {q: [cpu_at[q][i] - cpu_at[q - 1][i] for i in (0, 1)] for q in per_q}
    cpu_first = [4 * float(np.median([cpu_q[q][i] for q in sorted(cpu_q)[:3]])) for i in (0, 1)]
    cpu_last = [4 * float(np.median([cpu_q[q][i] for q in sorted(cpu_q)[-3:]])) for i in (0, 1)]
    # whole days (compactions included): the second day (the first holds the set-up) and the last
    days_cpu = [[cpu_at[4 * d][i] - cpu_at[4 * d - 4][i] for i in (0, 1)]
                + [main_at[4 * d] - main_at[4 * d - 4]]
                for d in (2, args.days) if 4 * d in cpu_at and 4 * d - 4 in cpu_at]
    t_days = np.array(sorted(per_q), dtype=float) / 4.0
    w = np.array([marks[q] for q in sorted(per_q)])
    # cumulative wall W(T) = c + a*T + b*T^2 (T in days): b ~ 0 when a day costs the same
    c, a, b = np.linalg.lstsq(np.vstack([np.ones_like(t_days), t_days, t_days**2]).T, w,
                              rcond=None)[0]
    print(f"fit W(T) = {c:.1f} + {a:.2f}*T + {b:.2f}*T^2 s (T days)")
    print(f"results folder at the end {size_mb:.1f} MB, max during the run "
          f"{max(folder_at.values()):.1f} MB; Anvil RSS max {rss_max:.0f} MB; wall {wall:.1f} s")
    print(f"days={args.days} s_per_day_first={first:.1f} s_per_day_last={last:.1f} "
          f"last_x_first={last / first:.2f} fit_a_s={a:.2f} fit_b_s={b:.2f} "
          f"anvil_rss_max_mb={rss_max:.0f} anvil_rss_growth_mb_per_day="
          f"{(rss_at[qs[-1]] - rss_at[qs[0]]) / ((qs[-1] - qs[0]) / 4):.0f} "
          f"folder_mb_per_day={size_mb / args.days:.2f} market_slots_per_day={slots / args.days:.0f} "
          f"tx_per_block={tx_per_block:.2f} wall_s={wall:.1f} "
          f"cpu_twin_per_day_first_s={cpu_first[0]:.1f} cpu_twin_per_day_last_s={cpu_last[0]:.1f} "
          f"cpu_anvil_per_day_first_s={cpu_first[1]:.1f} cpu_anvil_per_day_last_s={cpu_last[1]:.1f} "
          f"cpu_anvil_last_x_first={cpu_last[1] / max(cpu_first[1], 1e-9):.2f} "
          f"cpu_last_x_first={sum(cpu_last) / max(sum(cpu_first), 1e-9):.2f}"
          + ("" if len(days_cpu) < 2 else
             f" cpu_day2_s={sum(days_cpu[0][:2]):.1f} cpu_last_day_s={sum(days_cpu[1][:2]):.1f} "
             f"cpu_anvil_day2_s={days_cpu[0][1]:.1f} cpu_anvil_last_day_s={days_cpu[1][1]:.1f} "
             f"cpu_twin_main_day2_s={days_cpu[0][2]:.1f} cpu_twin_main_last_day_s={days_cpu[1][2]:.1f}"))


if __name__ == "__main__":
    main()
