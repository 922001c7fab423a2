"""Benchmark: a year of quasi-static time series for 100 PV placements with volt-var, ours vs OpenDSS.

Feeder: SimBench ``1-LV-rural1--0-sw`` (its own load profiles, 2016 at 15 min; the first
35,040 steps). A placement puts PV (5-30 kWp, seeded) on a random 30-100 % of the load buses,
all with IEEE 1547 Category B volt-var (Q in pu of the kVA rating = 1.1 x kWp, reactive
priority). Ours: :class:`twin.grid.controlled_pf.ControlledPowerFlow` with all placements of
a step in one batch (lanes = placements x steps, chunked), steps without sun skipped (every
placement is then the base case). OpenDSS: the same circuit in DSS-Python, ``mode=yearly``
with its own ``InvControl`` (VOLTVAR, same curve) on ``--dss-placements`` placements; its time
per placement-year is compared with ours (ours: wall time / 100).

    .venv/bin/python bench/hosting.py --quick   # 4 weeks (2,688 steps), OpenDSS on 1 placement,
                                                # 3 interleaved runs of both sides (medians)
    .venv/bin/python bench/hosting.py           # the full year, OpenDSS on 2 placements
    .venv/bin/python bench/hosting.py --snapshot-only   # only the snapshot / plain flow ratios
                                                        # (wall, and CPU time of all threads: *_cpu_*)

The last line holds the headline figures as key=value pairs.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CODE = "1-LV-rural1--0-sw"
STEPS_YEAR = 35_040


def feeder(steps: int) -> dict[str, Any]:
    """Net (PV candidate sgens appended), load series (T, n_load), PV shape (T,)."""
    import pandapower as pp
    import simbench as sb

    net = sb.get_simbench_net(CODE)
    prof = net.profiles
    p = np.stack([prof["load"][f"{t}_pload"].to_numpy(float)[:steps] for t in net.load.profile], axis=1)
    q = np.stack([prof["load"][f"{t}_qload"].to_numpy(float)[:steps] for t in net.load.profile], axis=1)
    load_p = p * net.load.p_mw.to_numpy()[None, :]
    load_q = q * net.load.q_mvar.to_numpy()[None, :]
    pv = np.clip(prof["renewables"]["PV5"].to_numpy(float)[:steps], 0.0, None)
    net.sgen["in_service"] = False  # the study's PV replaces the feeder's
    buses = np.unique(net.load.bus.to_numpy())
    first = len(net.sgen)
    pp.create_sgens(net, buses=buses, p_mw=0.0, q_mvar=0.0)
    del net["profiles"]
    return {"net": net, "load_p": load_p, "load_q": load_q, "pv": pv, "buses": buses,
            "rows": np.arange(first, first + buses.size)}


def placements(n_bus: int, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(n, n_bus) on-mask and kWp of each placement."""
    rng = np.random.default_rng(seed)
    on = np.zeros((n, n_bus), dtype=bool)
    for i in range(n):
        k = max(1, round(rng.uniform(0.3, 1.0) * n_bus))
        on[i, rng.choice(n_bus, size=k, replace=False)] = True
    kw = np.round(rng.uniform(5.0, 30.0, size=(n, n_bus)), 1)
    return on, np.where(on, kw, 0.0)


