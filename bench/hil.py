"""HIL benchmark: a simulated day served to 100 pollers and one writer, then the AFAP rate.

    .venv/bin/python bench/hil.py [--clients 100] [--hz 10] [--writes-per-s 10]
                                  [--day-wall-s 180] [--step-s 60] [--repeat 3] [--no-afap]
                                  [--hours 24] [--burst]

1. A simulated day of ``scenarios/hil_demo.yaml`` (midnight to midnight, ``--step-s`` HIL
   steps, the power flow at every HIL step, agents + market every 5 min) served at a high
   real-time factor (``--day-wall-s`` wall seconds for the 86,400 s; rt factor =
   day-wall-s / 86,400). Meanwhile, in a *separate process* (asyncio, raw MBAP frames, so
   client-side GIL contention is not counted), ``--clients`` connections each read 125
   registers at ``--hz`` from the served devices (each at its own seeded random phase of
   the period, as independent clients are; ``--burst``: all in phase), and one controller connection writes
   ``WMaxLimPctEna`` + ``WMaxLimPct`` (with a reversion timer) at ``--writes-per-s``.
   - read latency p50/p99 (target p99 < 5 ms on loopback), write latency p99;
   - step lateness against each step's scaled wall-clock deadline, p99 and max (target
     max < 20 ms), deadline misses (> 100 ms);
   - the serving process's resident memory at the first step and at the end of the day
     (target growth < 50 MB): every write and every HIL row is streamed to Parquet.
2. As fast as possible: the same scenario (60-s HIL steps, one hour) without real time:
   HIL steps per wall second.

``--hours H`` simulates only the day's first H hours at the same rt factor (a quicker
look, e.g. with and without ``--clients``). ``--repeat N`` runs the day N times and reports each figure's median (every run's figures
are printed too), with the load average before and after. The last line is ``key=value``
pairs. Figures depend on the machine's load: run it idle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


# ---------------------------------------------------------------------- client process
async def _poller(port: int, unit: int, hz: float, seconds: float, out: list[float],
                  errors: list[int], phase_s: float = 0.0, starts: list[float] | None = None) -> None:
    """One client polling at ``hz``, its first read ``phase_s`` after the start (its phase);
    each answered read's latency in ``out``, its send time (perf_counter) in ``starts``."""
    starts = [] if starts is None else starts
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    tid = 0
    t_end = time.perf_counter() + seconds
    t_next = time.perf_counter() + phase_s
    await asyncio.sleep(phase_s)
    try:
        while t_next < t_end:
            tid = (tid + 1) & 0xFFFF
            t0 = time.perf_counter()
            writer.write(struct.pack(">HHHBBHH", tid, 0, 6, unit, 3, 40070, 125))
            head = await reader.readexactly(9)
            if head[7] != 3:  # an exception (0x06: over the rate limit after a starved catch-up)
                errors.append(head[8])
            else:
                await reader.readexactly(head[8])
                out.append(time.perf_counter() - t0)
                starts.append(t0)
            t_next += 1.0 / hz
            await asyncio.sleep(max(0.0, t_next - time.perf_counter()))
    finally:
        writer.close()


