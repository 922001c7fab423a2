"""``twin resilience SCENARIO --out DIR``: the scenario's resilience study to Parquet + kpis.json.

The feeder comes from :func:`twin.grid.feeders.build_feeder` (same net and profiles as
``twin run``); the study (:mod:`twin.grid.resilience`) runs over the scenario's day at the
market interval. Set-points per step: household demand and PV from the feeder's profiles,
background loads and generators from theirs, EVs at a quarter of their charger power (their
mean charging demand; the agents' charging decisions are not part of the study), home
batteries idle. Customers: one per household and per background load row, EVs count none
(their household already counts). Grid-forming: the community batteries
(``resilience.grid_forming``), with their scenario capacity and power.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["add_parser", "build_study", "run_resilience"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def add_parser(sub: Any) -> None:
    r = sub.add_parser("resilience", help="N-1, N-k and upstream-loss study of a scenario's feeder")
    r.add_argument("scenario", type=Path, help="scenario YAML file (its resilience: block)")
    r.add_argument("--out", type=Path, required=True, help="folder for cases/steps Parquet and kpis.json")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(handler=_cmd_resilience)


def build_study(scenario: Any) -> dict[str, Any]:
    """Net, cases, profiles, grid-forming units, customers and priorities of ``scenario``."""
    from twin.grid.feeders import build_feeder
    from twin.grid.resilience import GridFormingStorage, Profiles, contingency_cases

    spec = scenario.resilience
    feeder = build_feeder(scenario)
    net = feeder.net
    step_s = feeder.interval_s
    T = feeder.n_intervals
    load_p = np.tile((net.load.p_mw * net.load.scaling).to_numpy(), (T, 1))
    load_q = np.tile((net.load.q_mvar * net.load.scaling).to_numpy(), (T, 1))
    load_p[:, feeder.household_load_row] = feeder.household_load_p_mw.T
    load_q[:, feeder.household_load_row] = feeder.household_load_q_mvar.T
    load_p[:, feeder.background_load_row] = feeder.background_load_p_mw.T
    load_q[:, feeder.background_load_row] = feeder.background_load_q_mvar.T
    charger_mw = scenario.agents.evs.charger_kw / 1000.0
    load_p[:, feeder.ev_load_row] = 0.25 * charger_mw
    load_q[:, feeder.ev_load_row] = 0.0
    sgen_p = np.zeros((T, len(net.sgen)))
    has_pv = feeder.household_sgen_row >= 0
    sgen_p[:, feeder.household_sgen_row[has_pv]] = (
        feeder.household_pv_pu[has_pv].T * feeder.household_pv_kwp[has_pv] / 1000.0
    )
    sgen_p[:, feeder.background_sgen_row] = feeder.background_sgen_p_mw.T
    profiles = Profiles(step_s=step_s, load_p_mw=load_p, load_q_mvar=load_q, sgen_p_mw=sgen_p,
                        storage_p_mw=np.zeros((T, len(net.storage))))
    customers = np.zeros(len(net.load))
    customers[feeder.household_load_row] = 1.0
    customers[feeder.background_load_row] = 1.0
    priority = np.full(len(net.load), spec.priority_other, dtype=np.int64)
    priority[feeder.household_load_row] = spec.priority_household
    priority[feeder.ev_load_row] = spec.priority_ev
    windows = []
    for i, w in enumerate(spec.upstream_outages):
        if w.start_s >= scenario.duration_s:
            raise ValueError(f"resilience.upstream_outages.{i}.start_s: {w.start_s} is past the end "
                             f"of the scenario ({scenario.duration_s} s)")
        windows.append((w.start_s // step_s, min(T, math.ceil((w.start_s + w.duration_s) / step_s))))
    rng = np.random.default_rng([scenario.seed, 3])
    cases = contingency_cases(net, n_minus_1=spec.n_minus_1, k=spec.n_minus_k,
                              n_k_samples=spec.n_minus_k_samples, upstream_windows=windows, rng=rng)
    gf: list[GridFormingStorage] = []
    if spec.grid_forming == "community_storage":
        cs = scenario.agents.community_storage
        gf = [GridFormingStorage(index=int(net.storage.index[row]), energy_mwh=cs.capacity_kwh / 1000.0,
                                 power_mw=cs.power_kw / 1000.0, soc_initial=spec.soc_initial,
                                 soc_min=spec.soc_min, efficiency=spec.efficiency)
              for row in feeder.storage_row]
    return {"net": net, "cases": cases, "profiles": profiles, "grid_forming": gf,
            "customers": customers, "priority": priority,
            "max_loading_percent": scenario.grid.max_loading_percent}


def run_resilience(scenario: Any, out_dir: Path, *, progress: bool = False) -> dict[str, float]:
    """Run the study and write ``cases.parquet``, ``steps.parquet`` and ``kpis.json``."""
    from twin.grid.resilience import run_study
    from twin.results import write_json_atomic, write_table_atomic

    study = build_study(scenario)
    bar: Any = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=study["profiles"].n_steps, unit="step", desc="resilience", file=sys.stderr)

    def tick(done: int, total: int) -> None:
        if bar is not None:
            bar.update(done - bar.n)

    try:
        result = run_study(study.pop("net"), study.pop("cases"), study.pop("profiles"), progress=tick, **study)
    finally:
        if bar is not None:
            bar.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_table_atomic(result.cases, out_dir / "cases.parquet")
    write_table_atomic(result.steps, out_dir / "steps.parquet")
    kpis = {"scenario": scenario.name, "scenario_hash": scenario.digest(), **result.kpis}
    write_json_atomic(kpis, out_dir / "kpis.json")
    return result.kpis


def _cmd_resilience(args: argparse.Namespace) -> int:
    from twin.scenario import ScenarioError, load_scenario

    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"twin: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        k = run_resilience(scenario, args.out, progress=not args.no_progress and sys.stderr.isatty())
    except ValueError as exc:
        print(f"twin: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    lines = [f"cases                {int(k['cases'])} ({int(k['n1_cases'])} N-1, {int(k['nk_cases'])} N-k, "
             f"{int(k['upstream_cases'])} upstream loss) over {int(k['n_steps'])} steps"]
    if k["n1_cases"]:
        lines.append(f"N-1 secure           {k['n1_secure_fraction']:10.1%}   worst ENS {k['n1_ens_kwh_max']:.1f} kWh")
    if k["upstream_cases"]:
        lines.append(f"upstream loss ENS    {k['upstream_ens_kwh_max']:10.1f} kWh   island survival "
                     f"{k['upstream_island_survival_min_min']:.0f} min")
    lines += [f"voltage              {k['vm_min_pu']:10.4f} .. {k['vm_max_pu']:.4f} p.u.",
              f"wall time            {k['study_wall_time_s']:10.1f} s", f"results              {args.out}"]
    print("\n".join(["", "== gridtwin resilience summary ==", *lines]))
    return EXIT_OK
