"""SimBench nets kept on disk: building one from simbench's CSV files takes ~4 s, loading
its pickle ~50 ms, and every fresh process (a sweep's runs, dask workers, ``twin run``)
would otherwise build it again.

The pickle lives in the project's cache folder (``.cache/simbench/``, see
:func:`twin.tools.cache_dir`), keyed by the grid code and the simbench, pandapower and
Python versions; a missing, unreadable or stale file is rebuilt (``GRIDTWIN_SIMBENCH_CACHE=0``
turns the cache off). Written atomically, so
processes building the same net at once never read half a file.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import tempfile
from pathlib import Path
from typing import Any

__all__ = ["simbench_net"]


def _path(code: str) -> Path:
    import pandapower
    import simbench

    from twin.tools import cache_dir

    key = f"{code}-sb{simbench.__version__}-pp{pandapower.__version__}-py{sys.version_info[0]}{sys.version_info[1]}"
    return cache_dir() / "simbench" / f"{key}.pickle"


def simbench_net(code: str) -> Any:
    """SimBench grid ``code`` as ``simbench.get_simbench_net`` builds it (from the disk cache
    when there); errors of an unknown code are simbench's own."""
    import simbench as sb

    if os.environ.get("GRIDTWIN_SIMBENCH_CACHE", "1") == "0":  # the cache turned off
        return sb.get_simbench_net(code)
    path = _path(code)
    with contextlib.suppress(OSError, pickle.UnpicklingError, EOFError, AttributeError, ImportError):
        with path.open("rb") as f:
            return pickle.load(f)
    net = sb.get_simbench_net(code)
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                pickle.dump(net, f, protocol=pickle.HIGHEST_PROTOCOL)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return net
