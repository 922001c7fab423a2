"""Agents at town scale: N prosumers (PV, home batteries, EVs, community batteries mixed in)
for a simulated day with the pure-Python reference ledger, wall time and peak memory.

Each repeat runs in a fresh process (so peak RSS is the repeat's own): build the feeder and
the Mesa model, then drive every market interval — ``FeederModel.step_interval`` (DSO
security check with power flows, dispatch, orders) and the reference ledger (place,
clear, curtail, settle) — exactly the protocol the mosaik adapters follow, without mosaik
and without writing tables (so the agents and the market are what is measured). Prints
per-repeat figures, then medians; last line ``key=value`` headline figures.

    .venv/bin/python bench/agents.py [--households 10000] [--repeats 3]
    .venv/bin/python bench/agents.py --households 1000 --ledger chain --repeats 1   # twin run on Anvil

Default feeder: SimBench ``1-MV-urban--0-sw`` (144 buses, 50 MW of LV substations), the
households taking the place of its aggregated LV loads with synthetic profiles (a town of
10,000 homes); 30 % with 3-8 kWp PV, 30 % of those with a 10 kWh battery, one EV per ten
homes, ten community batteries. ``--ledger chain`` runs ``twin run`` end to end instead
(mosaik, Anvil, contracts, tables).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def _scenario(args: argparse.Namespace) -> Any:
    from twin.scenario import scenario_from_dict

    return scenario_from_dict({
        "name": f"bench-agents-{args.households}", "seed": args.seed,
        "duration_s": args.intervals * 900,
        "grid": {"kind": "simbench", "simbench_code": args.code},
        "agents": {
            "households": {"count": args.households, "profiles": "synthetic",
                           "pv": {"share": 0.3, "kwp_min": 3, "kwp_max": 8},
                           "battery": {"share": 0.3}},
            "evs": {"count": args.households // 10},
            "community_storage": {"count": 10, "capacity_kwh": 500, "power_kw": 150},
            "strategy": args.strategy,
        },
        "market": {"ledger": args.ledger},
    })


def _one_reference(args: argparse.Namespace) -> dict[str, float]:
    import numpy as np

    from twin.agents.model import FeederModel
    from twin.grid.feeders import build_feeder
    from twin.market.audit import token_audit
    from twin.market.reference import ReferenceLedger
    from twin.market.types import DSO_ACCOUNT
    from twin.market.units import MICRO, price_from_per_mwh

    s = _scenario(args)
    t0 = time.perf_counter()
    rng = np.random.default_rng(s.seed)
    feeder = build_feeder(s, rng=rng)
    model = FeederModel(scenario=s, feeder=feeder, rng=rng)
    m = s.market
    ledger = ReferenceLedger(interval_s=m.interval_s,
                             retail_price_per_mwh=price_from_per_mwh(m.retail_price_per_mwh),
                             feed_in_price_per_mwh=price_from_per_mwh(m.feed_in_price_per_mwh))
    minted = 0
    for a in [DSO_ACCOUNT, *model.accounts]:
        amount = round((m.dso_balance if a == DSO_ACCOUNT else m.initial_balance) * MICRO)
        ledger.deposit(a, amount)
        minted += amount
    for d in model.devices:
        ledger.register_device(d)
    setup_s = time.perf_counter() - t0
    dso_s = 0.0
    check = model.dso.check

    def timed_check(**kw: Any) -> Any:
        nonlocal dso_s
        t = time.perf_counter()
        try:
            return check(**kw)
        finally:
            dso_s += time.perf_counter() - t

    model.dso.check = timed_check  # type: ignore[method-assign]
    agents_s = market_s = 0.0
    trades: list[Any] = []
    prices: list[int] = []
    n_orders = n_trades = 0
    for k in range(s.n_intervals):
        t = time.perf_counter()
        out = model.step_interval(interval=k, trades=trades, price_history=list(prices))
        t1 = time.perf_counter()
        agents_s += t1 - t
        if k > 0:
            for c in out.curtailments:
                ledger.curtail(trade_id=c.trade_id, energy_wh=c.energy_wh)
            ledger.settle(interval=k, metered_wh=out.metered_wh)
        trades = []
        if out.orders:
            ledger.place_orders(out.orders)
            clearing = ledger.clear(interval=k + 1)
            trades = list(clearing.trades)
            n_orders += len(out.orders)
            n_trades += len(trades)
            if clearing.volume_wh:
                prices.append(clearing.price_per_mwh)
        market_s += time.perf_counter() - t1
    wall_s = time.perf_counter() - t0
    audit = token_audit(ledger, accounts=range(max(model.accounts) + 1), minted=minted)
    return {
        "wall_s": wall_s, "setup_s": setup_s, "agents_s": agents_s, "dso_check_s": dso_s,
        "agents_ex_dso_s": agents_s - dso_s, "ledger_s": market_s,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "orders": float(n_orders), "trades": float(n_trades),
        "devices": float(len(model.devices)), "tokens_conserved": float(audit["conserved"]),
    }


def _one_chain(args: argparse.Namespace) -> dict[str, float]:
    from twin.run import run_scenario

    s = _scenario(args)
    with tempfile.TemporaryDirectory() as tmp:
        out = run_scenario(s, out_dir=Path(tmp), progress=False)
    t = out.timings_s
    return {"wall_s": out.wall_s, "agents_s": t.get("agents_s", 0.0), "ledger_s": t.get("market_s", 0.0),
            "grid_s": t.get("grid_s", 0.0),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "orders": out.kpis.get("orders", 0.0), "tokens_conserved": out.kpis.get("tokens_conserved", 0.0)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--households", type=int, default=10_000)
    ap.add_argument("--intervals", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--code", default="1-MV-urban--0-sw", help="SimBench grid")
    ap.add_argument("--strategy", default="truthful", choices=["truthful", "zi_c", "roth_erev"])
    ap.add_argument("--ledger", default="reference", choices=["reference", "chain"])
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    from twin.runtime import configure

    configure()  # the twin command's set-up: numba's work-queue layer, malloc tuning
    if args.one:
        row = _one_reference(args) if args.ledger == "reference" else _one_chain(args)
        print(json.dumps(row))
        return
    argv = [a for a in sys.argv[1:]]
    rows = []
    for r in range(args.repeats):
        proc = subprocess.run([sys.executable, __file__, *argv, "--one"], capture_output=True,
                              text=True, check=True)
        row = json.loads(proc.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"repeat {r + 1}: " + "  ".join(f"{k}={v:.1f}" for k, v in row.items()), flush=True)
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print(f"\n{args.households} prosumers x {args.intervals} intervals, ledger={args.ledger}, "
          f"strategy={args.strategy}, {args.repeats} repeat(s), medians:")
    for k, v in med.items():
        print(f"  {k:<18} {v:12.2f}")
    head = {"households": args.households, "ledger": args.ledger, **{k: round(v, 2) for k, v in med.items()}}
    print(" ".join(f"{k}={v}" for k, v in head.items()))


if __name__ == "__main__":
    main()
