"""numba options shared by the batch power flow's kernels."""

from __future__ import annotations

from typing import Any

# error_model="numpy": a float division by zero gives inf/NaN instead of a Python-style
# ZeroDivisionError check, whose branch stopped LLVM from vectorizing every loop with a
# division (the currents conj(S/V), atan2); NaN/inf are caught by the convergence tests.
# fastmath "contract" only allows fused multiply-adds (no reassociation, NaN semantics kept).
# A helper called with differently typed arguments compiles once per type: a prange index is
# uint64, a loop index int64, a literal 0 or False its own Literal type. Calls of helpers from
# kernels therefore pass np.int64(i) and np.bool_(flag) (one build for every caller; the cold
# compile of the warm-up tests went from 200 to 116 s, #22).
OPTS: dict[str, Any] = {"cache": True, "error_model": "numpy", "fastmath": {"contract"}}

K = 32  # scenarios per chunk (lanes) of the parallel kernel

