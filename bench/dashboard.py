"""Dashboard render times in a real browser (Debian's headless Chromium via Playwright).

Starts ``twin dashboard`` on the quickstart run, on a synthetic 1,000-run sweep and on a small
comparison of three scenarios (the test fixture), and for
each page opens a new tab and times its *first render*: from navigation until the page's
heading is shown, its script run has finished and every plotly chart is drawn. Targets
(issue 8): each page under 3 s on the quickstart run; the sweep page under 5 s on 1,000 runs.
The server's cold start (process start to healthy, and the first page of a fresh process,
which pays the imports) is reported apart. Peers (Grafana over a database, hosted gsy-e) have
no comparable local measurement; the ratio printed is to the target. Last line: ``key=value``.

    .venv/bin/python bench/dashboard.py [--run results/quickstart] [--repeats 3]

Without ``--run`` (or when it has no manifest.json) the quickstart is run first (~1 min).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests" / "dashboards"))

import browser_driver as bd  # noqa: E402
from dashboard_fixtures import make_compare, make_sweep  # noqa: E402

RUN_PAGES = [bd.PageCheck("", "Run overview", 1), bd.PageCheck("feeder", "Feeder", 3),
             bd.PageCheck("market", "Market", 1), bd.PageCheck("ledger", "Ledger", 1),
             bd.PageCheck("resilience", "Resilience", 0), bd.PageCheck("hil", "Hardware in the loop", 0)]
SWEEP_PAGE = bd.PageCheck("", "Sweep", 2)  # scatter + heat map; parallel coordinates on demand above 300 runs
COMPARE_PAGE = bd.PageCheck("", "Compare", 1)  # one faceted chart, a panel per KPI
RUN_TARGET_S, SWEEP_TARGET_S = 3.0, 5.0


def _quickstart(run: Path | None, tmp: Path) -> Path:
    if run is not None and (run / "manifest.json").is_file():
        return run
    out = tmp / "quickstart"
    print(f"running the quickstart into {out} ...", flush=True)
    subprocess.run([str(Path(sys.executable).with_name("twin")), "run",
                    str(ROOT / "scenarios" / "quickstart.yaml"), "--out", str(out), "--no-progress"],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    return out


def _time_pages(folder: Path, pages: list[bd.PageCheck], *, repeats: int,
                shots: Path | None) -> tuple[float, float, dict[str, list[float]]]:
    """(server start s, first page of a fresh server s, {page: [first-render s per repeat]})."""
    times: dict[str, list[float]] = {p.url_path: [] for p in pages}
    t0 = time.perf_counter()
    with bd.dashboard_server(folder) as url, bd.browser() as ctx:
        start_s = time.perf_counter() - t0
        cold = bd.check_page(ctx, base_url=url, check=pages[0]).seconds
        for rep in range(repeats):
            for p in pages:
                r = bd.check_page(ctx, base_url=url, check=p,
                                  screenshot_dir=shots if rep == 0 else None)
                times[p.url_path].append(r.seconds)
    return start_s, cold, times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=ROOT / "results" / "quickstart")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--runs", type=int, default=1000, help="runs in the synthetic sweep")
    ap.add_argument("--screenshots", type=Path, default=None)
    args = ap.parse_args()
    if not bd.CHROMIUM.is_file():
        print("bench/dashboard.py: /usr/bin/chromium missing (apt-get install chromium)")
        return 1
    with tempfile.TemporaryDirectory(prefix="twin-dash-bench-") as tmp_s:
        tmp = Path(tmp_s)
        run = _quickstart(args.run, tmp)
        n = round(args.runs ** (1 / 3))
        sweep = make_sweep(tmp / "sweep", n_pv=n, n_ev=n, n_seeds=args.runs // (n * n),
                           run_folders=1)
        shots = args.screenshots
        start_run, cold_run, run_t = _time_pages(run, RUN_PAGES, repeats=args.repeats,
                                                 shots=shots / "run" if shots else None)
        start_sw, cold_sw, sw_t = _time_pages(sweep, [SWEEP_PAGE], repeats=args.repeats,
                                              shots=shots / "sweep" if shots else None)
        compare = make_compare(tmp / "compare")
        _, _, cmp_t = _time_pages(compare, [COMPARE_PAGE], repeats=args.repeats,
                                  shots=shots / "compare" if shots else None)
    print(f"\nfirst render per page, new tab each, median of {args.repeats} (run: {run})")
    print(f"{'page':<12} {'median s':>9} {'max s':>7} {'target s':>9} {'ratio':>6}")
    head: dict[str, float] = {}
    for name, ts in [*(((k or "overview"), v) for k, v in run_t.items()), ("sweep", sw_t[""]),
                     ("compare", cmp_t[""])]:
        target = SWEEP_TARGET_S if name == "sweep" else RUN_TARGET_S
        med = statistics.median(ts)
        head[f"{name}_s"] = round(med, 3)
        print(f"{name:<12} {med:9.2f} {max(ts):7.2f} {target:9.1f} {med / target:6.2f}")
    print(f"server start to healthy: run {start_run:.2f} s, sweep {start_sw:.2f} s; first page of "
          f"a fresh server (imports): run {cold_run:.2f} s, sweep ({args.runs} runs) {cold_sw:.2f} s")
    worst = max(v for k, v in head.items() if k not in ("sweep_s", "compare_s"))
    print(" ".join(f"{k}={v}" for k, v in head.items()),
          f"worst_run_page_s={worst} sweep_runs={args.runs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
