"""Process helpers shared by the tests that start Anvil through `twin run`."""

from __future__ import annotations

import os
from pathlib import Path


def anvil_children() -> set[int]:
    """Anvil processes whose parent is this test process."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().split()
        except OSError:
            continue
        if fields[1] == "(anvil)" and int(fields[3]) == os.getpid():
            pids.add(int(fields[0]))
    return pids
