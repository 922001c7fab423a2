"""From a sweep file to its validated variants: every problem is listed before any run starts."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from twin.scenario import ScenarioError, scenario_from_dict
from twin.sweep.design import design_points
from twin.sweep.paths import check_path, with_values
from twin.sweep.spec import Error, Parameter, SweepError, SweepSpec, parse_parameters, parse_spec

__all__ = ["SweepPlan", "Variant", "load_sweep", "plan_sweep"]

#: At most this many problems are listed (the rest are counted).
MAX_ERRORS = 40


@dataclass(frozen=True)
class Variant:
    """One run of the sweep. ``run_id`` is derived from the scenario's digest, so it is stable
    when the spec grows (resume reruns nothing that already ran)."""

    run_id: str
    params: dict[str, Any]
    seed: int
    scenario: dict[str, Any]  # the full validated scenario (JSON-able), defaults included
    digest: str


@dataclass(frozen=True)
class SweepPlan:
    spec: SweepSpec
    parameters: list[Parameter]
    variants: list[Variant]
    source: str
    merged: int = 0  # design points that were duplicates of others
    base_name: str = field(default="")


def _base(spec: SweepSpec, root: Path) -> tuple[dict[str, Any] | None, list[Error]]:
    if isinstance(spec.base, dict):
        return dict(spec.base), []
    path = (root / spec.base).resolve()
    if not path.is_file():
        return None, [("base", f"scenario file not found: {path}")]
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        return None, [("base", f"{path.name}: not valid YAML: {exc}")]
    if not isinstance(data, dict):
        return None, [("base", f"{path.name}: top level must be a mapping")]
    return data, []


def _scenario_errors(data: dict[str, Any], prefix: str) -> tuple[Any, list[Error]]:
    try:
        return scenario_from_dict(data), []
    except ScenarioError as exc:
        return None, [(prefix, f"{p}: {m}" if p else m) for p, m in exc.errors]


def plan_sweep(data: Any, *, source: str = "<sweep>", root: Path | None = None) -> SweepPlan:
    """Validate a spec mapping and build every variant; raise :class:`SweepError` listing all problems."""
    spec, errors = parse_spec(data)
    if spec is None:
        raise SweepError(source, errors)
    params, errors = parse_parameters(spec)
    base, base_errs = _base(spec, root or Path.cwd())
    errors += base_errs
    if base is not None and not base_errs:
        # bad set paths are already reported; apply the good ones and go on checking
        base = with_values(base, {k: v for k, v in spec.set.items() if check_path(k) is None})
        base_scn, errs = _scenario_errors(base, "base (with set)")
        # a broken base breaks every variant: report it once, not per variant
        if errs:
            raise SweepError(source, errors + errs)
    if base is None:
        raise SweepError(source, errors)
    seeds = (list(range(base_scn.seed, base_scn.seed + spec.seeds)) if isinstance(spec.seeds, int)
             else list(spec.seeds))
    # each value alone: a wrong type is named once, by parameter and value
    bad_values: set[tuple[str, str]] = set()
    for p in params:
        for v in p.values or ():
            _, errs = _scenario_errors(with_values(base, {p.path: v}), f"parameters.{p.path}")
            for _, msg in errs:
                bad_values.add((p.path, repr(v)))
                errors.append((f"parameters.{p.path}", f"value {v!r}: {msg}"))
    variants: list[Variant] = []
    seen: set[str] = set()
    merged = 0
    for point in design_points(params, spec.design):
        if any((k, repr(v)) in bad_values for k, v in point.items()):
            continue
        for seed in seeds:
            label = ", ".join(f"{k}={v!r}" for k, v in {**point, "seed": seed}.items())
            scn, errs = _scenario_errors(with_values(base, {**point, "seed": seed}), f"variant ({label})")
            errors += errs
            if scn is None:
                continue
            digest = scn.digest()
            if digest in seen:
                merged += 1
                continue
            seen.add(digest)
            variants.append(Variant(run_id=digest[:12], params=point, seed=seed,
                                    scenario=scn.model_dump(mode="json"), digest=digest))
        if len(errors) > MAX_ERRORS:
            break
    if not errors and not variants:
        errors.append(("design", "empty design: no variants"))
    if errors:
        extra = len(errors) - MAX_ERRORS
        shown = errors[:MAX_ERRORS] + ([("", f"... and {extra} more")] if extra > 0 else [])
        raise SweepError(source, shown)
    return SweepPlan(spec=spec, parameters=params, variants=variants, source=source,
                     merged=merged, base_name=base_scn.name)


def load_sweep(path: str | Path) -> SweepPlan:
    """Read a sweep YAML file and plan it (the base path is relative to the file)."""
    p = Path(path)
    if not p.is_file():
        raise SweepError(str(p), [("", "file not found")])
    try:
        data = yaml.safe_load(p.read_text())
    except yaml.YAMLError as exc:
        raise SweepError(p.name, [("", f"not valid YAML: {exc}")]) from None
    return plan_sweep(data, source=p.name, root=p.parent)
