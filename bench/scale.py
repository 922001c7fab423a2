"""Scale in one place (issue #24's targets): each part is its own bench, run in a child
process, and its ``key=value`` headline line is collected under a prefix.

* ``town_``: the town (scenarios/town.yaml, 10,000 households on SimBench
  1-MVLV-semiurb-all-0-sw) for ``--town-hours`` (24: a day) on the reference ledger
  (bench/town.py: wall time, set-up, peak RSS of the process tree, results folder size);
* ``chain<N>d_``: the quickstart on chain for N = 1 and 7 simulated days, 30 with ``--full``
  (bench/horizon.py: wall time per simulated day first/last, Anvil RSS, folder MB per day);
* ``hh1000_``: 1,000 households of the town on chain for ``--chain-hours`` (24: a day);
* ``sweep_``: the sweep demo on two external ``dask worker`` processes against ``--workers 2``,
  medians of 3 (bench/sweep_cluster.py: ``sweep_x_local``, target <= 1.3).

``--quick``: the town for 2 h, the quickstart on chain for 1 day, 1,000 households for 2 h.
``python bench/scale.py [--quick] [--full] [--days 1,7,30] [--town-hours H] [--parts town,chain,hh1000,sweep]``; last line
``key=value``; a part that fails reports ``<prefix>status=failed`` and the others still run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _headline(cmd: list[str], prefix: str, timeout_s: float) -> dict[str, str]:
    """Run one bench; its last ``key=value`` line, keys prefixed (``status=failed`` if none)."""
    t0 = time.perf_counter()
    print(f"== {prefix.rstrip('_')}: {' '.join(cmd[1:])}", flush=True)
    try:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s,
                              check=False)
        out = proc.stdout.strip().splitlines()
        err = proc.stderr.strip().splitlines()
    except subprocess.TimeoutExpired:
        out, err = [], [f"timed out after {timeout_s:.0f} s"]
    for line in out[:-1]:
        print(f"   {line}")
    last = out[-1] if out else ""
    tokens = last.split()
    # a headline is key=value tokens only (a progress line such as "t= 1.07 d" is not)
    ok = bool(tokens) and all("=" in t and t.split("=", 1)[1] for t in tokens)
    pairs = dict(t.split("=", 1) for t in tokens) if ok else {}
    if not pairs:
        print(f"   failed: {err[-1] if err else 'no output'}")
        return {f"{prefix}status": "failed", f"{prefix}bench_s": f"{time.perf_counter() - t0:.0f}"}
    print(f"   {last}")
    return {f"{prefix}{k}": v for k, v in pairs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="short horizons (see the docstring)")
    ap.add_argument("--full", action="store_true", help="also the quickstart on chain for 30 days")
    ap.add_argument("--days", default=None,
                    help="chain part: comma-separated simulated days (e.g. 1,7,30); "
                         "overrides --quick/--full")
    ap.add_argument("--timeout-s", type=float, default=7200.0, help="per part")
    ap.add_argument("--town-hours", type=float, default=None,
                    help="simulated hours of the town (default 24, 2 with --quick)")
    ap.add_argument("--parts", default="town,chain,hh1000,sweep",
                    help="comma-separated subset of town, chain, hh1000, sweep")
    args = ap.parse_args()
    py = sys.executable
    town_h, chain_h = (2, 2) if args.quick else (24, 24)
    if args.town_hours is not None:
        town_h = args.town_hours
    days = [1] if args.quick else [1, 7] + ([30] if args.full else [])
    if args.days:
        days = [int(d) for d in args.days.split(",")]
    parts = set(args.parts.split(","))
    if parts - {"town", "chain", "hh1000", "sweep"}:
        raise SystemExit(f"--parts: unknown {sorted(parts - {'town', 'chain', 'hh1000', 'sweep'})}")
    figures: dict[str, str] = {}
    if "town" in parts:
        figures |= _headline([py, "bench/town.py", "--hours", f"{town_h:g}"], "town_", args.timeout_s)
    for d in days if "chain" in parts else []:
        figures |= _headline([py, "bench/horizon.py", "--days", str(d),
                              "--timeout-s", str(args.timeout_s)], f"chain{d}d_", args.timeout_s)
    if "hh1000" in parts:
        figures |= _headline([py, "bench/town.py", "--hours", str(chain_h), "--ledger", "chain",
                              "--households", "1000"], "hh1000_", args.timeout_s)
    if "sweep" in parts:
        figures |= _headline([py, "bench/sweep_cluster.py", "--repeats", "3"], "sweep_",
                             args.timeout_s)
    print(" ".join(f"{k}={v}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
