"""Points of a sweep design: the full grid, seeded random samples, or a Latin hypercube."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from twin.sweep.spec import DesignSpec, Parameter

__all__ = ["design_points"]


def _py(x: Any) -> Any:
    """numpy scalars -> plain Python (for YAML/JSON and pydantic)."""
    return x.item() if isinstance(x, np.generic) else x


def _from_unit(p: Parameter, u: float) -> Any:
    """Map ``u`` in [0, 1) to a value of ``p`` (equal-width bins for discrete values)."""
    if p.values is not None:
        return p.values[min(int(u * len(p.values)), len(p.values) - 1)]
    assert p.low is not None and p.high is not None
    if p.integer:
        lo, hi = math.ceil(p.low), math.floor(p.high)
        return int(min(lo + math.floor(u * (hi - lo + 1)), hi))
    return float(p.low + u * (p.high - p.low))


def design_points(params: list[Parameter], design: DesignSpec) -> list[dict[str, Any]]:
    """Parameter values of every point, in a deterministic order (``design.seed`` for samples)."""
    if not params:
        return [{}]
    if design.kind == "grid":
        values = [p.values or () for p in params]
        return [{p.path: _py(v) for p, v in zip(params, combo, strict=True)}
                for combo in itertools.product(*values)]
    n = design.samples or 0
    rng = np.random.default_rng(design.seed)
    if design.kind == "random":
        u = rng.random((n, len(params)))
    else:
        from scipy.stats import qmc

        u = qmc.LatinHypercube(d=len(params), seed=rng).random(n)
    return [{p.path: _py(_from_unit(p, float(u[i, j]))) for j, p in enumerate(params)}
            for i in range(n)]
