"""numba's disk cache keeps every kernel variant apart (no compile: only the cache names)."""

from __future__ import annotations

from twin.grid import _der_kernels as kern


def test_serial_and_parallel_der_kernels_have_their_own_cache_entries() -> None:
    # numba names a cache entry by module, qualified name and line; its index keys hold
    # neither ``parallel`` nor the dispatcher: a plain copy shared the parallel build's entry
    for par, ser in ((kern.targets, kern.targets_ser), (kern.device_newton, kern.device_newton_ser)):
        assert par.targetoptions.get("parallel") and not ser.targetoptions.get("parallel")
        assert ser._cache._impl.filename_base != par._cache._impl.filename_base
        assert ser.py_func.__code__ is par.py_func.__code__  # the same source, one definition
