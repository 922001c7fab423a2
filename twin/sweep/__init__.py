"""Scenario sweeps: a spec of parameters over a base scenario, run on a local pool or Dask.

``load_sweep(path)`` validates a spec and lists every problem before anything runs;
``run_sweep(plan, out_dir=...)`` runs the variants (each in its own process, resumable);
``read_kpis(dir)`` and ``open_dataset(dir, table)`` read the results store.
"""

from __future__ import annotations

from twin.sweep.orchestrate import SweepResult, run_sweep
from twin.sweep.plan import SweepPlan, Variant, load_sweep, plan_sweep
from twin.sweep.spec import SweepError, SweepSpec
from twin.sweep.store import open_dataset, read_kpis

__all__ = [
    "SweepError",
    "SweepPlan",
    "SweepResult",
    "SweepSpec",
    "Variant",
    "load_sweep",
    "open_dataset",
    "plan_sweep",
    "read_kpis",
    "run_sweep",
]
