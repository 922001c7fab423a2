"""HIL benchmark: Modbus read latency while the twin steps, real-time step jitter, AFAP rate.

    .venv/bin/python bench/hil.py [--clients 10] [--hz 10] [--rt-seconds 30]

1. real time, as the issue states it: ``scenarios/hil_demo.yaml`` served with **1-second
   HIL steps at rt_factor 1.0** (grid solved every step; agents + market every 15 s, a
   market interval shortened so the run includes boundaries) for ``--rt-seconds``. Meanwhile ``--clients`` Modbus TCP clients in a *separate process*
   (asyncio, raw MBAP frames, so client-side GIL contention is not counted) each read 125
   registers at ``--hz`` from the served devices.
   - read latency p50/p99 (target p99 < 5 ms on loopback);
   - step lateness p99: how late each HIL step starts against its wall-clock deadline
     (target p99 < 20 ms); steps at a market-interval boundary, where the agents and the
     market step first, are reported separately as well.
2. as fast as possible: the same scenario (60-s HIL steps, one hour) without real time,
   HIL server attached: HIL steps per wall second.

The last line is ``key=value`` pairs. Figures depend on the machine's load: run it idle.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
#: market interval of the real-time run: short, so that 30 wall seconds include two
#: interval boundaries (agents + market + DSO check step there), not just the first
RT_INTERVAL_S = 15
sys.path.insert(0, str(ROOT))


# ---------------------------------------------------------------------- client process
async def _client(port: int, unit: int, hz: float, seconds: float, out: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    tid = 0
    t_next = time.perf_counter()
    t_end = t_next + seconds
    try:
        while t_next < t_end:
            tid = (tid + 1) & 0xFFFF
            frame = struct.pack(">HHHBBHH", tid, 0, 6, unit, 3, 40070, 125)
            t0 = time.perf_counter()
            writer.write(frame)
            head = await reader.readexactly(9)
            if head[7] != 3:
                raise RuntimeError(f"exception response {head[8]:#x}")
            await reader.readexactly(head[8])
            out.append(time.perf_counter() - t0)
            t_next += 1.0 / hz
            await asyncio.sleep(max(0.0, t_next - time.perf_counter()))
    finally:
        writer.close()


async def _clients(port: int, units: list[int], n: int, hz: float, seconds: float) -> list[float]:
    out: list[float] = []
    await asyncio.gather(*(_client(port, units[i % len(units)], hz, seconds, out) for i in range(n)))
    return out


def client_main(devices_json: str, n: int, hz: float, seconds: float) -> int:
    f = Path(devices_json)
    for _ in range(6000):  # the serve process publishes the port once it listens
        if f.is_file():
            break
        time.sleep(0.05)
    info = json.loads(f.read_text())
    units = [d["unit_id"] for d in info["devices"] if d["kind"] != "meter"]
    time.sleep(1.0)  # let the twin start its clock
    lat = asyncio.run(_clients(info["port"], units, n, hz, seconds))
    print(json.dumps(lat))
    return 0


# ---------------------------------------------------------------------- twin side
def _scenario(step_s: int, interval_s: int | None = None) -> object:
    from twin.scenario import load_scenario, scenario_from_dict

    data = load_scenario(ROOT / "scenarios" / "hil_demo.yaml").model_dump(mode="json")
    data["hil"]["step_s"] = step_s
    if interval_s is not None:
        data["market"]["interval_s"] = interval_s
    return scenario_from_dict(data)


def real_time(*, clients: int, hz: float, seconds: int) -> dict[str, float]:
    from twin.hil.serve import serve

    sc = _scenario(1, RT_INTERVAL_S)
    with tempfile.TemporaryDirectory() as d:
        out_dir = Path(d) / "rt"
        cproc = subprocess.Popen(
            [sys.executable, __file__, "--_clients", str(out_dir / "hil_devices.json"),
             str(clients), str(hz), str(max(1.0, seconds - 3.0))],
            stdout=subprocess.PIPE, text=True)
        try:
            out = serve(sc, out_dir=out_dir, port=0, rt_factor=1.0, until_s=seconds)  # type: ignore[arg-type]
            lat_out, _ = cproc.communicate(timeout=60)
        finally:
            if cproc.poll() is None:
                cproc.kill()
    lat = np.asarray(json.loads(lat_out)) * 1e3
    st = out.step_timing
    return {
        "read_p50_ms": float(np.percentile(lat, 50)), "read_p99_ms": float(np.percentile(lat, 99)),
        "reads": float(len(lat)), "steps": float(st.steps),
        "late_p50_ms": st.percentile_s(50) * 1e3, "late_p99_ms": st.percentile_s(99) * 1e3,
        "late_max_ms": st.max_s * 1e3, "late_boundary_max_ms": st.boundary_max_s * 1e3,
        "mosaik_behind": float(out.rt_behind["count"]),
    }


def afap() -> tuple[float, int]:
    from twin.hil.serve import serve

    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        out = serve(_scenario(60), out_dir=Path(d), port=0, rt_factor=None, until_s=3600)  # type: ignore[arg-type]
        wall = time.perf_counter() - t0
    setup = sum(v for k, v in out.run.timings_s.items() if k.startswith("setup"))
    return wall - setup, 3600 // 60


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--_clients":
        return client_main(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--hz", type=float, default=10.0)
    ap.add_argument("--rt-seconds", type=int, default=30, help="twin (= wall) seconds of the real-time run")
    args = ap.parse_args()
    from loguru import logger

    logger.disable("mosaik")
    rt = real_time(clients=args.clients, hz=args.hz, seconds=args.rt_seconds)
    print(f"read latency, {args.clients} clients at {args.hz:g} Hz (other process), 125 registers, "
          f"twin stepping: p50 {rt['read_p50_ms']:.2f} ms  p99 {rt['read_p99_ms']:.2f} ms  "
          f"({rt['reads']:.0f} reads)  target p99 < 5 ms")
    print(f"real-time step lateness, 1-s steps at rt 1.0, {rt['steps']:.0f} steps: "
          f"p50 {rt['late_p50_ms']:.1f} ms  p99 {rt['late_p99_ms']:.1f} ms  max {rt['late_max_ms']:.1f} ms "
          f"(market-boundary steps max {rt['late_boundary_max_ms']:.1f} ms)  target max < 20 ms")
    wall, n_steps = afap()
    sps = n_steps / wall
    print(f"as fast as possible (hil_demo, 60-s HIL steps, grid + agents + market + server): "
          f"{n_steps} HIL steps in {wall:.2f} s = {sps:.1f} steps/s")
    print(f"read_p50_ms={rt['read_p50_ms']:.3f} read_p99_ms={rt['read_p99_ms']:.3f} "
          f"rt_late_p99_ms={rt['late_p99_ms']:.2f} rt_late_max_ms={rt['late_max_ms']:.2f} "
          f"afap_steps_per_s={sps:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
