"""Cost of faults inside a run: ``scenarios/faults_demo.yaml`` vs the same day without faults.

Both runs are the same scenario (a day on the quickstart feeder); the peer drops the
``faults:`` section. ``--ledger reference`` (default) runs the demo's grid and meter-data
faults on the reference ledger (its chain outage needs a chain: the section is dropped);
``--ledger chain`` runs the whole demo as it ships, its 5-minute chain outage included (it
needs provisional settlement and island books on chain). Runs alternate (faults, no faults, ...) ``--repeats``
times in one process after a warm-up that loads the SimBench feeder once, and the medians
are compared: the whole run's wall time and the mosaik loop's (``world_s``). Target: the
faulted day within 1.5x of the sunny one. Last line: ``key=value`` headline figures.

    .venv/bin/python bench/faults.py [--repeats 3] [--quick] [--ledger reference|chain]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twin.grid.feeders import build_feeder  # noqa: E402
from twin.run import run_scenario  # noqa: E402
from twin.runtime import configure  # noqa: E402
from twin.scenario import scenario_from_dict  # noqa: E402


def _one(scenario) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    with tempfile.TemporaryDirectory() as tmp:
        out = run_scenario(scenario, out_dir=Path(tmp), progress=False)
    return out.wall_s, out.timings_s.get("world_s", 0.0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one repeat of 17:00-21:00 (the island)")
    ap.add_argument("--ledger", choices=("reference", "chain"), default="reference")
    args = ap.parse_args()
    configure()
    data = yaml.safe_load((ROOT / "scenarios" / "faults_demo.yaml").read_text())
    if args.ledger == "reference":
        data["market"]["ledger"] = "reference"
        data["faults"].pop("chain", None)
    faulted = scenario_from_dict(data, source="scenarios/faults_demo.yaml")
    if args.quick:
        faulted = faulted.model_copy(update={"start": faulted.start.replace(hour=17), "duration_s": 4 * 3600,
                                             "faults": faulted.faults.model_copy(update={
                                                 "upstream": [faulted.faults.upstream[0].model_copy(
                                                     update={"start_s": 3600})]})})
        args.repeats = 1
    sunny = faulted.model_copy(update={"faults": None})
    build_feeder(scenario=sunny, rng=np.random.default_rng(0))  # warm-up: SimBench loaded once
    walls: dict[str, list[float]] = {"faults": [], "sunny": []}
    worlds: dict[str, list[float]] = {"faults": [], "sunny": []}
    for r in range(args.repeats):
        for name, sc in (("faults", faulted), ("sunny", sunny)):
            w, loop = _one(sc)
            walls[name].append(w)
            worlds[name].append(loop)
            print(f"repeat {r + 1} {name:6s} wall {w:7.2f} s  mosaik loop {loop:7.2f} s", flush=True)
    med = {k: statistics.median(v) for k, v in walls.items()}
    med_w = {k: statistics.median(v) for k, v in worlds.items()}
    ratio = med["faults"] / med["sunny"]
    ratio_w = med_w["faults"] / med_w["sunny"]
    print(f"median wall: faults {med['faults']:.2f} s, sunny {med['sunny']:.2f} s ({ratio:.2f}x; target <= 1.5x)")
    print(f"median mosaik loop: faults {med_w['faults']:.2f} s, sunny {med_w['sunny']:.2f} s ({ratio_w:.2f}x)")
    print(f"faults_wall_s={med['faults']:.2f} sunny_wall_s={med['sunny']:.2f} faults_x_sunny={ratio:.2f} "
          f"loop_faults_x_sunny={ratio_w:.2f} repeats={args.repeats} ledger={args.ledger}")


if __name__ == "__main__":
    main()