def run_ours(f: dict[str, Any], on: np.ndarray, kw: np.ndarray, *, chunk: int = 40_000) -> dict[str, float]:
    from twin.grid.controlled_pf import ControlledPowerFlow, DerDevice
    from twin.grid.der_functions import DerFunctions, VoltVar
    from twin.grid.pf import BatchPowerFlow

    net = f["net"]
    solver = BatchPowerFlow(net, kernel="numba")
    fn = DerFunctions(s_rated_mva=1.1, p_rated_mw=1.0, reactive=VoltVar.category("B"))
    cpf = ControlledPowerFlow(solver, devices=[DerDevice("sgen", int(r), fn) for r in f["rows"]])
    n_sgen = len(net.sgen)
    n_pl = on.shape[0]
    pv = f["pv"]
    day = np.flatnonzero(pv > 1e-6)
    size = np.where(kw > 0, kw / 1000.0, 1.0)
    per = max(1, chunk // n_pl)
    # warm-up (numba load, sensitivity): one batch as large as a chunk
    w = np.tile(kw / 1000.0 * 0.5, (per, 1))
    cpf.solve(der_p_avail_mw=w, der_scale=np.tile(size, (per, 1)), der_in_service=np.tile(on, (per, 1)),
              load_p_mw=f["load_p"][:1], load_q_mvar=f["load_q"][:1], sgen_p_mw=np.zeros((1, n_sgen)))
    t0 = time.perf_counter()
    flows = 0
    vmax = np.zeros(n_pl)
    conv_all = True
    night = np.setdiff1d(np.arange(pv.size), day)
    if night.size:  # night steps: the base case once per step (no PV anywhere)
        r0 = solver.solve(load_p_mw=f["load_p"][night], load_q_mvar=f["load_q"][night],
                          sgen_p_mw=np.zeros((1, n_sgen)), branch_flows=False)
        flows += night.size
        vmax = np.maximum(vmax, np.nanmax(r0.vm_pu))
    for c0 in range(0, day.size, per):
        ts = day[c0:c0 + per]
        t_idx = np.repeat(ts, n_pl)
        res = cpf.solve(der_p_avail_mw=(pv[ts][:, None, None] * (kw / 1000.0)[None]).reshape(-1, on.shape[1]),
                        der_scale=np.tile(size, (ts.size, 1)), der_in_service=np.tile(on, (ts.size, 1)),
                        load_p_mw=f["load_p"][t_idx], load_q_mvar=f["load_q"][t_idx],
                        sgen_p_mw=np.zeros((1, n_sgen)), sgen_q_mvar=np.zeros((1, n_sgen)),
                        tol_pu=1e-3, branch_flows=False)
        flows += int(res.outer_iterations.sum())
        conv_all &= bool(res.converged.all())
        vmax = np.maximum(vmax, np.nanmax(res.pf.vm_pu.reshape(ts.size, n_pl, -1), axis=(0, 2)))
    wall = time.perf_counter() - t0
    return {"wall_s": wall, "flows": float(flows), "converged": float(conv_all), "vmax": vmax,
            "day_steps": float(day.size)}


def snapshot_solvers(f: dict[str, Any]) -> tuple[Any, Any, int, int]:
    """The snapshot comparison's plain solver (numba), its controlled flow (volt-var,
    category B, on every PV row), the noon step and the sgen count."""
    from twin.grid.controlled_pf import ControlledPowerFlow, DerDevice
    from twin.grid.der_functions import DerFunctions, VoltVar
    from twin.grid.pf import BatchPowerFlow

    net = f["net"]
    solver = BatchPowerFlow(net, kernel="numba")
    fn = DerFunctions(s_rated_mva=1.1, p_rated_mw=1.0, reactive=VoltVar.category("B"))
    cpf = ControlledPowerFlow(solver, devices=[DerDevice("sgen", int(r), fn) for r in f["rows"]])
    return solver, cpf, int(np.argmax(f["pv"])), len(net.sgen)


def snapshot_cost(f: dict[str, Any], on: np.ndarray, kw: np.ndarray) -> dict[str, float]:
    """Median time of a controlled snapshot batch over a plain one (same injections, same
    solver, both on numba: the plain flow at its fastest), at B = 1 (one placement at noon)
    and B = 100 (all placements at noon), timed interleaved."""
    solver, cpf, t, n_sgen = snapshot_solvers(f)
    out = {}
    for b in (1, on.shape[0]):
        avail = f["pv"][t] * kw[:b] / 1000.0
        size = np.where(kw[:b] > 0, kw[:b] / 1000.0, 1.0)
        sg = np.zeros((b, n_sgen))
        sg[:, f["rows"]] = avail

        def ctl(avail: np.ndarray = avail, size: np.ndarray = size, b: int = b) -> Any:
            return cpf.solve(der_p_avail_mw=avail, der_scale=size, der_in_service=on[:b],
                             load_p_mw=f["load_p"][t], load_q_mvar=f["load_q"][t], sgen_p_mw=np.zeros((1, n_sgen)))

        def plain(sg: np.ndarray = sg) -> Any:
            return solver.solve(load_p_mw=f["load_p"][t], load_q_mvar=f["load_q"][t], sgen_p_mw=sg)

        tc, tp, cc, cp = [], [], [], []
        for _ in range(5):
            ctl(), plain()
        for _ in range(31):
            c0, t0 = time.process_time(), time.perf_counter()
            r = ctl()
            tc.append(time.perf_counter() - t0)
            cc.append(time.process_time() - c0)
            c0, t0 = time.process_time(), time.perf_counter()
            plain()
            tp.append(time.perf_counter() - t0)
            cp.append(time.process_time() - c0)
        out[f"b{b}"] = float(np.median(tc) / np.median(tp))
        # CPU time of the process (all threads): steadier than wall time on a loaded machine,
        # where a parallel kernel waits for its slowest thread
        out[f"b{b}_cpu"] = float(np.median(cc) / np.median(cp))
        out[f"b{b}_outer"] = float(r.outer_iterations.mean())
        # a time series of snapshots (the run's case): 16 consecutive steps from noon, each
        # warm-started from the previous step's solution (ControlledPowerFlow.solve(start=...))
        steps = range(t, min(t + 16, f["pv"].size))
        tw, tp2, outer = [], [], []
        for _rep in range(3):
            prev = None
            for s in steps:
                av = f["pv"][s] * kw[:b] / 1000.0
                sg2 = np.zeros((b, n_sgen))
                sg2[:, f["rows"]] = av
                t0 = time.perf_counter()
                r = cpf.solve(der_p_avail_mw=av, der_scale=size, der_in_service=on[:b], load_p_mw=f["load_p"][s],
                              load_q_mvar=f["load_q"][s], sgen_p_mw=np.zeros((1, n_sgen)), start=prev)
                tw.append(time.perf_counter() - t0)
                prev = (r.der_p_mw, r.der_q_mvar, r.der_vm_pu)
                outer.append(float(r.outer_iterations.mean()))
                t0 = time.perf_counter()
                solver.solve(load_p_mw=f["load_p"][s], load_q_mvar=f["load_q"][s], sgen_p_mw=sg2)
                tp2.append(time.perf_counter() - t0)
        out[f"series_b{b}"] = float(np.median(tw) / np.median(tp2))
        out[f"series_b{b}_outer"] = float(np.mean(outer))
    return out


def run_opendss(f: dict[str, Any], on: np.ndarray, kw: np.ndarray, steps: int) -> dict[str, Any]:
    """One placement-year (``steps``) per placement in DSS-Python yearly mode; wall times."""
    from dss import DSS as dss_engine

    net = f["net"]
    dss = dss_engine
    walls, vmaxs = [], []
    for i in range(on.shape[0]):
        dss.ClearAll()
        tx = dss.Text
        eg = net.ext_grid.iloc[0]
        tr = net.trafo.iloc[0]
        tx.Command = (f"new circuit.lv basekv={net.bus.vn_kv.at[eg.bus]} pu={eg.vm_pu} phases=3 "
                      f"bus1=b{eg.bus} MVAsc3=1e6 MVAsc1=1e6")
        xhl = float(np.sqrt(tr.vk_percent ** 2 - tr.vkr_percent ** 2))
        tx.Command = (f"new transformer.t phases=3 windings=2 buses=[b{tr.hv_bus} b{tr.lv_bus}] conns=[wye wye] "
                      f"kvs=[{tr.vn_hv_kv} {tr.vn_lv_kv}] kvas=[{tr.sn_mva * 1000} {tr.sn_mva * 1000}] "
                      f"%r={tr.vkr_percent / 2} xhl={xhl} %noloadloss={tr.pfe_kw / (tr.sn_mva * 10)} "
                      f"%imag={np.sqrt(max(tr.i0_percent ** 2 - (tr.pfe_kw / (tr.sn_mva * 10)) ** 2, 0))}")
        for j, ln in net.line.iterrows():
            tx.Command = (f"new line.l{j} bus1=b{ln.from_bus} bus2=b{ln.to_bus} phases=3 r1={ln.r_ohm_per_km} "
                          f"x1={ln.x_ohm_per_km} r0={ln.r_ohm_per_km} x0={ln.x_ohm_per_km} c1={ln.c_nf_per_km} "
                          f"c0={ln.c_nf_per_km} length={ln.length_km} units=km")
        for j, ld in net.load.iterrows():
            pos = int(net.load.index.get_loc(j))
            tx.Command = f"new loadshape.ls{j} npts={steps} interval=0.25"
            dss.ActiveCircuit.LoadShapes.Name = f"ls{j}"
            base_p = max(float(ld.p_mw), 1e-9)
            dss.ActiveCircuit.LoadShapes.Pmult = f["load_p"][:steps, pos] / base_p
            dss.ActiveCircuit.LoadShapes.Qmult = f["load_q"][:steps, pos] / max(float(ld.q_mvar), 1e-9)
            tx.Command = (f"new load.ld{j} bus1=b{ld.bus} phases=3 kv=0.4 kw={base_p * 1000} "
                          f"kvar={float(ld.q_mvar) * 1000} model=1 vminpu=0.5 vmaxpu=1.5 yearly=ls{j}")
        tx.Command = f"new loadshape.pv npts={steps} interval=0.25"
        dss.ActiveCircuit.LoadShapes.Name = "pv"
        dss.ActiveCircuit.LoadShapes.Pmult = f["pv"][:steps]
        tx.Command = "new xycurve.vv npts=4 xarray=[0.92 0.98 1.02 1.08] yarray=[1 0 0 -1]"
        for b, bus in enumerate(f["buses"]):
            if not on[i, b]:
                continue
            kva = 1.1 * kw[i, b]
            tx.Command = (f"new pvsystem.pv{b} bus1=b{bus} phases=3 kv=0.4 kva={kva} pmpp={kw[i, b]} irradiance=1 "
                          f"yearly=pv %cutin=0 %cutout=0 kvarmax={0.44 * kva} kvarmaxabs={0.44 * kva} "
                          f"wattpriority=no")
        tx.Command = ("new invcontrol.ic mode=voltvar vvc_curve1=vv voltage_curvex_ref=rated "
                      "refreactivepower=varmax")
        tx.Command = "set voltagebases=[20 0.4]"
        tx.Command = "calcvoltagebases"
        tx.Command = "set maxcontroliter=100"
        tx.Command = f"set mode=yearly stepsize=15m number={steps}"
        t0 = time.perf_counter()
        tx.Command = "solve"
        walls.append(time.perf_counter() - t0)
        vmaxs.append(float(np.max(dss.ActiveCircuit.AllBusVmagPu)))
    return {"wall_s": walls, "vmax_last": vmaxs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="4 weeks, OpenDSS on 1 placement")
    ap.add_argument("--placements", type=int, default=100)
    ap.add_argument("--dss-placements", type=int, default=None)
    ap.add_argument("--repeats", type=int, default=None,
                    help="interleaved runs of both sides (medians); default 3 with --quick, else 1")
    ap.add_argument("--snapshot-only", action="store_true",
                    help="only the controlled-snapshot / plain power flow ratios (seconds)")
    args = ap.parse_args()
    from twin.runtime import configure

    configure()  # the twin command's set-up: numba's work-queue layer, malloc tuning
    steps = 2688 if args.quick else STEPS_YEAR
    n_dss = args.dss_placements or (1 if args.quick else 2)
    f = feeder(steps)
    on, kw = placements(f["buses"].size, args.placements, seed=18)
    if args.snapshot_only:
        import twin.grid._kernels  # noqa: F401  (loaded as in a run that already solved batches)

        snap = snapshot_cost(f, on, kw)
        b = args.placements
        print(f"snapshot_b1_x_plain={snap['b1']:.2f} snapshot_b{b}_x_plain={snap[f'b{b}']:.2f} "
              f"snapshot_b1_cpu_x_plain={snap['b1_cpu']:.2f} snapshot_b{b}_cpu_x_plain={snap[f'b{b}_cpu']:.2f} "
              f"series_b1_x_plain={snap['series_b1']:.2f} series_b{b}_x_plain={snap[f'series_b{b}']:.2f} "
              f"b1_outer={snap['b1_outer']:.2f} b{b}_outer={snap[f'b{b}_outer']:.2f}")
        return
    repeats = args.repeats or (3 if args.quick else 1)
    ours_walls, dss_walls = [], []
    for _ in range(repeats):  # interleaved, so a loaded machine hits both sides alike
        ours = run_ours(f, on, kw)
        dss = run_opendss(f, on[:n_dss], kw[:n_dss], steps)
        ours_walls.append(ours["wall_s"])
        dss_walls.append(float(np.median(dss["wall_s"])))
    ours["wall_s"] = float(np.median(ours_walls))
    per_pl_year_ours = ours["wall_s"] / args.placements * STEPS_YEAR / steps
    print(f"feeder {CODE}: {f['buses'].size} PV candidate buses, {steps} steps ({int(ours['day_steps'])} with sun), "
          f"{args.placements} placements, volt-var Cat B")
    print(f"ours     wall {ours['wall_s']:8.2f} s  power flows {ours['flows']:.0f} "
          f"({ours['flows'] / ours['wall_s']:.0f} pf/s)  converged {bool(ours['converged'])}  "
          f"per placement-year {per_pl_year_ours:.3f} s")
    snap = snapshot_cost(f, on, kw)
    print(f"snapshot with volt-var / plain power flow: B=1 {snap['b1']:.1f}x ({snap['b1_outer']:.1f} power flows), "
          f"B={args.placements} {snap[f'b{args.placements}']:.1f}x ({snap[f'b{args.placements}_outer']:.2f} per lane); "
          f"a series of 16 steps, warm-started: B=1 {snap['series_b1']:.1f}x ({snap['series_b1_outer']:.2f}), "
          f"B={args.placements} {snap[f'series_b{args.placements}']:.1f}x "
          f"({snap[f'series_b{args.placements}_outer']:.2f})")
    per_pl_year_dss = float(np.median(dss_walls)) * STEPS_YEAR / steps
    print(f"OpenDSS  wall per placement {np.round(dss_walls, 2).tolist()} s (yearly mode, InvControl; median of "
          f"{n_dss} placement(s) per run) per placement-year {per_pl_year_dss:.3f} s")
    print(f"runs: ours wall {np.round(ours_walls, 2).tolist()} s, x_opendss per run "
          f"{np.round(np.array(dss_walls) / np.array(ours_walls) * args.placements, 1).tolist()}; medians below")
    ratio = per_pl_year_dss / per_pl_year_ours
    year_wall = ours["wall_s"] * STEPS_YEAR / steps
    print(f"hosting_wall_s={ours['wall_s']:.2f} year_100_placements_s={year_wall:.1f} "
          f"pf_per_s={ours['flows'] / ours['wall_s']:.0f} steps={steps} placements={args.placements} "
          f"x_opendss={ratio:.1f} snapshot_b1_x_plain={snap['b1']:.1f} "
          f"snapshot_b{args.placements}_x_plain={snap[f'b{args.placements}']:.1f} "
          f"series_b1_x_plain={snap['series_b1']:.1f} series_b{args.placements}_x_plain="
          f"{snap[f'series_b{args.placements}']:.1f}")


if __name__ == "__main__":
    main()
