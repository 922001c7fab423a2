"""Result and option types of the batch power flow (public via :mod:`twin.grid.pf`), and the
preallocated result arrays that the solve paths fill group by group.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from twin.grid.arrays import GridArrays

__all__ = [
    "BoolArray", "ComplexArray", "FloatArray", "GridFormingUnit", "IntArray", "PowerFlowResult", "ResultArrays",
]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]
ComplexArray = NDArray[np.complex128]


# --------------------------------------------------------------------------- public types


@dataclass(frozen=True)
class GridFormingUnit:
    """A storage or sgen that can form an island (voltage and angle reference).

    It is the slack of any island that has no in-service ext_grid; in an island with an
    ext_grid it behaves as an ordinary PQ injection. As slack it balances the island within
    ``p_min_mw <= p <= p_max_mw`` (generation-positive) and ``|s| <= s_max_mva``; beyond
    these limits the island collapses and is reported de-energized.
    """

    element: Literal["storage", "sgen"]
    index: int
    vm_pu: float = 1.0
    va_degree: float = 0.0
    p_min_mw: float = -math.inf
    p_max_mw: float = math.inf
    s_max_mva: float = math.inf


@dataclass(frozen=True, eq=False)
class PowerFlowResult:
    """Results of one batch; every array has the batch size B as first dimension.

    Bus arrays follow ``net.bus.index`` order, branch arrays the row order of ``net.line``
    and ``net.trafo`` (``p_from``/``q_from`` at the line's from bus, the trafo's hv bus).
    De-energized buses have ``vm_pu`` 0 and ``energized`` False; branches out of service or
    de-energized carry zero flow. Scenarios with ``converged`` False have NaN voltages,
    flows and reference-unit powers.
    """

    vm_pu: FloatArray  # (B, n_bus)
    va_degree: FloatArray  # (B, n_bus)
    energized: BoolArray  # (B, n_bus)
    line_loading_percent: FloatArray  # (B, n_line)
    line_p_from_mw: FloatArray
    line_q_from_mvar: FloatArray
    line_pl_mw: FloatArray
    trafo_loading_percent: FloatArray  # (B, n_trafo)
    trafo_p_hv_mw: FloatArray
    trafo_q_hv_mvar: FloatArray
    trafo_pl_mw: FloatArray
    pl_mw: FloatArray  # (B,) active losses of all lines and trafos
    ext_grid_p_mw: FloatArray  # (B, n_ext_grid), supplied power
    ext_grid_q_mvar: FloatArray
    grid_forming_p_mw: FloatArray  # (B, n_grid_forming), supplied power when acting as slack
    grid_forming_q_mvar: FloatArray
    converged: BoolArray  # (B,)
    iterations: IntArray  # (B,)

    @property
    def batch_size(self) -> int:
        """Number of scenarios B."""
        return int(self.converged.shape[0])



_NO_ZIP = np.zeros((0, 4))


class ResultArrays:
    """Preallocated result arrays, filled group by group."""

    def __init__(self, n_b: int, ga: GridArrays, n_gf: int) -> None:
        self.vm = np.empty((n_b, ga.n_bus))
        self.va = np.empty((n_b, ga.n_bus))
        self.energized = np.empty((n_b, ga.n_bus), dtype=bool)
        shape = (n_b, ga.n_branch)
        self.p_f = np.empty(shape)
        self.q_f = np.empty(shape)
        # one column more: the post-processing writes each row's total losses there (no
        # second pass over the B x n_branch losses)
        self.pl = np.empty((n_b, ga.n_branch + 1))
        self.loading = np.empty(shape)
        self.eg = np.zeros((n_b, ga.ext_grid_node.shape[0]), dtype=np.complex128)
        self.gf = np.zeros((n_b, n_gf), dtype=np.complex128)
        self.conv = np.zeros(n_b, dtype=bool)
        self.iters = np.zeros(n_b, dtype=np.int64)
        self.finite = np.ones(n_b, dtype=bool)  # inputs checked by the chunked kernel

    def results(self) -> tuple[Any, ...]:
        """The kernels' ``res`` tuple (vm, va, energized, p_from, q_from, losses, loading)."""
        return self.vm, self.va, self.energized, self.p_f, self.q_f, self.pl, self.loading

    def result(self, ga: GridArrays) -> PowerFlowResult:
        nl = ga.n_line
        return PowerFlowResult(
            vm_pu=self.vm,
            va_degree=self.va,
            energized=self.energized,
            line_loading_percent=self.loading[:, :nl],
            line_p_from_mw=self.p_f[:, :nl],
            line_q_from_mvar=self.q_f[:, :nl],
            line_pl_mw=self.pl[:, :nl],
            trafo_loading_percent=self.loading[:, nl:],
            trafo_p_hv_mw=self.p_f[:, nl:],
            trafo_q_hv_mvar=self.q_f[:, nl:],
            trafo_pl_mw=self.pl[:, nl:-1],
            pl_mw=self.pl[:, -1].copy(),
            ext_grid_p_mw=self.eg.real.copy(),
            ext_grid_q_mvar=self.eg.imag.copy(),
            grid_forming_p_mw=self.gf.real.copy(),
            grid_forming_q_mvar=self.gf.imag.copy(),
            converged=self.conv,
            iterations=self.iters,
        )
