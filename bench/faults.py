"""Cost of faults inside a run: ``scenarios/faults_demo.yaml`` vs the same day without faults.

Both runs are the same scenario (a day on the quickstart feeder); the peer drops the
``faults:`` section. ``--ledger reference`` (default) runs the demo's grid and meter-data
faults on the reference ledger (its chain outage needs a chain: the section is dropped);
Runs alternate (faults, no faults, ...) ``--repeats`` times in one process after a warm-up
that loads the SimBench feeder once, and the medians are compared: the whole run's wall time
and the mosaik loop's (``world_s``). Target: the faulted day within 1.5x of the sunny one.

``--ledger chain`` runs the whole demo day as it ships on the chain (Anvil, its 5-minute
chain outage through the fault-injecting proxy included, provisional settlement and the two
islands' books on chain), then the same day on the reference ledger (its chain section
dropped), once each, and compares them: wall time, the pilots' reliability KPIs
(acquisition success, market availability, recovery times, transaction latency) and every
market KPI, which must be equal on both ledgers (the chain's own KPIs — gas, latency,
incidents — aside). ``--quick``: the 17:00-21:00 window around the islands instead of the day.
``--sunny``: also the same day on chain without faults (the 1.5x target); the chain's faults
are in simulated time, so the outage costs no wall minutes; ``--always-proxy``: every request
through the proxy (by default only those in a fault window go through it).
Last line: ``key=value`` headline figures.

    .venv/bin/python bench/faults.py [--repeats 3] [--quick] [--ledger reference|chain]
        [--sunny] [--always-proxy]
"""

from __future__ import annotations

import argparse
import json
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


#: the chain's own KPIs (gas, wall-clock latencies and incidents): no reference counterpart
CHAIN_ONLY = ("wall_time_s", "tx_latency_", "chain_mttr", "chain_incidents", "gas_per_kwh",
              "chain_cost_per_kwh")
SHOWN = ("data_acquisition_rate", "market_availability", "chain_mttr_outage_s", "tx_latency_p50_s",
         "tx_latency_p99_s", "mttr_line_min", "mttr_upstream_min", "saidi_min", "saifi",
         "energy_not_served_faults_kwh", "island_survival_min", "island_trades",
         "island_energy_traded_kwh", "island_price_per_mwh", "provisional_kwh", "trueup_kwh",
         "trueup_amount", "provisional_open", "trades", "energy_traded_kwh", "mean_price_per_mwh")


