"""Benchmark: batch power flow (twin.grid.pf) against pandapower, lightsim2grid, power-grid-model.

Prints µs per power flow at B = 1, 1000, 10000 on several feeders (wall-clock medians of
several runs, all solvers timed in the same run so their ratio survives a loaded machine),
ours also as single-thread CPU time (``time.process_time``, numba on one thread: less noisy),
the ratio of the best peer's time to ours, the peers' agreement with our voltages (a check
that their figures come from converged runs), max |ΔV| of ours against pandapower runpp, and
N-1 time per contingency against lightsim2grid's ContingencyAnalysis. The last line holds
the headline figures as key=value pairs.

    .venv/bin/python bench/pf.py            # full run (a few minutes)
    .venv/bin/python bench/pf.py --quick    # B = 1 and 1000 only, fewer repeats
    .venv/bin/python bench/pf.py --quick --n1-only   # only the N-1 comparison (oberrhein half)
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "grid"))

THREADS = 2


SAMPLE_S = 0.05  # each timing sample repeats the call for at least this long


def _median_time(fn: Callable[[], Any], repeats: int, clock: Callable[[], float] = time.perf_counter) -> float:
    """Median over ``repeats`` samples of the time per call; a sample repeats short calls
    for at least ``SAMPLE_S`` (the machine is shared: one millisecond call is at the mercy
    of a neighbour's time slice). Same method for every solver."""
    fn()  # warm-up (compilation, caches)
    t = clock()
    fn()
    first = clock() - t
    inner = max(1, math.ceil(SAMPLE_S / max(first, 1e-9))) if first < SAMPLE_S else 1
    ts = []
    for _ in range(repeats):
        t = clock()
        for _ in range(inner):
            fn()
        ts.append((clock() - t) / inner)
    return float(np.median(ts))


def _interleaved(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, float]:
    """Median time per call of each solver, their samples taken in turn (ours, peer, peer,
    ours, ...): a slow spell of the shared machine then hits every solver alike instead of
    whichever ran during it. Each sample repeats the call for at least ``SAMPLE_S``."""
    inner: dict[str, int] = {}
    for name, fn in fns.items():
        fn()  # warm-up (compilation, caches)
        t = time.perf_counter()
        fn()
        first = time.perf_counter() - t
        inner[name] = max(1, math.ceil(SAMPLE_S / max(first, 1e-9))) if first < SAMPLE_S else 1
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(inner[name]):
                fn()
            samples[name].append((time.perf_counter() - t) / inner[name])
    return {name: float(np.median(v)) for name, v in samples.items()}


def _cpu_time_one_thread(fn: Callable[[], Any], repeats: int) -> float:
    """Median CPU time of fn with numba on one thread (all threads of the process count)."""
    import numba

    n = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        return _median_time(fn, repeats, time.process_time)
    finally:
        numba.set_num_threads(n)


# --------------------------------------------------------------------------- networks


def networks() -> dict[str, Any]:
    import pandapower.networks as pn
    from _pfnets import synthetic_feeder

    nets: dict[str, Any] = {
        "case33bw": pn.case33bw(),
        "cigre_mv": pn.create_cigre_network_mv(with_der="pv_wind"),
    }
    try:
        import simbench

        nets["simbench_mv"] = simbench.get_simbench_net("1-MV-rural--0-sw")
    except Exception as exc:  # pragma: no cover - optional data
        print(f"# simbench unavailable: {exc}")
    halves = pn.mv_oberrhein(separation_by_sub=True)
    nets["oberrhein_half"] = min(halves, key=lambda n: abs(len(n.bus) - 109))
    nets["radial_1000"] = synthetic_feeder(1000, n_ties=0)
    nets["meshed_1000"] = synthetic_feeder(1000, n_ties=10)
    return nets


def scenarios(net: Any, n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    f = rng.uniform(0.5, 1.3, size=(n, len(net.load)))
    g = rng.uniform(0.0, 1.0, size=(n, len(net.sgen)))
    return {
        "load_p_mw": (net.load.p_mw * net.load.scaling).to_numpy() * f,
        "load_q_mvar": (net.load.q_mvar * net.load.scaling).to_numpy() * f,
        "sgen_p_mw": (net.sgen.p_mw * net.sgen.scaling).to_numpy() * g,
    }


# --------------------------------------------------------------------------- solvers


def ours(net: Any, sc: dict[str, np.ndarray]) -> Callable[[], Any]:
    from twin.grid.pf import BatchPowerFlow

    # the compiled kernels: what "auto" runs for batches, and for single scenarios once a
    # solver has been called _AUTO_NUMBA_CALLS times (before that it avoids numba's import)
    pf = BatchPowerFlow(net, kernel="numba")
    return lambda: pf.solve(**sc)


def pandapower_runner(net: Any, sc: dict[str, np.ndarray], n_runs: int) -> Callable[[], Any]:
    import pandapower as pp

    work = copy.deepcopy(net)
    work.load["scaling"] = 1.0
    work.sgen["scaling"] = 1.0

    def run() -> None:
        for b in range(n_runs):
            work.load["p_mw"] = sc["load_p_mw"][b]
            work.load["q_mvar"] = sc["load_q_mvar"][b]
            work.sgen["p_mw"] = sc["sgen_p_mw"][b]
            pp.runpp(work, lightsim2grid=False)

    return run


def _pp_start(net: Any) -> np.ndarray:
    """Start voltages for lightsim2grid: a pandapower solution (handles trafo phase shifts)."""
    import pandapower as pp

    work = copy.deepcopy(net)
    pp.runpp(work, lightsim2grid=False)
    vm = np.nan_to_num(work.res_bus.vm_pu.to_numpy(), nan=1.0)
    va = np.deg2rad(np.nan_to_num(work.res_bus.va_degree.to_numpy()))
    return np.asarray(vm * np.exp(1j * va), dtype=np.complex128)


def _numeric_limits(net: Any) -> Any:
    """Copy of net with float limit columns (SimBench stores them as object; lightsim2grid fails)."""
    work = copy.deepcopy(net)
    for tab in ("load", "sgen", "storage", "ext_grid", "gen"):
        df = work[tab]
        for col in ("min_p_mw", "max_p_mw", "min_q_mvar", "max_q_mvar"):
            if col in df.columns and df[col].dtype == object:
                df[col] = df[col].astype(float)
    return work


def lightsim_runner(net: Any, sc: dict[str, np.ndarray]) -> Callable[[], Any]:
    from lightsim2grid.gridmodel import init_from_pandapower
    from lightsim2grid.lightsim2grid_cpp import InjectionSweepCPP

    gm = init_from_pandapower(_numeric_limits(net))
    sweep = InjectionSweepCPP(gm)
    sweep.nb_thread = THREADS
    v0 = _pp_start(net)

    def run() -> Any:
        sweep.modify_load_p(sc["load_p_mw"])
        sweep.modify_load_q(sc["load_q_mvar"])
        if len(net.sgen):
            sweep.modify_sgen_p(sc["sgen_p_mw"])
        sweep.compute(v0, 20, 1e-8)
        n_ok = int(np.sum(sweep.converged_mask()))
        if n_ok != sc["load_p_mw"].shape[0]:
            raise RuntimeError(f"only {n_ok} of {sc['load_p_mw'].shape[0]} power flows converged")
        return sweep.get_voltages()

    return run


def pgm_runner(net: Any, sc: dict[str, np.ndarray]) -> Callable[[], Any]:
    from power_grid_model import (
        ComponentType,
        DatasetType,
        LoadGenType,
        PowerGridModel,
        initialize_array,
    )

    if len(net.trafo) and (net.trafo.tap_pos.fillna(0) != net.trafo.tap_neutral.fillna(0)).any():
        pass  # taps are approximated below (ratio folded into u1)
    bus_ids = {int(b): i for i, b in enumerate(net.bus.index)}
    nid = lambda b: bus_ids[int(b)]  # noqa: E731
    nb = len(net.bus)
    node = initialize_array(DatasetType.input, ComponentType.node, nb)
    node["id"] = np.arange(nb)
    node["u_rated"] = net.bus.vn_kv.to_numpy() * 1e3
    next_id = nb
    line_df = net.line
    line = initialize_array(DatasetType.input, ComponentType.line, len(line_df))
    line["id"] = np.arange(next_id, next_id + len(line_df))
    next_id += len(line_df)
    line["from_node"] = [nid(b) for b in line_df.from_bus]
    line["to_node"] = [nid(b) for b in line_df.to_bus]
    on = line_df.in_service.to_numpy().astype(np.int8)
    if len(net.switch):
        open_l = net.switch[(net.switch.et == "l") & ~net.switch.closed.astype(bool)].element
        on[line_df.index.get_indexer(open_l)] = 0
    line["from_status"] = on
    line["to_status"] = on
    ln = line_df.length_km / line_df.parallel
    line["r1"] = line_df.r_ohm_per_km * ln
    line["x1"] = line_df.x_ohm_per_km * ln
    line["c1"] = line_df.c_nf_per_km * 1e-9 * line_df.length_km * line_df.parallel
    line["tan1"] = 0.0
    line["i_n"] = line_df.max_i_ka * 1e3
    tr_df = net.trafo
    tr = initialize_array(DatasetType.input, ComponentType.transformer, len(tr_df))
    tr["id"] = np.arange(next_id, next_id + len(tr_df))
    next_id += len(tr_df)
    tr["from_node"] = [nid(b) for b in tr_df.hv_bus]
    tr["to_node"] = [nid(b) for b in tr_df.lv_bus]
    tr["from_status"] = tr_df.in_service.astype(np.int8)
    tr["to_status"] = tr_df.in_service.astype(np.int8)
    tr["u1"] = tr_df.vn_hv_kv * 1e3
    tr["u2"] = tr_df.vn_lv_kv * 1e3
    tr["sn"] = tr_df.sn_mva * 1e6
    tr["uk"] = tr_df.vk_percent / 100
    tr["pk"] = tr_df.vkr_percent / 100 * tr_df.sn_mva * 1e6
    tr["i0"] = tr_df.i0_percent / 100
    tr["p0"] = tr_df.pfe_kw * 1e3
    tr["winding_from"] = 1
    tr["winding_to"] = 2
    tr["clock"] = (np.round(tr_df.shift_degree / 30).astype(int) % 12).to_numpy()
    tr["tap_side"] = 0
    tr["tap_pos"] = 0
    tr["tap_min"] = 0
    tr["tap_max"] = 0
    tr["tap_nom"] = 0
    tr["tap_size"] = 0
    sw_b = net.switch[(net.switch.et == "b") & net.switch.closed.astype(bool)] if len(net.switch) else []
    link = initialize_array(DatasetType.input, ComponentType.link, len(sw_b))
    if len(sw_b):
        link["id"] = np.arange(next_id, next_id + len(sw_b))
        next_id += len(sw_b)
        link["from_node"] = [nid(b) for b in sw_b.bus]
        link["to_node"] = [nid(b) for b in sw_b.element]
        link["from_status"] = 1
        link["to_status"] = 1
    n_load, n_sgen = len(net.load), len(net.sgen)
    load = initialize_array(DatasetType.input, ComponentType.sym_load, n_load)
    load["id"] = np.arange(next_id, next_id + n_load)
    next_id += n_load
    load["node"] = [nid(b) for b in net.load.bus]
    load["status"] = 1
    load["type"] = LoadGenType.const_power
    load["p_specified"] = net.load.p_mw * 1e6
    load["q_specified"] = net.load.q_mvar * 1e6
    gen = initialize_array(DatasetType.input, ComponentType.sym_gen, n_sgen)
    gen["id"] = np.arange(next_id, next_id + n_sgen)
    next_id += n_sgen
    gen["node"] = [nid(b) for b in net.sgen.bus]
    gen["status"] = 1
    gen["type"] = LoadGenType.const_power
    gen["p_specified"] = net.sgen.p_mw * 1e6
    gen["q_specified"] = 0.0
    src = initialize_array(DatasetType.input, ComponentType.source, len(net.ext_grid))
    src["id"] = np.arange(next_id, next_id + len(net.ext_grid))
    src["node"] = [nid(b) for b in net.ext_grid.bus]
    src["status"] = 1
    src["u_ref"] = net.ext_grid.vm_pu
    model = PowerGridModel(
        {
            ComponentType.node: node,
            ComponentType.line: line,
            ComponentType.transformer: tr,
            ComponentType.link: link,
            ComponentType.sym_load: load,
            ComponentType.sym_gen: gen,
            ComponentType.source: src,
        },
        system_frequency=float(net.f_hz),
    )
    n_b = sc["load_p_mw"].shape[0]
    upd_load = initialize_array(DatasetType.update, ComponentType.sym_load, (n_b, n_load))
    upd_load["id"] = load["id"]
    upd_load["p_specified"] = sc["load_p_mw"] * 1e6
    upd_load["q_specified"] = sc["load_q_mvar"] * 1e6
    upd_gen = initialize_array(DatasetType.update, ComponentType.sym_gen, (n_b, n_sgen))
    upd_gen["id"] = gen["id"]
    upd_gen["p_specified"] = sc["sgen_p_mw"] * 1e6
    update = {ComponentType.sym_load: upd_load, ComponentType.sym_gen: upd_gen}

    def run() -> Any:
        # a scenario that does not converge within max_iterations raises (batch error)
        out = model.calculate_power_flow(
            update_data=update, threading=THREADS, error_tolerance=1e-8, max_iterations=20
        )
        return out[ComponentType.node]["u_pu"]

    return run


def peer_dv(res: Any, vm: np.ndarray) -> float:
    """Largest |Δvm| of a peer's (B, n_bus) magnitudes against ours (convergence check)."""
    return float(np.max(np.abs(np.abs(np.asarray(vm)) - res.vm_pu)))


def max_dv_vs_pandapower(net: Any, sc: dict[str, np.ndarray], n: int) -> float:
    import pandapower as pp

    from twin.grid.pf import BatchPowerFlow

    res = BatchPowerFlow(net).solve(**{k: v[:n] for k, v in sc.items()}, tol=1e-10)
    work = copy.deepcopy(net)
    work.load["scaling"] = 1.0
    work.sgen["scaling"] = 1.0
    worst = 0.0
    for b in range(n):
        work.load["p_mw"] = sc["load_p_mw"][b]
        work.load["q_mvar"] = sc["load_q_mvar"][b]
        work.sgen["p_mw"] = sc["sgen_p_mw"][b]
        pp.runpp(work, lightsim2grid=False, tolerance_mva=1e-10)
        vm = np.nan_to_num(work.res_bus.vm_pu.to_numpy())
        va = np.deg2rad(np.nan_to_num(work.res_bus.va_degree.to_numpy()))
        ours_v = res.vm_pu[b] * np.exp(1j * np.deg2rad(res.va_degree[b]))
        worst = max(worst, float(np.max(np.abs(ours_v - vm * np.exp(1j * va)))))
    return worst


def n1_bench(net: Any, repeats: int = 7) -> tuple[float, float]:
    """µs per N-1 contingency (every line) for ours and lightsim2grid ContingencyAnalysis,
    sampled in turn (see ``_interleaved``)."""
    from twin.grid.pf import BatchPowerFlow

    n_line = len(net.line)
    mask = np.ones((n_line, n_line), dtype=bool)
    np.fill_diagonal(mask, False)
    pf = BatchPowerFlow(net)
    runners: dict[str, Callable[[], Any]] = {
        "ours": lambda: (pf._cache.clear(), pf.solve(line_in_service=mask)),
    }
    try:
        from lightsim2grid.gridmodel import init_from_pandapower
        from lightsim2grid.lightsim2grid_cpp import ContingencyAnalysisCPP

        gm = init_from_pandapower(_numeric_limits(net))
        ca = ContingencyAnalysisCPP(gm)
        ca.nb_thread = THREADS
        ca.add_all_n1()
        v0 = _pp_start(net)
        ca.compute(v0, 20, 1e-8)
        runners["lightsim2grid"] = lambda: ca.compute(v0, 20, 1e-8)
    except Exception as exc:
        print(f"#   lightsim2grid N-1 failed: {type(exc).__name__}: {exc}")
    t = _interleaved(runners, repeats)
    return t["ours"] / n_line * 1e6, t.get("lightsim2grid", float("nan")) / n_line * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="B = 1 and 1000 only, fewer repeats")
    ap.add_argument("--n1-only", action="store_true", help="only the N-1 comparison")
    ap.add_argument("--nets", default="", help="comma-separated subset of the networks (default: all)")
    ap.add_argument("--threading", default="omp", choices=("omp", "workqueue"),
                    help="numba threading layer for our kernels (default omp: a dedicated machine)")
    args = ap.parse_args()
    os.environ.setdefault("NUMBA_NUM_THREADS", str(THREADS))
    # A benchmark machine is dedicated: numba's OpenMP layer (workers spin briefly between
    # parallel regions, GOMP_SPINCOUNT 30000 set by twin.runtime.configure) instead of the
    # twin's default 'workqueue', whose sleeping workers join short kernels late on a VM
    # (see twin/runtime.py for both figures). --threading workqueue measures the default.
    from twin.runtime import configure

    configure(threading=args.threading)
    warnings.filterwarnings("ignore")
    sizes = (1, 1000) if args.quick else (1, 1000, 10000)
    repeats = 7 if args.quick else 11
    import numba

    numba.set_num_threads(min(THREADS, numba.config.NUMBA_NUM_THREADS))
    headline: dict[str, str] = {}
    print(
        f"# µs per power flow, wall-clock median of {repeats} samples (>= {SAMPLE_S * 1000:.0f} ms each, solvers"
        f" sampled in turn), {THREADS} threads, numba layer {os.environ['NUMBA_THREADING_LAYER']}; ours_cpu1:"
        f" single-thread CPU µs; a pandapower sample is min(B, 3) runs; load average {os.getloadavg()[0]:.1f}"
    )
    print(
        f"{'network':16s} {'B':>6s} {'ours':>9s} {'ours_cpu1':>9s} {'pandapower':>11s} "
        f"{'lightsim2grid':>13s} {'pgm':>9s} {'best/ours':>9s}"
    )
    nets = networks()
    chosen = [n for n in args.nets.split(",") if n]
    unknown = sorted(set(chosen) - set(nets))
    if unknown:
        ap.error(f"--nets: unknown network(s) {unknown}; known: {sorted(nets)}")
    for name, net in nets.items() if not args.n1_only else ():
        if chosen and name not in chosen:
            continue
        big = scenarios(net, max(sizes))
        for n_b in sizes:
            sc = {k: v[:n_b] for k, v in big.items()}
            t: dict[str, float] = {}
            run_ours = ours(net, sc)
            res = run_ours()
            if not res.converged.all():
                print(f"#   ours on {name}: {int((~res.converged).sum())} scenarios not converged")
            runners: dict[str, Callable[[], Any]] = {"ours": run_ours}
            checks = []
            for peer, make in (("lightsim2grid", lightsim_runner), ("pgm", pgm_runner)):
                try:
                    run_peer = make(net, sc)
                    checks.append(f"{peer} {peer_dv(res, run_peer()):.0e}")
                    runners[peer] = run_peer
                except Exception as exc:
                    print(f"#   {peer} on {name}: {type(exc).__name__}: {str(exc)[:120]}")
                    t[peer] = float("nan")
            # pandapower sampled in the same turns (a sample: min(B, 3) runs), so a slow spell
            # of the shared machine hits it like the others instead of skewing the ratio
            n_pp = min(n_b, 3)
            runners["pandapower"] = pandapower_runner(net, sc, n_pp)
            per_call = {"pandapower": n_pp}
            t |= {k: v / per_call.get(k, n_b) for k, v in _interleaved(runners, repeats).items()}
            t_cpu1 = _cpu_time_one_thread(run_ours, repeats) / n_b
            peers = [t[p] for p in ("lightsim2grid", "pgm") if np.isfinite(t[p])]
            best = min(peers) if peers else float("nan")
            ratio = best / t["ours"]
            us = {k: v * 1e6 for k, v in t.items()}
            print(
                f"{name:16s} {n_b:6d} {us['ours']:9.2f} {t_cpu1 * 1e6:9.2f} {us['pandapower']:11.1f} "
                f"{us['lightsim2grid']:13.2f} {us['pgm']:9.2f} {ratio:9.2f}   "
                f"it={res.iterations.mean():.1f} peer max|dvm| vs ours: {', '.join(checks)}"
            )
            if n_b == 1000:
                headline[f"{name}_us"] = f"{us['ours']:.2f}"
                headline[f"{name}_cpu1_us"] = f"{t_cpu1 * 1e6:.2f}"
                headline[f"{name}_x_best_peer"] = f"{ratio:.2f}"
                headline[f"{name}_x_pandapower"] = f"{t['pandapower'] / t['ours']:.0f}"
        dv = max_dv_vs_pandapower(net, big, 3)
        print(f"{name:16s} max|dV| vs pandapower = {dv:.1e} pu")
        headline[f"{name}_max_dv_pu"] = f"{dv:.1e}"
    n1_net = nets["radial_1000"] if not args.quick else nets["oberrhein_half"]
    t_o, t_l = n1_bench(n1_net, repeats)
    print(f"N-1 ({len(n1_net.line)} line outages): ours {t_o:.1f} µs/case, lightsim2grid {t_l:.1f} µs/case")
    headline["n1_us_per_case"] = f"{t_o:.1f}"
    headline["n1_x_lightsim2grid"] = f"{t_l / t_o:.2f}"
    print(" ".join(f"{k}={v}" for k, v in headline.items()))


if __name__ == "__main__":
    main()
