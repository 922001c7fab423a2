"""``twin regress [DIR]``: run the pinned regression scenarios and compare KPIs with golden files.

Each folder under ``DIR`` (default ``scenarios/regression``) is one case: ``scenario.yaml`` and
``expected_kpis.json``::

    {"kpis": {"energy_traded_kwh": {"expected": 12.5, "abs_tol": 0.0, "rel_tol": 1e-06}, ...}}

A KPI passes when ``|got - expected| <= abs_tol + rel_tol * |expected|`` (numpy.isclose). The
cases run in parallel, each in its own process (the sweep runner). ``--update`` rewrites the
goldens from the runs, keeping each KPI's tolerances, and prints what changed. KPIs that
measure the machine, not the model (``wall_time_s``), are never compared.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twin.scenario import ScenarioError, load_scenario

__all__ = ["Check", "add_parser", "compare", "load_cases", "run_regress"]

SCENARIO_FILE = "scenario.yaml"
GOLDEN_FILE = "expected_kpis.json"
DEFAULT_ABS_TOL = 1e-9
DEFAULT_REL_TOL = 1e-6
IGNORED = frozenset({"wall_time_s", "study_wall_time_s"})  # machine-dependent timings
#: what a case runs (``"command"`` in its golden file; default ``run``)
COMMANDS = ("run", "resilience")
#: Integer-exact quantities (counts, Wh and token sums): new goldens get a zero tolerance.
EXACT = frozenset({"trades", "orders", "intervals_settled", "tokens_conserved", "total_supply",
                   "energy_traded_kwh", "curtailed_kwh", "metered_consumption_kwh",
                   "imbalance_import_kwh"})
DEFAULT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Case:
    name: str
    folder: Path
    scenario: dict[str, Any]
    golden: dict[str, dict[str, float]]
    #: ``run`` (twin run) or ``resilience`` (twin resilience): ``"command"`` in the golden file
    command: str = "run"


@dataclass(frozen=True)
class Check:
    case: str
    kpi: str
    expected: float | None
    got: float | None
    abs_tol: float
    rel_tol: float
    verdict: str  # ok | DRIFT | MISSING | FAILED | new

    @property
    def passed(self) -> bool:
        return self.verdict in {"ok", "new"}


def load_cases(root: Path, names: list[str] | None = None) -> tuple[list[Case], list[str]]:
    """Every case folder under ``root`` (or only ``names``); every problem as one message each."""
    errors: list[str] = []
    folders = sorted(p for p in Path(root).iterdir() if (p / SCENARIO_FILE).is_file()) \
        if Path(root).is_dir() else []
    if not Path(root).is_dir():
        errors.append(f"{root}: not a folder")
    if names:
        known = {p.name for p in folders}
        errors += [f"{root}: no case '{n}' (cases: {', '.join(sorted(known))})" for n in names
                   if n not in known]
        folders = [p for p in folders if p.name in names]
    cases = []
    for folder in folders:
        try:
            scn = load_scenario(folder / SCENARIO_FILE)
        except ScenarioError as exc:
            errors.append(f"{folder.name}: {exc}")
            continue
        golden: dict[str, dict[str, float]] = {}
        command = "run"
        gpath = folder / GOLDEN_FILE
        if gpath.is_file():
            try:
                doc = json.loads(gpath.read_text())
                golden = doc["kpis"]
                command = doc.get("command", "run")
                for spec in golden.values():
                    float(spec["expected"])
            except (ValueError, KeyError, TypeError) as exc:
                errors.append(f"{folder.name}/{GOLDEN_FILE}: not a golden KPI file ({exc!r})")
                continue
            if command not in COMMANDS:
                errors.append(f"{folder.name}/{GOLDEN_FILE}: command: {command!r} is not one of "
                              f"{', '.join(COMMANDS)}")
                continue
        cases.append(Case(name=folder.name, folder=folder, scenario=scn.model_dump(mode="json"),
                          golden=golden, command=command))
    if not folders and not errors:
        errors.append(f"{root}: no regression cases (folders with {SCENARIO_FILE})")
    return cases, errors


def _numeric(value: Any) -> bool:
    """KPIs are numbers; a study's kpis.json also names its scenario (text, not compared)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def compare(case: str, golden: dict[str, dict[str, float]], got: dict[str, float]) -> list[Check]:
    checks = []
    for kpi, spec in sorted(golden.items()):
        exp = float(spec["expected"])
        a = float(spec.get("abs_tol", DEFAULT_ABS_TOL))
        r = float(spec.get("rel_tol", DEFAULT_REL_TOL))
        value = got.get(kpi)
        if value is None:
            checks.append(Check(case, kpi, exp, None, a, r, "MISSING"))
            continue
        ok = math.isfinite(value) and abs(value - exp) <= a + r * abs(exp)
        checks.append(Check(case, kpi, exp, float(value), a, r, "ok" if ok else "DRIFT"))
    checks += [Check(case, k, None, float(v), DEFAULT_ABS_TOL, DEFAULT_REL_TOL, "new")
               for k, v in sorted(got.items())
               if k not in golden and k not in IGNORED and _numeric(v)]
    return checks


