"""A/B of the controlled power flow's fused kernel against an older commit's, in one process.

The snapshot of ``bench/hosting.py --snapshot-only`` (1-LV-rural1, volt-var Cat B, placements
at noon) at B = 1, 100 and 1000: CPU time (all threads) of a controlled batch over a plain flow
on the same numba solver, this tree's ``twin/grid/_kernels/controlled.py`` and the one of
``--against`` (``git show``, imported as a module of its own; the Python side is this tree's,
with that commit's block size ``--against-block``), timed interleaved; medians of 3 runs.

    .venv/bin/python bench/controlled_ab.py --against abf5272 --against-block 256

(``--against-block``: that commit's ``_FUSED_BLOCK``: 128 before 8443cbf, 256 from it on.)

The last line holds the ratios as key=value pairs.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


def _old_kernel(commit: str, folder: Path) -> object:
    src = subprocess.run(["git", "show", f"{commit}:twin/grid/_kernels/controlled.py"], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout
    path = folder / f"controlled_{commit}.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location(f"controlled_{commit}", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--against", default="abf5272")
    ap.add_argument("--against-block", type=int, default=256)
    args = ap.parse_args()
    from twin.runtime import configure

    configure()
    import hosting as h

    import twin.grid._kernels  # noqa: F401
    import twin.grid._kernels.controlled as new
    import twin.grid.controlled_pf as cmod

    tmp = Path(tempfile.mkdtemp(prefix="controlled_ab-"))
    old = _old_kernel(args.against, tmp)
    f = h.feeder(2688)
    on_all, kw_all = h.placements(f["buses"].size, 1000, seed=18)
    solver, cpf, t, n_sgen = h.snapshot_solvers(f)
    sides = {args.against: (old, args.against_block), "this": (new, cmod._FUSED_BLOCK)}
    heads = []
    for b in (1, 100, 1000):
        on, kw = on_all[:b], kw_all[:b]
        avail = f["pv"][t] * kw / 1000.0
        size = np.where(kw > 0, kw / 1000.0, 1.0)
        sg = np.zeros((b, n_sgen))
        sg[:, f["rows"]] = avail
        ratios: dict[str, list[float]] = {k: [] for k in sides}
        for _ in range(3):
            times: dict[str, list[float]] = {k: [] for k in sides}
            plain: list[float] = []
            for _ in range(17):
                for k, (mod, blk) in sides.items():
                    cmod._controlled_kernel = lambda mod=mod: mod  # type: ignore[misc]
                    cmod._FUSED_BLOCK = blk
                    c0 = time.process_time()
                    cpf.solve(der_p_avail_mw=avail, der_scale=size, der_in_service=on, load_p_mw=f["load_p"][t],
                              load_q_mvar=f["load_q"][t], sgen_p_mw=np.zeros((1, n_sgen)))
                    times[k].append(time.process_time() - c0)
                c0 = time.process_time()
                solver.solve(load_p_mw=f["load_p"][t], load_q_mvar=f["load_q"][t], sgen_p_mw=sg)
                plain.append(time.process_time() - c0)
            for k in sides:  # the first two calls warm up (compile on a cold cache)
                ratios[k].append(float(np.median(times[k][2:]) / np.median(plain[2:])))
        print(f"B={b} CPU time / plain flow, 3 runs: "
              + ", ".join(f"{k} {np.round(v, 2).tolist()}" for k, v in ratios.items()), flush=True)
        heads += [f"b{b}_cpu_x_plain_{k}={np.median(v):.2f}" for k, v in ratios.items()]
    print(" ".join(heads))


if __name__ == "__main__":
    main()
