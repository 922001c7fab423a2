"""Run a planned sweep: skip complete runs, run the rest on a backend, keep kpis.parquet current."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from twin.sweep.backends import DaskCluster, connect_dask, run_dask, run_local
from twin.sweep.plan import SweepPlan
from twin.sweep.runner import RunTask
from twin.sweep.store import RUNS, check_run, kpi_rows, write_kpis, write_plan

__all__ = ["SweepResult", "default_workers", "run_sweep"]

#: kpis.parquet is rewritten at most this often while the sweep goes on (and always at the end).
KPIS_EVERY_S = 5.0


@dataclass
class SweepResult:
    out_dir: Path
    kpis: pa.Table
    ran: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)
    wall_s: float = 0.0
    interrupted: bool = False

    @property
    def counts(self) -> Counter[str]:
        return Counter(self.kpis.column("status").to_pylist())

    @property
    def failed(self) -> list[str]:
        return [r for r, s in zip(self.kpis.column("run_id").to_pylist(),
                                  self.kpis.column("status").to_pylist(), strict=True)
                if s != "complete"]


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)))


class _Progress:
    """tqdm bar (with ETA) on a terminal, one line per finished run otherwise."""

    def __init__(self, total: int, *, enabled: bool, echo: Callable[[str], None]) -> None:
        self.total, self.done, self.echo, self.t0 = total, 0, echo, time.perf_counter()
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="run", desc="sweep", file=sys.stderr)

    def update(self, rec: dict[str, Any]) -> None:
        self.done += 1
        if self.bar is not None:
            self.bar.set_postfix_str(f"{rec['run_id']} {rec['status']}")
            self.bar.update(1)
            return
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / self.done * (self.total - self.done)
        wall = f"{rec['wall_s']:.1f} s" if rec.get("wall_s") is not None else "-"
        err = f"  ({rec['error']})" if rec.get("error") else ""
        self.echo(f"[sweep] {self.done}/{self.total} {rec['run_id']} {rec['status']} {wall}"
                  f"  ETA {eta:.0f} s{err}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_sweep(plan: SweepPlan, *, out_dir: Path, workers: int | None = None,
              scheduler: str | None = None, dask_local: int | None = None,
              timeout_s: float | None = None, progress: bool = True,
              echo: Callable[[str], None] | None = None) -> SweepResult:
    """Run every variant of ``plan`` not already complete in ``out_dir``.

    Local process pool by default (``workers`` at a time); Dask when ``scheduler`` is an
    address or ``dask_local`` a number of LocalCluster workers. A failing, hanging or killed
    run is recorded and the sweep goes on. Ctrl-C stops the running runs, writes
    kpis.parquet and re-raises KeyboardInterrupt.
    """
    say = echo or (lambda m: print(m, file=sys.stderr))
    out = Path(out_dir).resolve()
    (out / RUNS).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    params = [p.path for p in plan.parameters]
    timeout = timeout_s or plan.spec.timeout_s
    skipped = [v.run_id for v in plan.variants if check_run(out / RUNS / v.run_id, v.digest) is None]
    done = set(skipped)
    tasks = [RunTask(run_id=v.run_id, run_dir=str(out / RUNS / v.run_id), scenario=v.scenario,
                     timeout_s=timeout, digest=v.digest) for v in plan.variants if v.run_id not in done]
    dask_cluster: DaskCluster | None = None
    if (scheduler or dask_local) and tasks:  # unreachable, no workers, folder not shared: raise now
        dask_cluster = connect_dask(scheduler=scheduler, local_workers=dask_local, out_dir=out)
    write_plan(out, spec=plan.spec.model_dump(mode="json"), parameters=params,
               variants=[{"run_id": v.run_id, "params": v.params, "seed": v.seed,
                          "digest": v.digest} for v in plan.variants])
    backend = ("dask " + (scheduler or f"LocalCluster({dask_local} workers)")
               if scheduler or dask_local else f"local pool ({workers or default_workers()} workers)")
    say(f"[sweep] {plan.spec.name}: {len(plan.variants)} runs, {len(skipped)} already complete, "
        f"{len(tasks)} to run on {backend}")
    result = SweepResult(out_dir=out, kpis=pa.table({}), skipped=skipped)
    bar = _Progress(len(tasks), enabled=progress, echo=say)
    cancel = threading.Event()
    records: Iterator[dict[str, Any]]
    if dask_cluster is not None:
        records = run_dask(tasks, dask_cluster)
    else:
        records = run_local(tasks, workers=workers or default_workers(), cancel=cancel)
    last_write = time.monotonic()
    rows_cache: dict[str, dict[str, Any]] = {}
    try:
        for rec in records if tasks else iter(()):
            result.records[rec["run_id"]] = rec
            result.ran.append(rec["run_id"])
            bar.update(rec)
            if time.monotonic() - last_write > KPIS_EVERY_S:
                settled = set(skipped) | set(result.records)
                write_kpis(out, kpi_rows(out, plan.variants, rows_cache, settled),
                           parameters=params)
                last_write = time.monotonic()
    except KeyboardInterrupt:
        result.interrupted = True
        cancel.set()
        raise
    finally:
        bar.close()
        close = getattr(records, "close", None)
        if close is not None:
            close()  # stops the pool or the Dask client
        if dask_cluster is not None:
            dask_cluster.close()  # also when no record was asked for
        result.kpis = write_kpis(out, kpi_rows(out, plan.variants, rows_cache), parameters=params)
        result.wall_s = time.perf_counter() - t0
    return result
