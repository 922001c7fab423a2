"""The town: 10,000 households on SimBench 1-MVLV-semiurb-all-0-sw (scenarios/town.yaml).

One ``twin run`` of the town on the reference ledger for ``--hours`` simulated hours (24: a
day); the whole process tree's peak RSS is sampled every 0.2 s. Reports wall time, set-up
time (grid and agents; on chain also opening the ledger: Anvil, deployment, gas money, and
funding and registering the population), the time outside the simulated day (``startup_s``:
imports and the scenario before the run starts; ``kpis_s``: tables read back and KPIs;
``exit_s``: from the manifest's last write to the process's end), peak RSS, results folder size and the run's status (a feeder
that cannot carry the town fails with GridDiverged instead of "succeeding").

``python bench/town.py [--hours 24] [--start-hour H] [--ledger chain] [--signing daily]``; last line ``key=value``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]


def _tree_rss_mb(proc: psutil.Process, cpu: dict[int, float] | None = None) -> float:
    """RSS of the process tree (MB); ``cpu``: each process's user + system seconds so far."""
    total = 0.0
    try:
        for p in [proc, *proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss / 1e6
                if cpu is not None:
                    t = p.cpu_times()
                    cpu[p.pid] = t.user + t.system
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--ledger", default="reference", choices=["reference", "chain"])
    ap.add_argument("--households", type=int, default=None, help="override the town's count")
    ap.add_argument("--start-hour", type=int, default=None,
                    help="start the day's run at this hour (e.g. 11: a midday hour trades)")
    ap.add_argument("--signing", default="per_interval", choices=["per_interval", "daily"],
                    help="market.signing: per-interval signatures, or day schedules and "
                         "daily reading batches")
    args = ap.parse_args()
    doc = yaml.safe_load((ROOT / "scenarios" / "town.yaml").read_text())
    doc["market"]["ledger"] = args.ledger
    doc["market"]["signing"] = args.signing
    if args.start_hour is not None:
        doc["start"] = doc["start"].replace("T00:", f"T{args.start_hour:02d}:")
    if args.households:  # EVs and community batteries in the town's proportions
        share = args.households / doc["agents"]["households"]["count"]
        doc["agents"]["households"]["count"] = args.households
        doc["agents"]["evs"]["count"] = round(doc["agents"]["evs"]["count"] * share)
        doc["agents"]["community_storage"]["count"] = max(
            1, round(doc["agents"]["community_storage"]["count"] * share))
    with tempfile.TemporaryDirectory(prefix="town-") as tmp:
        scen = Path(tmp) / "town.yaml"
        scen.write_text(yaml.safe_dump(doc))
        out = Path(tmp) / "run"
        until = int(args.hours * 3600)
        cmd = [sys.executable, "-m", "twin.cli", "run", str(scen), "--out", str(out),
               "--no-progress", "--until", str(until)]
        t0 = time.perf_counter()
        spawned = time.time()
        load_start = os.getloadavg()[0]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        ps = psutil.Process(proc.pid)
        peak = 0.0
        cpu: dict[int, float] = {}  # the tree's CPU (a process's last < 0.2 s is missed)
        while proc.poll() is None:
            peak = max(peak, _tree_rss_mb(ps, cpu))
            time.sleep(0.2)
        wall = time.perf_counter() - t0
        ended = time.time()
        load_end = os.getloadavg()[0]
        err = proc.stderr.read().decode() if proc.stderr else ""
        manifest = json.loads((out / "manifest.json").read_text())
        # outside the run's own timings: imports and the scenario before it, the exit after
        # the manifest's last write
        startup_s = datetime.fromisoformat(manifest["started_at"]).timestamp() - spawned
        exit_s = ended - (out / "manifest.json").stat().st_mtime
        size_mb = sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) / 1e6
    timings = manifest.get("timings_s", {})
    print(f"status {manifest['status']} error {manifest.get('error')}")
    if proc.returncode:
        print(err.strip().splitlines()[-1] if err.strip() else "")
    print(f"timings {timings}")
    print(f"households={doc['agents']['households']['count']} ledger={args.ledger} "
          f"signing={args.signing} "
          f"hours={args.hours:g} status={manifest['status']} wall_s={wall:.1f} "
          f"setup_s={timings.get('setup_grid_agents_s', float('nan')):.1f} "
          f"open_ledger_s={timings.get('open_ledger_s', float('nan')):.1f} "
          f"setup_ledger_s={timings.get('setup_ledger_s', float('nan')):.1f} "
          f"world_s={timings.get('world_s', float('nan')):.1f} "
          f"kpis_s={timings.get('kpis_s', float('nan')):.1f} startup_s={startup_s:.1f} "
          f"exit_s={exit_s:.1f} peak_rss_mb={peak:.0f} "
          f"results_mb={size_mb:.1f} cpu_s={sum(cpu.values()):.1f} "
          f"load_start={load_start:.1f} load_end={load_end:.1f}")


if __name__ == "__main__":
    main()
