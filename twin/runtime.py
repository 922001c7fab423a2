"""Process-wide runtime set-up: numba's threading layer, OpenMP spinning and glibc's malloc.

Nothing in ``twin`` changes process state when it is imported. A program that runs the
twin's numeric kernels calls :func:`configure` once, before the first batch power flow: the
``twin`` command does (:func:`twin.cli.main`), and so does every script in ``bench/``. A
library user who never calls it gets correct results with numba's own default layer; the
settings below only make the kernels faster or steadier on a shared machine.

Threading layer. numba's OpenMP layer keeps its workers spinning after a parallel region;
'workqueue' puts them to sleep. Measured on the 2-vCPU machine, case33bw B=1000 (bench/pf.py):

- idle machine: workqueue 2.4 µs/pf, omp 1.4-1.7 µs/pf (a sleeping vCPU of a VM takes long
  to wake: the second worker joins late in short kernels);
- one core busy elsewhere: workqueue 2.8 µs/pf, omp 15.8 µs/pf (the spinning worker starves
  the serial work between calls), omp with GOMP_SPINCOUNT=30000 5.2 µs/pf.

So the default is 'workqueue' (robust where the machine is shared: CI, a laptop, the twin's
other processes); a dedicated sweep or benchmark machine asks for 'omp', whose spinning is
then bounded (GOMP_SPINCOUNT=30000 unless the environment sets it).

Malloc tuning. A batch solve returns about 10 arrays of B x n values. By default glibc serves
each from a fresh ``mmap`` (or trims the heap after it is freed), so every solve page-faults
its results in again: on small nets that costs as much as the power flows (case33bw, B=1000:
about 1 µs of 2-3 µs per flow). With the mmap threshold at 64 MiB and the trim threshold at
256 MiB, freed result arrays are reused by the next solve. Process-wide (it also helps any
other numpy code); no effect where the C library is not glibc.

Arrow's memory without transparent huge pages. pyarrow's default pool (its own mimalloc)
reserves 1 GiB arenas and asks for transparent huge pages on them (``MADV_HUGEPAGE``). Where
the kernel's THP defrag is ``madvise`` (a common default), every first touch of such memory
may stall in direct compaction to find a free 2 MiB page: reading a town day's 481 MB of
tables back took 10-15 s in a fresh process (5-8 s of it system time) against 2 s without
THP, on the 2-vCPU machine under load. So the malloc tuning also switches mimalloc's THP off
(``MIMALLOC_ALLOW_THP=0``, read when pyarrow's library loads); when pyarrow was imported
before :func:`configure`, Arrow uses the system pool (the tuned glibc heap) instead.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Literal

__all__ = ["RuntimeSettings", "ThreadingLayer", "configure"]

ThreadingLayer = Literal["workqueue", "omp", "tbb", "default"]
_LAYERS: tuple[str, ...] = ("workqueue", "omp", "tbb", "default")
_GOMP_SPINCOUNT = "30000"


@dataclass(frozen=True)
class RuntimeSettings:
    """What :func:`configure` set: the numba threading layer and whether malloc was tuned."""

    threading: str
    malloc_tuned: bool
    #: Arrow's memory: "mimalloc-no-thp", "system" (pyarrow was imported first) or "" (untouched)
    arrow_pool: str = ""


def configure(*, threading: ThreadingLayer | None = None, malloc_tune: bool | None = None) -> RuntimeSettings:
    """Set the process-wide runtime options of the numeric kernels; call before the first solve.

    Args:
        threading: numba threading layer. ``None`` keeps ``NUMBA_THREADING_LAYER`` from the
            environment, else ``'workqueue'``. ``'omp'`` bounds OpenMP spinning
            (``GOMP_SPINCOUNT=30000`` unless the environment sets it).
        malloc_tune: keep freed memory in glibc's heap (see the module docstring). ``None``
            tunes unless the environment sets ``TWIN_MALLOC_TUNE=0``.

    Returns:
        The settings in effect. numba reads the layer at its first parallel launch: a call
        after that launch changes nothing for the running process.

    Raises:
        ValueError: an unknown threading layer (from the argument or the environment).
    """
    layer = threading if threading is not None else os.environ.get("NUMBA_THREADING_LAYER", "workqueue")
    if layer not in _LAYERS:
        raise ValueError(f"threading layer: {layer!r} is not one of {', '.join(_LAYERS)}")
    # Set in the environment (numba reads it on import, and worker processes inherit it) and,
    # when numba is already imported, in its live config.
    os.environ["NUMBA_THREADING_LAYER"] = layer
    if layer == "omp":
        os.environ.setdefault("GOMP_SPINCOUNT", _GOMP_SPINCOUNT)
    config = sys.modules.get("numba.core.config")
    if config is not None:
        config.THREADING_LAYER = layer  # type: ignore[attr-defined]
    if malloc_tune is None:
        malloc_tune = os.environ.get("TWIN_MALLOC_TUNE", "1") != "0"
    tuned = _keep_freed_memory() if malloc_tune else False
    return RuntimeSettings(threading=layer, malloc_tuned=tuned,
                           arrow_pool=_arrow_without_huge_pages() if malloc_tune else "")


def _arrow_without_huge_pages() -> str:
    """No transparent huge pages for Arrow's buffers (see the module docstring); what Arrow
    uses, or "" when the environment asks mimalloc for them (``MIMALLOC_ALLOW_THP=1``)."""
    if os.environ.get("MIMALLOC_ALLOW_THP", "0") != "0":
        return ""  # the environment asks for them
    if os.environ.get("ARROW_DEFAULT_MEMORY_POOL", "mimalloc") != "mimalloc":
        return ""  # the environment chose another pool
    if "pyarrow" not in sys.modules or "MIMALLOC_ALLOW_THP" in os.environ:
        os.environ["MIMALLOC_ALLOW_THP"] = "0"  # mimalloc reads it when the library loads
        return "mimalloc-no-thp"
    import pyarrow as pa  # loaded already: mimalloc's options are read

    pa.set_memory_pool(pa.system_memory_pool())
    return "system"


def _keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds (64 MiB, 256 MiB); False where there is no mallopt."""
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        mallopt = libc.mallopt if libc is not None else None
    except (OSError, AttributeError):
        return False
    if mallopt is None:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3  # from glibc's malloc.h
    mallopt(m_mmap_threshold, 64 << 20)
    mallopt(m_trim_threshold, 256 << 20)
    return True
