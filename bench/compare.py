"""Wall time of the full pilot comparison (``twin compare scenarios/pilots/*.yaml``) on 2 cores.

Runs every pilot of ``scenarios/pilots/`` for its full day (one simulated day at 15 min; the
game pilot its one hour) through :func:`twin.compare.run_compare` with ``--workers`` local
workers into a fresh temporary folder, prints the side-by-side KPI table and each run's own
wall time, and ends with one ``key=value`` line:

    wall_s        the whole comparison (runs + KPIs + writing compare.*)
    n_scenarios   pilots compared;  n_failed: runs that did not complete
    sum_run_s     sum of the runs' wall times (what one worker would need)
    max_run_s     the slowest run;  parallel_eff: sum_run_s / (workers * wall_s)
    kpi_s         computing the KPIs of all runs from their Parquet tables

    .venv/bin/python bench/compare.py [--workers 2] [--keep DIR] [PILOT.yaml ...]

Compare figures from one machine state only: runs share the CPUs with anything else running.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twin.compare import markdown_table, run_compare, run_kpis  # noqa: E402
from twin.kpis.metrics import ChainPricing  # noqa: E402
from twin.scenario import load_scenario  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("pilots", nargs="*", type=Path, help="default: scenarios/pilots/*.yaml")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--keep", type=Path, default=None, help="write the comparison here (default: a temp dir)")
    args = ap.parse_args()
    pilots = args.pilots or sorted((ROOT / "scenarios" / "pilots").glob("*.yaml"))
    with tempfile.TemporaryDirectory() as tmp:
        out = args.keep or Path(tmp) / "compare"
        t0 = time.perf_counter()
        result = run_compare(pilots, out_dir=out, workers=args.workers, echo=lambda m: print(m, file=sys.stderr))
        wall = time.perf_counter() - t0
        t1 = time.perf_counter()
        for p in pilots:  # the KPI step alone, timed again (runs are done)
            s = load_scenario(p)
            if (result.out_dir / "runs" / s.name / "manifest.json").is_file():
                run_kpis(result.out_dir / "runs" / s.name, s, pricing=ChainPricing())
        kpi_s = time.perf_counter() - t1
        rows = result.table.to_pylist()
        print(markdown_table(result.table))
        print()
        for r in rows:
            wall_r = f"{r['wall_s']:.1f} s" if r["wall_s"] is not None else "-"
            print(f"{r['scenario']:<22} {r['ledger']:<9} {r['status']:<9} {wall_r}")
        runs = [r["wall_s"] for r in rows if r["wall_s"] is not None]
        sum_run = sum(runs)
        print(f"wall_s={wall:.1f} n_scenarios={len(rows)} n_failed={len(result.failed)} "
              f"workers={args.workers} sum_run_s={sum_run:.1f} max_run_s={max(runs, default=0):.1f} "
              f"parallel_eff={sum_run / (args.workers * wall):.2f} kpi_s={kpi_s:.2f}")
    return 1 if result.failed else 0


if __name__ == "__main__":
    sys.exit(main())
