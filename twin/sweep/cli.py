"""``twin sweep SWEEP.yaml --out DIR [--workers N | --scheduler ADDRESS | --dask-local N]``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


def add_parser(sub: Any) -> None:
    s = sub.add_parser("sweep", help="run every variant of a sweep spec (resumable) into DIR")
    s.add_argument("spec", type=Path, help="sweep YAML file")
    s.add_argument("--out", type=Path, required=True, help="sweep folder (runs/, kpis.parquet)")
    s.add_argument("--workers", type=int, default=None,
                   help="local runs at a time (default: the CPUs this process may use)")
    where = s.add_mutually_exclusive_group()
    where.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help="run on this Dask cluster (tcp://host:8786); DIR must be shared")
    where.add_argument("--dask-local", type=int, default=None, metavar="N",
                       help="start a Dask LocalCluster of N worker processes")
    s.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                   help="per-run timeout (default: the spec's timeout_s)")
    s.add_argument("--allow-failures", action="store_true",
                   help="exit 0 even when some runs failed")
    s.add_argument("--check", action="store_true", help="validate the spec and list the runs only")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.set_defaults(handler=_cmd_sweep)


def _cmd_sweep(args: argparse.Namespace) -> int:
    from twin.sweep import SweepError, load_sweep, run_sweep
    from twin.sweep.report import summary

    try:
        plan = load_sweep(args.spec)
    except SweepError as exc:
        print(f"twin: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if (args.workers is not None and args.workers < 1) or (args.dask_local is not None and args.dask_local < 1):
        print("twin: error: --workers and --dask-local need at least 1", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.check:
        merged = f" ({plan.merged} duplicate points merged)" if plan.merged else ""
        print(f"{args.spec}: ok, {len(plan.variants)} runs{merged}")
        for v in plan.variants:
            print(f"  {v.run_id}  seed={v.seed}  " + "  ".join(f"{k}={x!r}" for k, x in v.params.items()))
        return EXIT_OK
    from twin.sweep.backends import ClusterError

    try:
        result = run_sweep(plan, out_dir=args.out, workers=args.workers, scheduler=args.scheduler,
                           dask_local=args.dask_local, timeout_s=args.timeout,
                           progress=not args.no_progress)
    except ClusterError as exc:
        print(f"twin: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print(f"\ntwin: sweep interrupted; run the same command again to resume ({args.out})",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    print(summary(result.kpis, parameters=[p.path for p in plan.parameters],
                  wall_s=result.wall_s, skipped=len(result.skipped)))
    print(f"results: {result.out_dir}/kpis.parquet and {result.out_dir}/runs/<run_id>/")
    if result.failed and not args.allow_failures:
        return EXIT_FAILED
    return EXIT_OK
