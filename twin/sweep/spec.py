"""The sweep spec (YAML): a base scenario, fixed overrides, swept parameters, a design, seeds.

```yaml
name: pv_ev
base: ../quickstart.yaml            # a scenario file (relative to this file) or an inline mapping
set: {duration_s: 3600, market.ledger: reference}    # fixed for every variant
parameters:                         # field path -> values
  agents.households.pv.share: [0.2, 0.5, 0.8]        # a list
  agents.evs.count: {start: 0, stop: 10, step: 5}    # an inclusive range: 0, 5, 10
  market.retail_price_per_mwh: {low: 250, high: 350} # an interval (random / lhs designs only)
design: {kind: grid}                # grid (full factorial) | random | lhs, with samples and seed
seeds: 2                            # seeds per point (base seed, +1, ...) or a list of seeds
timeout_s: 600                      # per run
```

Validation collects every problem with its path (``parameters.agents.pv.share: ...``) and
raises them together as :class:`SweepError`, like :class:`twin.scenario.ScenarioError`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from twin.sweep.paths import check_path

__all__ = ["DesignSpec", "Parameter", "SweepError", "SweepSpec", "parse_parameters", "parse_spec"]

Error = tuple[str, str]


class SweepError(ValueError):
    """Every problem of a sweep spec; ``errors`` holds one ``(path, message)`` each."""

    def __init__(self, source: str, errors: list[Error]) -> None:
        self.source = source
        self.errors = errors
        lines = [f"{source}: {p}: {m}" if p else f"{source}: {m}" for p, m in errors]
        super().__init__(f"{len(errors)} error(s) in sweep spec\n" + "\n".join(lines))


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DesignSpec(_Spec):
    """How points are chosen: the full grid, or ``samples`` random / Latin-hypercube points."""

    kind: Literal["grid", "random", "lhs"] = "grid"
    samples: Annotated[int, Field(gt=0, le=1_000_000)] | None = None
    seed: Annotated[int, Field(ge=0)] = 0


class SweepSpec(_Spec):
    name: Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")]
    description: str = ""
    base: str | dict[str, Any]
    set: dict[str, Any] = {}
    parameters: dict[str, Any] = {}
    design: DesignSpec = DesignSpec()
    seeds: Annotated[int, Field(gt=0, le=100_000)] | list[Annotated[int, Field(ge=0)]] = 1
    timeout_s: Annotated[float, Field(gt=0)] = 1800.0


@dataclass(frozen=True)
class Parameter:
    """One swept field: a finite list of ``values``, or an interval ``[low, high]``."""

    path: str
    values: tuple[Any, ...] | None = None
    low: float | None = None
    high: float | None = None
    integer: bool = False

    @property
    def finite(self) -> bool:
        return self.values is not None


_TYPE_TAG = re.compile(r"^(constrained-)?(int|float|str|bool|list|dict|function-\w+)(\[.*\])?$")


def _loc(loc: tuple[Any, ...]) -> str:
    """The field path, without pydantic's union-member tags (``seeds.constrained-int``)."""
    return ".".join(str(p) for p in loc if not (isinstance(p, str) and _TYPE_TAG.match(p)))


def parse_spec(data: Any) -> tuple[SweepSpec | None, list[Error]]:
    """Validate the structure of a spec mapping; return ``(spec or None, errors)``."""
    if not isinstance(data, dict):
        return None, [("", f"top level must be a mapping, got {type(data).__name__}")]
    try:
        spec = SweepSpec.model_validate(data)
    except ValidationError as exc:
        by_path: dict[str, list[str]] = {}
        paths = [_loc(e["loc"]) for e in exc.errors()]
        for err, path in zip(exc.errors(), paths, strict=True):
            if path != ".".join(map(str, err["loc"])) and any(
                    q.startswith(path + ".") for q in paths):
                continue  # the union member that does not fit; its sibling says what's wrong
            msg = "unknown field" if err["type"] == "extra_forbidden" else str(err["msg"])
            msgs = by_path.setdefault(path, [])
            if msg.removeprefix("Value error, ") not in msgs:
                msgs.append(msg.removeprefix("Value error, "))
        # a union (seeds: count or list) fails once per member: one line, both expectations
        return None, [(path, " or ".join(msgs)) for path, msgs in by_path.items()]
    return spec, []


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


