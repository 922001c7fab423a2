"""Meter-data faults against the fault-free day (issue 21 targets): with 1 % lost readings
the acquisition KPI reads 99 % within its sampling error, and the settlement after true-up
equals the fault-free run's; also the wall-time ratio of the two runs.

Runs ``scenarios/faults_comm_demo.yaml`` and the same scenario without ``faults``
(``--hours`` shortens both, ``--start-hour`` moves their start within the day, ``--ledger
chain`` settles and trues up on Anvil). ``.venv/bin/python bench/faults_comm.py [--hours 24]
[--start-hour 0] [--ledger reference|chain]``; the last line is key=value.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
#: settlement KPIs that must come out equal once every true-up is in
SETTLEMENT_KPIS = ("settled_metered_kwh", "imbalance_import_kwh", "prosumer_revenue",
                   "consumer_cost", "net_benefit", "energy_traded_kwh", "tokens_conserved")


def _run(scenario: dict, out: Path) -> tuple[dict, dict]:
    path = out.with_suffix(".yaml")
    path.write_text(yaml.safe_dump(scenario))
    subprocess.run([str(Path(sys.executable).parent / "twin"), "run", str(path), "--out", str(out), "--force",
                    "--no-progress"], check=True, cwd=ROOT, capture_output=True)
    return (json.loads((out / "kpis.json").read_text()),
            json.loads((out / "manifest.json").read_text()))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=int, default=24)
    ap.add_argument("--start-hour", type=int, default=0)
    ap.add_argument("--ledger", choices=("reference", "chain"), default="reference")
    args = ap.parse_args()
    faulty = yaml.safe_load((ROOT / "scenarios/faults_comm_demo.yaml").read_text())
    faulty["duration_s"] = args.hours * 3600
    faulty["start"] = faulty["start"].replace("T00:", f"T{args.start_hour:02d}:")
    faulty["market"]["ledger"] = args.ledger
    clean = {k: v for k, v in faulty.items() if k != "faults"} | {"name": "faults_comm_clean"}
    with tempfile.TemporaryDirectory() as tmp:
        kf, _ = _run(faulty, Path(tmp) / "faulty")
        kc, _ = _run(clean, Path(tmp) / "clean")
        import pyarrow.parquet as pq

        n = pq.read_table(Path(tmp) / "faulty" / "meter_data.parquet").num_rows
    p = faulty["faults"]["data"]["loss_rate"]
    sigma = math.sqrt(p * (1 - p) / n)
    rate = kf["data_acquisition_rate"]
    print(f"readings expected      {n}")
    print(f"acquisition rate       {rate:.4%}  (target {1 - p:.2%} +- {sigma:.3%}, 1 sigma)")
    print(f"provisional / true-up  {kf.get('provisional_kwh', 0):.3f} kWh / "
          f"{kf.get('trueup_kwh', 0):.3f} kWh, {kf.get('trueup_amount', 0):+.4f} currency, "
          f"open {kf.get('provisional_open', 0):.0f}")
    diffs = {k: (kf.get(k), kc.get(k)) for k in SETTLEMENT_KPIS if kf.get(k) != kc.get(k)}
    for k in SETTLEMENT_KPIS:
        print(f"{k:24s} faults {kf.get(k)!s:>22}  clean {kc.get(k)!s:>22}")
    within = abs(rate - (1 - p)) <= 3 * sigma
    ratio = kf["wall_time_s"] / kc["wall_time_s"]
    print(f"acquisition_rate={rate:.5f} sampling_sigma={sigma:.5f} within_3sigma={int(within)} "
          f"settlement_equal={int(not diffs)} trueups_kwh={kf.get('trueup_kwh', 0):.3f} "
          f"wall_faults_x_clean={ratio:.2f} ledger={args.ledger}")
    return 0 if within and not diffs else 1


if __name__ == "__main__":
    raise SystemExit(main())