async def _writer(port: int, unit: int, addr: int, rate: float, seconds: float, out: list[float],
                  errors: list[int]) -> None:
    """A controller: WMaxLimPctEna, WMaxLimPct (two registers) at ``rate`` writes/s."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    t_next = time.perf_counter()
    t_end = t_next + seconds
    i = 0
    try:
        while t_next < t_end:
            i += 1
            pct = 500 + (i % 500)  # 50.0 .. 99.9 %
            t0 = time.perf_counter()
            writer.write(struct.pack(">HHHBBHHBHH", i & 0xFFFF, 0, 11, unit, 16, addr, 2, 4, 1, pct))
            head = await reader.readexactly(8)
            if head[7] != 16:
                errors.append((await reader.readexactly(1))[0])
            else:
                await reader.readexactly(4)
                out.append(time.perf_counter() - t0)
            t_next += 1.0 / rate
            await asyncio.sleep(max(0.0, t_next - time.perf_counter()))
    finally:
        writer.close()


def client_main(devices_json: str, n: int, hz: float, writes: float, seconds: float,
                stagger: bool = True) -> int:
    f = Path(devices_json)
    for _ in range(6000):  # the serve process publishes the port once it listens
        if f.is_file():
            break
        time.sleep(0.05)
    info = json.loads(f.read_text())
    units = [d["unit_id"] for d in info["devices"] if d["kind"] != "meter"]
    pv = next(d["unit_id"] for d in info["devices"] if d["kind"] == "pv_inverter")

    errors: list[int] = []
    # independent clients: each polls at its own (seeded, uniform) phase of the period;
    # without stagger all fire together (bursts of n requests at once)
    phases = np.random.default_rng(25).uniform(0.0, 1.0 / hz, n) if stagger else np.zeros(n)

    starts: list[float] = []

    async def run() -> tuple[list[float], list[float]]:
        reads: list[float] = []
        wr: list[float] = []
        await asyncio.gather(*(_poller(info["port"], units[i % len(units)], hz, seconds, reads, errors,
                                       float(phases[i]), starts)
                               for i in range(n)),
                             _writer(info["port"], pv, info["wmaxlimpct_ena_addr"], writes, seconds, wr,
                                     errors))
        return reads, wr

    reads, wr = asyncio.run(run())
    print(json.dumps({"reads": reads, "writes": wr, "exceptions": errors, "starts": starts}))
    return 0


# ---------------------------------------------------------------------- twin side
def _rss_mb(pid: int | str = "self") -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:  # gone
        return 0.0
    return float("nan")


def _malloc_mb() -> tuple[float, float]:
    """glibc's heap of this process (mallinfo2): MB in use, MB free but not returned."""
    import ctypes

    class _Info(ctypes.Structure):
        _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd",
                                                   "usmblks", "fsmblks", "uordblks", "fordblks",
                                                   "keepcost")]

    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallinfo2.restype = _Info
        m = libc.mallinfo2()
    except (OSError, AttributeError):
        return float("nan"), float("nan")
    return (m.uordblks + m.hblkhd) / 2**20, m.fordblks / 2**20


def _children(pid: int) -> list[int]:
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _serving_rss_mb(skip: int) -> float:
    """RSS of this process and its children but ``skip`` (the clients): the twin plus the
    Modbus server process (and multiprocessing's small helper)."""
    me = os.getpid()
    return _rss_mb() + sum(_rss_mb(c) for c in _children(me) if c != skip)


def _scenario(step_s: int, *, day: bool, clients: int = 0) -> object:
    from twin.scenario import load_scenario, scenario_from_dict

    data = load_scenario(ROOT / "scenarios" / "hil_demo.yaml").model_dump(mode="json")
    data["hil"]["step_s"] = step_s
    data["hil"]["max_connections"] = max(16, clients + 4)
    if day:
        data["start"] = "2016-06-15T00:00:00Z"
        data["duration_s"] = 86_400
    return scenario_from_dict(data)


