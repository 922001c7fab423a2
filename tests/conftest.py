"""Test-session set-up shared by every test package."""

from __future__ import annotations

import os
from collections.abc import Iterator

import _kernel_warmup as warmup
import pytest

# the warm-up only pays when enough kernel-free tests run first to hide it (a whole-suite run)
_MIN_OVERLAP_TESTS = 200


def pytest_configure(config: pytest.Config) -> None:
    """Run the tests under the twin command's runtime set-up (numba work-queue layer, malloc tuning)."""
    from twin.runtime import configure

    configure()
    if warmup.enabled() and warmup.xdist_controller(config):
        warmup.set_up_controller(config.rootpath)
    if os.environ.get("TWIN_NUMBA_COMPILE_LOG") == "1":  # see tests/_numba_compile_log.py
        import _numba_compile_log

        config.pluginmanager.register(_numba_compile_log, "numba_compile_log")


def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Kernel-free modules first, the grid kernels' modules last, and (for a big session)
    numba's cache warmed in the background meanwhile (see ``tests/_kernel_warmup.py``)."""
    if not warmup.enabled() or config.option.collectonly:
        return
    kernel = [it for it in items if warmup.is_kernel_module(it.nodeid)]
    big = len(items) - len(kernel) >= _MIN_OVERLAP_TESTS
    if not kernel or not (big or warmup.forced()):
        return
    items[:] = [it for it in items if not warmup.is_kernel_module(it.nodeid)] + kernel
    if "PYTEST_XDIST_WORKER" not in os.environ:  # xdist: the controller starts it, see below
        warmup.start(config.rootpath, {it.nodeid for it in kernel}, whole_modules=_whole(config, big))


def _whole(config: pytest.Config, big: bool) -> bool:
    return big and not (config.option.keyword or config.option.markexpr or config.option.deselect
                        or any("::" in a for a in config.args))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: object, ids: list[str]) -> None:
    """xdist controller: every worker collected the same order (kernel modules last, above);
    the first collection starts the warm-up, at full priority (both workers keep the cores busy)."""
    config = node.config  # type: ignore[attr-defined]
    if not warmup.enabled():
        return
    kernel = {i for i in ids if warmup.is_kernel_module(i)}
    big = len(ids) - len(kernel) >= _MIN_OVERLAP_TESTS
    if kernel and (big or warmup.forced()):
        warmup.start(config.rootpath, kernel, whole_modules=_whole(config, big), nice=0)


@pytest.fixture(autouse=True)
def _kernel_warmup_gate(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test of a kernel module waits for the background warm-up (once) instead of compiling."""
    if warmup.is_kernel_module(request.node.nodeid):
        warmup.wait()
    yield


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    line = warmup.stop()
    if line:
        terminalreporter.write_line(line)


def pytest_unconfigure(config: pytest.Config) -> None:
    warmup.stop()
    warmup.child_done()
