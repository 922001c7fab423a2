"""The sweep demo on two external Dask workers against the local pool (issue #24's target: 1.3x).

Starts ``dask scheduler`` and two plain ``dask worker ADDRESS`` processes (one thread each)
on 127.0.0.1, then times ``twin sweep scenarios/sweep_demo.yaml`` (12 runs) as a user runs it,
each into a fresh folder:

* ``cold_s``: the first sweep on the fresh workers (it warms them: WarmTwin plugin);
* ``ext_s``: median of ``--repeats`` sweeps with ``--scheduler ADDRESS`` on those workers;
* ``local_s``: median of ``--repeats`` sweeps with ``--workers 2`` (each its own ``twin``
  process, so each pays its forkserver's imports, as on the command line);
* ``x_local``: ext_s / local_s (target <= 1.3).

Local and external sweeps alternate, so both see the same load. Last line: ``key=value``.

    .venv/bin/python bench/sweep_cluster.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from twin.sweep.procs import external_cluster  # noqa: E402

SPEC = ROOT / "scenarios" / "sweep_demo.yaml"


def _sweep(*where: str) -> float:
    """Wall time of one ``twin sweep`` of the demo into a fresh folder; fails loudly."""
    twin = Path(sys.executable).with_name("twin")
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        t0 = time.perf_counter()
        proc = subprocess.run([str(twin), "sweep", str(SPEC), "--out", tmp, "--no-progress", *where],
                              cwd=ROOT, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"twin sweep {' '.join(where)} failed ({proc.returncode}): "
                         f"{proc.stderr.strip().splitlines()[-1:]}")
    return wall


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-dask-logs-") as logs, \
            external_cluster(2, log_dir=Path(logs)) as cluster:
        sched = ["--scheduler", cluster.address]
        cold = _sweep(*sched)
        print(f"first sweep on fresh workers (warms them): {cold:.1f} s", flush=True)
        local: list[float] = []
        ext: list[float] = []
        for rep in range(args.repeats):
            local.append(_sweep("--workers", "2"))
            ext.append(_sweep(*sched))
            print(f"repeat {rep + 1}: --workers 2 {local[-1]:.1f} s, two dask workers {ext[-1]:.1f} s",
                  flush=True)
    loc, ex = statistics.median(local), statistics.median(ext)
    print(f"sweep demo (12 runs): local pool {loc:.1f} s, two external dask workers {ex:.1f} s "
          f"-> {ex / loc:.2f}x (target <= 1.3x)")
    print(f"local_s={loc:.2f} ext_s={ex:.2f} cold_s={cold:.2f} x_local={ex / loc:.3f} "
          f"repeats={args.repeats}")


if __name__ == "__main__":
    main()