def _range(path: str, raw: dict[str, Any]) -> tuple[Parameter | None, list[Error]]:
    where = f"parameters.{path}"
    start: Any = raw.get("start")
    stop: Any = raw.get("stop")
    step: Any = raw.get("step", 1)
    bad = [k for k, v in (("start", start), ("stop", stop), ("step", step)) if not _is_number(v)]
    if bad:
        return None, [(f"{where}.{k}", "must be a number") for k in bad]
    if step <= 0:
        return None, [(f"{where}.step", "must be positive")]
    if start > stop:
        return None, [(where, f"empty range: start ({start}) is above stop ({stop})")]
    n = math.floor((stop - start) / step + 1e-9) + 1
    integer = all(isinstance(v, int) for v in (start, stop, step))
    values = tuple(start + i * step if integer else round(start + i * step, 12) for i in range(n))
    return Parameter(path=path, values=values), []


def _interval(path: str, raw: dict[str, Any]) -> tuple[Parameter | None, list[Error]]:
    where = f"parameters.{path}"
    low: Any = raw.get("low")
    high: Any = raw.get("high")
    errors = [(f"{where}.{k}", "must be a number") for k, v in (("low", low), ("high", high))
              if not _is_number(v)]
    if errors:
        return None, errors
    if low > high:
        return None, [(where, f"empty interval: low ({low}) is above high ({high})")]
    integer = bool(raw.get("integer", isinstance(low, int) and isinstance(high, int)))
    return Parameter(path=path, low=float(low), high=float(high), integer=integer), []


_FORMS = {frozenset({"values"}), frozenset({"start", "stop"}), frozenset({"start", "stop", "step"}),
          frozenset({"low", "high"}), frozenset({"low", "high", "integer"})}


def _parameter(path: str, raw: Any) -> tuple[Parameter | None, list[Error]]:
    where = f"parameters.{path}"
    if isinstance(raw, dict) and frozenset(raw) not in _FORMS:
        return None, [(where, "expected a list, {values: [...]}, {start, stop, step} or "
                              f"{{low, high}}; got keys {sorted(raw)}")]
    if isinstance(raw, dict) and "values" in raw:
        raw = raw["values"]
    if isinstance(raw, list):
        if not raw:
            return None, [(where, "empty design: no values")]
        return Parameter(path=path, values=tuple(raw)), []
    if isinstance(raw, dict) and "start" in raw:
        return _range(path, raw)
    if isinstance(raw, dict):
        return _interval(path, raw)
    return None, [(where, f"expected a list of values or a mapping, got {type(raw).__name__}")]


def parse_parameters(spec: SweepSpec) -> tuple[list[Parameter], list[Error]]:
    """Check every parameter and fixed path against the Scenario fields and the design."""
    errors: list[Error] = []
    for path in spec.set:
        if (why := check_path(path)) is not None:
            errors.append((f"set.{path}", why))
    params: list[Parameter] = []
    for path, raw in spec.parameters.items():
        if (why := check_path(path)) is not None:
            errors.append((f"parameters.{path}", why))
            continue
        if path in spec.set:
            errors.append((f"parameters.{path}", "also fixed in set; give it in one place"))
        param, errs = _parameter(path, raw)
        errors += errs
        if param is not None:
            params.append(param)
    d = spec.design
    if d.kind == "grid":
        if d.samples is not None:
            errors.append(("design.samples", "only for random and lhs designs (grid runs every point)"))
        errors += [(f"parameters.{p.path}", "an interval {low, high} needs design kind random or "
                    "lhs; use a list or {start, stop, step} for a grid") for p in params if not p.finite]
    elif d.samples is None:
        errors.append(("design.samples", f"a {d.kind} design needs the number of samples"))
    if not spec.parameters and (spec.seeds == 1 or spec.seeds == [] or (isinstance(spec.seeds, list)
                                and len(spec.seeds) <= 1)):
        errors.append(("parameters", "empty design: no parameter to sweep and a single seed "
                       "(use `twin run` for one scenario)"))
    if isinstance(spec.seeds, list) and not spec.seeds:
        errors.append(("seeds", "empty design: no seeds"))
    return params, errors
