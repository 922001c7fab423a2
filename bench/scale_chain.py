"""The quickstart on chain over a long horizon (issue #24 item 4/7): bench/horizon.py for
``--days`` simulated days (7; ``--quick``: 1; 30 for the issue's target), re-keyed to the
scale headline, with the CPU time of the run (twin + Anvil) beside its wall time and the
machine's load, since this 2-core machine is shared.

* ``day1_s`` / ``dayN_s``: wall seconds per simulated day, first and last day (medians of
  quarter days, bench/horizon.py); ``ratio_dayN_day1`` (target <= 1.2);
* ``anvil_rss_max_mb`` (target < 1024); ``folder_mb_per_day`` (target < 5);
* ``cpu_s``: user+system CPU of the run and its children; ``load1``: 1-min load at the end.

``python bench/scale_chain.py [--days N] [--quick]``; last line ``key=value``.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--days", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="one simulated day")
    ap.add_argument("--timeout-s", type=float, default=6 * 3600.0)
    args = ap.parse_args()
    days = 1 if args.quick else args.days
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    out = subprocess.run(
        [sys.executable, "-u", str(ROOT / "bench" / "horizon.py"), "--days", str(days),
         "--timeout-s", str(args.timeout_s)],
        cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(out.stdout, end="")
    if out.returncode != 0:
        print(out.stderr[-2000:], file=sys.stderr)
        raise SystemExit(f"bench/horizon.py failed ({out.returncode})")
    head = dict(kv.split("=", 1) for kv in out.stdout.strip().splitlines()[-1].split())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    print(f"days={days} day1_s={head['s_per_day_first']} dayN_s={head['s_per_day_last']} "
          f"ratio_dayN_day1={head['last_x_first']} anvil_rss_max_mb={head['anvil_rss_max_mb']} "
          f"folder_mb_per_day={head['folder_mb_per_day']} wall_s={wall:.1f} cpu_s={cpu:.1f} "
          f"cpu_day1_s={float(head['cpu_twin_per_day_first_s']) + float(head['cpu_anvil_per_day_first_s']):.1f} "
          f"cpu_dayN_s={float(head['cpu_twin_per_day_last_s']) + float(head['cpu_anvil_per_day_last_s']):.1f} "
          f"load1={os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
