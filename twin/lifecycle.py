"""One lifecycle for every long ``twin`` command: signals, child processes, who is running.

* :func:`handle_termination` turns SIGTERM and SIGHUP (what ``timeout``, CI runners, systemd,
  Dask and a closed terminal send) into :class:`Terminated`, a ``KeyboardInterrupt``: every
  path that already handles Ctrl-C (flush the tables, stop Anvil, status ``interrupted``)
  handles them too, and the command exits ``128 + signal`` (143, 129).
* :func:`die_with_parent` is a ``preexec_fn`` for child processes (Anvil, Streamlit, sweep
  runs): the kernel sends the child SIGTERM when its parent dies, even by ``kill -9``
  (Linux ``PR_SET_PDEATHSIG``; elsewhere a no-op).
* :func:`process_identity` (pid, host, process start time) goes into a running manifest;
  :func:`effective_status` shows a manifest still ``running`` whose process is gone as
  ``crashed``.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import socket
import sys
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "Terminated",
    "die_with_parent",
    "effective_status",
    "handle_termination",
    "interrupt_exit_code",
    "interrupt_reason",
    "process_alive",
    "process_identity",
    "received_signal",
    "set_pdeathsig",
]

_PR_SET_PDEATHSIG = 1
_received: list[int] = []  # the termination signals this command got (handle_termination)


class Terminated(KeyboardInterrupt):
    """The process got SIGTERM or SIGHUP; handled like Ctrl-C, exit ``128 + signum``."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def interrupt_exit_code(exc: BaseException) -> int:
    """130 for Ctrl-C, ``128 + signum`` for :class:`Terminated`."""
    return 128 + exc.signum if isinstance(exc, Terminated) else 130


def interrupt_reason(exc: BaseException) -> str:
    if isinstance(exc, Terminated):
        return f"interrupted by {signal.Signals(exc.signum).name}"
    return "interrupted by the user (Ctrl-C)"


def received_signal() -> int | None:
    """The SIGTERM/SIGHUP received inside :func:`handle_termination`, if any."""
    return _received[-1] if _received else None


def _raise_terminated(signum: int, _frame: Any) -> None:
    _received.append(signum)
    # Once is enough: a second signal during the clean-up must not abort the flush.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    raise Terminated(signum)


@contextlib.contextmanager
def handle_termination() -> Iterator[None]:
    """While inside, SIGTERM and SIGHUP raise :class:`Terminated` in the main thread."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    for sig in old:
        signal.signal(sig, _raise_terminated)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def interrupts_not_swallowed() -> Iterator[None]:
    """A Ctrl-C inside must end the block with ``KeyboardInterrupt`` even when the code
    inside catches it: mosaik's scheduler logs "Simulation canceled" and returns normally
    when the interrupt lands in its own coroutine, which made a run cut short by Ctrl-C look
    complete. The SIGINT is noted and, if the block then returns normally, raised again."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    seen: list[int] = []
    previous = signal.getsignal(signal.SIGINT)

    def note(signum: int, frame: Any) -> None:
        seen.append(signum)
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if seen:
        raise KeyboardInterrupt


def set_pdeathsig(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        return


def die_with_parent() -> None:
    """``preexec_fn`` for :class:`subprocess.Popen`: the child gets SIGTERM when we die.

    Call Popen from the main thread (the death signal follows the thread that forked)."""
    set_pdeathsig(signal.SIGTERM)
    if os.getppid() == 1:  # the parent died between fork and prctl
        os._exit(1)


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (``/proc/PID/stat`` field 22)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def process_identity() -> dict[str, Any]:
    """What a manifest records of the process writing it (see :func:`effective_status`)."""
    return {"pid": os.getpid(), "host": socket.gethostname(), "start_ticks": _start_ticks(os.getpid())}


def process_alive(ident: Mapping[str, Any]) -> bool | None:
    """True/False for a process of this host; None when it cannot be told (other host)."""
    if ident.get("host") != socket.gethostname() or not isinstance(ident.get("pid"), int):
        return None
    pid = int(ident["pid"])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    ticks = ident.get("start_ticks")
    if ticks is not None and os.path.isdir("/proc"):
        return _start_ticks(pid) == ticks  # same pid, another process: the run is gone
    return True


def effective_status(manifest: Mapping[str, Any]) -> str:
    """The manifest's status, except ``crashed`` for a ``running`` one whose process is gone."""
    status = str(manifest.get("status", "unknown"))
    if status == "running" and process_alive(manifest.get("process") or {}) is False:
        return "crashed"
    return status
