"""Run ``twin.cli`` under cProfile, one profile per window (used by ``bench/horizon.py --profile-dir``).

``python bench/_day_profile.py DIR twin-cli-args...``: each SIGUSR1 (the bench sends one at each
simulated day's end) writes the main thread's CPU profile since the last one to
``DIR/window-NNN.prof`` and starts a new one; the last window is written at exit. Compare two
windows with ``pstats`` (e.g. day 2 against day 20) to see what grows with the run.
"""

from __future__ import annotations

import cProfile
import signal
import sys
import time
from pathlib import Path


def main() -> int:
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    prof = cProfile.Profile(time.thread_time)  # CPU of this thread: waits on Anvil are not cost
    n = [0]

    def dump(*_: object) -> None:
        prof.disable()
        n[0] += 1
        prof.dump_stats(out / f"window-{n[0]:03d}.prof")
        prof.clear()
        prof.enable()

    signal.signal(signal.SIGUSR1, dump)
    from twin.cli import main as cli_main

    prof.enable()
    try:
        return cli_main(sys.argv[2:])
    finally:
        dump()
        prof.disable()


if __name__ == "__main__":
    raise SystemExit(main())
