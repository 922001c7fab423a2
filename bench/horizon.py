"""Chain cost over the horizon: the quickstart on Anvil for ``DAYS`` simulated days.

One ``twin run`` of the quickstart stretched to ``DAYS`` days (plus two hours, so the last
day's end falls on a checkpoint). While it runs we poll ``checkpoint.json`` (a forced
checkpoint every 8 market intervals lands on each day boundary) and the Anvil child's RSS:

* wall seconds of each simulated day (day ``k`` = between the checkpoints at ``k-1`` and
  ``k`` days), and the ratio last day / first day (flat = 1.0);
* a least-squares fit of cumulative wall time ``W(T) = a*T + b*T^2`` (T in days): ``b``
  near 0 means the cost per day does not grow with the chain;
* Anvil RSS at each day boundary (max), results folder size at the end, MB per day.

``python bench/horizon.py [--days 3] [--prune-history N]``; last line ``key=value``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
DAY_S = 86_400


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


def _folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--scenario", default=str(ROOT / "scenarios" / "quickstart.yaml"))
    args = ap.parse_args()
    doc = yaml.safe_load(Path(args.scenario).read_text())
    doc["duration_s"] = args.days * DAY_S + 8 * int(doc["market"]["interval_s"])
    with tempfile.TemporaryDirectory(prefix="horizon-") as tmp:
        scen = Path(tmp) / "horizon.yaml"
        scen.write_text(yaml.safe_dump(doc))
        out = Path(tmp) / "run"
        cmd = [sys.executable, "-m", "twin.cli", "run", str(scen), "--out", str(out), "--no-progress"]
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        ps = psutil.Process(proc.pid)
        marks: dict[int, float] = {}  # day -> wall s when its end was checkpointed
        rss_at: dict[int, float] = {}
        rss_max = 0.0
        while proc.poll() is None:
            rss = _anvil_rss_mb(ps)
            rss_max = max(rss_max, rss)
            try:
                time_s = int(json.loads((out / "checkpoint.json").read_text())["time_s"])
            except (OSError, ValueError, KeyError):
                time_s = -1
            day = time_s // DAY_S
            if time_s >= 0 and day >= 1 and day not in marks and day <= args.days:
                marks[day] = time.perf_counter() - t0
                rss_at[day] = rss
            time.sleep(0.2)
        wall = time.perf_counter() - t0
        err = proc.stderr.read().decode() if proc.stderr else ""
        if proc.returncode != 0:
            raise SystemExit(f"run failed ({proc.returncode}): {err[-2000:]}")
        manifest = json.loads((out / "manifest.json").read_text())
        size_mb = _folder_mb(out)
    start = manifest["timings_s"].get("setup_grid_agents_s", 0.0)
    days = sorted(marks)
    if len(days) < 2:
        raise SystemExit(f"too few day marks: {marks}")
    # Day 1 starts when the world starts: wall at the first mark minus the first day's share is
    # unknown, so day k>=2 durations are differences; day 1 = mark(1) - (mark(2)-mark(1)) guess is
    # avoided: the per-day series starts at day 2 and is compared with day 2.
    per_day = [marks[d] - marks[d - 1] for d in days if d - 1 in marks]
    cum_t = np.array(days, dtype=float)
    cum_w = np.array([marks[d] for d in days])
    # W(T) = c + a*T + b*T^2 (c: set-up before the world)
    a_mat = np.vstack([np.ones_like(cum_t), cum_t, cum_t**2]).T
    c, a, b = np.linalg.lstsq(a_mat, cum_w, rcond=None)[0]
    print(f"marks (day: wall s since start) {marks}")
    print(f"seconds per simulated day (day 2..{days[-1]}): {[round(x, 1) for x in per_day]}")
    print(f"fit W(T) = {c:.1f} + {a:.2f}*T + {b:.2f}*T^2 s")
    print(f"Anvil RSS MB at day ends {rss_at}, max {rss_max:.0f}")
    print(f"results folder {size_mb:.1f} MB ({size_mb / args.days:.1f} MB/day), wall {wall:.1f} s,"
          f" setup {start:.1f} s")
    ratio = per_day[-1] / per_day[0]
    print(f"days={args.days} s_per_day_first={per_day[0]:.2f} s_per_day_last={per_day[-1]:.2f} "
          f"last_x_first={ratio:.2f} fit_a_s={a:.2f} fit_b_s={b:.3f} "
          f"anvil_rss_max_mb={rss_max:.0f} folder_mb_per_day={size_mb / args.days:.1f} wall_s={wall:.1f}")


if __name__ == "__main__":
    main()