def day(*, clients: int, hz: float, writes: float, wall_s: float, step_s: int,
        hours: float = 24.0, server: str = "thread", stagger: bool = True,
        trace: bool = False) -> dict[str, float]:
    from twin.hil.serve import serve
    from twin.hil.sunspec_map import build_register_map

    sc = _scenario(step_s, day=True, clients=clients)
    rt = wall_s / 86_400
    run_wall_s = wall_s * hours / 24.0  # the first ``hours`` of the day at the same rt factor
    rss: list[tuple[float, float]] = []  # (twin time of the latest HIL step, MB)
    stop = threading.Event()
    from twin.cosim import hil_sim

    twin_now = [0.0]  # the serving process falls behind on a loaded machine: mark by twin time
    real_step = hil_sim.HILSim.step

    last_step = int(hours * 3600) - step_s
    at_last: list[float] = []
    skip = [0]

    snaps: list[Any] = []
    arrow_mb: list[float] = []
    heap: list[tuple[float, float]] = []  # glibc malloc: (in use, free but kept) MB
    idle: list[tuple[float, float]] = []  # the twin's main thread waiting for a deadline

    class _Clock:  # hil_sim's time module, its pacing sleeps recorded
        def __getattr__(self, name: str) -> Any:
            return getattr(time, name)

        @staticmethod
        def sleep(s: float) -> None:
            a = time.perf_counter()
            time.sleep(s)
            idle.append((a, time.perf_counter()))

    def step(self: Any, t: int, inputs: Any, max_advance: int) -> Any:
        twin_now[0] = float(t)
        if trace and t in (3600, last_step):  # the Python heap after the first hour, at the end
            import tracemalloc

            snaps.append(tracemalloc.take_snapshot())
        if t in (3600, last_step):  # Arrow's own allocations (results tables) are not in RSS's
            import pyarrow as pa  # Python heap: their share of the growth

            arrow_mb.append(pa.total_allocated_bytes() / 2**20)
            heap.append(_malloc_mb())
        if t == last_step:  # the day served, before the run's end (KPIs, final tables)
            at_last.append(_serving_rss_mb(skip[0]))
        return real_step(self, t, inputs, max_advance)

    def sample() -> None:
        while not stop.wait(1.0):
            rss.append((twin_now[0], _serving_rss_mb(skip[0])))

    with tempfile.TemporaryDirectory() as d:
        out_dir = Path(d) / "day"
        out_dir.mkdir()
        info = out_dir / "bench_clients.json"
        cproc = subprocess.Popen(
            [sys.executable, __file__, "--_clients", str(info), str(clients), str(hz), str(writes),
             str(max(1.0, run_wall_s - 5.0)), "1" if stagger else "0"], stdout=subprocess.PIPE, text=True)
        skip[0] = cproc.pid
        state: dict[str, float] = {}

        def on_status(msg: str) -> None:
            if msg.startswith("Modbus TCP on"):  # serving: tell the client process, start sampling
                devices = json.loads((out_dir / "hil_devices.json").read_text())
                devices["wmaxlimpct_ena_addr"] = build_register_map("pv_inverter").point(
                    704, "WMaxLimPctEna").addr
                info.write_text(json.dumps(devices))
                threading.Thread(target=sample, daemon=True).start()

        t0 = time.perf_counter()
        cpu0 = time.process_time()
        kids0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        hil_sim.HILSim.step = step  # type: ignore[method-assign]
        hil_sim._time = _Clock()  # type: ignore[assignment]
        try:
            out = serve(sc, out_dir=out_dir, port=0, rt_factor=rt, on_status=on_status,  # type: ignore[arg-type]
                        until_s=int(hours * 3600), server_process=server == "process")
            wall = time.perf_counter() - t0
            cpu = time.process_time() - cpu0  # twin (+ Modbus server thread) of this process
            kids1 = resource.getrusage(resource.RUSAGE_CHILDREN)  # the server process, joined
            cpu_server = (kids1.ru_utime + kids1.ru_stime) - (kids0.ru_utime + kids0.ru_stime)
            rss_after = _serving_rss_mb(skip[0])
            rss_end = at_last[0] if at_last else rss_after
            stop.set()
            lat_out, _ = cproc.communicate(timeout=120)
        finally:
            hil_sim.HILSim.step = real_step  # type: ignore[method-assign]
            hil_sim._time = time  # type: ignore[assignment]
            stop.set()
            if cproc.poll() is None:
                cproc.kill()
        import pyarrow.parquet as pq

        n_writes = pq.read_metadata(out_dir / "hil_writes.parquet").num_rows
    if len(snaps) == 2:  # --tracemalloc: where the Python heap grew between the two
        growth = snaps[1].compare_to(snaps[0], "lineno")
        total = sum(d.size_diff for d in growth) / 2**20
        print(f"tracemalloc: Python heap {total:+.1f} MB from the first hour to the last step; "
              f"largest growths:")
        for d in growth[:12]:
            print(f"  {d.size_diff / 2**20:+8.2f} MB {d.count_diff:+8d} blocks  {d.traceback[0]}")
    res = json.loads(lat_out)
    lat = np.asarray(res["reads"] or [np.nan]) * 1e3  # --clients 0: no reads
    wr = np.asarray(res["writes"] or [np.nan]) * 1e3
    # reads that overlapped the twin's busy time (between its pacing sleeps, from the first
    # to the last) against those answered while it slept: the GIL and the CPU it takes
    busy_lat, idle_lat = [], []
    if idle and res.get("starts"):
        a = np.array([x[0] for x in idle])
        b = np.array([x[1] for x in idle])
        t0 = np.asarray(res["starts"])
        t1 = t0 + np.asarray(res["reads"])
        j = np.searchsorted(a, t0, side="right") - 1  # the last sleep that began before the send
        inside = (j >= 0) & (t1 <= b[np.clip(j, 0, None)])
        span = (t0 >= a[0]) & (t1 <= b[-1])
        busy_lat = (lat[span & ~inside]).tolist()
        idle_lat = (lat[span & inside]).tolist()

    def pct(x: list[float], q: float) -> float:
        return float(np.percentile(x, q)) if x else float("nan")
    st = out.step_timing
    # start: after the first simulated hour (imports, JIT compilation and first-interval
    # allocations are done), so that the growth is what a longer run adds
    warm = [mb for t, mb in rss if t >= 3600]
    state["rss0"] = warm[0] if warm else float("nan")
    half = [mb for t, mb in rss if t >= hours * 3600 / 2]
    state["rss_mid"] = half[0] if half else float("nan")
    return {
        "read_p50_ms": float(np.percentile(lat, 50)), "read_p99_ms": float(np.percentile(lat, 99)),
        "read_idle_p50_ms": pct(idle_lat, 50), "read_idle_p99_ms": pct(idle_lat, 99),
        "read_busy_p50_ms": pct(busy_lat, 50), "read_busy_p99_ms": pct(busy_lat, 99),
        "busy_share": len(busy_lat) / max(1, len(busy_lat) + len(idle_lat)),
        "reads": float(len(lat)), "write_p99_ms": float(np.percentile(wr, 99)), "writes": float(len(wr)),
        "writes_recorded": float(n_writes), "exceptions": float(len(res.get("exceptions", []))), "steps": float(st.steps), "misses": float(st.misses),
        "late_p99_ms": st.percentile_s(99) * 1e3, "late_max_ms": st.max_s * 1e3,
        "late_boundary_max_ms": st.boundary_max_s * 1e3, "rss_start_mb": state.get("rss0", float("nan")),
        "rss_mid_mb": state.get("rss_mid", float("nan")),
        "arrow_growth_mb": arrow_mb[-1] - arrow_mb[0] if len(arrow_mb) == 2 else float("nan"),
        "malloc_used_growth_mb": heap[-1][0] - heap[0][0] if len(heap) == 2 else float("nan"),
        "malloc_free_growth_mb": heap[-1][1] - heap[0][1] if len(heap) == 2 else float("nan"),
        "rss_end_mb": rss_end, "rss_after_run_mb": rss_after, "rss_max_mb": max([mb for t, mb in rss if t < last_step] + [rss_end]), "wall_s": wall, "rt_factor": rt,
        "cpu_share": cpu / wall,  # of one core: what the machine gave the twin's process
        "cpu_server_share": cpu_server / wall,  # the Modbus server process (0 with --server thread)
    }


