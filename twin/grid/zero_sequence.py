"""Assumed zero-sequence data for feeders that do not carry any (SimBench, CIGRE LV).

A three-phase solve needs each line's zero-sequence impedance and capacitance, each
transformer's vector group and zero-sequence short-circuit voltage, and the upstream
grid's short-circuit impedance. SimBench and CIGRE give only the positive sequence. A
scenario may state what to assume instead (``grid.zero_sequence``)::

    grid:
      kind: simbench
      simbench_code: 1-LV-semiurb4--0-sw
      phases: 3
      zero_sequence: {r0_per_r1: 4.0, x0_per_x1: 4.0}

The defaults are the textbook values of a four-core LV cable whose fourth core is the
neutral (NAYY 4x150 SE: R0 = 0.82 ohm/km = 4.0 R1, X0 = 0.32 ohm/km = 4.0 X1), a
transformer whose zero-sequence short-circuit voltage equals the positive one, with its
vector group read from the standard type's name ("0.4 MVA 20/0.4 kV Dyn5 ASEA" -> Dyn)
and Dyn when the name has none, and an upstream grid of 100 MVA short-circuit power with
R/X = 0.1 and X0/X = 1. Only missing values are filled: data a net carries is kept.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ZeroSequenceSpec", "fill_zero_sequence"]

_VECTOR_GROUP = re.compile(r"\b(Dyn|Yyn|YNyn|YNd|Yzn|Dy|Yy|Yd|Dd)\d*\b")
_SUPPORTED_GROUPS = ("Dyn", "Yyn", "YNyn", "YNd", "Yzn")


class ZeroSequenceSpec(BaseModel):
    """What to assume where the feeder has no zero-sequence data (see module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    r0_per_r1: Annotated[float, Field(gt=0)] = 4.0
    x0_per_x1: Annotated[float, Field(gt=0)] = 4.0
    c0_per_c1: Annotated[float, Field(ge=0)] = 1.0
    #: None: read from the transformer's standard type name, else Dyn
    vector_group: str | None = None
    vk0_per_vk: Annotated[float, Field(gt=0)] = 1.0
    ext_grid_s_sc_mva: Annotated[float, Field(gt=0)] = 100.0
    ext_grid_rx: Annotated[float, Field(ge=0)] = 0.1
    ext_grid_x0x: Annotated[float, Field(gt=0)] = 1.0
    ext_grid_r0x0: Annotated[float, Field(ge=0)] = 0.1


def _group(std_type: Any, assumed: str | None) -> str:
    if assumed is not None:
        return assumed
    m = _VECTOR_GROUP.search(str(std_type or ""))
    return m.group(1) if m and m.group(1) in _SUPPORTED_GROUPS else "Dyn"


def _fill(df: Any, column: str, values: Any) -> None:
    """Set ``column`` where it is missing (absent column, NaN or None)."""
    values = np.broadcast_to(np.asarray(values, dtype=object), (len(df),))
    if column not in df.columns:
        df[column] = values
        return
    missing = df[column].isna().to_numpy()
    if missing.any():
        df[column] = df[column].astype(object)
        df.loc[missing, column] = values[missing]


def fill_zero_sequence(net: Any, spec: ZeroSequenceSpec) -> None:
    """Fill ``net``'s missing zero-sequence data in place with the assumptions of ``spec``."""
    if len(net.line):
        line = net.line
        _fill(line, "r0_ohm_per_km", line.r_ohm_per_km.to_numpy(float) * spec.r0_per_r1)
        _fill(line, "x0_ohm_per_km", line.x_ohm_per_km.to_numpy(float) * spec.x0_per_x1)
        _fill(line, "c0_nf_per_km", line.c_nf_per_km.to_numpy(float) * spec.c0_per_c1)
        for col in ("r0_ohm_per_km", "x0_ohm_per_km", "c0_nf_per_km"):
            line[col] = line[col].astype(float)
    if len(net.trafo):
        trafo = net.trafo
        groups = [_group(st, spec.vector_group) for st in trafo.std_type]
        _fill(trafo, "vector_group", groups)
        _fill(trafo, "vk0_percent", trafo.vk_percent.to_numpy(float) * spec.vk0_per_vk)
        _fill(trafo, "vkr0_percent", trafo.vkr_percent.to_numpy(float) * spec.vk0_per_vk)
        _fill(trafo, "mag0_percent", 100.0)
        _fill(trafo, "mag0_rx", 0.0)
        _fill(trafo, "si0_hv_partial", 0.9)
        for col in ("vk0_percent", "vkr0_percent", "mag0_percent", "mag0_rx", "si0_hv_partial"):
            trafo[col] = trafo[col].astype(float)
        trafo["vector_group"] = trafo["vector_group"].astype(str)
    eg = net.ext_grid
    _fill(eg, "s_sc_max_mva", spec.ext_grid_s_sc_mva)
    _fill(eg, "rx_max", spec.ext_grid_rx)
    _fill(eg, "x0x_max", spec.ext_grid_x0x)
    _fill(eg, "r0x0_max", spec.ext_grid_r0x0)
    for col in ("s_sc_max_mva", "rx_max", "x0x_max", "r0x0_max"):
        eg[col] = eg[col].astype(float)
