"""pytest plugin: log every numba compile of the session (how ``_kernel_warmup.WARM_TESTS`` was found).

``TWIN_NUMBA_COMPILE_LOG=1 NUMBA_CACHE_DIR=$(mktemp -d) .venv/bin/python -m pytest`` (a cold
cache; tests/conftest.py registers this plugin) writes ``.cache/numba_compiles.json``: per
compile the function, its argument types, the seconds and CPU seconds (including the
functions it compiles inside; CPU seconds hardly grow with the machine's load) and the test
that triggered it; per twin dispatcher its signatures. The first test to compile each top-level function (``depth`` 0) belongs in the warm-up list.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

import pytest

_now: dict[str, str] = {"test": "<collection>"}
_events: list[dict[str, Any]] = []
_starts: list[tuple[float, float]] = []


def pytest_configure(config: pytest.Config) -> None:
    from numba.core import event

    class _Log(event.Listener):  # type: ignore[misc]
        def on_start(self, ev: Any) -> None:
            _starts.append((time.perf_counter(), time.process_time()))

        def on_end(self, ev: Any) -> None:
            t0, c0 = _starts.pop()
            fn = ev.data["dispatcher"].py_func
            _events.append({"fn": f"{fn.__module__}.{fn.__qualname__}", "args": str(ev.data["args"]),
                            "s": round(time.perf_counter() - t0, 2),
                            "cpu_s": round(time.process_time() - c0, 2), "depth": len(_starts), "test": _now["test"]})

    event.register("numba:compile", _Log())


def pytest_runtest_setup(item: pytest.Item) -> None:
    _now["test"] = item.nodeid


def pytest_sessionfinish(session: pytest.Session) -> None:
    from numba.core.registry import CPUDispatcher

    sigs = {f"{v.py_func.__module__}.{v.py_func.__qualname__}": [str(s) for s in v.signatures]
            for name, mod in list(sys.modules.items()) if name.startswith("twin")
            for v in list(vars(mod).values()) if isinstance(v, CPUDispatcher)}
    out = session.config.rootpath / ".cache" / "numba_compiles.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"compiles": _events, "signatures": sigs}, indent=1))
