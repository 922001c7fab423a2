"""What a run returns (:class:`RunOutcome`) and the git commit it ran from, shared by the
feeder run (:mod:`twin.run`) and the game run (:mod:`twin.run_game`)."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["RunOutcome", "git_sha"]


@dataclass
class RunOutcome:
    out_dir: Path
    kpis: dict[str, float]
    wall_s: float
    timings_s: dict[str, float] = field(default_factory=dict)


def git_sha() -> str | None:
    """The commit the twin runs from, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).parent, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
