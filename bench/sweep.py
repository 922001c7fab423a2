"""Sweep machinery: per-run overhead against the run's own time, and 1 -> 2 worker scaling.

Runs a sweep of ``--runs`` short variants (CIGRE LV, synthetic profiles, reference ledger,
``--intervals`` market intervals, a few seconds each) with 1 and then 2 local workers,
``--repeats`` times, and a couple of on-chain runs for the Anvil start. Reports medians:

* ``overhead_s``: per run, the runner's wall time (fork from the warm forkserver, waiting,
  reading the manifest, writing the record) minus the run's own wall time inside
  :func:`twin.run.run_scenario`; ``setup_s``: feeder/agents/ledger set-up inside the run
  (``anvil_setup_s`` for the chain ledger: Anvil start, deploy, registration);
  ``write_s``: writing kpis.parquet for the sweep.
* ``speedup_2w``: sweep wall time with 1 worker / with 2 workers (target >= 1.8 on 2 cores).
* ``cold_import_s``: what a run would pay without the forkserver (``python -c 'import twin.sweep.child'``).

    .venv/bin/python bench/sweep.py [--runs 6] [--intervals 16] [--repeats 3]

Last line: ``key=value`` headline figures.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twin.runtime import configure  # noqa: E402
from twin.sweep import plan_sweep, run_sweep  # noqa: E402
from twin.sweep.runner import warm_up  # noqa: E402
from twin.sweep.store import kpi_rows, write_kpis  # noqa: E402


def _spec(runs: int, intervals: int, ledger: str) -> dict[str, Any]:
    base = {"name": "bench", "seed": 1, "start": "2016-06-15T10:00:00Z",
            "duration_s": 900 * intervals, "grid": {"kind": "cigre_lv"},
            "agents": {"households": {"count": 20, "profiles": "synthetic"}, "evs": {"count": 4}},
            "market": {"ledger": ledger}}
    return {"name": f"bench_{ledger}", "base": base, "seeds": runs,
            "parameters": {"agents.households.pv.share": [0.5]}, "timeout_s": 600}


def _sweep(spec: dict[str, Any], workers: int) -> tuple[float, list[dict[str, float]]]:
    plan = plan_sweep(spec)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        t0 = time.perf_counter()
        result = run_sweep(plan, out_dir=out, workers=workers, progress=False, echo=lambda m: None)
        wall = time.perf_counter() - t0
        if result.failed:
            raise SystemExit(f"bench sweep failed: {result.kpis.to_pylist()}")
        runs = []
        for run_id, rec in result.records.items():
            kpis = json.loads((out / "runs" / run_id / "kpis.json").read_text())
            timings = json.loads((out / "runs" / run_id / "manifest.json").read_text())["timings_s"]
            runs.append({"runner_s": rec["wall_s"], "run_s": kpis["wall_time_s"],
                         "overhead_s": rec["wall_s"] - kpis["wall_time_s"],
                         "setup_s": timings.get("setup_grid_agents_s", 0.0),
                         "ledger_setup_s": timings.get("setup_ledger_s", 0.0)})
        t1 = time.perf_counter()
        write_kpis(out, kpi_rows(out, plan.variants), parameters=[p.path for p in plan.parameters])
        runs[0]["write_s"] = time.perf_counter() - t1
    return wall, runs


def _med(rows: list[dict[str, float]], key: str) -> float:
    return statistics.median(r[key] for r in rows if key in r)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--intervals", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chain-runs", type=int, default=2)
    args = ap.parse_args()
    configure()  # the twin command's set-up (the runs' forkserver inherits the environment)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import twin.sweep.child"], check=True, cwd=ROOT)
    cold_import_s = time.perf_counter() - t
    warm_up()  # the forkserver imports once, before any timing
    spec = _spec(args.runs, args.intervals, "reference")
    _sweep(_spec(2, 2, "reference"), 2)  # warm-up (numba caches, file system), not timed
    walls: dict[int, list[float]] = {1: [], 2: []}
    rows: list[dict[str, float]] = []
    for rep in range(args.repeats):
        for workers in (1, 2):
            wall, runs = _sweep(spec, workers)
            walls[workers].append(wall)
            rows += runs if workers == 1 else []  # per-run figures without CPU contention
            print(f"repeat {rep + 1}: {args.runs} runs on {workers} worker(s): {wall:.1f} s", flush=True)
    chain_rows: list[dict[str, float]] = []
    if args.chain_runs:
        _, chain_rows = _sweep(_spec(args.chain_runs, args.intervals, "chain"), 1)
    w1, w2 = statistics.median(walls[1]), statistics.median(walls[2])
    figures = {
        "cpus": float(len(os.sched_getaffinity(0))),
        "runs": float(args.runs),
        "run_s": _med(rows, "run_s"),
        "overhead_s": _med(rows, "overhead_s"),
        "overhead_ratio": _med(rows, "overhead_s") / _med(rows, "run_s"),
        "setup_s": _med(rows, "setup_s"),
        "write_s": _med(rows, "write_s"),
        "cold_import_s": cold_import_s,
        "sweep_1w_s": w1,
        "sweep_2w_s": w2,
        "speedup_2w": w1 / w2,
    }
    if chain_rows:
        figures |= {"chain_run_s": _med(chain_rows, "run_s"),
                    "chain_overhead_s": _med(chain_rows, "overhead_s"),
                    "anvil_setup_s": _med(chain_rows, "ledger_setup_s")}
    print("per run (medians): run {run_s:.2f} s, runner overhead {overhead_s:.3f} s "
          "({overhead_ratio:.1%}), feeder+agents set-up inside the run {setup_s:.2f} s; "
          "cold import avoided by the forkserver {cold_import_s:.1f} s".format(**figures))
    print(f"scaling: 1 worker {w1:.1f} s, 2 workers {w2:.1f} s -> {w1 / w2:.2f}x "
          f"on {int(figures['cpus'])} CPU(s) (target >= 1.8x)")
    print(" ".join(f"{k}={v:.4g}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
