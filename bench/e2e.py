"""End-to-end cost of the quickstart: wall time per simulated day, split by simulator.

Runs ``scenarios/quickstart.yaml`` (one day) ``--repeats`` times with the on-chain ledger
and once more with the pure-Python reference ledger (the peer that shows what the chain
costs), and prints medians. Last line: ``key=value`` headline figures.

    .venv/bin/python bench/e2e.py [--repeats 3] [--scenario scenarios/quickstart.yaml]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from twin.run import run_scenario  # noqa: E402
from twin.scenario import load_scenario  # noqa: E402


def _one(scenario, ledger: str) -> dict[str, float]:
    scen = scenario.model_copy(update={"market": scenario.market.model_copy(update={"ledger": ledger})})
    with tempfile.TemporaryDirectory() as tmp:
        out = run_scenario(scen, out_dir=Path(tmp), progress=False)
        chain = pq.read_table(Path(tmp) / "chain.parquet").to_pandas()
        orders = pq.read_table(Path(tmp) / "orders.parquet").num_rows
    days = scen.duration_s / 86400
    t = out.timings_s
    row = {
        "wall_s_per_day": out.wall_s / days,
        "agents_s_per_day": t.get("agents_s", 0.0) / days,
        "grid_s_per_day": t.get("grid_s", 0.0) / days,
        "market_s_per_day": t.get("market_s", 0.0) / days,
        "setup_s": t.get("setup_grid_agents_s", 0.0) + t.get("setup_ledger_s", 0.0),
        "orders": float(orders),
    }
    if ledger == "chain" and orders:
        placed = chain[chain.function == "EnergyMarket.placeOrders"]
        row["gas_per_order"] = float(placed.gas_used.sum()) / orders
        row["ms_per_order"] = 1000 * t.get("market_s", 0.0) / orders
        clears = chain[chain.function == "EnergyMarket.clear"]
        row["gas_per_clear"] = float(clears.gas_used.median()) if len(clears) else 0.0
        row["gas_total"] = float(chain.gas_used.sum())
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--scenario", type=Path, default=ROOT / "scenarios" / "quickstart.yaml")
    args = ap.parse_args()
    scenario = load_scenario(args.scenario)
    chain_runs = [_one(scenario, "chain") for _ in range(args.repeats)]
    ref_runs = [_one(scenario, "reference") for _ in range(args.repeats)]

    def med(runs, key):
        return statistics.median(r.get(key, 0.0) for r in runs)

    print(f"scenario {scenario.name}: {scenario.n_intervals} intervals, medians of {args.repeats} runs")
    print(f"{'ledger':<10}{'wall/day s':>12}{'agents s':>10}{'grid s':>9}{'market s':>10}{'orders':>8}")
    for name, runs in (("chain", chain_runs), ("reference", ref_runs)):
        print(f"{name:<10}{med(runs, 'wall_s_per_day'):12.2f}{med(runs, 'agents_s_per_day'):10.2f}"
              f"{med(runs, 'grid_s_per_day'):9.2f}{med(runs, 'market_s_per_day'):10.2f}{med(runs, 'orders'):8.0f}")
    print(f"chain: {med(chain_runs, 'gas_per_order'):.0f} gas/order, {med(chain_runs, 'ms_per_order'):.2f} ms/order "
          f"(market step time / orders), {med(chain_runs, 'gas_per_clear'):.0f} gas per clearing (median)")
    figures = {
        "wall_s_per_day_chain": med(chain_runs, "wall_s_per_day"),
        "wall_s_per_day_reference": med(ref_runs, "wall_s_per_day"),
        "agents_s_per_day": med(chain_runs, "agents_s_per_day"),
        "grid_s_per_day": med(chain_runs, "grid_s_per_day"),
        "chain_market_s_per_day": med(chain_runs, "market_s_per_day"),
        "reference_market_s_per_day": med(ref_runs, "market_s_per_day"),
        "gas_per_order": med(chain_runs, "gas_per_order"),
        "ms_per_order": med(chain_runs, "ms_per_order"),
        "gas_per_clear": med(chain_runs, "gas_per_clear"),
        "chain_over_reference_wall": med(chain_runs, "wall_s_per_day") / max(med(ref_runs, "wall_s_per_day"), 1e-9),
    }
    print(" ".join(f"{k}={v:.4g}" for k, v in figures.items()))


if __name__ == "__main__":
    main()
