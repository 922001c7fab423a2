"""The suite's numba warm-up list (tests/_kernel_warmup.py) is consistent with its module list."""

from __future__ import annotations

import _kernel_warmup as warmup


def test_every_warm_up_test_runs_in_the_kernel_tail() -> None:
    # a warm-up test outside the kernel modules would run before the wait, compiling twice
    outside = [t for t in warmup.WARM_TESTS if not warmup.is_kernel_module(t)]
    assert outside == []
    assert len(set(warmup.WARM_TESTS)) == len(warmup.WARM_TESTS)
    assert not warmup.is_kernel_module("tests/chain/test_equivalence.py::test_random_books_match_reference")
