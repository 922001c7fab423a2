"""``twin hosting SCENARIO --out DIR``: PV hosting capacity of a scenario's feeder.

Inputs from :func:`twin.grid.feeders.build_feeder` (the same net and profiles as ``twin run``),
over the scenario's horizon at the profile resolution (the market interval): household and
background loads from their profiles; the study's own PV replaces the feeder's (a candidate
PV at every household bus, sized uniformly in ``agents.households.pv.kwp_min..kwp_max``,
seeded; the shape is the mean of the feeder's PV profiles). Control modes: ``none``,
``volt_var`` and ``volt_var_watt`` (the scenario's ``pv.der_functions`` curves when it sets
them, else IEEE 1547 Category B). See :mod:`twin.grid.hosting` for the method.

Writes ``lanes.parquet`` (one row per mode x level x sample), ``feeder_hosting.parquet``
(per mode and sample), ``bus_hosting.parquet`` (per mode and bus) and ``kpis.json``.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["add_parser", "build_inputs", "ev_profiles", "run_hosting_study", "write_hosting_tables"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def add_parser(sub: Any) -> None:
    h = sub.add_parser("hosting", help="PV hosting capacity of a scenario's feeder (Monte Carlo placements)")
    h.add_argument("scenario", type=Path, help="scenario YAML file")
    h.add_argument("--out", type=Path, required=True, help="folder for the Parquet tables and kpis.json")
    h.add_argument("--samples", type=int, default=20, help="Monte Carlo placements per level (default 20)")
    h.add_argument("--levels", type=int, default=10, help="penetration levels 1/n .. 1 of the household buses")
    h.add_argument("--controls", default=None,
                   help="comma-separated modes among none, volt_var, volt_var_watt (default: all three for "
                        "PV, none for EV)")
    h.add_argument("--bus-sizes-kw", default="5,10,20,30,50,75,100",
                   help="PV sizes tried alone at each bus for the per-bus hosting capacity ('' for none)")
    h.add_argument("--der", choices=("pv", "ev"), default="pv",
                   help="what is placed: rooftop PV (default) or home EV chargers (agents.evs: charger_kw, "
                        "arrival and energy-need distributions)")
    h.add_argument("--seed", type=int, default=None, help="placement seed (default: the scenario's)")
    h.add_argument("--no-progress", action="store_true", help="no progress bar")
    h.set_defaults(handler=_cmd_hosting)


def ev_profiles(scenario: Any, *, n_cand: int, n_steps: int, interval_s: int) -> np.ndarray:
    """(T, n_cand) draw of one home charger per candidate bus, per unit of its rating: every
    day a session (seeded) arrives at ``N(arrival_hour_mean, arrival_hour_std)`` and charges
    at full power until ``N(energy_need_kwh_mean, _std)`` (at least 1 kWh) is delivered."""
    ev = scenario.agents.evs
    rng = np.random.default_rng([scenario.seed, 18, 2])
    dt_h = interval_s / 3600.0
    start_h = scenario.start.hour + scenario.start.minute / 60.0
    t0 = start_h + np.arange(n_steps) * dt_h  # hours since midnight of the first day, per step start
    out = np.zeros((n_steps, n_cand))
    n_days = int(np.ceil((start_h + n_steps * dt_h) / 24.0)) + 1
    for d in range(-1, n_days):
        arrive = 24.0 * d + rng.normal(ev.arrival_hour_mean, ev.arrival_hour_std, size=n_cand)
        need = np.maximum(rng.normal(ev.energy_need_kwh_mean, ev.energy_need_kwh_std, size=n_cand), 1.0)
        end = arrive + need / ev.charger_kw
        overlap = np.minimum(t0[:, None] + dt_h, end[None]) - np.maximum(t0[:, None], arrive[None])
        out += np.clip(overlap, 0.0, dt_h) / dt_h
    return np.asarray(np.minimum(out, 1.0))


def build_inputs(scenario: Any, *, der: str = "pv") -> tuple[Any, Any]:
    """(HostingInputs, pv DerFunctionsSpec or None) of ``scenario``; ``der="ev"`` places home
    chargers (``agents.evs.charger_kw``) on the household buses instead of PV."""
    from twin.grid.feeders import build_feeder
    from twin.grid.hosting import HostingInputs

    feeder = build_feeder(scenario)
    net = copy.deepcopy(feeder.net)
    T = feeder.n_intervals
    load_p = np.tile((net.load.p_mw * net.load.scaling).to_numpy(), (T, 1))
    load_q = np.tile((net.load.q_mvar * net.load.scaling).to_numpy(), (T, 1))
    load_p[:, feeder.household_load_row] = feeder.household_load_p_mw.T
    load_q[:, feeder.household_load_row] = feeder.household_load_q_mvar.T
    load_p[:, feeder.background_load_row] = feeder.background_load_p_mw.T
    load_q[:, feeder.background_load_row] = feeder.background_load_q_mvar.T
    load_p[:, feeder.ev_load_row] = 0.0
    load_q[:, feeder.ev_load_row] = 0.0
    has = feeder.household_sgen_row >= 0
    pv = feeder.household_pv_pu[has]
    shape = pv.mean(axis=0) if pv.size else np.zeros(T)
    if shape.max() > 0:
        shape = shape / shape.max()
    buses = np.unique(feeder.household_bus)
    g = scenario.grid
    if der == "ev":
        from twin.grid.hosting import HostingInputs as _Inputs

        first_row = {int(b): int(r) for b, r in zip(feeder.household_bus[::-1], feeder.household_load_row[::-1],
                                                     strict=True)}
        prof = ev_profiles(scenario, n_cand=buses.size, n_steps=T, interval_s=feeder.interval_s)
        inp_ev = _Inputs(net=net, load_p_mw=load_p, load_q_mvar=load_q, pv_pu=prof,
                         sgen_rows=np.array([first_row[int(b)] for b in buses], dtype=np.int64),
                         pv_kw=np.full(buses.size, float(scenario.agents.evs.charger_kw)),
                         bus_label=buses.astype(np.int64), vm_min_pu=g.vm_min_pu, vm_max_pu=g.vm_max_pu,
                         max_loading_percent=g.max_loading_percent, kind="ev")
        return inp_ev, None
    import pandapower as pp

    rows_before = len(net.sgen)
    pp.create_sgens(net, buses=buses, p_mw=0.0, q_mvar=0.0, name=[f"hosting PV {b}" for b in buses], type="PV")
    spec = scenario.agents.households.pv
    rng = np.random.default_rng([scenario.seed, 18])
    kw = np.round(rng.uniform(spec.kwp_min, spec.kwp_max, size=buses.size), 1)
    inp = HostingInputs(net=net, load_p_mw=load_p, load_q_mvar=load_q, pv_pu=shape,
                        sgen_rows=np.arange(rows_before, rows_before + buses.size, dtype=np.int64),
                        pv_kw=kw, bus_label=buses.astype(np.int64), vm_min_pu=g.vm_min_pu, vm_max_pu=g.vm_max_pu,
                        max_loading_percent=g.max_loading_percent)
    return inp, spec.der_functions


def control_modes(names: list[str], spec: Any) -> dict[str, Any]:
    """Mode name -> DerFunctions for a 1 MW inverter (None: no functions)."""
    from twin.grid.der_spec import DerFunctionsSpec, VoltVarSpec, VoltWattSpec

    base = spec if spec is not None else DerFunctionsSpec(volt_var=VoltVarSpec())
    out: dict[str, Any] = {}
    for n in names:
        if n == "none":
            out[n] = None
        elif n == "volt_var":
            vv = base.volt_var or VoltVarSpec()
            out[n] = base.model_copy(update={"volt_var": vv, "watt_var": None, "constant_pf": None,
                                             "constant_var": None, "volt_watt": None, "freq_watt": None}
                                     ).functions(p_rated_mw=1.0, can_absorb=False)
        elif n == "volt_var_watt":
            vv = base.volt_var or VoltVarSpec()
            out[n] = base.model_copy(update={"volt_var": vv, "watt_var": None, "constant_pf": None,
                                             "constant_var": None, "volt_watt": base.volt_watt or VoltWattSpec(),
                                             "freq_watt": None}).functions(p_rated_mw=1.0, can_absorb=False)
        else:
            raise ValueError(f"--controls: unknown mode {n!r} (none, volt_var, volt_var_watt)")
    return out


def run_hosting_study(scenario: Any, *, out_dir: Path, samples: int, levels: int, modes: list[str],
                      bus_sizes_kw: list[float], seed: int | None, progress: bool,
                      der: str = "pv") -> dict[str, float]:
    """Run the study and write its tables; returns the KPIs."""
    from twin.grid.hosting import levels_default, run_hosting
    from twin.topology import write_topology

    inp, spec = build_inputs(scenario, der=der)
    if der == "ev" and modes != ["none"]:
        raise ValueError(f"--controls: EV chargers run no inverter functions; use --controls none (got {','.join(modes)})")
    controls = control_modes(modes, spec)
    bar: Any = None
    cb = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(controls) * inp.pv_pu.shape[0], unit="step", desc=f"hosting ({der})", file=sys.stderr)

        def cb(done: int, total: int) -> None:
            bar.n = done
            bar.refresh()

    try:
        res = run_hosting(inp, levels=levels_default(levels), samples=samples,
                          seed=scenario.seed if seed is None else seed, controls=controls,
                          bus_sizes_kw=bus_sizes_kw, progress=cb)
    finally:
        if bar is not None:
            bar.close()
    kpis = write_hosting_tables(res, out_dir=out_dir, der=der, steps=int(inp.pv_pu.shape[0]), samples=samples)
    write_topology(inp.net, out_dir)  # the dashboard's map
    return kpis


def write_hosting_tables(res: Any, *, out_dir: Path, der: str, steps: int, samples: int) -> dict[str, float]:
    """Write ``lanes``, ``feeder_hosting``, ``bus_hosting`` and ``kpis.json`` of a
    :class:`twin.grid.hosting.HostingResult` into ``out_dir``; returns the KPIs."""
    import pyarrow as pa

    from twin.grid.hosting import limit_name
    from twin.results import write_json_atomic, write_table_atomic

    out_dir.mkdir(parents=True, exist_ok=True)

    def table(parts: dict[str, dict[str, np.ndarray]], name: str) -> None:
        cols: dict[str, list[Any]] = {}
        for mode, c in parts.items():
            n = len(next(iter(c.values())))
            cols.setdefault("der", []).extend([der] * n)
            cols.setdefault("mode", []).extend([mode] * n)
            for k, v in c.items():
                if k in ("violation", "limiting"):
                    cols.setdefault("limiting", []).extend(limit_name(int(x)) for x in v)
                else:
                    cols.setdefault(k, []).extend(np.asarray(v).tolist())
        write_table_atomic(pa.table(cols), out_dir / f"{name}.parquet")

    table(res.lanes, "lanes")
    table(res.feeder, "feeder_hosting")
    if res.bus:
        table(res.bus, "bus_hosting")
    kpis: dict[str, float] = {"ev": float(der == "ev"), "power_flows": float(res.power_flows), "wall_s": res.wall_s,
                              "pf_per_s": res.power_flows / max(res.wall_s, 1e-9),
                              "steps": float(steps), "samples": float(samples)}
    for mode, f in res.feeder.items():
        hc = f["hosting_kw"]
        kpis[f"hosting_kw_median_{mode}"] = float(np.median(hc))
        kpis[f"hosting_kw_p10_{mode}"] = float(np.percentile(hc, 10))
        for code in range(4):
            kpis[f"hosting_limit_share_{limit_name(code)}_{mode}"] = float(np.mean(f["limiting"] == code))
        if mode in res.bus:
            kpis[f"bus_hosting_kw_median_{mode}"] = float(np.median(res.bus[mode]["hosting_kw"]))
    write_json_atomic(kpis, out_dir / "kpis.json")
    return kpis


def _cmd_hosting(args: argparse.Namespace) -> int:
    from twin.scenario import ScenarioError, load_scenario

    try:
        scenario = load_scenario(args.scenario)
    except ScenarioError as exc:
        print(f"twin: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        sizes = [float(x) for x in args.bus_sizes_kw.split(",") if x.strip()]
        controls = args.controls if args.controls is not None else (
            "none" if args.der == "ev" else "none,volt_var,volt_var_watt")
        modes = [m.strip() for m in controls.split(",") if m.strip()]
        if args.samples < 1 or args.levels < 1:
            raise ValueError("--samples and --levels must be >= 1")
        kpis = run_hosting_study(scenario, out_dir=args.out, samples=args.samples, levels=args.levels,
                                 modes=modes, bus_sizes_kw=sizes, seed=args.seed, der=args.der,
                                 progress=not args.no_progress and sys.stderr.isatty())
    except ValueError as exc:
        print(f"twin: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    for k in sorted(kpis):
        if k.startswith(("hosting_kw_median", "bus_hosting_kw_median")) or k in ("power_flows", "wall_s", "pf_per_s"):
            print(f"{k:<40} {kpis[k]:14.2f}")
    print(f"results{'':<33} {args.out}")
    return EXIT_OK