def afap() -> tuple[float, int]:
    from twin.hil.serve import serve

    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        out = serve(_scenario(60, day=False), out_dir=Path(d), port=0, rt_factor=None, until_s=3600)  # type: ignore[arg-type]
        wall = time.perf_counter() - t0
    setup = sum(v for k, v in out.run.timings_s.items() if k.startswith("setup"))
    return wall - setup, 3600 // 60


def _switch_ms() -> float:
    import twin.hil.serve

    return twin.hil.serve.SWITCH_INTERVAL_S * 1e3


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--_clients":
        return client_main(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]),
                           float(sys.argv[6]), stagger=sys.argv[7] == "1")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=100)
    ap.add_argument("--hz", type=float, default=10.0)
    ap.add_argument("--writes-per-s", type=float, default=10.0)
    ap.add_argument("--day-wall-s", type=float, default=180.0, help="wall seconds for the simulated day")
    ap.add_argument("--step-s", type=int, default=60, help="HIL step of the day run (divides 300)")
    ap.add_argument("--repeat", type=int, default=1, help="days to run; figures are medians")
    ap.add_argument("--hours", type=float, default=24.0,
                    help="simulate only the day's first hours (same rt factor; a quicker look)")
    ap.add_argument("--no-afap", action="store_true", help="skip the as-fast-as-possible part")
    ap.add_argument("--server", choices=("thread", "process"), default="thread",
                    help="the Modbus server in a thread of the twin's process (default, as "
                         "twin hil serve) or in its own process")
    ap.add_argument("--burst", action="store_true",
                    help="all pollers in phase (bursts of --clients requests at once) instead of "
                         "each at its own seeded random phase of the period")
    ap.add_argument("--tracemalloc", action="store_true",
                    help="trace Python allocations (slower) and print where the heap grew "
                         "between the first hour and the last step")
    ap.add_argument("--switch-interval-ms", type=float, default=None,
                    help="the interpreter's switch interval while the server thread shares "
                         "the twin's GIL (twin.hil.serve.SWITCH_INTERVAL_S; default as shipped)")
    args = ap.parse_args()
    if args.switch_interval_ms is not None:
        import twin.hil.serve

        twin.hil.serve.SWITCH_INTERVAL_S = args.switch_interval_ms / 1e3
    from loguru import logger

    logger.disable("mosaik")
    if args.tracemalloc:
        import tracemalloc

        tracemalloc.start(1)
    load0 = os.getloadavg()
    runs = []
    for i in range(max(1, args.repeat)):
        runs.append(day(clients=args.clients, hz=args.hz, writes=args.writes_per_s,
                        wall_s=args.day_wall_s, step_s=args.step_s, hours=args.hours,
                        server=args.server, stagger=not args.burst, trace=args.tracemalloc))
        x = runs[-1]
        print(f"run {i + 1}: read p50 {x['read_p50_ms']:.2f} p99 {x['read_p99_ms']:.2f} ms; lateness "
              f"p99 {x['late_p99_ms']:.1f} max {x['late_max_ms']:.1f} ms; RSS growth "
              f"{x['rss_end_mb'] - x['rss_start_mb']:+.1f} MB; CPU {100 * x['cpu_share']:.0f} % of a core; "
              f"load {os.getloadavg()[0]:.2f}", flush=True)
    r = {k: float(np.median([x[k] for x in runs])) for k in runs[0]}
    r["rss_growth"] = float(np.median([x["rss_end_mb"] - x["rss_start_mb"] for x in runs]))
    load1 = os.getloadavg()
    print(f"load average (1, 5, 15 min) before {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}, "
          f"after {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} on {os.cpu_count()} cores; "
          f"figures below: median of {len(runs)}")
    print(f"simulated {args.hours:g} h in {r['wall_s']:.0f} s (rt factor {r['rt_factor']:.5f}, {r['steps']:.0f} HIL steps "
          f"of {args.step_s} s, power flow every step)")
    print(f"reads, {args.clients} clients at {args.hz:g} Hz (other process), 125 registers: "
          f"p50 {r['read_p50_ms']:.2f} ms  p99 {r['read_p99_ms']:.2f} ms  ({r['reads']:.0f} reads)  "
          f"target p99 < 5 ms")
    print(f"  of them answered while the twin's main thread slept (pacing): p50 {r['read_idle_p50_ms']:.2f} "
          f"p99 {r['read_idle_p99_ms']:.2f} ms; overlapping its steps ({100 * r['busy_share']:.0f} % of "
          f"the reads): p50 {r['read_busy_p50_ms']:.2f} p99 {r['read_busy_p99_ms']:.2f} ms")
    print(f"writes, one controller at {args.writes_per_s:g}/s: p99 {r['write_p99_ms']:.2f} ms "
          f"({r['writes']:.0f} answered, {r['writes_recorded']:.0f} rows in hil_writes); "
          f"exception answers {r['exceptions']:.0f} (0x06 when a starved client catches up)")
    print(f"step lateness: p99 {r['late_p99_ms']:.1f} ms  max {r['late_max_ms']:.1f} ms  "
          f"(market-boundary steps max {r['late_boundary_max_ms']:.1f} ms; misses > 100 ms: "
          f"{r['misses']:.0f})  target max < 20 ms")
    print(f"memory (RSS of the twin's process + the Modbus server process): {r['rss_start_mb']:.0f} MB "
          f"after the first hour, {r['rss_mid_mb']:.0f} MB half way, {r['rss_end_mb']:.0f} MB at the last "
          f"step (max {r['rss_max_mb']:.0f} MB; {r['rss_after_run_mb']:.0f} MB after the run's end): growth "
          f"{r['rss_growth']:+.1f} MB  target < 50 MB (Arrow buffers {r['arrow_growth_mb']:+.1f} MB, "
          f"malloc in use {r['malloc_used_growth_mb']:+.1f} MB, malloc free but kept "
          f"{r['malloc_free_growth_mb']:+.1f} MB; the twin's process)")
    print(f"CPU over the run (CPU time / wall time, % of one core): the twin's process "
          f"{100 * r['cpu_share']:.0f} %, the Modbus server process {100 * r['cpu_server_share']:.0f} % "
          f"(--server {args.server})")
    sps = float("nan")
    if not args.no_afap:
        wall, n_steps = afap()
        sps = n_steps / wall
        print(f"as fast as possible (hil_demo, 60-s HIL steps, grid + agents + market + server): "
              f"{n_steps} HIL steps in {wall:.2f} s = {sps:.1f} steps/s")
    print(f"read_p50_ms={r['read_p50_ms']:.3f} read_p99_ms={r['read_p99_ms']:.3f} "
          f"late_p99_ms={r['late_p99_ms']:.2f} late_max_ms={r['late_max_ms']:.2f} "
          f"rss_growth_mb={r['rss_growth']:.1f} afap_steps_per_s={sps:.2f} runs={len(runs)} "
          f"cpu_share={r['cpu_share']:.2f} cpu_server_share={r['cpu_server_share']:.2f} "
          f"late_boundary_max_ms={r['late_boundary_max_ms']:.2f} misses={r['misses']:.0f} "
          f"read_idle_p99_ms={r['read_idle_p99_ms']:.3f} read_busy_p99_ms={r['read_busy_p99_ms']:.3f} "
          f"write_p99_ms={r['write_p99_ms']:.3f} rss_start_mb={r['rss_start_mb']:.0f} "
          f"rss_end_mb={r['rss_end_mb']:.0f} hours={args.hours:g} server={args.server} "
          f"phases={'burst' if args.burst else 'staggered'} "
          f"switch_ms={_switch_ms():g} "
          f"load1_before={load0[0]:.2f} load1_after={load1[0]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