def _updated(golden: dict[str, dict[str, float]], got: dict[str, float]) -> tuple[dict[str, Any], list[str]]:
    new: dict[str, Any] = {}
    changes = []
    for k, v in sorted(got.items()):
        if k in IGNORED or not _numeric(v):
            continue
        old = golden.get(k)
        default = (0.0, 0.0) if k in EXACT else (DEFAULT_ABS_TOL, DEFAULT_REL_TOL)
        tol = {"abs_tol": default[0], "rel_tol": default[1]} if old is None else \
            {"abs_tol": old.get("abs_tol", DEFAULT_ABS_TOL), "rel_tol": old.get("rel_tol", DEFAULT_REL_TOL)}
        new[k] = {"expected": v, **tol}
        if old is None:
            changes.append(f"{k}: added = {v!r}")
        elif float(old["expected"]) != v:
            changes.append(f"{k}: {old['expected']!r} -> {v!r}")
    changes += [f"{k}: removed (was {golden[k]['expected']!r})" for k in sorted(golden) if k not in got]
    return new, changes


def run_regress(root: Path, *, out_dir: Path, workers: int, names: list[str] | None = None,
                update: bool = False, timeout_s: float = DEFAULT_TIMEOUT_S,
                echo: Any = print) -> tuple[list[Check], list[str]]:
    """Run the cases; return ``(checks, problems)``; with ``update`` rewrite the goldens."""
    from twin.results import check_table, write_json_atomic
    from twin.sweep.backends import run_local
    from twin.sweep.runner import RunTask

    cases, problems = load_cases(root, names)
    if problems:
        return [], problems
    out = Path(out_dir).resolve()
    tasks = [RunTask(run_id=c.name, run_dir=str(out / c.name), scenario=c.scenario,
                     timeout_s=timeout_s, scenario_path=str(c.folder / SCENARIO_FILE), command=c.command)
             for c in cases]
    echo(f"[regress] {len(cases)} case(s) on {min(workers, len(cases))} worker(s): "
         + ", ".join(c.name for c in cases), file=sys.stderr)
    records = {r["run_id"]: r for r in run_local(tasks, workers=workers, cancel=threading.Event())}
    checks: list[Check] = []
    for c in cases:
        rec = records[c.name]
        if rec["status"] != "complete":
            problems.append(f"{c.name}: run {rec['status']}: {rec['error']} (log: {out / c.name / 'run.log'})")
            checks.append(Check(c.name, "(run)", None, None, 0.0, 0.0, "FAILED"))
            continue
        corrupt = [e for e in map(check_table, sorted((out / c.name).glob("*.parquet"))) if e]
        if corrupt:  # page checksums (twin/results.py): a damaged table is named, not compared
            problems += [f"{c.name}: {e}" for e in corrupt]
        got = json.loads((out / c.name / "kpis.json").read_text())
        if update:
            new, changes = _updated(c.golden, got)
            write_json_atomic({"scenario": SCENARIO_FILE, "command": c.command, "kpis": new},
                              c.folder / GOLDEN_FILE)
            echo(f"[regress] {c.name}: " + (f"{len(changes)} change(s)" if changes else "unchanged"))
            for line in changes:
                echo(f"    {line}")
            c = Case(c.name, c.folder, c.scenario, new, c.command)
        elif not c.golden:
            problems.append(f"{c.name}: no {GOLDEN_FILE}; create it with `twin regress --update`")
        checks += compare(c.name, c.golden, got)
    return checks, problems


def table(checks: list[Check]) -> str:
    def f(x: float | None) -> str:
        return "-" if x is None else f"{x:.10g}"

    head = ("case", "kpi", "expected", "got", "tolerance", "verdict")
    rows = [(c.case, c.kpi, f(c.expected), f(c.got),
             f"±({c.abs_tol:g} + {c.rel_tol:g}·|exp|)", c.verdict) for c in checks]
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(head)]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
                     for r in [head, *rows])


def add_parser(sub: Any) -> None:
    r = sub.add_parser("regress", help="run the regression scenarios and compare KPIs with goldens")
    r.add_argument("dir", type=Path, nargs="?", default=None,
                   help="folder of regression cases (default: scenarios/regression, or the cases "
                   "installed with the package)")
    r.add_argument("--case", action="append", default=None, metavar="NAME", help="only this case (repeatable)")
    r.add_argument("--out", type=Path, default=Path("results/regress"), help="where the runs go")
    r.add_argument("--workers", type=int, default=None, help="cases at a time (default: CPUs)")
    r.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS",
                   help="per-case timeout")
    r.add_argument("--update", action="store_true", help="rewrite the golden KPI files from these runs")
    r.set_defaults(handler=_cmd_regress)


def _cmd_regress(args: argparse.Namespace) -> int:
    from twin.sweep.orchestrate import default_workers

    if args.dir is None:
        from twin.tools import regression_dir

        local = Path("scenarios/regression")
        args.dir = local if local.is_dir() else regression_dir()
    try:
        checks, problems = run_regress(args.dir, out_dir=args.out, names=args.case,
                                       workers=args.workers or default_workers(),
                                       update=args.update, timeout_s=args.timeout)
    except KeyboardInterrupt:
        print("\ntwin: regress interrupted", file=sys.stderr)
        return 130
    if checks:
        print(table(checks))
    drift = [c for c in checks if not c.passed]
    for c in drift:
        if c.verdict in {"DRIFT", "MISSING"}:
            print(f"twin: regress: {c.case}: {c.kpi} {c.verdict.lower()}: expected {c.expected!r}, "
                  f"got {c.got!r}", file=sys.stderr)
    for p in problems:
        print(f"twin: regress: {p}", file=sys.stderr)
    if problems and not checks:
        return 2
    if drift or problems:
        print(f"twin: regress: FAILED ({len(drift)} KPI check(s) failed, {len(problems)} problem(s))",
              file=sys.stderr)
        return 1
    print(f"regress: ok ({len(checks)} KPI checks in {len({c.case for c in checks})} case(s))")
    return 0