def _chain_vs_reference(data: dict, *, quick: bool, keep: Path | None,  # type: ignore[type-arg]
                        sunny: bool = False) -> None:
    """The demo on the chain, then on the reference ledger: wall time and KPIs side by side
    (``sunny``: then the same day on the chain without faults, for the 1.5x target)."""
    runs: dict[str, tuple[float, dict[str, float], dict[str, float]]] = {}
    for ledger in ("chain", "reference", *(("sunny",) if sunny else ())):
        d = json.loads(json.dumps(data))
        d["market"]["ledger"] = "reference" if ledger == "reference" else "chain"
        if ledger == "reference":
            d["faults"].pop("chain", None)
        sc = scenario_from_dict(d, source="scenarios/faults_demo.yaml")
        if quick:
            sc = _window(sc)
        if ledger == "sunny":
            sc = sc.model_copy(update={"faults": None})
        with tempfile.TemporaryDirectory() as tmp:
            out_dir = keep / ledger if keep is not None else Path(tmp)
            out = run_scenario(sc, out_dir=out_dir, progress=False)
            kpis = json.loads((out_dir / "kpis.json").read_text())
        runs[ledger] = (out.wall_s, kpis, out.timings_s)
        t = out.timings_s
        print(f"{ledger:9s} wall {out.wall_s:8.1f} s  mosaik loop {t.get('world_s', 0):8.1f} s  "
              f"market {t.get('market_s', 0):8.1f} s  set-up grid+agents "
              f"{t.get('setup_grid_agents_s', 0):6.1f} s ledger {t.get('setup_ledger_s', 0):6.1f} s  "
              f"teardown {t.get('teardown_s', 0):6.1f} s", flush=True)
    (cw, ck, _), (rw, rk, _) = runs["chain"], runs["reference"]
    print(f"{'kpi':32s} {'chain':>14s} {'reference':>14s}")
    for k in SHOWN:
        print(f"{k:32s} {ck.get(k, float('nan')):14.4f} {rk.get(k, float('nan')):14.4f}")
    market = sorted(k for k in set(ck) | set(rk) if not k.startswith(CHAIN_ONLY))
    differ = [k for k in market if ck.get(k) != rk.get(k)]
    print(f"market KPIs equal on both ledgers: {len(market) - len(differ)}/{len(market)}"
          + (f"; differ: {', '.join(differ)}" if differ else ""))
    if sunny:
        sw = runs["sunny"][0]
        print(f"chain day without faults: wall {sw:.1f} s; with them {cw:.1f} s ({cw / sw:.2f}x, "
              f"of which the outage's {ck.get('chain_mttr_outage_s', 0):.0f} s; target <= 1.5x)")
    print((f"faults_x_sunny={cw / runs['sunny'][0]:.2f} " if sunny else "")
          + f"chain_wall_s={cw:.1f} reference_wall_s={rw:.1f} chain_x_reference={cw / rw:.2f} "
          f"acquisition={ck.get('data_acquisition_rate', float('nan')):.4f} "
          f"availability={ck.get('market_availability', float('nan')):.3f} "
          f"chain_mttr_outage_s={ck.get('chain_mttr_outage_s', float('nan')):.1f} "
          f"tx_latency_p50_s={ck.get('tx_latency_p50_s', float('nan')):.3f} "
          f"tx_latency_p99_s={ck.get('tx_latency_p99_s', float('nan')):.3f} "
          f"island_trades={ck.get('island_trades', 0):.0f} "
          f"market_kpis_equal={len(market) - len(differ)}/{len(market)} quick={int(quick)}")


def _window(faulted):  # type: ignore[no-untyped-def]
    """17:00-21:00 of the demo: the islands (line 6 from 17:45, the upstream loss 18:00-20:00)."""
    f = faulted.faults
    return faulted.model_copy(update={
        "start": faulted.start.replace(hour=17), "duration_s": 4 * 3600, "faults": f.model_copy(update={
            "upstream": [f.upstream[0].model_copy(update={"start_s": 3600})],
            "lines": [ln.model_copy(update={"at_s": [a - 17 * 3600 for a in ln.at_s]})
                      for ln in f.lines if all(a >= 17 * 3600 for a in ln.at_s)],
            "devices": [], "chain": f.chain.model_copy(update={"outages": []}) if f.chain else None})})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="one repeat of 17:00-21:00 (the islands)")
    ap.add_argument("--ledger", choices=("reference", "chain"), default="reference")
    ap.add_argument("--keep", type=Path, default=None, help="--ledger chain: keep the runs here")
    ap.add_argument("--sunny", action="store_true",
                    help="--ledger chain: also the same day on chain without faults (1.5x target)")
    ap.add_argument("--always-proxy", action="store_true",
                    help="--ledger chain: every request through the fault proxy (by default the "
                    "twin talks to the node directly outside the fault windows)")
    args = ap.parse_args()
    configure()
    data = yaml.safe_load((ROOT / "scenarios" / "faults_demo.yaml").read_text())
    if args.ledger == "chain":
        # warm-up: SimBench loaded and the contracts compiled once, before the first timed run
        import twin.chain.ledger  # noqa: F401  (web3 and the chain client imported once)
        import twin.faults.chain_faults as chain_faults
        from twin.chain.compile import compile_contracts

        chain_faults.BYPASS_OUTSIDE_FAULTS = not args.always_proxy

        build_feeder(scenario=scenario_from_dict(data, source="scenarios/faults_demo.yaml"),
                     rng=np.random.default_rng(0))
        compile_contracts()
        _chain_vs_reference(data, quick=args.quick, keep=args.keep, sunny=args.sunny)
        return
    data["market"]["ledger"] = "reference"
    data["faults"].pop("chain", None)
    faulted = scenario_from_dict(data, source="scenarios/faults_demo.yaml")
    if args.quick:
        faulted = _window(faulted)
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
